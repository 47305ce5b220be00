"""Training smoke tests of the five baselines on a synthetic zero-shot task, plus selection, gates, checkpoints
and input errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from star_repro.data.splits import ClassSplit
from star_repro.errors import LeakError, StarReproError
from star_repro.models.baselines import (BASELINES, Selection, TextInputs, best_gamma, evaluate, fit,
                                         from_checkpoint, predict_gzsl, scores, split_settings, to_checkpoint)
from star_repro.models.baselines.bench import DEMO_CONFIGS, synthetic_problem
from star_repro.models.baselines.common import resolve_config

METHODS = ["revise", "jpose", "cada_vae", "synse", "smie"]


# one intra-op thread for the whole module (tests/conftest.py says why)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def problem():
    return synthetic_problem(seed=0)


def _fit(problem, method, cfg=None, **kw):
    return fit(method, {**DEMO_CONFIGS[method], **(cfg or {})}, problem["train_feats"], problem["train_labels"],
               problem["text"], problem["split"], progress=False, **kw)


def _unknown_test(problem):
    unk = ~problem["split"].is_known(problem["test_labels"])
    return problem["test_feats"][unk], problem["test_labels"][unk]


@pytest.mark.parametrize("method", METHODS)
def test_zsl_well_above_chance(problem, method):
    model = _fit(problem, method, seed=0)
    s = scores(model, problem["test_feats"])
    assert s.shape == (len(problem["test_feats"]), problem["split"].num_classes)
    assert np.isfinite(s).all()
    zs = scores(model, problem["test_feats"], "zsl")
    assert np.isneginf(zs[:, list(problem["split"].known)]).all()
    g = best_gamma(s, problem["test_labels"], model.known_mask)
    m = evaluate(model, problem["test_feats"], problem["test_labels"], gamma=g["gamma"])
    chance = 100 / len(problem["split"].unknown)
    assert m["zsl_top1"] >= 50 > 2 * chance, m
    assert m["h"] >= 40, m
    assert m["h"] == pytest.approx(g["h"])
    assert model.selection["mode"] == "last" and len(model.history) == model.selection["units_run"]
    assert all(np.isfinite(row["loss"]) for row in model.history)


@pytest.mark.parametrize("method,cfg", [("revise", {"epochs": 4}),
                                        ("cada_vae", {"cycles": 1, "cycle_steps": 120, "cross_start": 60})])
def test_same_seed_same_scores(problem, method, cfg):
    a = scores(_fit(problem, method, cfg, seed=3), problem["test_feats"])
    b = scores(_fit(problem, method, cfg, seed=3), problem["test_feats"])
    c = scores(_fit(problem, method, cfg, seed=4), problem["test_feats"])
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_class_sample_cannot_reach_training(problem):
    labels = problem["train_labels"].copy()
    labels[0] = problem["split"].unknown[0]
    with pytest.raises(LeakError):
        fit("smie", DEMO_CONFIGS["smie"], problem["train_feats"], labels, problem["text"], problem["split"])


def test_test_selection_keeps_the_best_epoch(problem):
    feats, labels = _unknown_test(problem)
    model = _fit(problem, "smie", seed=0, selection=Selection("test", feats=feats, labels=labels))
    sel = model.selection
    assert sel["mode"] == "test" and "test" in sel["label"]
    metrics = [row["metric"] for row in model.history]
    assert sel["best_metric"] == max(metrics) and metrics[sel["best_unit"]] == max(metrics)
    assert evaluate(model, feats, labels)["zsl_top1"] == pytest.approx(sel["best_metric"])


def test_test_selection_rejects_known_class_samples(problem):
    with pytest.raises(StarReproError, match="unknown-class"):
        _fit(problem, "smie", selection=Selection("test", feats=problem["test_feats"],
                                                  labels=problem["test_labels"]))


def test_val_selection_replays_the_validation_choice(problem):
    model = _fit(problem, "jpose", {"epochs": 25}, seed=0,
                 selection=Selection("val", val_unknown=problem["val_unknown"]))
    val = model.val
    assert model.selection["mode"] == "val" and "validation" in model.selection["label"]
    assert model.selection["units_run"] == val["best_unit"] + 1
    assert model.selection["lr_drops"] == [u for u in val["lr_drops"] if u < val["best_unit"] + 1]
    assert set(val["unknown"]) == set(problem["val_unknown"])
    assert val["n_train"] + val["n_seen_heldout"] + val["n_unknown"] == len(problem["train_feats"])
    m = evaluate(model, problem["test_feats"], problem["test_labels"], gamma=val["gamma"])
    assert m["zsl_top1"] >= 50 and m["h"] > 30


def test_val_unknown_must_be_known_classes(problem):
    with pytest.raises(StarReproError, match="val_unknown"):
        _fit(problem, "smie", selection=Selection("val", val_unknown=[problem["split"].unknown[0]]))


def test_own_gate_routes_samples(problem):
    cfg = {"epochs": 25, "own_gate": {"threshold_quirk": False, "temperatures": [2, 3], "expert_epochs": 10}}
    model = _fit(problem, "jpose", cfg, seed=0, selection=Selection("last", val_unknown=problem["val_unknown"]),
                 own_gate=True)
    rec = model.own_gate.record
    assert rec["T"] in (2, 3) and 0.25 <= rec["th"] <= 0.74
    m = evaluate(model, problem["test_feats"], problem["test_labels"], gate="own")
    assert m["seen"] > 50 and m["unseen"] > 50
    with pytest.raises(StarReproError, match="seen_logits"):
        predict_gzsl(model, problem["test_feats"], gate="own", seen_logits=np.zeros((3, 2), np.float32))


def test_own_gate_needs_k_validation_classes(problem):
    with pytest.raises(StarReproError, match="as many validation-unknown classes"):
        _fit(problem, "jpose", selection=Selection("last", val_unknown=problem["val_unknown"][:2]), own_gate=True)


def test_smie_has_no_own_gate(problem):
    with pytest.raises(StarReproError, match="no GZSL gate"):
        _fit(problem, "smie", selection=Selection("last", val_unknown=problem["val_unknown"]), own_gate=True)


@pytest.mark.parametrize("method", ["cada_vae", "jpose"])
def test_checkpoint_round_trip(problem, method):
    cfg = {"cycles": 1, "cycle_steps": 150, "cross_start": 80} if method == "cada_vae" else {"epochs": 5}
    model = _fit(problem, method, cfg, seed=1)
    buf = io.BytesIO()
    torch.save(to_checkpoint(model), buf)
    buf.seek(0)
    again = from_checkpoint(torch.load(buf, weights_only=False))
    for setting in ("gzsl", "zsl"):
        assert np.array_equal(scores(again, problem["test_feats"], setting),
                              scores(model, problem["test_feats"], setting))
    assert again.selection == model.selection


def test_smie_temporal_constraint_uses_masked_features(problem):
    masked = problem["train_feats"] * 0.5
    model = _fit(problem, "smie", {"epochs": 3}, train_masked_feats=masked)
    assert {"mi", "mi_masked", "temporal"} <= set(model.history[-1])
    with pytest.raises(StarReproError, match="only used by SMIE"):
        _fit(problem, "revise", {"epochs": 1}, train_masked_feats=masked)


def test_config_errors_name_the_key(problem):
    split = problem["split"]
    with pytest.raises(StarReproError, match=r"baselines.revise: unknown keys \['epochz'\]"):
        resolve_config(BASELINES["revise"], {"epochz": 3}, split)
    with pytest.raises(StarReproError, match=r"baselines.jpose.plateau: unknown keys \['patient'\]"):
        resolve_config(BASELINES["jpose"], {"plateau": {"patient": 3}}, split)
    with pytest.raises(StarReproError, match="baselines.smie.lr: expected a number"):
        resolve_config(BASELINES["smie"], {"lr": "fast"}, split)
    with pytest.raises(StarReproError, match="baselines.synse.latent_dim: must be even"):
        resolve_config(BASELINES["synse"], {"latent_dim": 15}, split)
    with pytest.raises(StarReproError, match="baselines.cada_vae.own_gate: unknown keys"):
        resolve_config(BASELINES["cada_vae"], {"own_gate": {"th": 0.5}}, split)


def test_split_settings_follow_the_spec_table():
    assert split_settings(60, 5) == {"latent_dim": 100, "cycle_steps": 1700, "cross_start": 1400}
    assert split_settings(60, 12) == {"latent_dim": 100, "cycle_steps": 1900, "cross_start": 1500}
    assert split_settings(120, 10) == {"latent_dim": 200, "cycle_steps": 1900, "cross_start": 1500}
    assert split_settings(120, 24) == {"latent_dim": 200, "cycle_steps": 1900, "cross_start": 1500}
    assert split_settings(51, 5) == {"latent_dim": 100, "cycle_steps": 1700, "cross_start": 1400}
    cfg = resolve_config(BASELINES["synse"], {}, ClassSplit("ntu120_110_10", 120, list(range(10))))
    assert (cfg["latent_dim"], cfg["cycle_steps"], cfg["cross_start"]) == (200, 1900, 1500)
    assert cfg["own_gate"]["temperatures"] == list(range(1, 10))
    per_split = {"cycle_steps": {"default": "auto", "ntu60_seen48_unseen12": 1700},
                 "cross_start": {"ntu60_seen48_unseen12": 1400}}
    cfg = resolve_config(BASELINES["cada_vae"], per_split, ClassSplit("ntu60_seen48_unseen12", 60, list(range(12))))
    assert (cfg["latent_dim"], cfg["cycle_steps"], cfg["cross_start"]) == (100, 1700, 1400)
    cfg = resolve_config(BASELINES["cada_vae"], per_split, ClassSplit("ntu60_seen55_unseen5", 60, list(range(5))))
    assert (cfg["cycle_steps"], cfg["cross_start"]) == (1700, 1400)
    with pytest.raises(StarReproError, match="baselines.cada_vae.cycle_steps: expected a positive integer"):
        resolve_config(BASELINES["cada_vae"], {"cycle_steps": -3}, ClassSplit("s", 60, [0, 1, 2, 3, 4]))


def test_bad_inputs_are_reported(problem):
    feats = problem["train_feats"].copy()
    feats[7, 3] = np.nan
    with pytest.raises(StarReproError, match=r"train_feats: 1 non-finite values \(first in row 7\)"):
        fit("smie", DEMO_CONFIGS["smie"], feats, problem["train_labels"], problem["text"], problem["split"])
    text = problem["text"]
    with pytest.raises(StarReproError, match="jpose needs text embeddings 'verbs'"):
        fit("jpose", DEMO_CONFIGS["jpose"], problem["train_feats"], problem["train_labels"],
            TextInputs(names=text.names), problem["split"])
    with pytest.raises(StarReproError, match="log\\(1 \\+ v\\) needs features > -1"):
        fit("revise", DEMO_CONFIGS["revise"], problem["train_feats"] - 5, problem["train_labels"], text,
            problem["split"])
    with pytest.raises(StarReproError, match=r"text embeddings 'names': expected shape \(20, D\)"):
        fit("smie", DEMO_CONFIGS["smie"], problem["train_feats"], problem["train_labels"],
            TextInputs(names=text.names[:5]), problem["split"])
    with pytest.raises(StarReproError, match="unknown baseline method 'star'"):
        fit("star", {}, problem["train_feats"], problem["train_labels"], text, problem["split"])
