"""Artefacts through a DVC remote: Snakemake builds, `star-repro sync dvc` records, `dvc push` shares; a fresh clone rebuilds
the tables from the remote without training.

The remote is a local folder (DVC treats it like any other remote; an S3-compatible store only changes the URL).
Every `star-repro` call on the second clone goes through a recording shim on PATH, so "no training ran" is checked
from the calls themselves, not inferred from timestamps.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _project_copy import VENV_BIN, calls, clone, copy_project, env_for, make_shim, run, tiny_params

pytestmark = pytest.mark.slow

DVC = str(VENV_BIN / "dvc")


def dvc_status(cwd: Path, env: dict) -> dict:
    out = run([DVC, "status", "--json"], cwd, env).stdout
    return json.loads(out or "{}")


def git_commit_all(cwd: Path, env: dict, message: str) -> None:
    run(["git", "add", "-A"], cwd, env)
    run(["git", "commit", "-q", "-m", message], cwd, env)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, project_root):
    """Machine A: a Snakemake run of the tiny demo DAG, recorded by `star-repro sync dvc` (writes DVC's per-stage
    params files, then `dvc commit`), pushed to a folder remote."""
    params = tiny_params(project_root)
    tmp = tmp_path_factory.mktemp("dvc")
    a = copy_project(project_root, tmp / "a", params)
    env = env_for(a)
    if not (a / ".dvc" / "config").exists():
        run([DVC, "init", "-q"], a, env)
    remote = tmp / "remote"
    run([DVC, "remote", "add", "-d", "shared", str(remote)], a, env)
    git_commit_all(a, env, "dvc remote")

    run([str(VENV_BIN / "snakemake"), "--workflow-profile", "workflow/profiles/default", "--cores", "2"], a, env,
        timeout=900)
    stale = dvc_status(a, env)
    assert stale, "before the sync DVC must see Snakemake's outputs as unrecorded"
    run([str(VENV_BIN / "star-repro"), "sync", "dvc"], a, env, timeout=600)
    assert dvc_status(a, env) == {}, "after `star-repro sync dvc` the pipeline must be up to date for DVC"
    # a `dvc repro` now has nothing to do: DVC agrees with what Snakemake built
    out = run([DVC, "repro", "--dry"], a, env).stdout
    assert "Running stage" not in out, out
    git_commit_all(a, env, "results of a Snakemake run, recorded in dvc.lock")
    run([DVC, "push", "--quiet"], a, env)
    return a, remote


def test_dvc_status_is_clean_after_snakemake_and_sync(pushed):
    a, remote = pushed
    env = env_for(a)
    assert dvc_status(a, env) == {}
    lock = (a / "dvc.lock").read_text()
    assert "train_" in lock and "tables" in lock
    # every cached output went to the remote (DVC 3 layout: files/md5/xx/...)
    assert any((remote / "files" / "md5").rglob("*"))
    assert run(["git", "status", "--porcelain"], a, env).stdout == "", "everything git should hold is committed"


def test_fresh_clone_pulls_a_table_byte_for_byte(pushed, tmp_path):
    a, _ = pushed
    b = clone(a, tmp_path / "b")
    env = env_for(b)
    for table in (b / "results").glob("table*"):
        table.unlink()  # tables kept in git (if any) must come from the remote here
    tables = sorted((a / "results").glob("table*"))
    assert tables
    run([DVC, "pull", "--quiet", *[f"results/{t.name}" for t in tables]], b, env)
    for table in tables:
        assert (b / "results" / table.name).read_bytes() == table.read_bytes(), table.name
    assert not (b / "runs").exists(), "pulling tables must not fetch the runs behind them"


def test_fresh_clone_rebuilds_tables_without_training(pushed, tmp_path):
    """Machine B changes the table code and runs `dvc repro --pull --allow-missing`: only the tables stage runs,
    on evaluation outputs pulled from the remote, and its tables equal A's byte for byte."""
    a, _ = pushed
    b = clone(a, tmp_path / "b")
    shim = tmp_path / "shim"
    env = env_for(b, **make_shim(shim, str(VENV_BIN / "star-repro")))
    tables_py = b / "src/star_repro/reporting/tables.py"
    tables_py.write_text(tables_py.read_text() + "\n# edited on machine B: the tables stage must rerun\n")
    for table in (b / "results").glob("table*"):
        table.unlink()  # tables kept in git (if any) must be rebuilt, not reused

    out = run([DVC, "repro", "--pull", "--allow-missing"], b, env, timeout=600).stdout
    ran = [args for _, args in calls(shim)]
    # the source edit first refreshes the per-stage params files (they carry the sources' hashes), which is
    # how DVC learns that exactly the table stages changed
    assert ran[:1] == ["dag --stage-params"], ran
    ran = ran[1:]
    n_tables = len(list((a / "results").glob("table*.csv")))
    assert ran and all(r.startswith("tables") for r in ran), f"only table stages may run on B: {ran}\n{out}"
    assert len(ran) == len(set(ran)) == n_tables, ran
    assert not list(b.glob("runs/*/train")), "training outputs are not needed to rebuild tables"
    assert not (b / "data" / "processed").exists() and not (b / "data" / "checkpoints").exists()
    for table in sorted((a / "results").glob("table*")):
        assert (b / "results" / table.name).read_bytes() == table.read_bytes(), table.name
