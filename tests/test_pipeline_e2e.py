"""The chain tested whole: a miniature DAG (tests/data/params.tiny.yaml) through Snakemake, then DVC on the same
outputs. Catches a broken link between stages, and checks what reruns when a parameter changes."""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import pytest
import yaml

from _project_copy import VENV_BIN, copy_project, env_for, run, tiny_params

pytestmark = pytest.mark.slow
SNAKEMAKE = str(VENV_BIN / "snakemake")
DVC = str(VENV_BIN / "dvc")


def _jobs(dry_run_stdout: str) -> set[str]:
    """Rule names of the jobs a `snakemake -n` would run."""
    return (set(re.findall(r"^rule (\S+):", dry_run_stdout, flags=re.M)) |
            set(re.findall(r"^localrule (\S+):", dry_run_stdout, flags=re.M))) - {"all"}


@pytest.fixture(scope="module")
def tiny_copy(project_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "project"
    copy_project(project_root, root, params=tiny_params(project_root))
    env = env_for(root)
    run([SNAKEMAKE, "--workflow-profile", "workflow/profiles/default", "--cores", "2"], root, env, timeout=900)
    return root, env


def test_tiny_params_are_current(project_root):
    sys.path.insert(0, str(project_root / "tests" / "data"))
    from make_tiny_params import render

    params = yaml.safe_load((project_root / "params.yaml").read_text())
    assert (project_root / "tests/data/params.tiny.yaml").read_text() == render(params), \
        "run `python tests/data/make_tiny_params.py`"


def test_snakemake_builds_the_table_and_figure(tiny_copy):
    root, _ = tiny_copy
    rows = list(csv.DictReader(open(root / "results/table2.csv")))
    methods = {r["method"] for r in rows}
    assert methods == {"star", "revise"}
    zsl = [float(r["ours"]) for r in rows if r["metric"] == "zsl"]
    assert all(0.0 <= v <= 100.0 for v in zsl)
    # every row names what its runs rest on, as recorded by the embed and pretrain stages
    assert {(r["descriptions"], r["encoder"], r["backbone"]) for r in rows} == \
        {("authored", "sbert:all-MiniLM-L6-v2", "pretrained here")}
    assert (root / "results/fig5_confusion_ntu60_xsub_55_5.png").read_bytes()[:4] == b"\x89PNG"
    # every job left a Snakemake benchmark record (time and memory per job)
    bench = sorted(p.stem for p in (root / "benchmarks").glob("*.tsv"))
    assert "pretrain_ntu60_xsub_ntu60_seen55_unseen5" in bench and "train_ntu60_xsub_55_5_seed1" in bench


def test_snakemake_report_holds_the_tables_and_figures(tiny_copy, tmp_path):
    import zipfile

    root, env = tiny_copy
    report = tmp_path / "report.zip"
    run([SNAKEMAKE, "--cores", "1", "--report", str(report)], root, env, timeout=600)
    names = zipfile.ZipFile(report).namelist()
    assert any(n.endswith("/table2.csv") for n in names), names[:50]
    assert any(n.endswith("/fig5_confusion_ntu60_xsub_55_5.png") for n in names), names[:50]


def test_second_run_does_nothing(tiny_copy):
    root, env = tiny_copy
    out = run([SNAKEMAKE, "-n", "--cores", "2"], root, env)
    assert not _jobs(out.stdout), out.stdout[-2000:]


def test_star_weight_change_reruns_training_not_data(tiny_copy, tmp_path):
    root, env = tiny_copy
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["profiles"]["demo"]["star"]["alpha"] = 0.2
    changed = tmp_path / "params.yaml"
    changed.write_text(yaml.safe_dump(params, sort_keys=False))
    out = run([SNAKEMAKE, "-n", "--cores", "2", "--configfile", str(changed)], root, env)
    jobs = _jobs(out.stdout)
    assert jobs == {"train_ntu60_xsub_55_5_seed1", "evaluate_ntu60_xsub_55_5_seed1", "table2",
                    "figure_fig5_confusion_ntu60_xsub_55_5"}, jobs


def test_dvc_records_snakemake_outputs_and_reruns_only_what_a_param_touches(tiny_copy):
    root, env = tiny_copy
    assert (root / ".dvc/config").is_file()  # the project ships its DVC setup
    run([DVC, "commit", "-f", "-q"], root, env, timeout=600)
    status = run([DVC, "status"], root, env).stdout
    assert "up to date" in status.lower() or "no changes" in status.lower(), status
    again = run([DVC, "repro"], root, env, timeout=600).stdout
    assert "Running stage" not in again, again[-2000:]
    # the declared metrics and plots are readable by DVC's own commands
    metrics = run([DVC, "metrics", "show", "--json"], root, env).stdout
    assert "ntu60_xsub_55_5_seed1.json" in metrics and "zsl_top1" in metrics, metrics[:2000]
    plots = run([DVC, "plots", "show", "-o", str(root / "dvc_plots")], root, env, timeout=600).stdout
    assert (root / "dvc_plots" / "index.html").is_file(), plots[-2000:]
    html = (root / "dvc_plots" / "index.html").read_text()
    assert "gamma_ntu60_xsub_55_5_seed1.tsv" in html, html[:2000]
    # a data parameter that only prepare reads: prepare reruns, its outputs are identical, nothing else runs
    text = (root / "params.yaml").read_text().replace("on_error: fail", "on_error: skip", 1)
    (root / "params.yaml").write_text(text)
    status = run([DVC, "status"], root, env).stdout
    assert "prepare_ntu60" in status and "train_" not in status and "pretrain_" not in status, status
    out = run([DVC, "repro"], root, env, timeout=600).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {"prepare_ntu60"}, out[-3000:]
