"""Evaluating a trained STAR run: ZSL top-1, GZSL S/U/H with calibrated stacking, γ sweep, per-class accuracy,
confusion matrices, t-SNE inputs and provenance (docs/formats.md, `runs/{experiment}/`).

Accuracies are percentages (as the paper reports them). γ is applied on the raw similarity scale (cosine, or
dot product under `similarity: dot`). Its source is recorded: `fixed` (a number, e.g. paper Table 1), `val`
(the rule of `metrics.gamma_for_unknown_rate` on the held-out known-class validation samples), or
`test-selected` (best H over `gamma_grid` on the test set, what the authors' γ sweep amounts to).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from star_repro import metrics as M
from star_repro.errors import StarReproError
from star_repro.io import atomic_path, check_finite, save_npy_atomic, tsv_text, write_json_atomic, write_text_atomic
from star_repro.training.star_cfg import gamma_setting
from star_repro.training.star_train import (
    TTA_SEED_OFFSET, SkeletonFeed, _idx_hash, build_model, check_backbone_window, class_scores, embed_split,
    feature_store, load_backbone, prepare_run, torch_threads,
)


_tsv = tsv_text


_save_npy = save_npy_atomic


def _save_npz(path: Path, **arrays) -> None:
    check_finite(arrays, path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def evaluate_star(run_dir, processed_dir, protocol: str, split, embeddings_npz, backbone_dir, cfg: Mapping,
                  out_dir, device: str = "cpu", progress: bool = False, threads: int | None = None,
                  feature_cache=None) -> dict:
    """Evaluate `run_dir/model.pt` (written by `train_star`) and write every output into `out_dir`."""
    with torch_threads(threads):
        return _evaluate_star(run_dir, processed_dir, protocol, split, embeddings_npz, backbone_dir, cfg, out_dir,
                              device, progress, feature_cache)


def _evaluate_star(run_dir, processed_dir, protocol, split, embeddings_npz, backbone_dir, cfg, out_dir, device,
                   progress, feature_cache=None) -> dict:
    import torch

    from star_repro.provenance import write_provenance

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model_path, summary_path, config_path = run_dir / "model.pt", run_dir / "selection.json", run_dir / "config.json"
    for p in (model_path, summary_path, config_path):
        if not p.is_file():
            raise StarReproError(f"{p} is missing: run `star-repro train` for this experiment first")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    train_config = json.loads(config_path.read_text(encoding="utf-8"))
    if train_config.get("method", "star") != "star":
        raise StarReproError(f"{config_path}: run was trained with method {train_config.get('method')!r}, not STAR")
    run = prepare_run(processed_dir, protocol, split, embeddings_npz, cfg)
    cfg = run.cfg
    if summary.get("val_indices_sha256") != _idx_hash(run.val_idx):
        raise StarReproError(f"{summary_path}: the run was trained with another validation split than these "
                             "settings give (star.val_fraction, seed, selection or gamma changed); retrain it")
    from star_repro.training.common import resolve_device

    dev = resolve_device(device)
    backbone, bconf = load_backbone(backbone_dir, split)
    check_backbone_window(bconf, cfg, Path(backbone_dir) / "config.json")
    model = build_model(run, backbone, dev)
    state = torch.load(model_path, map_location=dev, weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise StarReproError(f"{model_path}: does not match the model these settings build ({exc})") from None
    model.eval()

    seed = int(cfg["seed"])
    labels_all = run.ds.labels
    known_mask = np.zeros(split.num_classes, bool)
    known_mask[list(split.known)] = True
    unknown = list(split.unknown)
    ebs = int(cfg["eval_batch_size"])
    nw = int(cfg["num_workers"])

    store = feature_store(run, backbone_dir, feature_cache)

    def feed_of(indices):
        feed = SkeletonFeed(run, indices, labels_all[indices], augment=cfg["augment"]["test"],
                            seed=seed + TTA_SEED_OFFSET, device=dev, num_workers=nw)
        if store is not None and feed.cacheable(cfg["bn_mode"]):
            feed.build_cache(model, ebs, float(cfg["cache_max_mb"]), progress, "features", store)
        return feed

    test_feed = feed_of(run.test_idx)
    glob, part = embed_split(model, test_feed, ebs, progress, "test")
    scores = class_scores(model, glob, cfg)
    labels = labels_all[run.test_idx]
    zsl_rows = ~known_mask[labels]
    zsl_target = split.unknown_position(labels[zsl_rows]) if zsl_rows.any() else np.zeros(0, np.int64)
    zsl_pred = M.zsl_predict(scores[zsl_rows][:, unknown]) if zsl_rows.any() else np.zeros(0, np.int64)
    zsl_top1 = M.accuracy(zsl_pred, zsl_target)

    grid = sorted(set(float(g) for g in cfg["gamma_grid"]))
    sweep = M.gamma_sweep(scores, labels, known_mask, grid)
    best_test = M.best_gamma(sweep)
    setting = gamma_setting(cfg, run.dataset)
    gamma_info: dict = {}
    if setting == "val":
        if not len(run.val_idx):
            raise StarReproError("star.gamma: val needs validation samples (star.val_fraction)")
        val_feed = feed_of(run.val_idx)
        glob_v, _ = embed_split(model, val_feed, ebs, progress, "val")
        gamma = M.gamma_for_unknown_rate(class_scores(model, glob_v, cfg), known_mask, float(cfg["gamma_val_rate"]))
        gamma_source = "val"
        gamma_info = {"rule": "smallest γ that sends gamma_val_rate of known-class validation samples to "
                              "unknown classes", "gamma_val_rate": float(cfg["gamma_val_rate"]),
                      "n_val": int(len(run.val_idx))}
    elif setting == "test":
        gamma, gamma_source = best_test["gamma"], "test-selected"
    else:
        gamma, gamma_source = float(setting), "fixed"
    gz = M.gzsl_metrics(scores, labels, known_mask, gamma)
    if not any(abs(r["gamma"] - gamma) < 1e-15 for r in sweep):
        sweep = sorted(sweep + [gz], key=lambda r: r["gamma"])
    gz_pred = M.calibrated_predict(scores, known_mask, gamma)

    out_dir.mkdir(parents=True, exist_ok=True)
    selection = summary["selection"]
    test_selected = selection == "test-selected" or gamma_source == "test-selected"
    result = {
        "accuracy_unit": "percent",
        "zsl_top1": zsl_top1, "gzsl_seen": gz["seen"], "gzsl_unseen": gz["unseen"], "gzsl_h": gz["h"],
        "gamma": float(gamma), "gamma_source": gamma_source, **({"gamma_rule": gamma_info} if gamma_info else {}),
        "gzsl_best_on_test": {"gamma": best_test["gamma"], "seen": best_test["seen"],
                              "unseen": best_test["unseen"], "h": best_test["h"], "label": "test-selected"},
        "selection": selection, "epoch": summary["selected_epoch"], "test_selected": test_selected,
        "seed": seed, "profile": cfg["profile"], "part_pooling": cfg["part_pooling"],
        "partition": cfg["partition"], "test_time_aug": bool(cfg["augment"]["test"]),
        "dataset": run.dataset, "protocol": protocol, "split": split.name,
        "unknown_classes": unknown, "unknown_class_names": [run.class_names[u] for u in unknown],
        "n_zsl": int(zsl_rows.sum()), "n_gzsl_seen": gz["n_seen"], "n_gzsl_unseen": gz["n_unseen"],
    }
    write_json_atomic(out_dir / "metrics.json", result)

    zsl_per = {r["class"]: r for r in M.per_class_accuracy(
        np.asarray(unknown)[zsl_pred] if len(zsl_pred) else zsl_pred, labels[zsl_rows], unknown)}
    gz_per = M.per_class_accuracy(gz_pred, labels, range(split.num_classes))
    rows = [(r["class"], run.class_names[r["class"]], "known" if known_mask[r["class"]] else "unknown", r["n"],
             r["acc"], zsl_per[r["class"]]["acc"] if r["class"] in zsl_per else None) for r in gz_per]
    write_text_atomic(out_dir / "per_class.tsv",
                      _tsv(("class", "name", "split", "n_test", "gzsl_acc", "zsl_acc"), rows))
    _save_npy(out_dir / "confusion_zsl.npy", M.confusion_matrix(zsl_pred, zsl_target, len(unknown)))
    _save_npy(out_dir / "confusion_gzsl.npy", M.confusion_matrix(gz_pred, labels, split.num_classes))
    write_text_atomic(out_dir / "gamma_sweep.tsv", _tsv(
        ("gamma", "seen", "unseen", "h"), [(r["gamma"], r["seen"], r["unseen"], r["h"]) for r in sweep]))

    with torch.no_grad():
        names_p, parts_p = model.text_embed()
        _, parts_np = model.text_embed(with_prompt=False)
        _, parts_wp = model.text_embed(with_prompt=True)
    names_p, parts_p = names_p.cpu().numpy(), parts_p.cpu().numpy()
    k, c = parts_p.shape[:2]
    _save_npz(out_dir / "tsne_inputs.npz",
              skeleton=glob.numpy()[zsl_rows].astype(np.float32),
              skeleton_parts=part.numpy()[zsl_rows].astype(np.float32),
              labels=labels[zsl_rows].astype(np.int64),
              semantic=np.concatenate([names_p, parts_p.reshape(k * c, -1)]).astype(np.float32),
              semantic_labels=np.concatenate([np.arange(c), np.tile(np.arange(c), k)]).astype(np.int64),
              semantic_kind=np.concatenate([np.zeros(c), np.ones(k * c)]).astype(np.int64),
              semantic_part=np.concatenate([np.full(c, -1), np.repeat(np.arange(k), c)]).astype(np.int64),
              names_proj=names_p.astype(np.float32),
              parts_proj_prompt=parts_wp.cpu().numpy().astype(np.float32),
              parts_proj_noprompt=parts_np.cpu().numpy().astype(np.float32),
              names_raw=run.names, parts_raw=run.parts,
              unknown=np.asarray(unknown, np.int64), known=np.asarray(split.known, np.int64))
    _save_npz(out_dir / "scores_gzsl.npz", scores=scores.astype(np.float32), labels=labels.astype(np.int64),
              sample_index=run.test_idx.astype(np.int64), known_mask=known_mask)

    ds_root = Path(processed_dir)
    write_provenance(out_dir / "provenance.json", {"star": cfg, "protocol": protocol,
                                                    "split": {"name": split.name, "unknown": unknown}},
                     {"processed": [ds_root / f for f in ("joints.npy", "samples.tsv", "protocols.json")],
                      "embeddings": embeddings_npz, "backbone": backbone_dir,
                      "run": [model_path, summary_path, config_path]},
                     extra={"train": {"selection": summary.get("selection"),
                                      "selected_epoch": summary.get("selected_epoch"),
                                      "fingerprint": train_config.get("fingerprint")},
                            "device": str(dev)})
    return result
