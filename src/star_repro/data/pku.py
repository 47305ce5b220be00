"""PKU-MMD Phase I: raw skeleton and label readers, clip cutting and the AimCLR-style processing (STAR_SPEC §2).

The published pipeline runs in four scripts; this module reproduces their arithmetic in one pass per clip:

1. `pku_part1_skeleton.py`: cut each labelled action out of its long video (`cut_clips`). The script writes the
   clip as a synthetic NTU-style text with `str(float)` of the float64 values and reads it back; that round
   trip is exact, and the reader stores float32, so the clip is simply the float32 cast of the loaded values.
   Person 2 is written only in frames where the sum of its 75 values is non-zero (kept here the same way).
2. `pku_part1_gendata.py`: clips longer than 300 frames keep the centred window [(n-300)//2, +300); the clip
   goes into a zero-padded (3, 300, 25, 2) float32 tensor.
3. `preprocess_pku.py` (`PKUMotionProcessor`, 'relative', 64 frames, 'resize', y_rotation): `process_clip`.
4. `pku_concat.py`: the npz layout, see `star_repro.data.prepare.export_npz`.

Clip order: the published gendata lists clips in `os.listdir` order (file-system dependent); here clips are
sorted by name (video id, view, class, row), which is deterministic.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from star_repro.data.fastparse import (describe_bad_byte, describe_bad_number, first_bad_char, float32_overflow,
                                       line_at_offset, parse_floats, reject_non_text, tokenize)
from star_repro.errors import InputFormatError
from star_repro.io import decode_text

NUM_JOINTS = 25
ROW_VALUES = 150  # 2 persons x 25 joints x (x, y, z)
NUM_CLASSES = 51
WINDOW = 300
T_OUT = 64
VIEWS = ("L", "M", "R")  # view codes 1, 2, 3 in clip names
VIDEO_RE = re.compile(r"^(\d{4})-([LMR])$")
# Clips the published Phase I gendata skips (its samples_with_missing_skeletons.txt; STAR_SPEC §2.3).
PKU1_IGNORED_CLIPS = ("F043V001C001L021", "F089V001C023L001", "F089V002C023L001", "F089V003C023L001")


@dataclass
class LabelRow:
    row: int  # 1-based row index among the label file's actions (the L of the clip name)
    line: int  # 1-based line in the file, for messages
    action: int  # 1..51
    start: int  # 1-based first frame
    end: int  # 1-based last frame, inclusive
    confidence: int


@dataclass
class PkuClip:
    name: str  # F{fff}V{vvv}C{ccc}L{lll}
    video: str  # e.g. 0005-L
    row: int
    action: int  # 1-based
    start: int
    end: int
    data: np.ndarray  # (3, 300, 25, 2) float32, zero-padded: the published gendata tensor

    @property
    def label(self) -> int:
        return self.action - 1

    @property
    def frames(self) -> int:
        """Frames of the clip (header count), before the 300-frame window."""
        return self.end - self.start + 1


def parse_video_name(video: str) -> tuple[int, int]:
    """`0005-L` -> (5, 1): the video id and the view code (L=1, M=2, R=3)."""
    m = VIDEO_RE.match(video)
    if not m:
        raise ValueError(f"{video!r} is not a PKU-MMD Phase I video name (expected like 0005-L)")
    return int(m.group(1)), VIEWS.index(m.group(2)) + 1


def clip_name(video: str, action: int | None, row: int) -> str:
    """F{video}V{view}C{action}L{row}; a row whose action id did not parse gets `C???` (rejected rows only)."""
    vid, view = parse_video_name(video)
    act = "???" if action is None else f"{action:03d}"
    return f"F{vid:03d}V{view:03d}C{act}L{row:03d}"


def read_skeleton_file(data: bytes | str, source: str) -> np.ndarray:
    """A long-video skeleton file -> (frames, 150) float64, exactly what `np.loadtxt` gives.

    Every non-blank line must hold 150 decimal numbers; blank lines are only allowed at the end. Values must
    fit float32 (the clips store float32). Non-ASCII bytes and CR-only line ends are named as such.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    tok = tokenize(data)
    if tok.n_tokens == 0:
        reject_non_text(tok, source)
        raise InputFormatError(source, 1, f"empty skeleton file: expected one line of {ROW_VALUES} numbers per frame")
    counts = tok.counts()
    n_eff = int(np.flatnonzero(counts)[-1]) + 1
    wrong = np.flatnonzero(counts[:n_eff] != ROW_VALUES)
    if len(wrong):
        reject_non_text(tok, source)
        i = int(wrong[0])
        what = "a blank line" if counts[i] == 0 else f"{int(counts[i])} values"
        raise InputFormatError(source, i + 1, f"expected {ROW_VALUES} values (2 persons x 25 joints x xyz), "
                                              f"found {what}")
    bad_at = first_bad_char(tok)
    if bad_at >= 0:
        raise InputFormatError(source, line_at_offset(tok, bad_at), describe_bad_byte(tok, bad_at))
    vals, bad = parse_floats(tok, np.arange(n_eff * ROW_VALUES))
    bad |= float32_overflow(vals)
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        raise InputFormatError(source, tok.line_of(t), describe_bad_number(tok.text(t)))
    return vals.reshape(n_eff, ROW_VALUES)


@dataclass
class LabelRowError:
    """A label row that cannot become a clip: its row number (kept, so the other clips keep their names), the
    action id when it parsed, and the error naming file and line."""

    row: int
    action: int | None
    error: InputFormatError


def parse_label_rows(data: bytes | str, source: str) -> tuple[list[LabelRow], list[LabelRowError]]:
    """Every non-blank line of a label file is one action row, numbered in order (the L of the clip name).

    Bad rows (field count, non-integers, action outside 1..51, start < 1 or end < start) come back as
    `LabelRowError` in place of a row and keep their number, so that under `on_error: skip` one bad row
    rejects only its own clip. The text must be ASCII (an error names the file, line and encoding).
    """
    if isinstance(data, bytes):
        data = decode_text(data, source, "ascii")
    rows: list[LabelRow] = []
    errors: list[LabelRowError] = []
    n = 0
    for line_no, line in enumerate(data.splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        n += 1
        fields = [f.strip() for f in text.split(",")]
        if len(fields) == 5 and fields[-1] == "":
            fields = fields[:4]
        try:
            if len(fields) != 4:
                raise InputFormatError(source, line_no, f"expected 4 comma-separated integers "
                                                        f"(action,start,end,confidence), found {len(fields)} fields")
            try:
                action, start, end, conf = (int(f) for f in fields)
            except ValueError:
                raise InputFormatError(source, line_no, f"expected integers action,start,end,confidence, "
                                                        f"found {text!r}") from None
            if not 1 <= action <= NUM_CLASSES:
                raise InputFormatError(source, line_no, f"action id must be 1..{NUM_CLASSES}, found {action}")
            if start < 1 or end < start:
                raise InputFormatError(source, line_no, f"frames must satisfy 1 <= start <= end, found "
                                                        f"start={start} end={end}")
        except InputFormatError as exc:
            head = fields[0]  # isascii: isdigit alone passes "²", which int() refuses
            action = int(head) if head.isascii() and head.isdigit() and 1 <= int(head) <= NUM_CLASSES else None
            errors.append(LabelRowError(row=n, action=action, error=exc))
            continue
        rows.append(LabelRow(row=n, line=line_no, action=action, start=start, end=end, confidence=conf))
    return rows, errors


def read_label_file(data: bytes | str, source: str, num_frames: int | None = None) -> list[LabelRow]:
    """`action,start,end,confidence` per line (1-based inclusive frames), raising at the first bad row; with
    `num_frames`, every row must end within the skeleton file (see `check_label_range` to check rows one by
    one instead). An empty file is an error: a video with a label file but no actions is never silent."""
    rows, errors = parse_label_rows(data, source)
    if errors:
        raise errors[0].error
    if not rows:
        raise InputFormatError(source, 1, "empty label file: expected one row action,start,end,confidence "
                                          "per labelled action")
    if num_frames is not None:
        for row in rows:
            check_label_range(row, num_frames, source)
    return rows


def check_label_range(row: LabelRow, num_frames: int, source: str) -> None:
    if row.end > num_frames:
        raise InputFormatError(source, row.line, f"label row {row.row} ends at frame {row.end} but the skeleton "
                                                 f"file has only {num_frames} frames")


def cut_clip(skeleton: np.ndarray, video: str, row: LabelRow) -> PkuClip:
    """One labelled action -> the published (3, 300, 25, 2) float32 tensor (window and person-2 rule)."""
    seg = skeleton[row.start - 1:row.end]
    n = len(seg)
    p1 = seg[:, :75]
    p2 = seg[:, 75:]
    two = p2.sum(axis=1) != 0  # the writer emits person 2 only when its 75 values do not sum to 0
    if n > WINDOW:
        s0 = (n - WINDOW) // 2
        p1, p2, two = p1[s0:s0 + WINDOW], p2[s0:s0 + WINDOW], two[s0:s0 + WINDOW]
    t = len(p1)
    data = np.zeros((3, WINDOW, NUM_JOINTS, 2), np.float32)
    data[:, :t, :, 0] = p1.reshape(t, NUM_JOINTS, 3).transpose(2, 0, 1)
    p2 = np.where(two[:, None], p2, 0.0)
    data[:, :t, :, 1] = p2.reshape(t, NUM_JOINTS, 3).transpose(2, 0, 1)
    return PkuClip(name=clip_name(video, row.action, row.row), video=video, row=row.row, action=row.action,
                   start=row.start, end=row.end, data=data)


def cut_clips(skeleton: np.ndarray, labels: list[LabelRow], video: str, label_source: str,
              ignore: tuple[str, ...] | set[str] = ()) -> list[PkuClip]:
    clips = []
    for row in labels:
        if clip_name(video, row.action, row.row) in ignore:
            continue
        check_label_range(row, len(skeleton), label_source)
        clips.append(cut_clip(skeleton, video, row))
    return clips


# --------------------------------------------------------------------------------------------------- §2.4

def clip_length(data: np.ndarray) -> int:
    """Frames where person 1's joint 1 is non-zero (|x|+|y|+|z| in float32), on the un-centred tensor."""
    return int((np.abs(data[:, :, 0, 0]).sum(axis=0) != 0).sum())


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Fused multiply-add of float32 arrays, rounded once to float32 (NumPy has no FMA ufunc).

    a*b is exact in float64 (24 + 24 bits); the float64 sum is exact up to one rounding whose error TwoSum
    recovers. Rounding that float64 sum to float32 differs from the single rounding of the exact value only
    when the sum lands exactly halfway between two float32 numbers while the error is non-zero; then the sum
    is nudged one float64 step towards the exact value first. (Results in float32's subnormal range are not
    treated specially: skeleton coordinates never get there.)
    """
    p = np.asarray(a, np.float32).astype(np.float64) * np.asarray(b, np.float32).astype(np.float64)
    c64 = np.asarray(c, np.float32).astype(np.float64)
    s = p + c64
    bb = s - p
    err = (p - (s - bb)) + (c64 - bb)
    tie = ((s.view(np.int64) & ((1 << 29) - 1)) == (1 << 28)) & (err != 0)
    if tie.any():
        s = np.where(tie, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def resize_linear(x: np.ndarray, out_len: int = T_OUT) -> np.ndarray:
    """Resize axis 0 of a float32 array exactly as `cv2.resize(..., interpolation=INTER_LINEAR)` does.

    Source row of output row d: (d + 0.5) * (1 / (out/in)) - 0.5, computed in double and rounded to float;
    sy = floor, f = the float remainder; both source rows clamped to [0, in-1] with the weights unchanged
    (an edge row is mixed with itself). OpenCV's float path then evaluates fma(row1 - row0, f, row0) with one
    rounding (its SIMD kernels fuse the multiply-add); for a one-row source it evaluates
    row0 * (1 - f) + row1 * f with separately rounded products. No anti-aliasing on downsampling. Checked
    bit for bit against opencv-python-headless for lengths 1..400.
    """
    x = np.asarray(x, np.float32)
    n = x.shape[0]
    fy = ((np.arange(out_len, dtype=np.float64) + 0.5) * (1.0 / (out_len / n)) - 0.5).astype(np.float32)
    sy = np.floor(fy)
    frac = (fy - sy).astype(np.float32)
    sy = sy.astype(np.int64)
    r0 = np.clip(sy, 0, n - 1)
    r1 = np.clip(sy + 1, 0, n - 1)
    shape = (out_len,) + (1,) * (x.ndim - 1)
    a, b = x[r0], x[r1]
    f = np.broadcast_to(frac.reshape(shape), a.shape)
    if n == 1:
        w0 = (np.float32(1) - frac).reshape(shape)
        return (a * w0 + b * f).astype(np.float32)
    return fma32(b - a, f, a)


ARCCOS_MODES = ("native", "exact")


def _arccos32(x: np.ndarray, mode: str) -> np.ndarray:
    """float32 arccos as the published code computes it (`np.arccos` on float32), or correctly rounded.

    "native" is NumPy's own float32 arccos on the running CPU: glibc's acosf on most machines, Intel SVML on
    CPUs with AVX-512 (NumPy dispatches there), which differ by 1-2 units in the last place in about a third
    of inputs. The published PKU-MMD outputs (and the golden files) come from an AVX-512 machine. "exact" is
    the correctly rounded value, the same on every machine.
    """
    if callable(mode):  # tests substitute another float32 arccos
        return np.asarray(mode(x), np.float32)
    if mode == "native":
        return np.arccos(x)
    if mode == "exact":
        return np.arccos(x.astype(np.float64)).astype(np.float32)
    raise ValueError(f"arccos mode must be one of {ARCCOS_MODES}, got {mode!r}")


def _y_rotate(person: np.ndarray, arccos: str = "native") -> np.ndarray:
    """`parallel_skeleton` for one person, (3, T, 25) float32 -> rotated (3, T, 25) float64.

    Float32 throughout for the angle (vector, norm, arccos, degrees, the one-per-sequence sign from the sum of
    z, radians, cos/sin), float64 for the 3x3 product; the caller stores float32. A zero person gets -90
    degrees and stays zero.
    """
    vec = person[:, :, 8] - person[:, :, 4]  # right shoulder - left shoulder, (3, T) float32
    vec[1, :] = 0
    norm = np.sqrt(np.sum(np.square(vec), axis=0))
    cos_arg = vec[0, :] / (norm + np.float32(0.0001))
    thetas = _arccos32(cos_arg, arccos) * np.float32(180 / np.pi)
    if np.sum(vec[2, :]) >= 0:
        thetas = -thetas
    rad = thetas * np.float32(np.pi) / np.float32(180)
    c = np.cos(rad).astype(np.float64)
    s = np.sin(rad).astype(np.float64)
    x = person[0].astype(np.float64)
    y = person[1].astype(np.float64)
    z = person[2].astype(np.float64)
    # R_y = [[c, 0, -s], [0, 1, 0], [s, 0, c]] per frame; float32 x float32 products are exact in float64,
    # so the order in which a BLAS dot would add them cannot change the rounded sum.
    out = np.empty((3,) + person.shape[1:], np.float64)
    out[0] = c[:, None] * x + (-s)[:, None] * z
    out[1] = y
    out[2] = s[:, None] * x + c[:, None] * z
    return out


def process_clip(data: np.ndarray, arccos: str = "native") -> np.ndarray:
    """(3, T, 25, 2) float32 clip tensor -> (3, 64, 25, 2) float32, as `PKUMotionProcessor` (STAR_SPEC §2.4).

    Length from the raw data; per-frame centering on joint 21 (both persons, float32); per person, frames
    [0, length) resized to 64; per person and frame, rotation about y so the shoulders lie along +x.
    `arccos` picks the float32 arccos (see `_arccos32`); "native" is what the published code does.
    """
    data = np.asarray(data, np.float32)
    length = clip_length(data)
    if length == 0:
        raise ValueError("person 1 is absent in every frame of the clip (joint 1 is zero); nothing to resize")
    c, t, v, m = data.shape
    centred = data - data[:, :, 20, :].reshape(c, t, 1, m)
    out = np.zeros((c, T_OUT, v, m), np.float32)
    for i in range(m):
        img = centred[:, :length, :, i].transpose(1, 2, 0)  # (length, 25, 3)
        out[:, :, :, i] = resize_linear(img).transpose(2, 0, 1)
    for i in range(m):
        out[:, :, :, i] = _y_rotate(out[:, :, :, i], arccos)
    return out
