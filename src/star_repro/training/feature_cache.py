"""Backbone features on disk, by content: the runs that share a backbone and its samples (the five baselines of a
cell, a STAR model's ablations and variants, and every evaluation) compute them once.

A key names everything the features depend on; an entry that does not match its key, or cannot be read, is
recomputed. Entries are written atomically, so concurrent jobs at worst compute the same entry twice.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from star_repro.io import canonical_json, sha256_text
from star_repro.text.embcache import write_npz_atomic


def dataset_signature(ds) -> dict:
    """The processed samples a feature key depends on (a `ProcessedDataset`): sample list hash and joint array."""
    root = Path(ds.root)
    from star_repro.provenance import file_digest

    return {"samples_sha256": file_digest(root / "samples.tsv"),
            "joints": {"shape": list(ds.joints.shape), "bytes": (root / "joints.npy").stat().st_size}}


def cached_features(cache_dir: Path | None, key: dict, indices: np.ndarray, compute) -> tuple[np.ndarray, bool]:
    """Features for `key` from `cache_dir` when present and intact, else `compute()` (then stored). Returns
    (features, whether they came from the cache)."""
    if cache_dir is None:
        return compute(), False
    digest = sha256_text(canonical_json(key))
    path = Path(cache_dir) / f"features-{digest[:24]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                stored_key = json.loads(str(z["key"].reshape(-1)[0]))
                feats, idx = z["feats"], z["indices"]
            if stored_key == key and np.array_equal(idx, indices) and feats.shape[0] == len(indices) \
                    and np.isfinite(feats).all():
                return feats.astype(np.float32), True
            print(f"features: {path} does not match its key; recomputing", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry only costs a recomputation
            print(f"features: {path} is unreadable ({type(exc).__name__}); recomputing", file=sys.stderr, flush=True)
    feats = compute()
    write_npz_atomic(path, {"feats": feats.astype(np.float32), "indices": np.asarray(indices, np.int64),
                            "key": np.array([canonical_json(key)])})
    return feats, False


def shift_formula_key(backbone) -> dict:
    """The backbone's temporal-shift formula for a feature-cache key: the same model.pt gives other features
    (at rounding level) under "kernel" (an imported release is the same file under either). Empty for "lerp",
    so that entries made before the key existed stay valid."""
    formula = getattr(backbone, "shift_formula", "lerp")
    return {} if formula == "lerp" else {"shift_formula": formula}
