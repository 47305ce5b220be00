"""One registry, two engines: dvc.yaml is current; Snakemake rules mirror the same stages."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
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


def test_dvc_stages_read_their_own_params_file(project_root):
    """DVC tracks params.yaml once (the params stage) and each stage through its own small file, so `dvc status`
    parses no big params file per stage."""
    from star_repro.registry import STAGE_PARAMS_DIR, STAGE_PARAMS_STAGE

    doc = yaml.safe_load((project_root / "dvc.yaml").read_text())
    params_stage = doc["stages"].pop(STAGE_PARAMS_STAGE)
    assert params_stage["params"] == [{"params.yaml": None}] and params_stage["outs"] == [STAGE_PARAMS_DIR]
    for name, st in doc["stages"].items():
        assert "params" not in st, name
        assert st["deps"][0] == f"{STAGE_PARAMS_DIR}/{name}.json", name


def _changed_files(params: dict, dotted: str, value) -> set[str]:
    from star_repro.registry import stage_params_files

    changed = copy.deepcopy(params)
    *parents, last = dotted.split(".")
    node = changed
    for key in parents:
        node = node[key]
    node[last] = value
    before, after = stage_params_files(params), stage_params_files(changed)
    assert before.keys() == after.keys()
    return {path.rsplit("/", 1)[1][:-len(".json")] for path in before if before[path] != after[path]}


def test_a_params_file_changes_exactly_when_a_key_its_stage_reads_changes(project_root):
    params = load_params(project_root / "params.yaml")
    prof = params["profile"]
    stages = build_stages(params)
    star_readers = {st.name for st in stages if f"profiles.{prof}.star" in st.params}
    assert star_readers and _changed_files(params, f"profiles.{prof}.star.alpha", 0.25) == star_readers
    assert {n.split("_")[0] for n in star_readers} == {"train", "evaluate"}
    # a data key reaches the prepare stages only; scheduling resources and other profiles reach none
    assert _changed_files(params, "prepare.on_error", "skip") == {st.name for st in stages if st.kind == "prepare"}
    assert _changed_files(params, "resources", {"train": {"threads": 4}}) == set()
    other = next(p for p in params["profiles"] if p != prof)
    assert _changed_files(params, f"profiles.{other}.star.alpha", 0.25) == set()


def test_metrics_are_the_run_headlines_only(project_root):
    """`dvc metrics show` is one table with fixed columns: only the evaluate stages declare metrics; bookkeeping
    (prepare counts, pretraining figures, timings) are plain outputs."""
    from star_repro.registry import headline_path

    params = load_params(project_root / "params.yaml")
    for st in build_stages(params):
        if st.kind == "evaluate":
            assert st.metrics == [headline_path(st.name[len("evaluate_"):])]
        else:
            assert not st.metrics, st.name
        assert not [o for o in st.outs if o.startswith(("metrics/", "plots/"))], st.name


def test_committed_headlines_have_the_fixed_keys(project_root):
    """The committed demo results (metrics/runs/*.json) are headline files, each with exactly the fixed keys, and
    every one belongs to an evaluate stage of the pipeline."""
    import json

    from star_repro.metrics import HEADLINE_KEYS
    from star_repro.registry import headline_path

    files = sorted((project_root / "metrics" / "runs").glob("*.json"))
    if not files:
        pytest.skip("no committed metrics/runs/*.json in this checkout")
    declared = {m for st in build_stages(load_params(project_root / "params.yaml")) for m in st.metrics}
    for path in files:
        assert list(json.loads(path.read_text())) == HEADLINE_KEYS, path
        assert headline_path(path.stem) in declared, f"{path.name}: no evaluate stage writes it (stale?)"


def test_a_params_file_changes_exactly_when_a_source_file_its_stage_runs_changes(project_root, monkeypatch):
    """Source files are named in dvc.yaml by the stage_params stage only; each stage's own params file carries
    their hashes, so an edit of the pretraining code reaches the pretrain stages and no other."""
    from star_repro.registry import CODE_KEY, STAGE_PARAMS_STAGE, render_dvc_yaml, source_sha256, stage_params_files

    monkeypatch.chdir(project_root)
    params = load_params(project_root / "params.yaml")
    stages = build_stages(params)
    before = stage_params_files(params)
    edited = "src/star_repro/training/pretrain.py"
    after = stage_params_files(params, sha256=lambda p: "edited" if p == edited else source_sha256(p))
    changed = {path.rsplit("/", 1)[1][:-len(".json")] for path in before if before[path] != after[path]}
    assert changed == {st.name for st in stages if edited in st.deps} != set()
    assert {n.split("_")[0] for n in changed} == {"pretrain"}
    some = json.loads(before[f"data/stage_params/{sorted(changed)[0]}.json"])
    assert some[CODE_KEY][edited] == source_sha256(edited)
    doc = yaml.safe_load(render_dvc_yaml(params))["stages"]
    listed = set(doc.pop(STAGE_PARAMS_STAGE)["deps"])
    assert not [n for n, st in doc.items() if any(d.startswith("src/") for d in st["deps"])]
    assert {d for st in stages for d in st.deps if d.startswith("src/")} <= listed


def test_a_missing_source_file_is_named(project_root, tmp_path, monkeypatch):
    from star_repro.registry import stage_params_files

    monkeypatch.chdir(tmp_path)  # no src/ here
    with pytest.raises(ValueError, match="source file src/star_repro/.* cannot be read"):
        stage_params_files(load_params(project_root / "params.yaml"))
