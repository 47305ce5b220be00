"""`prepare` end to end on a few real files (copied into tmp_path only), the skip/fail policies, the formats of
docs/formats.md, the npz export, `star-repro doctor` and the benchmark."""
from __future__ import annotations

import csv
import json
import shutil
import zipfile

import numpy as np
import pytest

from protocol_lists import PROTOCOLS
from star_repro.cli import main as cli_main
from star_repro.data import pku
from star_repro.data.dataset import SAMPLE_COLUMNS, ProcessedDataset
from star_repro.data.prepare_bench import bench_prepare
from star_repro.data.prepare import (discover_ntu_inputs, export_npz, list_ntu_entries, prepare_ntu,
                                     prepare_pku)
from star_repro.errors import InputFormatError, StarReproError

REAL_NTU = ["S001C001P001R001A001", "S001C001P001R001A002", "S001C001P001R001A050", "S002C001P003R001A003",
            "S004C002P003R001A017", "S017C003P020R002A055", "S017C003P020R002A057"]
ZERO_BODY = ["S001C002P006R001A008", "S001C003P005R002A004"]


def _read_tsv(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, delimiter="\t"))


@pytest.fixture
def ntu_raw(real_data, tmp_path):
    """data/raw/ntu-like folder: an official-style zip holding most samples, loose files for the rest."""
    raw = tmp_path / "raw" / "ntu"
    folder = raw / "nturgb+d_skeletons"
    folder.mkdir(parents=True)
    src = real_data / "ntu" / "skeletons"
    with zipfile.ZipFile(raw / "nturgbd_skeletons_s001_to_s017.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("nturgb+d_skeletons/", b"")
        for name in REAL_NTU[:4] + ZERO_BODY:
            zf.write(src / f"{name}.skeleton", f"nturgb+d_skeletons/{name}.skeleton")
    for name in REAL_NTU[4:]:
        shutil.copy(src / f"{name}.skeleton", folder)
    shutil.copy(real_data / "ntu" / "lists" / "NTU_RGBD_samples_with_missing_skeletons.txt", raw)
    return raw


def test_prepare_ntu_end_to_end_formats(ntu_raw, real_data, tmp_path):
    found = discover_ntu_inputs(ntu_raw, "ntu60")
    assert found["archives"] == {"nturgbd_skeletons_s001_to_s017.zip": True} and found["folder"] is not None
    out = tmp_path / "processed" / "ntu60"
    metrics = prepare_ntu("ntu60", found["sources"], out, PROTOCOLS["ntu60"], found["missing_list"], "fail",
                          workers=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["joints.npy", "metrics.json", "protocols.json",
                                                      "rejected.tsv", "samples.tsv"]
    joints = np.load(out / "joints.npy", mmap_mode="r")
    assert joints.dtype == np.float32 and joints.shape == (7, 3, 300, 25, 2)
    rows = _read_tsv(out / "samples.tsv")
    assert tuple(rows[0]) == SAMPLE_COLUMNS
    assert [r[1] for r in rows[1:]] == sorted(REAL_NTU)
    for i, r in enumerate(rows[1:]):
        assert int(r[0]) == i and r[7] == ""
        g = np.load(real_data / "golden" / "ntu60" / r[1] / "aligned300.npy")
        meta = json.loads((real_data / "golden" / "ntu60" / r[1] / "raw_meta.json").read_text())
        assert int(r[2]) == meta["label0"] and int(r[8]) == meta["denoised_frames_cnt"]
        # the documented CTR-GCN row layout gives back the published (300, 150) array
        assert np.array_equal(joints[i:i + 1].transpose(0, 2, 4, 3, 1).reshape(1, 300, 150)[0], g)
    assert _read_tsv(out / "rejected.tsv") == [["name", "file", "line", "reason"]]
    proto = json.loads((out / "protocols.json").read_text())
    assert set(proto) == {"xsub", "xview"}
    subjects = {int(r[0]): int(r[5]) for r in rows[1:]}
    assert all(subjects[i] in PROTOCOLS["ntu60"]["xsub"]["train"] for i in proto["xsub"]["train"])
    assert sorted(proto["xview"]["train"] + proto["xview"]["test"]) == list(range(7))
    m = json.loads((out / "metrics.json").read_text())
    # the folder keeps the data's counts; run timing stays in the returned (stage) metrics only
    run_keys = ("seconds", "files_per_s", "workers", "peak_rss_mib", "peak_worker_rss_mib")
    assert m == {k: v for k, v in metrics.items() if k not in run_keys}
    assert metrics["peak_rss_mib"] > 10 and metrics["peak_worker_rss_mib"] is None  # one process here
    assert "seconds" in metrics and m["samples"] == 7 and m["missing"] == 2 and m["missing_listed"] == 2
    assert m["missing_unlisted"] == [] and m["rejected"] == 0 and m["two_actor"] == 3
    ds = ProcessedDataset(out)
    assert len(ds) == 7 and ds.meta["camera"].tolist() == [int(r[4]) for r in rows[1:]]


def test_workers_give_identical_output(ntu_raw, tmp_path):
    found = discover_ntu_inputs(ntu_raw, "ntu120")
    a, b = tmp_path / "w1", tmp_path / "w2"
    prepare_ntu("ntu120", found["sources"], a, PROTOCOLS["ntu120"], None, "fail", workers=1, progress=False)
    m = prepare_ntu("ntu120", found["sources"], b, PROTOCOLS["ntu120"], None, "fail", workers=2, progress=False)
    for f in ("joints.npy", "samples.tsv", "protocols.json", "rejected.tsv"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    # without the missing list, the 0-body samples are still left out, and reported as unlisted
    assert m["missing_unlisted"] == sorted(ZERO_BODY) and m["samples"] == 7
    joints = np.load(b / "joints.npy")
    single = [i for i, r in enumerate(_read_tsv(b / "samples.tsv")[1:]) if r[1].endswith(("A001", "A002"))]
    assert np.array_equal(joints[single, :, :, :, 0], joints[single, :, :, :, 1])  # NTU-120 duplicates the actor


def test_skip_policy_writes_rejected_table_and_fail_policy_raises(real_data, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in REAL_NTU[2:5]:
        shutil.copy(real_data / "ntu" / "skeletons" / f"{name}.skeleton", folder)
    bad = folder / "S001C001P001R001A002.skeleton"
    shutil.copy(real_data / "ntu" / "skeletons" / "corrupted__S001C001P001R001A002.skeleton", bad)
    (folder / "notes.skeleton").write_text("not a sample\n")
    out = tmp_path / "out"
    m = prepare_ntu("ntu60", [folder], out, PROTOCOLS["ntu60"], None, "skip", progress=False)
    rejected = _read_tsv(out / "rejected.tsv")
    assert rejected[0] == ["name", "file", "line", "reason"]
    by_name = {r[0]: r for r in rejected[1:]}
    assert by_name["S001C001P001R001A002"][1:3] == [str(bad), "6"] and "found 13" in by_name["S001C001P001R001A002"][3]
    assert "notes" in by_name and by_name["notes"][2] == ""
    assert m["rejected"] == 2 and m["samples"] == 3
    assert np.load(out / "joints.npy").shape == (3, 3, 300, 25, 2)  # reserved rows trimmed, file loadable
    with pytest.raises(InputFormatError) as info:
        prepare_ntu("ntu60", [folder], tmp_path / "out2", PROTOCOLS["ntu60"], None, "fail", progress=False)
    assert "notes.skeleton" in str(info.value)
    (folder / "notes.skeleton").unlink()
    with pytest.raises(InputFormatError) as info:
        prepare_ntu("ntu60", [folder], tmp_path / "out2", PROTOCOLS["ntu60"], None, "fail", workers=2,
                    progress=False)
    assert info.value.file == str(bad) and info.value.line == 6
    assert not (tmp_path / "out2").exists()  # nothing half-written


def test_dataset_scope_duplicates_and_bad_lists(real_data, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    src = real_data / "ntu" / "skeletons"
    shutil.copy(src / "S001C001P001R001A001.skeleton", folder)
    shutil.copy(src / "S001C001P001R001A005.skeleton", folder / "S018C001P001R001A061.skeleton")
    m60 = prepare_ntu("ntu60", [folder], tmp_path / "o60", {}, None, "fail", progress=False)
    m120 = prepare_ntu("ntu120", [folder], tmp_path / "o120", {}, None, "fail", progress=False)
    assert (m60["samples"], m120["samples"]) == (1, 2)
    assert _read_tsv(tmp_path / "o120" / "samples.tsv")[2][2] == "60"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(src / "S001C001P001R001A001.skeleton", other)
    with pytest.raises(StarReproError, match="appears twice"):
        list_ntu_entries([folder, other])
    bad_list = tmp_path / "missing.txt"
    bad_list.write_text("header line\n\nS001C001P001R001A001\nS001 oops\n")
    with pytest.raises(InputFormatError) as info:
        prepare_ntu("ntu60", [folder], tmp_path / "o", {}, bad_list, "fail", progress=False)
    assert info.value.file == str(bad_list) and info.value.line == 4


def test_export_npz_layouts(ntu_raw, tmp_path):
    found = discover_ntu_inputs(ntu_raw, "ntu60")
    out = tmp_path / "p60"
    prepare_ntu("ntu60", found["sources"], out, PROTOCOLS["ntu60"], found["missing_list"], progress=False)
    info = export_npz(out, "xview", tmp_path / "NTU60_CV.npz", chunk=2)
    z = np.load(tmp_path / "NTU60_CV.npz")
    ds = ProcessedDataset(out)
    tr = ds.protocol("xview")["train"]
    assert z["x_train"].dtype == np.float32 and z["x_train"].shape == (len(tr), 300, 150)
    assert z["y_train"].dtype == np.float64 and z["y_train"].shape == (len(tr), 60)
    assert np.array_equal(np.where(z["y_train"] > 0)[1], ds.labels[tr])
    full = np.asarray(ds.joints).transpose(0, 2, 4, 3, 1).reshape(len(ds), 300, 150)
    assert np.array_equal(z["x_train"], full[tr]) and info["shapes"]["x_test"][0] == len(ds.protocol("xview")["test"])


@pytest.fixture
def pku_raw(real_data, tmp_path):
    raw = tmp_path / "raw" / "pku1"
    (raw / "skeletons").mkdir(parents=True)
    (raw / "labels").mkdir()
    for v in ("0005-L", "0299-M"):
        shutil.copy(real_data / "pku" / "skeletons" / f"{v}.txt", raw / "skeletons")
        shutil.copy(real_data / "pku" / "labels" / f"{v}.txt", raw / "labels")
    for f in ("cross-subject.txt", "cross-view.txt"):
        shutil.copy(real_data / "pku" / f, raw)
    return raw


def test_prepare_pku_and_export(pku_raw, tmp_path):
    out = tmp_path / "pku1"
    m = prepare_pku(pku_raw, out, PROTOCOLS["pku1"], "fail", workers=2, progress=False)
    rows = _read_tsv(out / "samples.tsv")[1:]
    names = [r[1] for r in rows]
    assert m["samples"] == 16 == len(names) and names == sorted(names)
    joints = np.load(out / "joints.npy", mmap_mode="r")
    assert joints.shape == (16, 3, 64, 25, 2) and joints.dtype == np.float32
    skel = pku.read_skeleton_file((pku_raw / "skeletons" / "0005-L.txt").read_bytes(), "x")
    labels = pku.read_label_file((pku_raw / "labels" / "0005-L.txt").read_bytes(), "x")
    first = sorted(pku.cut_clips(skel, labels, "0005-L", "x"), key=lambda c: c.name)[0]
    assert rows[0][1] == first.name and rows[0][7] == "0005-L" and rows[0][4] == "1" and rows[0][3] == ""
    assert int(rows[0][2]) == first.label and int(rows[0][8]) == pku.clip_length(first.data)
    assert np.array_equal(joints[0], pku.process_clip(first.data))
    proto = json.loads((out / "protocols.json").read_text())
    assert [names[i][4:8] for i in proto["xview"]["test"]] == ["V002"] * 8  # view M is the test view
    export_npz(out, "xsub", tmp_path / "pkuv1_xsub.npz")
    z = np.load(tmp_path / "pkuv1_xsub.npz")
    assert z["y_train"].dtype == np.int64 and z["y_train"].shape[1] == 1
    assert z["x_train"].shape[1:] == (3, 64, 25, 2) and len(z["x_train"]) + len(z["x_test"]) == 16


def test_prepare_pku_label_beyond_sequence(pku_raw, tmp_path):
    lab = pku_raw / "labels" / "0005-L.txt"
    lab.write_text(lab.read_text() + "3,1490,1600,1\n")
    with pytest.raises(InputFormatError) as info:
        prepare_pku(pku_raw, tmp_path / "a", PROTOCOLS["pku1"], "fail", progress=False)
    assert info.value.file == str(lab) and info.value.line == 9 and "1494 frames" in info.value.reason
    m = prepare_pku(pku_raw, tmp_path / "b", PROTOCOLS["pku1"], "skip", progress=False)
    rejected = _read_tsv(tmp_path / "b" / "rejected.tsv")[1:]
    assert m["rejected"] == 1 and rejected[0][:3] == ["F005V001C003L009", str(lab), "9"]
    assert m["samples"] == 16
    m = prepare_pku(pku_raw, tmp_path / "c", PROTOCOLS["pku1"], "fail", progress=False,
                    ignore=("F005V001C003L009",))
    assert m["samples"] == 16 and m["rejected"] == 0


def test_doctor_reports_present_and_missing(ntu_raw, pku_raw, tmp_path, capsys):
    root = tmp_path / "raw"
    assert cli_main(["doctor", "--raw-root", str(root), "--synthetic-root", str(tmp_path / "none")]) == 0
    text = capsys.readouterr().out
    assert "ok nturgbd_skeletons_s001_to_s017.zip" in text and "skeleton files 6" in text
    assert "missing nturgbd_skeletons_s018_to_s032.zip" in text
    assert str(root / "ntu" / "NTU_RGBD120_samples_with_missing_skeletons.txt") in text
    assert "label files" not in text and "`star-repro synth`" in text
    assert cli_main(["doctor", "--raw-root", str(root), "--strict"]) == 1
    capsys.readouterr()
    assert cli_main(["doctor", "--raw-root", str(root), "--datasets", "ntu60", "pku1", "--json", "--strict"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["missing"] == 0 and [d["dataset"] for d in report["datasets"]] == ["ntu60", "pku1"]


def test_bench_prepare_tiny(tmp_path):
    res = bench_prepare(6, tmp_path, frames=(20, 30), workers=(1,), export=(False, True),
                        protocols={"xset": {"by": "setup", "train": [2], "test": [1]}})
    by = {r["what"]: r for r in res}
    assert list(by) == ["published procedure, reference (per-line parse, per-frame denoise/align, pickles, npz)",
                        "parse only, vectorised", "prepare, workers=1", "prepare --export npz, workers=1"]
    for r in res:
        assert r["files"] == 6 and r["files_per_s"] > 0 and r["peak_rss_mib"] > 10
    assert all(r["ratio_to_reference"] > 0 for r in res[1:])


def test_synthetic_stand_in_noise_bodies_removed_exactly(tmp_path):
    """The embedded synthetic NTU-60 plants noise bodies, dropped frames and missing samples (its manifest says
    which); prepare must remove exactly those bodies, for the reasons the manifest gives."""
    import copy

    from star_repro.data.ntu import denoise, parse_skeleton
    from star_repro.data.synth import DEMO_CFG, write_ntu

    cfg = copy.deepcopy(DEMO_CFG)
    cfg["ntu"].update(subjects_per_class=2, frames=[16, 24], missing_per_archive=1)
    raw = tmp_path / "ntu60"
    manifest = write_ntu(raw, "ntu60", cfg, 1)
    found = discover_ntu_inputs(raw, "ntu60")
    m = prepare_ntu("ntu60", found["sources"], tmp_path / "out", PROTOCOLS["ntu60"], found["missing_list"],
                    workers=2, progress=False)
    counts = manifest["counts"]
    assert m["samples"] == counts["samples"] - counts["missing"] and m["missing_listed"] == counts["missing"]
    assert m["bodies_removed"]["length"] == counts["length_noise_bodies"]
    assert m["bodies_removed"]["spread"] == counts["spread_noise_bodies"]
    assert m["samples_with_dropped_frames"] == counts["samples_with_dropped_frames"]
    with zipfile.ZipFile(found["sources"][0]) as zf:
        for name, rec in list(manifest["samples"].items())[::7]:
            if name in manifest["missing"]:
                continue
            res = denoise(parse_skeleton(zf.read(f"nturgb+d_skeletons/{name}.skeleton"), name))
            assert res.removed == {str(k): v for k, v in rec["noise_bodies"].items()}, name


def test_bench_copies_leave_no_files_of_an_earlier_run(tmp_path):
    """`prepare` reads the whole folder, so a second benchmark into the same work folder must not find the first
    run's extra copies there (its files/s would count them)."""
    from star_repro.data.prepare_bench import copy_renamed

    src = tmp_path / "S001C001P001R001A001.skeleton"
    src.write_bytes(b"bytes are copied unchanged\n")
    out = tmp_path / "skeletons"
    assert len(copy_renamed([src], 5, out)) == 5
    kept = copy_renamed([src], 2, out)
    assert sorted(out.iterdir()) == sorted(kept) and len(kept) == 2
