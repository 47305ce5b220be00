"""Embedding cache keyed by (encoder identity, sha256 of the exact string).

Layout: `<cache_dir>/<encoder-slug>-<identity hash>/identity.json` plus append-only shards `shard-<hash>.npz`
(`sha256` (n,) str, `text` (n,) str, `n_tokens` (n,) int32, `vectors` (n, D) float32). Each shard is written
atomically and never modified, so parallel stages sharing one encoder (ntu60 and ntu120 embedding at once) cannot
overwrite each other's work, and an interrupted run keeps every shard it finished. Many small shards are merged
into one by `compact`.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from star_repro.errors import StarReproError
from star_repro.io import atomic_path, canonical_json, check_finite, sha256_text, write_json_atomic
from star_repro.text.encoders import encoder_slug

_SHARD_KEYS = {"sha256", "text", "n_tokens", "vectors"}
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz_atomic(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """An uncompressed .npz (readable by np.load) with fixed member timestamps: same arrays, same bytes.

    Byte-stable outputs let DVC and Snakemake see that a rerun changed nothing downstream. Non-finite arrays
    are refused (`check_finite`).
    """
    check_finite(dict(arrays), path)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for key in arrays:
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_TIME)
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.ascontiguousarray(arrays[key]), allow_pickle=False)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())


def cache_slug(identity: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(canonical_json(dict(identity)).encode("utf-8")).hexdigest()[:16]
    return f"{encoder_slug(str(identity['name']))}-{digest}"


class EmbeddingCache:
    """Vectors of one encoder identity, looked up by the sha256 of the exact string."""

    def __init__(self, root: str | Path, identity: Mapping[str, Any], dim: int):
        self.identity = dict(identity)
        self.dim = int(dim)
        self.dir = Path(root) / cache_slug(self.identity)

    def _check_identity(self) -> None:
        f = self.dir / "identity.json"
        if not f.is_file():
            return
        try:
            stored = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StarReproError(f"{f}: unreadable cache identity ({exc}); delete the folder {self.dir} "
                                 "(it only holds cached embeddings, which are recomputed)") from None
        if stored != self.identity:
            raise StarReproError(f"{f}: the folder holds embeddings of another encoder identity {stored} "
                                 f"(expected {self.identity}); delete the folder {self.dir}")

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.npz"))

    def _read_shard(self, path: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
        hint = f"delete {path} (it only holds cached embeddings, which are recomputed)"
        try:
            with np.load(path, allow_pickle=False) as z:
                if set(z.files) != _SHARD_KEYS:
                    raise StarReproError(f"{path}: cache shard has arrays {sorted(z.files)}, expected "
                                         f"{sorted(_SHARD_KEYS)}; {hint}")
                keys, texts = z["sha256"].tolist(), z["text"].tolist()
                counts, vecs = z["n_tokens"], z["vectors"]
        except FileNotFoundError:
            raise
        except StarReproError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged zip or array header
            raise StarReproError(f"{path}: damaged cache shard ({type(exc).__name__}: {exc}); {hint}") from None
        n = len(keys)
        if vecs.dtype != np.float32 or vecs.shape != (n, self.dim) or len(texts) != n or counts.shape != (n,):
            raise StarReproError(f"{path}: cache shard shapes disagree (vectors {vecs.shape} {vecs.dtype}, "
                                 f"{len(texts)} texts, {n} keys; expected float32 (n, {self.dim})); {hint}")
        for k, t in zip(keys, texts):
            if sha256_text(t) != k:
                raise StarReproError(f"{path}: key {k} is not the sha256 of its text {t[:60]!r}; {hint}")
        return keys, texts, counts, vecs

    def load(self) -> dict[str, tuple[np.ndarray, int]]:
        """sha256 -> (vector, token count). A shard removed by a concurrent compaction triggers a re-list."""
        self._check_identity()
        for _attempt in range(5):
            table: dict[str, tuple[np.ndarray, int]] = {}
            try:
                for shard in self.shards():
                    keys, _texts, counts, vecs = self._read_shard(shard)
                    for i, k in enumerate(keys):
                        table[k] = (vecs[i], int(counts[i]))
                return table
            except FileNotFoundError:
                continue
        raise StarReproError(f"{self.dir}: cache shards kept disappearing while being read; is another process "
                             "compacting it in a loop?")

    def add(self, texts: Iterable[str], vectors: np.ndarray, n_tokens: Iterable[int]) -> Path | None:
        """Write one new shard holding these strings (atomically); returns its path, or None when empty."""
        texts = list(texts)
        counts = np.asarray(list(n_tokens), dtype=np.int32)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not texts:
            return None
        if vectors.shape != (len(texts), self.dim) or counts.shape != (len(texts),):
            raise ValueError(f"cache add: {len(texts)} texts, vectors {vectors.shape}, counts {counts.shape}, "
                             f"dim {self.dim}")
        self._check_identity()
        if not (self.dir / "identity.json").is_file():
            write_json_atomic(self.dir / "identity.json", self.identity)
        keys = [sha256_text(t) for t in texts]
        h = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
        path = self.dir / f"shard-{h}.npz"
        if not path.exists():
            write_npz_atomic(path, {"sha256": np.array(keys, dtype="<U64"), "text": np.array(texts, dtype=str),
                                    "n_tokens": counts, "vectors": vectors})
        return path

    def compact(self, max_shards: int = 32) -> bool:
        """Merge all shards into one when there are more than `max_shards`; returns whether it merged."""
        shards = self.shards()
        if len(shards) <= max_shards:
            return False
        texts: dict[str, str] = {}
        rows: dict[str, tuple[np.ndarray, int]] = {}
        read: list[Path] = []
        for shard in shards:
            try:
                keys, ts, counts, vecs = self._read_shard(shard)
            except FileNotFoundError:
                continue
            read.append(shard)
            for i, k in enumerate(keys):
                texts[k] = ts[i]
                rows[k] = (vecs[i], int(counts[i]))
        order = sorted(rows)
        merged = self.add([texts[k] for k in order], np.stack([rows[k][0] for k in order]),
                          [rows[k][1] for k in order])
        for shard in read:
            if shard != merged:
                try:
                    shard.unlink()
                except FileNotFoundError:
                    pass
        return True
