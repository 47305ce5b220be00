"""One registry, two engines: dvc.yaml is current; Snakemake rules mirror the same stages."""
from __future__ import annotations

import copy
import subprocess
import sys

import yaml

from star_repro.config import load_params
from star_repro.registry import build_stages, render_dvc_yaml


def test_committed_dvc_yaml_is_current(project_root):
    params = load_params(project_root / "params.yaml")
    assert (project_root / "dvc.yaml").read_text(encoding="utf-8") == render_dvc_yaml(params), \
        "dvc.yaml is stale: run `star-repro dag --write`"
    out = subprocess.run([sys.executable, "-m", "star_repro.cli", "dag", "--check"], cwd=project_root,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_dag_check_fails_on_a_stale_file(project_root, tmp_path):
    stale = tmp_path / "dvc.yaml"
    stale.write_text((project_root / "dvc.yaml").read_text().replace("star-repro prepare", "star-repro prep"))
    out = subprocess.run([sys.executable, "-m", "star_repro.cli", "dag", "--check", "--dvc-yaml", str(stale)],
                         cwd=project_root, capture_output=True, text=True)
    assert out.returncode == 1 and "stale" in out.stderr


def test_every_stage_declares_params_that_exist(project_root):
    params = load_params(project_root / "params.yaml")
    from star_repro.config import get_key

    for st in build_stages(params):
        assert st.params, st.name
        for key in st.params:
            get_key(params, key)


def test_changing_a_star_weight_touches_only_train_evaluate_and_reports(project_root):
    """The params keys declared per stage decide what reruns; a STAR setting reaches no data/text/pretrain stage."""
    params = load_params(project_root / "params.yaml")
    key = f"profiles.{params['profile']}.star"
    readers = {st.kind for st in build_stages(params) if any(key == k or k.startswith(key + ".") for k in st.params)}
    assert readers <= {"train", "evaluate", "figures"}, readers
    assert {"train", "evaluate"} <= readers


def test_table2_depends_only_on_ntu60_runs(project_root):
    params = load_params(project_root / "params.yaml")
    (t2,) = [s for s in build_stages(params) if s.name == "table2"]
    runs = [d for d in t2.deps if d.startswith("runs/")]
    assert runs and all(d.startswith("runs/ntu60_") for d in runs)


def test_dvc_yaml_is_flat_and_sorted(project_root):
    doc = yaml.safe_load((project_root / "dvc.yaml").read_text())
    names = list(doc["stages"])
    assert names == sorted(names)
    for st in doc["stages"].values():
        assert "${" not in yaml.safe_dump(st)  # literal, no templating
