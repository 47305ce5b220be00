"""PKU-MMD Phase I readers, clip cutting and the §2.4 processing, on small hand-built inputs."""
from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest

from star_repro.data import pku
from star_repro.errors import InputFormatError


def _skeleton_text(rows: np.ndarray) -> str:
    return "".join(" ".join("%f" % v for v in r) + " \n" for r in rows)


def _long_video(n: int, seed: int = 0, second_from: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    body = np.zeros((n, 25, 3))
    body[:, :, 0] = rng.uniform(-0.3, 0.3, 25)
    body[:, :, 1] = np.linspace(-0.8, 0.8, 25)
    body[:, :, 2] = 2.5
    body[:, 8, 0] += 0.2  # right shoulder to the right of the left one
    body[:, 4, 0] -= 0.2
    body += 0.05 * np.sin(np.arange(n) * 0.2)[:, None, None] + rng.normal(0, 0.01, (n, 25, 3))
    rows = np.zeros((n, 150))
    rows[:, :75] = body.reshape(n, 75)
    if second_from is not None:
        rows[second_from:, 75:] = (body[second_from:] + [1.0, 0, 0.3]).reshape(-1, 75)
    return np.round(rows, 6)


def test_skeleton_file_equals_loadtxt_and_rejects_bad_rows():
    rows = _long_video(7)
    text = _skeleton_text(rows)
    got = pku.read_skeleton_file(text, "0002-L.txt")
    assert np.array_equal(got, np.loadtxt(io.StringIO(text)))
    lines = text.splitlines()
    bad = "\n".join(lines[:3] + [" ".join(lines[3].split()[:149])] + lines[4:])
    with pytest.raises(InputFormatError) as info:
        pku.read_skeleton_file(bad, "0002-L.txt")
    assert info.value.file == "0002-L.txt" and info.value.line == 4 and "found 149 values" in info.value.reason
    bad = "\n".join(lines[:5] + ["", *lines[5:]])
    with pytest.raises(InputFormatError, match=r"0002-L.txt:6: .*blank line"):
        pku.read_skeleton_file(bad, "0002-L.txt")
    bad = "\n".join(lines[:2] + [lines[2].replace(lines[2].split()[7], "x1", 1)] + lines[3:])
    with pytest.raises(InputFormatError, match=r"0002-L.txt:3: non-numeric"):
        pku.read_skeleton_file(bad, "0002-L.txt")
    with pytest.raises(InputFormatError, match=r"0002-L.txt:1: empty"):
        pku.read_skeleton_file("", "0002-L.txt")


def test_label_file_rows_and_errors():
    rows = pku.read_label_file("26,229,293,2\n18,377,423,2\r\n\n27,462,488,0,\n", "0005-L.txt")
    assert [(r.row, r.line, r.action, r.start, r.end) for r in rows] == [
        (1, 1, 26, 229, 293), (2, 2, 18, 377, 423), (3, 4, 27, 462, 488)]
    cases = [("1,2,3\n", 1, "4 comma-separated"), ("1,2,3,4\n1,a,3,4\n", 2, "integers"),
             ("52,1,3,1\n", 1, "1..51"), ("3,10,9,1\n", 1, "start <= end"), ("3,0,9,1\n", 1, "start <= end")]
    for text, line, what in cases:
        with pytest.raises(InputFormatError) as info:
            pku.read_label_file(text, "0005-L.txt")
        assert info.value.file == "0005-L.txt" and info.value.line == line and what in info.value.reason


def test_label_row_beyond_the_sequence_names_file_and_line():
    skel = _long_video(50)
    labels = pku.read_label_file("3,1,20,1\n7,30,51,2\n", "0009-R.txt")
    with pytest.raises(InputFormatError) as info:
        pku.cut_clips(skel, labels, "0009-R", "0009-R.txt")
    assert info.value.file == "0009-R.txt" and info.value.line == 2 and "only 50 frames" in info.value.reason
    clips = pku.cut_clips(skel, labels, "0009-R", "0009-R.txt", ignore={"F009V003C007L002"})
    assert [c.name for c in clips] == ["F009V003C003L001"]


def test_clip_cut_names_person_two_rule_and_window():
    skel = _long_video(400, second_from=100)
    skel[150, 75] = 5.0
    skel[150, 76:] = 0.0
    skel[150, 76] = -5.0  # person 2 values summing to 0: the writer drops person 2 in this frame
    row = pku.LabelRow(row=12, line=12, action=5, start=101, end=160, confidence=1)
    clip = pku.cut_clip(skel, "0160-M", row)
    assert clip.name == "F160V002C005L012" and clip.label == 4 and clip.frames == 60
    assert clip.data.shape == (3, 300, 25, 2) and clip.data.dtype == np.float32
    p1 = skel[100:160, :75].reshape(60, 25, 3).transpose(2, 0, 1).astype(np.float32)
    assert np.array_equal(clip.data[:, :60, :, 0], p1)
    assert not clip.data[:, 60:].any()
    assert not clip.data[:, 50, :, 1].any()  # frame 151 (index 50 in the clip) lost person 2
    assert clip.data[:, 51, :, 1].any()
    long_row = pku.LabelRow(row=1, line=1, action=1, start=11, end=390, confidence=1)  # 380 frames
    clip = pku.cut_clip(skel, "0002-L", long_row)
    s0 = (380 - 300) // 2
    expect = skel[10 + s0:10 + s0 + 300, :75].reshape(300, 25, 3).transpose(2, 0, 1).astype(np.float32)
    assert np.array_equal(clip.data[:, :, :, 0], expect)


def test_fma32_is_a_single_rounding():
    rng = np.random.default_rng(5)
    a = rng.standard_normal(4000).astype(np.float32)
    b = rng.uniform(0, 1, 4000).astype(np.float32)
    c = rng.standard_normal(4000).astype(np.float32)
    # planted ties: a*b + c exactly halfway between two float32 after a float64 rounding
    a[:3] = np.float32(1.0) + np.float32(2.0 ** -23)
    b[:3] = np.float32(1.0) + np.float32(2.0 ** -23)
    c[:3] = np.float32(2.0 ** -24)
    got = pku.fma32(a, b, c)
    for i in range(len(a)):
        exact = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        lo = np.float32(float(exact))
        cands = [np.nextafter(lo, np.float32(-np.inf)), lo, np.nextafter(lo, np.float32(np.inf))]
        best = min(cands, key=lambda v: (abs(Fraction(float(v)) - exact), int(v.view(np.int32)) & 1))
        assert got[i] == best, i


def test_resize_identity_and_edges():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 25, 3)).astype(np.float32)
    assert np.array_equal(pku.resize_linear(x), x)
    short = rng.standard_normal((10, 25, 3)).astype(np.float32)
    out = pku.resize_linear(short)
    assert out.shape == (64, 25, 3) and out.dtype == np.float32
    assert np.array_equal(out[0], short[0]) and np.array_equal(out[-1], short[-1])  # edge rows clamp
    down = pku.resize_linear(rng.standard_normal((128, 25, 3)).astype(np.float32))
    assert down.shape == (64, 25, 3)


def test_resize_matches_opencv_bit_for_bit():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 17, 63, 64, 65, 87, 128, 150, 299, 300):
        x = (rng.standard_normal((n, 25, 3)) * rng.choice([0.01, 1.0, 50.0])).astype(np.float32)
        ref = cv2.resize(x, (25, 64), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(pku.resize_linear(x), ref), n


def test_process_clip_centres_resizes_and_aligns_shoulders():
    skel = _long_video(90, seed=3)
    theta = np.linspace(0.2, 1.0, 90)  # the person turns about y
    body = skel[:, :75].reshape(90, 25, 3).copy()
    x, z = body[..., 0] - 0.0, body[..., 2] - 2.5
    body[..., 0] = np.cos(theta)[:, None] * x - np.sin(theta)[:, None] * z
    body[..., 2] = np.sin(theta)[:, None] * x + np.cos(theta)[:, None] * z + 2.5
    skel[:, :75] = body.reshape(90, 75)
    clip = pku.cut_clip(skel, "0002-L", pku.LabelRow(1, 1, 8, 1, 90, 1))
    out = pku.process_clip(clip.data)
    assert out.shape == (3, 64, 25, 2) and out.dtype == np.float32
    assert np.abs(out[:, :, 20, 0]).max() < 1e-6  # joint 21 is the per-frame origin
    sh = out[:, :, 8, 0] - out[:, :, 4, 0]
    # shoulders along +x in every frame, up to the published 1e-4 added to the norm inside arccos
    assert (sh[0] > 0.7).all() and np.abs(sh[2]).max() < 1e-3
    before = clip.data[:, :, 8, 0] - clip.data[:, :, 4, 0]
    assert np.abs(before[2, :90]).min() > 0.1  # it was turned before
    assert not out[..., 1].any()  # absent person 2 stays zero
    assert pku.clip_length(clip.data) == 90
    exact = pku.process_clip(clip.data, arccos="exact")
    assert np.allclose(exact, out, atol=1e-6)
    with pytest.raises(ValueError, match="arccos mode"):
        pku.process_clip(clip.data, arccos="fast")


def test_clip_length_counts_frames_with_person_one_joint_one():
    data = np.zeros((3, 300, 25, 2), np.float32)
    data[:, :40, :, 0] = 1.0
    data[:, 10, 0, 0] = 0.0  # a gap: the published length is a count, the tail beyond it is dropped
    assert pku.clip_length(data) == 39
    with pytest.raises(ValueError, match="absent"):
        pku.process_clip(np.zeros((3, 300, 25, 2), np.float32))


def test_label_file_checked_against_the_sequence_length():
    rows = pku.read_label_file("3,1,20,1\n7,30,50,2\n", "0002-M.txt", num_frames=50)
    assert len(rows) == 2
    with pytest.raises(InputFormatError) as info:
        pku.read_label_file("3,1,20,1\n7,30,51,2\n", "0002-M.txt", num_frames=50)
    assert (info.value.file, info.value.line) == ("0002-M.txt", 2)


def test_a_bad_row_with_a_non_ascii_digit_is_rejected_not_crashed():
    """A row whose action field is a Unicode digit ("²") is a rejected row with no action id, not a ValueError."""
    rows, errors = pku.parse_label_rows("1,2,3,4\n²,5,6,7\n", "x.txt")
    assert [r.row for r in rows] == [1] and len(errors) == 1
    assert errors[0].row == 2 and errors[0].action is None and errors[0].error.line == 2
