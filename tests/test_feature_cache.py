"""The on-disk feature cache shared by STAR and the baselines: hits, misses, and damaged entries."""
from __future__ import annotations

import numpy as np

from star_repro.training.feature_cache import cached_features


def test_hit_miss_and_damaged_entry(tmp_path, capsys):
    idx = np.arange(4)
    calls = []

    def compute():
        calls.append(1)
        return np.full((4, 3), float(len(calls)), np.float32)

    key = {"backbone_sha256": "a", "subset": "train"}
    first, hit = cached_features(tmp_path, key, idx, compute)
    assert not hit and len(calls) == 1
    again, hit = cached_features(tmp_path, key, idx, compute)
    assert hit and len(calls) == 1 and np.array_equal(again, first)
    # another key is another entry
    _, hit = cached_features(tmp_path, {**key, "subset": "test"}, idx, compute)
    assert not hit and len(calls) == 2
    # a damaged entry costs a recomputation, said on stderr, and is replaced
    (entry,) = [p for p in tmp_path.glob("features-*.npz") if np.load(p)["key"][0].find('"train"') >= 0]
    entry.write_bytes(b"not an npz")
    fixed, hit = cached_features(tmp_path, key, idx, compute)
    assert not hit and len(calls) == 3 and fixed[0, 0] == 3.0
    assert "unreadable" in capsys.readouterr().err
    assert cached_features(tmp_path, key, idx, compute)[1]
    # no cache folder: always computed
    assert not cached_features(None, key, idx, compute)[1] and len(calls) == 4
