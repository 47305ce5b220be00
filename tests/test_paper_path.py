"""The paper path: under `official-code` the DAG reads the authors' released 6-part descriptions (`imported-star`,
imported here from ../shared into temporary copies only), the 2/4-part sets say how to fill them, and `doctor`
lists every missing input of the profile with its command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from _project_copy import VENV_BIN, copy_project, env_for, run
from star_repro.cli import main
from star_repro.registry import build_stages

ROOT = Path(__file__).resolve().parents[1]
RELEASE = {"ntu120": "star_ntu120_part_descriptions.txt", "pku1": "star_pkuv1_part_descriptions.txt"}


def _params(profile: str = "official-code", **pretrain) -> dict:
    p = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    p["profile"], p["data"]["source"] = profile, "real"
    p["profiles"][profile]["pretrain"].update(pretrain)
    return p


@pytest.mark.parametrize("profile", ["official-code", "paper"])
def test_paper_profiles_read_the_released_six_part_set(profile):
    describe = {s.name: s for s in build_stages(_params(profile)) if s.kind == "describe"}
    assert describe, "the profile's experiments need descriptions"
    for name, st in describe.items():
        part = int(name.split("_")[2][0])
        want = "imported-star" if part == 6 else "openai"
        assert st.deps[0].startswith(f"prompts/cache/{want}/"), (name, st.deps)
        assert f"profiles.{profile}.descriptions" in st.params
    demo = {s.name: s for s in build_stages(_params("demo")) if s.kind == "describe"}
    assert all(s.deps[0].startswith("prompts/cache/authored/") and s.params == ["descriptions"]
               for s in demo.values())


@pytest.mark.parametrize("profile", ["demo", "paper", "official-code"])
def test_fetch_is_never_a_stage(profile):
    for source in ("train", "authors"):
        stages = build_stages(_params(profile, source=source))
        assert stages and not any("fetch" in s.cmd.split() or s.cmd.startswith("star-repro descriptions")
                                  for s in stages)


def test_official_code_dag_reads_imported_star(tmp_path, real_data):
    """Through Snakemake: the 6-part NTU-60 descriptions of the official-code DAG are the authors' text (after
    `descriptions import`); the 4-part stage refuses with the command that fills the set."""
    from star_repro.text.importers import import_descriptions, parse_star

    params = _params()
    params["data"]["datasets"] = ["ntu60"]
    params["experiments"] = {k: v for k, v in params["experiments"].items() if v["dataset"] == "ntu60"}
    # the figures of the kept experiments (fig3 runs must keep their figure base: config checks it at load)
    params["figures"] = {k: [b for b in v if b in params["experiments"]] for k, v in params["figures"].items()}
    ppath = tmp_path / "params.yaml"
    ppath.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    root = copy_project(ROOT, tmp_path / "project", params=ppath, git=False)
    env = env_for(root)
    release = real_data / "descriptions" / RELEASE["ntu120"]
    import_descriptions(release, "star", "ntu120", cache_root=root / "prompts/cache")
    run([str(VENV_BIN / "snakemake"), "--cores", "1", "data/descriptions/ntu60_6part.json"], root, env)
    out = json.loads((root / "data/descriptions/ntu60_6part.json").read_text())
    assert out["cache"]["file"] == "prompts/cache/imported-star/ntu120_6part.json"
    released = {pl.name: pl.texts for pl in parse_star(release)}
    assert out["descriptions"]["drink water"] == released["drink water"]
    assert len(out["classes"]) == 60

    import subprocess

    res = subprocess.run([str(VENV_BIN / "star-repro"), "describe", "--dataset", "ntu60", "--partition", "4"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "released no 4-part descriptions" in res.stderr
    assert "star-repro descriptions fill --set openai --dataset ntu60 --partition 4" in res.stderr
    assert not (root / "data/descriptions/ntu60_4part.json").exists()


def _doctor(tmp_path, capsys, *extra) -> tuple[int, dict]:
    code = main(["doctor", "--json", "--strict", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_doctor_lists_every_missing_input_of_official_code(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params()), encoding="utf-8")
    code, rep = _doctor(tmp_path, capsys)
    assert code == 1 and rep["profile"]["profile"] == "official-code"
    missing = "\n".join(rep["profile"]["missing"])
    for ds in ("ntu120", "pku1"):
        assert f"descriptions imported-star for {ds} 6-part" in missing
    assert missing.count("run: star-repro fetch descriptions") == 2  # NTU-60 shares the ntu120 file
    for ds in ("ntu60", "pku1"):
        for part in (4, 2):
            assert f"run: star-repro descriptions fill --set openai --dataset {ds} --partition {part}" in missing
    assert "CLIP weights for clip:ViT-L-14-336: not found" in missing and "run: star-repro fetch clip" in missing
    assert "authors' backbone" not in missing  # optional while pretrain.source is train
    backbones = rep["profile"]["backbones"]
    assert sum(b["released"] for b in backbones) == 12 and not any(b.get("required") for b in backbones)
    # raw data: every archive, list and PKU folder, each with where it goes
    raw = [m for d in rep["datasets"] for m in d["missing"]]
    assert any("nturgbd_skeletons_s001_to_s017.zip" in m for m in raw) and any("cross-view.txt" in m for m in raw)
    assert rep["missing"] == len(raw) + len(rep["profile"]["missing"])


def test_doctor_reports_partial_sets_bad_weights_and_required_backbones(tmp_path, monkeypatch, capsys,
                                                                         real_data):
    from star_repro.text.importers import import_descriptions

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params(source="authors")), encoding="utf-8")
    import_descriptions(real_data / "descriptions" / RELEASE["ntu120"], "star", "ntu120")
    lines = (real_data / "descriptions" / RELEASE["pku1"]).read_text().splitlines()
    partial = tmp_path / "pku_partial.txt"  # a temporary copy without its last two classes
    partial.write_text("\n".join(lines[:-2]) + "\n")
    import_descriptions(partial, "star", "pku1", allow_partial=True)
    (tmp_path / "data/weights").mkdir(parents=True)
    (tmp_path / "data/weights/ViT-L-14-336px.pt").write_bytes(b"not the weights")
    code, rep = _doctor(tmp_path, capsys)
    desc = {(d["dataset"], d["partition"]): d for d in rep["profile"]["descriptions"]}
    assert desc[("ntu120", 6)]["present"] and desc[("ntu60", 6)]["present"]
    assert not desc[("pku1", 6)]["present"] and desc[("pku1", 6)]["missing"] == 12
    missing = "\n".join(rep["profile"]["missing"])
    assert "pku1 6-part (prompts/cache/imported-star/pku1_6part.json): 12 missing and 0 stale of 306" in missing
    assert "imported-star for ntu120" not in missing
    assert "is not the published 3035c92b" in missing and "run: star-repro fetch clip" in missing
    needed = [m for m in rep["profile"]["missing"] if m.startswith("authors' backbone")]
    assert len(needed) == 12 and "pkummdv1_ShiftGCN_joint_xview_seen39_unseen12-81-28700.pt" in missing
    assert code == 1
    # text report: the same, readable
    main(["doctor"])
    text = capsys.readouterr().out
    assert "-- descriptions pku1 6-part: set imported-star" in text
    assert "ok descriptions ntu120 6-part: set imported-star" in text
    assert "authors' backbones: 0 of 12 present under data/weights/shiftgcn (required" in text
