"""Skeleton feeder and augmentation of the authors' loaders (STAR_SPEC §3.1–3.2), over a memory-mapped array.

Randomness is per sample: each item draws from a generator seeded by (seed, epoch, sample index), so the
augmentation a sample gets does not depend on the number of loader workers, the batch size, the rank in
data-parallel training or the point a run was resumed from. (The authors re-seeded every worker with the same
seed each epoch instead, which ties the augmentation to `num_workers`; STAR_SPEC §11.)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from star_repro.errors import StarReproError

_SHUFFLE_STREAM = 0x5348  # separates the shuffle stream from the per-sample augmentation streams


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch), int(index)])))


def valid_frame_count(sample: np.ndarray) -> int:
    """Frames whose values do not sum to zero (the authors' rule; the sequence is assumed to start at frame 0)."""
    return int(np.count_nonzero(sample.sum(axis=(0, 2, 3)) != 0))


def valid_crop_resize(sample: np.ndarray, valid: int, p_interval: Sequence[float], window: int,
                      rng: np.random.Generator | None = None) -> torch.Tensor:
    """Crop the valid frames and resize the crop to `window` frames (STAR_SPEC §3.1 step 2).

    Two values [a, b]: random crop of length min(max(floor(valid·p), 64), valid), p ~ U(a, b), at a random start.
    One value p: the centre crop [bias, valid − bias) with bias = int((1 − p)·valid / 2). The resize is PyTorch's
    bilinear interpolation with align_corners=False along time, as in the authors' code. Returns (C, window, V, M).
    """
    c, _, v, m = sample.shape
    if valid <= 0:
        raise ValueError("sample has no valid (non-zero) frame")
    if len(p_interval) == 1:
        bias = int((1 - p_interval[0]) * valid / 2)
        crop = sample[:, bias:valid - bias]
    elif len(p_interval) == 2:
        if rng is None:
            raise ValueError("a random crop needs a generator")
        lo, hi = p_interval
        p = rng.random() * (hi - lo) + lo
        length = int(min(max(int(np.floor(valid * p)), 64), valid))
        start = int(rng.integers(0, valid - length + 1))
        crop = sample[:, start:start + length]
    else:
        raise ValueError(f"p_interval must have 1 or 2 values, got {list(p_interval)}")
    length = crop.shape[1]
    if length == 0:
        raise ValueError(f"centre crop with p={p_interval[0]} of {valid} valid frames is empty")
    data = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))
    data = data.permute(0, 2, 3, 1).reshape(1, 1, c * v * m, length)
    data = F.interpolate(data, size=(c * v * m, window), mode="bilinear", align_corners=False)
    return data.view(c, v, m, window).permute(0, 3, 1, 2).contiguous()


def rotation_matrix(angles: Sequence[float]) -> torch.Tensor:
    """R = Rz·Ry·Rx for angles (x, y, z) in radians, with the authors' sign conventions (float32)."""
    ax, ay, az = (torch.tensor(float(a), dtype=torch.float32) for a in angles)
    one, zero = torch.ones(()), torch.zeros(())
    rx = torch.stack([torch.stack([one, zero, zero]),
                      torch.stack([zero, ax.cos(), ax.sin()]),
                      torch.stack([zero, -ax.sin(), ax.cos()])])
    ry = torch.stack([torch.stack([ay.cos(), zero, -ay.sin()]),
                      torch.stack([zero, one, zero]),
                      torch.stack([ay.sin(), zero, ay.cos()])])
    rz = torch.stack([torch.stack([az.cos(), az.sin(), zero]),
                      torch.stack([-az.sin(), az.cos(), zero]),
                      torch.stack([zero, zero, one])])
    return rz @ ry @ rx


def random_rotate(data: torch.Tensor, rng: np.random.Generator, theta: float = 0.3) -> torch.Tensor:
    """One random rotation (angles ~ U(−θ, θ)) of every joint of every frame: xyz' = R·xyz."""
    angles = rng.uniform(-theta, theta, size=3)
    rot = rotation_matrix(angles)
    c, t, v, m = data.shape
    flat = data.permute(1, 0, 2, 3).reshape(t, c, v * m)
    return torch.matmul(rot, flat).view(t, c, v, m).permute(1, 0, 2, 3).contiguous()


class SkeletonDataset(Dataset):
    """Samples `indices` of a (N, 3, T, 25, 2) array with their `targets` (already remapped by the caller).

    `__getitem__(i)` returns (float32 tensor (3, window, 25, 2), target, dataset index of the sample).
    NTU mode (`passthrough=False`): valid-frame crop + resize to `window` (`p_interval`: two values = random
    crop, one value = centre crop) and, if `random_rot`, a random rotation. PKU mode (`passthrough=True`): the
    stored (already 64-frame) array is returned unchanged and `window`, `p_interval` and `random_rot` are
    ignored, as in the authors' PKU feeder.
    Call `set_epoch(e)` before each epoch; loader workers must be re-created per epoch (non-persistent) to see it.
    `frames`: the valid frame counts; None computes them from the data with the authors' rule.
    """

    def __init__(self, joints: np.ndarray, frames: np.ndarray | None, indices: Sequence[int],
                 targets: Sequence[int], *, train: bool, window: int, p_interval: Sequence[float],
                 random_rot: bool, rot_theta: float = 0.3, seed: int = 0, passthrough: bool = False):
        if joints.ndim != 5 or joints.shape[1] != 3:
            raise StarReproError(f"joints array must be (N, 3, T, V, M), got shape {joints.shape}")
        self.joints = joints
        self.frames = None if frames is None else np.asarray(frames, np.int64)
        self.indices = np.asarray(indices, np.int64)
        self.targets = np.asarray(targets, np.int64)
        if self.indices.shape != self.targets.shape:
            raise StarReproError(f"{len(self.indices)} indices but {len(self.targets)} targets")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(joints)):
            raise StarReproError(f"sample indices outside 0..{len(joints) - 1}")
        if len(p_interval) not in (1, 2):
            raise StarReproError(f"p_interval must have 1 or 2 values, got {list(p_interval)}")
        self.train = bool(train)
        self.window = int(window)
        self.p_interval = [float(p) for p in p_interval]
        self.random_rot = bool(random_rot)
        self.rot_theta = float(rot_theta)
        self.seed = int(seed)
        self.passthrough = bool(passthrough)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = int(self.indices[i])
        target = int(self.targets[i])
        sample = np.asarray(self.joints[idx], dtype=np.float32)
        if self.passthrough:
            return torch.from_numpy(sample.copy()), target, idx
        needs_rng = len(self.p_interval) == 2 or self.random_rot
        rng = sample_rng(self.seed, self.epoch, idx) if needs_rng else None
        valid = valid_frame_count(sample) if self.frames is None else int(self.frames[idx])
        valid = min(valid, sample.shape[1])
        try:
            data = valid_crop_resize(sample, valid, self.p_interval, self.window, rng)
        except ValueError as exc:
            raise StarReproError(f"sample {idx}: {exc}") from None
        if self.random_rot:
            data = random_rotate(data, rng, self.rot_theta)
        return data, target, idx


class EpochBatchSampler(Sampler):
    """Batches of dataset positions for one epoch: shuffled by (seed, epoch), global batches split over ranks.

    Every rank sees the same global batches and takes its contiguous share, so a data-parallel run processes
    exactly the batches a single process would (the per-device batch is global_batch / world_size).
    """

    def __init__(self, n: int, global_batch: int, *, shuffle: bool, drop_last: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise StarReproError(f"batch_size {global_batch} is not divisible by the {world_size} processes")
        if world_size > 1 and not drop_last:
            raise StarReproError("data-parallel batches need drop_last (every rank must run the same steps)")
        self.n, self.global_batch, self.shuffle, self.drop_last = n, global_batch, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_batches(self) -> list[np.ndarray]:
        if self.shuffle:
            order = sample_rng(self.seed, self.epoch, _SHUFFLE_STREAM).permutation(self.n)
        else:
            order = np.arange(self.n)
        stop = (self.n // self.global_batch) * self.global_batch if self.drop_last else self.n
        return [order[s:min(s + self.global_batch, stop)] for s in range(0, stop, self.global_batch)]

    def __iter__(self):
        for batch in self.global_batches():
            share = len(batch) // self.world_size
            yield batch[self.rank * share:(self.rank + 1) * share].tolist()

    def __len__(self) -> int:
        return len(self.global_batches())


def worker_init(worker_id: int) -> None:
    """Seed a loader worker's global generators from torch's per-loader base seed, which the training loop
    derives from (seed, epoch): nothing in the feeder uses them, but a stray use stays reproducible."""
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
