"""Read-only access to a processed dataset (`data/processed/{ds}/`, docs/formats.md)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from star_repro.errors import StarReproError

SAMPLE_COLUMNS = ("index", "name", "label", "setup", "camera", "subject", "replication", "video", "frames")


class ProcessedDataset:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        for f in ("joints.npy", "samples.tsv", "protocols.json"):
            if not (self.root / f).exists():
                raise StarReproError(f"{self.root / f} is missing: run `star-repro prepare` for this dataset first")
        self.joints = np.load(self.root / "joints.npy", mmap_mode="r")
        with open(self.root / "samples.tsv", encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if len(rows) != len(self.joints):
            raise StarReproError(f"{self.root}: samples.tsv has {len(rows)} rows but joints.npy {len(self.joints)}")
        self.names = [r["name"] for r in rows]
        self.labels = np.array([int(r["label"]) for r in rows], np.int64)
        self.frames = np.array([int(r["frames"]) for r in rows], np.int64)
        self.meta = {k: np.array([int(r[k]) if r.get(k) not in (None, "") else -1 for r in rows], np.int64)
                     for k in ("setup", "camera", "subject", "replication")}
        self.videos = [r.get("video", "") for r in rows]
        with open(self.root / "protocols.json", encoding="utf-8") as fh:
            self.protocols = {p: {k: np.asarray(v, np.int64) for k, v in d.items()}
                              for p, d in json.load(fh).items()}

    def __len__(self) -> int:
        return len(self.labels)

    def protocol(self, name: str) -> dict[str, np.ndarray]:
        try:
            return self.protocols[name]
        except KeyError:
            raise StarReproError(f"{self.root}: no protocol {name!r}; available: {sorted(self.protocols)}") from None
