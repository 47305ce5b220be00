"""`star-repro bench paper --size tiny --device cpu`: the GPU rehearsal's whole code path, in seconds."""
from __future__ import annotations

import json

from star_repro.cli import main as cli_main
from star_repro.stages.paper_bench import schedule


def test_rehearsal_tiny_on_cpu_records_rates_and_extrapolation(tmp_path, capsys):
    out = tmp_path / "paper.json"
    assert cli_main(["bench", "paper", "--device", "cpu", "--size", "tiny", "--out", str(out),
                     "--workdir", str(tmp_path / "work")]) == 0
    rec = json.loads(out.read_text())
    pre = rec["pretrain"]
    assert pre["steps"] == 3 and pre["train_samples_per_s"] > 0 and pre["infer_samples_per_s"] > 0
    assert 0 <= pre["data_wait_fraction_mean"] < 1 and pre["gpu_utilisation_how"] == "n/a on CPU"
    assert pre["peak_gpu_mib"] is None and rec["data"]["prepare_files_per_s"] > 0
    assert rec["star"]["train_samples_per_s"] > 0 and rec["embed"]["strings_per_s"] > 0
    ex = rec["extrapolation"]
    assert ex["label"].startswith("EXTRAPOLATION")
    w = ex["wall_hours"]
    assert w["1_gpu"] >= w["4_gpus"] >= w["16_gpus"] >= w["critical_path"] > 0
    kinds = {s["kind"] for s in ex["stages"] if s["seconds"]}
    assert {"pretrain", "train", "evaluate", "embed"} <= kinds
    assert len([s for s in ex["stages"] if s["kind"] == "pretrain"]) == ex["by_kind"]["pretrain"]["stages"] == 18
    assert "EXTRAPOLATION" in (tmp_path / "paper.md").read_text() and "samples/s" in capsys.readouterr().out
    assert pre["loader_only_samples_per_s"]["0"] > 0
    var = rec["step_variants"]["variants"]
    # every switch but torch.compile (left out at tiny size) measured, each saying whether it changes numerics
    from star_repro.stages.paper_bench import STEP_VARIANTS

    assert set(var) == {k for k, v in STEP_VARIANTS.items() if not v.get("compile")}
    assert all(row["samples_per_s"] > 0 and row["numerics"] for row in var.values()), var
    profile = (tmp_path / "paper.profile.txt").read_text()
    assert "Self CPU" in profile and "aten::" in profile
    assert "side by side" in (tmp_path / "paper.md").read_text() and "partial" not in rec


def test_schedule_follows_dependencies_and_gpu_count():
    rows = [{"seconds": 10.0, "gpu": 1, "deps": [], "outs": ["a"]},
            {"seconds": 10.0, "gpu": 1, "deps": [], "outs": ["b"]},
            {"seconds": 5.0, "gpu": 1, "deps": ["a/x.pt"], "outs": ["c"]},
            {"seconds": 1.0, "gpu": 0, "deps": ["b", "c"], "outs": ["d"]}]
    assert schedule(rows, None) == 16.0  # critical path a -> c -> d
    assert schedule(rows, 1) == 26.0  # all GPU work in series, then d
    assert schedule(rows, 2) == 16.0
