"""params.yaml validation: errors name the key; stage views contain only the declared keys."""
from __future__ import annotations

import copy

import pytest
import yaml

from star_repro.config import load_params, stage_params, subset, validate
from star_repro.errors import ParamsError


@pytest.fixture()
def params(project_root):
    return load_params(project_root / "params.yaml")


def _write(tmp_path, params):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def test_committed_params_are_valid(params):
    assert params["profile"] in ("demo", "paper", "official-code")


@pytest.mark.parametrize("mutate, key", [
    (lambda p: p["prepare"].__setitem__("on_error", "ignore"), "prepare.on_error"),
    (lambda p: p["protocols"]["ntu60"]["xview"].__setitem__("by", "cameras"), "protocols.ntu60.xview.by"),
    (lambda p: p["splits"]["ntu60_seen55_unseen5"].__setitem__("unknwn", [1]), "splits.ntu60_seen55_unseen5"),
    (lambda p: p["experiments"]["ntu60_xsub_55_5"].__setitem__("partition", 5), "experiments.ntu60_xsub_55_5.partition"),
    (lambda p: p.__setitem__("profile", "fast"), "profile"),
    (lambda p: p["data"].__setitem__("datasets", ["ntu60", "kinetics"]), "data.datasets.1"),
])
def test_schema_errors_name_the_key(params, tmp_path, mutate, key):
    bad = copy.deepcopy(params)
    mutate(bad)
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, bad))
    assert key in str(err.value)


def test_cross_reference_errors(params):
    bad = copy.deepcopy(params)
    bad["experiments"]["ntu60_xsub_55_5"]["split"] = "pkuv1_seen46_unseen5"
    with pytest.raises(ParamsError, match="experiments.ntu60_xsub_55_5.*belongs to pku1"):
        validate(bad)
    bad = copy.deepcopy(params)
    bad["splits"]["ntu60_seen55_unseen5"]["unknown"] = [3, 60]
    with pytest.raises(ParamsError, match=r"splits.ntu60_seen55_unseen5.unknown.*\[60\]"):
        validate(bad)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: demo\ndata: [unclosed\n", encoding="utf-8")
    with pytest.raises(ParamsError, match=r"params.yaml:\d+"):
        load_params(path)


def test_subset_holds_only_declared_keys(params):
    sub = subset(params, ["protocols.ntu60.xview", "prepare"])
    assert sub == {"protocols": {"ntu60": {"xview": params["protocols"]["ntu60"]["xview"]}},
                   "prepare": params["prepare"]}


def test_stage_params_is_the_declared_subset(project_root):
    p = stage_params(project_root / "params.yaml", "prepare_ntu60")
    assert set(p) == {"data", "prepare", "protocols"}
    assert set(p["protocols"]) == {"ntu60"}
    with pytest.raises(ParamsError, match="no stage named"):
        stage_params(project_root / "params.yaml", "prepare_kinetics")
