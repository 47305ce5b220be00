"""The STAR experiment settings (`profiles.<profile>.star` in params.yaml, plus `seed`, `profile` and `partition`
injected by the stage): validation with errors that name the key, and per-dataset overrides.

Every key is required (no hidden defaults); `by_dataset: {ntu120: {...}}` may override any key for one dataset
(e.g. the code's 30 epochs on NTU-120, or no augmentation on PKU-MMD as its released feeder does).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from star_repro.errors import ParamsError

SECTION = "star"


def _num(lo=None, hi=None, lo_open=False, integer=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            return f"expected {'an integer' if integer else 'a number'}"
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"expected {'>' if lo_open else '≥'} {lo}"
        if hi is not None and v > hi:
            return f"expected ≤ {hi}"
        return None
    return check


def _enum(*values):
    def check(v):
        return None if v in values else f"expected one of {list(values)}"
    return check


def _bool(v):
    return None if isinstance(v, bool) else "expected true or false"


def _std(v):
    if v == "fan_in":
        return None
    return _num(0, lo_open=True)(v)


def _steps(v):
    if not isinstance(v, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v):
        return "expected a list of epoch numbers (integers ≥ 0)"
    return None


def _p_interval(v):
    if (not isinstance(v, list) or len(v) != 2 or any(_num(0, 1, lo_open=True)(x) for x in v) or v[0] > v[1]):
        return "expected [low, high] with 0 < low ≤ high ≤ 1"
    return None


def _gamma(v):
    if v in ("val", "test"):
        return None
    if isinstance(v, Mapping):
        bad = [k for k, x in v.items() if _num(0)(x)]
        return f"per-dataset values must be numbers ≥ 0 (bad: {bad})" if bad else None
    return None if _num(0)(v) is None else 'expected a number ≥ 0, "val", "test" or {dataset: number}'


def _grid(v):
    if not isinstance(v, list) or not v or any(_num(0)(x) for x in v):
        return "expected a non-empty list of numbers ≥ 0"
    return None


SPEC: dict[str, Any] = {
    "profile": lambda v: None if isinstance(v, str) and v else "expected the profile name",
    "seed": _num(0, integer=True),
    "partition": _enum(2, 4, 6),
    "part_pooling": _enum("correct", "released"),
    "heads": _num(1, integer=True),
    "m": _num(1, integer=True),
    "attn_dim": _num(1, integer=True),
    "text_hidden": _num(1, integer=True),
    "similarity": _enum("cosine", "dot"),
    "temperature": _num(0, lo_open=True),
    "ce_eps": _num(0),
    "sce_classes": _enum("all", "known"),
    "alpha": _num(0),
    "beta": _num(0),
    "use_mpce": _bool, "use_sce": _bool, "use_gce": _bool,
    "use_attention": _bool, "use_va_prompt": _bool, "use_sp_prompt": _bool,
    "text_control": _enum("none", "derange_unknown"),
    "bn_mode": _enum("drift", "frozen"),
    "init": {"va_prompt_std": _std, "w_std": _std, "sp_prompt_std": _std},
    "optimizer": {
        "lr": _num(0, lo_open=True), "lr_decay": _num(0, lo_open=True), "momentum": _num(0, 1),
        "nesterov": _bool, "weight_decay": _num(0), "steps": _steps, "epochs": _num(1, integer=True),
        "batch_size": _num(1, integer=True), "drop_last": _bool,
    },
    "augment": {
        "train": _bool, "test": _bool, "p_interval": _p_interval, "random_rot": _bool,
        "rot_theta": _num(0), "center_p": _num(0, 1, lo_open=True), "window": _num(4, integer=True),
        "pku_passthrough": _bool,
    },
    "selection": _enum("last", "val", "test"),
    "val_fraction": _num(0, 1, lo_open=True),
    "gamma": _gamma,
    "gamma_val_rate": lambda v: None if (_num(0)(v) is None and v < 1) else "expected a number in [0, 1)",
    "gamma_grid": _grid,
    "eval_batch_size": _num(1, integer=True),
    "cache_max_mb": _num(0),
    "num_workers": _num(0, integer=True),
}


def _merge(base: Mapping, over: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) \
            and k != "gamma" else copy.deepcopy(v)
    return out


def _check(spec: Mapping, cfg: Any, path: str) -> None:
    if not isinstance(cfg, Mapping):
        raise ParamsError(f"{path}: expected a mapping")
    missing = [k for k in spec if k not in cfg]
    if missing:
        raise ParamsError(f"{path}.{missing[0]}: required key is missing"
                          + (f" (also {missing[1:]})" if len(missing) > 1 else ""))
    extra = sorted(set(cfg) - set(spec))
    if extra:
        raise ParamsError(f"{path}.{extra[0]}: unknown key (expected one of {sorted(spec)})")
    for key, rule in spec.items():
        if isinstance(rule, Mapping):
            _check(rule, cfg[key], f"{path}.{key}")
        else:
            err = rule(cfg[key])
            if err:
                raise ParamsError(f"{path}.{key}: {err}, got {cfg[key]!r}")


def resolve_star_cfg(cfg: Mapping, dataset: str | None = None, path: str = SECTION) -> dict:
    """Apply `by_dataset[dataset]` overrides, then validate every key. Returns a plain resolved copy."""
    cfg = dict(cfg)
    by_ds = cfg.pop("by_dataset", None) or {}
    if not isinstance(by_ds, Mapping):
        raise ParamsError(f"{path}.by_dataset: expected a mapping of dataset -> overrides")
    if dataset is not None and dataset in by_ds:
        cfg = _merge(cfg, by_ds[dataset])
    _check(SPEC, cfg, path)
    if not (cfg["use_mpce"] or cfg["use_sce"] or cfg["use_gce"]):
        raise ParamsError(f"{path}: use_mpce, use_sce and use_gce are all false; at least one loss is needed")
    if not (cfg["use_mpce"] or cfg["use_gce"]):
        raise ParamsError(f"{path}: with only SCE the skeleton stream gets no gradient; enable use_mpce or use_gce")
    if cfg["attn_dim"] % cfg["heads"]:
        raise ParamsError(f"{path}.heads: attn_dim {cfg['attn_dim']} is not divisible by {cfg['heads']} heads")
    if cfg["augment"]["window"] % 4:
        raise ParamsError(f"{path}.augment.window: Shift-GCN needs a multiple of 4 frames, got "
                          f"{cfg['augment']['window']}")
    if isinstance(cfg["gamma"], Mapping):
        if dataset is None or dataset not in cfg["gamma"]:
            raise ParamsError(f"{path}.gamma: no value for dataset {dataset!r} (have {sorted(cfg['gamma'])})")
    return copy.deepcopy(cfg)


def gamma_setting(cfg: Mapping, dataset: str | None) -> float | str:
    g = cfg["gamma"]
    return float(g[dataset]) if isinstance(g, Mapping) else (g if isinstance(g, str) else float(g))


def uses_validation(cfg: Mapping) -> bool:
    return cfg["selection"] == "val" or cfg["gamma"] == "val"
