"""`star-repro bench paper`: the rehearsal of the paper-scale DAG on one device, and what it implies.

Measured, in one run, on synthetic NTU-60 (written by `synth`, processed by `prepare`, xsub, split 55/5):
  (a) Shift-GCN pretraining with the paper recipe (params `profiles.paper.pretrain`: batch 64, window 64, width 1,
      the loader's workers, augmentation) for a fixed number of steps: samples/s, the fraction of each step spent
      waiting for the next batch, peak GPU memory and utilisation (CUDA only), and inference samples/s;
  (b) STAR training (uncached: backbone + head, as with augmentation) and evaluation at paper size;
  (c) text embedding strings/s with CLIP ViT-L/14@336 (random weights: the speed does not depend on them);
  plus `prepare` files/s on this machine's CPUs.
Extrapolated (and labelled so): each stage's full schedule at the paper's sample counts (those of the paper-size
synthetic layout, `synth.size: paper`, which copies the real archives' structure), summed over the paper DAG
(`registry.build_stages` with `profile: paper`, `data.source: real`), and its wall time on 1, 4 and 16 GPUs by
list scheduling along the DAG's dependencies (critical path first).

The throughput does not depend on the dataset's size (a fixed number of steps over samples that sit in the page
cache, as the full 10 GB NTU-60 array does on a machine with enough memory), so the rehearsal writes only a few
thousand samples and fits in a few minutes of device time.
"""
from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from star_repro.errors import StarReproError

SPLIT = "ntu60_seen55_unseen5"
PROTOCOL = "xsub"
# Rehearsal sizes. `paper`: the paper recipe on a GPU (~5 minutes with the data); `tiny`: the same code path in
# seconds on a CPU (the test).
SIZES: dict[str, dict] = {
    "paper": {"ntu": {"subjects_per_class": 8, "replications": 2, "frames": [40, 150]},
              "pretrain": {}, "train_steps": 120, "eval_steps": 20, "star": "paper",
              "encoder": {"encoder": "clip:ViT-L-14-336", "weights": "random"}, "strings": 1024,
              "encode_batch": 64, "loader_workers": [8, 16], "loader_batches": 60, "variant_steps": 30},
    "tiny": {"ntu": {"subjects_per_class": 2, "replications": 1, "frames": [16, 24]},
             "pretrain": {"batch_size": 8, "window": 16, "width": 0.125, "num_workers": 0, "compile": False},
             "train_steps": 3, "eval_steps": 2,
             "star": {"name": "tiny", "width": 0.125, "attn_dim": 32, "heads": 4, "m": 10, "text_hidden": 32,
                      "text_dim": 384, "classes": 60, "batch": 4, "window": 16, "steps": 2},
             "encoder": {"encoder": "sbert:all-MiniLM-L6-v2"}, "strings": 8, "encode_batch": 8, "cpu_threads": 1,
             "loader_workers": [0], "loader_batches": 2, "variant_steps": 1, "try_compile": False},
}


# ------------------------------------------------------------------------------------------------ measuring

def _gpu_utilisation(dev) -> tuple[float | None, str]:
    if dev.type != "cuda":
        return None, "n/a on CPU"
    import torch

    try:
        return float(torch.cuda.utilization(dev)), "nvml, sampled at the end of the timed steps"
    except Exception as exc:  # pynvml absent or NVML unavailable: say so, do not guess
        return None, f"n/a ({type(exc).__name__}: {exc})"


def _training(cfg: dict, num_class: int, dev):
    """The pretraining step of `training.pretrain` for a resolved config: (model, step(x, y) -> loss), with the
    config's determinism, precision and compile settings applied (the caller restores torch's flags)."""
    import torch

    from star_repro.models.shiftgcn import ShiftGCN
    from star_repro.models.temporal_shift import apply_position_grad_rule
    from star_repro.training import common
    from star_repro.training import pretrain as P

    common.set_deterministic(cfg["deterministic"])
    common.set_precision(cfg["precision"])
    torch.manual_seed(cfg["seed"])
    model = ShiftGCN(num_class, width=cfg["width"], shift_formula=cfg["shift_formula"]).to(dev)
    opt = torch.optim.SGD(P._param_groups(model, cfg), lr=cfg["base_lr"], momentum=cfg["momentum"],
                          nesterov=cfg["nesterov"])
    net = torch.compile(model) if cfg["compile"] else model
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        with common.autocast(dev, cfg["precision"]):
            loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        apply_position_grad_rule(model)
        opt.step()
        return loss

    return model, step


def rehearse_pretrain(processed: Path, params: Mapping, size: dict, device: str) -> dict:
    """(a): the pretraining loop of `training.pretrain` (same feeder, sampler, model, optimiser groups and
    position-gradient rule) for a fixed number of steps, timing the wait for each batch apart from the step."""
    import torch
    from torch.utils.data import DataLoader

    from star_repro.data.dataset import ProcessedDataset
    from star_repro.data.splits import ClassSplit
    from star_repro.training import pretrain as P
    from star_repro.training.common import resolve_device
    from star_repro.training.feeder import EpochBatchSampler, SkeletonDataset, worker_init

    dev = resolve_device(device)
    cfg = P.resolve_config({**params["profiles"]["paper"]["pretrain"], **size["pretrain"]})
    split = ClassSplit.from_params(SPLIT, params["splits"][SPLIT], 60)
    ds = ProcessedDataset(processed)
    data = P.select_data(ds, PROTOCOL, split)
    common = dict(window=cfg["window"], rot_theta=cfg["rot_theta"], seed=cfg["seed"], passthrough=False)
    train_ds = SkeletonDataset(ds.joints, None, data["train_idx"], data["train_y"], train=True,
                               p_interval=cfg["p_interval_train"], random_rot=cfg["random_rot"], **common)
    test_ds = SkeletonDataset(ds.joints, None, data["test_idx"], data["test_y"], train=False,
                              p_interval=cfg["p_interval_test"], random_rot=False, **common)
    from star_repro.training import common

    model, train_step = _training(cfg, len(split.known), dev)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    kw = dict(num_workers=cfg["num_workers"], worker_init_fn=worker_init, pin_memory=dev.type == "cuda")

    def batches():
        epoch = 0
        while True:
            train_ds.set_epoch(epoch)
            sampler = EpochBatchSampler(len(train_ds), cfg["batch_size"], shuffle=True, drop_last=True,
                                        seed=cfg["seed"])
            sampler.set_epoch(epoch)
            yield from DataLoader(train_ds, batch_sampler=sampler, **kw)
            epoch += 1

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model.train()
    it = batches()
    waits, steps = [], []
    warmup = 2 + 3 * bool(cfg["compile"])  # compiling takes the first steps
    for k in range(warmup + size["train_steps"]):
        t0 = time.perf_counter()
        x, y, _ = next(it)
        t1 = time.perf_counter()
        train_step(x.to(dev, non_blocking=True), y.to(dev, non_blocking=True))
        sync()
        t2 = time.perf_counter()
        if k >= warmup:
            waits.append(t1 - t0)
            steps.append(t2 - t1)
    util, util_how = _gpu_utilisation(dev)
    peak_gpu = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else None
    model.eval()
    loader = DataLoader(test_ds, batch_size=cfg["batch_size"], shuffle=False, **kw)
    n_eval, t_eval = 0, 0.0
    with torch.no_grad():
        for k, (x, _, _) in enumerate(loader):
            if k >= size["eval_steps"] + 1:
                break
            t0 = time.perf_counter()
            with common.autocast(dev, cfg["precision"]):
                model(x.to(dev))
            sync()
            if k:  # the first batch warms up
                t_eval += time.perf_counter() - t0
                n_eval += len(x)
    wall = sum(waits) + sum(steps)
    wait_frac = np.array(waits) / (np.array(waits) + np.array(steps))
    loader_only = {str(w): loader_throughput(train_ds, cfg["batch_size"], w, size["loader_batches"])
                   for w in size["loader_workers"]}
    return {
        "device": str(dev), "batch": cfg["batch_size"], "window": cfg["window"], "width": cfg["width"],
        "num_workers": cfg["num_workers"], "deterministic": cfg["deterministic"], "precision": cfg["precision"],
        "compile": cfg["compile"], "steps": len(steps),
        "train_samples": len(train_ds), "test_samples": len(test_ds),
        "train_samples_per_s": round(cfg["batch_size"] * len(steps) / wall, 2),
        "compute_only_samples_per_s": round(cfg["batch_size"] * len(steps) / sum(steps), 2),
        "data_wait_fraction_mean": round(float(wait_frac.mean()), 4),
        "data_wait_fraction_p90": round(float(np.quantile(wait_frac, 0.9)), 4),
        "infer_samples_per_s": round(n_eval / t_eval, 2) if t_eval else None,
        "peak_gpu_mib": None if peak_gpu is None else round(peak_gpu, 1),
        "gpu_utilisation_pct": util, "gpu_utilisation_how": util_how,
        "loader_only_samples_per_s": loader_only,
    }


def loader_throughput(train_ds, batch: int, workers: int, n_batches: int) -> float:
    """Samples/s the feeder alone delivers (crop, resize, rotation in the workers; no model), after the first
    batch: the ceiling data loading puts on training."""
    from torch.utils.data import DataLoader

    from star_repro.training.feeder import EpochBatchSampler, worker_init

    sampler = EpochBatchSampler(len(train_ds), batch, shuffle=True, drop_last=True, seed=0)
    loader = DataLoader(train_ds, batch_sampler=sampler, num_workers=workers, worker_init_fn=worker_init)
    n, t0 = 0, None
    for k, (x, _, _) in enumerate(loader):
        if k == 0:
            t0 = time.perf_counter()
            continue
        n += len(x)
        if k >= n_batches:
            break
    return round(n / (time.perf_counter() - t0), 1) if n else 0.0


# Variants of one pretraining step, timed side by side on a device-resident batch (no loader): what each speed
# switch buys. Each entry overrides the configured pretrain settings (`deterministic`, `precision`, `compile`) or
# the implementation (`layout`: the GPU forms of models.shiftgcn, `geometry`: the temporal shift's); `numerics`
# says whether it changes the numbers (those stay off under the official-code profile).
STEP_VARIANTS: dict[str, dict] = {
    "as configured": {"numerics": "reference"},
    "cuDNN layout (before)": {"layout": False, "numerics": "same arithmetic, other kernels"},
    "shift geometry on host (before)": {"geometry": "host", "numerics": "identical"},
    "cuDNN layout, fp32 deterministic (before)": {"layout": False, "deterministic": True, "precision": "fp32",
                                                  "compile": False, "numerics": "same arithmetic, other kernels"},
    "fp32 deterministic": {"deterministic": True, "precision": "fp32", "compile": False,
                            "numerics": "reference arithmetic"},
    "fp32 + cudnn.benchmark": {"deterministic": False, "precision": "fp32", "compile": False,
                              "numerics": "may differ (algorithm choice)"},
    "tf32 + cudnn.benchmark": {"deterministic": False, "precision": "tf32", "compile": False,
                              "numerics": "differ (TF32 products)"},
    "bf16 + cudnn.benchmark": {"deterministic": False, "precision": "bf16", "compile": False,
                              "numerics": "differ (bf16 autocast)"},
    "tf32 + cudnn.benchmark + compile": {"deterministic": False, "precision": "tf32", "compile": True,
                                       "numerics": "differ (TF32, fused kernels)"},
    "bf16 + cudnn.benchmark + compile": {"deterministic": False, "precision": "bf16", "compile": True,
                                       "numerics": "differ (bf16, fused kernels)"},
}


def rehearse_step_variants(params: Mapping, size: dict, device: str, profile_path: Path | None = None,
                           only: list[str] | None = None) -> dict:
    """One Shift-GCN training step (forward, backward, position rule, SGD) under each STEP_VARIANTS switch, on a
    fixed random batch already on the device: samples/s compute-only, peak memory, and inference samples/s
    (eval mode, no gradient); plus, for the configured variant, torch.profiler tables of the ops that take the
    time in a training step and in an inference pass (written to `profile_path`)."""
    import torch

    from star_repro.models import shiftgcn as sg
    from star_repro.models import temporal_shift as ts
    from star_repro.training import common
    from star_repro.training import pretrain as P
    from star_repro.training.common import resolve_device

    dev = resolve_device(device)
    base = P.resolve_config({**params["profiles"]["paper"]["pretrain"], **size["pretrain"]})
    b, steps = base["batch_size"], size["variant_steps"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, 3, base["window"], 25, 2, generator=gen).to(dev)
    y = torch.randint(0, 55, (b,), generator=gen).to(dev)
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    saved = (ts.GEOMETRY, sg.FAST_CUDA_LAYOUT)
    out = {"batch": b, "window": base["window"], "width": base["width"], "steps": steps,
           "configured": {k: base[k] for k in ("deterministic", "precision", "compile")}, "variants": {}}
    try:
        profiled = False
        for name, v in STEP_VARIANTS.items():
            if only is not None and name not in only:
                continue
            cfg = {**base, **{k: v[k] for k in ("deterministic", "precision", "compile") if k in v}}
            if cfg["compile"] and not size.get("try_compile", True):
                continue
            ts.GEOMETRY = v.get("geometry", "auto")
            sg.FAST_CUDA_LAYOUT = v.get("layout", True)
            model, train_step = _training(cfg, 55, dev)

            def step():
                train_step(x, y)

            def infer():
                with torch.no_grad(), common.autocast(dev, cfg["precision"]):
                    model(x)

            try:
                row = {"numerics": v["numerics"], **{k: cfg[k] for k in ("deterministic", "precision", "compile")}}
                model.train()
                t0 = time.perf_counter()
                step()
                sync()
                row["first_step_s"] = round(time.perf_counter() - t0, 2)
                for _ in range(3):
                    step()
                if cuda:
                    sync()
                    torch.cuda.reset_peak_memory_stats(dev)
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                sync()
                dt = time.perf_counter() - t0
                row.update(samples_per_s=round(b * steps / dt, 1), ms_per_step=round(1000 * dt / steps, 2))
                if cuda:
                    row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2 ** 20, 1)
                model.eval()
                infer()
                sync()
                t0 = time.perf_counter()
                for _ in range(steps):
                    infer()
                sync()
                row["infer_samples_per_s"] = round(b * steps / (time.perf_counter() - t0), 1)
                if profile_path is not None and not profiled:  # the first variant timed
                    profiled = True
                    try:
                        model.train()
                        row["profile"] = str(_profile_steps({"training step": step, "inference": infer}, dev,
                                                            profile_path, model))
                    except Exception as exc:  # the profiler is optional; the timings above stand
                        row["profile"] = f"not written: {type(exc).__name__}: {str(exc)[:200]}"
            except Exception as exc:  # one switch failing (compile) must not lose the others
                row = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "numerics": v["numerics"]}
            out["variants"][name] = row
            del model, train_step
    finally:
        ts.GEOMETRY, sg.FAST_CUDA_LAYOUT = saved  # torch's flags: restored by the caller
    return out


def _profile_steps(runs: dict, dev, path: Path, model) -> Path:
    """Per run (name -> callable), the ops of three calls by self time on the device (CPU time on a CPU), as
    torch.profiler prints them; the model is in train mode for "training step" and eval mode otherwise."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    text = []
    for name, fn in runs.items():
        model.train(name == "training step")
        with profile(activities=acts) as prof:
            for _ in range(3):
                fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
        averages = prof.key_averages()
        for key in (("self_cuda_time_total", "self_device_time_total") if dev.type == "cuda"
                    else ("self_cpu_time_total",)):
            try:
                table = averages.table(sort_by=key, row_limit=25, max_name_column_width=60)
                break
            except (AttributeError, KeyError, ValueError):  # the key's name moved between torch versions
                continue
        else:
            key, table = "self_cpu_time_total", averages.table(sort_by="self_cpu_time_total", row_limit=25)
        text.append(f"torch.profiler, 3 x Shift-GCN {name} on {dev}, sorted by {key}\n{table}\n")
    path = Path(path)
    path.write_text("\n".join(text), encoding="utf-8")
    return path


def _prepare_data(workdir: Path, params: Mapping, size: dict, workers: int) -> tuple[Path, dict]:
    """Synthetic NTU-60 at the rehearsal's size through `synth` and `prepare`; their timings."""
    from star_repro.data import prepare, synth
    from star_repro.data.ntu import NTU_ARCHIVES, NTU_MISSING_LISTS

    cfg = copy.deepcopy(synth.DEMO_CFG)
    cfg["ntu"].update(size["ntu"])
    t0 = time.perf_counter()
    manifest = synth.write_ntu(workdir / "raw", "ntu60", cfg, 1, keep_samples=False)
    t1 = time.perf_counter()
    metrics = prepare.prepare_ntu("ntu60", [workdir / "raw" / a for a in NTU_ARCHIVES["ntu60"]],
                                  workdir / "processed", params["protocols"]["ntu60"],
                                  workdir / "raw" / NTU_MISSING_LISTS["ntu60"], "fail", workers, False)
    t2 = time.perf_counter()
    return workdir / "processed", {"samples": manifest["counts"]["samples"], "synth_s": round(t1 - t0, 2),
                                   "prepare_s": round(t2 - t1, 2), "prepare_workers": workers,
                                   "prepare_files_per_s": round(metrics["files"] / (t2 - t1), 1)}


PARTS = ("pretrain", "star", "embed", "step_variants")


def rehearse(device: str, size_name: str, workdir: Path, params: Mapping, out_json: Path | None = None,
             parts: list[str] | None = None, variants: list[str] | None = None) -> dict:
    """Everything measured, then the extrapolation; one JSON-able record. With `out_json`, the record so far is
    written after each part (a borrowed GPU's time limit must not lose what was measured)."""
    from star_repro.text.embed import bench_encoders
    from star_repro.training.star_train import bench_star

    if size_name not in SIZES:
        raise StarReproError(f"bench paper: --size must be one of {sorted(SIZES)}, got {size_name!r}")
    size = SIZES[size_name]
    t0 = time.perf_counter()
    if not device.startswith("cuda"):
        from star_repro.training.common import set_threads

        set_threads(size.get("cpu_threads"))  # $OMP_NUM_THREADS or the cores; tiny: 1 (no spinning threads)
    parts = list(PARTS if parts is None else parts)
    unknown = sorted(set(parts) - set(PARTS)) + sorted(set(variants or ()) - set(STEP_VARIANTS))
    if unknown:
        raise StarReproError(f"bench paper: unknown part(s) or variant(s) {unknown}; parts: {list(PARTS)}, "
                             f"variants: {list(STEP_VARIANTS)}")
    workers = min(8, os.cpu_count() or 1)
    processed, data = (_prepare_data(Path(workdir), params, size, workers) if "pretrain" in parts
                       else (None, {"skipped": "the pretrain part was not asked for"}))
    record = {"bench": "paper", "size": size_name, "device": device, "date_utc": time.strftime("%Y-%m-%d %H:%M",
                                                                                                 time.gmtime()),
              "machine": machine_description(device), "data": data}
    # each part on its own: on a borrowed GPU a failure in one (a missing package) must not lose the others
    measures = {
        "pretrain": lambda: rehearse_pretrain(processed, params, size, device),
        "star": lambda: bench_star((size["star"],), device=device)[0],
        "embed": lambda: bench_encoders(size["strings"], [size["encoder"]], device=device,
                                        batch_size=size["encode_batch"])[0],
        "step_variants": lambda: rehearse_step_variants(
            params, size, device, None if out_json is None else Path(out_json).with_suffix(".profile.txt"),
            variants),
    }
    from star_repro.training.common import restored_torch_flags

    for name, measure in measures.items():
        if name not in parts:
            continue
        with restored_torch_flags():
            record[name] = _attempt(measure)
        if out_json is not None:
            _write_partial(Path(out_json), record, t0)
    record["rehearsal_seconds"] = round(time.perf_counter() - t0, 1)
    if all(p in record for p in ("pretrain", "star", "embed")):
        record["extrapolation"] = extrapolate(record, params)
    return record


def _write_partial(out_json: Path, record: dict, t0: float) -> None:
    from star_repro.io import write_text_atomic

    partial = dict(record, rehearsal_seconds=round(time.perf_counter() - t0, 1), partial=True)
    write_text_atomic(out_json, json.dumps(partial, indent=1, sort_keys=True) + "\n")


def _attempt(measure) -> dict:
    """The measurement's record, or {"error": ...} saying why it is missing."""
    try:
        return measure()
    except Exception as exc:  # recorded, never estimated
        import traceback

        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}


def _rate(part: dict, key: str) -> float | None:
    v = part.get(key)
    return float(v) if v else None


def machine_description(device: str) -> dict:
    import platform

    import torch

    out = {"cpu_cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
           "host_cpu": platform.processor() or platform.machine()}
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
    try:
        out["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return out


# ------------------------------------------------------------------------------------------------ extrapolating

def paper_sample_counts(params: Mapping) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Labels of the training and test samples of every (dataset, protocol) at paper size: the paper-size
    synthetic layout (real archive structure; missing samples left out) through the params' protocols."""
    from star_repro.data import synth
    from star_repro.data.ntu import NTU_ARCHIVES
    from star_repro.data.splits import ntu_protocol_indices

    cfg = copy.deepcopy(synth.DEMO_CFG) | {"size": "paper"}
    motion, ntu = synth._section(cfg, "motion"), synth._section(cfg, "ntu")
    seed = int(params["synth"]["seed"])
    plans = {label: synth._ntu_class_plan_paper(seed, label, motion) for label in range(120)}
    out = {}
    for ds, n_classes in (("ntu60", 60), ("ntu120", 120)):
        missing = {n for a in NTU_ARCHIVES[ds] for n in synth._ntu_missing(seed, a, plans, ntu, "paper")}
        names = sorted(n for label in range(n_classes) for p in plans[label] for n in p.names if n not in missing)
        metas = [synth.parse_ntu_name(n) for n in names]
        meta = {k: np.array([m[k] for m in metas]) for k in ("setup", "camera", "subject", "replication")}
        labels = np.array([m["action"] - 1 for m in metas])
        for proto, pcfg in params["protocols"][ds].items():
            idx = ntu_protocol_indices(meta, pcfg)
            out[(ds, proto)] = {side: labels[idx[side]] for side in ("train", "test")}
    videos = synth._pku_plan(seed, synth.PAPER_PKU, motion)
    for proto in params["protocols"].get("pku1", {}):
        train, test = [], []
        for v in videos:
            for view in ("L", "M", "R"):
                is_train = v.side == "train" if proto == "xsub" else view != "M"
                (train if is_train else test).extend(label for label, _, _ in v.perfs)
        out[("pku1", proto)] = {"train": np.array(train), "test": np.array(test)}
    return out


def _known_counts(counts: dict, dataset: str, protocol: str, split_cfg: Mapping) -> tuple[int, int, int]:
    c = counts[(dataset, protocol)]
    unknown = np.array(sorted(split_cfg["unknown"]))
    n_train_known = int((~np.isin(c["train"], unknown)).sum())
    n_test_known = int((~np.isin(c["test"], unknown)).sum())
    return n_train_known, n_test_known, len(c["test"])


def stage_estimates(record: dict, params: Mapping) -> list[dict]:
    """Seconds of every stage of the paper DAG from the measured rates (extrapolations), or why not modelled."""
    from star_repro.config import merge
    from star_repro.data.classes import classes_of
    from star_repro.registry import build_stages

    p = copy.deepcopy(dict(params))
    p["profile"], p["data"]["source"] = "paper", "real"
    prof = p["profiles"]["paper"]
    counts = paper_sample_counts(p)
    pre, star, emb = record["pretrain"], record["star"], record["embed"]
    rates = {"pre_train": _rate(pre, "train_samples_per_s"), "pre_infer": _rate(pre, "infer_samples_per_s"),
             "star_train": _rate(star, "train_samples_per_s"), "star_eval": _rate(star, "eval_samples_per_s"),
             "embed": _rate(emb, "strings_per_s"), "prepare": _rate(record["data"], "prepare_files_per_s")}
    needs = {"pretrain": ("pre_train", "pre_infer"), "train": ("star_train", "star_eval", "pre_infer"),
             "evaluate": ("star_eval",), "embed": ("embed",), "prepare": ("prepare",)}
    rows = []
    for st in build_stages(p):
        args = st.cmd.split()
        opt = {args[i][2:]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
        est, basis = None, "not modelled: CPU-light (seconds to minutes)"
        missing = [k for k in needs.get(st.kind, ()) if rates[k] is None]
        if missing:
            basis = f"not modelled: rate(s) {missing} not measured in this run"
        elif st.kind == "pretrain":
            ds = opt["dataset"]
            pcfg = merge(dict(prof["pretrain"]), (prof["pretrain"].get("by_dataset") or {}).get(ds, {}))
            n_tr, n_te, _ = _known_counts(counts, ds, opt["protocol"], p["splits"][opt["split"]])
            evals = -(-int(pcfg["epochs"]) // int(pcfg.get("eval_every", 1)))
            est = pcfg["epochs"] * n_tr / pre["train_samples_per_s"] + evals * n_te / pre["infer_samples_per_s"]
            basis = (f"{pcfg['epochs']} epochs x {n_tr} known-class training samples at the measured "
                     f"{pre['train_samples_per_s']}/s + {evals} test passes x {n_te}")
        elif st.kind in ("train", "evaluate"):
            exp = p["experiments"][opt["experiment"]]
            ds = exp["dataset"]
            n_tr, n_te_known, n_te = _known_counts(counts, ds, exp["protocol"], p["splits"][exp["split"]])
            if st.kind == "evaluate":
                est = n_te / star["eval_samples_per_s"]
                basis = f"one pass over {n_te} test samples at STAR eval {star['eval_samples_per_s']}/s"
            elif exp.get("method", "star") == "star":
                scfg = prof["star"]["optimizer"]
                est = scfg["epochs"] * n_tr / star["train_samples_per_s"] + n_te / star["eval_samples_per_s"]
                basis = (f"{scfg['epochs']} epochs x {n_tr} known-class samples at STAR uncached "
                         f"{star['train_samples_per_s']}/s + one test pass")
            else:
                est = (n_tr + n_te) / pre["infer_samples_per_s"]
                basis = (f"baseline: one backbone feature pass over {n_tr + n_te} samples at "
                         f"{pre['infer_samples_per_s']}/s; its small model's training is not modelled")
        elif st.kind == "embed":
            ds = opt["dataset"]
            n_strings = len(classes_of(ds)) * (1 + int(opt["partition"]))
            est = n_strings / emb["strings_per_s"]
            basis = f"{n_strings} strings at {emb['strings_per_s']}/s"
        elif st.kind == "prepare" and opt["dataset"].startswith("ntu"):
            n = 56_880 if opt["dataset"] == "ntu60" else 114_480
            est = n / record["data"]["prepare_files_per_s"]
            basis = f"{n} files at the measured {record['data']['prepare_files_per_s']} files/s (CPU)"
        rows.append({"stage": st.name, "kind": st.kind, "gpu": int(st.resources.get("gpu", 0)),
                     "seconds": None if est is None else round(est, 1), "basis": basis,
                     "deps": st.deps, "outs": st.outs})
    return rows


def _dependencies(rows: list[dict]) -> list[set[int]]:
    """Stage i depends on stage j when one of i's deps is j's output or lies inside it."""
    owner = {}
    for j, r in enumerate(rows):
        for o in r["outs"]:
            owner[o.rstrip("/")] = j
    deps = []
    for r in rows:
        d = set()
        for path in r["deps"]:
            parts = path.rstrip("/").split("/")
            for k in range(len(parts), 0, -1):
                j = owner.get("/".join(parts[:k]))
                if j is not None:
                    d.add(j)
                    break
        deps.append(d)
    return deps


def schedule(rows: list[dict], gpus: int | None) -> float:
    """Makespan of the DAG with `gpus` GPUs (None: unlimited, i.e. the critical path): a GPU stage holds one
    GPU, the other stages run beside them; among ready stages the one with the longest remaining path starts
    first (list scheduling)."""
    import heapq

    deps = _dependencies(rows)
    dur = [r["seconds"] or 0.0 for r in rows]
    children: list[list[int]] = [[] for _ in rows]
    for i, d in enumerate(deps):
        for j in d:
            children[j].append(i)
    tail = [0.0] * len(rows)
    for i in reversed(_topological(deps)):
        tail[i] = dur[i] + max((tail[c] for c in children[i]), default=0.0)
    waiting = [len(d) for d in deps]
    ready = [(-tail[i], i) for i in range(len(rows)) if waiting[i] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    busy, t, end = 0, 0.0, 0.0
    limited = gpus is not None
    while ready or running:
        held = []
        while ready:
            item = heapq.heappop(ready)
            if rows[item[1]]["gpu"] and limited and busy >= gpus:
                held.append(item)
                continue
            busy += bool(rows[item[1]]["gpu"]) and limited
            heapq.heappush(running, (t + dur[item[1]], item[1]))
        for item in held:
            heapq.heappush(ready, item)
        t, i = heapq.heappop(running)
        end = max(end, t)
        busy -= bool(rows[i]["gpu"]) and limited
        for c in children[i]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (-tail[c], c))
    return end


def _topological(deps: list[set[int]]) -> list[int]:
    indeg = [len(d) for d in deps]
    children: list[list[int]] = [[] for _ in deps]
    for i, d in enumerate(deps):
        for j in d:
            children[j].append(i)
    stack = [i for i, k in enumerate(indeg) if k == 0]
    order = []
    while stack:
        i = stack.pop()
        order.append(i)
        for c in children[i]:
            indeg[c] -= 1
            if indeg[c] == 0:
                stack.append(c)
    if len(order) != len(deps):
        raise StarReproError("bench paper: the stage registry has a dependency cycle")
    return order


def extrapolate(record: dict, params: Mapping) -> dict:
    rows = stage_estimates(record, params)
    by_kind: dict[str, dict] = {}
    for r in rows:
        k = by_kind.setdefault(r["kind"], {"stages": 0, "seconds": 0.0, "not_modelled": 0})
        k["stages"] += 1
        if r["seconds"] is None:
            k["not_modelled"] += 1
        else:
            k["seconds"] = round(k["seconds"] + r["seconds"], 1)
    gpu_seconds = sum(r["seconds"] or 0.0 for r in rows if r["gpu"])
    one_backbone = next((r for r in rows if r["stage"] == f"pretrain_ntu60_{PROTOCOL}_{SPLIT}"), None)
    return {
        "label": "EXTRAPOLATION from the rates measured above; not a measurement",
        "one_ntu60_xsub_55_5_pretraining_hours": None if one_backbone is None
        else round(one_backbone["seconds"] / 3600, 2),
        "by_kind": by_kind,
        "gpu_hours": round(gpu_seconds / 3600, 1),
        "wall_hours": {"1_gpu": round(schedule(rows, 1) / 3600, 1), "4_gpus": round(schedule(rows, 4) / 3600, 1),
                       "16_gpus": round(schedule(rows, 16) / 3600, 1),
                       "critical_path": round(schedule(rows, None) / 3600, 1)},
        "stages": [{k: r[k] for k in ("stage", "kind", "gpu", "seconds", "basis")} for r in rows],
    }


def _v(part: dict, key: str):
    """A measured value for the Markdown, or MISSING with the reason."""
    return part[key] if key in part else f"MISSING ({part.get('error', 'not measured')})"


def _loader_text(pre: dict) -> str:
    rates = pre.get("loader_only_samples_per_s")
    if not rates:
        return f"MISSING ({pre.get('error', 'not measured')})"
    return ", ".join(f"{w}: {r}" for w, r in rates.items())


def markdown(record: dict) -> str:
    """The record as the Markdown tables docs/paper-scale.md cites."""
    skipped = {"error": "not asked for (--parts)"}
    pre, star, emb = (record.get(k, skipped) for k in ("pretrain", "star", "embed"))
    ex = record.get("extrapolation")
    m = record["machine"]
    lines = [f"Rehearsal `{record['size']}` on {record['device']} ({m.get('gpu', 'no GPU')}, {m['cpu_cores']} CPU "
             f"cores, torch {m['torch']}), {record['date_utc']} UTC, {record['rehearsal_seconds']} s in all.", "",
             "| measured | value |", "|---|---|",
             f"| prepare (CPU, {_v(record['data'], 'prepare_workers')} workers) | "
             f"{_v(record['data'], 'prepare_files_per_s')} files/s |",
             f"| Shift-GCN pretraining, batch {_v(pre, 'batch')}, window {_v(pre, 'window')}, "
             f"width {_v(pre, 'width')}, "
             f"{_v(pre, 'num_workers')} loader workers | {_v(pre, 'train_samples_per_s')} samples/s "
             f"({_v(pre, 'compute_only_samples_per_s')}/s without data waits) |",
             f"| fraction of a step waiting for data | mean {_v(pre, 'data_wait_fraction_mean')}, "
             f"p90 {_v(pre, 'data_wait_fraction_p90')} |",
             f"| peak GPU memory | {_v(pre, 'peak_gpu_mib')} MiB |",
             f"| GPU utilisation | {_v(pre, 'gpu_utilisation_pct')} ({_v(pre, 'gpu_utilisation_how')}) |",
             f"| Shift-GCN inference | {_v(pre, 'infer_samples_per_s')} samples/s |",
             f"| STAR training (uncached) / cached / evaluation | {_v(star, 'train_samples_per_s')} / "
             f"{_v(star, 'train_cached_samples_per_s')} / {_v(star, 'eval_samples_per_s')} samples/s |",
             f"| {_v(emb, 'encoder')} text embedding (weights: {_v(emb, 'weights')}) | "
             f"{_v(emb, 'strings_per_s')} strings/s |",
             f"| feeder alone (workers: samples/s) | "
             f"{_loader_text(pre)} |",
             ""]
    var = record.get("step_variants", {})
    if "variants" in var:
        lines += [f"One pretraining step on a device-resident batch (batch {var['batch']}, window {var['window']}, "
                  f"width {var['width']}, {var['steps']} timed steps), side by side:", "",
                  f"Configured (profiles.paper.pretrain): {var['configured']}.", "",
                  "| switch | training samples/s | ms/step | first step s | inference samples/s | peak MiB | "
                  "numerics |", "|---|---|---|---|---|---|---|"]
        for name, row in var["variants"].items():
            if "error" in row:
                lines.append(f"| {name} | MISSING ({row['error']}) | | | | | {row['numerics']} |")
            else:
                lines.append(f"| {name} | {row['samples_per_s']} | {row['ms_per_step']} | {row['first_step_s']} | "
                             f"{row['infer_samples_per_s']} | {row.get('peak_gpu_mib', 'n/a')} | "
                             f"{row['numerics']} |")
        lines.append("")
    elif var:
        lines += [f"Step variants: MISSING ({var.get('error', 'not measured')})", ""]
    if ex is None:
        return "\n".join(lines + ["Extrapolation: not made (it needs the pretrain, star and embed parts)."]) + "\n"
    lines += [
             f"**{ex['label']}**", "", "| stage kind | stages | hours (sum) | not modelled |", "|---|---|---|---|"]
    for kind, v in sorted(ex["by_kind"].items()):
        lines.append(f"| {kind} | {v['stages']} | {round(v['seconds'] / 3600, 2)} | {v['not_modelled']} |")
    w = ex["wall_hours"]
    lines += ["", f"One NTU-60 xsub 55/5 pretraining: {ex['one_ntu60_xsub_55_5_pretraining_hours']} h. "
                  f"GPU-hours of the whole DAG: {ex['gpu_hours']}. Wall time: 1 GPU {w['1_gpu']} h, 4 GPUs "
                  f"{w['4_gpus']} h, 16 GPUs {w['16_gpus']} h (critical path {w['critical_path']} h)."]
    return "\n".join(lines) + "\n"


def run(device: str, size_name: str, out_json: Path, params: Mapping, workdir: Path,
        parts: list[str] | None = None, variants: list[str] | None = None) -> dict:
    from star_repro.io import write_text_atomic

    record = rehearse(device, size_name, workdir, params, out_json, parts, variants)
    out_json = Path(out_json)
    write_text_atomic(out_json, json.dumps(record, indent=1, sort_keys=True) + "\n")
    write_text_atomic(out_json.with_suffix(".md"), markdown(record))
    return record
