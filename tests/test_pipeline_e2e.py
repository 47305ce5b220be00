"""The chain tested whole: a miniature DAG (tests/data/params.tiny.yaml) through Snakemake, then DVC on the same
outputs. Catches a broken link between stages, and checks what reruns when a parameter changes."""
from __future__ import annotations

import csv
import json
import re
import subprocess
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


STAR_REPRO = str(VENV_BIN / "star-repro")
HEADLINE = "metrics/runs/ntu60_xsub_55_5_seed1.json"


def _ran(dvc_stdout: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", dvc_stdout))


def _set_param(root, dotted: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    assert last in node and node[last] != value, (dotted, node.get(last))
    node[last] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, width=120))


def _git_commit_all(root, env, message: str) -> None:
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-q", "-m", message], root, env)


@pytest.fixture(scope="module")
def synced_copy(tiny_copy):
    """The Snakemake run recorded for DVC by `star-repro sync dvc`, and its results (dvc.lock, metrics/, plots/)
    committed to git, as the demo's are."""
    root, env = tiny_copy
    assert (root / ".dvc/config").is_file()  # the project ships its DVC setup
    before = run([DVC, "status", "--json"], root, env).stdout
    assert json.loads(before or "{}"), "before the sync DVC must see Snakemake's outputs as unrecorded"
    run([STAR_REPRO, "sync", "dvc"], root, env, timeout=600)
    _git_commit_all(root, env, "results of the Snakemake run")
    return root, env


def test_after_snakemake_and_sync_dvc_has_nothing_to_do(synced_copy):
    root, env = synced_copy
    status = run([DVC, "status", "--json"], root, env).stdout
    assert json.loads(status or "{}") == {}, status
    again = run([DVC, "repro"], root, env, timeout=600).stdout
    assert not _ran(again), again[-2000:]
    # the sync recorded the outputs without rewriting them: Snakemake still finds nothing to do
    out = run([SNAKEMAKE, "-n", "--cores", "2"], root, env)
    assert not _jobs(out.stdout), out.stdout[-2000:]


def test_sync_dvc_records_no_output_snakemake_would_rebuild(synced_copy):
    """After a params change and no Snakemake run, the old outputs of the runs it reaches must not be recorded as
    the new params' results; the other stages still are."""
    root, env = synced_copy
    original = (root / "params.yaml").read_text()
    _set_param(root, "profiles.demo.star.alpha", 0.3)
    try:
        out = run([STAR_REPRO, "sync", "dvc"], root, env, timeout=600)
        assert "train_ntu60_xsub_55_5_seed1" in out.stderr, out.stderr[-2000:]
        status = json.loads(run([DVC, "status", "--json"], root, env).stdout or "{}")
        assert {"train_ntu60_xsub_55_5_seed1", "evaluate_ntu60_xsub_55_5_seed1"} <= set(status), status
        assert "train_ntu60_xsub_55_5_revise_seed1" not in status and "stage_params" not in status, status
    finally:
        (root / "params.yaml").write_text(original)
        run([STAR_REPRO, "sync", "dvc"], root, env, timeout=600)
    assert json.loads(run([DVC, "status", "--json"], root, env).stdout or "{}") == {}


def test_dvc_metrics_are_the_fixed_headline_keys_and_plots_render(synced_copy):
    from star_repro.metrics import HEADLINE_KEYS

    root, env = synced_copy
    shown = json.loads(run([DVC, "metrics", "show", "--json"], root, env).stdout)
    runs = {path: body["data"] for path, body in shown[""]["data"].items()}  # "": the workspace
    assert set(runs) == {HEADLINE, "metrics/runs/ntu60_xsub_55_5_revise_seed1.json"}, sorted(runs)
    for path, data in runs.items():
        assert list(data) == HEADLINE_KEYS, (path, data)
        assert 0.0 <= data["ZSL"] <= 100.0 and data["n_zsl"] > 0
    table = run([DVC, "metrics", "show"], root, env).stdout
    assert "ZSL" in table and "prepare" not in table and "seconds" not in table, table
    run([DVC, "plots", "show", "-o", str(root / "dvc_plots")], root, env, timeout=600)
    html = (root / "dvc_plots" / "index.html").read_text()
    assert "gamma_ntu60_xsub_55_5_seed1.tsv" in html, html[:2000]


def test_exp_run_of_a_star_loss_weight_reruns_only_the_star_run(synced_copy):
    """`dvc exp run -S` reruns the STAR run's training, evaluation and the reports on it, nothing upstream and not
    the baseline; `dvc exp show` lists the headline metrics; `dvc metrics diff HEAD` shows what moved."""
    from star_repro.metrics import HEADLINE_KEYS

    root, env = synced_copy
    out = run([DVC, "exp", "run", "-S", "profiles.demo.star.alpha=0.2"], root, env, timeout=900).stdout
    assert _ran(out) == {"stage_params", "train_ntu60_xsub_55_5_seed1", "evaluate_ntu60_xsub_55_5_seed1",
                         "table2", "figure_fig5_confusion_ntu60_xsub_55_5"}, out[-3000:]
    shown = run([DVC, "exp", "show", "--json"], root, env).stdout
    # rows: the workspace, the baseline commit, and under it the experiment
    rows = [r for top in json.loads(shown) for r in [top] + [rev for e in top.get("experiments") or []
                                                             for rev in e["revs"]]]
    alphas = [r["data"]["params"]["params.yaml"]["data"]["profiles"]["demo"]["star"]["alpha"] for r in rows]
    heads = [r["data"]["metrics"][HEADLINE]["data"] for r in rows]
    assert sorted(alphas) == [0.1, 0.2, 0.2], shown[:3000]
    assert all(set(h) >= {"ZSL", "S", "U", "H", "gamma"} for h in heads), heads
    diff = json.loads(run([DVC, "metrics", "diff", "HEAD", "--json"], root, env).stdout)
    assert diff and set(diff) == {HEADLINE}, diff  # the baseline's headline did not move
    assert set(diff[HEADLINE]) <= {"ZSL", "S", "U", "H", "gamma", *HEADLINE_KEYS[-8:]}, diff


def test_after_dvc_repro_sync_snakemake_leaves_it_nothing_to_do(synced_copy):
    """DVC reruns a stage after a parameter change; Snakemake's own record still holds the old value, so it would
    rerun it too, until `star-repro sync snakemake` marks DVC's outputs as current."""
    root, env = synced_copy
    _set_param(root, "profiles.demo.baselines.revise.epochs", 2)
    refused = subprocess.run([STAR_REPRO, "sync", "snakemake"], cwd=root, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "not up to date" in refused.stderr, refused.stderr
    ran = _ran(run([DVC, "repro"], root, env, timeout=600).stdout)
    assert ran == {"stage_params", "train_ntu60_xsub_55_5_revise_seed1", "evaluate_ntu60_xsub_55_5_revise_seed1",
                   "table2"}, ran
    assert "train_ntu60_xsub_55_5_revise_seed1" in _jobs(run([SNAKEMAKE, "-n", "--cores", "2"], root, env).stdout)
    run([STAR_REPRO, "sync", "snakemake"], root, env, timeout=600)
    out = run([SNAKEMAKE, "-n", "--cores", "2"], root, env)
    assert not _jobs(out.stdout), out.stdout[-2000:]
    assert json.loads(run([DVC, "status", "--json"], root, env).stdout or "{}") == {}


def test_a_data_param_reaches_only_prepare(synced_copy):
    """A key only prepare reads: after the params stage, DVC sees prepare changed and nothing else; the rerun gives
    identical outputs, so nothing downstream runs."""
    root, env = synced_copy
    _set_param(root, "prepare.on_error", "skip")
    status = json.loads(run([DVC, "status", "--json"], root, env).stdout)
    assert set(status) == {"stage_params"}, status  # DVC names the changed key ...
    assert "prepare" in json.dumps(status["stage_params"]), status
    run([DVC, "repro", "stage_params"], root, env)
    status = json.loads(run([DVC, "status", "--json"], root, env).stdout)
    assert set(status) == {"prepare_ntu60"}, status  # ... and, once the params files are written, what it reaches
    ran = _ran(run([DVC, "repro"], root, env, timeout=600).stdout)
    assert ran == {"prepare_ntu60"}, ran
