"""The authors' released Shift-GCN backbones in place of the pretraining stage (`pretrain.source: authors`).

The STAR authors trained one Shift-GCN per (dataset, protocol, known/unknown split) of Tables 2-4 and shared the
files outside their repositories (Google Drive / Baidu links in their README). Their configs name them
`{prefix}_ShiftGCN_joint_{protocol}_seen{S}_unseen{U}-81-{step}.pt` (STAR_SPEC §5.6). This module names the file a
split needs, checks it (its sha256 when params pin one; its classifier against the split's known classes) and
writes the folder `data/pretrain/{ds}_{protocol}_{split}/` that STAR and the baselines read, with
`source: authors` recorded so that every table row built on it is labelled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from star_repro.errors import StarReproError
from star_repro.io import sha256_file

SOURCES = ("train", "authors")
DEFAULT_DIR = "data/weights/shiftgcn"
# file-name prefix of each dataset in the authors' configs
PREFIX = {"ntu60": "ntu60", "ntu120": "ntu120", "pku1": "pkummdv1"}
# global step after the 82nd epoch, per (split, protocol), from the checkpoint names in the authors' configs
RELEASED_STEPS = {
    "ntu60_seen55_unseen5": {"xsub": 94136, "xview": 88396},
    "ntu60_seen48_unseen12": {"xsub": 82164, "xview": 77162},
    "ntu120_seen110_unseen10": {"xsub": 148010, "xset": 127920},
    "ntu120_seen96_unseen24": {"xsub": 128412, "xset": 111684},
    "pkuv1_seen46_unseen5": {"xsub": 43870, "xview": 33374},
    "pkuv1_seen39_unseen12": {"xsub": 37638, "xview": 28700},
}


def pretrain_source(cfg: Mapping) -> str:
    src = cfg.get("source", "train")
    if src not in SOURCES:
        raise StarReproError(f"pretrain.source: expected one of {list(SOURCES)}, got {src!r}")
    return src


def released_name(dataset: str, protocol: str, split: str) -> str | None:
    """The released checkpoint's file name for a cell, or None when the authors released none (e.g. the random
    re-splits of Table 5)."""
    step = RELEASED_STEPS.get(split, {}).get(protocol)
    if step is None:
        return None
    seen_unseen = split.split("_", 1)[1]
    return f"{PREFIX[dataset]}_ShiftGCN_joint_{protocol}_{seen_unseen}-81-{step}.pt"


def released_path(cfg: Mapping, dataset: str, protocol: str, split: str) -> Path | None:
    """Where the pipeline looks for a cell's released backbone when `pretrain.source: authors` (None: no release,
    the cell is pretrained here)."""
    if pretrain_source(cfg) != "authors":
        return None
    name = released_name(dataset, protocol, split)
    return None if name is None else Path(cfg.get("released_dir") or DEFAULT_DIR) / name


def import_released(path: str | Path, dataset: str, protocol: str, split, cfg: Mapping, out_dir: str | Path) -> dict:
    """Check a released Shift-GCN file and write model.pt, config.json and metrics.json into `out_dir`.

    Checks: the file exists; its sha256 equals `released_sha256[<file name>]` when params pin one; every
    parameter matches Shift-GCN at the profile's width; its classifier has one output per known class of the
    split (the authors pretrained on the known classes only), or one per class of the dataset (the size STAR's
    code builds, STAR_SPEC §5.6), which is dropped and recorded.
    """
    from star_repro.io import save_torch_atomic, write_json_atomic
    from star_repro.models.shiftgcn import ShiftGCN, load_authors_checkpoint, normalise_state_keys, read_state_dict
    from star_repro.training.pretrain import resolve_config

    path, out_dir = Path(path), Path(out_dir)
    if not path.is_file():
        raise StarReproError(f"{path}: the authors' released backbone for {dataset} {protocol} {split.name} is not "
                             f"there. Download `{path.name}` from the links in the STAR authors' README "
                             f"(github.com/cseeyangchen/STAR) into {path.parent}/, or set pretrain.source: train "
                             "to pretrain it here")
    sha = sha256_file(path)
    pinned = (cfg.get("released_sha256") or {}).get(path.name)
    if pinned is not None and pinned != sha:
        raise StarReproError(f"{path}: sha256 {sha}, but params pin {pinned} "
                             f"(pretrain.released_sha256.{path.name}); refusing a different file")
    train_cfg = resolve_config(cfg)  # the recipe; the route keys (source, released_dir, …) are dropped there
    state, where = read_state_dict(path, "released Shift-GCN checkpoint")
    state = normalise_state_keys(state)
    n_known, n_all = len(split.known), split.num_classes
    fc = state.get("fc.weight")
    if fc is None:
        raise StarReproError(f"{where}: no fc.weight: not a Shift-GCN classification checkpoint")
    rows = int(fc.shape[0])
    if rows not in (n_known, n_all):
        raise StarReproError(f"{where}: its classifier has {rows} outputs, but split {split.name} has {n_known} "
                             f"known classes (of {n_all}): this backbone was not pretrained for this split")
    # the profile's temporal-shift formula ("kernel" in official-code: the release was trained with that kernel)
    model = ShiftGCN(n_known, width=train_cfg["width"], shift_formula=train_cfg["shift_formula"])
    report = load_authors_checkpoint(model, state)
    save_torch_atomic({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      out_dir / "model.pt")
    feeder = train_cfg["feeder"] if train_cfg["feeder"] != "auto" else ("pku" if dataset == "pku1" else "ntu")
    release = {"file": path.name, "sha256": sha, "sha256_pinned": pinned is not None, "fc_outputs": rows,
               "fc_dropped": bool(report["dropped"])}
    write_json_atomic(out_dir / "config.json", {
        "source": "authors", "release": release, "dataset": dataset, "protocol": protocol, "split": split.name,
        "known_classes": list(split.known), "unknown_classes": list(split.unknown), "num_class": n_known,
        "width": train_cfg["width"], "shift_formula": train_cfg["shift_formula"], "out_channels": model.out_channels,
        "feeder": feeder, "config": train_cfg,
    })
    metrics = {"source": "authors", "file": path.name, "sha256": sha, "num_class": n_known, "fc_outputs": rows,
               "parameters": sum(p.numel() for p in model.parameters())}
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics
