"""Malformed variants of raw NTU and PKU-MMD inputs, for `test_fuzz_inputs.py`.

Each function takes the bytes of one valid file and returns `Variant`s: the damaged bytes and the 1-based line
an error must name (None where the damage has no line, e.g. an overflow that only centering reveals). The
tests make them from the real files in ../shared/data/real when present and, always, from files the project
writes itself (`synth_ntu_texts`, `synth_pku_raw`), so the classes are covered without ../shared too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ntu_fixtures import one_body_text, skeleton_text, standing_body

NTU_JOINT_LINE = 10  # 0-based: a joint line of frame 1's first body (frames, body count, info, joint count, joints)
PKU_LINE = 5  # 0-based line of a PKU skeleton file to damage
PKU_LABEL_ROW = 2  # 1-based label row (and line) to damage


@dataclass(frozen=True)
class Variant:
    kind: str
    data: bytes
    line: int | None
    scope: str = "file"  # "file": the whole input is rejected; "row": one PKU label row (its clip) only


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    eol = b"\r\n" if b"\r\n" in data else b"\n"
    lines = data.split(eol)
    while lines and lines[-1] == b"":
        lines.pop()
    return lines, eol


class _Editor:
    """Line and token edits of one text, keeping its line ends."""

    def __init__(self, data: bytes):
        self.data = data
        self.lines, self.eol = _split(data)

    def join(self, lines: list[bytes]) -> bytes:
        return self.eol.join(lines) + self.eol

    def line(self, i: int, new: bytes) -> bytes:
        lines = list(self.lines)
        lines[i] = new
        return self.join(lines)

    def token(self, i: int, j: int, new: bytes, sep: bytes = b" ") -> bytes:
        toks = self.lines[i].strip().split(sep)
        toks[j] = new
        return self.line(i, sep.join(toks))

    def shared(self, kinds: dict[str, int]) -> list[Variant]:
        """Encoding and line-end damage common to every text format: all are named on `kinds`' lines."""
        d = self.data
        made = {"empty": b"", "binary": bytes(range(256)) * 4, "utf8_bom": b"\xef\xbb\xbf" + d,
                "utf16": d.decode("ascii").encode("utf-16"),
                "cr_only": d.replace(b"\r\n", b"\r").replace(b"\n", b"\r"),
                "trailing_junk": self.join(self.lines + [b"junk 1 2"])}
        return [Variant(k, made[k], line) for k, line in kinds.items()]


def ntu_variants(data: bytes) -> list[Variant]:
    """At least 12 kinds of damage to one single-body NTU `.skeleton` text."""
    ed = _Editor(data)
    k = NTU_JOINT_LINE
    n1 = int(ed.lines[1])  # bodies in frame 1
    cut = ed.lines[k][:len(ed.lines[k]) // 2]
    split_first = ed.lines[k].split(b" ", 1)
    return ed.shared({"empty": 1, "binary": 1, "utf8_bom": 1, "utf16": 1, "cr_only": 1,
                      "trailing_junk": len(ed.lines) + 1}) + [
        Variant("truncated", ed.eol.join(ed.lines[:k] + [cut]), k + 1),
        Variant("split_number", ed.line(k, split_first[0][:3] + b" " + split_first[0][3:] + b" " + split_first[1]),
                k + 1),
        Variant("extra_value", ed.line(k, ed.lines[k] + b" 0.5"), k + 1),
        Variant("non_numeric", ed.token(k, 0, b"x0.25"), k + 1),
        Variant("nan", ed.token(k, 2, b"nan"), k + 1),
        Variant("body_count_disagrees", ed.line(1, b"%d" % (n1 + 1)), 2 + 27 * n1 + 1),
        Variant("frames_overstated", ed.line(0, b"%d" % (int(ed.lines[0]) + 1)), 1),
        Variant("joint_count", ed.line(3, b"24"), 4),
        Variant("float32_overflow", ed.token(k, 0, b"1e39"), k + 1),
        Variant("float64_overflow", ed.token(k, 1, b"1e400"), k + 1),
        Variant("float32_max_plus", ed.token(k, 1, b"3.4028236e38"), k + 1),
        # each value fits float32, but centering on joint 2 (x - origin) overflows
        Variant("centering_overflow", _Editor(ed.token(4, 0, b"3e38")).token(5, 0, b"-3e38"), None),
    ]


def pku_skeleton_variants(data: bytes) -> list[Variant]:
    """Kinds of damage to one PKU-MMD skeleton file (150 values per line); each rejects the whole video."""
    ed = _Editor(data)
    k = PKU_LINE
    last = ed.lines[-1]
    return ed.shared({"empty": 1, "binary": 1, "utf8_bom": 1, "cr_only": 1,
                      "trailing_junk": len(ed.lines) + 1}) + [
        Variant("truncated", ed.eol.join(ed.lines[:-1] + [last[:len(last) // 2]]), len(ed.lines)),
        Variant("missing_value", ed.line(k, b" ".join(ed.lines[k].split()[:-1])), k + 1),
        Variant("non_numeric", ed.token(k, 3, b"0.1x"), k + 1),
        Variant("float32_overflow", ed.token(k, 0, b"1e39"), k + 1),
        Variant("float64_overflow", ed.token(k, 4, b"-1e300"), k + 1),
    ]


def pku_label_variants(data: bytes) -> list[Variant]:
    """Kinds of damage to one PKU-MMD label file. Row kinds reject only the clip of row `PKU_LABEL_ROW`."""
    ed = _Editor(data)
    i = PKU_LABEL_ROW - 1
    action, start, end, conf = ed.lines[i].strip().split(b",")[:4]
    row = lambda *fields: ed.line(i, b",".join(fields))  # noqa: E731
    return [
        Variant("empty", b"", 1),
        Variant("non_utf8", ed.line(i, ed.lines[i] + b"\xe9"), PKU_LABEL_ROW),
        Variant("reversed", row(action, end, start, conf), PKU_LABEL_ROW, "row"),
        Variant("non_integer", row(action, start + b".5", end, conf), PKU_LABEL_ROW, "row"),
        Variant("action_range", row(b"52", start, end, conf), PKU_LABEL_ROW, "row"),
        Variant("columns", row(action, start, end), PKU_LABEL_ROW, "row"),
        Variant("past_end", row(action, start, b"999999", conf), PKU_LABEL_ROW, "row"),
    ]


# ------------------------------------------------------------------------------------------ project-made inputs

def synth_ntu_texts() -> dict[str, bytes]:
    """Three single-body samples and one two-body sample in the official text layout (ntu_fixtures)."""
    out = {}
    for i, name in enumerate(("S001C001P001R001A001", "S001C002P002R001A003", "S002C001P003R002A007")):
        out[name] = one_body_text(20 + 5 * i, seed=i, eol="\r\n" if i % 2 else "\n")[0].encode("ascii")
    rng = np.random.default_rng(7)
    tracks = {"72057594037931101": (list(range(30)), standing_body(rng, 30, x0=-0.5)),
              "72057594037931102": (list(range(30)), standing_body(rng, 30, x0=0.6))}
    out["S001C001P004R001A050"] = skeleton_text(30, tracks).encode("ascii")
    return out


def _pku_video(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    body = np.zeros((n, 25, 3))
    body[:, :, 0] = rng.uniform(-0.3, 0.3, 25)
    body[:, :, 1] = np.linspace(-0.8, 0.8, 25)
    body[:, :, 2] = 2.5
    body[:, 8, 0] += 0.2
    body[:, 4, 0] -= 0.2
    body += 0.05 * np.sin(np.arange(n) * 0.2)[:, None, None] + rng.normal(0, 0.01, (n, 25, 3))
    rows = np.zeros((n, 150))
    rows[:, :75] = body.reshape(n, 75)
    rows[n // 2:, 75:] = (body[n // 2:] + [1.0, 0, 0.3]).reshape(-1, 75)
    return rows


def synth_pku_raw(root: Path) -> Path:
    """A PKU-MMD Phase I raw folder: two 90-frame videos with three labelled actions each, and split files."""
    (root / "skeletons").mkdir(parents=True)
    (root / "labels").mkdir()
    for seed, video in enumerate(("0002-L", "0003-M")):
        rows = _pku_video(90, seed)
        (root / "skeletons" / f"{video}.txt").write_text(
            "".join(" ".join("%f" % v for v in r) + " \n" for r in rows), encoding="ascii")
        (root / "labels" / f"{video}.txt").write_text(f"{3 + seed},1,25,1\n{10 + seed},30,60,2\n{20},61,90,1\n",
                                                      encoding="ascii")
    for name, (train, test) in {"cross-subject.txt": ("0002-L", "0003-M"),
                                "cross-view.txt": ("0003-M", "0002-L")}.items():
        (root / name).write_text(f"Training videos: \n{train}, 0009-R\nTesting videos: \n{test}\n", encoding="ascii")
    return root
