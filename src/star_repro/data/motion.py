"""Skeleton model and body-part motion primitives for the synthetic datasets.

A class's motion is a *script*: for each actor, for each of the six parts (head, hand, arm, hip, leg, foot), a
list of primitives (`Prim`) — "reach the mouth", "nod", "bend the knees" — with a time window and parameters.
Primitives are shared between classes, so a model that learns what a part does in known classes meets the same
part-level motions again in unknown ones (the premise of zero-shot transfer through part descriptions).

The renderer turns a script into Kinect v2 joint trajectories (25 joints, STAR_SPEC §4.1) of bodies with the
proportions of a given `Body`. It works in a *scene frame* in metres: x = the first actor's right when facing
the camera at 0°, y = up (floor at 0), z = toward that camera. Every body part is placed by kinematics with
fixed bone lengths: root and torso angles, head angles, leg joint angles, and arm inverse kinematics toward
targets anchored on the body (mouth, ear, pocket, ...) or on the partner (chest, back, ...). Mapping the scene to
a camera (view angle, distance, height) is the dataset writer's job (`star_repro.data.synth`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from star_repro.errors import StarReproError

PARTS: tuple[str, ...] = ("head", "hand", "arm", "hip", "leg", "foot")
SIDES: tuple[str, ...] = ("L", "R")
_SIGN = {"L": -1.0, "R": 1.0}
MODES = ("pulse", "to", "from", "hold", "ramp")
LAYOUTS = ("single", "facing", "side_by_side", "same_direction")

# Joint indices (0-based, Kinect v2 / NTU order).
SPINE_BASE, SPINE_MID, NECK, HEAD = 0, 1, 2, 3
SHOULDER = {"L": 4, "R": 8}
ELBOW = {"L": 5, "R": 9}
WRIST = {"L": 6, "R": 10}
HAND = {"L": 7, "R": 11}
HIP = {"L": 12, "R": 16}
KNEE = {"L": 13, "R": 17}
ANKLE = {"L": 14, "R": 18}
FOOT = {"L": 15, "R": 19}
SPINE_SHOULDER = 20
HAND_TIP = {"L": 21, "R": 23}
THUMB = {"L": 22, "R": 24}


# --------------------------------------------------------------------------------------------------- body model
@dataclass(frozen=True)
class Body:
    """Body proportions of one subject, as Kinect v2 places its joints (inside the body, so shorter than
    anatomical bones: upper arm ~0.22 m, thigh ~0.35 m, shoulder joints ~0.27 m apart, head centre ~1.45 m above
    the floor, measured on real NTU samples). `scale` 1.0 is an average adult; `girth` widens shoulders/hips."""

    scale: float = 1.0
    girth: float = 1.0

    def dims(self) -> dict[str, float]:
        s, g = self.scale, self.girth
        return {
            "spine1": 0.24 * s, "spine2": 0.22 * s, "neck": 0.06 * s, "head": 0.12 * s, "head_fwd": 0.04 * s,
            "shoulder_w": 0.135 * s * g, "shoulder_drop": 0.03 * s,
            "upper_arm": 0.22 * s, "forearm": 0.21 * s, "hand": 0.07 * s, "hand_tip": 0.07 * s, "thumb": 0.045 * s,
            "hip_w": 0.058 * s * g, "hip_drop": 0.04 * s, "thigh": 0.35 * s, "shin": 0.35 * s,
            "ankle_h": 0.08 * s, "foot_len": 0.11 * s, "foot_h": 0.03 * s,
        }


# --------------------------------------------------------------------------------------------------- scripts
@dataclass(frozen=True)
class Prim:
    """One primitive of one body part.

    name: a key of PRIMITIVES[part] for the part the primitive is listed under.
    side: "L", "R" or "both" for sided parts; for head/hip the direction of turns and leans ("L"/"R").
    t: time window as fractions of the action (0..1); mode: how the effect enters and leaves the window —
       pulse (rise, hold, fall), to (rise and stay), from (start on, fall), hold (on inside the window), ramp
       (linear 0 -> 1, for travel).
    amp: strength (1 = the primitive's nominal size); cycles: repetitions inside the window (0 = none).
    target/offset: arm targets — an anchor name and an offset in metres in the anchor's frame, x outward of the
       arm's side, y up, z forward. axis/axis2: oscillation about the target (sin / cos, metres).
    phase: cycle offset (fraction of a cycle) given to the left side when side is "both" (0.5 = alternating).
    """

    name: str
    side: str = "R"
    t: tuple[float, float] = (0.15, 0.85)
    amp: float = 1.0
    cycles: float = 0.0
    target: str = ""
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    phase: float = 0.0
    mode: str = "pulse"


@dataclass(frozen=True)
class ActorScript:
    """What each of the six parts of one actor does (every part present, in PARTS order)."""

    parts: tuple[tuple[str, tuple[Prim, ...]], ...]

    @classmethod
    def default(cls) -> "ActorScript":
        return cls(tuple((p, (Prim(DEFAULT_PRIM[p], side="both" if PRIMITIVES[p][DEFAULT_PRIM[p]].sided else "R"),))
                         for p in PARTS))

    def part(self, name: str) -> tuple[Prim, ...]:
        return dict(self.parts)[name]


@dataclass(frozen=True)
class Script:
    """A class's motion: one ActorScript per actor, how the actors stand, and how far apart (metres)."""

    actors: tuple[ActorScript, ...]
    layout: str = "single"
    distance: float = 0.9

    def key(self) -> str:
        """A canonical text of the script; two classes with the same key would be indistinguishable."""
        return repr(self)


# --------------------------------------------------------------------------------------------------- time shapes
def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass
class _Win:
    env: np.ndarray   # (T,) envelope in [0, 1]
    x: np.ndarray     # (T,) local time, 0 at window start, 1 at window end (clipped)


def _window(u: np.ndarray, t0: np.ndarray, t1: np.ndarray, mode: str) -> _Win:
    """Envelope of a primitive; t0/t1 are per-frame arrays (window jitter differs between performances)."""
    span = np.maximum(t1 - t0, 1e-3)
    x = np.clip((u - t0) / span, 0.0, 1.0)
    if mode == "pulse":
        r = 0.25
        env = _smooth(x / r) * _smooth((1.0 - x) / r)
        env = np.where((u < t0) | (u > t1), 0.0, env)
    elif mode == "to":
        env = _smooth(x)
    elif mode == "from":
        env = 1.0 - _smooth(x)
    elif mode == "hold":
        env = ((u >= t0) & (u <= t1)).astype(float)
    elif mode == "ramp":
        env = x.copy()
    else:
        raise StarReproError(f"primitive mode must be one of {MODES}, got {mode!r}")
    return _Win(env, x)


def _osc(w: _Win, p: Prim, phase: float = 0.0, fn=np.sin) -> np.ndarray:
    return fn(2.0 * np.pi * (p.cycles * w.x + phase))


def _reps(w: _Win, p: Prim, phase: float = 0.0) -> np.ndarray:
    """0 -> 1 -> 0 `cycles` times over the window (repeated approaches); 1 when cycles is 0."""
    if p.cycles <= 0:
        return np.ones_like(w.x)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * (p.cycles * w.x + phase))


def _bursts(w: _Win, p: Prim, phase: float = 0.0) -> np.ndarray:
    """Sharp pulses: quick rise and fall, `cycles` times (at least once)."""
    c = max(p.cycles, 1.0)
    s = np.clip(np.sin(np.pi * (c * w.x + phase)), 0.0, 1.0) ** 2
    return _smooth(_smooth(s))


# --------------------------------------------------------------------------------------------------- context
class _Ctx:
    """Channels of one actor while primitives are applied (angles in radians, lengths in metres).

    Several performances of one script are rendered together: their frames are concatenated, so `T` is the
    total frame count and body dimensions (`d`) and the amplitude factor (`amp`) are per-frame arrays.
    """

    def __init__(self, T: int, dims: dict[str, np.ndarray], amp_scale: np.ndarray):
        self.T = T
        self.d = dims
        self.amp = amp_scale
        self.ch: dict[str, np.ndarray] = {}
        self.targets: list[tuple[str, str, np.ndarray, np.ndarray]] = []  # side, anchor, offset (T,3), weight (T,)

    def add(self, name: str, values: np.ndarray) -> None:
        if name not in self.ch:
            self.ch[name] = np.zeros(self.T)
        self.ch[name] = self.ch[name] + values

    def get(self, name: str) -> np.ndarray:
        return self.ch.get(name, np.zeros(self.T))


@dataclass(frozen=True)
class Primitive:
    part: str
    sided: bool
    apply: Callable[["_Ctx", Prim, _Win, str, float], None]  # ctx, prim, window, side, phase
    doc: str


PRIMITIVES: dict[str, dict[str, Primitive]] = {part: {} for part in PARTS}  # part -> name -> primitive
DEFAULT_PRIM = {"head": "still", "hand": "relax", "arm": "rest", "hip": "still", "leg": "stand", "foot": "flat"}


def _prim(name: str, part: str, sided: bool, doc: str):
    def deco(fn):
        if name in PRIMITIVES[part]:
            raise ValueError(f"duplicate {part} primitive {name!r}")
        PRIMITIVES[part][name] = Primitive(part, sided, fn, doc)
        return fn
    return deco


def _sgn(side: str) -> float:
    return _SIGN.get(side, 1.0)


# ---- head (channels hpitch: + nods down, hyaw: + turns right, hroll: + tilts right)
@_prim("still", "head", False, "the head stays level and faces forward")
def _head_still(c, p, w, side, ph):
    pass


@_prim("nod", "head", False, "the head dips forward and comes back up, `cycles` times")
def _nod(c, p, w, side, ph):
    c.add("hpitch", 0.45 * p.amp * c.amp * w.env * _reps(w, p))


@_prim("shake", "head", False, "the head turns left and right repeatedly")
def _shake(c, p, w, side, ph):
    c.add("hyaw", 0.55 * p.amp * c.amp * w.env * _osc(w, replace(p, cycles=max(p.cycles, 1.0))))


@_prim("look_down", "head", False, "the head bends down (toward the hands, the floor, an object)")
def _look_down(c, p, w, side, ph):
    c.add("hpitch", 0.45 * p.amp * c.amp * w.env * _reps(w, p))


@_prim("tilt_back", "head", False, "the head tips back, chin up")
def _tilt_back(c, p, w, side, ph):
    c.add("hpitch", -0.45 * p.amp * c.amp * w.env * _reps(w, p))


@_prim("turn", "head", False, "the head turns to one side (toward a partner or a target)")
def _head_turn(c, p, w, side, ph):
    shape = _osc(w, p) if p.cycles > 0 else 1.0
    c.add("hyaw", _sgn(side) * 0.6 * p.amp * c.amp * w.env * shape)


@_prim("tilt_side", "head", False, "the head leans toward one shoulder")
def _tilt_side(c, p, w, side, ph):
    shape = _osc(w, p) if p.cycles > 0 else 1.0
    c.add("hroll", _sgn(side) * 0.35 * p.amp * c.amp * w.env * shape)


@_prim("jerk", "head", False, "the head jolts forward and down suddenly (sneeze, cough, retch)")
def _jerk(c, p, w, side, ph):
    c.add("hpitch", 0.5 * p.amp * c.amp * w.env * _bursts(w, p))


# ---- hand (grip 0 open .. 1 fist; wflex wrist flexion; wtwist forearm rotation; finger tip extension;
#      thumb -1 down .. +1 up; pinch thumb to fingertip; wiggle fingertip tremor)
@_prim("relax", "hand", True, "the hand hangs loose, fingers slightly curled")
def _relax(c, p, w, side, ph):
    c.add(f"grip_{side}", 0.2 * w.env)


@_prim("grip", "hand", True, "the fingers close around an object or into a fist (`cycles`: squeeze repeatedly)")
def _grip(c, p, w, side, ph):
    shape = _reps(w, p, ph) if p.cycles > 0 else 1.0
    c.add(f"grip_{side}", min(p.amp, 1.0) * w.env * shape)


@_prim("open", "hand", True, "the hand opens flat, fingers extended")
def _open(c, p, w, side, ph):
    c.add(f"grip_{side}", -0.25 * w.env)
    c.add(f"finger_{side}", 0.15 * p.amp * w.env)


@_prim("point", "hand", True, "the index finger extends, the other fingers curl")
def _point(c, p, w, side, ph):
    c.add(f"finger_{side}", 0.45 * p.amp * w.env)
    c.add(f"grip_{side}", 0.35 * w.env)
    c.add(f"pinch_{side}", 0.5 * w.env)


@_prim("wave", "hand", True, "the wrist flaps the open hand side to side")
def _wave(c, p, w, side, ph):
    c.add(f"wflex_{side}", 0.6 * p.amp * c.amp * w.env * _osc(w, replace(p, cycles=max(p.cycles, 1.0)), ph))


@_prim("flex", "hand", True, "the wrist bends the hand toward the palm (`cycles`: presses or taps)")
def _flex(c, p, w, side, ph):
    shape = _reps(w, p, ph) if p.cycles > 0 else 1.0
    c.add(f"wflex_{side}", 0.7 * p.amp * c.amp * w.env * shape)


@_prim("twist", "hand", True, "the forearm rotates the hand (turning a cap, a cube, a watch face)")
def _twist(c, p, w, side, ph):
    shape = _osc(w, p, ph) if p.cycles > 0 else 1.0
    c.add(f"wtwist_{side}", 1.2 * p.amp * c.amp * w.env * shape)


@_prim("wiggle", "hand", True, "the fingers make small quick movements (typing, tapping, flipping)")
def _wiggle(c, p, w, side, ph):
    c.add(f"wiggle_{side}", 0.025 * p.amp * c.amp * w.env * _osc(w, replace(p, cycles=max(p.cycles, 1.0)), ph))


@_prim("flick", "hand", True, "the fingers flick out quickly from a curled hand")
def _flick(c, p, w, side, ph):
    b = _bursts(w, p, ph)
    c.add(f"finger_{side}", 0.35 * p.amp * w.env * b)
    c.add(f"grip_{side}", 0.5 * w.env * (1.0 - b))


@_prim("thumb", "hand", True, "a fist with the thumb sticking out, pointing up (amp > 0) or down (amp < 0)")
def _thumb(c, p, w, side, ph):
    c.add(f"grip_{side}", 0.9 * w.env)
    c.add(f"thumb_{side}", float(np.clip(p.amp, -1.0, 1.0)) * w.env)


@_prim("pinch", "hand", True, "thumb and fingertips meet (holding something thin, an OK sign, clipping)")
def _pinch(c, p, w, side, ph):
    shape = _reps(w, p, ph) if p.cycles > 0 else 1.0
    c.add(f"pinch_{side}", p.amp * w.env * shape)
    c.add(f"grip_{side}", 0.3 * w.env * shape)


@_prim("victory", "hand", True, "two fingers raised in a V, thumb folded")
def _victory(c, p, w, side, ph):
    c.add(f"finger_{side}", 0.4 * p.amp * w.env)
    c.add(f"pinch_{side}", 0.6 * w.env)
    c.add(f"wtwist_{side}", 0.4 * w.env)


# ---- arm (targets for the wrist, inverse kinematics)
@_prim("rest", "arm", True, "the arm hangs at the side")
def _rest(c, p, w, side, ph):
    pass


def _offsets(c, p: Prim, w: _Win, ph: float, scale_osc: bool = True) -> np.ndarray:
    sc = c.d["scale"][:, None]
    off = np.asarray(p.offset, float)[None, :] * sc
    if any(p.axis) or any(p.axis2):
        k = (c.amp[:, None] if scale_osc else 1.0) * sc
        off = off + k * _osc(w, p, ph)[:, None] * np.asarray(p.axis, float)[None, :]
        off = off + k * _osc(w, p, ph, np.cos)[:, None] * np.asarray(p.axis2, float)[None, :]
    return off


@_prim("reach", "arm", True, "the hand moves to a target (a body point or the partner) and stays; with axis/axis2 "
                             "it strokes or circles there `cycles` times, without them it comes and goes `cycles` "
                             "times")
def _reach(c, p, w, side, ph):
    if not p.target:
        raise StarReproError("arm primitive 'reach' needs a target anchor")
    reps = 1.0 if (any(p.axis) or any(p.axis2)) else _reps(w, p, ph)
    c.targets.append((side, p.target, _offsets(c, p, w, ph), min(p.amp, 1.0) * w.env * reps))


@_prim("strike", "arm", True, "the arm drives fast to a target and back (punch, stab, hit), `cycles` times")
def _strike(c, p, w, side, ph):
    if not p.target:
        raise StarReproError("arm primitive 'strike' needs a target anchor")
    c.targets.append((side, p.target, _offsets(c, p, w, ph), min(p.amp, 1.0) * w.env * _bursts(w, p, ph)))


@_prim("swing", "arm", True, "the straight arm swings forward and back from the shoulder like a pendulum")
def _swing(c, p, w, side, ph):
    ang = 0.6 * p.amp * c.amp * _osc(w, replace(p, cycles=max(p.cycles, 1.0)), ph)
    L = 0.95 * (c.d["upper_arm"] + c.d["forearm"])
    off = np.stack([0.06 * c.d["scale"] + 0.0 * ang, -L * np.cos(ang), L * np.sin(ang)], axis=1)
    c.targets.append((side, "shoulder", off, w.env))


# ---- hip (root travel fwd/lat/dy in metres, yaw; torso pitch (+ bends forward), roll (+ leans right), twist)
@_prim("still", "hip", False, "the pelvis and trunk stay upright")
def _hip_still(c, p, w, side, ph):
    pass


@_prim("bend", "hip", False, "the trunk bends forward at the hips (`cycles`: repeatedly)")
def _bend(c, p, w, side, ph):
    c.add("pitch", 0.5 * p.amp * c.amp * w.env * _reps(w, p))


@_prim("lean_back", "hip", False, "the trunk leans backward")
def _lean_back(c, p, w, side, ph):
    c.add("pitch", -0.25 * p.amp * c.amp * w.env * _reps(w, p))


@_prim("lean_side", "hip", False, "the trunk leans toward one side (`cycles`: sways)")
def _lean_side(c, p, w, side, ph):
    shape = _osc(w, p) if p.cycles > 0 else 1.0
    c.add("roll", _sgn(side) * 0.25 * p.amp * c.amp * w.env * shape)


@_prim("twist", "hip", False, "the trunk rotates toward one side (`cycles`: back and forth)")
def _hip_twist(c, p, w, side, ph):
    shape = _osc(w, p) if p.cycles > 0 else 1.0
    c.add("twist", _sgn(side) * 0.45 * p.amp * c.amp * w.env * shape)


@_prim("sway", "hip", False, "the pelvis wobbles unevenly from side to side")
def _sway(c, p, w, side, ph):
    c.add("roll", 0.15 * p.amp * c.amp * w.env * _osc(w, p))
    c.add("lat", 0.08 * p.amp * c.amp * w.env * _osc(w, replace(p, cycles=p.cycles * 0.5), 0.25))


@_prim("move", "hip", False, "the body travels by `offset` (x right, z forward, metres) over the window")
def _move(c, p, w, side, ph):
    c.add("lat", p.offset[0] * p.amp * w.env)
    c.add("fwd", p.offset[2] * p.amp * w.env)


@_prim("bounce", "hip", False, "the pelvis bobs up and down in rhythm")
def _bounce(c, p, w, side, ph):
    c.add("dy", 0.03 * p.amp * c.amp * w.env * np.abs(_osc(w, replace(p, cycles=max(p.cycles, 1.0) / 2))))


@_prim("turn", "hip", False, "the whole body turns around its vertical axis (amp 1 = half a turn)")
def _hip_turn(c, p, w, side, ph):
    c.add("yaw", _sgn(side) * np.pi * p.amp * w.env)


@_prim("fall", "hip", False, "the trunk pitches over and the pelvis drops to the ground (amp < 0: backward)")
def _fall(c, p, w, side, ph):
    c.add("pitch", 1.25 * p.amp * w.env)
    c.add("dy", -0.42 * c.d["scale"] * abs(p.amp) * w.env)
    c.add("fwd", 0.25 * p.amp * w.env)


# ---- leg (per side: hipflex + swings the thigh forward, abd + outward, knee + bends)
@_prim("stand", "leg", True, "the leg stands straight and bears weight")
def _stand(c, p, w, side, ph):
    pass


@_prim("bend_knees", "leg", True, "hips and knees flex to lower the body (amp 1 = deep squat)")
def _bend_knees(c, p, w, side, ph):
    e = p.amp * w.env * _reps(w, p, ph)
    c.add(f"hipflex_{side}", 1.6 * e)
    c.add(f"knee_{side}", 2.3 * e)


@_prim("sit", "leg", True, "thigh horizontal, knee at a right angle, as on a chair")
def _sit(c, p, w, side, ph):
    c.add(f"hipflex_{side}", 1.55 * p.amp * w.env)
    c.add(f"knee_{side}", 1.55 * p.amp * w.env)


@_prim("step", "leg", True, "the leg lifts and steps, `cycles` steps (walking, marching, shuffling)")
def _step(c, p, w, side, ph):
    s = np.clip(_osc(w, replace(p, cycles=max(p.cycles, 1.0)), ph), 0.0, None)
    c.add(f"hipflex_{side}", 0.45 * p.amp * c.amp * w.env * s)
    c.add(f"knee_{side}", 0.75 * p.amp * c.amp * w.env * s)


@_prim("butt_kick", "leg", True, "the knee bends sharply so the heel comes up behind, the thigh staying down "
                                "(`cycles`: kicks again and again; none: held, as the free leg when hopping)")
def _butt_kick(c, p, w, side, ph):
    s = np.clip(_osc(w, p, ph), 0.0, None) if p.cycles > 0 else 1.0
    c.add(f"knee_{side}", 2.0 * p.amp * c.amp * w.env * s)
    c.add(f"hipflex_{side}", -0.1 * p.amp * w.env * s)


@_prim("kick", "leg", True, "the leg swings forward and up from the hip, knee snapping straight")
def _kick(c, p, w, side, ph):
    b = _bursts(w, p, ph)
    c.add(f"hipflex_{side}", 1.25 * p.amp * c.amp * w.env * b)
    c.add(f"knee_{side}", 1.2 * w.env * b * (1.0 - b))
    c.add(f"knee_{side}", 0.6 * w.env * (1.0 - b) * (w.x < 0.5))  # chamber before the snap


@_prim("side_kick", "leg", True, "the leg swings out sideways from the hip")
def _side_kick(c, p, w, side, ph):
    b = _bursts(w, p, ph)
    c.add(f"abd_{side}", 1.0 * p.amp * c.amp * w.env * b)
    c.add(f"hipflex_{side}", 0.25 * w.env * b)


@_prim("lift", "leg", True, "the leg is held up off the floor, knee bent")
def _lift(c, p, w, side, ph):
    c.add(f"hipflex_{side}", 0.55 * p.amp * w.env)
    c.add(f"knee_{side}", 1.3 * p.amp * w.env)


@_prim("step_forward", "leg", True, "the leg steps forward into a lunge stance")
def _step_forward(c, p, w, side, ph):
    c.add(f"hipflex_{side}", 0.45 * p.amp * w.env)
    c.add(f"knee_{side}", 0.3 * p.amp * w.env)


@_prim("step_back", "leg", True, "the leg steps backward, the hip extending")
def _step_back(c, p, w, side, ph):
    c.add(f"hipflex_{side}", -0.35 * p.amp * w.env)
    c.add(f"knee_{side}", 0.2 * p.amp * w.env)


@_prim("jump", "leg", True, "both knees bend then extend to leave the ground, `cycles` jumps (or hops)")
def _jump(c, p, w, side, ph):
    n = max(p.cycles, 1.0)
    x = (n * w.x) % 1.0
    crouch = (np.where(x < 0.35, np.sin(np.pi * x / 0.35), 0.0)
              + np.where(x > 0.85, np.sin(np.pi * (x - 0.85) / 0.3), 0.0))
    flight = np.where((x >= 0.35) & (x <= 0.85), np.sin(np.pi * (x - 0.35) / 0.5), 0.0)
    inside = (w.env > 0.05) & (w.x > 0) & (w.x < 1)
    c.add(f"hipflex_{side}", 0.5 * p.amp * crouch * inside)
    c.add(f"knee_{side}", 0.9 * p.amp * crouch * inside)
    if side != "L" or p.side != "both":  # both legs share one flight
        c.add("dy", 0.25 * c.d["scale"] * p.amp * c.amp * flight * inside)


@_prim("buckle", "leg", True, "the knees give way under the body")
def _buckle(c, p, w, side, ph):
    c.add(f"hipflex_{side}", 0.9 * p.amp * w.env)
    c.add(f"knee_{side}", 1.6 * p.amp * w.env)


@_prim("spread", "leg", True, "the legs stand apart, wider than the hips")
def _spread(c, p, w, side, ph):
    c.add(f"abd_{side}", 0.18 * p.amp * w.env)


@_prim("together", "leg", True, "the legs stand close together, at attention")
def _together(c, p, w, side, ph):
    c.add(f"abd_{side}", -0.05 * p.amp * w.env)


@_prim("stomp", "leg", True, "the leg lifts and stamps down in front")
def _stomp(c, p, w, side, ph):
    b = _bursts(w, p, ph)
    c.add(f"hipflex_{side}", 0.6 * p.amp * w.env * b)
    c.add(f"knee_{side}", 0.9 * p.amp * w.env * b)


@_prim("shift", "leg", True, "the weight shifts from leg to leg")
def _shift(c, p, w, side, ph):
    s = np.clip(_osc(w, replace(p, cycles=max(p.cycles, 1.0)), ph), 0.0, None)
    c.add(f"knee_{side}", 0.25 * p.amp * w.env * s)
    c.add(f"hipflex_{side}", 0.1 * p.amp * w.env * s)


# ---- foot (per side: ankle + points the toes down / lifts the heel, footyaw + turns the toes outward)
@_prim("flat", "foot", True, "the foot rests flat on the floor")
def _flat(c, p, w, side, ph):
    pass


@_prim("tiptoe", "foot", True, "the heel lifts, weight on the toes (`cycles`: repeatedly)")
def _tiptoe(c, p, w, side, ph):
    c.add(f"ankle_{side}", 0.6 * p.amp * w.env * _reps(w, p, ph))


@_prim("push_off", "foot", True, "the foot drives off the floor with a quick heel raise, `cycles` times")
def _push_off(c, p, w, side, ph):
    c.add(f"ankle_{side}", 0.7 * p.amp * w.env * _bursts(w, p, ph))


@_prim("point_toe", "foot", True, "the toes point away from the shin (kicking, a lifted foot)")
def _point_toe(c, p, w, side, ph):
    c.add(f"ankle_{side}", 0.6 * p.amp * w.env * _reps(w, p, ph))


@_prim("flex", "foot", True, "the toes pull up toward the shin")
def _foot_flex(c, p, w, side, ph):
    c.add(f"ankle_{side}", -0.4 * p.amp * w.env)


@_prim("tap", "foot", True, "the toes tap up and down on the floor")
def _tap(c, p, w, side, ph):
    c.add(f"ankle_{side}", -0.35 * p.amp * w.env * _reps(w, replace(p, cycles=max(p.cycles, 1.0)), ph))


@_prim("roll", "foot", True, "heel-to-toe rolls with each step")
def _roll(c, p, w, side, ph):
    c.add(f"ankle_{side}", 0.3 * p.amp * w.env * _osc(w, replace(p, cycles=max(p.cycles, 1.0)), ph))


@_prim("pivot", "foot", True, "the foot swivels on its ball (`cycles`: back and forth)")
def _pivot(c, p, w, side, ph):
    shape = _osc(w, p, ph) if p.cycles > 0 else 1.0
    c.add(f"footyaw_{side}", 0.5 * p.amp * w.env * shape)
    c.add(f"ankle_{side}", 0.25 * p.amp * w.env)


@_prim("wide", "foot", True, "the feet are planted wide apart, toes out")
def _wide(c, p, w, side, ph):
    c.add(f"abd_{side}", 0.1 * p.amp * w.env)
    c.add(f"footyaw_{side}", 0.3 * p.amp * w.env)


@_prim("slide", "foot", True, "the foot wriggles into or out of a shoe")
def _slide(c, p, w, side, ph):
    c.add(f"ankle_{side}", 0.3 * p.amp * w.env * _osc(w, replace(p, cycles=max(p.cycles, 1.0)), ph))
    c.add(f"footyaw_{side}", 0.15 * p.amp * w.env * _osc(w, replace(p, cycles=max(p.cycles, 1.0)), ph + 0.25))


# --------------------------------------------------------------------------------------------------- rotations
def _rx(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(a.shape + (3, 3))
    R[..., 0, 0] = 1.0
    R[..., 1, 1], R[..., 1, 2], R[..., 2, 1], R[..., 2, 2] = c, -s, s, c
    return R


def _ry(a: np.ndarray) -> np.ndarray:
    """Rotation about up; positive turns forward (+z) toward the right (+x)."""
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(a.shape + (3, 3))
    R[..., 1, 1] = 1.0
    R[..., 0, 0], R[..., 0, 2], R[..., 2, 0], R[..., 2, 2] = c, s, -s, c
    return R


def _rz(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(a.shape + (3, 3))
    R[..., 2, 2] = 1.0
    R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1] = c, -s, s, c
    return R


def _orient(yaw, pitch, roll) -> np.ndarray:
    """Frame turned by yaw, then bent forward by pitch, then leaned right by roll."""
    return _ry(yaw) @ _rx(pitch) @ _rz(-roll)


def _apply(R: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate per-frame vectors v (N, 3) by per-frame matrices R (N, 3, 3)."""
    return (R * v[:, None, :]).sum(axis=2)


def _v(x, y, z, n: int) -> np.ndarray:
    """Per-frame vectors (n, 3) from scalars or (n,) arrays."""
    out = np.empty((n, 3))
    out[:, 0], out[:, 1], out[:, 2] = x, y, z
    return out


def _norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt((v * v).sum(axis=-1))


def _unit(v: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    return v / np.maximum(_norm(v), eps)[..., None]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=-1)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                     a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)


# --------------------------------------------------------------------------------------------------- rendering
@dataclass
class Rendered:
    """Rendered actors: joints (A, T, 25, 3) in the scene frame; lean (A, T, 2) = (sideways, forward) as
    Kinect reports it; hand_state (A, T, 2) = (left, right) with Kinect codes 2 open, 3 closed, 4 lasso."""

    joints: np.ndarray
    lean: np.ndarray
    hand_state: np.ndarray


@dataclass(frozen=True)
class Variation:
    """Per-performance variability: overall amplitude, a monotone time warp, jitter of primitive windows,
    and slow idle sway, all drawn from `seed`. `Variation()` is the canonical rendering (tests, figures)."""

    amp: float = 1.0
    warp: float = 0.0
    window_jitter: float = 0.0
    sway: float = 0.0
    seed: int = 0

    @classmethod
    def draw(cls, rng: np.random.Generator, amp_range=(0.85, 1.15), warp=0.15, window_jitter=0.03,
             sway=1.0) -> "Variation":
        return cls(amp=float(rng.uniform(*amp_range)), warp=float(rng.uniform(-warp, warp)),
                   window_jitter=float(window_jitter), sway=float(sway), seed=int(rng.integers(2**31)))


def _layout(script: Script) -> list[tuple[np.ndarray, float]]:
    d = script.distance
    if script.layout == "single":
        return [(np.zeros(3), 0.0)]
    if script.layout == "facing":
        return [(np.array([-d / 2, 0, 0]), np.pi / 2), (np.array([d / 2, 0, 0]), -np.pi / 2)]
    if script.layout == "side_by_side":
        return [(np.array([-d / 2, 0, 0]), 0.0), (np.array([d / 2, 0, 0]), 0.0)]
    if script.layout == "same_direction":  # the first actor leads
        return [(np.array([d / 2, 0, 0]), np.pi / 2), (np.array([-d / 2, 0, 0]), np.pi / 2)]
    raise StarReproError(f"script layout must be one of {LAYOUTS}, got {script.layout!r}")


_SWAY = (("lat", 0.012), ("fwd", 0.012), ("pitch", 0.025), ("roll", 0.02), ("hpitch", 0.04), ("hyaw", 0.05),
         ("hroll", 0.03))


class _Batch:
    """Frames of several performances of one script, concatenated: per-frame time, performance index and
    per-performance random draws (each from the performance's own seed, so a performance renders the same
    whatever batch it is in)."""

    def __init__(self, script: Script, Ts: list[int], variations: list[Variation]):
        self.Ts = [int(t) for t in Ts]
        self.N = sum(self.Ts)
        self.perf = np.repeat(np.arange(len(Ts)), self.Ts)
        xs = [np.linspace(0.0, 1.0, T) for T in self.Ts]
        self.x = np.concatenate(xs)
        warp = np.array([v.warp for v in variations])[self.perf]
        self.u = self.x + warp * self.x * (1.0 - self.x)
        self.amp = np.array([v.amp for v in variations])[self.perf]
        n_prims = sum(len(prims) for a in script.actors for _, prims in a.parts)
        jit = np.zeros((len(Ts), max(n_prims, 1), 2))
        sway = np.zeros((len(Ts), len(script.actors), len(_SWAY), 4))
        for i, v in enumerate(variations):
            rng = np.random.default_rng(v.seed)
            if v.window_jitter:
                jit[i] = rng.uniform(-v.window_jitter, v.window_jitter, jit[i].shape)
            if v.sway:
                draw = rng.uniform(0.0, 1.0, sway[i].shape)
                draw[..., :2] = 0.3 + 1.2 * draw[..., :2]        # frequencies (cycles per action)
                draw[..., 2:] = 2 * np.pi * draw[..., 2:]        # phases
                sway[i] = draw
        self.jitter = jit
        self.sway = sway
        self.sway_k = np.array([v.sway for v in variations])[self.perf]

    def window(self, k: int, t: tuple[float, float], mode: str) -> _Win:
        t0 = np.clip(t[0] + self.jitter[:, k, 0], 0.0, 0.98)
        t1 = np.clip(t[1] + self.jitter[:, k, 1], t0 + 0.02, 1.0)
        return _window(self.u, t0[self.perf], t1[self.perf], mode)


def _apply_prims(ctx: _Ctx, actor: ActorScript, batch: _Batch, k0: int) -> int:
    k = k0
    for part, prims in actor.parts:
        for p in prims:
            spec = PRIMITIVES.get(part, {}).get(p.name)
            if spec is None:
                raise StarReproError(f"unknown {part} primitive {p.name!r}; expected one of "
                                     f"{sorted(PRIMITIVES.get(part, {}))}")
            w = batch.window(k, p.t, p.mode)
            k += 1
            if spec.sided:
                sides = SIDES if p.side == "both" else (p.side,)
                if any(s not in SIDES for s in sides):
                    raise StarReproError(f"{part} primitive {p.name!r}: side must be L, R or both, got {p.side!r}")
                for s in sides:
                    spec.apply(ctx, p, w, s, p.phase if (p.side == "both" and s == "L") else 0.0)
            else:
                spec.apply(ctx, p, w, p.side, 0.0)
    return k


class _Actor:
    """Phase 1 of rendering one actor: root, trunk, head and legs (everything the arms' anchors depend on)."""

    def __init__(self, actor: ActorScript, bodies: list[Body], a: int, batch: _Batch, base: np.ndarray,
                 base_yaw: float, k0: int):
        N = batch.N
        per = batch.perf
        dims = [b.dims() for b in bodies]
        d = {key: np.array([dd[key] for dd in dims])[per] for key in dims[0]}
        d["scale"] = np.array([b.scale for b in bodies])[per]
        self.d, self.N = d, N
        ctx = _Ctx(N, d, batch.amp)
        self.k_end = _apply_prims(ctx, actor, batch, k0)
        for j, (name, size) in enumerate(_SWAY):
            f1, f2, p1, p2 = (batch.sway[:, a, j, m][per] for m in range(4))
            ctx.add(name, batch.sway_k * size * 0.5 * (np.sin(2 * np.pi * f1 * batch.x + p1)
                                                      + np.sin(2 * np.pi * f2 * batch.x + p2)))
        self.ctx = ctx
        g = ctx.get
        J = np.zeros((N, 25, 3))
        self.Rp = _ry(base_yaw + g("yaw"))
        Rb = _ry(np.full(N, base_yaw))
        root = base[None, :] + _apply(Rb, _v(g("lat"), 0.0, g("fwd"), N))

        # legs, in the pelvis frame, relative to the spine base; the lowest contact point rests on the floor
        rel, needed = {}, {}
        for s in SIDES:
            sg = _SIGN[s]
            flex, abd, knee = g(f"hipflex_{s}"), g(f"abd_{s}"), g(f"knee_{s}")
            beta = flex - knee
            hip = _v(sg * d["hip_w"], -d["hip_drop"], 0.0, N)
            ca = np.cos(abd)
            knee_p = hip + d["thigh"][:, None] * _v(sg * np.sin(abd), -np.cos(flex) * ca, np.sin(flex) * ca, N)
            ankle_p = knee_p + d["shin"][:, None] * _v(sg * np.sin(abd), -np.cos(beta) * ca, np.sin(beta) * ca, N)
            rel[s] = (hip, knee_p, ankle_p, beta)
            needed[s] = d["ankle_h"] - ankle_p[:, 1]
        support = np.maximum(needed["L"], needed["R"])
        for s in SIDES:
            hip, knee_p, ankle_p, beta = rel[s]
            follow = np.clip((support - needed[s]) / (0.12 * d["scale"]), 0.0, 1.0)
            gamma = np.arctan2(0.05, 0.11) + g(f"ankle_{s}") - follow * beta
            fyaw = _SIGN[s] * g(f"footyaw_{s}")
            foot_p = ankle_p + d["foot_len"][:, None] * _v(np.sin(fyaw) * np.cos(gamma), -np.sin(gamma),
                                                           np.cos(fyaw) * np.cos(gamma), N)
            needed[s] = np.maximum(needed[s], d["foot_h"] - foot_p[:, 1])
            rel[s] = (hip, knee_p, ankle_p, foot_p)
        root[:, 1] = np.maximum(needed["L"], needed["R"]) + g("dy")
        self.root = root
        J[:, SPINE_BASE] = root
        for s in SIDES:
            hip, knee_p, ankle_p, foot_p = rel[s]
            J[:, HIP[s]] = root + _apply(self.Rp, hip)
            J[:, KNEE[s]] = root + _apply(self.Rp, knee_p)
            J[:, ANKLE[s]] = root + _apply(self.Rp, ankle_p)
            J[:, FOOT[s]] = root + _apply(self.Rp, foot_p)

        # trunk and head; the spine bends half at the spine-mid joint, the neck half the head's rotation
        pitch, roll, twist = g("pitch"), g("roll"), g("twist")
        self.Rt = self.Rp @ _orient(twist, pitch, roll)
        Rhalf = self.Rp @ _orient(0.5 * twist, 0.5 * pitch, 0.5 * roll)
        J[:, SPINE_MID] = root + _apply(Rhalf, _v(0.0, d["spine1"], 0.0, N))
        J[:, SPINE_SHOULDER] = J[:, SPINE_MID] + _apply(self.Rt, _v(0.0, d["spine2"], 0.0, N))
        hp, hy, hr = g("hpitch"), g("hyaw"), g("hroll")
        self.Rh = self.Rt @ _orient(hy, hp, hr)
        Rn = self.Rt @ _orient(0.5 * hy, 0.5 * hp, 0.5 * hr)
        J[:, NECK] = J[:, SPINE_SHOULDER] + _apply(Rn, _v(0.0, d["neck"], 0.0, N))
        J[:, HEAD] = J[:, NECK] + _apply(self.Rh, _v(0.0, d["head"], d["head_fwd"], N))
        for s in SIDES:
            J[:, SHOULDER[s]] = J[:, SPINE_SHOULDER] + _apply(
                self.Rt, _v(_SIGN[s] * d["shoulder_w"], -d["shoulder_drop"], -0.01, N))
        self.J = J
        self.lean = np.stack([np.sin(roll), np.sin(pitch)], axis=1)

    def own_anchor(self, name: str, side: str) -> tuple[np.ndarray, np.ndarray]:
        """A point on this actor: (position (N, 3), frame (N, 3, 3)) — arm offsets are given in that frame."""
        J, sg, N = self.J, _SIGN[side], self.N
        opp = "L" if side == "R" else "R"
        sc = self.d["scale"][:, None]

        def off(v):
            return np.asarray(v, float)[None, :] * sc

        head_pts = {"head": (0, 0, 0), "mouth": (0, -0.07, 0.07), "eyes": (0, 0.02, 0.08), "top": (0, 0.11, 0),
                    "ear": (sg * 0.085, 0.0, 0.0), "back_head": (0, 0.0, -0.1)}
        if name in head_pts:
            return J[:, HEAD] + _apply(self.Rh, off(head_pts[name])), self.Rh
        trunk = {"neck": (J[:, NECK], (0, -0.02, 0.06)), "nape": (J[:, NECK], (0, 0.0, -0.08)),
                 "chest": (0.6 * J[:, SPINE_SHOULDER] + 0.4 * J[:, SPINE_MID], (0, 0, 0.12)),
                 "stomach": (J[:, SPINE_MID], (0, -0.06, 0.14)), "back": (J[:, SPINE_MID], (0, 0.02, -0.16)),
                 "lower_back": (J[:, SPINE_BASE], (sg * 0.05, 0.05, -0.15)),
                 "shoulder": (J[:, SHOULDER[side]], (0, 0, 0)), "shoulder_opp": (J[:, SHOULDER[opp]], (0, 0, 0))}
        if name in trunk:
            pos, o = trunk[name]
            return pos + _apply(self.Rt, off(o)), self.Rt
        pelvis = {"pocket": (J[:, HIP[side]], (sg * 0.06, -0.08, 0.03)), "knee": (J[:, KNEE[side]], (0, 0.04, 0.05)),
                  "ankle": (J[:, ANKLE[side]], (0, 0.02, 0.03)), "ankle_opp": (J[:, ANKLE[opp]], (0, 0.02, 0.03)),
                  "front": (J[:, SPINE_SHOULDER], (0, 0, 0))}
        if name in pelvis:
            pos, o = pelvis[name]
            return pos + _apply(self.Rp, off(o)), self.Rp
        if name == "ground":
            pos = self.root.copy()
            pos[:, 1] = 0.0
            return pos, self.Rp
        raise KeyError(name)


ANCHORS = ("head", "mouth", "eyes", "top", "ear", "back_head", "neck", "nape", "chest", "stomach", "back",
           "lower_back", "shoulder", "shoulder_opp", "pocket", "knee", "ankle", "ankle_opp", "front", "ground",
           "mid", "p_head", "p_face", "p_chest", "p_stomach", "p_back", "p_shoulder", "p_pocket", "p_ankle")
_MIRRORED = ("shoulder", "pocket", "ear", "ankle")  # facing someone, my right hand meets their left side


def _anchor(actors: list[_Actor], i: int, name: str, side: str) -> tuple[np.ndarray, np.ndarray]:
    me = actors[i]
    if name not in ANCHORS:
        raise StarReproError(f"unknown arm target anchor {name!r}; expected one of {ANCHORS}")
    if name == "mid" or name.startswith("p_"):
        if len(actors) < 2:
            raise StarReproError(f"arm target anchor {name!r} needs two actors")
        other = actors[1 - i]
        if name == "mid":  # between the two bodies, at hand-shaking height
            pos = 0.5 * (me.J[:, SPINE_SHOULDER] + other.J[:, SPINE_SHOULDER])
            pos[:, 1] -= 0.3 * me.d["scale"]
            return pos, me.Rp
        key = {"face": "eyes"}.get(name[2:], name[2:])
        opp = "L" if side == "R" else "R"
        pos, _ = other.own_anchor(key, opp if key in _MIRRORED else side)
        return pos, me.Rt
    return me.own_anchor(name, side)


def _arms(actors: list[_Actor], i: int) -> np.ndarray:
    """Phase 2: wrist targets -> elbows by two-bone IK -> hand, hand tip and thumb."""
    a = actors[i]
    J, d, N, g = a.J, a.d, a.N, a.ctx.get
    hand_state = np.zeros((N, 2), np.int64)
    for k, s in enumerate(SIDES):
        sg = _SIGN[s]
        S = J[:, SHOULDER[s]]
        L1, L2 = d["upper_arm"], d["forearm"]
        rest = S + _apply(a.Rt, _v(sg * 0.06 * d["scale"], -0.97 * (L1 + L2), 0.03 * d["scale"], N))
        acc = np.zeros((N, 3))
        wsum = np.zeros(N)
        for side, name, off, wt in a.ctx.targets:
            if side != s:
                continue
            pos, frame = _anchor(actors, i, name, s)
            tgt = pos + _apply(frame, off * np.array([sg, 1.0, 1.0]))
            acc += wt[:, None] * (tgt - rest)
            wsum += wt
        target = rest + acc / np.maximum(wsum, 1.0)[:, None]
        v = target - S
        dist = np.clip(_norm(v), 0.3 * (L1 + L2), 0.995 * (L1 + L2))
        u = _unit(v)
        pole = _apply(a.Rt, _v(sg * 0.45, -0.6, -0.45, N))
        n = pole - _dot(pole, u)[:, None] * u
        alt = _apply(a.Rt, _v(sg, 0.0, 0.0, N))
        alt = alt - _dot(alt, u)[:, None] * u
        n = _unit(np.where((_norm(n) < 0.15)[:, None], alt, n))
        along = (dist ** 2 + L1 ** 2 - L2 ** 2) / (2 * dist)
        h = np.sqrt(np.clip(L1 ** 2 - along ** 2, 0.0, None))
        E = S + along[:, None] * u + h[:, None] * n
        W = S + dist[:, None] * u
        J[:, ELBOW[s]], J[:, WRIST[s]] = E, W

        # hand: palm normal from the trunk's inward direction, then twist, flexion, grip, thumb
        f = _unit(W - E)
        n0 = _apply(a.Rt, _v(-sg, 0.0, 0.0, N))
        pn = n0 - _dot(n0, f)[:, None] * f
        alt = _apply(a.Rt, _v(0.0, 0.0, -1.0, N))
        alt = alt - _dot(alt, f)[:, None] * f
        pn = _unit(np.where((_norm(pn) < 0.2)[:, None], alt, pn))
        tw = sg * g(f"wtwist_{s}")
        pn = _unit(pn * np.cos(tw)[:, None] + _cross(f, pn) * np.sin(tw)[:, None])
        fl = g(f"wflex_{s}")
        hdir = _unit(f * np.cos(fl)[:, None] + pn * np.sin(fl)[:, None])
        Hd = W + d["hand"][:, None] * hdir
        grip = np.clip(g(f"grip_{s}"), 0.0, 1.0)
        curl = 1.3 * grip
        tipdir = _unit(hdir * np.cos(curl)[:, None] + pn * np.sin(curl)[:, None])
        ext = np.clip(1.0 - 0.4 * grip + g(f"finger_{s}"), 0.3, 1.6)
        tip = Hd + (d["hand_tip"] * ext)[:, None] * tipdir + g(f"wiggle_{s}")[:, None] * pn
        tdir = _unit(0.5 * hdir - sg * 0.85 * _cross(f, pn) + 0.3 * pn)
        th = np.clip(g(f"thumb_{s}"), -1.0, 1.0)[:, None]
        tdir = _unit((1.0 - np.abs(th)) * tdir + th * np.array([0.0, 1.0, 0.0]))
        pinch = np.clip(g(f"pinch_{s}"), 0.0, 1.0)[:, None]
        tdir = _unit((1.0 - pinch) * tdir + pinch * _unit(tip - Hd))
        J[:, HAND[s]] = Hd
        J[:, HAND_TIP[s]] = tip
        J[:, THUMB[s]] = Hd + d["thumb"][:, None] * (1.0 - 0.3 * pinch) * tdir
        hand_state[:, k] = np.where(grip > 0.6, 3, np.where(g(f"finger_{s}") > 0.3, 4, 2))
    return hand_state


def render_batch(script: Script, bodies: list[tuple[Body, ...]], Ts: list[int],
                 variations: list[Variation]) -> list[Rendered]:
    """Render several performances of one script at once (one numpy pass over all their frames).

    bodies[i] has one Body per actor for performance i; Ts[i] its frame count; variations[i] its variability.
    The result for a performance does not depend on the others in the batch.
    """
    if not (len(bodies) == len(Ts) == len(variations)) or not Ts:
        raise StarReproError("render_batch needs as many bodies, frame counts and variations, at least one")
    for b in bodies:
        if len(b) != len(script.actors):
            raise StarReproError(f"script has {len(script.actors)} actors but {len(b)} bodies were given")
    if min(Ts) < 2:
        raise StarReproError(f"need at least 2 frames per performance, got {min(Ts)}")
    places = _layout(script)
    if len(places) != len(script.actors):
        raise StarReproError(f"layout {script.layout!r} places {len(places)} actors, script has "
                             f"{len(script.actors)}")
    batch = _Batch(script, Ts, variations)
    actors, k = [], 0
    for a, (act, (base, yaw)) in enumerate(zip(script.actors, places)):
        actors.append(_Actor(act, [b[a] for b in bodies], a, batch, base, yaw, k))
        k = actors[-1].k_end
    states = [_arms(actors, i) for i in range(len(actors))]
    joints = np.stack([x.J for x in actors])
    lean = np.stack([x.lean for x in actors])
    hs = np.stack(states)
    cuts = np.cumsum(batch.Ts)[:-1]
    return [Rendered(j, l_, h) for j, l_, h in zip(np.split(joints, cuts, axis=1), np.split(lean, cuts, axis=1),
                                                   np.split(hs, cuts, axis=1))]


def render(script: Script, bodies, T: int, var: Variation | None = None) -> Rendered:
    """Render one performance of a script for `T` frames; `bodies` gives one Body per actor."""
    return render_batch(script, [tuple(bodies)], [T], [var or Variation()])[0]


def rest_pose(body: Body = Body()) -> np.ndarray:
    """The neutral standing pose of `body`, (25, 3) in its own frame (x right, y up from the floor, z forward)."""
    return render(Script(actors=(ActorScript.default(),)), [body], 2).joints[0, 0]
