"""Command-line entries of the pipeline stages (what dvc.yaml and the Snakefile call).

Each entry finds its stage in the registry, takes exactly the params keys declared there
(`registry.stage_params`), calls the library, and writes its metrics/plots files where the registry says.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path


# Pooled backbone features shared by the baselines of one split (content-addressed; not a declared output).
FEATURE_CACHE = Path("data/cache/features")


def _common(p) -> None:
    p.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")


def _device_arg(p) -> None:
    p.add_argument("--device", default=os.environ.get("STAR_REPRO_DEVICE", "auto"),
                   help="cpu, cuda, cuda:N or auto (CUDA when available); not an experiment parameter "
                        "(default: $STAR_REPRO_DEVICE or auto)")


def register(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic stand-ins of a raw dataset family (embedded default)",
                       description="Generates NTU-60/120 (.skeleton text in official-looking zip archives) or "
                       "PKU-MMD Phase I (long sequences, label and split files) stand-ins, deterministic from "
                       "synth.seed, into data/synthetic/<family>.")
    p.add_argument("--dataset", required=True, choices=["ntu60", "ntu120", "pku1"])
    _common(p)
    p.set_defaults(handler=run_synth)

    p = sub.add_parser("prepare", help="parse, denoise and normalise raw skeletons into memory-mappable arrays",
                       description="Reads the raw archives/folders (or the synthetic stand-ins) exactly as the "
                       "published CTR-GCN (NTU) and AimCLR (PKU-MMD) procedures, writes data/processed/<dataset>.")
    p.add_argument("--dataset", required=True, choices=["ntu60", "ntu120", "pku1"])
    p.add_argument("--export", choices=["npz"], help="also write the CTR-GCN/AimCLR .npz layout per protocol")
    _common(p)
    p.set_defaults(handler=run_prepare)

    p = sub.add_parser("describe", help="write the part descriptions of a dataset from the cache (offline)")
    p.add_argument("--dataset", required=True, choices=["ntu60", "ntu120", "pku1"])
    p.add_argument("--partition", required=True, type=int, choices=[2, 4, 6])
    _common(p)
    p.set_defaults(handler=run_describe)

    p = sub.add_parser("embed", help="text embeddings of class names and part descriptions")
    p.add_argument("--dataset", required=True, choices=["ntu60", "ntu120", "pku1"])
    p.add_argument("--partition", required=True, type=int, choices=[2, 4, 6])
    _common(p)
    _device_arg(p)
    p.set_defaults(handler=run_embed)

    p = sub.add_parser("pretrain", help="pretrain Shift-GCN on the known classes of a split (resumable)")
    p.add_argument("--dataset", required=True, choices=["ntu60", "ntu120", "pku1"])
    p.add_argument("--protocol", required=True)
    p.add_argument("--split", required=True)
    _common(p)
    _device_arg(p)
    p.set_defaults(handler=run_pretrain)

    for name, fn, text in (("train", run_train, "train one experiment (STAR or a baseline; resumable)"),
                           ("evaluate", run_evaluate, "evaluate one trained experiment (ZSL, GZSL, γ sweep)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--experiment", required=True, help="a key of `experiments` in params.yaml")
        p.add_argument("--seed", type=int, default=1)
        _common(p)
        _device_arg(p)
        p.set_defaults(handler=fn)

    p = sub.add_parser("tables", help="Tables 2–7 (CSV + Markdown) from run outputs, beside the paper's numbers")
    p.add_argument("--table", type=int, required=True, choices=range(2, 8), help="which table (2..7)")
    _common(p)
    p.add_argument("--runs", default="runs")
    p.add_argument("--out", default="results")
    p.set_defaults(handler=run_tables)

    p = sub.add_parser("figures", help="Figures 3–5 (PNG) from run outputs")
    p.add_argument("--only", required=True, help="the figure file to draw, e.g. fig3_gamma_ntu60_xsub_55_5.png")
    _common(p)
    p.add_argument("--runs", default="runs")
    p.add_argument("--out", default="results")
    p.set_defaults(handler=run_figures)


def _stage(args, name: str) -> dict:
    from star_repro.registry import stage_params

    return stage_params(args.params, name)


def _write_json(path: str, obj) -> None:
    from star_repro.io import write_json_atomic

    write_json_atomic(path, obj)


def _copy(src: Path, dst: str) -> None:
    from star_repro.io import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def run_synth(args) -> int:
    from star_repro.data import synth
    from star_repro.errors import StarReproError

    p = _stage(args, f"synth_{args.dataset}")
    if p["data"]["source"] != "synthetic":
        raise StarReproError("data.source is not 'synthetic'; the synth stage only makes the embedded stand-ins")
    out = Path("data/synthetic") / args.dataset
    t0 = time.time()
    if args.dataset.startswith("ntu"):
        m = synth.write_ntu(out, args.dataset, p["synth"], p["synth"]["seed"], keep_samples=False)
    else:
        m = synth.write_pku(out, p["synth"], p["synth"]["seed"])
    n = m["counts"].get("samples", m["counts"].get("clips"))
    print(f"synth {args.dataset} ({synth.synth_size(p['synth'])} size): wrote {n} samples to {out} "
          f"in {time.time() - t0:.1f} s")
    return 0


def run_prepare(args) -> int:
    from star_repro.data import prepare
    from star_repro.registry import bookkeeping_path, raw_dir

    name = f"prepare_{args.dataset}"
    p = _stage(args, name)
    raw = Path(raw_dir(p, args.dataset))
    out = Path("data/processed") / args.dataset
    cfg = p["prepare"]
    protocols = p["protocols"][args.dataset]
    if args.dataset.startswith("ntu"):
        found = prepare.discover_ntu_inputs(raw, args.dataset)
        if not found["sources"]:
            from star_repro.errors import StarReproError

            raise StarReproError(f"no NTU archives or extracted folder in {raw} (expected "
                                 f"{', '.join(found['archives'])}); run `star-repro doctor` to see where files go")
        metrics = prepare.prepare_ntu(args.dataset, found["sources"], out, protocols,
                                      missing_list=found["missing_list"], on_error=cfg["on_error"],
                                      workers=cfg["workers"])
    else:
        metrics = prepare.prepare_pku(raw, out, protocols, on_error=cfg["on_error"], workers=cfg["workers"],
                                      arccos=cfg["pku_arccos"])
    _write_json(bookkeeping_path(name), metrics)
    if args.export == "npz":
        for proto in protocols:
            prepare.export_npz(out, proto, Path("data/export") / f"{args.dataset}_{proto}.npz")
    return 0


def run_describe(args) -> int:
    from star_repro.text.descriptions import describe

    p = _stage(args, f"describe_{args.dataset}_{args.partition}part")
    out = Path("data/descriptions") / f"{args.dataset}_{args.partition}part.json"
    describe(args.dataset, args.partition, chosen_descriptions(p, args.partition), out)
    return 0


def chosen_descriptions(p: dict, partition: int) -> dict:
    """The describe stage's params block {source, template}, with the profile's set for this partition when the
    registry declared one (`registry.description_set` chose it; the stage sees only its declared keys)."""
    from star_repro.registry import set_for_partition

    (by_part,) = [prof.get("descriptions") for prof in p.get("profiles", {}).values()] or [None]
    return {**p["descriptions"], "source": set_for_partition(p["descriptions"], by_part, partition)}


def run_embed(args) -> int:
    from star_repro.text.embed import embed_from_params, embedding_paths

    p = _stage(args, f"embed_{args.dataset}_{args.partition}part")
    section = dict(_profile_section(p, "embed"))
    if args.device != "auto" or "device" not in section:
        section["device"] = args.device
    npz, _json = embedding_paths(args.dataset, args.partition, section["encoder"])
    result = embed_from_params(section, Path("data/descriptions") / f"{args.dataset}_{args.partition}part.json",
                               npz, Path("data/embeddings/cache"))
    print(f"embed {args.dataset} {args.partition}-part: {result}")
    return 0


def run_tables(args) -> int:
    from star_repro.reporting.tables import write_tables

    params = _stage(args, f"table{args.table}")
    written = write_tables(params, Path(args.runs), Path(args.out), args.table)
    print(f"tables: wrote {len(written)} files to {args.out}/")
    return 0


def run_figures(args) -> int:
    from star_repro.reporting.figures import write_figures

    params = _stage(args, f"figure_{Path(args.only).stem}")
    written = write_figures(params, Path(args.runs), Path(args.out), only=args.only)
    print(f"figures: wrote {len(written)} files to {args.out}/")
    return 0


def _profile_section(p: dict, section: str) -> dict:
    """The single profile's section in a stage's params subset (the registry declared only the active one)."""
    (prof,) = p["profiles"].values()
    node = prof
    for part in section.split("."):
        node = node[part]
    return node


def _class_split(p: dict, split_name: str):
    from star_repro.data.classes import classes_of
    from star_repro.data.splits import ClassSplit

    cfg = p["splits"][split_name]
    return ClassSplit.from_params(split_name, cfg, len(classes_of(cfg["dataset"])))


def _publish(work: Path, out: Path, files: list[str]) -> None:
    """Copy a finished stage's files from its persistent work folder into the declared output folder, atomically."""
    from star_repro.io import atomic_dir

    with atomic_dir(out) as tmp:
        for f in files:
            src = work / f
            if src.exists():
                shutil.copyfile(src, tmp / f)


def run_pretrain(args) -> int:
    from star_repro.config import for_dataset
    from star_repro.training.pretrain import pretrain
    from star_repro.registry import bookkeeping_path
    from star_repro.training.released_backbone import import_released, released_path

    name = f"pretrain_{args.dataset}_{args.protocol}_{args.split}"
    p = _stage(args, name)
    cfg = for_dataset(_profile_section(p, "pretrain"), args.dataset)
    split = _class_split(p, args.split)
    release = released_path(cfg, args.dataset, args.protocol, args.split)
    if release is not None:  # pretrain.source: authors, and the authors released this cell's backbone
        from star_repro.io import atomic_dir

        with atomic_dir(Path("data/pretrain") / f"{args.dataset}_{args.protocol}_{args.split}") as tmp:
            result = import_released(release, args.dataset, args.protocol, split, cfg, tmp)
        _write_json(bookkeeping_path(name), result)
        print(f"pretrain {args.dataset} {args.protocol} {args.split}: imported the authors' {release} "
              f"(sha256 {result['sha256'][:12]}…)")
        return 0
    # The work folder (checkpoints, resumable) is not a declared output, so no engine deletes it on failure;
    # the finished files are then published into the declared output folder.
    work = Path("data/checkpoints") / name
    result = pretrain(Path("data/processed") / args.dataset, args.protocol, split, cfg, work,
                      device=resolve_device(args.device))
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 publishes
        return 0
    _publish(work, Path("data/pretrain") / f"{args.dataset}_{args.protocol}_{args.split}",
             ["model.pt", "config.json", "metrics.json", "history.tsv"])
    _write_json(bookkeeping_path(name), result)
    _copy(work / "history.tsv", f"plots/{name}.tsv")
    return 0


def _experiment(args, kind: str):
    name = f"{kind}_{args.experiment}_seed{args.seed}"
    p = _stage(args, name)
    exp = p["experiments"][args.experiment]
    method = exp.get("method", "star")
    section = "star" if method == "star" else f"baselines.{method}"
    from star_repro.config import merge

    cfg = merge(_profile_section(p, section), exp.get("overrides", {}))
    cfg["seed"] = args.seed
    cfg["partition"] = int(exp.get("partition", 6))
    (cfg["profile"],) = p["profiles"]
    return name, p, exp, cfg


def _experiment_inputs(p: dict, exp: dict) -> dict:
    ds, proto, split, part = exp["dataset"], exp["protocol"], exp["split"], int(exp.get("partition", 6))
    return {"processed": Path("data/processed") / ds,
            "backbone": Path("data/pretrain") / f"{ds}_{proto}_{split}",
            "split": _class_split(p, split), "protocol": proto, "dataset": ds, "partition": part}


def run_train(args) -> int:
    name, p, exp, cfg = _experiment(args, "train")
    inputs = _experiment_inputs(p, exp)
    emb = _embeddings_path(args, exp)
    run_dir = Path("runs") / f"{args.experiment}_seed{args.seed}"
    work = Path("data/checkpoints") / name
    method = exp.get("method", "star")
    if method == "star":
        from star_repro.training.star_train import train_star

        train_star(inputs["processed"], inputs["protocol"], inputs["split"], emb, inputs["backbone"], cfg, work,
                   device=resolve_device(args.device), feature_cache=FEATURE_CACHE)
    else:
        from star_repro.training.baseline_train import train_baseline

        train_baseline(method, inputs["processed"], inputs["protocol"], inputs["split"], emb, inputs["backbone"],
                       cfg, work, device=resolve_device(args.device), feature_cache=FEATURE_CACHE)
    _publish(work, run_dir / "train", ["model.pt", "config.json", "history.tsv", "selection.json"])
    _copy(work / "history.tsv", f"plots/{name}.tsv")
    return 0


def _embeddings_path(args, exp: dict) -> Path:
    """The embeddings file the registry wired into this experiment's stage (one naming rule, in the registry)."""
    from star_repro.config import load_params
    from star_repro.registry import stages_by_name

    st = stages_by_name(load_params(args.params))[f"train_{args.experiment}_seed{args.seed}"]
    (emb,) = [d for d in st.deps if d.startswith("data/embeddings/")]
    return Path(emb)


def run_evaluate(args) -> int:
    name, p, exp, cfg = _experiment(args, "evaluate")
    inputs = _experiment_inputs(p, exp)
    emb = _embeddings_path(args, exp)
    run_dir = Path("runs") / f"{args.experiment}_seed{args.seed}"
    method = exp.get("method", "star")
    if method == "star":
        from star_repro.training.evaluate import evaluate_star as evaluate_fn
    else:
        from star_repro.training.baseline_train import evaluate_baseline as evaluate_fn
    from star_repro.io import atomic_dir

    with atomic_dir(run_dir / "eval") as tmp:
        metrics = evaluate_fn(run_dir / "train", inputs["processed"], inputs["protocol"], inputs["split"], emb,
                              inputs["backbone"], cfg, tmp, device=resolve_device(args.device),
                              feature_cache=FEATURE_CACHE)
    from star_repro.io import write_text_atomic
    from star_repro.metrics import headline
    from star_repro.registry import headline_path

    # in the headline's own key order (ZSL, S, U, H, ...): DVC's tables show the columns in file order
    write_text_atomic(headline_path(f"{args.experiment}_seed{args.seed}"),
                      json.dumps(headline(metrics), indent=2) + "\n")
    _copy(run_dir / "eval" / "gamma_sweep.tsv", f"plots/gamma_{args.experiment}_seed{args.seed}.tsv")
    return 0
