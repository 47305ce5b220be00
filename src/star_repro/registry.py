"""The stage registry: one definition of every pipeline stage, read by both engines.

`build_stages(params)` turns params.yaml (datasets × protocols × splits × experiments) into concrete stages.
The Snakefile creates one rule per stage; `dvc.yaml` is rendered from the same list (`render_dvc_yaml`) and
committed; `star-repro dag --check` fails when the committed file is stale. Each stage lists the exact params
keys it reads; `registry.stage_params` gives the stage nothing else.

How each engine sees those keys: Snakemake compares them as a rule parameter; DVC reads one small file per stage,
`data/stage_params/<stage>.json` (exactly the stage's keys), written from params.yaml by the `stage_params` stage (upstream of all others),
`stage_params`. DVC parses a params file once per stage that names it, so tracking params.yaml itself cost a
parse of the whole file (and a walk of every key) per stage: most of `dvc status`'s time on the demo.

The same file carries the sha256 of each source file the stage runs (`CODE_KEY`), and in dvc.yaml only the
`stage_params` stage names the source files. A code change still reruns exactly the stages that run that code,
because their files change, but dvc.yaml and dvc.lock no longer list ~1,200 source files stage by stage: a third
of dvc.lock's lines, which DVC parsed (twice) and hashed on every `status` and `repro --dry`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from star_repro.config import experiment_runs, for_dataset, load_params, subset
from star_repro.errors import ParamsError
from star_repro.reporting.figures import figure_plan
from star_repro.training.released_backbone import released_path

# Which raw family folder each dataset reads (NTU-60 and NTU-120 share the official archives).
RAW_FAMILY = {"ntu60": "ntu", "ntu120": "ntu", "pku1": "pku1"}
# Descriptions: NTU-60 reads the first 60 classes of the NTU-120 cache (one place for each description).
CACHE_DATASET = {"ntu60": "ntu120", "ntu120": "ntu120", "pku1": "pku1"}
LIGHT = {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0}
# DVC's view of the params: one file per stage holding exactly its keys (see the module docstring)
STAGE_PARAMS_DIR = "data/stage_params"
STAGE_PARAMS_STAGE = "stage_params"
# what decides those files besides params.yaml: the stage list and each stage's keys
STAGE_PARAMS_CODE = ["src/star_repro/registry.py", "src/star_repro/reporting/figures.py", "src/star_repro/config.py"]
# the key of a stage's params file that holds its source files' hashes (no params key starts with "_")
CODE_KEY = "_code_sha256"
SOURCE_PREFIX = "src/"


def is_source(dep: str) -> bool:
    return dep.startswith(SOURCE_PREFIX)


def job_resources(params: dict, kind: str, default: dict) -> dict:
    """Per-job resources for Snakemake from params `resources.<kind>` (scheduling only: no stage reads them,
    so changing them reruns nothing)."""
    return {**default, **(params.get("resources", {}).get(kind, {}))}


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]
    outs: list[str]
    params: list[str]
    metrics: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    # outputs kept out of the DVC cache and never deleted before a rerun (e.g. resumable checkpoints)
    persist: list[str] = field(default_factory=list)
    resources: dict[str, int] = field(default_factory=lambda: dict(LIGHT))
    local: bool = False  # light stages run on the submitting machine in cluster mode
    kind: str = ""

    def snakemake_outputs(self) -> list[str]:
        return self.outs + self.metrics + self.plots


def headline_path(run: str) -> str:
    """A run's headline metrics (fixed keys, `metrics.headline`): the DVC metrics, small and committed."""
    return f"metrics/runs/{run}.json"


def bookkeeping_path(stage: str) -> str:
    """A stage's bookkeeping (counts, timings): an output, git-ignored, kept out of DVC's metrics table."""
    return f"stats/{stage}.json"


def stage_params_path(stage: str) -> str:
    return f"{STAGE_PARAMS_DIR}/{stage}.json"


def raw_dir(params: dict, dataset: str) -> str:
    """Where a dataset's raw inputs are: the synthetic stand-in's own folder, or the user's family folder
    (NTU-60 and NTU-120 share the official archives under data/raw/ntu)."""
    if params["data"]["source"] == "synthetic":
        return f"data/synthetic/{dataset}"
    return f"{params['data']['raw_root']}/{RAW_FAMILY[dataset]}"


def embedding_slug(encoder: str) -> str:
    from star_repro.text.encoders import encoder_slug

    return encoder_slug(encoder)


def profile_of(params: dict) -> str:
    return params["profile"]


def description_set(params: dict, partition: int) -> tuple[str, list[str]]:
    """The description set `describe` reads for a partition, and the params keys that choose it: the profile's
    `descriptions: {6: set, 4: set, 2: set}` when it names the partition, else the global `descriptions.source`
    (the template, `descriptions.template`, is always global)."""
    prof = profile_of(params)
    by_part = params["profiles"][prof].get("descriptions")
    keys = ["descriptions"] + ([f"profiles.{prof}.descriptions"] if by_part else [])
    return set_for_partition(params["descriptions"], by_part, partition), keys


def set_for_partition(descriptions: dict, by_partition: dict | None, partition: int) -> str:
    """`by_partition[partition]` (keys may be numbers or strings) when given, else `descriptions.source`."""
    by_partition = by_partition or {}
    return by_partition.get(partition, by_partition.get(str(partition), descriptions["source"]))


def description_cells(params: dict) -> list[tuple[str, int]]:
    """(dataset, partition) of every describe/embed stage: those some experiment uses, sorted."""
    return sorted({(e["dataset"], int(e.get("partition", 6))) for e in params["experiments"].values()})


def pretrain_cells(params: dict) -> list[tuple[str, str, str]]:
    """(dataset, protocol, split) of every pretrain stage, in the order experiments first use them."""
    cells: list[tuple[str, str, str]] = []
    for e in params["experiments"].values():
        key = (e["dataset"], e["protocol"], e["split"])
        if key not in cells:
            cells.append(key)
    return cells


def build_stages(params: dict) -> list[Stage]:
    prof = profile_of(params)
    datasets = params["data"]["datasets"]
    stages: list[Stage] = []
    exps = params["experiments"]

    if params["data"]["source"] == "synthetic":
        for ds in datasets:
            section = "ntu" if RAW_FAMILY[ds] == "ntu" else "pku"
            stages.append(Stage(
                name=f"synth_{ds}", kind="synth",
                cmd=f"star-repro synth --dataset {ds}",
                deps=["src/star_repro/data/synth.py", "src/star_repro/data/motion.py",
                      "src/star_repro/data/motion_scripts.py"],
                outs=[f"data/synthetic/{ds}"],
                params=["synth.seed", "synth.size", "synth.motion", f"synth.{section}", "data.source"],
                resources=job_resources(params, "synth", {"threads": 1, "mem_mb": 2000, "runtime": 20, "gpu": 0}),
            ))

    for ds in datasets:
        fam = RAW_FAMILY[ds]
        stages.append(Stage(
            name=f"prepare_{ds}", kind="prepare",
            cmd=f"star-repro prepare --dataset {ds}",
            deps=[raw_dir(params, ds), "src/star_repro/data/prepare.py", "src/star_repro/data/fastparse.py",
                  "src/star_repro/data/ntu.py" if fam == "ntu" else "src/star_repro/data/pku.py"],
            outs=[f"data/processed/{ds}", bookkeeping_path(f"prepare_{ds}")],
            params=["data.source", "data.raw_root", "prepare", f"protocols.{ds}"],
            resources=job_resources(params, "prepare", {"threads": 2, "mem_mb": 4000, "runtime": 120, "gpu": 0}),
        ))

    # descriptions and embeddings: one per (dataset, partition) that some experiment uses
    for ds, part in description_cells(params):
        cache_ds = CACHE_DATASET[ds]
        desc = f"data/descriptions/{ds}_{part}part.json"
        desc_set, desc_keys = description_set(params, part)
        stages.append(Stage(
            name=f"describe_{ds}_{part}part", kind="describe",
            cmd=f"star-repro describe --dataset {ds} --partition {part}",
            deps=[f"prompts/cache/{desc_set}/{cache_ds}_{part}part.json",
                  f"prompts/authored/{cache_ds}.yaml", "prompts/templates.yaml"],
            outs=[desc],
            params=desc_keys,
            local=True,
        ))
        embed_cfg = params["profiles"][prof]["embed"]
        stem = f"data/embeddings/{ds}_{part}part_{embedding_slug(embed_cfg['encoder'])}"
        weights = embed_cfg.get("weights")
        weights_dep = [weights] if isinstance(weights, str) and weights not in ("random",) else []
        stages.append(Stage(
            name=f"embed_{ds}_{part}part", kind="embed",
            cmd=f"star-repro embed --dataset {ds} --partition {part}",
            deps=[desc, "src/star_repro/text/encoders.py", "src/star_repro/text/embed.py"] + weights_dep,
            outs=[f"{stem}.npz", f"{stem}.json"],
            params=[f"profiles.{prof}.embed"],
            resources=job_resources(params, "embed", {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0}),
        ))

    pre_cfg = params["profiles"][prof]["pretrain"]
    for ds, proto, split in pretrain_cells(params):
        out = f"data/pretrain/{ds}_{proto}_{split}"
        release = released_path(for_dataset(pre_cfg, ds), ds, proto, split)
        if release is not None:  # the authors' released backbone replaces pretraining for this cell
            stages.append(Stage(
                name=f"pretrain_{ds}_{proto}_{split}", kind="pretrain",
                cmd=f"star-repro pretrain --dataset {ds} --protocol {proto} --split {split}",
                deps=[release.as_posix(), "src/star_repro/models/shiftgcn.py",
                      "src/star_repro/training/released_backbone.py"],
                outs=[out, bookkeeping_path(f"pretrain_{ds}_{proto}_{split}")],
                params=[f"profiles.{prof}.pretrain", f"splits.{split}"],
            ))
            continue
        stages.append(Stage(
            name=f"pretrain_{ds}_{proto}_{split}", kind="pretrain",
            cmd=f"star-repro pretrain --dataset {ds} --protocol {proto} --split {split}",
            deps=[f"data/processed/{ds}", "src/star_repro/models/shiftgcn.py",
                  "src/star_repro/models/temporal_shift.py", "src/star_repro/training/pretrain.py",
                  "src/star_repro/training/feeder.py"],
            outs=[out, bookkeeping_path(f"pretrain_{ds}_{proto}_{split}")],
            params=[f"profiles.{prof}.pretrain", f"splits.{split}"],
            plots=[f"plots/pretrain_{ds}_{proto}_{split}.tsv"],
            persist=[f"data/checkpoints/pretrain_{ds}_{proto}_{split}"],
            resources=job_resources(params, "pretrain", {"threads": 1, "mem_mb": 4000, "runtime": 600, "gpu": 1}),
        ))

    for run, exp, seed in experiment_runs(params):
        ds, proto, split, part = exp["dataset"], exp["protocol"], exp["split"], int(exp.get("partition", 6))
        method = exp.get("method", "star")
        enc = params["profiles"][prof]["embed"]["encoder"]
        emb = f"data/embeddings/{ds}_{part}part_{embedding_slug(enc)}.npz"
        pre = f"data/pretrain/{ds}_{proto}_{split}"
        section = "star" if method == "star" else f"baselines.{method}"
        exp_keys = [f"experiments.{exp['name']}", f"splits.{split}", f"profiles.{prof}.{section}"]
        if method == "star":
            code = ["src/star_repro/models/star.py", "src/star_repro/models/losses.py",
                    "src/star_repro/training/star_train.py", "src/star_repro/training/star_cfg.py"]
        else:
            code = ["src/star_repro/training/baseline_train.py", "src/star_repro/models/baselines/common.py",
                    f"src/star_repro/models/baselines/{method}.py"]
            code += {"jpose": ["src/star_repro/models/baselines/revise.py", "src/star_repro/data/verb_noun.yaml"],
                     "synse": ["src/star_repro/models/baselines/cada_vae.py", "src/star_repro/data/verb_noun.yaml"],
                     }.get(method, [])
        stages.append(Stage(
            name=f"train_{run}", kind="train",
            cmd=f"star-repro train --experiment {exp['name']} --seed {seed}",
            deps=[f"data/processed/{ds}", pre, emb] + code,
            outs=[f"runs/{run}/train"],
            params=exp_keys,
            plots=[f"plots/train_{run}.tsv"],
            persist=[f"data/checkpoints/train_{run}"],
            resources=job_resources(params, "train", {"threads": 1, "mem_mb": 4000, "runtime": 600, "gpu": 1}),
        ))
        stages.append(Stage(
            name=f"evaluate_{run}", kind="evaluate",
            cmd=f"star-repro evaluate --experiment {exp['name']} --seed {seed}",
            deps=[f"data/processed/{ds}", pre, emb, f"runs/{run}/train", "src/star_repro/metrics.py"]
            + (["src/star_repro/training/evaluate.py"] if method == "star" else code),
            outs=[f"runs/{run}/eval"],
            params=exp_keys,
            metrics=[headline_path(run)],
            plots=[f"plots/gamma_{run}.tsv"],
            resources=job_resources(params, "evaluate", {"threads": 1, "mem_mb": 4000, "runtime": 120, "gpu": 1}),
        ))

    def report_inputs(exp_names: list[str]) -> tuple[list[str], list[str]]:
        names = [n for n in params["experiments"] if n in set(exp_names)]
        runs = [f"runs/{run}/eval" for run, exp, _ in experiment_runs(params) if exp["name"] in names]
        keys = [f"experiments.{n}" for n in names]
        keys += sorted({f"splits.{exps[n]['split']}" for n in names})
        return runs, keys + ["profile", "data.source"]

    for table in range(2, 8):
        members = [n for n, e in exps.items() if table in e["tables"]]
        if table in (6, 7):  # the variants are compared with the full model of their cell
            cells = {(exps[n]["dataset"], exps[n]["protocol"], exps[n]["split"]) for n in members}
            members += [n for n, e in exps.items() if e.get("variant", "full") == "full"
                        and e.get("method", "star") == "star"
                        and (e["dataset"], e["protocol"], e["split"]) in cells and n not in members]
        runs, keys = report_inputs(members)
        stages.append(Stage(
            name=f"table{table}", kind="tables",
            cmd=f"star-repro tables --table {table}",
            deps=runs + ["src/star_repro/reporting/tables.py", "src/star_repro/reporting/paper_numbers.yaml"],
            outs=[f"results/table{table}.csv", f"results/table{table}.md"],
            params=keys,
            local=True,
        ))
    for fname, _fn, extra in figure_plan(params):
        members = list(extra)
        if fname.startswith("fig3_m_"):
            members += [n for n, e in exps.items() if "fig3" in e["tables"] and n.startswith(extra[0] + "_m")]
        runs, keys = report_inputs(members)
        if fname.startswith("fig3_m_"):
            keys.append(f"profiles.{prof}.star.m")
        stages.append(Stage(
            name=f"figure_{fname[:-4]}", kind="figures",
            cmd=f"star-repro figures --only {fname}",
            deps=runs + ["src/star_repro/reporting/figures.py"],
            outs=[f"results/{fname}"],
            params=keys + ["figures"],
            local=True,
            resources={"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
        ))
    _check_unique(stages)
    return stages


def _check_unique(stages: list[Stage]) -> None:
    seen: dict[str, str] = {STAGE_PARAMS_STAGE: "(DVC's params stage)"}
    for st in stages:
        if st.name in seen:
            raise ValueError(f"duplicate stage name {st.name}")
        for o in st.outs + st.metrics:
            if o in seen:
                raise ValueError(f"output {o} of {st.name} is also an output of {seen[o]}")
            seen[o] = st.name
        seen[st.name] = st.name


def stages_by_name(params: dict) -> dict[str, Stage]:
    return {s.name: s for s in build_stages(params)}


def stage_params(params_path, stage_name: str) -> dict:
    """The params a stage may read: exactly the keys the registry declares for it."""
    params = load_params(params_path)
    for stage in build_stages(params):
        if stage.name == stage_name:
            return subset(params, stage.params)
    raise ParamsError(f"no stage named {stage_name!r} in the pipeline built from {params_path}")


def source_sha256(path: str) -> str:
    import hashlib
    from pathlib import Path

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ValueError(f"stage registry: source file {path} listed as a stage dependency cannot be read: "
                         f"{exc.strerror or exc}") from None


def stage_params_files(params: dict, sha256=source_sha256) -> dict[str, str]:
    """{path: text} of DVC's per-stage params files: each holds exactly the keys its stage reads (what
    `registry.stage_params` gives the stage) and, under CODE_KEY, the hash of each source file it runs, so the
    file changes exactly when one of those keys or files does. Paths are relative to the project root (the
    working directory of both engines)."""
    import json

    from star_repro.config import subset

    hashes: dict[str, str] = {}
    out = {}
    for st in build_stages(params):
        doc = subset(params, st.params)
        for d in st.deps:
            if is_source(d) and d not in hashes:
                hashes[d] = sha256(d)
        code = {d: hashes[d] for d in st.deps if is_source(d)}
        if code:
            doc = {**doc, CODE_KEY: code}
        out[stage_params_path(st.name)] = json.dumps(doc, sort_keys=True, indent=1) + "\n"
    return out


def render_dvc_yaml(params: dict) -> str:
    """dvc.yaml as flat literal stages (no templating), sorted by name: a stable, reviewable file.

    The first stage writes the per-stage params files from params.yaml (tracked whole, so `dvc status` names the
    key that changed); every other stage depends on its own file instead of naming params.yaml keys."""
    import yaml

    stages = build_stages(params)
    sources = sorted({d for st in stages for d in st.deps if is_source(d)} - set(STAGE_PARAMS_CODE))
    entries: dict[str, Any] = {STAGE_PARAMS_STAGE: {
        "cmd": "star-repro dag --stage-params",
        "deps": list(STAGE_PARAMS_CODE) + sources,
        "params": [{"params.yaml": None}],
        "outs": [STAGE_PARAMS_DIR],
    }}
    for st in stages:
        entry: dict[str, Any] = {"cmd": st.cmd,
                                 "deps": [stage_params_path(st.name)] + [d for d in st.deps if not is_source(d)]}
        outs: list[Any] = []
        for o in st.outs:
            outs.append(o)
        for p in st.persist:
            outs.append({p: {"persist": True, "cache": False}})
        entry["outs"] = outs
        if st.metrics:
            entry["metrics"] = [{m: {"cache": False}} for m in st.metrics]
        if st.plots:
            entry["plots"] = [{p: {"cache": False}} for p in st.plots]
        entries[st.name] = entry
    doc = {"stages": {name: entries[name] for name in sorted(entries)}}
    header = ("# GENERATED from the stage registry (src/star_repro/registry.py) and params.yaml by\n"
              "# `star-repro dag --write`. Do not edit by hand: `star-repro dag --check` fails when this is stale.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, width=120)
