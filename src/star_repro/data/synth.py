"""Synthetic stand-ins of NTU RGB+D 60/120 and PKU-MMD Phase I, written in the datasets' genuine raw formats.

The newcomer without the licensed data runs the whole pipeline on these (DESIGN §4). They go through exactly the
same `prepare` code as the real files, so they carry what that code must cope with:

- NTU: `.skeleton` text (STAR_SPEC §1.2, CRLF like the official files) inside zips named like the official
  archives (`nturgbd_skeletons_s001_to_s017.zip`, and `..._s018_to_s032.zip` for NTU-120, whose classes are
  A061-A120 like the real release), with S/C/P/R/A names; subjects of different body sizes, the three cameras
  (-45°, 0°, +45°) seeing the same performance, replications; two bodies in two-person classes; planted noise
  bodies of the two kinds the CTR-GCN denoiser removes (STAR_SPEC §1.3: bodies seen in at most 11 frames, and
  bodies wider than tall in most frames); dropped (0-body) frames; and whole 0-body samples listed on the
  missing-skeleton list, with its header, like the official one.
- PKU-MMD Phase I: long videos `skeletons/0XXX-{L,M,R}.txt` (150 floats per frame), `labels/0XXX-{L,M,R}.txt`
  (`action,start,end,confidence`, 1-based inclusive, gaps between actions), `cross-subject.txt` and
  `cross-view.txt` (header, training videos, header, testing videos; cross-view trains on L and R, tests on M,
  as the official file does). Interaction classes are performed by two people in their own videos.

Everything is a function of the seed (per-class, per-subject and per-sample random streams, fixed zip
timestamps, sorted entries): the same seed gives byte-identical files. NTU-60 and NTU-120 written with the same
seed share the S001-S017 archive byte for byte, as the real releases do. `manifest.json` records every planted
irregularity so tests can check that the processing removes exactly those.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from star_repro.data.classes import TWO_PERSON, classes_of
from star_repro.data.motion import Body, Variation, render_batch
from star_repro.data.motion_scripts import SCRIPTS
from star_repro.data.ntu import (NTU_ARCHIVE_CONTENTS, NTU_ARCHIVE_LAYOUT, NTU_ARCHIVES, NTU_CAMERAS, NTU_FOLDER,
                                 NTU_MISSING_LISTS, NTU_REPLICATIONS)
from star_repro.errors import ParamsError, StarReproError
from star_repro.io import atomic_dir, atomic_path, canonical_json, sha256_file

# ------------------------------------------------------------------------------------------------ constants
NTU60_TRAIN_SUBJECTS = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93, 94,
    95, 97, 98, 100, 103)
NTU_CAMERA_DEG = {1: -45.0, 2: 0.0, 3: 45.0}
PKU_VIEW_DEG = {"L": -45.0, "M": 0.0, "R": 45.0}
BODY_ID_BASE = 72057594037927936  # Kinect body IDs are 2**56 plus a small counter
_ID_HIGH = 72057594037000000      # leading digits shared by all IDs used here (offsets below 72000)
ZIP_DATE = (2016, 1, 1, 0, 0, 0)
NOISE_LEN_MAX = 11          # the denoiser drops bodies seen in at most this many frames (STAR_SPEC §1.3)
SPREAD_X_OVER_Y = 0.8       # a frame is valid when x-spread <= 0.8 * y-spread
SPREAD_RATIO_DROP = 0.69754  # a body whose invalid-frame ratio reaches this is dropped
# Joints Kinect leaves without an orientation (the ends of chains) and joints it often only infers.
_NO_ORIENT = (3, 15, 19, 21, 22, 23, 24)
_OFTEN_INFERRED = (7, 11, 15, 19, 21, 22, 23, 24)
# Parent of each joint for bone orientations (Kinect's hierarchy, rooted at the spine base).
_CHUNK = 64  # samples formatted together
_PARENT = (1, 0, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18, 1, 7, 7, 11, 11)

# ------------------------------------------------------------------------------------------------ params
# The `synth` params fragment: what each key means; every key is required (the profile sets the sizes).
CFG_KEYS: dict[str, dict[str, str]] = {
    "motion": {
        "amp_range": "[lo, hi] factor on every primitive's amplitude, drawn per performance",
        "time_warp": "max |a| of the monotone time warp u = x + a x (1 - x), per performance",
        "window_jitter": "max shift of each primitive's time window (fraction of the action)",
        "sway": "strength of slow idle sway (0 = none, 1 = normal)",
        "body_scale_range": "[lo, hi] body size of a subject (1.0 = an average adult)",
        "joint_noise": "sensor noise per joint and frame, metres (standard deviation)",
        "view_jitter_deg": "standard deviation of the camera angle around its nominal value, degrees",
    },
    "ntu": {
        "subjects_per_class": "subjects performing each class (>= 2: both protocol sides need one)",
        "replications": "performances per subject and class (R001, R002, ...)",
        "frames": "[lo, hi] frames of a performance",
        "short_body_fraction": "fraction of samples given an extra body seen in at most 11 frames",
        "spread_body_fraction": "fraction of samples given an extra body wider than tall (spread-ratio noise)",
        "dropped_frame_fraction": "fraction of samples with 0-body frames inside the sequence",
        "max_dropped_frames": "at most this many 0-body frames in such a sample",
        "missing_per_archive": "whole 0-body samples per archive (listed on the missing-skeleton list)",
        "compress_level": "zip deflate level 0-9 (1 is fast; the content does not depend on it)",
        "test_subjects_per_class": "optional: cross-subject test subjects per class (default: half of "
                                   "subjects_per_class); test samples only cost inference, so a demo can buy "
                                   "a tight interval cheaply",
    },
    "pku": {
        "performances_per_class": "performances of each class (>= 2: half by training, half by test subjects)",
        "actions_per_video": "actions performed one after another in one long video",
        "clip_frames": "[lo, hi] frames of one action",
        "gap_frames": "[lo, hi] idle frames before each action and at the end",
        "subjects": "number of subjects (>= 4)",
        "test_subjects": "how many of them are cross-subject test subjects (>= 2, leaving >= 2 for training)",
    },
}
DEMO_CFG: dict = {
    "motion": {"amp_range": [0.85, 1.15], "time_warp": 0.15, "window_jitter": 0.03, "sway": 1.0,
               "body_scale_range": [0.88, 1.12], "joint_noise": 0.004, "view_jitter_deg": 4.0},
    "ntu": {"subjects_per_class": 4, "replications": 1, "frames": [32, 72], "short_body_fraction": 0.08,
            "spread_body_fraction": 0.08, "dropped_frame_fraction": 0.1, "max_dropped_frames": 3,
            "missing_per_archive": 2, "compress_level": 1},
    "pku": {"performances_per_class": 4, "actions_per_video": 8, "clip_frames": [32, 80], "gap_frames": [8, 24],
            "subjects": 12, "test_subjects": 3},
}
# `synth.size`: `demo` takes the counts from the `ntu` and `pku` sections; `paper` writes the real releases' sizes
# and structure (NTU: `NTU_ARCHIVE_LAYOUT`, frame counts spread like the real ones; PKU-MMD Phase I: 66 subjects,
# ~20 actions per long video, ~1,070 video files, ~21.4k clips) and takes only the noise rates, the compression
# level and `synth.motion` from the params.
SIZES = ("demo", "paper")
PAPER_NTU_FRAMES = (32, 300)  # real NTU sequences: mostly 40-150 frames, the longest 300
PAPER_NTU_MEDIAN_FRAMES = 75.0
PAPER_NTU_LENGTH_SPREAD = 0.35  # log-normal sigma of a performance's length around its class's median
PAPER_PKU = {"performances_per_class": 140, "actions_per_video": 20, "clip_frames": [40, 220],
             "gap_frames": [20, 120], "subjects": 66, "test_subjects": 9}


def synth_size(cfg: Mapping) -> str:
    """`synth.size` (absent: `demo`); an error names the key and the choices."""
    size = cfg.get("size", "demo") if isinstance(cfg, Mapping) else "demo"
    if size not in SIZES:
        raise ParamsError(f"synth.size: expected one of {list(SIZES)} (demo: the sizes of synth.ntu/synth.pku; "
                          f"paper: the real releases' sizes), got {size!r}")
    return size


OPTIONAL_KEYS = {"test_subjects_per_class"}  # absent: the layout every earlier stand-in had


def _section(cfg: Mapping, name: str) -> dict:
    """Check one section of the `synth` fragment; errors name the key and say what is expected."""
    if not isinstance(cfg, Mapping) or name not in cfg or not isinstance(cfg[name], Mapping):
        raise ParamsError(f"synth.{name}: missing (expected a mapping with keys {sorted(CFG_KEYS[name])})")
    sec = dict(cfg[name])
    missing = sorted(set(CFG_KEYS[name]) - set(sec) - OPTIONAL_KEYS)
    if missing:
        what = "; ".join(f"{k}: {CFG_KEYS[name][k]}" for k in missing)
        raise ParamsError(f"synth.{name}: missing keys {missing} ({what})")
    extra = sorted(set(sec) - set(CFG_KEYS[name]))
    if extra:
        raise ParamsError(f"synth.{name}: unknown keys {extra}; expected {sorted(CFG_KEYS[name])}")

    def num(k, lo=None, hi=None, integer=False):
        v = sec[k]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (not integer or float(v).is_integer())
        if not ok or (lo is not None and v < lo) or (hi is not None and v > hi):
            kind = "an integer" if integer else "a number"
            rng = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
            raise ParamsError(f"synth.{name}.{k}: expected {kind}{rng} ({CFG_KEYS[name][k]}), got {v!r}")
        sec[k] = int(v) if integer else float(v)

    def pair(k, lo, integer=False):
        v = sec[k]
        if (not isinstance(v, Sequence) or isinstance(v, str) or len(v) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                or (integer and not all(float(x).is_integer() for x in v)) or not lo <= v[0] <= v[1]):
            kind = "integers" if integer else "numbers"
            raise ParamsError(f"synth.{name}.{k}: expected [lo, hi] {kind} with {lo} <= lo <= hi "
                              f"({CFG_KEYS[name][k]}), got {v!r}")
        sec[k] = [int(x) if integer else float(x) for x in v]

    if name == "motion":
        pair("amp_range", 0.0)
        pair("body_scale_range", 0.5)
        for k in ("time_warp", "window_jitter", "sway", "joint_noise", "view_jitter_deg"):
            num(k, 0.0)
        if sec["time_warp"] >= 1.0:
            raise ParamsError(f"synth.motion.time_warp: must be < 1 to keep time monotone, got {sec['time_warp']}")
    elif name == "ntu":
        num("subjects_per_class", 2, integer=True)
        num("replications", 1, 9, integer=True)
        pair("frames", NOISE_LEN_MAX + 3, integer=True)  # real bodies must outlast the length filter
        for k in ("short_body_fraction", "spread_body_fraction", "dropped_frame_fraction"):
            num(k, 0.0, 1.0)
        num("max_dropped_frames", 1, integer=True)
        num("missing_per_archive", 0, integer=True)
        num("compress_level", 0, 9, integer=True)
        if sec.get("test_subjects_per_class") is not None:
            num("test_subjects_per_class", 1, 20, integer=True)  # NTU-60 has 20 cross-subject test subjects
    else:
        num("performances_per_class", 2, integer=True)
        num("actions_per_video", 1, integer=True)
        pair("clip_frames", 2, integer=True)
        pair("gap_frames", 0, integer=True)
        num("subjects", 4, integer=True)
        num("test_subjects", 2, integer=True)  # partners in two-person videos come from the same side
        if sec["subjects"] - sec["test_subjects"] < 2:
            raise ParamsError(f"synth.pku.test_subjects: must leave at least 2 training subjects of "
                              f"synth.pku.subjects ({sec['subjects']}), got {sec['test_subjects']}")
    return sec


# ------------------------------------------------------------------------------------------------ randomness
def _rng(seed: int, *keys) -> np.random.Generator:
    """An independent random stream per (seed, purpose, item): adding items never shifts the others."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode("utf-8")) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _subject_body(seed: int, subject: int, motion: Mapping) -> Body:
    r = _rng(seed, "subject", subject)
    lo, hi = motion["body_scale_range"]
    return Body(scale=float(r.uniform(lo, hi)), girth=float(r.uniform(0.92, 1.08)))


def _variation(rng: np.random.Generator, motion: Mapping) -> Variation:
    return Variation.draw(rng, amp_range=tuple(motion["amp_range"]), warp=motion["time_warp"],
                          window_jitter=motion["window_jitter"], sway=motion["sway"])


def _progress(iterable, desc: str, total: int | None = None):
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, disable=None, unit="it", leave=False)


# ------------------------------------------------------------------------------------------------ camera model
def to_camera(scene: np.ndarray, view_deg: float, distance: float, height: float, lateral: float) -> np.ndarray:
    """Scene frame (x right, y up from the floor, z toward the 0° camera) -> Kinect camera space (metres):
    X to the subject's right as the sensor sees it, Y up from the sensor's height, Z depth. The scene is turned
    by the camera's angle about the vertical axis first."""
    a = np.deg2rad(view_deg)
    c, s = np.cos(a), np.sin(a)
    x, y, z = scene[..., 0], scene[..., 1], scene[..., 2]
    out = np.empty_like(scene)
    out[..., 0] = c * x + s * z + lateral
    out[..., 1] = y - height
    out[..., 2] = distance - (-s * x + c * z)
    return out


def _setup_geometry(seed: int, key) -> tuple[float, float, float]:
    r = _rng(seed, "setup", key)
    return float(r.uniform(2.7, 4.0)), float(r.uniform(0.6, 0.95)), float(r.uniform(-0.25, 0.25))


def spread_noise_ratio(joints: np.ndarray) -> float:
    """The denoiser's spread test on one body's camera-space joints (F, 25, 3): the fraction of frames where
    the x-spread exceeds 0.8 times the y-spread."""
    xs = joints[..., 0].max(axis=1) - joints[..., 0].min(axis=1)
    ys = joints[..., 1].max(axis=1) - joints[..., 1].min(axis=1)
    return float(np.mean(xs > SPREAD_X_OVER_Y * ys))


# ------------------------------------------------------------------------------------------------ text formatting
_LUT4 = np.array([[ord(c) for c in f"{i:04d}"] for i in range(10000)], np.uint8)  # 0..9999 -> 4 digits
_LUT4_32 = _LUT4.view(np.uint32).ravel()  # one 4-byte item per entry: a 1-D gather is much faster


def _digits_into(out: np.ndarray, values: np.ndarray, n_digits: int) -> None:
    """Zero-padded decimal digits (ASCII) of non-negative ints < 10**n_digits into out (n_digits, n)."""
    left, pos = n_digits, 0
    while left > 0:
        take = min(4, left)
        left -= take
        chunk = (values // 10 ** left) % 10 ** take if left else values % 10 ** take
        four = _LUT4_32[chunk].view(np.uint8).reshape(-1, 4)
        out[pos:pos + take] = four[:, 4 - take:].T
        pos += take


def format_table(values: np.ndarray, decimals: Sequence[int], strip: bool = True, eol: bytes = b"\r\n"
                 ) -> tuple[bytes, np.ndarray]:
    """Format a float table as text rows, vectorised (a Python loop per number is far too slow for NTU sizes).

    Column j gets `decimals[j]` decimals; with `strip`, trailing zeros (and a bare point) are dropped, so numbers
    read like Kinect's own output ("0.2181153", "277.419", "0"); without it, fixed decimals ("%.6f" style, as
    in PKU-MMD files). Columns are separated by one space, rows end with `eol`. Returns the bytes and each row's
    length in bytes. Ties round half to even.

    How: every number gets fixed-width character slots in a (width, rows) byte matrix, unused slots hold NUL,
    and the NULs are deleted from the row-major bytes in one pass.
    """
    values = np.asarray(values, np.float64)
    n, k = values.shape
    if len(decimals) != k:
        raise ValueError(f"{k} columns but {len(decimals)} decimals")
    if not np.isfinite(values).all():
        raise ValueError("cannot format non-finite values")
    cols = []
    for j in range(k):
        d = int(decimals[j])
        scaled = np.rint(values[:, j] * 10.0 ** d).astype(np.int64)
        mag = np.abs(scaled)
        ip = mag // 10 ** d
        n_int = max(1, len(str(int(ip.max())))) if n else 1
        cols.append((d, scaled < 0, mag, ip, n_int))
    seps = [b" "] * (k - 1) + [eol]
    W = sum(1 + n_int + (1 + d if d else 0) + len(sep) for (d, _, _, _, n_int), sep in zip(cols, seps))
    C = np.empty((W, n), np.uint8)
    lengths = np.full(n, sum(len(sep) for sep in seps), np.int64)
    zero = np.uint8(0)
    at = 0
    for (d, neg, mag, ip, n_int), sep in zip(cols, seps):
        C[at] = np.where(neg, np.uint8(ord("-")), zero)
        lengths += neg
        at += 1
        _digits_into(C[at:at + n_int], ip, n_int)
        ndig = np.ones(n, np.int64)
        for m in range(1, n_int):  # leading zeros of the integer part go (one digit stays)
            ndig += ip >= 10 ** m
            C[at + n_int - 1 - m] = np.where(ndig > m, C[at + n_int - 1 - m], zero)
        lengths += ndig
        at += n_int
        if d:
            frac = C[at + 1:at + 1 + d]
            _digits_into(frac, mag % 10 ** d, d)
            if strip:  # keep up to the last non-zero fractional digit; no point when there is none
                sig = np.zeros(n, np.int64)
                for m in range(d):
                    sig = np.where(frac[m] != ord("0"), m + 1, sig)
                for m in range(d):
                    frac[m] = np.where(sig > m, frac[m], zero)
                C[at] = np.where(sig > 0, np.uint8(ord(".")), zero)
                lengths += sig + (sig > 0)
            else:
                C[at] = ord(".")
                lengths += d + 1
            at += 1 + d
        C[at:at + len(sep)] = np.frombuffer(sep, np.uint8)[:, None]
        at += len(sep)
    return C.T.tobytes().translate(None, b"\x00"), lengths


def _quaternions(J: np.ndarray) -> np.ndarray:
    """Joint orientations as Kinect reports them, (F, 25, 4) w x y z: the body's facing (a turn about the
    vertical) followed by the rotation taking +y onto the bone from the joint's parent; zeros for chain ends."""
    par = np.asarray(_PARENT)
    bone = J - J[:, par]
    bone[:, 0] = J[:, 1] - J[:, 0]
    d = bone / np.maximum(np.linalg.norm(bone, axis=-1, keepdims=True), 1e-9)
    # shortest rotation +y -> d: q = (1 + y.d, y x d), normalised (no trigonometry needed)
    sw = np.stack([1.0 + d[..., 1], d[..., 2], np.zeros_like(d[..., 0]), -d[..., 0]], axis=-1)
    sw_n = np.linalg.norm(sw, axis=-1, keepdims=True)
    sw = np.where(sw_n > 1e-6, sw / np.maximum(sw_n, 1e-9), np.array([0.0, 1.0, 0.0, 0.0]))
    hips = J[:, 16] - J[:, 12]
    half = 0.5 * np.arctan2(-hips[:, 2], hips[:, 0])[:, None]
    cw, sy = np.cos(half), np.sin(half)  # facing: (cos, 0, sin, 0) about +y
    w1, x1, y1, z1 = (sw[..., m] for m in range(4))
    q = np.stack([w1 * cw - y1 * sy, x1 * cw + z1 * sy, y1 * cw + w1 * sy, z1 * cw - x1 * sy], axis=-1)
    q[:, list(_NO_ORIENT)] = 0.0
    return q


@dataclass
class _Body:
    """One body as it appears in a `.skeleton` file: its frames (indices into the file's frames), camera-space
    joints (len(frames), 25, 3), hand states and leans per frame."""

    body_id: int
    frames: np.ndarray
    joints: np.ndarray
    hand_state: np.ndarray
    lean: np.ndarray
    tracked: np.ndarray  # (len(frames), 25) Kinect tracking state 2 tracked / 1 inferred


@dataclass
class _Layout:
    """A `.skeleton` file before its numbers are formatted: bodies per frame and the rows in file order."""

    n_frames: int
    counts: np.ndarray   # (n_frames,) bodies in each frame
    joints: np.ndarray   # (R, 25, 12) joint lines of every body appearance, in file order
    info: np.ndarray     # (R, 10) body-info lines (the ID's leading digits are added when assembling)


def skeleton_layout(n_frames: int, bodies: list[_Body]) -> _Layout:
    """Order body appearances as the file lists them (by frame, then body) and fill the 12 joint values:
    camera-space x y z, depth- and colour-image projections, orientation quaternion, tracking state."""
    if not bodies:
        return _Layout(n_frames, np.zeros(n_frames, np.int64), np.zeros((0, 25, 12)), np.zeros((0, 10)))
    f_all = np.concatenate([b.frames for b in bodies]).astype(np.int64)
    b_all = np.concatenate([np.full(len(b.frames), i) for i, b in enumerate(bodies)])
    order = np.lexsort((b_all, f_all))          # slots in file order: by frame, then body
    row_of = np.empty_like(order)
    row_of[order] = np.arange(len(order))
    table = np.empty((len(order), 25, 12))
    info = np.zeros((len(order), 10))
    ids = np.array([b.body_id for b in bodies], np.int64) - _ID_HIGH
    if (ids < 10 ** 5).any() or (ids >= 10 ** 6).any():
        raise ValueError(f"body IDs must lie in [{_ID_HIGH + 10 ** 5}, {_ID_HIGH + 10 ** 6})")
    start = 0
    for bi, b in enumerate(bodies):
        rows = row_of[start:start + len(b.frames)]
        start += len(b.frames)
        table[rows, :, 0:3] = b.joints  # projections and orientations are filled in `skeleton_texts`
        table[rows, :, 11] = b.tracked
        info[rows, 0] = ids[bi]
        info[rows, 3] = b.hand_state[:, 0]
        info[rows, 5] = b.hand_state[:, 1]
        info[rows, 7:9] = b.lean
    info[:, 2] = info[:, 4] = 1.0
    info[:, 9] = 2.0
    return _Layout(n_frames, np.bincount(f_all, minlength=n_frames), table, info)


def skeleton_texts(layouts: list[_Layout]) -> list[bytes]:
    """The `.skeleton` texts (STAR_SPEC §1.2, CRLF like the official files) of many samples: their numbers are
    formatted together, which is what makes writing tens of thousands of samples fast."""
    jtext = itext = b""
    jend: list[int] = []
    iend: list[int] = []
    if sum(len(l_.info) for l_ in layouts):
        table = np.concatenate([l_.joints for l_ in layouts])
        X, Y, Z = table[..., 0], table[..., 1], np.maximum(table[..., 2], 0.3)
        table[..., 3] = 256.0 + 365.5 * X / Z     # depth image (512 x 424)
        table[..., 4] = 212.0 - 365.5 * Y / Z
        table[..., 5] = 980.0 + 1058.0 * X / Z    # colour image (1920 x 1080)
        table[..., 6] = 540.0 - 1058.0 * Y / Z
        table[..., 7:11] = _quaternions(table[..., 0:3])
        jtext, jlen = format_table(table.reshape(-1, 12), (7, 7, 7, 4, 4, 3, 3, 7, 7, 7, 7, 0))
        itext, ilen = format_table(np.concatenate([l_.info for l_ in layouts]), (0, 0, 0, 0, 0, 0, 0, 7, 7, 0),
                                   eol=b"\r\n25\r\n")
        jend = np.cumsum(jlen.reshape(-1, 25).sum(axis=1)).tolist()
        iend = np.cumsum(ilen).tolist()
    prefix = str(_ID_HIGH // 10 ** 6).encode()
    out, r = [], 0
    j0 = i0 = 0
    for lay in layouts:
        parts = [b"%d\r\n" % lay.n_frames]
        for c in lay.counts.tolist():
            parts.append(b"%d\r\n" % c)
            for _ in range(c):
                parts += (prefix, itext[i0:iend[r]], jtext[j0:jend[r]])
                i0, j0 = iend[r], jend[r]
                r += 1
        out.append(b"".join(parts))
    return out


def skeleton_text(n_frames: int, bodies: list[_Body]) -> bytes:
    """The `.skeleton` text of one sample; inside a frame bodies appear in list order, and a frame where no
    body appears is written with 0 bodies."""
    return skeleton_texts([skeleton_layout(n_frames, bodies)])[0]


# ------------------------------------------------------------------------------------------------ NTU planning
def parse_ntu_name(name: str) -> dict[str, int]:
    """`SsssCcccPpppRrrrAaaa` -> setup, camera, subject, replication, action (all 1-based)."""
    if len(name) != 20 or [name[i] for i in (0, 4, 8, 12, 16)] != list("SCPRA") or not all(
            name[i:i + 3].isdigit() for i in (1, 5, 9, 13, 17)):
        raise StarReproError(f"not an NTU sample name (SsssCcccPpppRrrrAaaa): {name!r}")
    return {k: int(name[i:i + 3]) for k, i in (("setup", 1), ("camera", 5), ("subject", 9), ("replication", 13),
                                                ("action", 17))}


def ntu_name(setup: int, camera: int, subject: int, replication: int, action: int) -> str:
    return f"S{setup:03d}C{camera:03d}P{subject:03d}R{replication:03d}A{action:03d}"


@dataclass
class _Perf:
    """One performance: a subject doing a class once, seen by the three cameras."""

    label: int
    setup: int
    subject: int
    replication: int
    partner: int | None
    frames: int
    variation: Variation
    names: list[str] = field(default_factory=list)


def _ntu_class_plan(seed: int, label: int, ntu: Mapping, motion: Mapping) -> list[_Perf]:
    """Who performs class `label` in which setup: subjects alternate between the cross-subject training and
    test lists and setups between even and odd ids, so every protocol has the class on both sides."""
    r = _rng(seed, "ntu-class", label)
    first = label < 60
    setups = list(range(1, 18)) if first else list(range(18, 33))
    pool = range(1, 41) if first else range(1, 107)
    train = [s for s in pool if s in NTU120_TRAIN_SUBJECTS]
    test = [s for s in pool if s not in NTU120_TRAIN_SUBJECTS]
    n = ntu["subjects_per_class"]
    n_train = (n + 1) // 2
    n_test = ntu.get("test_subjects_per_class") or n - n_train
    chosen_train = [int(x) for x in r.choice(train, size=min(n_train, len(train)), replace=False)]
    chosen_test = [int(x) for x in r.choice(test, size=min(n_test, len(test)), replace=False)]
    # training and test subjects alternate (the order of every earlier stand-in), the extra test subjects last
    order = [s for pair in zip(chosen_train, chosen_test) for s in pair]
    order += chosen_train[len(chosen_test):] + chosen_test[len(chosen_train):]
    even = [s for s in setups if s % 2 == 0]
    odd = [s for s in setups if s % 2 == 1]
    perfs = []
    two = label in TWO_PERSON["ntu120"]
    lo, hi = ntu["frames"]
    for j, subject in enumerate(order):
        setup = int(r.choice(even if j % 4 in (0, 3) else odd))
        for rep in range(1, ntu["replications"] + 1):
            pr = _rng(seed, "ntu-perf", label, subject, rep)
            partner = None
            if two:
                partner = int(pr.choice([s for s in pool if s != subject]))
            perfs.append(_Perf(label, setup, subject, rep, partner, int(pr.integers(lo, hi + 1)),
                               _variation(pr, motion)))
    for p in perfs:
        p.names = [ntu_name(p.setup, c, p.subject, p.replication, p.label + 1) for c in (1, 2, 3)]
    return perfs


def _paper_pairs(arch: str) -> list[tuple[int, int]]:
    """The (setup, subject) pairs that perform every class of an archive at paper size: setups and subjects
    taken in step (j mod each count), so every setup and every subject appears and no pair repeats."""
    setups, lay = NTU_ARCHIVE_CONTENTS[arch][0], NTU_ARCHIVE_LAYOUT[arch]
    subjects = lay["subjects"]
    pairs = sorted({(setups[j % len(setups)], subjects[j % len(subjects)]) for j in range(lay["pairs"])})
    if len(pairs) != lay["pairs"]:
        raise StarReproError(f"internal: {arch} layout repeats a (setup, subject) pair")
    return pairs


def _archive_of_label(label: int) -> str:
    return next(a for a, (_, labels) in NTU_ARCHIVE_CONTENTS.items() if label in labels)


def _ntu_class_plan_paper(seed: int, label: int, motion: Mapping) -> list[_Perf]:
    """Paper size: every (setup, subject) pair of the class's archive performs it `NTU_REPLICATIONS` times;
    lengths are log-normal around a per-class median (some classes are longer), clipped to `PAPER_NTU_FRAMES`."""
    arch = _archive_of_label(label)
    pool = list(NTU_ARCHIVE_LAYOUT[arch]["subjects"])
    median = PAPER_NTU_MEDIAN_FRAMES * float(_rng(seed, "ntu-class-length", label).uniform(0.75, 1.35))
    lo, hi = PAPER_NTU_FRAMES
    two = label in TWO_PERSON["ntu120"]
    perfs = []
    for setup, subject in _paper_pairs(arch):
        for rep in range(1, NTU_REPLICATIONS + 1):
            pr = _rng(seed, "ntu-perf", label, subject, rep, setup)
            partner = int(pr.choice([s for s in pool if s != subject])) if two else None
            frames = int(np.clip(np.rint(median * np.exp(pr.normal(0.0, PAPER_NTU_LENGTH_SPREAD))), lo, hi))
            perfs.append(_Perf(label, setup, subject, rep, partner, frames, _variation(pr, motion)))
    for p in perfs:
        p.names = [ntu_name(p.setup, c, p.subject, p.replication, p.label + 1) for c in range(1, NTU_CAMERAS + 1)]
    return perfs


def _ntu_missing(seed: int, arch: str, plans: Mapping[int, list[_Perf]], ntu: Mapping, size: str) -> list[str]:
    """Whole 0-body samples of one archive: `missing_per_archive` classes with one each (demo), or the real
    archive's count drawn among all its samples (paper)."""
    labels = NTU_ARCHIVE_CONTENTS[arch][1]
    r = _rng(seed, "ntu-missing", arch)
    if size == "paper":
        names = sorted(n for label in labels for p in plans[label] for n in p.names)
        return sorted(names[int(i)] for i in r.choice(len(names), size=NTU_ARCHIVE_LAYOUT[arch]["missing"],
                                                         replace=False))
    out = []
    k = min(ntu["missing_per_archive"], len(labels))
    for label in sorted(int(x) for x in r.choice(list(labels), size=k, replace=False)):
        names = [n for p in plans[label] for n in p.names]
        out.append(names[int(r.integers(len(names)))])
    return out


def _ntu_protocols(dataset: str) -> dict[str, tuple[str, set, set]]:
    if dataset == "ntu60":
        return {"xsub": ("subject", set(NTU60_TRAIN_SUBJECTS), set(range(1, 41)) - set(NTU60_TRAIN_SUBJECTS)),
                "xview": ("camera", {2, 3}, {1})}
    return {"xsub": ("subject", set(NTU120_TRAIN_SUBJECTS), set(range(1, 107)) - set(NTU120_TRAIN_SUBJECTS)),
            "xset": ("setup", set(range(2, 33, 2)), set(range(1, 33, 2)))}


def _check_coverage(dataset: str, names: list[str]) -> None:
    """Every class must have samples on both sides of every protocol (after removing missing samples)."""
    metas = [parse_ntu_name(n) for n in names]
    n_classes = len(classes_of(dataset))
    for proto, (by, train, test) in _ntu_protocols(dataset).items():
        for side, ids in (("train", train), ("test", test)):
            have = {m["action"] - 1 for m in metas if m[by] in ids}
            lack = sorted(set(range(n_classes)) - have)
            if lack:
                raise StarReproError(f"synthetic {dataset}: classes {lack[:10]} have no {proto} {side} sample; "
                                     "raise synth.ntu.subjects_per_class or lower synth.ntu.missing_per_archive")


# ------------------------------------------------------------------------------------------------ NTU samples
def _noise_short(rng: np.random.Generator, frames: np.ndarray, genuine: np.ndarray, body_id: int) -> _Body:
    """A false detection seen briefly: a person-shaped cluster somewhere else in the room, <= 11 frames."""
    k = len(frames)
    base = genuine[min(len(genuine) - 1, int(rng.integers(len(genuine))))]
    shift = np.array([rng.choice([-1.0, 1.0]) * rng.uniform(0.9, 1.6), rng.uniform(-0.1, 0.1), rng.uniform(0.3, 1.0)])
    J = base[None] + shift + rng.normal(0, 0.03, (k, 25, 3))
    return _Body(body_id, frames, J, np.zeros((k, 2), np.int64), rng.normal(0, 0.05, (k, 2)),
                 np.where(rng.random((k, 25)) < 0.5, 1, 2))


def _noise_spread(rng: np.random.Generator, frames: np.ndarray, body_id: int) -> _Body:
    """A false detection of a wide, flat object (a table, a sofa): its joints spread wider than tall in most
    frames, so the spread test marks >= 80% of its frames as noise."""
    k = len(frames)
    width = rng.uniform(0.6, 1.2)
    centre = np.array([rng.uniform(-1.2, 1.2), rng.uniform(-0.6, -0.2), rng.uniform(2.2, 3.8)])
    unit = np.stack([np.linspace(-0.5, 0.5, 25), rng.uniform(-0.5, 0.5, 25), rng.uniform(-0.5, 0.5, 25)], axis=1)
    height = np.full(k, rng.uniform(0.08, 0.3) * width)
    tall = rng.permutation(k)[: int(0.15 * k)]  # a few frames where the cluster happens to look upright
    height[tall] = width / 0.7
    J = centre + unit[None] * np.stack([np.full(k, width), height, np.full(k, 0.3)], axis=1)[:, None, :]
    J = J + rng.normal(0, 0.005, J.shape)
    return _Body(body_id, frames, J, np.ones((k, 2), np.int64), rng.normal(0, 0.2, (k, 2)),
                 np.where(rng.random((k, 25)) < 0.7, 1, 2))


@dataclass
class _NtuSample:
    layout: _Layout
    record: dict


def _ntu_sample(seed: int, name: str, perf: _Perf, scene: np.ndarray, lean: np.ndarray, hands: np.ndarray,
                ntu: Mapping, motion: Mapping, missing: bool) -> _NtuSample:
    meta = parse_ntu_name(name)
    r = _rng(seed, "ntu-sample", name)
    F = perf.frames
    record = {"label": perf.label, "setup": meta["setup"], "camera": meta["camera"], "subject": meta["subject"],
              "replication": meta["replication"], "frames": F, "bodies": [], "noise_bodies": {},
              "dropped_frames": [], "missing": missing}
    if missing:
        return _NtuSample(skeleton_layout(F, []), record)
    D, H, X0 = _setup_geometry(seed, meta["setup"])
    view = NTU_CAMERA_DEG[meta["camera"]] + r.normal(0.0, motion["view_jitter_deg"])
    cam = to_camera(scene, view, D, H, X0)
    cam = cam + r.normal(0.0, motion["joint_noise"], cam.shape)
    tracked = np.where(r.random(cam.shape[:3]) < 0.03, 1, 2)
    tracked[:, :, list(_OFTEN_INFERRED)] = np.where(r.random((cam.shape[0], F, len(_OFTEN_INFERRED))) < 0.12, 1, 2)
    cam = cam + (tracked == 1)[..., None] * r.normal(0.0, 2 * motion["joint_noise"], cam.shape)

    dropped = np.zeros(F, bool)
    if r.random() < ntu["dropped_frame_fraction"]:
        # real bodies must keep > 11 appearances, or the length filter would take them for noise
        k = min(int(r.integers(1, ntu["max_dropped_frames"] + 1)), F - NOISE_LEN_MAX - 1)
        if k > 0:
            dropped[1 + r.choice(F - 2, size=k, replace=False)] = True
    valid = np.flatnonzero(~dropped)
    ids = iter(int(x) for x in BODY_ID_BASE + r.choice(np.arange(1000, 70000), size=8, replace=False))
    bodies = []
    for a in range(cam.shape[0]):
        bodies.append(_Body(next(ids), valid, cam[a, valid], hands[a, valid], lean[a, valid], tracked[a, valid]))
        record["bodies"].append(str(bodies[-1].body_id))
    noise = []
    if r.random() < ntu["short_body_fraction"]:
        n = int(r.integers(3, NOISE_LEN_MAX + 1))
        start = int(r.integers(0, len(valid) - n + 1))
        noise.append((_noise_short(r, valid[start:start + n], cam[0, valid], next(ids)), "length"))
    # The spread test runs on every body of a multi-body sample: plant this kind only where the real actors
    # stay well clear of the threshold, so the denoiser removes exactly the planted body.
    ratios = [spread_noise_ratio(b.joints) for b in bodies]
    record["spread_ratios"] = [round(x, 4) for x in ratios]
    if len(bodies) > 1 and max(ratios) >= 0.6:  # a script bug, not data: fail loudly rather than mislabel
        raise StarReproError(f"synthetic {name}: the script of {classes_of('ntu120')[perf.label]!r} makes a real "
                             f"actor wider than tall in {max(ratios):.0%} of the frames; the denoiser would drop it")
    if r.random() < ntu["spread_body_fraction"] and max(ratios) < 0.45:
        n = int(r.integers(max(NOISE_LEN_MAX + 1, len(valid) // 2), len(valid) + 1))
        start = int(r.integers(0, len(valid) - n + 1))
        noise.append((_noise_spread(r, valid[start:start + n], next(ids)), "spread"))
    for b, why in noise:
        bodies.append(b)
        record["noise_bodies"][str(b.body_id)] = why
    if len(noise) > 0 and r.random() < 0.5:  # Kinect's body order is arbitrary; sometimes noise comes first
        bodies = bodies[len(bodies) - len(noise):] + bodies[: len(bodies) - len(noise)]
    record["dropped_frames"] = np.flatnonzero(dropped).tolist()
    return _NtuSample(skeleton_layout(F, bodies), record)


def _ntu_render_class(seed: int, label: int, perfs: list[_Perf], motion: Mapping
                      ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    script = SCRIPTS["ntu120"][classes_of("ntu120")[label]]
    bodies = []
    for p in perfs:
        b = [_subject_body(seed, p.subject, motion)]
        if p.partner is not None:
            b.append(_subject_body(seed, p.partner, motion))
        bodies.append(tuple(b))
    out = render_batch(script, bodies, [p.frames for p in perfs], [p.variation for p in perfs])
    return [(o.joints.astype(np.float32), o.lean.astype(np.float32), o.hand_state) for o in out]


def _zip_write(zf: zipfile.ZipFile, arcname: str, data: bytes, level: int) -> None:
    info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
    info.create_system = 3
    if arcname.endswith("/"):
        info.external_attr = (0o40755 << 16) | 0x10
        info.compress_type = zipfile.ZIP_STORED
        zf.writestr(info, b"")
        return
    info.external_attr = 0o100644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=level)


def write_ntu(out_dir: str | Path, dataset: str, cfg: Mapping, seed: int, reuse: str | Path | None = None,
              keep_samples: bool = True) -> dict:
    """Write a synthetic NTU-60 or NTU-120 into `out_dir` (replaced as a whole, atomically).

    Reads params `synth.motion` and `synth.ntu` (`cfg` is the `synth` mapping). Writes the archive(s) named like
    the official ones, the missing-skeleton list, and `manifest.json` (returned): per sample its label and
    ids, genuine body IDs, planted noise body IDs with the reason the denoiser gives ("length" | "spread"),
    dropped frames; the missing samples; archive hashes.

    `reuse`: a folder written by this function with the same seed and config (NTU-60 for NTU-120): archives
    found there are copied instead of generated again (they would be byte-identical; the hash is checked).

    Streaming: performances are rendered one setup at a time and the per-sample records go to a temporary file,
    so memory does not grow with the size. `keep_samples=False` leaves them out of the returned manifest.
    """
    if dataset not in ("ntu60", "ntu120"):
        raise StarReproError(f"write_ntu: dataset must be ntu60 or ntu120, got {dataset!r}")
    motion, ntu = _section(cfg, "motion"), _section(cfg, "ntu")
    out_dir = Path(out_dir)
    n_classes = len(classes_of(dataset))
    archives = NTU_ARCHIVES[dataset]
    size = synth_size(cfg)
    if size == "paper":
        plans = {label: _ntu_class_plan_paper(seed, label, motion) for label in range(n_classes)}
    else:
        plans = {label: _ntu_class_plan(seed, label, ntu, motion) for label in range(n_classes)}
    config = {"motion": motion, "ntu": ntu} | ({"size": size} if size != "demo" else {})
    old = _reusable(reuse, seed, config)

    missing = {n for arch in archives for n in _ntu_missing(seed, arch, plans, ntu, size)}
    _check_coverage(dataset, [n for label in plans for p in plans[label] for n in p.names if n not in missing])

    manifest = {"dataset": dataset, "seed": int(seed), "kind": "synthetic", "config": config, "archives": {},
                "missing_list": NTU_MISSING_LISTS[dataset], "missing": sorted(missing)}
    with atomic_dir(out_dir) as tmp, _SampleRecords(tmp) as records:
        os.chmod(tmp, 0o755)
        for arch in archives:
            path = tmp / arch
            if old is not None and arch in old[1]["archives"]:
                src_dir, om = old
                with atomic_path(path) as t:
                    shutil.copyfile(src_dir / arch, t)
                if sha256_file(path) != om["archives"][arch]["sha256"]:
                    raise StarReproError(f"{src_dir / arch}: does not match its manifest; delete {src_dir} and "
                                         "generate it again")
                for name, rec in om["samples"].items():
                    if NTU_ARCHIVE_CONTENTS[arch][0].start <= rec["setup"] < NTU_ARCHIVE_CONTENTS[arch][0].stop:
                        records.add(name, rec)
                manifest["archives"][arch] = dict(om["archives"][arch])
                continue
            n_written = _write_ntu_archive(tmp / arch, dataset, plans, missing, seed, ntu, motion, records)
            manifest["archives"][arch] = {"sha256": sha256_file(path), "samples": n_written}
        title = "NTU RGB+D 120" if dataset == "ntu120" else "NTU RGB+D"
        header = (f"{len(missing)} of the samples in this synthetic stand-in of {title} have no skeleton in any "
                  "frame.\nLeave these files out of training and testing, as with the official list.\n")
        (tmp / NTU_MISSING_LISTS[dataset]).write_text(header + "\n" + "".join(f"{n}\n" for n in sorted(missing)),
                                                     encoding="utf-8", newline="\n")
        manifest["counts"] = records.counts | {"missing": len(missing)}
        records.write_manifest(tmp / "manifest.json", manifest)
        if keep_samples:
            manifest["samples"] = records.load()
    return manifest


def _write_ntu_archive(path: Path, dataset: str, plans: Mapping[int, list[_Perf]], missing: set[str], seed: int,
                       ntu: Mapping, motion: Mapping, records: "_SampleRecords") -> int:
    """One archive, streamed: each setup's performances are rendered, formatted and compressed before the next
    setup's (names sort by setup first, so the entries stay in name order); returns the samples written."""
    arch = path.name
    setups, labels = NTU_ARCHIVE_CONTENTS[arch]
    by_setup: dict[int, dict[int, list[_Perf]]] = {}
    for label in labels:
        for p in plans[label]:
            by_setup.setdefault(p.setup, {}).setdefault(label, []).append(p)

    def chunks_of_setup(setup: int):
        rendered: dict[str, tuple] = {}
        for label, perfs in sorted(by_setup.get(setup, {}).items()):
            for p, res in zip(perfs, _ntu_render_class(seed, label, perfs, motion)):
                for name in p.names:
                    rendered[name] = (p, res)
        names = sorted(rendered)
        for c in range(0, len(names), _CHUNK):
            yield [(name,) + rendered[name] for name in names[c:c + _CHUNK]]

    def make(chunk: list[tuple]) -> tuple[list[str], list[_NtuSample], list[bytes]]:
        samples = [_ntu_sample(seed, name, p, joints.astype(np.float64), lean.astype(np.float64), hands, ntu,
                               motion, name in missing) for name, p, (joints, lean, hands) in chunk]
        return [c[0] for c in chunk], samples, skeleton_texts([x.layout for x in samples])

    n_written = 0
    # zlib and numpy release the GIL: format the next chunk in a thread while this one is compressed
    with atomic_path(path) as t, zipfile.ZipFile(t, "w") as zf, ThreadPoolExecutor(1) as pool:
        _zip_write(zf, NTU_FOLDER + "/", b"", 0)
        for setup in _progress(setups, f"synth {dataset} write {arch[18:30]} (setups)"):
            chunks = chunks_of_setup(setup)
            nxt = pool.submit(make, next(chunks, []))
            while True:
                names, samples, texts = nxt.result()
                if not names:
                    break
                nxt = pool.submit(make, next(chunks, []))
                for name, s, text in zip(names, samples, texts):
                    _zip_write(zf, f"{NTU_FOLDER}/{name}.skeleton", text, ntu["compress_level"])
                    records.add(name, s.record)
                n_written += len(names)
    return n_written


class _SampleRecords:
    """Per-sample manifest records, kept on disk while an NTU stand-in is written (at paper size they would
    be a few hundred MB of Python objects): each is appended, in name order, already formatted as it will
    appear in `manifest.json`, whose text is then streamed out byte-identical to `canonical_json`."""

    def __init__(self, folder: Path):
        self._fh = tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder)
        self.n = 0
        self.counts = {"samples": 0, "two_body_samples": 0, "length_noise_bodies": 0, "spread_noise_bodies": 0,
                       "samples_with_dropped_frames": 0}

    def __enter__(self) -> "_SampleRecords":
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()

    def add(self, name: str, rec: dict) -> None:
        text = json.dumps({name: rec}, sort_keys=True, indent=2, ensure_ascii=False)
        body = "\n".join("  " + line for line in text.split("\n")[1:-1])  # one level deeper, no braces
        self._fh.write(("," if self.n else "") + "\n" + body)
        self.n += 1
        c = self.counts
        c["samples"] += 1
        c["two_body_samples"] += len(rec["bodies"]) == 2
        c["length_noise_bodies"] += sum(v == "length" for v in rec["noise_bodies"].values())
        c["spread_noise_bodies"] += sum(v == "spread" for v in rec["noise_bodies"].values())
        c["samples_with_dropped_frames"] += bool(rec["dropped_frames"])

    def write_manifest(self, path: Path, manifest: dict) -> None:
        """`canonical_json(manifest | {"samples": <the records>})`, streamed."""
        marker = "\x00samples\x00"
        head, tail = canonical_json(manifest | {"samples": marker}).split(json.dumps(marker))
        self._fh.flush()
        self._fh.seek(0)
        with open(path, "w", encoding="utf-8", newline="\n") as out:
            out.write(head + "{")
            shutil.copyfileobj(self._fh, out)
            out.write("\n  }" if self.n else "}")
            out.write(tail)

    def load(self) -> dict:
        self._fh.seek(0)
        return json.loads("{" + self._fh.read() + "\n}")


def _reusable(reuse, seed: int, config: dict) -> tuple[Path, dict] | None:
    if reuse is None:
        return None
    reuse = Path(reuse)
    try:
        import json

        with open(reuse / "manifest.json", encoding="utf-8") as fh:
            om = json.load(fh)
    except (OSError, ValueError):
        return None
    if om.get("seed") != int(seed) or om.get("config") != json.loads(canonical_json(config)):
        return None
    return reuse, om


def generate_ntu_bench_files(out_dir: str | Path, n: int, seed: int, frames: tuple[int, int] = (60, 120),
                             cfg: Mapping | None = None) -> list[Path]:
    """Write `n` loose `.skeleton` files (for the prepare benchmark): the same generator as `write_ntu`, over
    all 120 classes, noise included; returns their paths in name order. Files are written one by one,
    each atomically."""
    cfg = dict(cfg or DEMO_CFG)
    motion = _section(cfg, "motion")
    ntu = dict(_section(cfg, "ntu"))
    if not NOISE_LEN_MAX + 3 <= int(frames[0]) <= int(frames[1]):
        raise StarReproError(f"generate_ntu_bench_files: frames must be (lo, hi) with {NOISE_LEN_MAX + 3} <= lo <= hi, "
                             f"got {frames!r}")
    ntu["frames"] = [int(frames[0]), int(frames[1])]
    ntu["missing_per_archive"] = 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_perf = (n + 2) // 3
    by_class: dict[int, list[_Perf]] = {}
    for i in range(n_perf):
        label = i % 120
        rep = 1 + (i // 120) % 2
        subject = 1 + (i // 240) % 106
        setup = (1 + (i // (240 * 106)) % 17) if label < 60 else (18 + (i // (240 * 106)) % 15)
        pr = _rng(seed, "bench-perf", i)
        partner = (subject % 106) + 1 if label in TWO_PERSON["ntu120"] else None
        p = _Perf(label, setup, subject, rep, partner, int(pr.integers(frames[0], frames[1] + 1)),
                  _variation(pr, motion))
        p.names = [ntu_name(setup, c, subject, rep, label + 1) for c in (1, 2, 3)]
        by_class.setdefault(label, []).append(p)
    paths = []
    for label in _progress(sorted(by_class), "bench skeletons"):
        perfs = by_class[label]
        names, samples = [], []
        for p, (joints, lean, hands) in zip(perfs, _ntu_render_class(seed, label, perfs, motion)):
            for name in p.names[: max(0, n - len(paths) - len(names))]:
                names.append(name)
                samples.append(_ntu_sample(seed, name, p, joints.astype(np.float64), lean.astype(np.float64), hands,
                                           ntu, motion, False))
        for name, text in zip(names, skeleton_texts([x.layout for x in samples])):
            path = out_dir / f"{name}.skeleton"
            with atomic_path(path) as tmp:
                tmp.write_bytes(text)
            paths.append(path)
    return sorted(paths)


# ------------------------------------------------------------------------------------------------ PKU-MMD
@dataclass
class _Video:
    vid: int
    subject: int
    partner: int | None
    side: str
    perfs: list  # (label, frames, Variation)
    gaps: list[int]


def _pku_plan(seed: int, pku: Mapping, motion: Mapping) -> list[_Video]:
    """Performances of every class split between training and test subjects, chained into long videos;
    interaction classes get their own two-person videos, as in the real recordings."""
    r = _rng(seed, "pku-plan")
    subjects = list(range(1, pku["subjects"] + 1))
    test_subj = sorted(int(x) for x in r.choice(subjects, size=pku["test_subjects"], replace=False))
    train_subj = [s for s in subjects if s not in test_subj]
    n_classes = len(classes_of("pku1"))
    groups: dict[tuple[bool, str], list[int]] = {}
    for label in range(n_classes):
        for i in range(pku["performances_per_class"]):
            groups.setdefault((label in TWO_PERSON["pku1"], "train" if i % 2 == 0 else "test"), []).append(label)
    videos = []
    lo, hi = pku["clip_frames"]
    glo, ghi = pku["gap_frames"]
    for (two, side), labels in sorted(groups.items()):
        labels = [int(x) for x in r.permutation(labels)]
        pool = train_subj if side == "train" else test_subj
        per = pku["actions_per_video"]
        for c in range(0, len(labels), per):
            chunk = labels[c:c + per]
            subject = pool[len(videos) % len(pool)]
            partner = None
            if two:
                partner = int(r.choice([s for s in pool if s != subject]))
            perfs = [(lab, int(r.integers(lo, hi + 1)), _variation(r, motion)) for lab in chunk]
            gaps = [int(r.integers(glo, ghi + 1)) for _ in range(len(chunk) + 1)]
            videos.append(_Video(0, subject, partner, side, perfs, gaps))
    order = r.permutation(len(videos))
    videos = [videos[i] for i in order]
    for i, v in enumerate(videos):
        v.vid = 2 + i  # the real Phase I numbering starts at 0002
    return videos


def _pku_video_scene(v: _Video, clips: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Chain clips with idle gaps in between (the body moves smoothly from one clip's last pose to the next
    clip's first). Returns scene joints (2, F, 25, 3) — the second person zero when absent — and label rows."""
    A = 2 if v.partner is not None else 1
    pieces, rows, t = [], [], 0
    prev = clips[0][:, 0]
    for (label, n, _), clip, gap in zip(v.perfs, clips, v.gaps):
        nxt = clip[:, 0]
        if gap:
            w = np.linspace(0.0, 1.0, gap + 2)[1:-1][None, :, None, None]
            pieces.append((1 - w) * prev[:, None] + w * nxt[:, None])
        t += gap
        pieces.append(clip)
        rows.append((label + 1, t + 1, t + n))
        t += n
        prev = clip[:, -1]
    last = v.gaps[-1]
    if last:
        pieces.append(np.repeat(prev[:, None], last, axis=1))
    scene = np.concatenate(pieces, axis=1)
    if A == 1:
        scene = np.concatenate([scene, np.full_like(scene, np.nan)], axis=0)
    return scene, rows


_PKU_RENDER_BLOCK = 32  # videos rendered together (a class's clips in one batch within the block)


def _pku_render(seed: int, videos: list[_Video], which: range, motion: Mapping) -> dict[tuple[int, int], np.ndarray]:
    """Scene joints of every clip of videos `which`, keyed (video index, clip index); each class's clips are
    rendered in one batch (a clip does not depend on the rest of its batch)."""
    names = classes_of("pku1")
    jobs: dict[int, list[tuple[int, int]]] = {}
    for vi in which:
        for ci, (label, _, _) in enumerate(videos[vi].perfs):
            jobs.setdefault(label, []).append((vi, ci))
    clips: dict[tuple[int, int], np.ndarray] = {}
    for label in sorted(jobs):
        keys = jobs[label]
        bodies, Ts, vars_ = [], [], []
        for vi, ci in keys:
            v = videos[vi]
            b = [_subject_body(seed, v.subject, motion)]
            if v.partner is not None:
                b.append(_subject_body(seed, v.partner, motion))
            bodies.append(tuple(b))
            Ts.append(v.perfs[ci][1])
            vars_.append(v.perfs[ci][2])
        for key, res in zip(keys, render_batch(SCRIPTS["pku1"][names[label]], bodies, Ts, vars_)):
            clips[key] = res.joints
    return clips


def write_pku(out_dir: str | Path, cfg: Mapping, seed: int) -> dict:
    """Write a synthetic PKU-MMD Phase I into `out_dir` (replaced as a whole, atomically).

    Reads params `synth.motion` and `synth.pku`. Writes `skeletons/0XXX-{L,M,R}.txt`, `labels/0XXX-{L,M,R}.txt`,
    `cross-subject.txt`, `cross-view.txt` and `manifest.json` (returned: per video its subject(s), split side
    and clips; the splits; counts).
    """
    motion, pku = _section(cfg, "motion"), _section(cfg, "pku")
    size = synth_size(cfg)
    if size == "paper":
        pku = dict(PAPER_PKU)
    out_dir = Path(out_dir)
    videos = _pku_plan(seed, pku, motion)

    config = {"motion": motion, "pku": pku} | ({"size": size} if size != "demo" else {})
    manifest = {"dataset": "pku1", "seed": int(seed), "kind": "synthetic", "config": config,
                "videos": {}, "splits": {}}
    train_xsub, test_xsub, train_xview, test_xview = [], [], [], []
    with atomic_dir(out_dir) as tmp:
        os.chmod(tmp, 0o755)
        (tmp / "skeletons").mkdir()
        (tmp / "labels").mkdir()
        clips: dict[tuple[int, int], np.ndarray] = {}
        for vi, v in enumerate(_progress(videos, "synth pku1 write")):
            if vi % _PKU_RENDER_BLOCK == 0:  # streaming: a block of videos rendered at a time
                clips = _pku_render(seed, videos, range(vi, min(vi + _PKU_RENDER_BLOCK, len(videos))), motion)
            scene, rows = _pku_video_scene(v, [clips.pop((vi, ci)) for ci in range(len(v.perfs))])
            geo = _setup_geometry(seed, f"pku-video-{v.vid}")
            conf = _rng(seed, "pku-confidence", v.vid).choice([1, 2, 2, 2, 2, 2], size=len(rows))
            label_text = "".join(f"{a},{s},{e},{c}\n" for (a, s, e), c in zip(rows, conf))
            for view in ("L", "M", "R"):
                name = f"{v.vid:04d}-{view}"
                r = _rng(seed, "pku-view", name)
                cam = to_camera(scene, PKU_VIEW_DEG[view] + r.normal(0.0, motion["view_jitter_deg"]), *geo)
                cam = cam + r.normal(0.0, motion["joint_noise"], cam.shape)
                cam = np.nan_to_num(cam, nan=0.0)  # an absent second person is written as zeros
                table = cam.transpose(1, 0, 2, 3).reshape(cam.shape[1], 150)
                text, _ = format_table(table, (6,) * 150, strip=False, eol=b"\n")
                with atomic_path(tmp / "skeletons" / f"{name}.txt") as p:
                    p.write_bytes(text)
                (tmp / "labels" / f"{name}.txt").write_text(label_text, encoding="utf-8", newline="\n")
                (train_xsub if v.side == "train" else test_xsub).append(name)
                (test_xview if view == "M" else train_xview).append(name)
            manifest["videos"][f"{v.vid:04d}"] = {
                "subject": v.subject, "partner": v.partner, "xsub": v.side, "frames": int(scene.shape[1]),
                "clips": [[a - 1, s, e] for a, s, e in rows]}
        for fname, train, test in (("cross-subject.txt", train_xsub, test_xsub),
                                   ("cross-view.txt", train_xview, test_xview)):
            train, test = sorted(train), sorted(test)
            (tmp / fname).write_text("Training videos:\n" + ", ".join(train) + "\nTesting videos:\n"
                                     + ", ".join(test) + "\n", encoding="utf-8", newline="\n")
            manifest["splits"][fname] = {"train": train, "test": test}
        n_clips = sum(len(v["clips"]) for v in manifest["videos"].values())
        manifest["counts"] = {"videos": len(videos), "files": 3 * len(videos), "clips_per_view": n_clips,
                              "clips": 3 * n_clips}
        (tmp / "manifest.json").write_text(canonical_json(manifest), encoding="utf-8", newline="\n")
    return manifest


def write_all(out_root: str | Path, cfg: Mapping, seed: int) -> dict[str, dict]:
    """All three stand-ins under `out_root/{ntu60,ntu120,pku1}` (the embedded default's raw inputs); NTU-120
    copies NTU-60's S001-S017 archive instead of generating it twice."""
    out_root = Path(out_root)
    return {"ntu60": write_ntu(out_root / "ntu60", "ntu60", cfg, seed),
            "ntu120": write_ntu(out_root / "ntu120", "ntu120", cfg, seed, reuse=out_root / "ntu60"),
            "pku1": write_pku(out_root / "pku1", cfg, seed)}


def bench_synth(out_root: str | Path, cfg: Mapping, seed: int = 0,
                datasets: Sequence[str] = ("ntu60", "ntu120", "pku1")) -> dict:
    """Write the stand-ins of `datasets` and measure: seconds, samples (clips) per second, bytes written, peak
    memory (the process's high-water mark, so run one dataset per process to see each one's)."""
    import resource
    import time

    out_root = Path(out_root)
    report = {}
    for ds in datasets:
        t0 = time.perf_counter()
        if ds == "pku1":
            m = write_pku(out_root / ds, cfg, seed)
            n = m["counts"]["clips"]
        else:
            reuse = out_root / "ntu60" if ds == "ntu120" and "ntu60" in datasets else None
            m = write_ntu(out_root / ds, ds, cfg, seed, reuse=reuse, keep_samples=False)
            n = m["counts"]["samples"]
        dt = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (out_root / ds).rglob("*") if p.is_file())
        report[ds] = {"seconds": round(dt, 2), "samples": n, "samples_per_s": round(n / dt, 1),
                      "bytes": size, "MB_per_s": round(size / dt / 1e6, 1), "counts": m["counts"]}
    report["size"] = synth_size(cfg)
    report["peak_rss_MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return report


if __name__ == "__main__":  # python -m star_repro.data.synth OUT_ROOT [SEED]: the generator's benchmark
    import json as _json

    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m star_repro.data.synth OUT_ROOT [SEED]  (writes the demo-sized stand-ins)")
    print(_json.dumps(bench_synth(sys.argv[1], DEMO_CFG, int(sys.argv[2]) if len(sys.argv) == 3 else 0), indent=2))
