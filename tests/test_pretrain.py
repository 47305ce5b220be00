"""`pretrain`: learns the known classes, never trains on unknown ones, is deterministic and resumes exactly."""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _skeleton_fixtures import make_processed
from star_repro.data.dataset import ProcessedDataset
from star_repro.data.splits import ClassSplit, assert_no_unknown
from star_repro.errors import LeakError, StarReproError
from star_repro.training import feeder as feeder_mod
from star_repro.training.pretrain import pretrain, resolve_config

TINY = {"epochs": 2, "batch_size": 8, "base_lr": 0.1, "steps": [6], "window": 16, "width": 0.125, "seed": 3,
        "random_rot": True}


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_ds(tmp_path_factory) -> Path:
    return make_processed(tmp_path_factory.mktemp("ds") / "tiny", num_classes=4, per_class=8)


def _weights(out: Path) -> dict:
    return torch.load(out / "model.pt", map_location="cpu", weights_only=True)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_learns_known_classes_and_writes_the_stage_outputs(tmp_path):
    ds = make_processed(tmp_path / "ds", num_classes=5, per_class=16)
    split = ClassSplit("five_minus_one", 5, [4])
    cfg = {"epochs": 8, "batch_size": 8, "base_lr": 0.1, "steps": [6], "window": 16, "width": 0.125, "seed": 1,
           "random_rot": False}
    out = tmp_path / "out"
    metrics = pretrain(ds, "xsub", split, cfg, out, progress=False, threads=1)
    assert metrics["num_class"] == 4 and metrics["epochs"] == 8
    assert metrics["known_top1"] >= 0.6, metrics  # chance is 0.25
    assert json.loads((out / "metrics.json").read_text()) == metrics
    conf = json.loads((out / "config.json").read_text())
    assert conf["known_classes"] == [0, 1, 2, 3] and conf["num_class"] == 4 and conf["width"] == 0.125
    assert conf["feeder"] == "ntu" and conf["config"]["p_interval_test"] == [0.95]
    state = _weights(out)
    assert state["fc.weight"].shape == (4, 32) and "l10.tcn1.shift_out.ypos" in state
    rows = list(csv.DictReader((out / "history.tsv").open(), delimiter="\t"))
    assert list(rows[0]) == ["epoch", "lr", "loss", "train_acc", "test_acc"]
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert [float(r["lr"]) for r in rows] == [0.1] * 6 + [pytest.approx(0.01)] * 2
    assert float(rows[-1]["test_acc"]) == metrics["known_top1"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-7.pt", "epoch-8.pt"]


def test_unknown_class_samples_never_reach_training(tmp_path, monkeypatch):
    # The protocol's train list was crafted to contain every sample of class 3, which the split calls unknown.
    ds_dir = make_processed(tmp_path / "leaky", num_classes=4, per_class=8, sneak_unknown_into_train=3)
    ds = ProcessedDataset(ds_dir)
    split = ClassSplit("leak", 4, [3])
    train = ds.protocol("xsub")["train"]
    assert (ds.labels[train] == 3).sum() == 8
    with pytest.raises(LeakError, match="unknown classes \\[3\\]"):
        assert_no_unknown(ds.labels[train], split)  # using the protocol list directly would leak
    with pytest.raises(LeakError):
        split.known_position(ds.labels[train])

    seen: list[int] = []
    original = feeder_mod.SkeletonDataset.__getitem__

    def spy(self, i):
        item = original(self, i)
        if self.train:
            seen.append(item[2])
        return item

    monkeypatch.setattr(feeder_mod.SkeletonDataset, "__getitem__", spy)
    metrics = pretrain(ds_dir, "xsub", split, {**TINY, "epochs": 1}, tmp_path / "out", progress=False, threads=1)
    assert seen and not (ds.labels[seen] == 3).any()
    known_train = int((ds.labels[train] != 3).sum())
    assert metrics["train_samples"] == known_train
    assert len(seen) == known_train // 8 * 8  # drop_last


def test_a_bypassed_gate_is_caught(tiny_ds, tmp_path, monkeypatch):
    """If the selection upstream were broken, the targets' remapping still refuses unknown classes."""
    from star_repro.data import splits

    monkeypatch.setattr(splits, "training_indices", lambda labels, protocol_train, split: protocol_train)
    with pytest.raises(LeakError):
        pretrain(tiny_ds, "xsub", ClassSplit("s", 4, [1]), TINY, tmp_path / "out", progress=False, threads=1)


def test_same_seed_same_weights_with_any_worker_count(tiny_ds, tmp_path):
    split = ClassSplit("s", 4, [2])
    pretrain(tiny_ds, "xsub", split, TINY, tmp_path / "a", progress=False, threads=1)
    pretrain(tiny_ds, "xsub", split, {**TINY, "num_workers": 2}, tmp_path / "b", progress=False, threads=1)
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    # the files too, byte for byte (their hashes key the feature caches and DVC): no temporary name inside
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    assert (tmp_path / "a" / "history.tsv").read_text() == (tmp_path / "b" / "history.tsv").read_text()
    pretrain(tiny_ds, "xsub", split, {**TINY, "seed": 4}, tmp_path / "c", progress=False, threads=1)
    assert not _same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def test_interrupted_run_resumes_to_the_same_weights(tiny_ds, tmp_path, monkeypatch):
    split = ClassSplit("s", 4, [0])
    cfg = {**TINY, "epochs": 3}
    pretrain(tiny_ds, "xsub", split, cfg, tmp_path / "straight", progress=False, threads=1)

    original = feeder_mod.SkeletonDataset.__getitem__

    def crash_in_third_epoch(self, i):
        if self.train and self.epoch == 2:
            raise KeyboardInterrupt
        return original(self, i)

    monkeypatch.setattr(feeder_mod.SkeletonDataset, "__getitem__", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_ds, "xsub", split, cfg, tmp_path / "resumed", progress=False, threads=1)
    assert not (tmp_path / "resumed" / "model.pt").exists()
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["epoch-1.pt", "epoch-2.pt"]
    monkeypatch.setattr(feeder_mod.SkeletonDataset, "__getitem__", original)

    trained: list[int] = []

    def count(self, i):
        if self.train:
            trained.append(self.epoch)
        return original(self, i)

    monkeypatch.setattr(feeder_mod.SkeletonDataset, "__getitem__", count)
    pretrain(tiny_ds, "xsub", split, cfg, tmp_path / "resumed", progress=False, threads=1)
    assert set(trained) == {2}  # only the third epoch ran again
    assert _same(_weights(tmp_path / "straight"), _weights(tmp_path / "resumed"))
    assert (tmp_path / "straight" / "history.tsv").read_text() == (tmp_path / "resumed" / "history.tsv").read_text()

    # More epochs later continue from the last checkpoint as well (the epoch count is not a result setting).
    trained.clear()
    pretrain(tiny_ds, "xsub", split, {**cfg, "epochs": 4}, tmp_path / "resumed", progress=False, threads=1)
    assert set(trained) == {3}


def test_resuming_a_finished_run_keeps_its_cost_figures(tiny_ds, tmp_path):
    """A stage rerun that finds every epoch checkpointed trains nothing; its metrics still report what the
    training cost (time and throughput accumulate in the checkpoint), not the seconds of the rerun."""
    split = ClassSplit("s", 4, [0])
    first = pretrain(tiny_ds, "xsub", split, TINY, tmp_path / "out", progress=False, threads=1)
    again = pretrain(tiny_ds, "xsub", split, TINY, tmp_path / "out", progress=False, threads=1)
    assert first["train_samples_per_s"] is not None
    assert again["train_samples_per_s"] == first["train_samples_per_s"]
    assert again["train_time_s"] == first["train_time_s"]
    assert again["wall_time_s"] >= first["train_time_s"]


def test_checkpoints_of_other_settings_are_not_resumed(tiny_ds, tmp_path):
    split = ClassSplit("s", 4, [0])
    out = tmp_path / "out"
    pretrain(tiny_ds, "xsub", split, {**TINY, "epochs": 1}, out, progress=False, threads=1)
    first = _weights(out)
    pretrain(tiny_ds, "xsub", split, {**TINY, "epochs": 1, "base_lr": 0.05}, out, progress=False, threads=1)
    assert not _same(first, _weights(out))
    ref = tmp_path / "ref"
    pretrain(tiny_ds, "xsub", split, {**TINY, "epochs": 1, "base_lr": 0.05}, ref, progress=False, threads=1)
    assert _same(_weights(ref), _weights(out))


def test_pku_data_is_detected_and_fed_unchanged(tmp_path):
    ds = make_processed(tmp_path / "pku", num_classes=3, per_class=8, t_total=16, pku=True)
    metrics = pretrain(ds, "xsub", ClassSplit("p", 3, [2]), {**TINY, "epochs": 1}, tmp_path / "out",
                       progress=False, threads=1)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["feeder"] == "pku"
    assert metrics["train_samples"] == 8


def test_config_errors_name_the_key(tiny_ds, tmp_path):
    with pytest.raises(StarReproError, match="epochs"):
        resolve_config({"epochs": 0})
    with pytest.raises(StarReproError, match="unknown key.*'lr'"):
        resolve_config({"lr": 0.1})
    with pytest.raises(StarReproError, match="p_interval_train"):
        resolve_config({"p_interval_train": [0.9, 0.5]})
    with pytest.raises(StarReproError, match="window"):
        resolve_config({"window": 30})
    with pytest.raises(StarReproError, match="batch_size=64"):
        pretrain(tiny_ds, "xsub", ClassSplit("s", 4, [0]), {**TINY, "batch_size": 64}, tmp_path / "o",
                 progress=False, threads=1)
    with pytest.raises(StarReproError, match="no protocol 'xview'"):
        pretrain(tiny_ds, "xview", ClassSplit("s", 4, [0]), TINY, tmp_path / "o", progress=False, threads=1)
    assert resolve_config({})["steps"] == [60, 80, 100] and resolve_config({})["epochs"] == 110
    with pytest.raises(StarReproError, match="precision.*fp32, tf32, bf16"):
        resolve_config({"precision": "fp16"})
    with pytest.raises(StarReproError, match="compile"):
        resolve_config({"compile": "yes"})


def test_bf16_precision_trains_and_restores_torch_flags(tiny_ds, tmp_path):
    """The speed setting runs end to end (bf16 autocast on the CPU here) and leaves torch's global flags as it
    found them; the run records the precision it used."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory)
    m = pretrain(tiny_ds, "xsub", ClassSplit("s", 4, [0]), {**TINY, "epochs": 1, "precision": "bf16"},
                 tmp_path / "o", progress=False, threads=1)
    assert np.isfinite(m["final_train_loss"])
    assert json.loads((tmp_path / "o" / "config.json").read_text())["config"]["precision"] == "bf16"
    assert before == (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                      torch.are_deterministic_algorithms_enabled(),
                      torch.utils.deterministic.fill_uninitialized_memory)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tiny_ds, tmp_path):
    """Data-parallel (gloo, CPU) with the global batch split over 2 processes = one process up to rounding.

    One epoch (two optimiser steps): later, the sign rule of the position gradient turns rounding-level
    differences of a near-zero gradient into a ±0.01·lr step, and the runs drift apart like any two
    floating-point orders would.
    """
    split = ClassSplit("s", 4, [1])
    cfg = {**TINY, "epochs": 1}
    pretrain(tiny_ds, "xsub", split, cfg, tmp_path / "one", progress=False, threads=1)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                           os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "star_repro.training.pretrain", "--processed", str(tiny_ds), "--protocol", "xsub",
           "--split-name", "s", "--num-classes", "4", "--unknown", "1", "--config", str(tmp_path / "cfg.json"),
           "--out", str(tmp_path / "two"), "--no-progress", "--threads", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one.keys() == two.keys()
    worst = max((one[k].double() - two[k].double()).abs().max().item() for k in one if one[k].is_floating_point())
    assert worst < 1e-4, worst
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["world_size"] == 2 and m1["train_samples"] == m2["train_samples"]
    assert m2["final_train_loss"] == pytest.approx(m1["final_train_loss"], rel=1e-4)
    np.testing.assert_allclose(m2["known_top1"], m1["known_top1"], atol=1 / m1["test_samples"] + 1e-9)


def test_eval_every_tests_only_on_schedule_and_after_the_last_epoch(tiny_ds, tmp_path):
    split = ClassSplit("four_minus_one", 4, [3])
    out = tmp_path / "out"
    metrics = pretrain(tiny_ds, "xsub", split, {**TINY, "epochs": 5, "eval_every": 2}, out, progress=False,
                       threads=1)
    rows = list(csv.DictReader((out / "history.tsv").open(), delimiter="\t"))
    tested = [int(r["epoch"]) for r in rows if r["test_acc"] != ""]
    assert tested == [2, 4, 5]
    assert float(rows[-1]["test_acc"]) == pytest.approx(metrics["known_top1"], abs=1e-6)
    assert metrics["best_epoch_test_selected"] in tested
    # the test schedule does not change training: the weights equal an every-epoch run's
    every = tmp_path / "every"
    pretrain(tiny_ds, "xsub", split, {**TINY, "epochs": 5, "eval_every": 1}, every, progress=False, threads=1)
    assert _same(_weights(out), _weights(every))
    with pytest.raises(StarReproError, match="eval_every"):
        resolve_config({**TINY, "eval_every": 0})
