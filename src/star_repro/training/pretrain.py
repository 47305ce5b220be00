"""Shift-GCN pretraining on the known classes of one dataset × protocol × class split (STAR_SPEC §5.6).

The training samples come only from `splits.training_indices` (the gate that refuses unknown classes); targets
are positions in the sorted known list. Each epoch trains, evaluates known-class top-1 on the protocol's test
samples of known classes (deterministic centre crop), appends to `history.tsv` and writes a resumable
checkpoint. A rerun resumes from the newest checkpoint made with the same settings and gives the same weights
as an uninterrupted run. Under `torchrun` it trains data-parallel: the global batch stays `batch_size`, each
process takes batch_size / world_size of every global batch, and BatchNorm statistics and the temporal-shift
position gradients are taken over the global batch, so the result does not depend on the process count beyond
floating point.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from star_repro.errors import StarReproError

# Paper profile values (STAR_SPEC §5.6); `pretrain` requires every key without a default to be given.
DEFAULTS: dict = {
    "epochs": 110,
    "batch_size": 64,
    "test_batch_size": None,  # None: same as batch_size
    "base_lr": 0.1,
    "steps": [60, 80, 100],
    "lr_decay": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 1e-4,
    "weight_decay_linear": 1e-3,
    "weight_decay_mask": 0.0,
    "window": 64,
    "p_interval_train": [0.5, 1.0],
    "p_interval_test": [0.95],
    "random_rot": True,
    "rot_theta": 0.3,
    "seed": 1,
    "width": 1.0,
    "num_workers": 0,
    "feeder": "auto",
    "keep_checkpoints": 2,
    "deterministic": True,
    # Evaluate on the known-class test set every k epochs (always after the last one). The paper's code evaluates
    # every epoch; the demo only needs the final number, and a test pass costs about a third of a demo epoch.
    "eval_every": 1,
    # The temporal shift's evaluation order (models/temporal_shift.py): "kernel" is the authors' CUDA
    # expression, bit for bit (the official-code profile); "lerp" differs by 1-2 ulp in a third of the values.
    "shift_formula": "lerp",
    # Speed settings for GPUs (common.set_precision; `star-repro bench paper` measures each): "fp32" (every
    # product in float32), "tf32" or "bf16" (autocast) change the numbers; torch.compile fuses kernels (the
    # numbers may differ in the last bits). Both stay at fp32 / false under the official-code profile.
    "precision": "fp32",
    "compile": False,
}
# Keys that do not change the result: a checkpoint made with other values of these still resumes.
_NON_SEMANTIC = {"epochs", "num_workers", "keep_checkpoints", "test_batch_size", "eval_every"}
HISTORY_COLUMNS = ("epoch", "lr", "loss", "train_acc", "test_acc")


# Keys of a profile's pretrain section that choose between training here and importing the authors' release
# (training/released_backbone.py): the stage reads them, the training recipe does not.
ROUTE_KEYS = ("source", "released_dir", "released_sha256")


def common_precisions() -> tuple[str, ...]:
    from star_repro.training.common import PRECISIONS

    return PRECISIONS


def resolve_config(cfg: Mapping | None) -> dict:
    """Defaults filled in and every value checked; errors name the key."""
    cfg = {k: v for k, v in (cfg or {}).items() if k not in ROUTE_KEYS}
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise StarReproError(f"pretrain config: unknown key(s) {unknown}; expected a subset of {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}

    def bad(key, expected):
        raise StarReproError(f"pretrain config: {key} = {out[key]!r}, expected {expected}")

    for key in ("epochs", "batch_size", "window", "seed", "num_workers", "keep_checkpoints", "eval_every"):
        if not isinstance(out[key], int) or isinstance(out[key], bool):
            bad(key, "an integer")
    if out["epochs"] < 1:
        bad("epochs", "at least 1")
    if out["batch_size"] < 1:
        bad("batch_size", "at least 1")
    if out["eval_every"] < 1:
        bad("eval_every", "at least 1")
    if out["test_batch_size"] is not None and (not isinstance(out["test_batch_size"], int)
                                               or out["test_batch_size"] < 1):
        bad("test_batch_size", "a positive integer or null")
    if out["window"] < 4 or out["window"] % 4:
        bad("window", "a positive multiple of 4 (two temporal strides of 2)")
    if out["num_workers"] < 0:
        bad("num_workers", "0 or more")
    for key in ("base_lr", "lr_decay", "momentum", "weight_decay", "weight_decay_linear", "weight_decay_mask",
                "rot_theta", "width"):
        if not isinstance(out[key], (int, float)) or isinstance(out[key], bool) or out[key] < 0:
            bad(key, "a non-negative number")
    if not out["width"] > 0:
        bad("width", "a positive number")
    if out["precision"] not in common_precisions():
        bad("precision", f"one of {', '.join(common_precisions())}")
    for key in ("nesterov", "random_rot", "deterministic", "compile"):
        if not isinstance(out[key], bool):
            bad(key, "true or false")
    if not isinstance(out["steps"], list) or not all(isinstance(s, int) for s in out["steps"]) \
            or out["steps"] != sorted(out["steps"]):
        bad("steps", "an ascending list of epoch numbers")
    for key in ("p_interval_train", "p_interval_test"):
        p = out[key]
        if not isinstance(p, list) or len(p) not in (1, 2) or not all(isinstance(v, (int, float)) for v in p) \
                or not all(0 < v <= 1 for v in p) or (len(p) == 2 and p[0] > p[1]):
            bad(key, "[p] or [low, high] with 0 < low <= high <= 1")
    if out["feeder"] not in ("auto", "ntu", "pku"):
        bad("feeder", "'auto', 'ntu' or 'pku'")
    from star_repro.models.temporal_shift import FORMULAS

    if out["shift_formula"] not in FORMULAS:
        bad("shift_formula", f"one of {', '.join(FORMULAS)}")
    out["base_lr"] = float(out["base_lr"])
    out["width"] = float(out["width"])
    out["p_interval_train"] = [float(v) for v in out["p_interval_train"]]
    out["p_interval_test"] = [float(v) for v in out["p_interval_test"]]
    return out


def _fingerprint(cfg: dict, dataset, protocol: str, split, feeder: str) -> str:
    ident = {
        # shift_formula "lerp" is left out: it is what every checkpoint made before the key existed used
        "cfg": {k: v for k, v in cfg.items() if k not in _NON_SEMANTIC
                and not (k == "shift_formula" and v == "lerp")},
        "protocol": protocol, "split": split.name, "unknown": list(split.unknown), "feeder": feeder,
        "samples": hashlib.sha256((dataset.root / "samples.tsv").read_bytes()).hexdigest(),
        "protocols": hashlib.sha256((dataset.root / "protocols.json").read_bytes()).hexdigest(),
        "joints_bytes": (dataset.root / "joints.npy").stat().st_size,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _param_groups(model, cfg: dict) -> list[dict]:
    """Per-tensor weight decay as the authors' optimiser: Linear_weight 1e-3, Feature_Mask 0, else 1e-4."""
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if "Linear_weight" in name:
            wd = cfg["weight_decay_linear"]
        elif "Mask" in name:
            wd = cfg["weight_decay_mask"]
        else:
            wd = cfg["weight_decay"]
        groups.setdefault(float(wd), []).append(p)
    return [{"params": ps, "weight_decay": wd} for wd, ps in groups.items()]


def _write_history(path: Path, history: list[dict]) -> None:
    from star_repro.io import write_text_atomic

    lines = ["\t".join(HISTORY_COLUMNS)]
    for h in history:
        test = "" if h["test_acc"] is None else f"{h['test_acc']:.6f}"  # epochs without a test pass stay empty
        lines.append(f"{h['epoch']}\t{h['lr']:.6g}\t{h['loss']:.6f}\t{h['train_acc']:.6f}\t{test}")
    write_text_atomic(path, "\n".join(lines) + "\n")


def select_data(dataset, protocol: str, split) -> dict:
    """Training and evaluation samples and their known-class targets; training goes through the leak gate."""
    import numpy as np

    from star_repro.data.splits import training_indices

    if len(dataset) and int(dataset.labels.max()) >= split.num_classes:
        raise StarReproError(f"{dataset.root}: labels up to {int(dataset.labels.max())} but split {split.name} "
                             f"has {split.num_classes} classes")
    prot = dataset.protocol(protocol)
    train_idx = training_indices(dataset.labels, prot["train"], split)
    test_all = np.asarray(prot["test"], np.int64)
    test_idx = test_all[split.is_known(dataset.labels[test_all])]
    return {
        "train_idx": train_idx, "train_y": split.known_position(dataset.labels[train_idx]),
        "test_idx": test_idx, "test_y": split.known_position(dataset.labels[test_idx]),
    }


def _detect_feeder(dataset, cfg: dict) -> str:
    if cfg["feeder"] != "auto":
        return cfg["feeder"]
    return "pku" if any(v for v in dataset.videos) else "ntu"


def _log(msg: str, enabled: bool) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)


def pretrain(processed_dir: str | Path, protocol: str, split, cfg: Mapping, out_dir: str | Path,
             device: str = "cpu", progress: bool = True, *, threads: int | None = None) -> dict:
    """Pretrain Shift-GCN on the known classes; writes model.pt, config.json, metrics.json, history.tsv and
    checkpoints/epoch-{k}.pt into `out_dir`. Returns the metrics.

    torch's thread count and determinism flags are set for the run and restored afterwards.
    """
    import torch

    from star_repro.training.common import restored_torch_flags

    threads_before = torch.get_num_threads()
    try:
        with restored_torch_flags():
            return _pretrain(processed_dir, protocol, split, cfg, out_dir, device, progress, threads)
    finally:
        torch.set_num_threads(threads_before)


def _pretrain(processed_dir, protocol, split, cfg, out_dir, device, progress, threads) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from star_repro.data.dataset import ProcessedDataset
    from star_repro.io import save_torch_atomic, write_json_atomic
    from star_repro.models.shiftgcn import ShiftGCN, count_parameters, unit_channels
    from star_repro.models.temporal_shift import apply_position_grad_rule, set_raw_position_grad
    from star_repro.training import common
    from star_repro.training.feeder import EpochBatchSampler, SkeletonDataset, worker_init

    t_start = time.perf_counter()
    cfg = resolve_config(cfg)
    out_dir = Path(out_dir)
    ctx = common.init_distributed(device)
    n_threads = common.set_threads(threads, ctx.local_world_size)
    common.set_deterministic(cfg["deterministic"])
    common.set_precision(cfg["precision"])
    talk = progress and ctx.is_main

    dataset = ProcessedDataset(processed_dir)
    feeder = _detect_feeder(dataset, cfg)
    data = select_data(dataset, protocol, split)
    num_class = len(split.known)
    if len(data["train_idx"]) < cfg["batch_size"]:
        raise StarReproError(f"pretrain: {len(data['train_idx'])} known-class training samples in "
                             f"{dataset.root} ({protocol}), fewer than batch_size={cfg['batch_size']}")
    if len(data["test_idx"]) == 0:
        raise StarReproError(f"pretrain: no known-class test samples in {dataset.root} ({protocol})")
    passthrough = feeder == "pku"
    common_args = dict(window=cfg["window"], rot_theta=cfg["rot_theta"], seed=cfg["seed"], passthrough=passthrough)
    train_ds = SkeletonDataset(dataset.joints, None, data["train_idx"], data["train_y"], train=True,
                               p_interval=cfg["p_interval_train"], random_rot=cfg["random_rot"], **common_args)
    test_ds = SkeletonDataset(dataset.joints, None, data["test_idx"][ctx.rank::ctx.world_size],
                              data["test_y"][ctx.rank::ctx.world_size], train=False,
                              p_interval=cfg["p_interval_test"], random_rot=False, **common_args)
    sampler = EpochBatchSampler(len(train_ds), cfg["batch_size"], shuffle=True, drop_last=True, seed=cfg["seed"],
                                rank=ctx.rank, world_size=ctx.world_size)

    common.seed_everything(cfg["seed"])
    model = ShiftGCN(num_class, num_point=dataset.joints.shape[3], num_person=dataset.joints.shape[4],
                     width=cfg["width"], shift_formula=cfg["shift_formula"])
    set_raw_position_grad(model, True)  # the sign rule is applied after gradients are summed over processes
    if ctx.distributed:
        model = common.convert_sync_batchnorm(model, ctx.device)
    model.to(ctx.device)
    optimizer = torch.optim.SGD(_param_groups(model, cfg), lr=cfg["base_lr"], momentum=cfg["momentum"],
                                nesterov=cfg["nesterov"])

    fingerprint = _fingerprint(cfg, dataset, protocol, split, feeder)
    ckpts = common.CheckpointDir(out_dir / "checkpoints", keep=cfg["keep_checkpoints"])
    history: list[dict] = []
    # time and throughput accumulate over resumed invocations (kept in the checkpoint), so a stage that resumes
    # a finished or interrupted run still reports what the training cost
    start_epoch, prior = 0, {"train_time_s": 0.0, "wall_time_s": 0.0, "samples_seen": 0, "loop_time_s": 0.0}
    state = ckpts.latest(max_epoch=cfg["epochs"], fingerprint=fingerprint)
    common.barrier(ctx)  # every process has read before any file is removed
    if state is None and ckpts.list() and ctx.is_main:
        stale = ckpts.clear()
        _log(f"pretrain: removed {stale} checkpoint(s) in {ckpts.root} that this run cannot continue (other "
             f"settings or data, or beyond epochs={cfg['epochs']}); starting afresh", talk)
    common.barrier(ctx)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        common.set_rng_state(state["rng"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        prior = {k: type(v)(state.get(k, v)) for k, v in prior.items()}
        _log(f"pretrain: resuming from {ckpts.path(start_epoch)} (epoch {start_epoch}/{cfg['epochs']})", talk)

    net = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                                      broadcast_buffers=False)
    if cfg["compile"]:
        net = torch.compile(net)
    loss_fn = torch.nn.CrossEntropyLoss()
    test_bs = max(1, (cfg["test_batch_size"] or cfg["batch_size"]) // ctx.world_size)
    label = f"{Path(processed_dir).name}/{protocol}/{split.name}"
    _log(f"pretrain {label}: {len(train_ds)} training and {len(data['test_idx'])} test samples of {num_class} "
         f"known classes, feeder {feeder}, width {cfg['width']}, {count_parameters(model)} parameters, "
         f"{ctx.world_size} process(es) on {ctx.device}, {n_threads} thread(s)", talk)

    def loader(ds, epoch: int, batch_sampler=None, batch_size=None):
        gen = torch.Generator().manual_seed(int(cfg["seed"]) * 1_000_003 + epoch)
        kwargs = dict(num_workers=cfg["num_workers"], worker_init_fn=worker_init, generator=gen,
                      pin_memory=ctx.device.type == "cuda")
        if batch_sampler is not None:
            return DataLoader(ds, batch_sampler=batch_sampler, **kwargs)
        return DataLoader(ds, batch_size=batch_size, shuffle=False, **kwargs)

    train_time = prior["train_time_s"]
    samples_seen, loop_time = prior["samples_seen"], prior["loop_time_s"]
    for epoch in range(start_epoch, cfg["epochs"]):
        t_epoch = time.perf_counter()
        lr = common.step_lr(cfg["base_lr"], epoch, cfg["steps"], cfg["lr_decay"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        net.train()
        # running sums stay on the device: reading them every step would wait for the GPU every step
        loss_acc = torch.zeros((), dtype=torch.float64, device=ctx.device)
        correct_acc = torch.zeros((), dtype=torch.int64, device=ctx.device)
        count = 0.0
        bar = tqdm(loader(train_ds, epoch, batch_sampler=sampler), total=len(sampler), leave=False,
                   file=sys.stderr, unit="batch", disable=None if talk else True,
                   desc=f"pretrain {label} {epoch + 1}/{cfg['epochs']}")
        for step, (x, y, _) in enumerate(bar):
            x = x.to(ctx.device, non_blocking=True)
            y = y.to(ctx.device, non_blocking=True)
            with common.autocast(ctx.device, cfg["precision"]):
                logits = net(x)
                loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            apply_position_grad_rule(model)
            optimizer.step()
            loss_acc += loss.detach().double() * len(y)
            correct_acc += (logits.detach().argmax(1) == y).sum()
            count += len(y)
            if step % 20 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{float(loss_acc) / count:.3f}", acc=f"{int(correct_acc) / count:.3f}")
        bar.close()
        loss_sum, correct = float(loss_acc), float(correct_acc)
        loop_time += time.perf_counter() - t_epoch
        loss_sum, correct, count = common.all_reduce_sum([loss_sum, correct, count], ctx)
        samples_seen += int(count)

        test_acc = None
        if (epoch + 1) % cfg["eval_every"] == 0 or epoch + 1 == cfg["epochs"]:
            net.eval()
            t_correct = t_count = 0.0
            with torch.no_grad():
                for x, y, _ in loader(test_ds, epoch, batch_size=test_bs):
                    logits = model(x.to(ctx.device))
                    t_correct += float((logits.argmax(1).cpu() == y).sum())
                    t_count += len(y)
            t_correct, t_count = common.all_reduce_sum([t_correct, t_count], ctx)
            test_acc = t_correct / t_count
        train_time += time.perf_counter() - t_epoch
        record = {"epoch": epoch + 1, "lr": lr, "loss": loss_sum / count, "train_acc": correct / count,
                  "test_acc": test_acc}
        history.append(record)
        if ctx.is_main:
            ckpts.save(epoch + 1, {
                "epoch": epoch + 1, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(), "rng": common.rng_state(), "history": history,
                "fingerprint": fingerprint, "train_time_s": train_time, "samples_seen": samples_seen,
                "loop_time_s": loop_time, "wall_time_s": prior["wall_time_s"] + time.perf_counter() - t_start,
            })
            _write_history(out_dir / "history.tsv", history)
        _log(f"pretrain {label}: epoch {epoch + 1}/{cfg['epochs']} lr {lr:.4g} loss {record['loss']:.4f} "
             f"train top-1 {record['train_acc']:.4f}"
             + (f" known-class test top-1 {test_acc:.4f}" if test_acc is not None else "") + " "
             f"({time.perf_counter() - t_epoch:.1f} s)", talk)
        common.barrier(ctx)

    final = history[-1]
    best = max((h for h in history if h["test_acc"] is not None), key=lambda h: h["test_acc"])
    wall = prior["wall_time_s"] + time.perf_counter() - t_start
    metrics = {
        "known_top1": final["test_acc"],
        "selection": "last",
        "best_known_top1_test_selected": best["test_acc"],
        "best_epoch_test_selected": best["epoch"],
        "final_train_loss": final["loss"],
        "final_train_acc": final["train_acc"],
        "epochs": cfg["epochs"],
        "num_class": num_class,
        "train_samples": int(len(train_ds)),
        "test_samples": int(len(data["test_idx"])),
        "wall_time_s": round(wall, 3),
        "train_time_s": round(train_time, 3),
        "train_samples_per_s": round(samples_seen / loop_time, 2) if samples_seen else None,
        "world_size": ctx.world_size,
    }
    if ctx.is_main:
        state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_torch_atomic(state_dict, out_dir / "model.pt")
        channels = [u[1] for u in unit_channels(cfg["width"], model.in_channels)]
        write_json_atomic(out_dir / "config.json", {
            "dataset": str(processed_dir), "protocol": protocol, "split": split.name,
            "known_classes": list(split.known), "unknown_classes": list(split.unknown), "num_class": num_class,
            "width": cfg["width"], "shift_formula": cfg["shift_formula"], "unit_channels": channels,
            "out_channels": model.out_channels,
            "parameters": count_parameters(model), "seed": cfg["seed"], "feeder": feeder, "config": cfg,
            "world_size": ctx.world_size, "device": ctx.device.type, "threads": n_threads,
            "fingerprint": fingerprint, "train_indices_sha256": hashlib.sha256(
                np.ascontiguousarray(data["train_idx"]).tobytes()).hexdigest(),
        })
        write_json_atomic(out_dir / "metrics.json", metrics)
        _write_history(out_dir / "history.tsv", history)
        _log(f"pretrain {label}: done, known-class top-1 {final['test_acc']:.4f} after {cfg['epochs']} epochs, "
             f"{wall:.1f} s -> {out_dir / 'model.pt'}", talk)
    common.barrier(ctx)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """By hand or under torchrun: `torchrun --nproc_per_node 2 -m star_repro.training.pretrain ...`."""
    import argparse

    from star_repro.data.splits import ClassSplit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processed", required=True, help="processed dataset folder (data/processed/{ds})")
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--split-name", required=True)
    ap.add_argument("--num-classes", type=int, required=True)
    ap.add_argument("--unknown", required=True, help="comma-separated unknown class indices (0-based)")
    ap.add_argument("--config", required=True, help="JSON file with the pretrain settings")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = json.loads(Path(args.config).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"pretrain: error: {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        split = ClassSplit(args.split_name, args.num_classes, [int(u) for u in args.unknown.split(",") if u])
        pretrain(args.processed, args.protocol, split, cfg, args.out, device=args.device,
                 progress=not args.no_progress, threads=args.threads)
    except StarReproError as exc:
        print(f"pretrain: error: {exc}", file=sys.stderr)
        return 2
    finally:
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
        except Exception:  # pragma: no cover - best effort at exit
            pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
