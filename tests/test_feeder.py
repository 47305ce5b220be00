"""The skeleton feeder: crop/resize and rotation as STAR_SPEC §3.1, PKU pass-through (§3.2), RNG independence."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from star_repro.errors import StarReproError
from star_repro.training.feeder import (
    EpochBatchSampler,
    SkeletonDataset,
    rotation_matrix,
    sample_rng,
    valid_crop_resize,
    valid_frame_count,
)


# one intra-op thread for the whole module (tests/conftest.py says why)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ramp(valid: int, total: int = 300) -> np.ndarray:
    """A sample whose every coordinate equals its frame number + 1 over `valid` frames, zero after."""
    x = np.zeros((3, total, 25, 2), np.float32)
    x[:, :valid] = (np.arange(valid, dtype=np.float32) + 1)[None, :, None, None]
    return x


def linear_resize_reference(seq: np.ndarray, out_len: int) -> np.ndarray:
    """Half-pixel linear resize along axis 0, as STAR_SPEC §3.1 states it (src clamped at 0 and L−1)."""
    n = len(seq)
    out = np.empty((out_len,) + seq.shape[1:], np.float64)
    for d in range(out_len):
        src = max((d + 0.5) * n / out_len - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n - 1)
        i1 = min(i0 + 1, n - 1)
        lam = src - i0
        out[d] = (1 - lam) * seq[i0] + lam * seq[i1]
    return out


def test_valid_frame_count_uses_the_sum_rule():
    x = ramp(70)
    assert valid_frame_count(x) == 70
    x[:, 10] = 0.0
    assert valid_frame_count(x) == 69  # a zero frame inside counts as missing, as in the authors' code


@pytest.mark.parametrize("valid", [40, 64, 103, 300])
def test_centre_crop_and_resize(valid):
    rng = np.random.default_rng(0)
    x = np.zeros((3, 300, 25, 2), np.float32)
    x[:, :valid] = rng.normal(size=(3, valid, 25, 2)).astype(np.float32)
    out = valid_crop_resize(x, valid, [0.95], 64)
    assert out.shape == (3, 64, 25, 2) and out.dtype == torch.float32
    bias = int((1 - 0.95) * valid / 2)
    crop = x[:, bias:valid - bias].transpose(1, 0, 2, 3)  # (L, 3, 25, 2)
    ref = linear_resize_reference(crop.astype(np.float64), 64).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    if valid == 64:
        assert torch.equal(valid_crop_resize(x, valid, [1.0], 64), torch.from_numpy(x[:, :64]))


def test_random_crop_length_and_position():
    for valid in (50, 80, 200):
        for seed in range(20):
            rng = sample_rng(seed, 0, 0)
            out = valid_crop_resize(ramp(valid), valid, [0.5, 1.0], 64, rng).numpy()[0, :, 0, 0]
            assert np.all(np.diff(out) >= 0) and out.min() >= 1 and out.max() <= valid
            # Output spans 63/64 of the crop; the crop is at least min(64, valid) frames long.
            span = out.max() - out.min()
            assert span >= 63 / 64 * min(64, valid) - 1 - 1e-4
            assert span <= 63 / 64 * valid + 1e-4


def test_rotation_matrix_is_the_spec_product():
    a = (0.1, -0.25, 0.2)
    cx, sx, cy, sy, cz, sz = math.cos(a[0]), math.sin(a[0]), math.cos(a[1]), math.sin(a[1]), math.cos(a[2]), \
        math.sin(a[2])
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    np.testing.assert_allclose(rotation_matrix(a).numpy(), rz @ ry @ rx, atol=1e-6)


def _dataset(joints, **kw):
    args = dict(train=True, window=64, p_interval=[0.5, 1.0], random_rot=True, rot_theta=0.3, seed=7)
    args.update(kw)
    n = len(joints)
    return SkeletonDataset(joints, None, np.arange(n), np.arange(n) % 3, **args)


def test_item_is_deterministic_per_seed_epoch_and_index():
    rng = np.random.default_rng(1)
    joints = np.zeros((4, 3, 120, 25, 2), np.float32)
    joints[:, :, :100, :, 0] = rng.normal(size=(4, 3, 100, 25))
    ds = _dataset(joints)
    a, target, idx = ds[2]
    assert a.shape == (3, 64, 25, 2) and a.dtype == torch.float32 and (target, idx) == (2, 2)
    assert torch.equal(a, _dataset(joints)[2][0])  # same (seed, epoch, index)
    assert not a[:, :, :, 1].any()  # the absent second person stays zero after rotation
    ds.set_epoch(1)
    assert not torch.equal(a, ds[2][0])  # a new epoch draws a new crop and rotation
    assert not torch.equal(a, _dataset(joints, seed=8)[2][0])
    # Rotation preserves each joint's length.
    ds_norot = _dataset(joints, random_rot=False)
    np.testing.assert_allclose(torch.linalg.norm(a, dim=0).numpy(),
                               torch.linalg.norm(ds_norot[2][0], dim=0).numpy(), rtol=1e-4, atol=1e-5)
    # Evaluation: centre crop, no rotation, no randomness at all.
    ev = _dataset(joints, train=False, p_interval=[0.95], random_rot=False)
    ev.set_epoch(5)
    assert torch.equal(ev[1][0], _dataset(joints, train=False, p_interval=[0.95], random_rot=False)[1][0])


def test_augmentation_does_not_depend_on_worker_count():
    rng = np.random.default_rng(2)
    joints = rng.normal(size=(10, 3, 90, 25, 2)).astype(np.float32)
    ds = _dataset(joints)
    ds.set_epoch(3)

    def collect(workers):
        sampler = EpochBatchSampler(len(ds), 4, shuffle=True, drop_last=False, seed=7)
        sampler.set_epoch(3)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=workers)
        return [(x, i) for x, _, i in loader]

    single, multi = collect(0), collect(2)
    assert len(single) == len(multi) == 3
    for (xa, ia), (xb, ib) in zip(single, multi):
        assert torch.equal(ia, ib) and torch.equal(xa, xb)


def test_pku_feeder_returns_stored_clips_unchanged():
    rng = np.random.default_rng(3)
    joints = rng.normal(size=(3, 3, 64, 25, 2)).astype(np.float32)
    ds = _dataset(joints, passthrough=True)
    ds.set_epoch(4)
    for i in range(3):
        assert torch.equal(ds[i][0], torch.from_numpy(joints[i]))
    # window is ignored, as by the authors' PKU feeder: the stored 64 frames come back.
    assert _dataset(joints, passthrough=True, window=32)[0][0].shape == (3, 64, 25, 2)


def test_bad_inputs_are_named():
    with pytest.raises(StarReproError, match="p_interval"):
        _dataset(np.zeros((1, 3, 64, 25, 2), np.float32), p_interval=[0.5, 0.7, 1.0])
    with pytest.raises(StarReproError, match="sample 0"):
        _dataset(np.zeros((1, 3, 64, 25, 2), np.float32))[0]  # no valid frame at all
    with pytest.raises(StarReproError, match="outside"):
        SkeletonDataset(np.zeros((2, 3, 64, 25, 2), np.float32), None, [5], [0], train=False, window=64,
                        p_interval=[0.95], random_rot=False)


def test_epoch_batches_shuffle_drop_last_and_split_over_ranks():
    one = EpochBatchSampler(23, 8, shuffle=True, drop_last=True, seed=1)
    batches = one.global_batches()
    assert len(batches) == 2 and all(len(b) == 8 for b in batches)
    one.set_epoch(1)
    assert [b.tolist() for b in one.global_batches()] != [b.tolist() for b in batches]
    one.set_epoch(0)
    ranks = [list(EpochBatchSampler(23, 8, shuffle=True, drop_last=True, seed=1, rank=r, world_size=2))
             for r in range(2)]
    for k, b in enumerate(batches):
        assert ranks[0][k] + ranks[1][k] == b.tolist()
    with pytest.raises(StarReproError, match="divisible"):
        EpochBatchSampler(23, 7, shuffle=True, drop_last=True, world_size=2)
