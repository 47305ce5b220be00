"""Fuzz tests of `prepare`: every kind of malformed raw input (tests/fuzz_inputs.py), made from the real files in
../shared/data/real and from the project's own fixtures, must give
  - under `fail`: an error naming the file and the line (None only where the damage has no line);
  - under `skip`: a row in rejected.tsv naming the file and line, with a reason;
  - every valid sample kept, bit-identical to a clean run;
  - only finite values in joints.npy.
"""
from __future__ import annotations

import csv
import shutil
import warnings
import zipfile

import numpy as np
import pytest

from conftest import REAL_DATA
from fuzz_inputs import (PKU_LABEL_ROW, Variant, ntu_variants, pku_label_variants, pku_skeleton_variants,
                         synth_ntu_texts, synth_pku_raw)
from protocol_lists import PROTOCOLS
from star_repro.data import pku
from star_repro.data.prepare import prepare_ntu, prepare_pku
from star_repro.errors import InputFormatError, StarReproError

REAL_NTU = ("S001C001P001R001A001", "S001C001P001R001A003", "S002C001P003R001A003", "S001C001P001R001A050")
REAL_PKU = ("0005-L", "0299-M")
SOURCES = ("fixture", "real")


def _read_tsv(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, delimiter="\t"))


def _need_real(source: str) -> None:
    if source == "real" and not REAL_DATA.is_dir():
        pytest.skip(f"real third-party data not found at {REAL_DATA}; the fixture variant covers the same kinds")


def _ntu_texts(source: str) -> dict[str, bytes]:
    if source == "fixture":
        return synth_ntu_texts()
    return {n: (REAL_DATA / "ntu" / "skeletons" / f"{n}.skeleton").read_bytes() for n in REAL_NTU}


def _write_folder(folder, texts: dict[str, bytes]):
    folder.mkdir(parents=True)
    for name, data in texts.items():
        (folder / f"{name}.skeleton").write_bytes(data)
    return folder


def _outputs(out) -> dict[str, np.ndarray]:
    names = [r[1] for r in _read_tsv(out / "samples.tsv")[1:]]
    joints = np.load(out / "joints.npy")
    assert np.isfinite(joints).all(), "a non-finite value was stored"
    return dict(zip(names, joints))


_CLEAN: dict[tuple[str, str], dict[str, np.ndarray]] = {}


def _clean(kind: str, source: str, tmp_path_factory) -> dict[str, np.ndarray]:
    """Outputs of an undamaged run, per dataset kind and source (computed once)."""
    key = (kind, source)
    if key not in _CLEAN:
        root = tmp_path_factory.mktemp(f"clean_{kind}_{source}")
        if kind == "ntu":
            folder = _write_folder(root / "raw", _ntu_texts(source))
            prepare_ntu("ntu60", [folder], root / "out", PROTOCOLS["ntu60"], None, "fail", progress=False)
        else:
            prepare_pku(_pku_raw(source, root / "raw"), root / "out", PROTOCOLS["pku1"], "fail", progress=False)
        _CLEAN[key] = _outputs(root / "out")
    return _CLEAN[key]


def _check_policies(run, bad_file: str, line: int | None, expect_rejected: set[str], keep: dict, tmp_path):
    """`run(on_error, out)` under both policies: fail names file and line and writes nothing; skip lists the
    rejected names with file, line and a reason and keeps every sample of `keep` (name -> clean output) bit
    for bit, and nothing else."""
    with pytest.raises(InputFormatError) as info:
        run("fail", tmp_path / "fail")
    assert info.value.file == bad_file and info.value.line == line, str(info.value)
    assert info.value.reason and bad_file in str(info.value)
    assert not (tmp_path / "fail").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow warning may escape either
        run("skip", tmp_path / "skip")
    rejected = {r[0]: r for r in _read_tsv(tmp_path / "skip" / "rejected.tsv")[1:]}
    assert set(rejected) == expect_rejected, rejected
    first = rejected[sorted(expect_rejected)[0]]
    assert first[1] == bad_file and first[2] == ("" if line is None else str(line)) and first[3]
    kept = _outputs(tmp_path / "skip")
    assert set(kept) == set(keep)
    for name, arr in kept.items():
        assert np.array_equal(arr, keep[name]), name


def _without(clean: dict, names) -> dict:
    return {n: a for n, a in clean.items() if n not in set(names)}


# ------------------------------------------------------------------------------------------------ NTU

NTU_TARGET = {"fixture": "S001C001P001R001A001", "real": "S001C001P001R001A001"}
NTU_KINDS = [v.kind for v in ntu_variants(synth_ntu_texts()[NTU_TARGET["fixture"]])]


def test_ntu_fuzz_generator_covers_the_issue_classes():
    assert len(NTU_KINDS) >= 12 and len(set(NTU_KINDS)) == len(NTU_KINDS)
    assert {"truncated", "split_number", "non_numeric", "body_count_disagrees", "empty", "binary", "utf8_bom",
            "cr_only", "trailing_junk", "float32_overflow"} <= set(NTU_KINDS)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", NTU_KINDS)
def test_ntu_malformed_file(kind, source, tmp_path, tmp_path_factory):
    _need_real(source)
    texts = _ntu_texts(source)
    target = NTU_TARGET[source]
    variant = {v.kind: v for v in ntu_variants(texts[target])}[kind]
    folder = _write_folder(tmp_path / "raw", texts | {target: variant.data})
    bad = str(folder / f"{target}.skeleton")

    def run(policy, out):
        return prepare_ntu("ntu60", [folder], out, PROTOCOLS["ntu60"], None, policy, progress=False)

    _check_policies(run, bad, variant.line, {target}, _without(_clean("ntu", source, tmp_path_factory), {target}),
                    tmp_path)


def _corrupt_deflate(zf_path, member):
    """Make the member's deflate stream invalid (first block of reserved type 3); the CRC is left alone."""
    with zipfile.ZipFile(zf_path) as zf:
        info = zf.getinfo(member)
    raw = bytearray(zf_path.read_bytes())
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    data_at = info.header_offset + 30 + name_len + extra_len
    raw[data_at] = 0x07  # BFINAL=1, BTYPE=11 (reserved): zlib.error "invalid block type"
    zf_path.write_bytes(bytes(raw))


def _flip_stored_byte(zf_path, member):
    with zipfile.ZipFile(zf_path) as zf:
        info = zf.getinfo(member)
    raw = bytearray(zf_path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    raw[info.header_offset + 30 + name_len + extra_len + 3] ^= 0x01
    zf_path.write_bytes(bytes(raw))


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", ["corrupt_deflate", "bad_crc", "duplicate_member"])
def test_ntu_damaged_archive_member(kind, source, tmp_path, tmp_path_factory):
    _need_real(source)
    texts = _ntu_texts(source)
    target = NTU_TARGET[source]
    archive = tmp_path / "nturgbd_skeletons_s001_to_s017.zip"
    member = f"nturgb+d_skeletons/{target}.skeleton"
    method = zipfile.ZIP_STORED if kind == "bad_crc" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(archive, "w", method) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name on purpose
        for name, data in texts.items():
            zf.writestr(f"nturgb+d_skeletons/{name}.skeleton", data)
        if kind == "duplicate_member":
            zf.writestr(member, texts[target])
    if kind == "corrupt_deflate":
        _corrupt_deflate(archive, member)
    elif kind == "bad_crc":
        _flip_stored_byte(archive, member)

    def run(policy, out):
        return prepare_ntu("ntu60", [archive], out, PROTOCOLS["ntu60"], None, policy, progress=False)

    clean = _clean("ntu", source, tmp_path_factory)
    if kind == "duplicate_member":  # both copies named under fail; under skip the first is kept, the second listed
        with pytest.raises(StarReproError, match=f"{target} appears twice"):
            run("fail", tmp_path / "fail")
        run("skip", tmp_path / "skip")
        rejected = _read_tsv(tmp_path / "skip" / "rejected.tsv")[1:]
        assert [r[0] for r in rejected] == [target] and "appears twice" in rejected[0][3]
        assert set(_outputs(tmp_path / "skip")) == set(clean)
        return
    _check_policies(run, f"{archive}:{member}", None, {target}, _without(clean, {target}), tmp_path)


def test_ntu_unreadable_archive_is_a_clear_error(tmp_path):
    folder = _write_folder(tmp_path / "raw", synth_ntu_texts())
    archive = folder / "nturgbd_skeletons_s001_to_s017.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("nturgb+d_skeletons/S001C001P001R001A001.skeleton", b"1\n0\n")
    data = archive.read_bytes()
    end = data.rfind(b"PK\x05\x06")
    archive.write_bytes(data[:end] + b"PK\x05\x06" + b"\xff" * 18)  # directory offset points past the end
    for policy in ("fail", "skip"):
        with pytest.raises(StarReproError, match="nturgbd_skeletons_s001_to_s017.zip"):
            prepare_ntu("ntu60", [archive], tmp_path / policy, {}, None, policy, progress=False)


def test_ntu_missing_list_not_utf8_names_file_line_and_encoding(tmp_path):
    folder = _write_folder(tmp_path / "raw", synth_ntu_texts())
    listing = tmp_path / "missing.txt"
    listing.write_bytes(b"header\n\nS001C001P001R001A004\nS001C001P001R001A0\xff5\n")
    with pytest.raises(InputFormatError) as info:
        prepare_ntu("ntu60", [folder], tmp_path / "o", {}, listing, "skip", progress=False)
    assert info.value.file == str(listing) and info.value.line == 4 and "utf-8" in info.value.reason


# ------------------------------------------------------------------------------------------------ PKU

def _pku_raw(source: str, root):
    if source == "fixture":
        return synth_pku_raw(root)
    (root / "skeletons").mkdir(parents=True)
    (root / "labels").mkdir()
    for v in REAL_PKU:
        shutil.copy(REAL_DATA / "pku" / "skeletons" / f"{v}.txt", root / "skeletons")
        shutil.copy(REAL_DATA / "pku" / "labels" / f"{v}.txt", root / "labels")
    for f in ("cross-subject.txt", "cross-view.txt"):
        shutil.copy(REAL_DATA / "pku" / f, root)
    return root


PKU_VIDEO = {"fixture": "0002-L", "real": "0005-L"}
PKU_SKEL_KINDS = [v.kind for v in pku_skeleton_variants(b"1 2\n3 4\n5 6\n7 8\n9 10\n11 12 13 14 15\n13 14\n")]
PKU_LABEL_KINDS = [v.kind for v in pku_label_variants(b"1,1,5,1\n2,6,9,1\n")]


def test_pku_fuzz_generator_covers_the_issue_classes():
    assert len(PKU_SKEL_KINDS) + len(PKU_LABEL_KINDS) >= 6
    assert {"empty", "reversed", "non_integer", "action_range", "columns", "past_end"} <= set(PKU_LABEL_KINDS)
    assert {"float32_overflow", "binary", "utf8_bom", "cr_only", "truncated"} <= set(PKU_SKEL_KINDS)


def _clips_of(video: str, clean: dict) -> set[str]:
    vid, view = pku.parse_video_name(video)
    return {n for n in clean if n.startswith(f"F{vid:03d}V{view:03d}")}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", PKU_SKEL_KINDS)
def test_pku_malformed_skeleton_file(kind, source, tmp_path, tmp_path_factory):
    _need_real(source)
    raw = _pku_raw(source, tmp_path / "raw")
    video = PKU_VIDEO[source]
    path = raw / "skeletons" / f"{video}.txt"
    variant = {v.kind: v for v in pku_skeleton_variants(path.read_bytes())}[kind]
    path.write_bytes(variant.data)

    def run(policy, out):
        return prepare_pku(raw, out, PROTOCOLS["pku1"], policy, progress=False)

    clean = _clean("pku", source, tmp_path_factory)
    _check_policies(run, str(path), variant.line, {video}, _without(clean, _clips_of(video, clean)), tmp_path)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", PKU_LABEL_KINDS)
def test_pku_malformed_label_file(kind, source, tmp_path, tmp_path_factory):
    """Row kinds reject that clip only and keep the video's other clips; file kinds reject the video."""
    _need_real(source)
    raw = _pku_raw(source, tmp_path / "raw")
    video = PKU_VIDEO[source]
    path = raw / "labels" / f"{video}.txt"
    original = pku.read_label_file(path.read_bytes(), str(path))
    variant: Variant = {v.kind: v for v in pku_label_variants(path.read_bytes())}[kind]
    path.write_bytes(variant.data)
    clean = _clean("pku", source, tmp_path_factory)
    if variant.scope == "row":
        row = original[PKU_LABEL_ROW - 1]
        clip = pku.clip_name(video, row.action, row.row)
        expect = {pku.clip_name(video, None, row.row) if kind == "action_range" else clip}
        keep = _without(clean, {clip})
    else:
        expect = {video}
        keep = _without(clean, _clips_of(video, clean))

    def run(policy, out):
        return prepare_pku(raw, out, PROTOCOLS["pku1"], policy, progress=False)

    _check_policies(run, str(path), variant.line, expect, keep, tmp_path)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", ["not_in_split", "label_name", "skeleton_without_label"])
def test_pku_inputs_never_pass_silently(kind, source, tmp_path, tmp_path_factory):
    _need_real(source)
    raw = _pku_raw(source, tmp_path / "raw")
    video = PKU_VIDEO[source]
    clean = dict(_clean("pku", source, tmp_path_factory))
    if kind == "not_in_split":
        bad = raw / "cross-view.txt"
        lines = bad.read_text().splitlines()
        lines = [", ".join(v.strip() for v in line.split(",") if v.strip() != video) if i in (1, 3) else line
                 for i, line in enumerate(lines)]
        bad.write_text("\n".join(lines) + "\n")
        name = video
        clean = _without(clean, _clips_of(video, clean))
    elif kind == "label_name":
        bad = raw / "labels" / f"{video.lower()}-copy.txt"
        shutil.copy(raw / "labels" / f"{video}.txt", bad)
        name = bad.stem
    else:
        bad = raw / "skeletons" / "0007-R.txt"
        shutil.copy(raw / "skeletons" / f"{video}.txt", bad)
        name = "0007-R"

    def run(policy, out):
        return prepare_pku(raw, out, PROTOCOLS["pku1"], policy, progress=False)

    _check_policies(run, str(bad), None, {name}, clean, tmp_path)


def test_pku_split_file_not_utf8_names_file_line_and_encoding(tmp_path):
    raw = synth_pku_raw(tmp_path / "raw")
    split = raw / "cross-subject.txt"
    split.write_bytes(split.read_bytes().replace(b"0009-R", b"0009-\xd2"))
    for policy in ("fail", "skip"):
        with pytest.raises(InputFormatError) as info:
            prepare_pku(raw, tmp_path / policy, PROTOCOLS["pku1"], policy, progress=False)
        assert info.value.file == str(split) and info.value.line == 2 and "utf-8" in info.value.reason
