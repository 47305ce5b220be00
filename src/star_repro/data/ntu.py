"""NTU RGB+D 60/120 `.skeleton` reader, denoiser and aligner: the CTR-GCN procedure (STAR_SPEC §1), bit for bit.

Three steps, named after the published scripts they reproduce:

- `parse_skeleton` (`get_raw_skes_data.py`): one file -> bodies keyed by body ID, in first-appearance order;
  `parse_skeletons` does the same for a batch of files in shared vectorised passes (what `prepare` uses).
- `denoise` (`get_raw_denoised_data.py`): pick and place at most two actors -> (T, 75) or (T, 150) float32.
- `align` (`seq_transformation.py`): centre on actor 1's spine-mid joint, zero-pad to 300 frames.

Quirks of the published code that are reproduced on purpose (each is named where it happens):
  * a body's `interval` is "first valid frame, then +1 per appearance", even if the body vanishes and returns;
  * only bodies of multi-body files get a `motion` value, in float32 (`np.var` of the float32 joints);
  * the spread filter compares in float64 (NumPy 1.x promotion of `0.8 * float32_scalar`);
  * the motion thresholds (0.089925, 2) exist in the published script but are never applied;
  * `remove_missing_frames` runs only on the multi-body path and drops rows whose *sum* is 0;
  * actor 2's slot starts as the virtual interval [0, 0] and `min(start, 0)` keeps its start at 0;
  * centering uses one origin per sequence (first frame where actor 1 is non-zero), then re-zeroes missing
    frames of each actor only for two-actor arrays;
  * NTU-60 pads a single actor's second slot with zeros, NTU-120 duplicates the actor.

Where the published parser silently accepts damage (it reads only the first tokens of each line), this reader
rejects it with the file and line; see `parse_skeleton`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from star_repro.data.fastparse import (Tokens, bad_char_offsets, describe_bad_byte, describe_bad_number,
                                       first_bad_char, float32_overflow, line_at_offset, parse_floats, parse_uints,
                                       reject_non_text, tokenize)
from star_repro.errors import InputFormatError, StarReproError

NUM_JOINTS = 25

# The official skeleton release: archive name -> (setups, labels 0-based) it holds. NTU-60 is the first archive,
# NTU-120 both. Read by `prepare` (what to look for) and `synth` (what to write); one place for the fact.
NTU_ARCHIVE_CONTENTS = {
    "nturgbd_skeletons_s001_to_s017.zip": (range(1, 18), range(0, 60)),
    "nturgbd_skeletons_s018_to_s032.zip": (range(18, 33), range(60, 120)),
}
NTU_NUM_CLASSES = {"ntu60": 60, "ntu120": 120}
NTU_ARCHIVES = {ds: tuple(a for a, (_, labels) in NTU_ARCHIVE_CONTENTS.items() if labels.start < n)
                for ds, n in NTU_NUM_CLASSES.items()}
# (last setup, last action) 1-based of each dataset: what its archives hold
NTU_SCOPE = {ds: (NTU_ARCHIVE_CONTENTS[arch[-1]][0].stop - 1, NTU_NUM_CLASSES[ds]) for ds, arch in NTU_ARCHIVES.items()}
# The real release's layout (what paper-size synthetic stand-ins copy): in each archive every class is performed
# by the same number of (setup, subject) pairs, twice each (R001, R002), and seen by 3 cameras; `missing`: its
# samples on the official missing-skeleton list. 60 x 158 x 2 x 3 = 56,880 samples (NTU-60, 302 missing);
# with 60 x 160 x 2 x 3 more, 114,480 (NTU-120, 535 missing). Subjects: 40 in NTU-60, 106 in NTU-120.
NTU_REPLICATIONS = 2
NTU_CAMERAS = 3
NTU_ARCHIVE_LAYOUT = {
    "nturgbd_skeletons_s001_to_s017.zip": {"subjects": range(1, 41), "pairs": 158, "missing": 302},
    "nturgbd_skeletons_s018_to_s032.zip": {"subjects": range(41, 107), "pairs": 160, "missing": 233},
}
NTU_FOLDER = "nturgb+d_skeletons"  # what the official archives extract to
NTU_MISSING_LISTS = {"ntu60": "NTU_RGBD_samples_with_missing_skeletons.txt",
                     "ntu120": "NTU_RGBD120_samples_with_missing_skeletons.txt"}
INFO_VALUES = 10
JOINT_VALUES = 12
LINES_PER_BODY = 2 + NUM_JOINTS  # info line, joint-count line, 25 joint lines

NOISE_LEN_THRES = 11
NOISE_SPR_THRES1 = 0.8
NOISE_SPR_THRES2 = 0.69754
# Defined by the published script but never used there (its call is commented out); kept for the record only.
NOISE_MOT_THRES_LO = 0.089925
NOISE_MOT_THRES_HI = 2

MAX_FRAMES = 300
SAMPLE_NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")


class MissingSkeletonError(StarReproError):
    """A file with no body in any frame: the sample is *missing* (official missing lists), not corrupt."""

    def __init__(self, source: str, message: str):
        self.file = str(source)
        super().__init__(f"{source}: {message}")


@dataclass
class BodyTrack:
    joints: np.ndarray  # (n, 25, 3) float32, one row per appearance
    interval: list[int]  # valid-frame indices, published "+1 per appearance" rule
    motion: float  # sum of per-axis variances (float32 math); nan for single-body files (never computed there)


@dataclass
class RawSkeleton:
    name: str
    num_frames: int  # frames in the header minus frames with 0 bodies
    dropped_frames: list[int]  # 0-based file frame indices with 0 bodies
    bodies: dict[str, BodyTrack]  # first-appearance order


@dataclass
class DenoiseResult:
    joints: np.ndarray  # (T, 75) or (T, 150) float32, before centering
    actors: int
    kept: list[str]  # body IDs placed in the array, actor 1 first
    removed: dict[str, str]  # body ID -> "length" | "spread" | "overlap"
    removed_frames: list[int] = field(default_factory=list)  # rows dropped by remove_missing_frames


def parse_sample_name(name: str) -> dict[str, int]:
    """`SsssCcccPpppRrrrAaaa` (optionally with `.skeleton`) -> setup, camera, subject, replication, action."""
    stem = name[:-len(".skeleton")] if name.endswith(".skeleton") else name
    m = SAMPLE_NAME_RE.match(stem)
    if not m:
        raise StarReproError(f"{name!r} is not an NTU sample name: expected SsssCcccPpppRrrrAaaa with 3-digit "
                             "setup, camera, performer, replication and action ids (e.g. S001C002P003R002A013)")
    s, c, p, r, a = (int(g) for g in m.groups())
    return {"setup": s, "camera": c, "subject": p, "replication": r, "action": a}


# --------------------------------------------------------------------------------------------------- parsing

def parse_skeleton(data: bytes | str, source: str) -> RawSkeleton:
    """Parse one `.skeleton` text (LF or CRLF) into bodies, validating the whole structure.

    Rejected with `InputFormatError(source, line, reason)`: empty file; a header, body-count or joint-count
    line that is not one non-negative integer; a body info line without 10 values or a joint line without 12
    values (the published parser would silently take the first 3); a joint count other than 25; a token that
    is not a decimal number (joint x, y, z and every count are parsed strictly; the remaining columns, which
    the pipeline never reads, are checked for number characters); a joint coordinate that does not fit
    float32 (it would be stored as inf); bytes that are not ASCII text (binary files, byte-order marks) and
    CR-only line ends, named as such; a frame declaring more or fewer bodies than
    its lines hold; a file that ends inside a frame (truncated) or before the declared number of frames; text
    after the last frame; a body ID appearing twice in one frame. A file whose frames all have 0 bodies raises
    `MissingSkeletonError`.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    source = str(source)
    name = _sample_stem(source)
    tok = tokenize(data)
    if tok.n_tokens == 0:
        reject_non_text(tok, source)
        raise InputFormatError(source, 1, "empty file: expected the number of frames on line 1")
    counts = tok.counts()
    n_eff = int(np.flatnonzero(counts)[-1]) + 1  # trailing blank lines are fine
    if counts[0] != 1:
        reject_non_text(tok, source)
        raise InputFormatError(source, 1, f"expected the number of frames (one integer), found {counts[0]} values")
    # Every integer the structure needs, parsed in one pass: the first token of each 1-value line (frame
    # count, body counts, joint counts) and of each 10-value line (body IDs).
    ones = np.flatnonzero(counts[:n_eff] == 1)
    tens = np.flatnonzero(counts[:n_eff] == INFO_VALUES)
    ints, ints_bad = parse_uints(tok, tok.line_tok[np.concatenate((ones, tens))])
    int_at = np.zeros(n_eff, np.int64)
    bad_at_line = np.ones(n_eff, bool)
    int_at[ones], int_at[tens] = ints[:len(ones)], ints[len(ones):]
    bad_at_line[ones], bad_at_line[tens] = ints_bad[:len(ones)], ints_bad[len(ones):]
    if bad_at_line[0]:
        reject_non_text(tok, source)
        raise InputFormatError(source, 1, f"expected the number of frames (an integer), found {tok.text(0)!r}")
    n_frames = int(int_at[0])
    # Body-count lines: 1-value lines not right after a body info line (those are joint counts).
    cand = counts[:n_eff] == 1
    cand[1:] &= counts[:n_eff - 1] != INFO_VALUES
    cand[0] = False
    bl = np.flatnonzero(cand)
    bvals = int_at[bl]
    ok = len(bl) == n_frames and not bad_at_line[bl].any()
    if ok:
        block = 1 + LINES_PER_BODY * bvals
        expected_bl = 1 + np.concatenate(([0], np.cumsum(block)[:-1])) if n_frames else np.zeros(0, np.int64)
        ok = np.array_equal(bl, expected_bl) and 1 + int(block.sum()) == n_eff
    if ok:
        n_bodies = int(bvals.sum())
        occ_frame = np.repeat(np.arange(n_frames), bvals)
        slot = np.arange(n_bodies) - np.repeat(np.cumsum(bvals) - bvals, bvals)
        info = bl[occ_frame] + 1 + LINES_PER_BODY * slot
        expected = np.full(n_eff, JOINT_VALUES, np.int64)
        expected[0] = 1
        expected[bl] = 1
        expected[info] = INFO_VALUES
        expected[info + 1] = 1
        ok = np.array_equal(expected, counts[:n_eff])
    if not ok:
        reject_non_text(tok, source)
        _explain_structure(tok, counts, n_eff, n_frames, source)
        raise InputFormatError(source, None, "inconsistent frame structure")  # _explain_structure always raises

    bad_at = first_bad_char(tok)
    if bad_at >= 0:
        raise InputFormatError(source, line_at_offset(tok, bad_at), describe_bad_byte(tok, bad_at))
    id_tok = tok.line_tok[info]
    ids_num, ids_bad = int_at[info], bad_at_line[info]
    wrong = np.flatnonzero(bad_at_line[info + 1] | (int_at[info + 1] != NUM_JOINTS))
    if len(wrong):
        i = int(wrong[0])
        raise InputFormatError(source, int(info[i]) + 2, f"joint count must be {NUM_JOINTS}, found "
                                                         f"{tok.text(int(tok.line_tok[info[i] + 1]))!r}")
    joint_lines = info[:, None] + 2 + np.arange(NUM_JOINTS)
    xyz_tok = tok.line_tok[joint_lines][..., None] + np.arange(3)
    xyz, xyz_bad = parse_floats(tok, xyz_tok.ravel())
    xyz_bad |= float32_overflow(xyz)
    if xyz_bad.any():
        t = int(xyz_tok.ravel()[np.flatnonzero(xyz_bad)[0]])
        raise InputFormatError(source, tok.line_of(t), f"joint coordinate: {describe_bad_number(tok.text(t))}")
    xyz = xyz.astype(np.float32).reshape(n_bodies, NUM_JOINTS, 3)

    return _assemble(tok, source, name, n_frames, bvals, occ_frame, info, id_tok, ids_num, ids_bad, xyz)


def _assemble(tok: Tokens, source: str, name: str, n_frames: int, bvals: np.ndarray, occ_frame: np.ndarray,
              info: np.ndarray, id_tok: np.ndarray, ids_num: np.ndarray, ids_bad: np.ndarray,
              xyz: np.ndarray) -> RawSkeleton:
    """Group the body appearances of one validated file into tracks (first-appearance order).

    `occ_frame`: file frame of each appearance; `info`: its info line (0-based, for messages); `id_tok`:
    token index of its body ID; `xyz`: (appearances, 25, 3) float32.
    """
    n_bodies = len(occ_frame)
    dropped = np.flatnonzero(bvals == 0)
    num_frames = n_frames - len(dropped)
    if n_bodies == 0:
        raise MissingSkeletonError(source, f"no body in any of its {n_frames} frames (a missing sample)")
    valid_index = np.cumsum(bvals > 0) - 1
    occ_valid = valid_index[occ_frame]
    if not ids_bad.any() and (ids_num == ids_num[0]).all():  # one body throughout: the common case
        first, inverse = np.zeros(1, np.int64), np.zeros(n_bodies, np.int64)
    elif ids_bad.any():
        keys = np.array([tok.text(int(t)) for t in id_tok], dtype=object)
        _, first, inverse = np.unique(keys.astype(str), return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(ids_num, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    bodies: dict[str, BodyTrack] = {}
    multi = len(order) > 1
    for u in order:
        occ = np.flatnonzero(inverse == u) if multi else np.arange(n_bodies)
        frames = occ_frame[occ]
        dup = np.flatnonzero(np.diff(frames) == 0)
        body_id = tok.text(int(id_tok[occ[0]]))
        if len(dup):
            o = int(occ[dup[0] + 1])
            raise InputFormatError(source, int(info[o]) + 1, f"body {body_id} appears twice in frame "
                                                             f"{int(occ_frame[o]) + 1}")
        joints = xyz[occ]
        start = int(occ_valid[occ[0]])
        # Published rule: interval grows by +1 from its last entry on every appearance (assumed contiguous).
        interval = list(range(start, start + len(occ)))
        motion = float(np.sum(np.var(joints.reshape(-1, 3), axis=0))) if multi else float("nan")
        bodies[body_id] = BodyTrack(joints=joints, interval=interval, motion=motion)
    return RawSkeleton(name=name, num_frames=num_frames, dropped_frames=dropped.tolist(), bodies=bodies)


def parse_skeletons(items: list[tuple[bytes, str]]) -> list[RawSkeleton | StarReproError]:
    """Parse many `.skeleton` texts at once: same results as `parse_skeleton` on each, errors returned in place.

    The texts are joined (each closed by a newline) and tokenised, validated and converted in single NumPy
    passes, so the per-call cost of those passes is paid once per batch instead of once per file. A file that
    fails any check is parsed again on its own, which raises the precise error (returned, not raised).
    """
    k = len(items)
    if k == 0:
        return []
    datas = [d.encode("utf-8") if isinstance(d, str) else d for d, _ in items]
    sources = [str(src) for _, src in items]
    tok = tokenize([x for d in datas for x in (d, b"\n")])
    counts = tok.counts()
    n_lines = len(counts)
    sizes = np.array([len(d) + 1 for d in datas], np.int64)
    ends = np.cumsum(sizes)  # byte offset (text coordinates) just past each file's separator
    nl = tok.newlines
    lines_per_file = np.diff(np.concatenate(([0], np.searchsorted(nl, ends - 1, side="right"))))
    l0 = np.concatenate(([0], np.cumsum(lines_per_file)[:-1]))
    file_of_line = np.repeat(np.arange(k), lines_per_file)
    ok = np.ones(k, bool)
    # effective end: one past the last non-blank line of each file
    nonblank = np.flatnonzero(counts)
    fnb = file_of_line[nonblank]
    pos = np.searchsorted(fnb, np.arange(k), side="right") - 1
    has_any = (pos >= 0) & (fnb[np.maximum(pos, 0)] == np.arange(k))
    ok &= has_any
    leff = np.where(has_any, nonblank[np.maximum(pos, 0)] + 1, l0 + 1)
    ok &= counts[l0] == 1
    ones = np.flatnonzero(counts == 1)
    tens = np.flatnonzero(counts == INFO_VALUES)
    ints, ints_bad = parse_uints(tok, tok.line_tok[np.concatenate((ones, tens))])
    int_at = np.zeros(n_lines, np.int64)
    bad_at_line = np.ones(n_lines, bool)
    int_at[ones], int_at[tens] = ints[:len(ones)], ints[len(ones):]
    bad_at_line[ones], bad_at_line[tens] = ints_bad[:len(ones)], ints_bad[len(ones):]
    ok &= ~bad_at_line[l0]
    n_frames = int_at[l0]
    ok &= n_frames > 0
    cand = counts == 1
    cand[1:] &= counts[:-1] != INFO_VALUES
    cand[l0] = False
    bl = np.flatnonzero(cand)
    fbl = file_of_line[bl]
    ok &= np.bincount(fbl, minlength=k) == n_frames
    ok &= np.bincount(fbl, weights=bad_at_line[bl], minlength=k) == 0
    keep = ok[fbl]
    bl, fbl = bl[keep], fbl[keep]
    bvals = np.where(bad_at_line[bl], 0, int_at[bl])
    block = 1 + LINES_PER_BODY * bvals
    excl = np.cumsum(block) - block
    first_bl = np.searchsorted(fbl, np.arange(k))
    base = excl[np.minimum(first_bl, max(len(bl) - 1, 0))] if len(bl) else np.zeros(k, np.int64)
    expected_bl = l0[fbl] + 1 + excl - base[fbl]
    ok &= np.bincount(fbl, weights=bl != expected_bl, minlength=k) == 0
    ok &= l0 + 1 + np.bincount(fbl, weights=block, minlength=k).astype(np.int64) == leff
    keep = ok[fbl]
    bl, fbl, bvals = bl[keep], fbl[keep], bvals[keep]
    occ_bl = np.repeat(np.arange(len(bl)), bvals)
    slot = np.arange(len(occ_bl)) - np.repeat(np.cumsum(bvals) - bvals, bvals)
    info = bl[occ_bl] + 1 + LINES_PER_BODY * slot
    line_idx = np.arange(n_lines)
    expected = np.where((line_idx < leff[file_of_line]) & ok[file_of_line], JOINT_VALUES, 0)
    expected[l0] = 1
    expected[bl] = 1
    expected[info] = INFO_VALUES
    expected[info + 1] = 1
    wrong_lines = np.flatnonzero((expected != counts) & ok[file_of_line])
    ok[file_of_line[wrong_lines]] = False
    bad_bytes = bad_char_offsets(tok)
    if len(bad_bytes):
        ok[np.minimum(np.searchsorted(ends, bad_bytes, side="right"), k - 1)] = False
    focc = file_of_line[info]
    ok[focc[bad_at_line[info + 1] | (int_at[info + 1] != NUM_JOINTS)]] = False
    keep = ok[focc]
    info, focc, occ_bl = info[keep], focc[keep], occ_bl[keep]
    joint_lines = info[:, None] + 2 + np.arange(NUM_JOINTS)
    xyz_tok = tok.line_tok[joint_lines][..., None] + np.arange(3)
    xyz, xyz_bad = parse_floats(tok, xyz_tok.ravel())
    xyz_bad |= float32_overflow(xyz)
    if xyz_bad.any():
        xyz[xyz_bad] = 0  # those files are parsed again alone, which names the value; no overflow in the cast
        ok[focc[np.unique(np.flatnonzero(xyz_bad) // (3 * NUM_JOINTS))]] = False
    xyz = xyz.astype(np.float32).reshape(-1, NUM_JOINTS, 3)
    bl_start = np.searchsorted(fbl, np.arange(k))
    bl_stop = np.searchsorted(fbl, np.arange(k), side="right")
    occ_start = np.searchsorted(focc, np.arange(k))
    occ_stop = np.searchsorted(focc, np.arange(k), side="right")
    results: list[RawSkeleton | StarReproError] = []
    for f in range(k):
        try:
            if not ok[f]:
                results.append(parse_skeleton(datas[f], sources[f]))
                continue
            b0, b1, o0, o1 = int(bl_start[f]), int(bl_stop[f]), int(occ_start[f]), int(occ_stop[f])
            id_tok = tok.line_tok[info[o0:o1]]
            try:
                results.append(_assemble(tok, sources[f], _sample_stem(sources[f]), int(n_frames[f]), bvals[b0:b1],
                                         occ_bl[o0:o1] - b0, info[o0:o1] - l0[f], id_tok, int_at[info[o0:o1]],
                                         bad_at_line[info[o0:o1]], xyz[o0:o1]))
            except InputFormatError:
                results.append(parse_skeleton(datas[f], sources[f]))
        except StarReproError as exc:
            results.append(exc)
    return results


def _sample_stem(source: str) -> str:
    base = source.replace("\\", "/").rsplit("/", 1)[-1]
    return base[:-len(".skeleton")] if base.endswith(".skeleton") else base


def _explain_structure(tok: Tokens, counts: np.ndarray, n_eff: int, n_frames: int, source: str) -> None:
    """Walk the file frame by frame and raise the first structural problem (only runs on bad files)."""

    def need(line: int, what: str) -> None:
        if line >= n_eff:
            raise InputFormatError(source, n_eff, f"file is truncated: it ends before {what}")

    line = 1
    for f in range(n_frames):
        if line >= n_eff:
            raise InputFormatError(source, 1, f"the header declares {n_frames} frames but the file ends after "
                                              f"{f} (last line {n_eff})")
        c = int(counts[line])
        if c != 1:
            raise InputFormatError(source, line + 1, f"expected the body count of frame {f + 1} (one integer), "
                                                     f"found {c} values")
        b, bad = parse_uints(tok, tok.line_tok[line:line + 1])
        if bad[0]:
            raise InputFormatError(source, line + 1, f"body count of frame {f + 1} must be a non-negative "
                                                     f"integer, found {tok.text(int(tok.line_tok[line]))!r}")
        n_b = int(b[0])
        count_line = line + 1
        line += 1
        for k in range(n_b):
            what = f"body {k + 1} of {n_b} of frame {f + 1}"
            need(line, f"the info line of {what} (frame body count on line {count_line})")
            c = int(counts[line])
            if c != INFO_VALUES:
                hint = (f"; line {count_line} declares {n_b} bodies but the lines hold fewer"
                        if c in (0, 1) else "")
                raise InputFormatError(source, line + 1, f"expected the info line of {what} ({INFO_VALUES} "
                                                         f"values), found {c} values{hint}")
            line += 1
            need(line, f"the joint count of {what}")
            if counts[line] != 1:
                raise InputFormatError(source, line + 1, f"expected the joint count of {what} (one integer), "
                                                         f"found {int(counts[line])} values")
            line += 1
            for j in range(NUM_JOINTS):
                need(line, f"joint {j + 1} of {what}")
                c = int(counts[line])
                if c != JOINT_VALUES:
                    if line == n_eff - 1 and c < JOINT_VALUES and not tok.ends_with_newline:
                        raise InputFormatError(source, line + 1, f"file is truncated inside joint {j + 1} of "
                                                                 f"{what}: {c} of {JOINT_VALUES} values")
                    raise InputFormatError(source, line + 1, f"joint {j + 1} of {what}: expected {JOINT_VALUES} "
                                                             f"values (x y z depthX depthY colorX colorY "
                                                             f"orientationW..Z trackingState), found {c}")
                line += 1
    if line < n_eff:
        raise InputFormatError(source, line + 1, f"unexpected text after the {n_frames} frames the header "
                                                 "declares (the frame count understates the file?)")


# --------------------------------------------------------------------------------------------------- denoising

def _spread_valid_frames(joints: np.ndarray) -> np.ndarray:
    """Frames whose x-extent is at most 0.8 x the y-extent (3-D coordinates).

    The published comparison `(x.max() - x.min()) <= 0.8 * (y.max() - y.min())` ran under NumPy 1.x, where a
    Python float times a float32 scalar is float64; both sides are compared in float64 here.
    """
    x = joints[:, :, 0]
    y = joints[:, :, 1]
    xr = (x.max(axis=1) - x.min(axis=1)).astype(np.float64)
    yr = (y.max(axis=1) - y.min(axis=1)).astype(np.float64)
    return np.flatnonzero(xr <= NOISE_SPR_THRES1 * yr)


def _place(joints: np.ndarray, track: BodyTrack, cols: slice) -> None:
    s, e = track.interval[0], track.interval[-1]
    joints[s:e + 1, cols] = track.joints.reshape(-1, 75)


def denoise(raw: RawSkeleton) -> DenoiseResult:
    """Select and place the actors of one sample (STAR_SPEC §1.3).

    Single-body files are written as they are (no filter, no frame removal). Multi-body files: length filter
    (<= 11 appearances), spread filter (noise ratio >= 0.69754, else motion lowered to the valid frames'),
    bodies sorted by motion (descending, stable), actor placement, then `remove_missing_frames`. The motion
    thresholds of the published script are dead code there and are not applied here either.
    """
    bodies = raw.bodies
    if not bodies:
        raise MissingSkeletonError(raw.name, "no bodies to denoise")
    if len(bodies) == 1:
        (body_id, track), = bodies.items()
        joints = np.zeros((raw.num_frames, 75), np.float32)
        _place(joints, track, slice(0, 75))
        return DenoiseResult(joints=joints, actors=1, kept=[body_id], removed={})

    removed: dict[str, str] = {}
    remaining = {}
    for body_id, track in bodies.items():
        if len(track.interval) <= NOISE_LEN_THRES:
            removed[body_id] = "length"
        else:
            remaining[body_id] = track
    motion = {b: t.motion for b, t in remaining.items()}
    if len(remaining) > 1:
        for body_id in list(remaining):
            if len(remaining) == 1:
                break
            track = remaining[body_id]
            valid = _spread_valid_frames(track.joints)
            n = len(track.interval)
            n_noise = n - len(valid)
            if n_noise == 0:
                continue
            if n_noise / float(n) >= NOISE_SPR_THRES2:
                del remaining[body_id]
                removed[body_id] = "spread"
            else:
                var = np.sum(np.var(track.joints[valid].reshape(-1, 3), axis=0))
                motion[body_id] = min(motion[body_id], float(var))
    if not remaining:
        raise InputFormatError(raw.name, None, f"every body ({len(bodies)}) is tracked for at most "
                                               f"{NOISE_LEN_THRES} frames; the published denoiser has no actor "
                                               "to keep")
    kept: list[str] = []
    if len(remaining) == 1:
        (body_id, track), = remaining.items()
        joints = np.zeros((raw.num_frames, 75), np.float32)
        _place(joints, track, slice(0, 75))
        kept.append(body_id)
    else:
        order = sorted(remaining, key=lambda b: motion[b], reverse=True)  # stable, like the published sort
        joints = np.zeros((raw.num_frames, 150), np.float32)
        first = remaining[order[0]]
        _place(joints, first, slice(0, 75))
        kept.append(order[0])
        s1, e1 = first.interval[0], first.interval[-1]
        s2, e2 = 0, 0  # published: actor 2 starts as the virtual interval [0, 0]
        for body_id in order[1:]:
            track = remaining[body_id]
            s, e = track.interval[0], track.interval[-1]
            if min(e1, e) - max(s1, s) <= 0:  # no overlap with actor 1 (a shared boundary frame counts as none)
                _place(joints, track, slice(0, 75))
                s1, e1 = min(s, s1), max(e, e1)
                kept.append(body_id)
            elif min(e2, e) - max(s2, s) <= 0:
                _place(joints, track, slice(75, 150))
                s2, e2 = min(s, s2), max(e, e2)  # min(s, 0): actor 2's start stays 0 (published quirk)
                kept.append(body_id)
            else:
                removed[body_id] = "overlap"
    # remove_missing_frames: multi-body path only; a row is missing when its float32 sum is exactly 0
    keep_rows = joints.sum(axis=1) != 0
    removed_frames = np.flatnonzero(~keep_rows).tolist()
    if removed_frames:
        joints = joints[keep_rows]
    return DenoiseResult(joints=joints, actors=joints.shape[1] // 75, kept=kept, removed=removed,
                         removed_frames=removed_frames)


# --------------------------------------------------------------------------------------------------- alignment

def align(joints: np.ndarray, dataset: str, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """Centre on actor 1's joint 2 (1-based) in its first non-zero frame, re-zero missing frames, pad to 300.

    One origin for the whole sequence, no rotation or scaling (`seq_translation` + `align_frames`).
    Single-actor samples: NTU-60 leaves columns 75:150 zero, NTU-120 copies the actor there.
    """
    if dataset not in ("ntu60", "ntu120"):
        raise StarReproError(f"align: dataset must be 'ntu60' or 'ntu120', got {dataset!r}")
    joints = np.array(joints, dtype=np.float32, copy=True)
    if joints.ndim != 2 or joints.shape[1] not in (75, 150):
        raise StarReproError(f"align: expected a (T, 75) or (T, 150) array, got shape {joints.shape}")
    t = joints.shape[0]
    if t > max_frames:
        raise StarReproError(f"align: {t} frames exceed the {max_frames}-frame tensor of the published pipeline")
    two = joints.shape[1] == 150
    nonzero = np.flatnonzero(np.any(joints[:, :75] != 0, axis=1))
    if len(nonzero) == 0:
        raise StarReproError("align: actor 1 is zero in every frame; nothing to centre on")
    origin = joints[nonzero[0], 3:6].copy()
    if two:
        miss1 = joints[:, :75].sum(axis=1) == 0
        miss2 = joints[:, 75:].sum(axis=1) == 0
    joints -= np.tile(origin, joints.shape[1] // 3)
    if two:
        joints[miss1, :75] = 0
        joints[miss2, 75:] = 0
    out = np.zeros((max_frames, 150), np.float32)
    if two:
        out[:t] = joints
    else:
        out[:t, :75] = joints
        if dataset == "ntu120":
            out[:t, 75:] = joints
    return out
