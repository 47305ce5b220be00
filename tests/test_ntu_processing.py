"""CTR-GCN denoising and alignment (STAR_SPEC §1.3-1.4) on synthetic multi-body cases built from the spec."""
from __future__ import annotations

import numpy as np
import pytest

from ntu_fixtures import lying_body, skeleton_text, standing_body
from star_repro.data.ntu import align, denoise, parse_skeleton
from star_repro.errors import InputFormatError, StarReproError

SRC = "S001C001P001R001A050.skeleton"


def _run(n_frames, tracks, dropped=()):
    raw = parse_skeleton(skeleton_text(n_frames, tracks, dropped=dropped), SRC)
    return raw, denoise(raw)


def _motion(j):
    return float(np.sum(np.var(j.reshape(-1, 3), axis=0)))


def test_single_body_written_as_is_without_frame_removal():
    rng = np.random.default_rng(0)
    j = standing_body(rng, 20)
    j[7] = 0.0  # an all-zero frame: kept on the single-body path
    raw, res = _run(20, {"1": (list(range(20)), j)})
    assert res.actors == 1 and res.joints.shape == (20, 75) and res.removed_frames == []
    assert np.array_equal(res.joints, j.reshape(20, 75))


def test_zero_rows_removed_on_multi_body_path_only():
    rng = np.random.default_rng(1)
    a, b = standing_body(rng, 20, amplitude=0.2), standing_body(rng, 20, x0=1.0)
    a[5] = 0.0
    b[5] = 0.0
    a[9, 0] = [1.0, -1.0, 0.0]  # a row whose float32 sum is exactly 0 is "missing" to the published check
    a[9, 1:] = 0.0
    b[9] = 0.0
    raw, res = _run(20, {"1": (list(range(20)), a), "2": (list(range(20)), b)})
    assert res.removed_frames == [5, 9]
    assert res.joints.shape == (18, 150)
    keep = [f for f in range(20) if f not in (5, 9)]
    first, second = (a, b) if res.kept == ["1", "2"] else (b, a)
    assert np.array_equal(res.joints[:, :75], first[keep].reshape(18, 75))
    assert np.array_equal(res.joints[:, 75:], second[keep].reshape(18, 75))


def test_short_lived_body_removed_by_length():
    rng = np.random.default_rng(2)
    main = standing_body(rng, 30)
    short = standing_body(rng, 11, x0=1.5, amplitude=0.5)  # 11 appearances: removed (<= 11)
    keep12 = standing_body(rng, 12, x0=-1.5)  # 12: kept
    raw, res = _run(30, {"1": (list(range(30)), main), "2": (list(range(5, 16)), short)})
    assert res.removed == {"2": "length"} and res.kept == ["1"] and res.actors == 1
    assert np.array_equal(res.joints, main.reshape(30, 75))
    raw, res = _run(30, {"1": (list(range(30)), main), "3": (list(range(0, 12)), keep12)})
    assert res.removed == {} and res.actors == 2


def test_spread_ratio_body_removed():
    rng = np.random.default_rng(3)
    main = standing_body(rng, 30)
    noise = lying_body(rng, 30)
    raw, res = _run(30, {"1": (list(range(30)), main), "2": (list(range(30)), noise)})
    assert res.removed == {"2": "spread"} and res.kept == ["1"]
    assert res.joints.shape == (30, 75)  # one actor left: (T, 75), no second slot


def test_spread_noise_below_ratio_lowers_motion():
    """20 of 30 frames wide (ratio 0.667 < 0.69754): kept, motion = min(old, motion over valid frames)."""
    rng = np.random.default_rng(4)
    a = standing_body(rng, 30, amplitude=0.02)
    b = standing_body(rng, 30, x0=1.0, amplitude=0.01)
    wide = lying_body(rng, 20) + np.float32(5.0) * np.arange(20, dtype=np.float32)[:, None, None] / 20
    b[:20] = wide  # big motion but mostly invalid frames
    raw = parse_skeleton(skeleton_text(30, {"1": (list(range(30)), a), "2": (list(range(30)), b)}), SRC)
    assert raw.bodies["2"].motion > raw.bodies["1"].motion  # before the update, body 2 would be actor 1
    res = denoise(raw)
    assert res.removed == {}
    assert res.kept == ["1", "2"]  # after the update body 2's motion is that of its 10 valid frames only
    assert _motion(b[20:]) < raw.bodies["1"].motion


def test_more_than_two_bodies_highest_motion_first_third_dropped():
    rng = np.random.default_rng(5)
    slow = standing_body(rng, 40, amplitude=0.01)
    fast = standing_body(rng, 40, x0=1.0, amplitude=0.3)
    mid = standing_body(rng, 40, x0=-1.0, amplitude=0.1)
    raw, res = _run(40, {"1": (list(range(40)), slow), "2": (list(range(40)), fast), "3": (list(range(40)), mid)})
    assert res.kept == ["2", "3"] and res.removed == {"1": "overlap"}
    assert np.array_equal(res.joints[:, :75], fast.reshape(40, 75))
    assert np.array_equal(res.joints[:, 75:], mid.reshape(40, 75))


def test_non_overlapping_body_appended_to_actor_one():
    rng = np.random.default_rng(6)
    first = standing_body(rng, 20, amplitude=0.3)
    later = standing_body(rng, 21, x0=0.5, amplitude=0.05)  # frames 19..39: shares one boundary frame
    raw, res = _run(40, {"1": (list(range(20)), first), "2": (list(range(19, 40)), later)})
    assert res.kept == ["1", "2"] and res.actors == 2
    assert np.array_equal(res.joints[:19, :75], first[:19].reshape(19, 75))
    assert np.array_equal(res.joints[19:, :75], later.reshape(21, 75))  # the later body overwrote frame 19
    assert not res.joints[:, 75:].any()


def test_actor_two_interval_keeps_start_zero():
    """Actor 2's slot starts as [0, 0] and `min(start, 0)` keeps its start at 0: a body that overlaps neither
    real body but falls inside [0, end2] is dropped (published quirk)."""
    rng = np.random.default_rng(7)
    a = standing_body(rng, 100, amplitude=0.3)
    b = standing_body(rng, 31, x0=1.0, amplitude=0.1)  # frames 30..60 -> actor 2 = [0, 60]
    c = standing_body(rng, 15, x0=-1.0, amplitude=0.05)  # frames 5..19: inside [0, 60]
    raw, res = _run(100, {"1": (list(range(100)), a), "2": (list(range(30, 61)), b),
                          "3": (list(range(5, 20)), c)})
    assert res.kept == ["1", "2"] and res.removed == {"3": "overlap"}


def test_dead_motion_thresholds_are_not_applied():
    """The published script defines motion bounds (0.089925, 2) but never calls the filter that uses them."""
    rng = np.random.default_rng(8)
    small = standing_body(rng, 20) * np.float32(0.1)  # a compact, nearly still body
    big = standing_body(rng, 20, amplitude=0.3) * np.float32(3.0)
    raw, res = _run(20, {"1": (list(range(20)), small), "2": (list(range(20)), big)})
    assert raw.bodies["1"].motion < 0.089925 and raw.bodies["2"].motion > 2
    assert res.actors == 2 and res.removed == {} and res.kept == ["2", "1"]


def test_equal_motion_keeps_first_appearance_order():
    rng = np.random.default_rng(9)
    a = standing_body(rng, 20)
    raw, res = _run(20, {"9": (list(range(20)), a), "4": (list(range(20)), a.copy())})
    assert raw.bodies["9"].motion == raw.bodies["4"].motion and res.kept == ["9", "4"]


def test_all_bodies_too_short_is_an_input_error():
    rng = np.random.default_rng(10)
    raw = parse_skeleton(skeleton_text(10, {"1": (list(range(10)), standing_body(rng, 10)),
                                            "2": (list(range(10)), standing_body(rng, 10))}), SRC)
    with pytest.raises(InputFormatError, match="at most 11 frames"):
        denoise(raw)


def test_align_centres_on_actor_one_spine_mid_of_first_present_frame():
    rng = np.random.default_rng(11)
    j = np.zeros((12, 150), np.float32)
    a = standing_body(rng, 9).reshape(9, 75)
    b = standing_body(rng, 12, x0=1.0).reshape(12, 75)
    j[3:, :75] = a  # actor 1 absent in frames 0-2
    j[:, 75:] = b
    j[6, 75:] = 0  # actor 2 missing in frame 6
    out = align(j, "ntu60")
    origin = a[0, 3:6]  # joint 2 (1-based) of actor 1 in frame 3
    assert out.shape == (300, 150) and out.dtype == np.float32
    assert np.array_equal(out[3:12, :75], a - np.tile(origin, 25))
    assert np.array_equal(out[:12, 75:][[f for f in range(12) if f != 6]],
                          (b - np.tile(origin, 25))[[f for f in range(12) if f != 6]])
    assert not out[:3, :75].any() and not out[6, 75:].any()  # missing frames re-zeroed
    assert not out[12:].any()  # zero padding


def test_align_single_actor_ntu60_pads_ntu120_duplicates():
    rng = np.random.default_rng(12)
    a = standing_body(rng, 50).reshape(50, 75)
    o60, o120 = align(a, "ntu60"), align(a, "ntu120")
    centred = a - np.tile(a[0, 3:6], 25)
    assert np.array_equal(o60[:50, :75], centred) and not o60[:, 75:].any()
    assert np.array_equal(o120[:50, 75:], centred) and np.array_equal(o120[:, :75], o60[:, :75])
    with pytest.raises(StarReproError, match="ntu60"):
        align(a, "pku1")
    with pytest.raises(StarReproError, match="300"):
        align(np.ones((301, 75), np.float32), "ntu60")
