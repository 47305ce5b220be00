"""Device check for STAR (not collected by pytest): train/evaluate the tiny test world on CUDA and on the CPU,
the uncached BatchNorm-drift path on CUDA, and bench_star on both. Run from the project root:

    PYTHONPATH=src:tests python3 tests/_star_gpu_check.py OUT_DIR
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

import _star_world as W
from star_repro.training.evaluate import evaluate_star
from star_repro.training.star_train import bench_star, train_star


def run(world, root, cfg, device, name):
    t = time.time()
    s = train_star(world["processed"], "xsub", world["split"], world["embeddings"], world["backbone"], cfg,
                   root / name / "train", device=device, progress=False)
    m = evaluate_star(root / name / "train", world["processed"], "xsub", world["split"], world["embeddings"],
                      world["backbone"], cfg, root / name / "eval", device=device)
    return {"device": device, "seconds": round(time.time() - t, 2), "feature_cache": s["feature_cache"],
            **{k: m[k] for k in ("zsl_top1", "gzsl_seen", "gzsl_unseen", "gzsl_h", "epoch")}}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    root = Path(tempfile.mkdtemp())
    world = W.make_world(root)
    cfg = W.cfg(optimizer={"epochs": 20, "steps": [15]})
    report["cpu"] = run(world, root, cfg, "cpu", "cpu")
    report["cuda"] = run(world, root, cfg, "cuda", "cuda")
    report["cuda_repeat"] = run(world, root, cfg, "cuda", "cuda2")
    drift = W.cfg(bn_mode="drift", optimizer={"epochs": 2}, augment={"train": True, "test": True})
    report["cuda_drift_aug"] = run(world, root, drift, "cuda", "drift")
    print(json.dumps(report, indent=1), flush=True)
    report["bench_cuda"] = bench_star(("paper", "demo"), device="cuda")
    print(json.dumps(report["bench_cuda"], indent=1), flush=True)
    report["bench_cpu"] = bench_star(("paper", "demo"), device="cpu")
    print(json.dumps(report["bench_cpu"], indent=1), flush=True)
    (out / "star_gpu_check.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
