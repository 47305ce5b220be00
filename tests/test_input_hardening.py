"""Unit checks behind the fuzz tests: values that do not fit float32 are named, text decoding names the encoding,
label rows fail one by one, stale temporaries are removed (only a stage's own), non-finite arrays are never
written."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fuzz_inputs import synth_ntu_texts
from ntu_fixtures import one_body_text
from star_repro.data import pku
from star_repro.data.ntu import parse_skeleton, parse_skeletons
from star_repro.data.prepare import prepare_ntu
from star_repro.errors import InputFormatError, StarReproError
from star_repro.io import (_HOST, atomic_dir, atomic_path, check_finite, decode_text, remove_stale_temps,
                           save_npy_atomic, save_torch_atomic)


@pytest.mark.parametrize("value", ["1e39", "-1e300", "3.4028236e38", "1e400"])
def test_ntu_coordinate_beyond_float32_names_file_line_and_value(value):
    text, _ = one_body_text(3, eol="\n")
    lines = text.split("\n")
    toks = lines[6].split(" ")
    toks[1] = value
    lines[6] = " ".join(toks)
    bad = "\n".join(lines)
    with pytest.raises(InputFormatError) as info:
        parse_skeleton(bad, "S001C001P001R001A001.skeleton")
    assert info.value.line == 7 and value in info.value.reason and "float32" in info.value.reason
    got = parse_skeletons([(bad, "x.skeleton"), (text, "S001C001P001R001A001.skeleton")])
    assert isinstance(got[0], InputFormatError) and got[0].line == 7
    assert np.isfinite(next(iter(got[1].bodies.values())).joints).all()


def test_float32_limit_is_the_rounding_boundary():
    text, _ = one_body_text(1, eol="\n")
    lines = text.split("\n")
    ok = " ".join(["3.4028235e38"] + lines[4].split(" ")[1:])  # float32 max itself is stored
    raw = parse_skeleton("\n".join(lines[:4] + [ok] + lines[5:]), "S001C001P001R001A001.skeleton")
    assert next(iter(raw.bodies.values())).joints[0, 0, 0] == np.finfo(np.float32).max


def test_pku_value_beyond_float32_named():
    row = " ".join(["0.5"] * 149 + ["2e38"]) + "\n"
    pku.read_skeleton_file(row * 2, "0002-L.txt")  # fits
    with pytest.raises(InputFormatError) as info:
        pku.read_skeleton_file(row + row.replace("2e38", "5e38"), "0002-L.txt")
    assert info.value.line == 2 and "5e38" in info.value.reason and "float32" in info.value.reason


def test_decode_text_names_file_line_and_encoding():
    assert decode_text(b"a\nb\n", "f.txt") == "a\nb\n"
    with pytest.raises(InputFormatError) as info:
        decode_text(b"a\nb\xff\n", "f.txt")
    assert (info.value.file, info.value.line) == ("f.txt", 2) and "utf-8" in info.value.reason
    with pytest.raises(InputFormatError, match="byte-order mark"):
        decode_text(b"\xef\xbb\xbfa\n", "f.txt")


def test_skeleton_encoding_errors_say_so():
    text, _ = one_body_text(3)
    for data, what in ((b"\xef\xbb\xbf" + text.encode(), "UTF-8 byte-order mark"),
                       (text.encode("utf-16"), "UTF-16 byte-order mark"),
                       (text.replace("\r\n", "\r").encode(), "carriage returns only"),
                       (b"\x00\x01" + text.encode(), "not ASCII")):
        with pytest.raises(InputFormatError, match=what):
            parse_skeleton(data, "S001C001P001R001A001.skeleton")


def test_label_rows_fail_one_by_one_and_keep_their_numbers():
    rows, errors = pku.parse_label_rows("3,1,20,1\n7,30,20,2\n\n9,x,3,1\n60,1,2,1\n4,40,50,1\n1,2\n", "0002-L.txt")
    assert [(r.row, r.line, r.action) for r in rows] == [(1, 1, 3), (5, 6, 4)]
    assert [(e.row, e.action, e.error.line) for e in errors] == [(2, 7, 2), (3, 9, 4), (4, None, 5), (6, 1, 7)]
    assert pku.clip_name("0002-L", None, 4) == "F002V001C???L004"
    with pytest.raises(InputFormatError, match=r"0002-L.txt:1: empty label file"):
        pku.read_label_file("\n\n", "0002-L.txt")


def _stale(parent, name, pid, token="0badc0de"):
    d = parent / f".{name}.{_HOST}-{pid}-{token}.abcd_123.tmp"
    d.mkdir()
    (d / "joints.npy").write_bytes(b"x" * 100)
    return d


def test_stage_removes_only_its_own_stale_temp_folders(tmp_path):
    processed = tmp_path / "processed"
    processed.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [_stale(processed, "ntu60", dead.pid), _stale(processed, "ntu60", os.getpid())]  # earlier run
        legacy = processed / ".ntu60.k2j4_9xq.tmp"  # the pid-less naming of earlier versions
        legacy.mkdir()
        keep = [_stale(processed, "ntu60", live.pid), _stale(processed, "ntu120", dead.pid),
                processed / ".ntu60.old", processed / ".ntu60x.k2j4_9xq.tmp"]
        for k in keep[2:]:
            k.mkdir()
        folder = tmp_path / "raw"
        folder.mkdir()
        for name, data in synth_ntu_texts().items():
            (folder / f"{name}.skeleton").write_bytes(data)
        prepare_ntu("ntu60", [folder], processed / "ntu60", {}, None, "fail", progress=False)
        assert not any(p.exists() for p in stale + [legacy])
        assert all(p.exists() for p in keep)
        assert sorted(p.name for p in processed.iterdir() if p.name.startswith(".ntu60.")
                      and p.name.endswith(".tmp")) == sorted(p.name for p in keep[:1])
    finally:
        live.kill()
        live.wait()


def test_atomic_writers_clean_stale_files_and_keep_their_own(tmp_path):
    target = tmp_path / "model.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.pt.{_HOST}-{dead.pid}-0badc0de.zz_9abcd.tmp"
    stale.write_bytes(b"partial")
    with atomic_path(target) as tmp:
        assert stale.exists() is False and tmp.exists()
        assert remove_stale_temps(target) == []  # this process's own live temporary is kept
        tmp.write_bytes(b"ok")
    with atomic_dir(tmp_path / "out") as d:
        assert remove_stale_temps(tmp_path / "out") == [] and d.is_dir()
    assert target.read_bytes() == b"ok"


def test_non_finite_arrays_are_never_written(tmp_path):
    with pytest.raises(StarReproError, match=r"x.npy.*1 of 3 values"):
        save_npy_atomic(tmp_path / "x.npy", np.array([1.0, np.inf, 2.0], np.float32))
    with pytest.raises(StarReproError, match=r"model.pt.*model.fc.weight"):
        save_torch_atomic({"model": {"fc.weight": torch.tensor([0.0, float("nan")])}, "epoch": 3},
                          tmp_path / "model.pt")
    assert not list(tmp_path.iterdir())
    check_finite({"a": [np.zeros(3), torch.ones(2)], "labels": np.array([1, 2])}, "ok")
    save_npy_atomic(tmp_path / "ok.npy", np.arange(3))
    assert np.load(tmp_path / "ok.npy").tolist() == [0, 1, 2]
