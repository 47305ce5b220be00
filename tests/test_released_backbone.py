"""`pretrain.source: authors`: the authors' released Shift-GCN files replace the pretraining stage, with the
known-class check and the optional sha256 pin (stand-in checkpoints made here in the release's layout)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from star_repro.cli import main
from star_repro.data.splits import ClassSplit
from star_repro.errors import StarReproError
from star_repro.models.shiftgcn import ShiftGCN
from star_repro.registry import build_stages
from star_repro.training.released_backbone import import_released, released_name
from star_repro.training.star_train import load_backbone

ROOT = Path(__file__).resolve().parents[1]
SPLIT = ClassSplit("ntu60_seen55_unseen5", 60, [10, 11, 19, 26, 56])
NAME = "ntu60_ShiftGCN_joint_xsub_seen55_unseen5-81-94136.pt"
WIDTH = 0.125


def _release(path: Path, num_class: int, seed: int = 0) -> dict:
    """A stand-in release: a Shift-GCN state dict saved as DataParallel would (`module.` prefix)."""
    torch.manual_seed(seed)
    state = ShiftGCN(num_class, width=WIDTH).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"module." + k: v for k, v in state.items()}, path)
    return state


def _cfg(folder: Path, **extra) -> dict:
    return {"source": "authors", "released_dir": str(folder), "width": WIDTH, "window": 16, **extra}


def test_release_names_follow_the_authors_configs():
    assert released_name("ntu60", "xsub", "ntu60_seen55_unseen5") == NAME
    assert released_name("pku1", "xview", "pkuv1_seen39_unseen12") == \
        "pkummdv1_ShiftGCN_joint_xview_seen39_unseen12-81-28700.pt"
    assert released_name("ntu120", "xset", "ntu120_seen96_unseen24").endswith("-81-111684.pt")
    assert released_name("ntu60", "xsub", "as_ntu60_seen55_unseen5_split1") is None  # Table 5: none released


def test_import_writes_a_backbone_that_passes_the_known_class_check(tmp_path):
    state = _release(tmp_path / "w" / NAME, 55)
    m = import_released(tmp_path / "w" / NAME, "ntu60", "xsub", SPLIT, _cfg(tmp_path / "w"), tmp_path / "out")
    conf = json.loads((tmp_path / "out/config.json").read_text())
    sha = hashlib.sha256((tmp_path / "w" / NAME).read_bytes()).hexdigest()
    assert conf["source"] == "authors" and conf["release"]["file"] == NAME and conf["release"]["sha256"] == sha
    assert m["fc_outputs"] == 55 and not conf["release"]["fc_dropped"] and conf["feeder"] == "ntu"
    model, _ = load_backbone(tmp_path / "out", SPLIT)
    assert torch.equal(model.state_dict()["l1.gcn1.Linear_weight"], state["l1.gcn1.Linear_weight"])
    other = ClassSplit("ntu60_seen48_unseen12", 60, [3, 5, 9, 12, 15, 40, 42, 47, 51, 56, 58, 59])
    with pytest.raises(StarReproError, match="other known classes"):
        load_backbone(tmp_path / "out", other)


def test_a_classifier_over_all_classes_is_dropped_and_recorded(tmp_path):
    _release(tmp_path / NAME, 60)
    m = import_released(tmp_path / NAME, "ntu60", "xsub", SPLIT, _cfg(tmp_path), tmp_path / "out")
    assert m["fc_outputs"] == 60
    assert json.loads((tmp_path / "out/config.json").read_text())["release"]["fc_dropped"] is True


def test_wrong_class_count_pin_mismatch_and_absence_are_refused(tmp_path):
    _release(tmp_path / NAME, 48)
    with pytest.raises(StarReproError, match="48 outputs, but split ntu60_seen55_unseen5 has 55 known"):
        import_released(tmp_path / NAME, "ntu60", "xsub", SPLIT, _cfg(tmp_path), tmp_path / "out")
    _release(tmp_path / NAME, 55)
    with pytest.raises(StarReproError, match=r"but params pin 0{64} \(pretrain.released_sha256"):
        import_released(tmp_path / NAME, "ntu60", "xsub", SPLIT,
                        _cfg(tmp_path, released_sha256={NAME: "0" * 64}), tmp_path / "out")
    with pytest.raises(StarReproError, match="is not there. Download"):
        import_released(tmp_path / "none.pt", "ntu60", "xsub", SPLIT, _cfg(tmp_path), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pretrain_stage_imports_the_release_in_place_of_training(tmp_path, monkeypatch, capsys):
    params = yaml.safe_load((ROOT / "tests/data/params.tiny.yaml").read_text())
    params["profiles"]["demo"]["pretrain"].update(source="authors", released_dir="w")
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(params))
    (st,) = [s for s in build_stages(params) if s.kind == "pretrain"]
    assert st.deps[0] == f"w/{NAME}" and "data/processed/ntu60" not in st.deps  # no prepared data needed
    # bookkeeping, not a DVC metric (metrics/ holds the runs' headlines only), as for a trained backbone
    assert st.metrics == [] and "stats/pretrain_ntu60_xsub_ntu60_seen55_unseen5.json" in st.outs
    _release(tmp_path / "w" / NAME, 55)
    sha = hashlib.sha256((tmp_path / "w" / NAME).read_bytes()).hexdigest()
    params["profiles"]["demo"]["pretrain"]["released_sha256"] = {NAME: sha}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["pretrain", "--dataset", "ntu60", "--protocol", "xsub", "--split", "ntu60_seen55_unseen5"]) == 0
    out = tmp_path / "data/pretrain/ntu60_xsub_ntu60_seen55_unseen5"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.json", "model.pt"]
    assert json.loads((tmp_path / "stats/pretrain_ntu60_xsub_ntu60_seen55_unseen5.json").read_text())["sha256"] \
        == sha
    assert "imported the authors'" in capsys.readouterr().out


def test_the_profiles_shift_formula_reaches_the_imported_backbone(tmp_path):
    """official-code sets shift_formula: kernel; the imported release must be evaluated with it, not with lerp."""
    _release(tmp_path / NAME, 55)
    import_released(tmp_path / NAME, "ntu60", "xsub", SPLIT, _cfg(tmp_path, shift_formula="kernel"), tmp_path / "k")
    assert json.loads((tmp_path / "k/config.json").read_text())["shift_formula"] == "kernel"
    model, _ = load_backbone(tmp_path / "k", SPLIT)
    assert model.shift_formula == "kernel"
    assert {m.formula for m in model.modules() if hasattr(m, "formula")} == {"kernel"}
