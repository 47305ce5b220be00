"""params.yaml: loading, schema validation (errors name the key), and per-stage views.

A stage sees only the params keys the registry declares for it (`stage_params`), so the keys DVC and Snakemake
track are exactly the keys the stage can read.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from star_repro.errors import ParamsError
from star_repro.text.yaml_lines import UniqueKeyLoader

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")
PROFILES = ("demo", "paper", "official-code")


def _format_path(path: Iterable[Any]) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


# libyaml's loader when PyYAML has it (params.yaml is read by every stage, and the pure-Python loader took
# ~0.4 s), refusing duplicate keys
_YamlLoader = UniqueKeyLoader


@lru_cache(maxsize=1)
def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_YamlLoader)


def validate(params: Mapping, source: str = "params.yaml") -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = []
        for err in errors[:20]:
            lines.append(f"  {_format_path(err.absolute_path)}: {err.message}")
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise ParamsError(f"{source} does not match the schema ({SCHEMA_PATH.name}):\n" + "\n".join(lines) + more)
    _check_cross_references(params, source)


def _check_cross_references(params: Mapping, source: str) -> None:
    from star_repro.data.classes import classes_of

    for name, split in params["splits"].items():
        n = len(classes_of(split["dataset"]))
        bad = [u for u in split["unknown"] if not 0 <= u < n]
        if bad:
            raise ParamsError(f"{source}: splits.{name}.unknown: classes {bad} outside 0..{n - 1} of {split['dataset']}")
    from star_repro.training.star_cfg import resolve_star_cfg

    for prof, sections in params["profiles"].items():
        _check_profile_inputs(prof, sections, params["data"]["datasets"], source)
        if prof == "official-code":  # the profile that must equal the authors' code keeps float32, uncompiled
            pre = sections["pretrain"]
            for ds_cfg in [pre, *(pre.get("by_dataset") or {}).values()]:
                if ds_cfg.get("precision", "fp32") != "fp32" or ds_cfg.get("compile", False):
                    raise ParamsError(f"{source}: profiles.official-code.pretrain: precision must be fp32 and "
                                      f"compile false (they change the numbers), got precision="
                                      f"{ds_cfg.get('precision', 'fp32')!r}, compile={ds_cfg.get('compile', False)!r}")
        for ds in params["data"]["datasets"]:
            resolve_star_cfg({**sections["star"], "seed": 1, "partition": 6, "profile": prof}, ds,
                             path=f"{source}: profiles.{prof}.star")
    for name, exp in params["experiments"].items():
        split = params["splits"].get(exp["split"])
        if split is None:
            raise ParamsError(f"{source}: experiments.{name}.split: no split named {exp['split']!r} in `splits`")
        if split["dataset"] != exp["dataset"]:
            raise ParamsError(f"{source}: experiments.{name}: split {exp['split']} belongs to {split['dataset']}, "
                              f"not {exp['dataset']}")
        if exp["protocol"] not in params["protocols"][exp["dataset"]]:
            raise ParamsError(f"{source}: experiments.{name}.protocol: {exp['protocol']!r} is not a protocol of "
                              f"{exp['dataset']} (have {sorted(params['protocols'][exp['dataset']])})")
        if exp["dataset"] not in params["data"]["datasets"]:
            raise ParamsError(f"{source}: experiments.{name}.dataset: {exp['dataset']} is not in data.datasets")
    _check_experiment_overrides(params, source)
    _check_report_references(params, source)


def _check_experiment_overrides(params: Mapping, source: str) -> None:
    """An experiment's `overrides` go through the same checks as the active profile's section they patch (STAR:
    star_cfg; baselines: the schema's `baseline` ranges), so a bad override fails at load, naming its key."""
    import jsonschema

    from star_repro.training.star_cfg import resolve_star_cfg

    prof = params["profiles"][params["profile"]]
    baseline_validator = None
    for name, exp in params["experiments"].items():
        overrides = exp.get("overrides")
        if not overrides:
            continue
        where = f"experiments.{name}.overrides"
        method = exp.get("method", "star")
        if method == "star":
            resolve_star_cfg({**merge(prof["star"], overrides), "seed": 1, "partition": exp.get("partition", 6),
                              "profile": params["profile"]}, exp["dataset"], path=f"{source}: {where}")
            continue
        if baseline_validator is None:
            baseline_validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/baseline",
                                                                  "$defs": _schema()["$defs"]})
        merged = merge(prof["baselines"].get(method, {}), overrides)
        errors = sorted(baseline_validator.iter_errors(merged), key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            err = errors[0]
            raise ParamsError(f"{source}: {where}.{_format_path(err.absolute_path)}: {err.message}")


# What each figure of `figures` draws: the experiment itself plus these suffixed companions (reporting/figures.py).
_FIGURE_COMPANIONS = {"main": ("",), "tsne": ("", "_no_prompts"), "confusion": ("",)}


def _check_report_references(params: Mapping, source: str) -> None:
    """Every experiment a figure or table will read exists: a figure naming a missing experiment, a `fig3`
    run that no Figure 3 draws, or a Table 6/7 variant without the full STAR model of its cell is an error
    naming the key here, not a failure of the reporting stage later."""
    exps = params["experiments"]
    for kind, names in params["figures"].items():
        for i, base in enumerate(names):
            for suffix in _FIGURE_COMPANIONS[kind]:
                if base + suffix not in exps:
                    why = f" (figure 4 compares {base} with it)" if suffix else ""
                    raise ParamsError(f"{source}: figures.{kind}[{i}]: no experiment named {base + suffix!r} in "
                                      f"`experiments`{why}")
    for name, exp in exps.items():
        if "fig3" in exp["tables"]:
            if not any(name.startswith(f"{b}_m") for b in params["figures"]["main"]):
                raise ParamsError(f"{source}: experiments.{name}.tables: fig3 runs are named <figure base>_m<k> "
                                  f"for a base in figures.main {params['figures']['main']}")
            m = (exp.get("overrides") or {}).get("m")
            if not isinstance(m, int) or isinstance(m, bool) or m < 1:
                raise ParamsError(f"{source}: experiments.{name}.overrides.m: a fig3 run sets the number of "
                                  f"prompts m (an integer >= 1), got {m!r}")
        for table in (6, 7):
            if table in exp["tables"] and exp.get("variant", "full") != "full":
                cell = (exp["dataset"], exp["protocol"], exp["split"])
                if not any(e.get("variant", "full") == "full" and e.get("method", "star") == "star"
                           and (e["dataset"], e["protocol"], e["split"]) == cell for e in exps.values()):
                    raise ParamsError(f"{source}: experiments.{name}.tables: table {table} compares variant "
                                      f"{exp.get('variant')!r} with the full STAR model of its cell {cell}, and "
                                      "no experiment is that model")


def _check_profile_inputs(prof: str, sections: Mapping, datasets: Iterable[str], source: str) -> None:
    """A profile's description sets per partition and its pretrain source for each dataset (the schema checks
    only the top-level key, not a `by_dataset` override; named keys in every error)."""
    import re

    from star_repro.training.released_backbone import SOURCES

    for part, name in (sections.get("descriptions") or {}).items():
        if str(part) not in ("6", "4", "2"):
            raise ParamsError(f"{source}: profiles.{prof}.descriptions: key {part!r} is not a partition (6, 4, 2)")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ParamsError(f"{source}: profiles.{prof}.descriptions.{part}: expected a description set name "
                              f"such as imported-star or openai, got {name!r}")
    pre = sections["pretrain"]
    for ds in datasets:
        effective = for_dataset(pre, ds)
        if effective.get("source", "train") not in SOURCES:
            key = f"by_dataset.{ds}.source" if "source" in ((pre.get("by_dataset") or {}).get(ds) or {}) else "source"
            raise ParamsError(f"{source}: profiles.{prof}.pretrain.{key}: expected one of {list(SOURCES)}, got "
                              f"{effective.get('source')!r}")
    pinned = pre.get("released_sha256") or {}
    if not isinstance(pinned, Mapping) or not all(isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)
                                                   for v in pinned.values()):
        raise ParamsError(f"{source}: profiles.{prof}.pretrain.released_sha256: expected file name -> 64 "
                          "lowercase hex digits")


def load_params(path: str | Path = "params.yaml") -> dict:
    """Parsed and validated params; a stage asks several times, so one parse per file version is kept."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ParamsError(f"{path} not found (run from the project root or pass --params)") from None
    return copy.deepcopy(_load_params_cached(str(path.resolve()), st.st_mtime_ns, st.st_size, str(path)))


def load_yaml_file(path: str | Path, shown: str | Path | None = None) -> Any:
    """A settings YAML file, parsed; syntax errors and duplicate keys are `ParamsError`s naming file and line.
    The Snakefile runs this on its config files too (Snakemake's own loader keeps a duplicate's last value)."""
    shown = Path(shown or path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{shown} not found (run from the project root or pass --params)") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start}): expected UTF-8") from None
    try:
        return yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark else str(shown)
        raise ParamsError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


@lru_cache(maxsize=4)
def _load_params_cached(resolved: str, mtime_ns: int, size: int, shown: str) -> dict:
    path = Path(shown)
    params = load_yaml_file(resolved, shown)
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    validate(params, str(path))
    return params


def get_key(params: Mapping, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ParamsError(f"params key {dotted!r} not found (missing {part!r})")
        node = node[part]
    return node


def subset(params: Mapping, keys: Iterable[str]) -> dict:
    """A nested dict holding only `keys` (dotted paths) of `params`."""
    out: dict = {}
    for dotted in keys:
        value = get_key(params, dotted)
        parts = dotted.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(value)
    return out


def merge(base: Mapping, override: Mapping) -> dict:
    """Recursive dict merge; `override` wins. Used for experiment overrides on a profile."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def for_dataset(cfg: Mapping, dataset: str) -> dict:
    """A profile section with its optional `by_dataset: {<dataset>: {...overrides}}` applied (e.g. PKU clips
    stored at 64 frames)."""
    cfg = dict(cfg)
    overrides = cfg.pop("by_dataset", None) or {}
    return merge(cfg, overrides.get(dataset, {}))


def experiment_runs(params: Mapping) -> list[tuple[str, dict, int]]:
    """(run name, experiment, seed) for every experiment × seed, in params order."""
    runs = []
    for name, exp in params["experiments"].items():
        for seed in exp.get("seeds", [1]):
            runs.append((f"{name}_seed{seed}", exp | {"name": name}, seed))
    return runs


def fingerprint(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
