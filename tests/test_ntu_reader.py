"""NTU `.skeleton` reader: structure, exact values, and every bad-input case named with its file and line."""
from __future__ import annotations

import random

import numpy as np
import pytest

from ntu_fixtures import one_body_text, skeleton_text, standing_body
from star_repro.data.fastparse import parse_floats, parse_uints, tokenize
from star_repro.data.ntu import MissingSkeletonError, parse_sample_name, parse_skeleton
from star_repro.errors import InputFormatError, StarReproError

SRC = "S001C002P003R002A013.skeleton"


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


def _error(text: str | bytes, source: str = SRC) -> InputFormatError:
    with pytest.raises(InputFormatError) as info:
        parse_skeleton(text, source)
    assert info.value.file == source
    assert source in str(info.value)
    return info.value


def test_one_body_values_and_line_endings():
    text, joints = one_body_text(4, eol="\r\n")
    raw = parse_skeleton(text, SRC)
    assert raw.name == "S001C002P003R002A013"
    assert raw.num_frames == 4 and raw.dropped_frames == []
    (bid, track), = raw.bodies.items()
    assert bid == "72057594037931101"
    assert track.joints.dtype == np.float32 and track.joints.shape == (4, 25, 3)
    assert np.array_equal(track.joints, joints)
    assert track.interval == [0, 1, 2, 3]
    assert np.isnan(track.motion)  # published: motion only computed for multi-body files
    lf = parse_skeleton(text.replace("\r\n", "\n").encode(), SRC)
    assert np.array_equal(lf.bodies[bid].joints, joints)
    # trailing blank lines and a missing final newline are both fine
    assert parse_skeleton(text + "\r\n\r\n", SRC).num_frames == 4
    assert parse_skeleton(text.rstrip("\r\n"), SRC).num_frames == 4


def test_dropped_frames_are_squeezed_out_of_intervals():
    rng = np.random.default_rng(1)
    j = standing_body(rng, 5)
    text = skeleton_text(6, {"7": ([0, 2, 3, 4, 5], j)}, dropped=(1,))
    raw = parse_skeleton(text, SRC)
    assert raw.dropped_frames == [1]
    assert raw.num_frames == 5
    assert raw.bodies["7"].interval == [0, 1, 2, 3, 4]


def test_interval_follows_the_published_plus_one_rule():
    """A body that disappears and returns still gets a contiguous interval (published quirk)."""
    rng = np.random.default_rng(2)
    a, b = standing_body(rng, 6), standing_body(rng, 2, x0=1.0)
    text = skeleton_text(6, {"1": ([0, 1, 2, 3, 4, 5], a), "2": ([0, 4], b)})
    raw = parse_skeleton(text, SRC)
    assert list(raw.bodies) == ["1", "2"]
    assert raw.bodies["2"].interval == [0, 1]
    # multi-body files carry float32 motion = sum of per-axis variances
    expected = float(np.sum(np.var(b.reshape(-1, 3), axis=0)))
    assert raw.bodies["2"].motion == expected


def test_exponent_notation_and_long_tokens_are_parsed_exactly():
    text, _ = one_body_text(1)
    lines = _lines(text)
    lines[4] = "-9.276937E-05 1.5e+00 3.14159265358979323846 1 2 3 4 5 6 7 8 2"
    raw = parse_skeleton("\n".join(lines), SRC)
    assert raw.bodies["72057594037931101"].joints[0, 0].tolist() == [
        float(np.float32(-9.276937e-05)), 1.5, float(np.float32(3.14159265358979323846))]


def test_vectorised_number_parser_equals_float_bit_for_bit():
    rng = random.Random(3)
    toks = []
    for _ in range(3000):
        k = rng.random()
        if k < 0.4:
            toks.append("%.7g" % rng.uniform(-5, 5))
        elif k < 0.6:
            toks.append(repr(rng.uniform(-1e3, 1e3)))
        elif k < 0.75:
            toks.append("%.6E" % (rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30)))
        else:
            toks.append(rng.choice(["5.", ".5", "-.5", "+1", "-0", "0.000", "00012.5000", "12345678901234567890",
                                    "1.7976931348623157e308", "4.9e-324", "0.2181153", "-0.2059419"]))
    bad = ["abc", "1.2.3", "--1", "1e", "e5", ".", "-", "1-2", "nan", "inf", "1e5e5", "+-1", "1.5f", "0x10", "1_0"]
    tok = tokenize((" ".join(toks) + "\n" + " ".join(bad) + "\n").encode())
    vals, flags = parse_floats(tok, np.arange(tok.n_tokens))
    ref = np.array([float(t) for t in toks])
    assert not flags[:len(toks)].any()
    assert np.array_equal(vals[:len(toks)].view(np.int64), ref.view(np.int64))  # -0.0 too
    assert flags[len(toks):].all()
    ints, ibad = parse_uints(tokenize(b"0 7 72057594037931101 12 1.0 -3 x"), np.arange(7))
    assert ints[:4].tolist() == [0, 7, 72057594037931101, 12] and ibad.tolist() == [False] * 4 + [True] * 3


def test_empty_file():
    err = _error(b"")
    assert err.line == 1 and "empty" in err.reason
    assert _error(b"\n\n  \r\n").line == 1


def test_truncated_file_names_last_line():
    text, _ = one_body_text(2)
    lines = _lines(text)[:40]  # frame 2 stops after 10 of its 25 joint lines
    err = _error("\n".join(lines) + "\n")
    assert err.line == 40 and "truncated" in err.reason


def test_line_cut_in_the_middle_is_truncation():
    text, _ = one_body_text(1)
    cut = text[: text.rindex("\r\n", 0, len(text) - 2) + 2] + "0.1 0.2"
    err = _error(cut)
    assert err.line == 29 and "truncated" in err.reason


def test_joint_line_with_wrong_number_of_values():
    text, _ = one_body_text(2)
    lines = _lines(text)
    lines[35] = lines[35].replace(" ", "  4 ", 1)  # a stray value: 13 tokens on line 36
    err = _error("\n".join(lines))
    assert err.line == 36 and "found 13" in err.reason
    lines = _lines(text)
    lines[7] = " ".join(lines[7].split()[:11])
    err = _error("\n".join(lines))
    assert err.line == 8 and "found 11" in err.reason


def test_non_numeric_tokens():
    text, _ = one_body_text(2)
    lines = _lines(text)
    lines[33] = "0.1 abc " + " ".join(lines[33].split()[2:])  # a used coordinate
    err = _error("\n".join(lines))
    assert err.line == 34 and "'a'" in err.reason
    lines = _lines(text)
    parts = lines[10].split()
    parts[0] = "1.2.3"  # only number characters, but not a number
    lines[10] = " ".join(parts)
    err = _error("\n".join(lines))
    assert err.line == 11 and "1.2.3" in err.reason
    lines = _lines(text)
    lines[1] = "one"
    err = _error("\n".join(lines))
    assert err.line == 2 and "body count" in err.reason


def test_body_count_not_matching_lines():
    text, _ = one_body_text(2)
    lines = _lines(text)
    lines[1] = "2"  # frame 1 declares 2 bodies, holds 1; the next line is frame 2's body count
    err = _error("\n".join(lines))
    assert err.line == 30 and "line 2 declares 2 bodies" in err.reason
    lines = _lines(text)
    lines[29] = "0"  # frame 2 declares 0 bodies but its body lines follow
    err = _error("\n".join(lines))
    assert err.line == 31 and "unexpected text" in err.reason


def test_frame_count_overstating_and_understating():
    text, _ = one_body_text(2)
    lines = _lines(text)
    lines[0] = "3"
    err = _error("\n".join(lines))
    assert err.line == 1 and "declares 3 frames" in err.reason
    lines[0] = "1"
    err = _error("\n".join(lines))
    assert err.line == 30 and "after the 1 frames" in err.reason
    lines[0] = "2.0"
    assert _error("\n".join(lines)).line == 1


def test_joint_count_must_be_25():
    text, _ = one_body_text(1)
    lines = _lines(text)
    lines[3] = "24"
    err = _error("\n".join(lines))
    assert err.line == 4 and "joint count must be 25" in err.reason


def test_body_twice_in_one_frame():
    rng = np.random.default_rng(4)
    j = standing_body(rng, 2)
    text = skeleton_text(2, {"5": ([0, 1], j)})
    lines = _lines(text)
    dup = lines[2:29]  # frame 1's body block
    lines = lines[:1] + ["2"] + dup + dup + lines[29:]
    err = _error("\n".join(lines))
    assert err.line == 30 and "appears twice" in err.reason


def test_all_frames_without_bodies_is_missing_not_corrupt():
    with pytest.raises(MissingSkeletonError) as info:
        parse_skeleton("3\n0\n0\n0\n", SRC)
    assert not isinstance(info.value, InputFormatError)
    assert isinstance(info.value, StarReproError) and SRC in str(info.value)


def test_parse_sample_name():
    assert parse_sample_name("S018C003P042R002A120") == {"setup": 18, "camera": 3, "subject": 42,
                                                          "replication": 2, "action": 120}
    assert parse_sample_name("S001C001P001R001A001.skeleton")["action"] == 1
    for bad in ("S1C1P1R1A1", "corrupted__S001C001P001R001A002", "S001C001P001R001A001x", ""):
        with pytest.raises(StarReproError, match="SsssCcccPpppRrrrAaaa"):
            parse_sample_name(bad)


def test_batch_parser_gives_the_same_results_and_errors():
    from star_repro.data.ntu import parse_skeletons

    rng = np.random.default_rng(5)
    good = [(one_body_text(n, seed=n)[0], f"S001C001P001R001A{n:03d}.skeleton") for n in (1, 4, 7)]
    two = skeleton_text(20, {"1": (list(range(20)), standing_body(rng, 20)),
                             "2": (list(range(3, 18)), standing_body(rng, 15, x0=1.0))}, dropped=(1, 19))
    text, _ = one_body_text(2)
    lines = _lines(text)
    bad = [("", "empty.skeleton"), ("\n".join(lines[:40]) + "\n", "trunc.skeleton"),
           (text.replace("0.", "0,", 1), "comma.skeleton"), ("3\n0\n0\n0\n", "zero.skeleton"),
           ("2\n" + "\n".join(lines[1:]), "over.skeleton"), (text.rstrip("\r\n"), "nonl.skeleton")]
    items = good[:2] + [(two, "two.skeleton")] + bad + good[2:]
    got = parse_skeletons(items)
    assert len(got) == len(items)
    for (data, src), res in zip(items, got):
        try:
            want = parse_skeleton(data, src)
        except StarReproError as exc:
            assert type(res) is type(exc) and str(res) == str(exc), src
            continue
        assert not isinstance(res, Exception), (src, res)
        assert (res.name, res.num_frames, res.dropped_frames, list(res.bodies)) == (
            want.name, want.num_frames, want.dropped_frames, list(want.bodies))
        for bid, track in want.bodies.items():
            assert np.array_equal(res.bodies[bid].joints, track.joints) and res.bodies[bid].interval == track.interval
    assert parse_skeletons([]) == []
