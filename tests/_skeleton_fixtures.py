"""Tiny processed datasets (docs/formats.md layout) with class-specific motions, for the Shift-GCN tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Per class: (joints that move, axis, frequency in cycles per sequence).
MOTIONS = (
    ((3, 2), 1, 1.0),            # head nods (y)
    ((7, 6, 21, 22), 0, 2.0),    # left hand waves (x)
    ((11, 10, 23, 24), 1, 1.5),  # right hand raises (y)
    ((15, 14), 2, 1.0),          # left foot forward (z)
    ((19, 18), 0, 2.5),          # right foot sideways (x)
    ((0, 1, 12, 16), 1, 0.5),    # hips squat (y)
)


def base_pose(rng: np.random.Generator) -> np.ndarray:
    pose = np.zeros((25, 3), np.float32)
    pose[:, 1] = np.linspace(0.8, -0.8, 25)
    pose[:, 0] = rng.normal(0, 0.05, 25)
    pose[:, 2] = rng.normal(0, 0.05, 25)
    return pose


def make_sample(label: int, rng: np.random.Generator, t_total: int, valid: int, two_person: bool) -> np.ndarray:
    out = np.zeros((3, t_total, 25, 2), np.float32)
    joints, axis, freq = MOTIONS[label % len(MOTIONS)]
    phase = rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(0.4, 0.6)
    t = np.arange(valid) / valid
    for m in range(2 if two_person else 1):
        pose = base_pose(rng) + (m * np.array([1.0, 0, 0], np.float32))
        seq = np.repeat(pose[None], valid, axis=0)  # (T, 25, 3)
        seq[:, list(joints), axis] += (amp * np.sin(2 * np.pi * freq * t + phase))[:, None]
        seq += rng.normal(0, 0.01, seq.shape).astype(np.float32)
        out[:, :valid, :, m] = seq.transpose(2, 0, 1)
    return out


def make_processed(root: Path, num_classes: int = 6, per_class: int = 12, t_total: int = 96, seed: int = 0,
                   sneak_unknown_into_train: int | None = None, pku: bool = False) -> Path:
    """NTU-like (zero-padded to t_total) or PKU-like (t_total frames, `video` filled) processed dataset.

    Subjects alternate 1, 2, 3, 4 per class; xsub trains on subjects {1, 3}. With `sneak_unknown_into_train`
    the protocol's train list also receives every sample of that class (a crafted leak).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    samples, rows = [], []
    for label in range(num_classes):
        for k in range(per_class):
            valid = t_total if pku else int(rng.integers(t_total // 2, t_total + 1))
            samples.append(make_sample(label, rng, t_total, valid, two_person=(k % 3 == 0)))
            subject = 1 + k % 4
            idx = len(rows)
            video = f"{idx:04d}-L" if pku else ""
            name = f"F{idx:03d}V001C{label + 1:03d}L001" if pku else f"S001C001P{subject:03d}R001A{label + 1:03d}"
            rows.append([idx, name, label, "" if pku else 1, "" if pku else 1, "" if pku else subject,
                         "" if pku else 1, video, valid])
    joints = np.stack(samples)
    np.save(root / "joints.npy", joints)
    header = "index\tname\tlabel\tsetup\tcamera\tsubject\treplication\tvideo\tframes\n"
    (root / "samples.tsv").write_text(header + "".join("\t".join(str(v) for v in r) + "\n" for r in rows))
    subjects = np.array([1 + (i % per_class) % 4 for i in range(len(rows))])
    labels = np.array([r[2] for r in rows])
    train = [i for s in (1, 3) for i in np.flatnonzero(subjects == s).tolist()]
    test = [i for s in (2, 4) for i in np.flatnonzero(subjects == s).tolist()]
    if sneak_unknown_into_train is not None:
        sneaked = np.flatnonzero(labels == sneak_unknown_into_train).tolist()
        train = train + [i for i in sneaked if i not in train]
        test = [i for i in test if i not in sneaked]
    (root / "protocols.json").write_text(json.dumps({"xsub": {"train": train, "test": test}}))
    (root / "rejected.tsv").write_text("name\tfile\tline\treason\n")
    return root
