"""params.yaml validation: errors name the key; stage views contain only the declared keys."""
from __future__ import annotations

import copy

import pytest
import yaml

from star_repro.config import load_params, subset, validate
from star_repro.registry import stage_params
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


def test_duplicate_key_names_the_key_and_both_lines(project_root, tmp_path):
    text = (project_root / "params.yaml").read_text(encoding="utf-8")
    first = text.splitlines().index("profile: demo") + 1
    path = tmp_path / "params.yaml"
    path.write_text(text + "profile: paper\n", encoding="utf-8")
    last = len(text.splitlines()) + 1
    with pytest.raises(ParamsError) as err:
        load_params(path)
    msg = str(err.value)
    assert f"params.yaml:{last}" in msg and "'profile'" in msg and f"line {first}" in msg and f"line {last}" in msg
    nested = text.replace("\n  on_error: fail", "\n  on_error: skip\n  on_error: fail", 1)
    assert nested != text
    path.write_text(nested, encoding="utf-8")
    with pytest.raises(ParamsError, match="duplicate key 'on_error'"):
        load_params(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["figures"]["main"].append("ntu60_nope"), r"figures.main\[2\]: no experiment named 'ntu60_nope'"),
    (lambda p: p["figures"]["tsne"].__setitem__(0, "ntu60_xsub_48_12"),
     r"figures.tsne\[0\]: no experiment named 'ntu60_xsub_48_12_no_prompts'"),
    (lambda p: p["figures"]["confusion"].__setitem__(0, "gone"), r"figures.confusion\[0\]"),
    (lambda p: p["figures"].__setitem__("main", ["ntu60_xsub_55_5"]), r"experiments.pku1_xsub_46_5_m25.tables: fig3"),
    (lambda p: p["experiments"]["ntu60_xsub_55_5_m25"].pop("overrides"), r"ntu60_xsub_55_5_m25.overrides.m"),
    (lambda p: [p["experiments"][n].__setitem__("variant", "other") for n in p["experiments"]
                if n == "ntu60_xsub_55_5"], r"experiments.ntu60_xsub_55_5\w*.tables: table [67] compares"),
])
def test_figure_and_table_references_checked_at_load(params, mutate, message):
    bad = copy.deepcopy(params)
    mutate(bad)
    with pytest.raises(ParamsError, match=message):
        validate(bad)


@pytest.mark.parametrize("section, key, value", [
    ("revise", "lr", -1e-3), ("jpose", "epochs", -5), ("smie", "batch_size", 0), ("cada_vae", "lr", 0),
    ("synse", "cycles", 2.5), ("smie", "hidden", [64, -1]), ("cada_vae", "latent_dim", -16),
    ("revise", "plateau", {"factor": 1.5}), ("jpose", "batch_size", True),
])
def test_baseline_numbers_have_ranges(params, tmp_path, section, key, value):
    bad = copy.deepcopy(params)
    bad["profiles"]["demo"]["baselines"][section][key] = value
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, bad))
    assert f"profiles.demo.baselines.{section}.{key}" in str(err.value)


@pytest.mark.parametrize("key, value", [("base_lr", -0.1), ("epochs", 0), ("batch_size", -64), ("momentum", 1.5)])
def test_pretrain_numbers_have_ranges(params, tmp_path, key, value):
    bad = copy.deepcopy(params)
    bad["profiles"]["paper"]["pretrain"][key] = value
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, bad))
    assert f"profiles.paper.pretrain.{key}" in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    ({"bogus": 1}, r"experiments.ntu60_xsub_55_5.overrides.bogus: unknown key"),
    ({"optimizer": {"lr": -0.1}}, r"experiments.ntu60_xsub_55_5.overrides.optimizer.lr: expected > 0"),
])
def test_star_overrides_checked_at_load(params, overrides, message):
    bad = copy.deepcopy(params)
    bad["experiments"]["ntu60_xsub_55_5"]["overrides"] = overrides
    with pytest.raises(ParamsError, match=message):
        validate(bad)


def test_baseline_overrides_get_the_schema_ranges(params):
    name = next(n for n, e in params["experiments"].items() if e["method"] == "smie")
    bad = copy.deepcopy(params)
    bad["experiments"][name]["overrides"] = {"epochs": 0}
    with pytest.raises(ParamsError, match=rf"experiments.{name}.overrides.epochs: 0 is less than the minimum of 1"):
        validate(bad)
    good = copy.deepcopy(params)
    good["experiments"][name]["overrides"] = {"epochs": 3, "lr": 1e-3}
    validate(good)


def test_a_by_dataset_pretrain_source_is_checked_at_load(params, tmp_path):
    """The schema types the top-level pretrain.source only; an override under by_dataset is checked too."""
    bad = copy.deepcopy(params)
    ds = bad["data"]["datasets"][0]
    pre = bad["profiles"]["paper"]["pretrain"]
    pre.setdefault("by_dataset", {}).setdefault(ds, {})["source"] = "downloaded"
    with pytest.raises(ParamsError, match=rf"profiles\.paper\.pretrain\.by_dataset\.{ds}\.source: expected one of "
                                          r"\['train', 'authors'\], got 'downloaded'"):
        load_params(_write(tmp_path, bad))


@pytest.mark.parametrize("setting", [{"precision": "tf32"}, {"precision": "bf16"}, {"compile": True}])
def test_official_code_profile_refuses_settings_that_change_the_numbers(params, setting):
    bad = copy.deepcopy(params)
    bad["profiles"]["official-code"]["pretrain"].update(setting)
    with pytest.raises(ParamsError, match="profiles.official-code.pretrain: precision must be fp32"):
        validate(bad)
    bad = copy.deepcopy(params)
    bad["profiles"]["official-code"]["pretrain"].setdefault("by_dataset", {}).setdefault("pku1", {}).update(setting)
    with pytest.raises(ParamsError, match="profiles.official-code.pretrain"):
        validate(bad)
    ok = copy.deepcopy(params)
    ok["profiles"]["paper"]["pretrain"].update(setting)
    validate(ok)


def test_pretrain_precision_is_typed_by_the_schema(params, tmp_path):
    bad = copy.deepcopy(params)
    bad["profiles"]["paper"]["pretrain"]["precision"] = "fp16"
    with pytest.raises(ParamsError, match="precision"):
        load_params(_write(tmp_path, bad))
