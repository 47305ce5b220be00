"""Hand-built NTU `.skeleton` texts for reader and denoiser tests (the official line layout, tiny sizes)."""
from __future__ import annotations

import numpy as np

INFO_TAIL = "0 1 1 1 1 0 0.02764709 0.05745083 2"  # the 9 body-info values after the body ID


def standing_body(rng: np.random.Generator, n_frames: int, x0: float = 0.0, amplitude: float = 0.05) -> np.ndarray:
    """(n, 25, 3) joints of an upright body (tall in y, narrow in x) with some motion: passes the spread test."""
    base = np.zeros((25, 3))
    base[:, 0] = x0 + rng.uniform(-0.2, 0.2, 25)
    base[:, 1] = np.linspace(-0.8, 0.8, 25)
    base[:, 2] = 3.0 + rng.uniform(-0.1, 0.1, 25)
    t = np.arange(n_frames)[:, None, None]
    wobble = amplitude * np.sin(0.3 * t + rng.uniform(0, 6, (1, 25, 3)))
    return (base[None] + wobble).astype(np.float32)


def lying_body(rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """Joints wide in x and flat in y: every frame fails the spread test (x-extent > 0.8 y-extent)."""
    base = np.zeros((25, 3))
    base[:, 0] = np.linspace(-1.0, 1.0, 25)
    base[:, 1] = rng.uniform(-0.1, 0.1, 25)
    base[:, 2] = 3.5
    t = np.arange(n_frames)[:, None, None]
    return (base[None] + 0.01 * np.cos(0.2 * t + np.zeros((1, 25, 3)))).astype(np.float32)


def fmt(v: float) -> str:
    """Kinect-style text of a float32 (7 significant digits); `float32(text)` gives back the same value."""
    f = np.float32(v)
    for digits in (7, 8, 9):
        text = "%.*g" % (digits, f)
        if np.float32(text) == f:
            return text
    return repr(float(f))


def joint_line(xyz) -> str:
    x, y, z = (fmt(v) for v in xyz)
    return f"{x} {y} {z} 270.1 180.2 1000.5 500.25 0.1 0.2 0.3 0.4 2"


def skeleton_text(n_frames: int, tracks: dict[str, tuple[list[int], np.ndarray]], eol: str = "\r\n",
                  dropped: tuple[int, ...] = ()) -> str:
    """`tracks`: body ID -> (frame indices where it appears, (len, 25, 3) joints). Bodies are written in dict
    order within each frame. `dropped` frames get a body count of 0 (no body lines)."""
    lines = [str(n_frames)]
    for f in range(n_frames):
        present = [] if f in dropped else [(bid, fr.index(f), j) for bid, (fr, j) in tracks.items() if f in fr]
        lines.append(str(len(present)))
        for bid, k, joints in present:
            lines.append(f"{bid} {INFO_TAIL}")
            lines.append("25")
            lines.extend(joint_line(j) for j in joints[k])
    return eol.join(lines) + eol


def one_body_text(n_frames: int = 3, seed: int = 0, eol: str = "\r\n") -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    joints = standing_body(rng, n_frames)
    return skeleton_text(n_frames, {"72057594037931101": (list(range(n_frames)), joints)}, eol=eol), joints
