"""A tiny zero-shot world for the STAR training tests, built in tmp_path: a processed dataset whose classes move
each body part with class-specific attributes, text embeddings that are noisy linear images of those attributes
(so knowledge transfers from known to unknown classes through the part descriptions), and a random-weight
pretrained backbone directory."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

from star_repro.data.splits import ClassSplit
from star_repro.skeleton import partition

NUM_CLASSES = 12
UNKNOWN = (2, 7, 10)
TEXT_DIM = 24
WIDTH = 0.0625  # 16 output channels: a real Shift-GCN small enough for unit tests


def make_world(root: Path, *, per_class_train: int = 12, per_class_test: int = 6, frames: int = 40,
               seed: int = 0, pku: bool = False) -> dict:
    """`pku=True` writes the PKU-MMD layout: clips stored at exactly `frames` frames and a `video` column."""
    rng = np.random.default_rng(seed)
    parts = partition(6)
    attrs = rng.uniform(-1, 1, size=(NUM_CLASSES, len(parts), 2))
    base = rng.normal(0, 0.3, size=(3, 25)).astype(np.float32)
    rows, samples, subjects = [], [], []
    for c in range(NUM_CLASSES):
        for i in range(per_class_train + per_class_test):
            t = np.linspace(0, 2 * np.pi, frames)
            phase = rng.uniform(0, 0.5)
            x = np.repeat(base[:, :, None], frames, axis=2).transpose(0, 2, 1).copy()  # (3, T, 25)
            for k, joints in enumerate(parts.values()):
                ax, ay = attrs[c, k]
                for j in joints:
                    x[0, :, j] += 0.4 * ax * np.sin(t + phase)
                    x[1, :, j] += 0.4 * ay * np.cos(2 * t + phase)
            x += rng.normal(0, 0.03, size=x.shape)
            full = np.zeros((3, frames + (0 if pku else 8), 25, 2), np.float32)
            full[:, :frames, :, 0] = x
            samples.append(full)
            subjects.append(1 if i < per_class_train else 2)
            rows.append(c)
    joints = np.stack(samples).astype(np.float32)
    labels = np.array(rows)
    ds_dir = root / "toy"
    ds_dir.mkdir(parents=True)
    np.save(ds_dir / "joints.npy", joints)
    with open(ds_dir / "samples.tsv", "w", encoding="utf-8") as fh:
        fh.write("index\tname\tlabel\tsetup\tcamera\tsubject\treplication\tvideo\tframes\n")
        for i, (lab, sub) in enumerate(zip(labels, subjects)):
            if pku:
                fh.write(f"{i}\tF{i:03d}V001C{lab + 1:03d}L001\t{lab}\t\t1\t\t\t{i:04d}-L\t{frames}\n")
            else:
                fh.write(f"{i}\tS001C001P{sub:03d}R001A{lab + 1:03d}\t{lab}\t1\t1\t{sub}\t1\t\t{frames}\n")
    subjects = np.array(subjects)
    (ds_dir / "protocols.json").write_text(json.dumps({"xsub": {
        "train": np.flatnonzero(subjects == 1).tolist(), "test": np.flatnonzero(subjects == 2).tolist()}}))

    w_names = rng.normal(size=(TEXT_DIM, attrs[0].size))
    names = attrs.reshape(NUM_CLASSES, -1) @ w_names.T + rng.normal(0, 0.1, (NUM_CLASSES, TEXT_DIM))
    six = list(parts.values())
    embeddings = {}
    for k in (6, 4, 2):
        coarse = []
        for joints in partition(k).values():  # a coarse part's text reflects the 6-part attributes it contains
            members = [i for i, js in enumerate(six) if set(js) <= set(joints)]
            a = attrs[:, members].reshape(NUM_CLASSES, -1)
            w = rng.normal(size=(TEXT_DIM, a.shape[1]))
            coarse.append(a @ w.T + rng.normal(0, 0.1, (NUM_CLASSES, TEXT_DIM)))
        path = root / f"toy_{k}part_test.npz"
        np.savez(path, names=names.astype(np.float32), parts=np.stack(coarse).astype(np.float32))
        embeddings[k] = path

    split = ClassSplit("toy_seen9_unseen3", NUM_CLASSES, UNKNOWN)
    from star_repro.models.shiftgcn import ShiftGCN

    torch.manual_seed(seed)
    backbone = ShiftGCN(len(split.known), width=WIDTH)
    bdir = root / "pretrain"
    bdir.mkdir()
    torch.save(backbone.state_dict(), bdir / "model.pt")
    (bdir / "config.json").write_text(json.dumps({"width": WIDTH, "num_class": len(split.known),
                                                  "known_classes": list(split.known), "seed": seed,
                                                  "config": {"window": 16}}))
    return {"processed": ds_dir, "embeddings": embeddings[6], "embeddings_by_partition": embeddings,
            "backbone": bdir, "split": split, "labels": labels}


BASE_CFG = {
    "profile": "test", "seed": 1, "partition": 6, "part_pooling": "correct", "heads": 2, "m": 8, "attn_dim": 16,
    "text_hidden": 16, "similarity": "cosine", "temperature": 0.1, "ce_eps": 0.0, "sce_classes": "all",
    "alpha": 0.1, "beta": 0.1, "use_mpce": True, "use_sce": True, "use_gce": True, "use_attention": True,
    "use_va_prompt": True, "use_sp_prompt": True, "text_control": "none", "bn_mode": "frozen",
    "init": {"va_prompt_std": 1.0, "w_std": "fan_in", "sp_prompt_std": 0.1},
    "optimizer": {"lr": 0.05, "lr_decay": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005,
                  "steps": [12], "epochs": 15, "batch_size": 16, "drop_last": True},
    "augment": {"train": False, "test": False, "p_interval": [0.5, 1.0], "random_rot": True, "rot_theta": 0.3,
                "center_p": 0.95, "window": 16, "pku_passthrough": True},
    "selection": "last", "val_fraction": 0.2, "gamma": 0.05, "gamma_val_rate": 0.1,
    "gamma_grid": [0.0, 0.01, 0.05, 0.1, 0.2, 0.5], "eval_batch_size": 64, "cache_max_mb": 256, "num_workers": 0,
}


def cfg(**over) -> dict:
    out = copy.deepcopy(BASE_CFG)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out
