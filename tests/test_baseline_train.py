"""The five baselines through the train/evaluate stages on a tiny world: STAR's run outputs and keys, zero-shot
transfer above chance, the shared feature cache, the verb/noun phrase encoding through the string cache, model
selection and γ, determinism, the leak gate and stale-run checks."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import _baseline_world as BW
from star_repro.data.splits import ClassSplit
from star_repro.errors import InputFormatError, LeakError, StarReproError
from star_repro.training import baseline_train as B

METHODS = ["revise", "jpose", "cada_vae", "synse", "smie"]
#: Tiny settings: well under a CPU second per method on the toy world.
TINY = {
    "revise": {"code_dim": 16, "embed_dim": 8, "text_hidden": 16, "lr": 1e-2, "batch_size": 32, "epochs": 20},
    "jpose": {"embed_dim": 8, "text_hidden": 16, "lr": 1e-2, "batch_size": 32, "epochs": 20},
    "cada_vae": {"latent_dim": 8, "cycle_steps": 100, "cross_start": 30, "cycles": 1, "lr": 1e-2, "kl_offset": 10,
                 "kl_ramp": 50, "classifier_lr": 1e-2, "classifier_steps": 50, "zsl_samples_per_class": 30,
                 "gzsl_seen_per_class": 20, "gzsl_unseen_per_class": 30},
    "synse": {"latent_dim": 8, "cycle_steps": 100, "cross_start": 30, "cycles": 1, "lr": 1e-2, "kl_offset": 10,
              "kl_ramp": 50, "classifier_lr": 1e-2, "classifier_steps": 50, "zsl_samples_per_class": 30,
              "gzsl_seen_per_class": 20, "gzsl_unseen_per_class": 30, "text_kl_from_cycle": 0},
    "smie": {"hidden": [32, 16], "lr": 5e-3, "batch_size": 32, "epochs": 20, "warmup_epochs": 2},
}
#: The keys STAR's evaluate writes that the tables and figures read (training/evaluate.py).
STAR_METRIC_KEYS = {"accuracy_unit", "zsl_top1", "gzsl_seen", "gzsl_unseen", "gzsl_h", "gamma", "gamma_source",
                    "gzsl_best_on_test", "selection", "epoch", "test_selected", "seed", "profile", "partition",
                    "dataset", "protocol", "split", "unknown_classes", "unknown_class_names", "n_zsl",
                    "n_gzsl_seen", "n_gzsl_unseen"}
EVAL_FILES = ("metrics.json", "per_class.tsv", "confusion_zsl.npy", "confusion_gzsl.npy", "gamma_sweep.tsv",
              "scores_gzsl.npz", "provenance.json")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = BW.build(tmp_path_factory.mktemp("bworld"))
    enc = BW.FakeEncoder(w["table"])
    mp = pytest.MonkeyPatch()
    mp.setattr(B, "make_encoder", lambda cfg, device, batch_size, hash_cache: enc)
    mp.setattr(B, "verb_noun", lambda dataset: (w["verbs"], w["nouns"]))
    w["encoder"] = enc
    yield w
    mp.undo()


def _cfg(method, **over):
    return {**TINY[method], "seed": 1, "partition": 6, "profile": "test", "gamma": 0.05, **over}


def _train_eval(world, root, method, cfg, cache="shared"):
    cache_dir = None if cache is None else (world["processed"].parent / "feature-cache" if cache == "shared"
                                            else cache)
    work, out = root / "train", root / "eval"
    summary = B.train_baseline(method, world["processed"], "xsub", world["split"], world["embeddings"],
                               world["backbone"], cfg, work, feature_cache=cache_dir, progress=False, threads=1)
    metrics = B.evaluate_baseline(work, world["processed"], "xsub", world["split"], world["embeddings"],
                                  world["backbone"], cfg, out, feature_cache=cache_dir, progress=False, threads=1)
    return summary, metrics, work, out


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    """Every method once (selection last, γ chosen on the test set), sharing one feature cache."""
    calls = {"n": 0}
    real = B._extract

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(B, "_extract", counting)
    out = {}
    try:
        for m in METHODS:
            out[m] = _train_eval(world, tmp_path_factory.mktemp(m), m, _cfg(m, gamma="test"))
    finally:
        mp.undo()
    out["extract_calls"] = calls["n"]
    return out


@pytest.mark.parametrize("method", METHODS)
def test_outputs_have_stars_names_and_keys(world, runs, method):
    summary, metrics, work, out = runs[method]
    for f in ("model.pt", "config.json", "history.tsv", "selection.json"):
        assert (work / f).is_file(), f
    for f in EVAL_FILES:
        assert (out / f).is_file(), f
    on_disk = json.loads((out / "metrics.json").read_text())
    assert STAR_METRIC_KEYS <= set(on_disk), STAR_METRIC_KEYS - set(on_disk)
    assert on_disk["method"] == method and on_disk["selection"] == "last" and on_disk["seed"] == 1
    assert on_disk["gamma_source"] == "test-selected" and on_disk["test_selected"] is True
    assert on_disk["gamma"] == pytest.approx(on_disk["gzsl_best_on_test"]["gamma"])
    assert on_disk["gzsl_h"] == pytest.approx(on_disk["gzsl_best_on_test"]["h"])
    n_unknown_test = int((~world["split"].is_known(world["labels"])).sum() // 2)  # half of the samples are test
    assert on_disk["n_zsl"] == n_unknown_test == len(BW.UNKNOWN) * 10
    assert on_disk["unknown_classes"] == list(BW.UNKNOWN)
    for k in ("zsl_top1", "gzsl_seen", "gzsl_unseen", "gzsl_h"):
        assert 0.0 <= on_disk[k] <= 100.0
    # the ZSL confusion matrix is the ZSL accuracy
    cm = np.load(out / "confusion_zsl.npy")
    assert cm.shape == (3, 3) and cm.sum() == on_disk["n_zsl"]
    assert 100 * np.trace(cm) / cm.sum() == pytest.approx(on_disk["zsl_top1"])
    # per-class rows: every class, known/unknown labelled, ZSL accuracy only for unknown classes
    with open(out / "per_class.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [int(r["class"]) for r in rows] == list(range(12))
    assert {int(r["class"]) for r in rows if r["split"] == "unknown"} == set(BW.UNKNOWN)
    assert all((r["zsl_acc"] != "") == (r["split"] == "unknown") for r in rows)
    # the γ sweep holds the chosen γ with the reported S/U/H
    with open(out / "gamma_sweep.tsv", newline="") as fh:
        sweep = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh, delimiter="\t")]
    assert len(sweep) >= 20 and [r["gamma"] for r in sweep] == sorted(r["gamma"] for r in sweep)
    chosen = min(sweep, key=lambda r: abs(r["gamma"] - on_disk["gamma"]))
    assert chosen["h"] == pytest.approx(on_disk["gzsl_h"], abs=1e-3)
    assert max(r["h"] for r in sweep) <= on_disk["gzsl_h"] + 1e-3    # the exact search is never beaten by the grid
    with np.load(out / "scores_gzsl.npz") as z:
        assert z["scores"].shape == (on_disk["n_gzsl_seen"] + on_disk["n_gzsl_unseen"], 12)
        assert z["known_mask"].sum() == 9
    prov = json.loads((out / "provenance.json").read_text())
    assert f"baselines.{method}" in prov["params"] and prov["inputs"]["backbone"]
    # training records
    sel = json.loads((work / "selection.json").read_text())
    assert sel["selection"] == "last" and sel["mode"] == "last" and sel["selected_unit"] == sel["units_run"]
    hist = (work / "history.tsv").read_text().splitlines()
    assert hist[0].split("\t")[0] == sel["unit_kind"] and len(hist) == 1 + sel["units_run"]
    assert summary["features"]["n_train"] == 9 * 10 and summary["features"]["dim"] == 16
    ckpt = torch.load(work / "model.pt", weights_only=True)   # plain tensors and types only
    assert ckpt["method"] == method


def test_zero_shot_transfer_above_chance(runs):
    zsl = {m: runs[m][1]["zsl_top1"] for m in METHODS}
    chance = 100 / 3
    assert max(zsl.values()) >= chance + 20, zsl
    assert sum(v > chance for v in zsl.values()) >= 3, zsl


def test_backbone_runs_once_per_subset_for_all_methods(world, runs):
    assert runs["extract_calls"] == 2          # train features once, test features once, for five methods x 2 stages
    assert [runs[m][1]["features_from_cache"] for m in METHODS] == [False] + [True] * 4
    assert [runs[m][0]["features"]["train_from_cache"] for m in METHODS] == [False] + [True] * 4


def test_phrases_are_encoded_once_through_the_string_cache(world, runs):
    # jpose encoded the 24 verb/noun strings; synse found them in the cache
    assert world["encoder"].calls == 1
    vn = runs["synse"][0]["text"]["verb_noun"]
    assert vn["encoded_now"] == 0 and vn["from_cache"] == 24 and vn["verbs"] == world["verbs"]
    assert runs["jpose"][0]["text"]["verb_noun"]["encoded_now"] == 24


def test_phrase_encoder_must_match_the_embeddings(world, tmp_path, monkeypatch):
    other = BW.FakeEncoder(world["table"], identity={"name": "fake:toy", "weights_sha256": "0" * 64})
    monkeypatch.setattr(B, "make_encoder", lambda cfg, device, batch_size, hash_cache: other)
    meta = json.loads(world["embeddings"].with_suffix(".json").read_text())
    with pytest.raises(StarReproError, match="another identity"):
        B.phrase_embeddings(meta, ["verb 1"], tmp_path / "cache")


def test_same_seed_gives_identical_outputs(world, tmp_path):
    cfg = _cfg("cada_vae")
    _, m1, w1, o1 = _train_eval(world, tmp_path / "a", "cada_vae", cfg, cache=None)
    _, m2, w2, o2 = _train_eval(world, tmp_path / "b", "cada_vae", cfg, cache=None)
    assert (o1 / "metrics.json").read_bytes() == (o2 / "metrics.json").read_bytes()
    assert (w1 / "history.tsv").read_bytes() == (w2 / "history.tsv").read_bytes()
    assert np.array_equal(np.load(o1 / "confusion_gzsl.npy"), np.load(o2 / "confusion_gzsl.npy"))
    assert m1["gamma_source"] == "fixed" and m1["gamma"] == 0.05
    _, m3, _, _ = _train_eval(world, tmp_path / "c", "cada_vae", {**cfg, "seed": 2}, cache=None)
    assert m3["seed"] == 2


def test_test_selection_is_labelled(world, tmp_path):
    _, m, work, _ = _train_eval(world, tmp_path, "jpose", _cfg("jpose", selection="test"))
    sel = json.loads((work / "selection.json").read_text())
    assert m["selection"] == sel["selection"] == "test-selected" and m["test_selected"] is True
    assert "unknown-class test set" in m["selection_label"]
    with open(work / "history.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    zsl = [float(r["test_zsl"]) for r in rows]
    assert m["epoch"] == sel["selected_unit"] and zsl[m["epoch"] - 1] == max(zsl)
    assert m["zsl_top1"] == pytest.approx(max(zsl), abs=1e-4)


def test_val_selection_and_val_gamma(world, tmp_path):
    _, m, work, _ = _train_eval(world, tmp_path, "revise", _cfg("revise", selection="val", gamma="val"))
    sel = json.loads((work / "selection.json").read_text())
    assert m["selection"] == "val" and m["test_selected"] is False and m["gamma_source"] == "val"
    assert len(sel["val_unknown"]) == 3 and set(sel["val_unknown"]) <= set(world["split"].known)
    assert "RandomState(5)" in sel["val_unknown_source"]
    assert m["gamma"] == pytest.approx(sel["val"]["gamma"]) and m["val_unknown"] == sel["val_unknown"]


def test_validation_unknown_lists():
    ntu = ClassSplit("ntu60_seen55_unseen5", 60, [10, 11, 19, 26, 56])
    s = B.resolve_settings("revise", {"seed": 1, "selection": "val"}, "ntu60", ntu)
    assert B.validation_unknown(s, ntu) == ([16, 21, 25, 31, 48], "SynSE rv list (BASELINES_SPEC §1.2)")
    pku = ClassSplit("pkuv1_seen46_unseen5", 51, [1, 9, 20, 34, 50])
    s = B.resolve_settings("revise", {"seed": 1, "selection": "val"}, "pku1", pku)
    picked, source = B.validation_unknown(s, pku)
    assert len(picked) == 5 and not set(picked) & {1, 9, 20, 34, 50} and "carved" in source
    assert B.validation_unknown(B.resolve_settings("revise", {"seed": 3, "selection": "val"}, "pku1", pku),
                                pku)[0] == picked          # one validation split for every seed and method
    s = B.resolve_settings("revise", {"seed": 1, "selection": "val", "val_unknown": [0, 2]}, "pku1", pku)
    assert B.validation_unknown(s, pku) == ([0, 2], "params")


def test_settings_defaults_and_errors():
    ntu = ClassSplit("ntu60_seen55_unseen5", 60, [10, 11, 19, 26, 56])
    s = B.resolve_settings("synse", {"seed": 1}, "ntu60", ntu)
    assert (s.selection, s.gamma, s.gamma_from) == ("last", 0.012, "paper Table 1")
    assert s.resolved["latent_dim"] == 100 and s.resolved["cycle_steps"] == 1700       # split_settings
    assert B.resolve_settings("synse", {"seed": 1}, "ntu120", ClassSplit("x", 120, [4, 13])).gamma == 0.069
    assert B.resolve_settings("smie", {"seed": 1, "gamma": {"ntu60": 0.3}}, "ntu60", ntu).gamma == 0.3
    bad = [({"seed": 1, "selection": "best"}, "baselines.revise.selection"),
           ({"seed": 1, "gamma": "val"}, "baselines.revise.gamma: val needs"),
           ({"seed": 1, "gamma": -1}, "baselines.revise.gamma"),
           ({"seed": 1, "gamma": {"pku1": 0.1}}, "baselines.revise.gamma"),
           ({"seed": 1, "epochz": 3}, "baselines.revise: unknown keys \\['epochz'\\]"),
           ({"seed": 1, "val_unknown": [10]}, "baselines.revise.val_unknown"),
           ({"seed": 1, "smie_temporal": [40, 20]}, "only SMIE"),
           ({}, "baselines.revise.seed")]
    for cfg, msg in bad:
        with pytest.raises(StarReproError, match=msg):
            B.resolve_settings("revise", cfg, "ntu60", ntu)
    with pytest.raises(StarReproError, match="baselines.revise.gamma: the paper gives no"):
        B.resolve_settings("revise", {"seed": 1}, "toy", ClassSplit("t", 12, [2]))
    with pytest.raises(StarReproError, match="expected star or one of"):
        B.resolve_settings("clip", {"seed": 1}, "ntu60", ntu)


def test_leak_gate(world, tmp_path, monkeypatch):
    import shutil

    import star_repro.data.splits as splits

    # a protocol whose training list holds unknown-class samples: the gate keeps them out
    leaky = tmp_path / "toy"
    shutil.copytree(world["processed"], leaky)
    prot = json.loads((leaky / "protocols.json").read_text())
    unknown_rows = np.flatnonzero(~world["split"].is_known(world["labels"])).tolist()
    prot["xsub"]["train"] = sorted(set(prot["xsub"]["train"]) | set(unknown_rows))
    (leaky / "protocols.json").write_text(json.dumps(prot))
    samples = B.select_samples(leaky, "xsub", world["split"])
    assert world["split"].is_known(world["labels"][samples.train_idx]).all() and len(samples.train_idx) == 90
    # and a broken gate that let them through is caught before training
    monkeypatch.setattr(splits, "training_indices", lambda labels, train, split: np.asarray(train))
    with pytest.raises(LeakError, match="unknown classes"):
        B.select_samples(leaky, "xsub", world["split"])


def test_evaluation_refuses_a_stale_run(world, runs, tmp_path):
    _, _, work, _ = runs["smie"]
    with pytest.raises(StarReproError, match="retrain"):
        B.evaluate_baseline(work, world["processed"], "xsub", world["split"], world["embeddings"],
                            world["backbone"], _cfg("smie", seed=7), tmp_path / "eval", threads=1)
    with pytest.raises(StarReproError, match="missing: run `star-repro train`"):
        B.evaluate_baseline(tmp_path / "nothing", world["processed"], "xsub", world["split"], world["embeddings"],
                            world["backbone"], _cfg("smie"), tmp_path / "eval", threads=1)


def test_backbone_of_another_split_is_refused(world, tmp_path):
    other = ClassSplit("toy_other", 12, [0, 1, 2])
    with pytest.raises(StarReproError, match="other known classes"):
        B.load_backbone(world["backbone"], other, "cpu")
    import shutil

    bad = tmp_path / "pretrain"
    shutil.copytree(world["backbone"], bad)
    conf = json.loads((bad / "config.json").read_text())
    del conf["config"]
    (bad / "config.json").write_text(json.dumps(conf))
    with pytest.raises(InputFormatError, match="config.window"):
        B.load_backbone(bad, world["split"], "cpu")


def test_smie_temporal_constraint_runs_on_masked_sequences(world, tmp_path):
    cfg = _cfg("smie", smie_temporal=[12, 8], epochs=3)
    summary, m, _, _ = _train_eval(world, tmp_path, "smie", cfg, cache=tmp_path / "cache")
    assert summary["features"]["smie_masked"] is True
    assert len(list((tmp_path / "cache").glob("features-*.npz"))) == 3      # train, train-masked, test
    assert 0 <= m["zsl_top1"] <= 100


def test_encoder_config_from_sidecar(tmp_path):
    clip = {"name": "clip:ViT-L-14-336", "weights_sha256": "a" * 64, "quick_gelu": True, "context_length": 77,
            "weights_file": str(tmp_path / "missing.pt"), "pretrained": "openai"}
    assert B.encoder_cfg_from_info(clip, "error") == {"encoder": "clip:ViT-L-14-336", "truncate": "error",
                                                     "pretrained": "openai", "quick_gelu": True}
    (tmp_path / "w.pt").write_bytes(b"x")
    assert B.encoder_cfg_from_info({**clip, "weights_file": str(tmp_path / "w.pt")}, "error")["weights"] == \
        str(tmp_path / "w.pt")
    rnd = B.encoder_cfg_from_info({**clip, "weights_file": "random-init(seed=3)"}, "truncate")
    assert (rnd["weights"], rnd["seed"], rnd["truncate"]) == ("random", 3, "truncate")
    assert B.encoder_cfg_from_info({"name": "sbert:all-MiniLM-L6-v2"}, "error") == {
        "encoder": "sbert:all-MiniLM-L6-v2", "truncate": "error"}


def test_feature_key_names_a_kernel_shift_formula(monkeypatch):
    """Same model.pt, other temporal-shift formula: other features, so another cache key (lerp keeps the old key)."""
    from types import SimpleNamespace

    from star_repro.models.shiftgcn import ShiftGCN

    monkeypatch.setattr(B, "dataset_signature", lambda ds: {"samples_sha256": "s"})
    samples = SimpleNamespace(dataset="ntu60", ds=None)

    def key(formula):
        model = ShiftGCN(5, width=0.125, shift_formula=formula)
        bb = B.Backbone(model, "same-sha", 16, [0.95], False, model.out_channels, {})
        return B._feature_key(bb, samples, "xsub", "test", np.arange(4))
    lerp, kernel = key("lerp"), key("kernel")
    assert "shift_formula" not in lerp and kernel == {**lerp, "shift_formula": "kernel"}
