"""STAR training and evaluation end to end on a tiny world built in tmp_path: determinism, resume, model selection,
γ choice, BatchNorm drift, the Table 6/7 ablations, output formats and input checks."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import _star_world as W
from star_repro.errors import InputFormatError, ParamsError, StarReproError
from star_repro.training import star_train
from star_repro.training.evaluate import evaluate_star
from star_repro.training.star_cfg import resolve_star_cfg
from star_repro.training.star_train import bench_star, train_star

EPOCHS = 3


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return W.make_world(tmp_path_factory.mktemp("world"), per_class_train=8, per_class_test=4)


def _cfg(**over):
    base = {"optimizer": {"epochs": EPOCHS, "steps": [2]}}
    for k, v in over.items():
        if isinstance(v, dict) and k in base:
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return W.cfg(**base)


def _run(world, root, cfg, name="run", emb=None, feature_cache=None):
    run_dir, eval_dir = root / name / "train", root / name / "eval"
    summary = train_star(world["processed"], "xsub", world["split"], emb or world["embeddings"], world["backbone"],
                         cfg, run_dir, progress=False, checkpoint_dir=root / name / "ckpt", threads=1,
                         feature_cache=feature_cache)
    metrics = evaluate_star(run_dir, world["processed"], "xsub", world["split"], emb or world["embeddings"],
                            world["backbone"], cfg, eval_dir, threads=1, feature_cache=feature_cache)
    return summary, metrics, run_dir, eval_dir


def _history(run_dir):
    with open(run_dir / "history.tsv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def baseline(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    return _run(world, root, _cfg())


def test_outputs_and_formats(world, baseline):
    summary, metrics, run_dir, eval_dir = baseline
    for f in ("model.pt", "history.tsv", "config.json", "selection.json", "timing.json"):
        assert (run_dir / f).is_file()
    assert (run_dir.parent / "ckpt" / "train_state.pt").is_file()
    assert summary["feature_cache"] == {"train": True}  # bn frozen + no augmentation: features computed once
    on_disk = json.loads((eval_dir / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in ("zsl_top1", "gzsl_seen", "gzsl_unseen", "gzsl_h", "gamma", "selection", "epoch", "seed", "profile",
                "part_pooling"):
        assert key in metrics
    assert metrics["selection"] == "last" and metrics["epoch"] == EPOCHS and metrics["gamma_source"] == "fixed"
    assert metrics["gamma"] == 0.05 and metrics["accuracy_unit"] == "percent"
    assert 0 <= metrics["zsl_top1"] <= 100 and metrics["n_zsl"] == 3 * 4
    s, u = metrics["gzsl_seen"], metrics["gzsl_unseen"]
    assert metrics["gzsl_h"] == pytest.approx(0.0 if s + u == 0 else 2 * s * u / (s + u))
    assert metrics["unknown_class_names"] == [f"class_{u}" for u in W.UNKNOWN]

    cm = np.load(eval_dir / "confusion_zsl.npy")
    assert cm.shape == (3, 3) and cm.sum() == 12
    assert np.trace(cm) / cm.sum() * 100 == pytest.approx(metrics["zsl_top1"])
    assert np.load(eval_dir / "confusion_gzsl.npy").shape == (W.NUM_CLASSES, W.NUM_CLASSES)
    with open(eval_dir / "per_class.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == W.NUM_CLASSES and {r["split"] for r in rows} == {"known", "unknown"}
    assert all(r["zsl_acc"] == "" for r in rows if r["split"] == "known")
    with open(eval_dir / "gamma_sweep.tsv", encoding="utf-8") as fh:
        sweep = list(csv.DictReader(fh, delimiter="\t"))
    assert [float(r["gamma"]) for r in sweep] == sorted(W.BASE_CFG["gamma_grid"])
    at = next(r for r in sweep if float(r["gamma"]) == 0.05)
    assert float(at["h"]) == pytest.approx(metrics["gzsl_h"], abs=1e-4)

    z = np.load(eval_dir / "tsne_inputs.npz")
    assert z["skeleton"].shape == (12, 8) and sorted(set(z["labels"].tolist())) == list(W.UNKNOWN)
    c, k = W.NUM_CLASSES, 6
    assert z["semantic"].shape == (c + k * c, 8) and z["semantic_kind"].sum() == k * c
    assert z["parts_proj_prompt"].shape == z["parts_proj_noprompt"].shape == (k, c, 8)
    assert not np.allclose(z["parts_proj_prompt"], z["parts_proj_noprompt"])

    prov = json.loads((eval_dir / "provenance.json").read_text())
    assert prov["params"]["star"]["seed"] == 1 and "torch" in prov["packages"]
    joints = str(world["processed"] / "joints.npy")
    assert len(prov["inputs"]["processed"][joints]["sha256"]) == 64
    assert "commit" in prov["code"]

    hist = _history(run_dir)
    assert [int(r["epoch"]) for r in hist] == list(range(1, EPOCHS + 1))
    assert float(hist[-1]["lr"]) == pytest.approx(0.005)  # lr 0.05 × 0.1 from epoch index 2
    assert hist[0]["val_acc"] == "" and hist[0]["test_zsl"] == ""


def test_same_seed_twice_identical_metrics(world, baseline, tmp_path):
    _, _, run_dir, eval_dir = baseline
    _, _, run2, eval2 = _run(world, tmp_path, _cfg())
    assert (eval2 / "metrics.json").read_bytes() == (eval_dir / "metrics.json").read_bytes()
    for f in ("history.tsv", "config.json", "selection.json"):
        assert (run2 / f).read_bytes() == (run_dir / f).read_bytes(), f
    a, b = torch.load(run_dir / "model.pt"), torch.load(run2 / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _record_cache_hits(monkeypatch) -> list[bool]:
    """Whether each feature-cache lookup from now on was a hit, in order."""
    from star_repro.training import feature_cache

    hits = []
    real = feature_cache.cached_features

    def recording(*a, **k):
        feats, hit = real(*a, **k)
        hits.append(hit)
        return feats, hit
    monkeypatch.setattr(feature_cache, "cached_features", recording)
    return hits


def test_feature_cache_on_disk_changes_no_number(world, baseline, tmp_path, monkeypatch):
    hits = _record_cache_hits(monkeypatch)
    _, _, run_dir, eval_dir = baseline
    cache = tmp_path / "features"
    _, _, run1, eval1 = _run(world, tmp_path, _cfg(), name="fill", feature_cache=cache)
    entries = sorted(cache.glob("features-*.npz"))
    # the training samples while training, the test samples at evaluation
    n = len(hits)
    assert n >= 2 and len(entries) == n and hits == [False] * n
    hits.clear()
    _, _, run2, eval2 = _run(world, tmp_path, _cfg(), name="read", feature_cache=cache)
    assert hits == [True] * n and sorted(cache.glob("features-*.npz")) == entries
    for run, ev in ((run1, eval1), (run2, eval2)):
        assert (run / "history.tsv").read_bytes() == (run_dir / "history.tsv").read_bytes()
        assert (ev / "metrics.json").read_bytes() == (eval_dir / "metrics.json").read_bytes()
    # the person pooling changes the features: another key
    hits.clear()
    _run(world, tmp_path, _cfg(part_pooling="released"), name="other", feature_cache=cache)
    assert hits == [False] * n and len(list(cache.glob("features-*.npz"))) == 2 * n


def test_other_seed_differs(world, baseline, tmp_path):
    _, _, run_dir, _ = baseline
    _, m2, run2, _ = _run(world, tmp_path, _cfg(seed=2))
    assert m2["seed"] == 2
    assert (run2 / "history.tsv").read_bytes() != (run_dir / "history.tsv").read_bytes()


def test_resume_after_interruption_matches_uninterrupted(world, baseline, tmp_path, monkeypatch):
    _, _, run_dir, _ = baseline
    real_save = star_train.save_torch_atomic
    calls = {"n": 0}

    def crash_after_second_epoch(obj, path):
        real_save(obj, path)
        if path.name == "train_state.pt":
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(star_train, "save_torch_atomic", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _run(world, tmp_path, _cfg())
    monkeypatch.setattr(star_train, "save_torch_atomic", real_save)
    summary, _, run2, _ = _run(world, tmp_path, _cfg())
    assert summary["resumed_after_epoch"] == 1  # 0-based: epochs 1 and 2 were done
    a, b = torch.load(run_dir / "model.pt"), torch.load(run2 / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (run2 / "history.tsv").read_bytes() == (run_dir / "history.tsv").read_bytes()


def test_changed_settings_do_not_resume(world, tmp_path):
    _run(world, tmp_path, _cfg(optimizer={"epochs": 1}))
    summary, _, _, _ = _run(world, tmp_path, _cfg(optimizer={"epochs": 1, "lr": 0.02}))
    assert summary["resumed_after_epoch"] is None


def test_validation_selection_and_gamma_on_validation(world, tmp_path):
    summary, metrics, run_dir, _ = _run(world, tmp_path, _cfg(selection="val", gamma="val"))
    assert metrics["selection"] == "val" and metrics["gamma_source"] == "val" and not metrics["test_selected"]
    assert summary["n_val"] == 9 * 2  # 20 % of 8 samples per known class, rounded
    hist = _history(run_dir)
    val = [float(r["val_acc"]) for r in hist]
    best = max(val)
    assert metrics["epoch"] == max(i + 1 for i, v in enumerate(val) if v == best)  # ties: the later epoch
    assert metrics["gamma"] >= 0 and metrics["gamma_rule"]["n_val"] == 18
    run = star_train.prepare_run(world["processed"], "xsub", world["split"], world["embeddings"],
                                 _cfg(selection="val", gamma="val"))
    assert not set(run.val_idx) & set(run.train_idx)
    assert world["split"].is_known(world["labels"][run.val_idx]).all()


def test_test_selection_is_labelled(world, tmp_path):
    _, metrics, run_dir, _ = _run(world, tmp_path, _cfg(selection="test", gamma="test"))
    assert metrics["selection"] == "test-selected" and metrics["gamma_source"] == "test-selected"
    assert metrics["test_selected"] is True
    zsl = [float(r["test_zsl"]) for r in _history(run_dir)]
    assert metrics["epoch"] == max(i + 1 for i, v in enumerate(zsl) if v == max(zsl))
    assert metrics["zsl_top1"] == pytest.approx(zsl[metrics["epoch"] - 1], abs=1e-4)
    assert metrics["gzsl_h"] == pytest.approx(metrics["gzsl_best_on_test"]["h"])


def test_bn_drift_with_augmentation_runs_backbone_per_batch(world, tmp_path):
    pretrained = torch.load(world["backbone"] / "model.pt")
    key = "data_bn.running_mean"
    for mode, changes in (("drift", True), ("frozen", False)):
        cfg = _cfg(bn_mode=mode, optimizer={"epochs": 1}, augment={"train": True, "test": True})
        summary, metrics, run_dir, _ = _run(world, tmp_path / mode, cfg)
        assert summary["feature_cache"]["train"] is False
        assert metrics["test_time_aug"] is True
        state = torch.load(run_dir / "model.pt")
        assert (not torch.equal(state["pretraining_model." + key], pretrained[key])) is changes


@pytest.mark.parametrize("over", [
    {"use_attention": False}, {"use_va_prompt": False}, {"use_sp_prompt": False},
    {"use_va_prompt": False, "use_sp_prompt": False}, {"use_mpce": False}, {"use_sce": False}, {"use_gce": False},
    {"partition": 4}, {"partition": 2}, {"part_pooling": "released", "heads": 4, "similarity": "dot",
                                         "init": {"w_std": "fan_in", "va_prompt_std": 0.1}},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items() if k != "init"))
def test_ablations_train_and_evaluate(world, tmp_path, over):
    cfg = _cfg(optimizer={"epochs": 1}, **over)
    emb = world["embeddings_by_partition"][cfg["partition"]]
    _, metrics, run_dir, _ = _run(world, tmp_path, cfg, emb=emb)
    assert np.isfinite([metrics[k] for k in ("zsl_top1", "gzsl_seen", "gzsl_unseen", "gzsl_h")]).all()
    assert metrics["partition"] == cfg["partition"]
    state = torch.load(run_dir / "model.pt")
    if over.get("use_va_prompt") is False:  # the fixed prompts are exactly their seeded initial values
        init = star_train.build_model(star_train.prepare_run(world["processed"], "xsub", world["split"], emb, cfg),
                                      star_train.load_backbone(world["backbone"])[0], "cpu")
        assert torch.equal(state["body_part_prompts.0"], init.body_part_prompts[0].detach())
    hist = _history(run_dir)[0]
    for term in ("mpce", "sce", "gce"):
        assert (hist[term] == "") is (over.get(f"use_{term}") is False)


def test_imported_authors_weights_evaluate_like_the_run_they_came_from(world, baseline, tmp_path):
    _, metrics, run_dir, _ = baseline
    state = torch.load(run_dir / "model.pt")
    authors = {f"module.{k}": v for k, v in state.items()}  # saved from DataParallel, plus unused modules
    authors["module.global_fc1.weight"] = torch.zeros(4, 48)
    authors["module.gcn_flobal_classifier.bias"] = torch.zeros(12)
    path = tmp_path / "runs-40-1234.pt"
    torch.save(authors, path)
    report = star_train.import_authors_run(path, world["processed"], "xsub", world["split"], world["embeddings"],
                                           world["backbone"], _cfg(), tmp_path / "imported")
    assert "global_fc1.weight" in report["ignored"]
    got = evaluate_star(tmp_path / "imported", world["processed"], "xsub", world["split"], world["embeddings"],
                        world["backbone"], _cfg(), tmp_path / "imported_eval", threads=1)
    assert got["selection"] == "imported" and got["epoch"] is None
    for key in ("zsl_top1", "gzsl_seen", "gzsl_unseen", "gzsl_h", "gamma"):
        assert got[key] == metrics[key], key


def test_cfg_errors_name_the_key():
    with pytest.raises(ParamsError, match=r"star\.similarity"):
        resolve_star_cfg(_cfg(similarity="cos"))
    bad = _cfg()
    del bad["optimizer"]["momentum"]
    with pytest.raises(ParamsError, match=r"star\.optimizer\.momentum: required"):
        resolve_star_cfg(bad)
    with pytest.raises(ParamsError, match=r"star\.temprature: unknown key"):
        resolve_star_cfg(_cfg(temprature=1.0))
    with pytest.raises(ParamsError, match="at least one loss"):
        resolve_star_cfg(_cfg(use_mpce=False, use_sce=False, use_gce=False))
    with pytest.raises(ParamsError, match=r"star\.gamma: no value for dataset 'toy'"):
        resolve_star_cfg(_cfg(gamma={"ntu60": 0.012}), "toy")
    over = resolve_star_cfg(_cfg(by_dataset={"ntu120": {"optimizer": {"epochs": 30}}}), "ntu120")
    assert over["optimizer"]["epochs"] == 30 and over["optimizer"]["lr"] == 0.05
    assert resolve_star_cfg(_cfg(gamma={"ntu60": 0.012, "toy": 0.02}), "toy")["gamma"]["toy"] == 0.02


def test_input_errors(world, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, names=np.zeros((W.NUM_CLASSES, 4), np.float32), parts=np.zeros((4, W.NUM_CLASSES, 4), np.float32))
    with pytest.raises(InputFormatError, match=r"bad\.npz.*'parts': expected shape \(6, 12, 4\)"):
        train_star(world["processed"], "xsub", world["split"], bad, world["backbone"], _cfg(), tmp_path / "r",
                   progress=False)
    other = tmp_path / "pretrain_other"
    other.mkdir()
    (other / "model.pt").write_bytes((world["backbone"] / "model.pt").read_bytes())
    conf = json.loads((world["backbone"] / "config.json").read_text())
    conf["known_classes"] = list(range(9))  # pretrained on a split that includes unknown classes 2 and 7
    (other / "config.json").write_text(json.dumps(conf))
    with pytest.raises(StarReproError, match="may have seen this split's unknown classes"):
        train_star(world["processed"], "xsub", world["split"], world["embeddings"], other, _cfg(), tmp_path / "r",
                   progress=False)
    conf["known_classes"] = list(world["split"].known)
    conf["config"] = {"window": 32}
    (other / "config.json").write_text(json.dumps(conf))
    with pytest.raises(StarReproError, match=r"star\.augment\.window is 16 but the backbone .* 32-frame"):
        train_star(world["processed"], "xsub", world["split"], world["embeddings"], other, _cfg(), tmp_path / "r",
                   progress=False)
    with pytest.raises(StarReproError, match="batch_size"):
        train_star(world["processed"], "xsub", world["split"], world["embeddings"], world["backbone"],
                   _cfg(optimizer={"batch_size": 500}), tmp_path / "r", progress=False)
    with pytest.raises(StarReproError, match="train` for this experiment first"):
        evaluate_star(tmp_path / "nothing", world["processed"], "xsub", world["split"], world["embeddings"],
                      world["backbone"], _cfg(), tmp_path / "e")


def test_pku_clips_pass_through_unchanged(tmp_path):
    pku = W.make_world(tmp_path / "pku", per_class_train=3, per_class_test=2, frames=16, pku=True)
    run = star_train.prepare_run(pku["processed"], "xsub", pku["split"], pku["embeddings"], _cfg())
    assert run.is_pku
    feed = star_train.SkeletonFeed(run, run.train_idx[:2], [0, 0], augment=True, seed=1, device="cpu", num_workers=0)
    assert not feed.augment  # the authors' PKU feeder ignores augmentation
    x, _, idx = feed.dataset[0]
    assert torch.equal(x, torch.from_numpy(np.array(run.ds.joints[idx])))
    _, metrics, _, _ = _run(pku, tmp_path, _cfg(optimizer={"epochs": 1, "batch_size": 8},
                                                augment={"train": True, "test": True}))
    assert metrics["n_zsl"] == 3 * 2
    with pytest.raises(StarReproError, match=r"star\.augment\.window: PKU-MMD clips are used as stored"):
        star_train.prepare_run(pku["processed"], "xsub", pku["split"], pku["embeddings"],
                               _cfg(augment={"window": 32}))


def test_training_samples_are_known_classes_only(world):
    run = star_train.prepare_run(world["processed"], "xsub", world["split"], world["embeddings"], _cfg())
    assert world["split"].is_known(world["labels"][run.train_idx]).all()
    assert len(run.train_idx) == 9 * 8 and len(run.zsl_idx) == 3 * 4 and len(run.test_idx) == 12 * 4


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.9, True, 5e-4), (0.9, False, 0.0), (0.0, False, 1e-3)])
def test_plain_sgd_matches_torch_sgd(momentum, nesterov, wd):
    torch.manual_seed(0)
    a = [torch.randn(3, 4, requires_grad=True), torch.randn(5, requires_grad=True), torch.randn(2, requires_grad=True)]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    ref = torch.optim.SGD(b, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=wd, foreach=True)
    ours = star_train.PlainSGD(a, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    for step in range(4):
        for params, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            used = params[:2] if step == 1 else params  # a parameter without gradient in one step is skipped
            sum(((p * (i + 1 + step)) ** 2).sum() for i, p in enumerate(used)).backward()
            opt.step()
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    saved = ours.state_dict()
    again = star_train.PlainSGD(a, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    again.load_state_dict(saved)
    assert all((u is None and v is None) or torch.equal(u, v) for u, v in zip(again.buffers, ours.buffers))


def test_bench_star_reports_throughput():
    tiny = {"name": "tiny", "width": 0.0625, "attn_dim": 16, "heads": 2, "m": 4, "text_hidden": 8, "text_dim": 12,
            "classes": 8, "batch": 4, "window": 16, "steps": 1}
    (row,) = bench_star([tiny], threads=1)
    assert row["size"] == "tiny" and row["device"] == "cpu"
    for k in ("train_samples_per_s", "train_cached_samples_per_s", "eval_samples_per_s", "peak_rss_mb"):
        assert row[k] > 0


# ---------------------------------------------------------------------------------------------- negative control
def test_unknown_derangement_is_a_seeded_cycle():
    unknown = (4, 9, 13, 20, 31)
    m = star_train.unknown_derangement(unknown, 1)
    assert sorted(m) == sorted(m.values()) == list(unknown)
    assert all(a != b for a, b in m.items())  # no class keeps its own text
    seen, c = [], unknown[0]  # one cycle through all of them
    for _ in unknown:
        seen.append(c)
        c = m[c]
    assert sorted(seen) == list(unknown) and c == unknown[0]
    assert star_train.unknown_derangement(unknown, 1) == m
    assert any(star_train.unknown_derangement(unknown, s) != m for s in (2, 3, 4))
    with pytest.raises(StarReproError, match="at least 2 unknown"):
        star_train.unknown_derangement((3,), 1)


def test_text_control_moves_only_the_unknown_classes_text(world):
    cfg = resolve_star_cfg(_cfg(text_control="derange_unknown"))
    run = star_train.prepare_run(world["processed"], "xsub", world["split"], world["embeddings"], cfg)
    plain = star_train.prepare_run(world["processed"], "xsub", world["split"], world["embeddings"],
                                   resolve_star_cfg(_cfg()))
    assert plain.text_mapping is None
    for k in world["split"].known:
        assert np.array_equal(run.names[k], plain.names[k]) and np.array_equal(run.parts[:, k], plain.parts[:, k])
    for a, b in run.text_mapping.items():
        assert a != b and np.array_equal(run.names[a], plain.names[b])
        assert np.array_equal(run.parts[:, a], plain.parts[:, b])


def test_control_run_records_its_mapping_and_chance(world, tmp_path):
    _, metrics, _, _ = _run(world, tmp_path, _cfg(text_control="derange_unknown", optimizer={"epochs": 1}))
    assert metrics["text_control"] == "derange_unknown"
    assert metrics["chance_zsl"] == pytest.approx(100 / len(W.UNKNOWN))
    assert sorted(int(k) for k in metrics["text_mapping"]) == sorted(W.UNKNOWN)
    # every ZSL prediction is either the true class or (exclusively) the class holding the true class's text
    assert metrics["zsl_top1"] + metrics["zsl_follows_text"] <= 100.0 + 1e-9
    lo, hi = metrics["zsl_follows_text_ci95"]
    assert lo <= metrics["zsl_follows_text"] <= hi
    assert metrics["ci95"]["counts"]["zsl"][1] == metrics["n_zsl"]
    lo, hi = metrics["ci95"]["zsl"]
    assert lo <= metrics["zsl_top1"] <= hi


def test_feature_cache_keys_the_backbones_shift_formula(world, tmp_path, monkeypatch):
    """The same model.pt evaluated with the kernel formula (an imported release under official-code) gives other
    features: it must not read the entries a lerp backbone filled."""
    import shutil

    hits = _record_cache_hits(monkeypatch)
    cache = tmp_path / "features"
    _run(world, tmp_path, _cfg(), name="lerp", feature_cache=cache)
    n = len(hits)
    kernel_dir = tmp_path / "kernel_backbone"
    shutil.copytree(world["backbone"], kernel_dir)
    conf = json.loads((kernel_dir / "config.json").read_text())
    (kernel_dir / "config.json").write_text(json.dumps({**conf, "shift_formula": "kernel"}))
    hits.clear()
    run_dir, eval_dir = tmp_path / "kernel" / "train", tmp_path / "kernel" / "eval"
    train_star(world["processed"], "xsub", world["split"], world["embeddings"], kernel_dir, _cfg(), run_dir,
               progress=False, checkpoint_dir=tmp_path / "kernel" / "ckpt", threads=1, feature_cache=cache)
    evaluate_star(run_dir, world["processed"], "xsub", world["split"], world["embeddings"], kernel_dir, _cfg(),
                  eval_dir, threads=1, feature_cache=cache)
    assert n >= 2 and hits == [False] * n and len(list(cache.glob("features-*.npz"))) == 2 * n
