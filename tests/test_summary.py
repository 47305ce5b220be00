"""`star-repro summary`: per-kind job costs from benchmark files, with the warm starter's own figures preferred."""
from __future__ import annotations

import argparse

from star_repro.stages import summary

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(d, stem, s, rss, cpu):
    (d / f"{stem}.tsv").write_text(HEADER + f"{s}\t0:00:01\t{rss}\t0\t0\t0\t0\t0\t0\t{cpu}\n")


def test_costs_per_kind_prefer_the_warm_line(tmp_path):
    bench, logs = tmp_path / "benchmarks", tmp_path / "logs"
    bench.mkdir()
    logs.mkdir()
    _bench(bench, "train_a_seed1", 10.0, 18.0, 0.05)
    (logs / "train_a_seed1.log").write_text("epoch 1\nwarm: pid 7 peak RSS 1200.5 MiB, CPU 9.50 s (user+sys incl. "
                                            "its children)\n")
    _bench(bench, "train_a_revise_seed1", 2.0, 700.0, 1.5)  # no log: the benchmark's own columns
    _bench(bench, "table2", 0.5, 90.0, 0.4)
    _bench(bench, "table3", 0.25, 95.0, 0.2)
    labels = {"train_a_seed1": "train (STAR)", "train_a_revise_seed1": "train (baselines)", "table2": "tables",
              "table3": "tables"}
    costs = summary.stage_costs(bench, logs, labels)
    assert costs["train (STAR)"] == {"jobs": 1, "wall": 10.0, "max_wall": 10.0, "cpu": 9.5, "peak_mib": 1200.5}
    assert costs["train (baselines)"] == {"jobs": 1, "wall": 2.0, "max_wall": 2.0, "cpu": 1.5, "peak_mib": 700.0}
    assert costs["tables"]["jobs"] == 2 and costs["tables"]["wall"] == 0.75 and costs["tables"]["peak_mib"] == 95.0


def test_summary_prints_the_table(tmp_path, capsys):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    _bench(bench, "pretrain_x", 30.0, 900.0, 29.0)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table2.md").write_text("x")
    args = argparse.Namespace(results=str(tmp_path / "results"), benchmarks=str(bench), logs=str(tmp_path / "logs"),
                              params=str(tmp_path / "missing.yaml"))
    assert summary.run(args) == 0
    out = capsys.readouterr().out
    assert "table2.md" in out and "1 jobs, 30 s of job wall time" in out
    assert any(line.split()[:3] == ["pretrain", "1", "30.0"] for line in out.splitlines())


def test_stage_labels_come_from_the_registry(project_root):
    labels = summary.stage_labels(str(project_root / "params.yaml"))
    assert labels["train_ntu60_xsub_55_5_seed1"] == "train (STAR)"
    assert labels["evaluate_ntu60_xsub_55_5_jpose_seed1"] == "evaluate (baselines)"
    assert labels["table2"] == "tables" and labels["figure_fig5_confusion_ntu60_xsub_55_5"] == "figures"
    assert labels["pretrain_ntu60_xsub_ntu60_seen55_unseen5"] == "pretrain"
    assert summary.stage_labels(str(project_root / "missing.yaml")) == {}
