"""A tiny zero-shot world for the baseline tests: the STAR test world's processed dataset and random-weight
backbone (tests/_star_world.py), made usable for the baselines' pipeline.

- The backbone gets BatchNorm statistics of the data (one forward pass in training mode, no gradient): random
  weights with unit running statistics give nearly constant pooled features, a trained backbone does not.
- Its config.json gets what `star-repro pretrain` writes and the baselines read (known_classes, feeder, window).
- Text embeddings are noisy linear images of each class's mean backbone feature, so that transfer from the known
  to the unknown classes is possible for a linear-ish model, with a proper `.json` sidecar naming a fake encoder.
- Verb/noun phrases are one per class; `FakeEncoder` maps them to vectors of the same kind and counts its calls.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import _star_world as W
from star_repro.io import sha256_file, write_json_atomic
from star_repro.text.embcache import write_npz_atomic

WINDOW = 16
FAKE_IDENTITY = {"name": "fake:toy", "weights_sha256": "f" * 64}
UNKNOWN = W.UNKNOWN


class FakeEncoder:
    """The `Encoder` protocol over a fixed table of strings; `calls` counts `encode` calls."""

    def __init__(self, table: dict[str, np.ndarray], identity: dict | None = None):
        self.table = table
        self.name = "fake:toy"
        self.identity = dict(identity or FAKE_IDENTITY)
        self.dim = int(next(iter(table.values())).shape[0])
        self.max_tokens = 77
        self.truncate = "error"
        self.calls = 0

    def count_tokens(self, texts):
        return [len(t.split()) + 2 for t in texts]

    def encode(self, texts, batch_size=None):
        self.calls += 1
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def _backbone(bdir: Path):
    from star_repro.models.shiftgcn import ShiftGCN

    conf = json.loads((bdir / "config.json").read_text())
    model = ShiftGCN(conf["num_class"], width=conf["width"])
    model.load_state_dict(torch.load(bdir / "model.pt", weights_only=True))
    return model


def _windows(processed: Path, indices) -> torch.Tensor:
    from star_repro.data.dataset import ProcessedDataset
    from star_repro.training.feeder import SkeletonDataset

    ds = ProcessedDataset(processed)
    data = SkeletonDataset(ds.joints, None, indices, np.zeros(len(indices), np.int64), train=False, window=WINDOW,
                           p_interval=[0.95], random_rot=False)
    return torch.stack([data[i][0] for i in range(len(data))])


def build(root: Path, *, per_class_train: int = 10, per_class_test: int = 10, seed: int = 0,
          text_dim: int = 24) -> dict:
    w = W.make_world(root, per_class_train=per_class_train, per_class_test=per_class_test, seed=seed)
    bdir = w["backbone"]
    conf = json.loads((bdir / "config.json").read_text())
    conf["known_classes"] = list(w["split"].known)
    conf.pop("known", None)
    conf.update(feeder="ntu", config={**conf.get("config", {}), "window": WINDOW, "p_interval_test": [0.95]})
    (bdir / "config.json").write_text(json.dumps(conf))

    protocols = json.loads((w["processed"] / "protocols.json").read_text())
    model = _backbone(bdir)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass
    model.train()
    with torch.no_grad():
        model.extract(_windows(w["processed"], protocols["xsub"]["train"]))
    torch.save(model.state_dict(), bdir / "model.pt")

    model.eval()
    labels = w["labels"]
    with torch.no_grad():
        feats = model.extract(_windows(w["processed"], np.arange(len(labels))))[1].numpy()
    c = int(labels.max()) + 1
    mu = np.stack([feats[labels == k].mean(0) for k in range(c)])
    mu = (mu - mu.mean(0)) / (mu.std(0) + 1e-6)
    rng = np.random.default_rng(seed + 11)

    def image():
        return (mu @ rng.normal(size=(text_dim, mu.shape[1])).T + 0.05 * rng.normal(size=(c, text_dim))).astype(
            np.float32)

    names = image()
    parts = np.stack([image() for _ in range(6)])
    emb_dir = root / "embeddings"
    npz = emb_dir / "toy_6part_fake-toy.npz"
    write_npz_atomic(npz, {"names": names, "parts": parts})
    meta = {"dataset": "toy", "partition": 6, "parts": ["head", "hand", "arm", "hip", "leg", "foot"],
            "classes": [f"class {k}" for k in range(c)], "dim": text_dim,
            "encoder": {**FAKE_IDENTITY, "dim": text_dim}, "text_form": "name_part", "truncate": "error",
            "npz": {"file": str(npz), "sha256": sha256_file(npz)}}
    write_json_atomic(npz.with_suffix(".json"), meta)
    verbs = [f"verb {k}" for k in range(c)]
    nouns = [f"noun {k}" for k in range(c)]
    table = {}
    for k in range(c):
        table[verbs[k]] = parts[:3, k].mean(0)
        table[nouns[k]] = parts[3:, k].mean(0)
    w.update(embeddings=npz, verbs=verbs, nouns=nouns, table=table, text_dim=text_dim)
    return w
