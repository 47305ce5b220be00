"""Per-class motion scripts for every NTU-120 and PKU-MMD Phase I class.

Each script says, for each actor and each of the six parts (head, hand, arm, hip, leg, foot), which primitives of
`star_repro.data.motion` that part performs — the same facts a part description states ("drink water": the hand
holds a cup and brings it to the mouth, the head tips back, the legs stand still). Classes are built from shared
primitives, differ in target, side, amplitude, tempo or order, and no two classes of a dataset have the same
script (tested). Two-person classes script both actors (NTU A050-A060 and A106-A120, PKU's interactions).
PKU classes reuse the script of the same NTU action where there is one.
"""
from __future__ import annotations

from star_repro.data.classes import NTU120_CLASSES, PKU51_CLASSES, TWO_PERSON
from star_repro.data.motion import DEFAULT_PRIM, PARTS, PRIMITIVES, ActorScript, Prim, Script
from star_repro.errors import StarReproError


def P(name: str, side: str = "R", t=(0.15, 0.85), **kw) -> Prim:
    for k in ("offset", "axis", "axis2", "t"):
        if k in kw:
            kw[k] = tuple(float(v) for v in kw[k])
    return Prim(name, side, tuple(float(v) for v in t), **kw)


def actor(**parts) -> ActorScript:
    """An actor's six parts; an omitted part does its default (head still, hand relax, arm rest, ...)."""
    bad = set(parts) - set(PARTS)
    if bad:
        raise StarReproError(f"unknown body parts {sorted(bad)}; expected {PARTS}")
    out = []
    for part in PARTS:
        prims = parts.get(part)
        if prims is None:
            name = DEFAULT_PRIM[part]
            prims = (Prim(name, "both" if PRIMITIVES[part][name].sided else "R"),)
        elif isinstance(prims, Prim):
            prims = (prims,)
        out.append((part, tuple(prims)))
    return ActorScript(tuple(out))


def single(**parts) -> Script:
    return Script(actors=(actor(**parts),), layout="single")


def pair(a1: ActorScript, a2: ActorScript, layout: str = "facing", distance: float = 0.9) -> Script:
    return Script(actors=(a1, a2), layout=layout, distance=distance)


# Shorthands for frequent primitives.
def reach(target, side="R", t=(0.15, 0.85), offset=(0, 0, 0), **kw) -> Prim:
    return P("reach", side, t, target=target, offset=offset, **kw)


def strike(target, side="R", t=(0.3, 0.7), offset=(0, 0, 0), **kw) -> Prim:
    return P("strike", side, t, target=target, offset=offset, **kw)


def look_down(amp=0.5, t=(0.15, 0.85), **kw) -> Prim:
    return P("look_down", "R", t, amp=amp, **kw)


def tilt_back(amp=0.5, t=(0.15, 0.85), **kw) -> Prim:
    return P("tilt_back", "R", t, amp=amp, **kw)


def bend(amp=0.5, t=(0.15, 0.85), **kw) -> Prim:
    return P("bend", "R", t, amp=amp, **kw)


def grip(side="R", amp=1.0, t=(0.1, 0.9), **kw) -> Prim:
    return P("grip", side, t, amp=amp, **kw)


WALK = dict(arm=P("swing", "both", (0.05, 0.95), amp=0.5, cycles=2, phase=0.5),
            leg=P("step", "both", (0.05, 0.95), amp=0.8, cycles=2, phase=0.5),
            foot=P("roll", "both", (0.05, 0.95), cycles=2, phase=0.5))

# ------------------------------------------------------------------------------------------------ NTU RGB+D 120
NTU_SCRIPTS: dict[str, Script] = {
    "drink water": single(
        head=tilt_back(0.8, (0.35, 0.8)), hand=[grip("R", 0.7), P("twist", "R", (0.35, 0.8), amp=0.3)],
        arm=reach("mouth", "R", (0.15, 0.85), (0.02, -0.03, 0.05))),
    "eat meal": single(
        head=[look_down(0.3), P("nod", t=(0.2, 0.9), amp=0.1, cycles=6)], hand=grip("R", 0.5),
        arm=reach("mouth", "R", (0.1, 0.9), (0.02, -0.03, 0.06), cycles=3), hip=bend(0.2),
        leg=P("sit", "both", (0.0, 1.0), mode="hold")),
    "brush teeth": single(
        hand=grip("R"), arm=reach("mouth", "R", (0.1, 0.9), (0.0, -0.02, 0.04), axis=(0.04, 0, 0), cycles=8)),
    "brush hair": single(
        head=P("tilt_side", "R", amp=0.5), hand=[grip("R"), P("twist", "R", (0.1, 0.9), amp=0.3, cycles=4)],
        arm=reach("top", "R", (0.1, 0.9), (0.08, 0.0, -0.02), axis=(0.0, 0.05, -0.08), cycles=4)),
    "drop": single(
        head=look_down(0.5, (0.45, 0.95)), hand=[grip("R", 1.0, (0.0, 0.5), mode="from")],
        arm=reach("front", "R", (0.05, 0.7), (0.1, -0.25, 0.35))),
    "pick up": single(
        head=look_down(0.8, (0.15, 0.8)), hand=grip("R", 1.0, (0.4, 0.6), mode="to"),
        arm=reach("ground", "R", (0.15, 0.8), (0.12, 0.15, 0.4)), hip=bend(2.2, (0.15, 0.8)),
        leg=P("bend_knees", "both", (0.15, 0.8), amp=0.8), foot=P("tiptoe", "both", (0.25, 0.75), amp=0.3)),
    "throw": single(
        head=tilt_back(0.2, (0.5, 0.9)), hand=[grip("R", 1.0, (0.0, 0.55)), P("open", "R", (0.55, 0.8))],
        arm=[reach("shoulder", "R", (0.1, 0.5), (0.1, 0.25, -0.25)),
             strike("front", "R", (0.45, 0.75), (0.1, 0.25, 0.6))],
        hip=P("twist", "L", (0.2, 0.8), amp=0.6, cycles=1), leg=P("step_forward", "L", (0.4, 0.9), mode="to"),
        foot=[P("push_off", "R", (0.45, 0.7)), P("pivot", "R", (0.4, 0.9), amp=0.6)]),
    "sit down": single(
        hand=P("open", "both", (0.2, 0.6)), arm=reach("knee", "both", (0.5, 0.95), (0.0, 0.12, -0.05), mode="to"),
        hip=P("move", t=(0.2, 0.8), offset=(0, 0, -0.15), mode="to"),
        leg=P("sit", "both", (0.2, 0.8), mode="to")),
    "stand up": single(
        hand=P("open", "both", (0.0, 0.5)), arm=reach("knee", "both", (0.1, 0.5), (0.0, 0.12, -0.05), mode="from"),
        hip=[P("move", t=(0.2, 0.8), offset=(0, 0, -0.15), mode="from"), bend(0.5, (0.1, 0.6))],
        leg=P("sit", "both", (0.2, 0.8), mode="from")),
    "clapping": single(
        hand=P("open", "both"), arm=reach("chest", "both", (0.1, 0.9), (-0.02, -0.05, 0.25), axis=(0.1, 0, 0),
                                          cycles=6)),
    "reading": single(
        head=look_down(0.5), hand=[grip("both", 0.4), P("flick", "R", (0.4, 0.7), cycles=1)],
        arm=reach("chest", "both", (0.1, 0.9), (0.12, -0.15, 0.3))),
    "writing": single(
        head=look_down(0.7), hand=[grip("R"), P("wiggle", "R", cycles=6)],
        arm=[reach("front", "R", (0.1, 0.9), (0.05, -0.35, 0.35), axis=(0.06, 0, 0), cycles=3),
             reach("front", "L", (0.1, 0.9), (0.05, -0.38, 0.3))], hip=bend(0.25)),
    "tear up paper": single(
        head=look_down(0.5), hand=grip("both"),
        arm=reach("chest", "both", (0.1, 0.9), (-0.05, -0.05, 0.3), axis=(0.06, 0, 0.08), cycles=2, phase=0.5)),
    "put on jacket": single(
        head=P("turn", "R", (0.1, 0.8), amp=0.3, cycles=1), hand=grip("both"),
        arm=[reach("back", "R", (0.1, 0.45), (0.3, 0.15, 0.0)), reach("back", "L", (0.4, 0.8), (0.3, 0.15, 0.0)),
             reach("chest", "both", (0.75, 1.0), (0.15, 0.05, 0.0))],
        hip=P("twist", "R", (0.1, 0.8), amp=0.3, cycles=1)),
    "take off jacket": single(
        head=P("turn", "L", (0.3, 0.95), amp=0.3, cycles=1), hand=grip("both"),
        arm=[reach("shoulder", "both", (0.05, 0.35), (-0.05, 0.08, 0.05)),
             reach("back", "R", (0.35, 0.65), (0.25, -0.15, -0.1)),
             reach("back", "L", (0.6, 0.9), (0.25, -0.15, -0.1))],
        hip=P("twist", "L", (0.3, 0.95), amp=0.3, cycles=1)),
    "put on a shoe": single(
        head=look_down(0.8), hand=grip("both", 0.7),
        arm=[reach("ankle", "L", offset=(0.05, 0.05, 0.08)), reach("ankle_opp", "R", offset=(0.05, 0.05, 0.08))],
        hip=bend(0.9), leg=P("lift", "L", amp=0.6), foot=P("slide", "L", (0.3, 0.8), cycles=2)),
    "take off a shoe": single(
        head=look_down(0.8, (0.1, 0.7)), hand=grip("both", 1.0, (0.1, 0.7)),
        arm=[reach("ankle", "L", (0.1, 0.65), (0.05, 0.05, 0.08)),
             reach("ankle_opp", "R", (0.1, 0.6), (0.05, 0.05, 0.08), axis=(0, 0, 0.08), cycles=1),
             reach("chest", "R", (0.6, 1.0), (0.1, -0.1, 0.25), mode="to")],
        hip=bend(0.9, (0.1, 0.7)), leg=P("lift", "L", (0.1, 0.7), amp=0.6),
        foot=P("slide", "L", (0.2, 0.7), amp=0.6, cycles=1)),
    "put on glasses": single(
        hand=P("pinch", "both"),
        arm=[reach("chest", "both", (0.0, 0.3), (0.0, -0.1, 0.2)), reach("eyes", "both", (0.25, 0.85),
                                                                         (0.07, 0.0, 0.02))]),
    "take off glasses": single(
        head=look_down(0.2, (0.1, 0.5)), hand=P("pinch", "both"),
        arm=[reach("eyes", "both", (0.1, 0.5), (0.07, 0.0, 0.02)),
             reach("chest", "both", (0.45, 0.95), (0.0, -0.1, 0.2), mode="to")]),
    "put on a hat/cap": single(
        head=look_down(0.2, (0.3, 0.8)), hand=grip("both"),
        arm=[reach("front", "R", (0.0, 0.25), (0.1, -0.2, 0.3)), reach("top", "both", (0.2, 0.8), (0.05, 0.1, 0.05))]),
    "take off a hat/cap": single(
        head=tilt_back(0.15, (0.2, 0.6)), hand=grip("R"),
        arm=[reach("top", "R", (0.1, 0.5), (0.05, 0.1, 0.05)),
             reach("shoulder", "R", (0.45, 0.95), (0.15, -0.45, 0.1), mode="to")]),
    "cheer up": single(
        head=tilt_back(0.5), hand=grip("both"),
        arm=reach("shoulder", "both", (0.1, 0.9), (0.1, 0.55, 0.05), cycles=3),
        hip=P("bounce", amp=0.5, cycles=3), leg=P("bend_knees", "both", (0.1, 0.9), amp=0.06, cycles=3),
        foot=P("tiptoe", "both", (0.1, 0.9), amp=0.6, cycles=3)),
    "hand waving": single(
        hand=[P("open", "R"), P("wave", "R", cycles=4)],
        arm=reach("shoulder", "R", (0.1, 0.9), (0.2, 0.3, 0.15), axis=(0.12, 0, 0), cycles=4)),
    "kicking something": single(
        head=look_down(0.5), arm=[reach("shoulder", "both", (0.2, 0.8), (0.3, -0.4, 0.0), amp=0.5),
                                  P("swing", "both", (0.3, 0.75), amp=0.3, cycles=1, phase=0.5)],
        hip=P("lean_back", t=(0.3, 0.75), amp=1.0),
        leg=[P("butt_kick", "R", (0.15, 0.4), amp=0.4), P("kick", "R", (0.35, 0.7))],
        foot=P("point_toe", "R", (0.35, 0.7))),
    "reach into pocket": single(
        head=[look_down(0.3, (0.2, 0.8)), P("turn", "R", (0.2, 0.8), amp=0.15)],
        hand=[grip("R", 0.6, (0.4, 0.8)), P("wiggle", "R", (0.4, 0.8), cycles=3)],
        arm=reach("pocket", "R", (0.2, 0.85)),
        hip=[P("twist", "R", (0.2, 0.85), amp=0.15), P("lean_side", "R", (0.2, 0.85), amp=0.3)]),
    "hopping": single(
        head=P("nod", t=(0.1, 0.9), amp=0.1, cycles=4), hand=P("open", "both", amp=0.3),
        arm=[reach("shoulder", "both", (0.1, 0.9), (0.25, -0.35, 0.1)),
             P("swing", "both", (0.1, 0.9), amp=0.3, cycles=4)],
        hip=P("bounce", t=(0.1, 0.9), amp=0.5, cycles=4),
        leg=[P("jump", "R", (0.1, 0.9), amp=0.6, cycles=4), P("butt_kick", "L", (0.05, 0.95), amp=0.6)],
        foot=[P("push_off", "R", (0.1, 0.9), cycles=4), P("point_toe", "L", (0.05, 0.95))]),
    "jump up": single(
        hand=P("open", "both"), arm=P("swing", "both", (0.2, 0.8), amp=1.0, cycles=1),
        hip=bend(0.4, (0.15, 0.45)), leg=P("jump", "both", (0.2, 0.8), cycles=1),
        foot=P("push_off", "both", (0.3, 0.55))),
    "phone call": single(
        head=P("tilt_side", "R", amp=0.4), hand=grip("R"), arm=reach("ear", "R", (0.15, 0.9), (0.02, 0.0, 0.02)),
        leg=P("shift", "both", (0.1, 0.9), amp=0.5, cycles=1, phase=0.5)),
    "play with phone/tablet": single(
        head=look_down(0.6), hand=[grip("both", 0.5), P("wiggle", "both", cycles=6)],
        arm=reach("chest", "both", (0.1, 0.9), (0.0, -0.12, 0.3)),
        leg=P("shift", "both", (0.2, 0.9), amp=0.3, cycles=1, phase=0.5)),
    "type on a keyboard": single(
        head=look_down(0.45), hand=P("wiggle", "both", (0.1, 0.9), cycles=10, phase=0.5),
        arm=reach("front", "both", (0.1, 0.9), (0.08, -0.38, 0.35)),
        leg=P("sit", "both", (0.0, 1.0), mode="hold")),
    "point to something": single(
        head=P("turn", "R", amp=0.3), hand=P("point", "R"),
        arm=reach("shoulder", "R", (0.15, 0.85), (0.2, 0.1, 0.55)),
        hip=[P("twist", "R", amp=0.15), P("turn", "R", (0.1, 0.6), amp=0.05, mode="to")]),
    "taking a selfie": single(
        head=P("tilt_side", "L", amp=0.2), hand=[grip("R", 0.6), P("flick", "R", (0.5, 0.7))],
        arm=reach("shoulder", "R", (0.15, 0.85), (0.15, 0.25, 0.45)), hip=P("lean_side", "L", amp=0.3)),
    "check time (from watch)": single(
        head=look_down(0.5, (0.3, 0.8)), hand=P("twist", "L", (0.25, 0.85), amp=0.8),
        arm=reach("chest", "L", (0.2, 0.85), (-0.05, 0.0, 0.25))),
    "rub two hands": single(
        head=look_down(0.3), hand=P("open", "both"),
        arm=reach("chest", "both", (0.1, 0.9), (-0.1, -0.15, 0.25), axis=(0, 0.04, 0.04), cycles=6, phase=0.5)),
    "nod head/bow": single(head=P("nod", t=(0.15, 0.85), amp=1.0, cycles=2), hip=bend(0.35, (0.3, 0.7))),
    "shake head": single(head=P("shake", t=(0.1, 0.9), amp=1.0, cycles=3)),
    "wipe face": single(
        head=look_down(0.2), hand=P("open", "both"),
        arm=reach("eyes", "both", (0.15, 0.85), (0.06, 0.02, 0.03), axis=(0, -0.08, 0), cycles=2)),
    "salute": single(
        hand=[P("open", "R"), P("flex", "R", amp=-0.3)], arm=reach("eyes", "R", (0.15, 0.85), (0.12, 0.06, 0.02)),
        leg=P("together", "both", (0.1, 0.9))),
    "put palms together": single(
        head=look_down(0.2), hand=[P("open", "both"), P("flex", "both", amp=-0.5)],
        arm=reach("chest", "both", (0.15, 0.85), (-0.18, -0.02, 0.18)), leg=P("together", "both", (0.0, 1.0),
                                                                             mode="hold")),
    "cross hands in front": single(
        hand=P("open", "both"),
        arm=[reach("chest", "R", (0.15, 0.85), (-0.3, 0.0, 0.38)), reach("chest", "L", (0.15, 0.85),
                                                                         (-0.3, -0.05, 0.36))]),
    "sneeze/cough": single(
        head=P("jerk", t=(0.25, 0.85), cycles=2), hand=P("open", "R"),
        arm=reach("mouth", "R", (0.2, 0.85), (0.0, 0.0, 0.05)), hip=bend(0.3, (0.25, 0.85), cycles=2),
        leg=P("bend_knees", "both", (0.25, 0.85), amp=0.06, cycles=2)),
    "staggering": single(
        head=P("tilt_side", "R", (0.05, 0.95), amp=0.5, cycles=2), hand=P("open", "both"),
        arm=reach("shoulder", "both", (0.1, 0.9), (0.35, -0.3, 0.1), axis=(0.1, 0.1, 0), cycles=2, phase=0.3),
        hip=[P("sway", t=(0.05, 0.95), amp=1.0, cycles=2), P("move", t=(0.05, 0.95), offset=(0.3, 0, 0.3),
                                                           mode="ramp"), P("fall", t=(0.4, 0.65), amp=0.12)],
        leg=[P("step", "both", (0.05, 0.95), amp=0.6, cycles=3, phase=0.5), P("buckle", "R", (0.4, 0.6), amp=0.2)],
        foot=P("roll", "both", (0.05, 0.95), cycles=3, phase=0.5)),
    "falling down": single(
        head=look_down(0.6, (0.4, 1.0), mode="to"), hand=P("open", "both"),
        arm=reach("ground", "both", (0.45, 0.9), (0.2, 0.1, 0.6), mode="to"),
        hip=P("fall", t=(0.35, 0.9), mode="to"), leg=P("buckle", "both", (0.3, 0.8), mode="to"),
        foot=P("point_toe", "both", (0.4, 0.9), mode="to")),
    "headache": single(
        head=look_down(0.3), hand=P("open", "R"), arm=reach("ear", "R", (0.15, 0.85), (0.0, 0.05, 0.06)),
        hip=bend(0.1)),
    "chest pain": single(
        head=look_down(0.35), hand=grip("R", 0.5), arm=reach("chest", "R", (0.15, 0.85), (-0.1, 0.0, 0.02)),
        hip=bend(0.25), leg=P("bend_knees", "both", amp=0.06)),
    "back pain": single(
        head=tilt_back(0.3), hand=P("open", "both"), arm=reach("lower_back", "both", (0.15, 0.85)),
        hip=P("lean_back", amp=1.0)),
    "neck pain": single(
        head=[P("tilt_side", "L", amp=0.3), look_down(0.2)], hand=[grip("R", 0.4), P("wiggle", "R", cycles=3)],
        arm=reach("nape", "R", (0.15, 0.85))),
    "nausea/vomiting": single(
        head=[look_down(1.0), P("jerk", t=(0.3, 0.85), cycles=2)], hand=[P("open", "R"), grip("L", 0.5)],
        arm=[reach("mouth", "R", (0.2, 0.85), (0.0, 0.0, 0.06)), reach("stomach", "L", (0.15, 0.85))],
        hip=[bend(0.9), bend(0.2, (0.3, 0.85), cycles=2)], leg=P("bend_knees", "both", amp=0.12),
        foot=P("wide", "both", (0.0, 1.0), mode="hold")),
    "fan self": single(
        head=tilt_back(0.2), hand=[P("open", "R"), P("wave", "R", cycles=6)],
        arm=reach("eyes", "R", (0.1, 0.9), (0.15, -0.05, 0.15), axis=(0.06, 0, 0), cycles=6)),
    "punch/slap": pair(
        actor(hand=grip("R"), arm=[strike("p_face", "R", (0.3, 0.7)), reach("chest", "L", (0.1, 0.9),
                                                                               (0.05, 0.1, 0.15))],
              hip=[P("twist", "L", (0.3, 0.7), amp=0.3), bend(0.15, (0.3, 0.7))],
              leg=P("step_forward", "L", (0.25, 0.75), amp=0.5),
              foot=[P("push_off", "R", (0.3, 0.6)), P("wide", "both", (0.0, 1.0), amp=0.5, mode="hold")]),
        actor(head=tilt_back(0.4, (0.5, 0.8)), hip=P("move", t=(0.5, 0.8), offset=(0, 0, -0.15)),
              leg=P("step_back", "L", (0.5, 0.85), amp=0.5))),
    "kicking": pair(
        actor(arm=reach("shoulder", "both", (0.2, 0.8), (0.3, -0.35, 0.05), amp=0.6),
              hip=P("lean_back", t=(0.3, 0.7), amp=1.2),
              leg=[P("butt_kick", "R", (0.1, 0.35), amp=0.4), P("kick", "R", (0.3, 0.7))],
              foot=[P("point_toe", "R", (0.3, 0.7)), P("wide", "L", (0.0, 1.0), amp=0.5, mode="hold")]),
        actor(head=[look_down(0.4, (0.5, 0.9)), P("jerk", t=(0.45, 0.7), amp=0.5)],
              arm=reach("stomach", "both", (0.5, 0.9)),
              hip=[P("move", t=(0.5, 0.8), offset=(0, 0, -0.2), mode="to"), bend(0.3, (0.5, 0.9))]),
        distance=1.1),
    "pushing": pair(
        actor(hand=P("open", "both"), arm=reach("p_chest", "both", (0.3, 0.75), (0.12, 0.05, 0.0)),
              hip=bend(0.25, (0.3, 0.75)), leg=P("step_forward", "L", (0.25, 0.75), amp=0.6),
              foot=P("push_off", "R", (0.35, 0.65))),
        actor(head=tilt_back(0.2, (0.45, 0.85)), arm=reach("shoulder", "both", (0.5, 0.85), (0.3, -0.3, 0.0),
                                                          amp=0.5),
              hip=P("move", t=(0.45, 0.85), offset=(0, 0, -0.35), mode="to"),
              leg=P("step_back", "R", (0.45, 0.85)))),
    "pat on back": pair(
        actor(head=P("turn", "R", amp=0.4), hand=[P("open", "R"), P("flex", "R", (0.3, 0.8), cycles=3)],
              arm=reach("p_back", "R", (0.2, 0.85), (0.0, 0.1, 0.0), axis=(0, 0.04, 0), cycles=3),
              hip=P("twist", "R", amp=0.2)),
        actor(head=P("turn", "L", (0.3, 0.8), amp=0.2)), layout="side_by_side", distance=0.55),
    "point finger": pair(
        actor(hand=P("point", "R"), arm=reach("p_chest", "R", (0.2, 0.85), (0.0, 0.2, 0.0), cycles=2),
              hip=bend(0.1), leg=P("step_forward", "L", (0.2, 0.85), amp=0.3, mode="to")),
        actor(head=tilt_back(0.2, (0.3, 0.85)), hip=P("move", t=(0.3, 0.85), offset=(0, 0, -0.05)))),
    "hugging": pair(
        actor(head=P("turn", "L", (0.3, 0.85), amp=0.3), hand=P("open", "both"),
              arm=reach("p_back", "both", (0.35, 0.85), (0.12, 0.1, 0.0)),
              hip=P("move", t=(0.1, 0.95), offset=(0, 0, 0.2)), leg=P("step_forward", "L", (0.1, 0.95), amp=0.4),
              foot=P("push_off", "R", (0.1, 0.5), amp=0.5)),
        actor(head=P("turn", "L", (0.3, 0.85), amp=0.3), hand=P("open", "both"),
              arm=reach("p_back", "both", (0.35, 0.85), (0.12, 0.0, 0.0)),
              hip=P("move", t=(0.1, 0.95), offset=(0, 0, 0.2)), leg=P("step_forward", "L", (0.1, 0.95), amp=0.4),
              foot=P("push_off", "R", (0.1, 0.5), amp=0.5))),
    "giving object": pair(
        actor(head=look_down(0.2), hand=grip("R", 1.0, (0.55, 0.75), mode="from"),
              arm=reach("mid", "R", (0.2, 0.8)), hip=bend(0.15), leg=P("step_forward", "L", amp=0.3)),
        actor(head=look_down(0.2, (0.3, 0.9)), hand=grip("R", 1.0, (0.5, 0.7), mode="to"),
              arm=reach("mid", "R", (0.4, 0.95)), hip=bend(0.1, (0.4, 0.9)))),
    "touch pocket": pair(
        actor(head=[look_down(0.3), P("turn", "R", amp=0.2)], hand=[P("open", "R"), P("wiggle", "R", cycles=2)],
              arm=reach("p_pocket", "R", (0.2, 0.85)), hip=[P("twist", "R", amp=0.2), bend(0.2)],
              leg=P("step_forward", "R", amp=0.3)),
        actor(head=look_down(0.3, (0.4, 0.9))), distance=0.75),
    "shaking hands": pair(
        actor(head=P("nod", t=(0.3, 0.8), amp=0.2, cycles=1), hand=grip("R"),
              arm=reach("mid", "R", (0.15, 0.85), axis=(0, 0.05, 0), cycles=3),
              leg=P("step_forward", "R", amp=0.3)),
        actor(head=P("nod", t=(0.3, 0.8), amp=0.2, cycles=1), hand=grip("R"),
              arm=reach("mid", "R", (0.15, 0.85), axis=(0, 0.05, 0), cycles=3),
              leg=P("step_forward", "R", amp=0.3))),
    "walking towards": pair(
        actor(hip=[P("move", t=(0.05, 0.95), offset=(0, 0, 0.75), mode="ramp"),
                   P("bounce", t=(0.05, 0.95), cycles=4)], **WALK),
        actor(hip=[P("move", t=(0.05, 0.95), offset=(0, 0, 0.75), mode="ramp"),
                   P("bounce", t=(0.05, 0.95), cycles=4)], **WALK), distance=2.6),
    "walking apart": pair(
        actor(hip=[P("turn", "R", (0.0, 0.2), mode="to"), P("move", t=(0.2, 0.98), offset=(0, 0, -0.75),
                                                               mode="ramp"),
                   P("bounce", t=(0.2, 0.98), cycles=4)], **WALK),
        actor(hip=[P("turn", "L", (0.0, 0.2), mode="to"), P("move", t=(0.2, 0.98), offset=(0, 0, -0.75),
                                                               mode="ramp"),
                   P("bounce", t=(0.2, 0.98), cycles=4)], **WALK), distance=1.0),
    "put on headphone": single(
        hand=grip("both", 0.6), arm=reach("ear", "both", (0.2, 0.8), (0.03, 0.03, 0.0))),
    "take off headphone": single(
        hand=grip("both", 0.6), arm=[reach("ear", "both", (0.1, 0.5), (0.03, 0.03, 0.0)),
                                     reach("chest", "both", (0.45, 0.95), (0.05, -0.05, 0.2), mode="to")]),
    "shoot at basket": single(
        head=tilt_back(0.6), hand=[grip("both", 0.5), P("flex", "R", (0.6, 0.8))],
        arm=[reach("chest", "both", (0.1, 0.45), (0.0, 0.0, 0.2)), reach("top", "both", (0.4, 0.8),
                                                                        (0.05, 0.3, 0.25))],
        hip=bend(0.2, (0.1, 0.45)), leg=P("jump", "both", (0.35, 0.75), amp=0.4),
        foot=P("push_off", "both", (0.4, 0.6))),
    "bounce ball": single(
        head=look_down(0.6), hand=[P("open", "R"), P("flex", "R", cycles=4)],
        arm=reach("front", "R", (0.1, 0.9), (0.1, -0.45, 0.35), axis=(0, 0.12, 0), cycles=4),
        hip=bend(0.25), leg=P("bend_knees", "both", amp=0.1), foot=P("wide", "both", (0.0, 1.0), mode="hold")),
    "tennis bat swing": single(
        head=P("turn", "R", amp=0.4, cycles=1), hand=grip("R"),
        arm=[reach("shoulder", "R", (0.1, 0.45), (0.45, -0.1, -0.25)),
             strike("shoulder_opp", "R", (0.4, 0.85), (0.2, 0.0, 0.4))],
        hip=[P("twist", "R", amp=0.7, cycles=1), P("turn", "R", (0.1, 0.6), amp=0.1)],
        leg=P("step_forward", "L", (0.4, 0.8)),
        foot=P("pivot", "R", cycles=1)),
    "juggle table tennis ball": single(
        head=look_down(0.4), hand=[grip("R", 0.7), P("flex", "R", cycles=6)],
        arm=reach("front", "R", (0.1, 0.9), (0.1, -0.15, 0.35), axis=(0, 0.05, 0), cycles=6),
        leg=P("bend_knees", "both", amp=0.05)),
    "hush": single(hand=P("point", "R"), arm=reach("mouth", "R", (0.15, 0.85), (0.0, 0.0, 0.03))),
    "flick hair": single(
        head=P("tilt_side", "R", (0.3, 0.7), amp=0.4, cycles=1), hand=[P("open", "R"), P("flick", "R", (0.4, 0.7))],
        arm=reach("ear", "R", (0.25, 0.7), (0.05, 0.08, -0.05), axis=(0.1, 0, 0), cycles=1)),
    "thumb up": single(hand=P("thumb", "R", amp=1.0), arm=reach("shoulder", "R", (0.15, 0.85), (0.1, -0.2, 0.35))),
    "thumb down": single(
        head=P("shake", t=(0.3, 0.8), amp=0.2, cycles=2), hand=[P("thumb", "R", amp=-1.0), P("twist", "R")],
        arm=reach("shoulder", "R", (0.15, 0.85), (0.1, -0.15, 0.4))),
    "make OK sign": single(hand=P("pinch", "R"), arm=reach("shoulder", "R", (0.15, 0.85), (0.12, -0.05, 0.38))),
    "make victory sign": single(
        head=P("tilt_side", "L", amp=0.15), hand=P("victory", "R"),
        arm=reach("shoulder", "R", (0.15, 0.85), (0.15, 0.15, 0.25))),
    "staple book": single(
        head=look_down(0.6), hand=[P("open", "R"), P("flex", "R", cycles=3)],
        arm=[reach("front", "R", (0.1, 0.9), (0.05, -0.35, 0.35), axis=(0, 0.08, 0), cycles=3),
             reach("front", "L", (0.1, 0.9), (0.05, -0.38, 0.32))], hip=bend(0.2)),
    "counting money": single(
        head=look_down(0.5), hand=[grip("L", 0.6), P("flick", "R", cycles=8)],
        arm=reach("chest", "both", (0.1, 0.9), (-0.05, -0.15, 0.28))),
    "cutting nails": single(
        head=look_down(0.8), hand=[P("pinch", "R", cycles=4), grip("L", 0.3)],
        arm=reach("chest", "both", (0.1, 0.9), (-0.1, -0.2, 0.22)), hip=bend(0.2)),
    "cutting paper": single(
        head=look_down(0.5), hand=[P("pinch", "R", cycles=4), grip("L", 0.6)],
        arm=[reach("chest", "R", (0.1, 0.9), (0.05, -0.15, 0.3), axis=(0.08, 0, 0), cycles=0.5),
             reach("chest", "L", (0.1, 0.9), (0.0, -0.1, 0.3))]),
    "snap fingers": single(hand=[P("pinch", "R", cycles=3), P("flex", "R", amp=0.5, cycles=3)],
                           arm=reach("chest", "R", (0.15, 0.85), (0.15, 0.0, 0.25))),
    "open bottle": single(
        head=look_down(0.4), hand=[grip("L"), P("twist", "R", cycles=3)],
        arm=[reach("chest", "R", (0.1, 0.9), (-0.05, -0.02, 0.3)), reach("chest", "L", (0.1, 0.9),
                                                                          (-0.05, -0.15, 0.3))]),
    "sniff/smell": single(
        head=look_down(0.15), hand=grip("R", 0.6), arm=reach("eyes", "R", (0.2, 0.8), (0.0, -0.04, 0.08)),
        hip=bend(0.15)),
    "squat down": single(
        hand=P("open", "both"), arm=reach("shoulder", "both", (0.2, 0.8), (0.05, -0.25, 0.45), mode="to"),
        hip=[bend(0.5, (0.2, 0.8), mode="to"), P("move", t=(0.2, 0.8), offset=(0, 0, -0.1), mode="to")],
        leg=P("bend_knees", "both", (0.2, 0.8), mode="to"), foot=P("tiptoe", "both", (0.2, 0.8), amp=0.3, mode="to")),
    "toss a coin": single(
        head=tilt_back(0.4, (0.4, 0.8)), hand=[grip("R", 0.6), P("flick", "R", (0.3, 0.5))],
        arm=reach("chest", "R", (0.1, 0.9), (0.1, -0.1, 0.3), axis=(0, 0.1, 0), cycles=1)),
    "fold paper": single(
        head=look_down(0.5), hand=P("pinch", "both"),
        arm=reach("chest", "both", (0.1, 0.9), (-0.05, -0.18, 0.25), axis=(0.06, 0.04, 0), cycles=2)),
    "ball up paper": single(
        head=look_down(0.5), hand=grip("both", cycles=4),
        arm=reach("chest", "both", (0.1, 0.9), (-0.12, -0.12, 0.2), axis=(-0.03, 0, 0), cycles=4)),
    "play magic cube": single(
        head=look_down(0.6), hand=[grip("both", 0.7), P("twist", "both", cycles=5, phase=0.5)],
        arm=reach("chest", "both", (0.1, 0.9), (-0.1, -0.15, 0.28))),
    "apply cream on face": single(
        head=P("tilt_side", "R", amp=0.2), hand=P("open", "both"),
        arm=reach("eyes", "both", (0.1, 0.9), (0.07, -0.04, 0.04), axis=(0.03, 0, 0), axis2=(0, 0.03, 0),
                  cycles=4)),
    "apply cream on hand": single(
        head=look_down(0.4), hand=P("open", "both"),
        arm=[reach("chest", "L", (0.1, 0.9), (-0.05, -0.2, 0.28)),
             reach("chest", "R", (0.1, 0.9), (-0.15, -0.17, 0.28), axis=(0.04, 0, 0), axis2=(0, 0, 0.03), cycles=4)]),
    "put on bag": single(
        head=P("turn", "R", amp=0.2), hand=grip("both"),
        arm=[reach("pocket", "both", (0.05, 0.45), (0.05, 0.0, 0.2)),
             reach("shoulder", "both", (0.4, 0.95), (-0.02, 0.02, 0.06), mode="to")],
        hip=P("twist", "R", amp=0.2, cycles=1), leg=P("shift", "both", (0.3, 0.9), amp=0.5, cycles=1, phase=0.5)),
    "take off bag": single(
        head=P("turn", "R", (0.2, 0.8), amp=0.2), hand=grip("both"),
        arm=[reach("shoulder", "both", (0.3, 0.6), (-0.02, 0.02, 0.06), mode="from"),
             reach("pocket", "both", (0.45, 0.95), (0.05, 0.0, 0.2), mode="to")],
        hip=P("twist", "R", (0.2, 0.8), amp=0.2, cycles=1)),
    "put object into bag": single(
        head=look_down(0.6), hand=grip("R", 1.0, (0.5, 0.7), mode="from"),
        arm=[reach("front", "R", (0.3, 0.8), (0.05, -0.5, 0.3)), reach("front", "L", (0.1, 0.9), (0.0, -0.5, 0.25))],
        hip=bend(0.35)),
    "take object out of bag": single(
        head=look_down(0.6, (0.1, 0.6)), hand=grip("R", 1.0, (0.45, 0.6), mode="to"),
        arm=[reach("front", "R", (0.15, 0.55), (0.05, -0.55, 0.3)),
             reach("chest", "R", (0.5, 0.95), (0.1, -0.1, 0.3), mode="to"),
             reach("front", "L", (0.1, 0.9), (0.0, -0.5, 0.25))],
        hip=bend(0.35, (0.1, 0.6))),
    "open a box": single(
        head=look_down(0.6), hand=[grip("both", 1.0, (0.15, 0.5)), P("open", "both", (0.5, 0.9))],
        arm=[reach("front", "both", (0.1, 0.5), (0.05, -0.45, 0.35)),
             reach("front", "both", (0.45, 0.9), (0.3, -0.3, 0.35))], hip=bend(0.3)),
    "move heavy objects": single(
        head=look_down(0.3), hand=grip("both"), arm=reach("front", "both", (0.05, 0.95), (0.0, -0.35, 0.3)),
        hip=[bend(0.6, (0.05, 0.45)), P("move", t=(0.4, 0.95), offset=(0.4, 0, 0), mode="ramp")],
        leg=[P("bend_knees", "both", (0.05, 0.45), amp=0.4),
             P("step", "both", (0.4, 0.95), amp=0.4, cycles=2, phase=0.5)],
        foot=P("roll", "both", (0.4, 0.95), cycles=2, phase=0.5)),
    "shake fist": single(
        hand=grip("R"), arm=reach("shoulder", "R", (0.15, 0.85), (0.15, 0.15, 0.25), axis=(0, 0.08, 0), cycles=4),
        hip=bend(0.1)),
    "throw up cap/hat": single(
        head=tilt_back(0.6, (0.3, 0.9)), hand=[grip("R", 1.0, (0.0, 0.4)), P("open", "R", (0.4, 0.7))],
        arm=[reach("chest", "R", (0.0, 0.35), (0.1, -0.1, 0.25)), strike("top", "R", (0.3, 0.6), (0.1, 0.45, 0.15))],
        hip=P("lean_back", t=(0.3, 0.7), amp=0.4), foot=P("tiptoe", "both", (0.3, 0.6), amp=0.5)),
    "capitulate": single(
        head=look_down(0.2), hand=P("open", "both"),
        arm=reach("shoulder", "both", (0.15, 0.9), (0.25, 0.3, 0.0))),
    "cross arms": single(
        hand=grip("both", 0.3),
        arm=[reach("shoulder_opp", "R", (0.15, 0.9), (0.05, -0.18, 0.12)),
             reach("shoulder_opp", "L", (0.15, 0.9), (0.05, -0.15, 0.14))]),
    "arm circles": single(
        hand=P("open", "both"),
        arm=reach("shoulder", "both", (0.1, 0.9), (0.5, 0.0, 0.0), axis=(0, 0.2, 0), axis2=(0, 0, 0.2), cycles=3),
        leg=P("spread", "both", (0.0, 1.0), mode="hold")),
    "arm swings": single(
        hand=P("open", "both"), arm=P("swing", "both", (0.1, 0.9), amp=1.3, cycles=3),
        hip=P("twist", "R", (0.1, 0.9), amp=0.15, cycles=3), leg=P("spread", "both", (0.0, 1.0), amp=0.8,
                                                                       mode="hold")),
    "run on the spot": single(
        head=P("nod", t=(0.05, 0.95), amp=0.1, cycles=6), hand=grip("both", 0.5),
        arm=P("swing", "both", (0.05, 0.95), amp=0.8, cycles=6, phase=0.5),
        hip=P("bounce", t=(0.05, 0.95), cycles=6), leg=P("step", "both", (0.05, 0.95), amp=2.3, cycles=6, phase=0.5),
        foot=P("push_off", "both", (0.05, 0.95), cycles=6, phase=0.5)),
    "butt kicks": single(
        head=P("nod", t=(0.05, 0.95), amp=0.05, cycles=6), arm=P("swing", "both", (0.05, 0.95), amp=0.3, cycles=6,
                                                                 phase=0.5),
        hip=P("bounce", t=(0.05, 0.95), amp=0.5, cycles=6),
        leg=P("butt_kick", "both", (0.05, 0.95), cycles=6, phase=0.5),
        foot=P("point_toe", "both", (0.05, 0.95), cycles=6, phase=0.5)),
    "cross toe touch": single(
        head=look_down(0.6), hand=P("open", "both"),
        arm=[reach("ankle_opp", "R", (0.1, 0.45)), reach("ankle_opp", "L", (0.55, 0.9))],
        hip=[bend(1.1, (0.1, 0.9), cycles=2), P("twist", "L", (0.1, 0.9), amp=0.4, cycles=1)],
        leg=P("spread", "both", (0.0, 1.0), amp=1.5, mode="hold")),
    "side kick": single(
        head=P("turn", "R", amp=0.3), hand=grip("both"), arm=reach("chest", "both", (0.1, 0.9), (0.1, 0.15, 0.2)),
        hip=P("lean_side", "L", (0.3, 0.7), amp=1.2), leg=P("side_kick", "R", (0.3, 0.7)),
        foot=P("flex", "R", (0.3, 0.7))),
    "yawn": single(
        head=tilt_back(0.4, (0.2, 0.8)), hand=P("open", "R"),
        arm=[reach("mouth", "R", (0.3, 0.75), (0.0, 0.0, 0.05)), reach("shoulder", "L", (0.1, 0.6), (0.15, 0.5, 0.0))],
        hip=P("lean_back", t=(0.2, 0.8), amp=0.6)),
    "stretch oneself": single(
        head=tilt_back(0.3), hand=P("open", "both"), arm=reach("top", "both", (0.15, 0.85), (0.0, 0.35, 0.05)),
        hip=[P("lean_back", amp=0.8), P("lean_side", "R", (0.2, 0.8), amp=1.0, cycles=1)],
        foot=P("tiptoe", "both", (0.3, 0.7), amp=0.5)),
    "blow nose": single(
        head=[look_down(0.2), P("jerk", t=(0.4, 0.8), amp=0.3, cycles=2)], hand=grip("both", 0.5),
        arm=reach("mouth", "both", (0.2, 0.8), (0.02, 0.03, 0.06)), hip=bend(0.1)),
    "hit with object": pair(
        actor(hand=grip("R"), arm=[reach("shoulder", "R", (0.1, 0.45), (0.1, 0.4, -0.1)),
                                   strike("p_shoulder", "R", (0.4, 0.75), (0.0, 0.1, 0.0))],
              hip=bend(0.2, (0.4, 0.75)), leg=P("step_forward", "L", (0.3, 0.8), amp=0.4),
              foot=P("push_off", "R", (0.4, 0.7))),
        actor(head=look_down(0.3, (0.5, 0.9)), arm=reach("top", "both", (0.4, 0.9), (0.1, 0.05, 0.1)),
              hip=bend(0.3, (0.5, 0.9)))),
    "wield knife": pair(
        actor(hand=grip("R"), arm=strike("p_stomach", "R", (0.3, 0.85), cycles=2), hip=bend(0.2, (0.3, 0.85),
                                                                                            cycles=2),
              leg=P("step_forward", "R", (0.25, 0.85), amp=0.4)),
        actor(head=tilt_back(0.2, (0.3, 0.85)), arm=reach("chest", "both", (0.3, 0.85), (0.1, 0.1, 0.3)),
              hip=P("move", t=(0.3, 0.85), offset=(0, 0, -0.3), mode="to"),
              leg=P("step_back", "both", (0.3, 0.85), amp=0.5)), distance=1.0),
    "knock over": pair(
        actor(hand=P("open", "both"), arm=strike("p_chest", "both", (0.3, 0.55), (0.1, 0.0, 0.0)),
              hip=bend(0.3, (0.3, 0.6)), leg=P("step_forward", "L", (0.25, 0.65))),
        actor(head=look_down(0.5, (0.5, 1.0), mode="to"), hand=P("open", "both", (0.5, 1.0)),
              arm=reach("ground", "both", (0.5, 0.95), (0.25, 0.1, -0.3), mode="to"),
              hip=[P("fall", t=(0.45, 0.95), amp=-0.8, mode="to"),
                   P("move", t=(0.45, 0.95), offset=(0, 0, -0.3), mode="to")],
              leg=P("buckle", "both", (0.45, 0.9), mode="to")), distance=0.8),
    "grab stuff": pair(
        actor(head=look_down(0.2), hand=grip("R", 1.0, (0.4, 0.6), mode="to"),
              arm=[reach("mid", "R", (0.25, 0.55), (0.0, -0.05, 0.1)),
                   reach("chest", "R", (0.5, 0.9), (0.1, -0.1, 0.25), mode="to")], hip=bend(0.1, (0.25, 0.6))),
        actor(hand=grip("R", 1.0, (0.45, 0.65), mode="from"),
              arm=reach("front", "R", (0.45, 0.65), (0.1, -0.2, 0.3), mode="from"),
              head=P("turn", "L", (0.5, 0.9), amp=0.2))),
    "shoot with gun": pair(
        actor(hand=[grip("R"), P("point", "R")],
              arm=[reach("p_chest", "R", (0.2, 0.9), (0.0, 0.25, 0.0)), reach("p_chest", "L", (0.2, 0.9),
                                                                               (-0.05, 0.22, 0.0))],
              leg=P("step_forward", "L", (0.2, 0.9), amp=0.3, mode="to")),
        actor(hand=P("open", "both"), arm=reach("shoulder", "both", (0.4, 0.95), (0.25, 0.3, 0.0)),
              head=tilt_back(0.2, (0.4, 0.95)), hip=P("move", t=(0.4, 0.9), offset=(0, 0, -0.1), mode="to")),
        distance=1.4),
    "step on foot": pair(
        actor(head=look_down(0.5), leg=P("stomp", "R", (0.3, 0.7)), foot=P("point_toe", "R", (0.3, 0.7)),
              hip=P("move", t=(0.3, 0.7), offset=(0, 0, 0.15))),
        actor(head=look_down(0.5, (0.55, 0.9)), leg=P("lift", "L", (0.55, 0.9), amp=0.5),
              foot=P("flex", "L", (0.55, 0.9))), distance=0.7),
    "high-five": pair(
        actor(head=tilt_back(0.2), hand=P("open", "R"), arm=reach("mid", "R", (0.25, 0.7), (0.0, 0.55, 0.0)),
              leg=P("step_forward", "R", amp=0.2)),
        actor(head=tilt_back(0.2), hand=P("open", "R"), arm=reach("mid", "R", (0.25, 0.7), (0.0, 0.55, 0.0)),
              leg=P("step_forward", "R", amp=0.2))),
    "cheers and drink": pair(
        actor(head=tilt_back(0.6, (0.55, 0.9)), hand=grip("R", 0.7),
              arm=[reach("mid", "R", (0.1, 0.45), (0.0, 0.25, 0.0)), reach("mouth", "R", (0.5, 0.9),
                                                                            (0.02, -0.03, 0.05))]),
        actor(head=tilt_back(0.6, (0.55, 0.9)), hand=grip("R", 0.7),
              arm=[reach("mid", "R", (0.1, 0.45), (0.0, 0.25, 0.0)), reach("mouth", "R", (0.5, 0.9),
                                                                            (0.02, -0.03, 0.05))])),
    "carry object": pair(
        actor(head=look_down(0.2), hand=grip("both"), arm=reach("front", "both", (0.05, 0.95), (0.2, -0.3, 0.35)),
              hip=P("move", t=(0.1, 0.95), offset=(0.6, 0, 0), mode="ramp"),
              leg=P("step", "both", (0.1, 0.95), amp=0.4, cycles=2, phase=0.5),
              foot=P("roll", "both", (0.1, 0.95), cycles=2, phase=0.5)),
        actor(head=look_down(0.2), hand=grip("both"), arm=reach("front", "both", (0.05, 0.95), (0.2, -0.3, 0.35)),
              hip=P("move", t=(0.1, 0.95), offset=(-0.6, 0, 0), mode="ramp"),
              leg=P("step", "both", (0.1, 0.95), amp=0.4, cycles=2, phase=0.5),
              foot=P("roll", "both", (0.1, 0.95), cycles=2, phase=0.5)), distance=1.1),
    "take a photo": pair(
        actor(hand=[grip("both", 0.6), P("flick", "R", (0.5, 0.7))],
              arm=reach("eyes", "both", (0.15, 0.85), (0.05, -0.02, 0.25)), hip=bend(0.1)),
        actor(head=P("tilt_side", "L", amp=0.2), hand=P("victory", "R"),
              arm=reach("shoulder", "R", (0.15, 0.85), (0.15, 0.15, 0.25))), distance=1.8),
    "follow": pair(
        actor(hip=[P("move", t=(0.05, 0.95), offset=(0, 0, 0.8), mode="ramp"),
                   P("bounce", t=(0.05, 0.95), cycles=4)], **WALK),
        actor(hip=[P("move", t=(0.2, 1.0), offset=(0, 0, 0.8), mode="ramp"),
                   P("bounce", t=(0.2, 1.0), cycles=4)],
              arm=P("swing", "both", (0.2, 1.0), amp=0.5, cycles=2, phase=0.5),
              leg=P("step", "both", (0.2, 1.0), amp=0.8, cycles=2, phase=0.5),
              foot=P("roll", "both", (0.2, 1.0), cycles=2, phase=0.5)), layout="same_direction", distance=1.2),
    "whisper": pair(
        actor(head=P("turn", "R", amp=0.5), hand=P("open", "R"), arm=reach("mouth", "R", (0.2, 0.8),
                                                                           (0.08, 0.0, 0.06)),
              hip=[P("lean_side", "R", (0.15, 0.85), amp=0.8), bend(0.15)]),
        actor(head=P("tilt_side", "L", (0.2, 0.85), amp=0.4)), layout="side_by_side", distance=0.5),
    "exchange things": pair(
        actor(head=look_down(0.2), hand=[grip("R", 1.0, (0.1, 0.55), mode="from"), grip("L", 1.0, (0.45, 0.7),
                                                                                         mode="to")],
              arm=[reach("mid", "R", (0.15, 0.6)), reach("mid", "L", (0.4, 0.9))], hip=bend(0.1)),
        actor(head=look_down(0.2), hand=[grip("R", 1.0, (0.1, 0.55), mode="from"), grip("L", 1.0, (0.45, 0.7),
                                                                                         mode="to")],
              arm=[reach("mid", "R", (0.15, 0.6)), reach("mid", "L", (0.4, 0.9))], hip=bend(0.1))),
    "support somebody": pair(
        actor(head=P("turn", "R", amp=0.3), hand=grip("both", 0.6),
              arm=[reach("p_back", "R", (0.15, 0.9), (0.0, 0.05, 0.0)), reach("p_shoulder", "L", (0.15, 0.9),
                                                                               (0.0, -0.1, 0.05))],
              hip=P("lean_side", "R", amp=0.5), leg=P("step", "both", (0.1, 0.9), amp=0.4, cycles=2, phase=0.5)),
        actor(head=look_down(0.5), hip=[P("sway", t=(0.1, 0.9), amp=0.5, cycles=2), bend(0.3)],
              leg=[P("buckle", "both", (0.1, 0.9), amp=0.2), P("step", "both", (0.1, 0.9), amp=0.4, cycles=2,
                                                              phase=0.5)]),
        layout="side_by_side", distance=0.5),
    "rock-paper-scissors": pair(
        actor(head=look_down(0.3), hand=[grip("R", 1.0, (0.1, 0.6), cycles=3), P("victory", "R", (0.6, 0.95))],
              arm=[reach("mid", "R", (0.1, 0.6), (0.0, -0.05, -0.15), axis=(0, 0.08, 0), cycles=3),
                   reach("mid", "R", (0.6, 0.95), (0.0, -0.05, -0.15))]),
        actor(head=look_down(0.3), hand=[grip("R", 1.0, (0.1, 0.6), cycles=3), P("open", "R", (0.6, 0.95))],
              arm=[reach("mid", "R", (0.1, 0.6), (0.0, -0.05, -0.15), axis=(0, 0.08, 0), cycles=3),
                   reach("mid", "R", (0.6, 0.95), (0.0, -0.05, -0.15))])),
}

# ------------------------------------------------------------------------------------------------ PKU-MMD Phase I
# The same action in NTU (PKU's own wording on the left).
PKU_TO_NTU: dict[str, str] = {
    "brushing hair": "brush hair", "brushing teeth": "brush teeth",
    "check time (from watch)": "check time (from watch)",
    "cheer up": "cheer up", "clapping": "clapping", "cross hands in front (say stop)": "cross hands in front",
    "drink water": "drink water", "drop": "drop", "eat meal/snack": "eat meal", "falling": "falling down",
    "giving something to other person": "giving object", "hand waving": "hand waving",
    "handshaking": "shaking hands", "hopping (one foot jumping)": "hopping", "hugging other person": "hugging",
    "jump up": "jump up", "kicking other person": "kicking", "kicking something": "kicking something",
    "make a phone call/answer phone": "phone call", "pat on back of other person": "pat on back",
    "pickup": "pick up", "playing with phone/tablet": "play with phone/tablet",
    "point finger at the other person": "point finger", "pointing to something with finger": "point to something",
    "punching/slapping other person": "punch/slap", "pushing other person": "pushing",
    "put on a hat/cap": "put on a hat/cap", "reading": "reading", "rub two hands together": "rub two hands",
    "salute": "salute", "sitting down": "sit down", "standing up": "stand up",
    "take off a hat/cap": "take off a hat/cap", "take off glasses": "take off glasses",
    "take off jacket": "take off jacket", "taking a selfie": "taking a selfie", "tear up paper": "tear up paper",
    "throw": "throw", "touch back (backache)": "back pain", "touch chest (stomachache/heart pain)": "chest pain",
    "touch head (headache)": "headache", "touch neck (neckache)": "neck pain",
    "typing on a keyboard": "type on a keyboard", "use a fan (with hand or paper)/feeling warm": "fan self",
    "wear jacket": "put on jacket", "wear on glasses": "put on glasses", "wipe face": "wipe face",
    "writing": "writing",
}
PKU_OWN: dict[str, Script] = {
    # a deeper bow than NTU's "nod head/bow": the trunk folds forward once, the head follows
    "bow": single(head=P("nod", t=(0.25, 0.75), amp=0.5, cycles=1), hand=P("open", "both"),
                  hip=bend(0.9, (0.2, 0.8)), leg=P("together", "both", (0.0, 1.0), mode="hold")),
    "put something inside pocket": single(
        head=look_down(0.3, (0.3, 0.8)), hand=grip("R", 1.0, (0.55, 0.75), mode="from"),
        arm=[reach("chest", "R", (0.0, 0.35), (0.1, -0.1, 0.3)), reach("pocket", "R", (0.3, 0.85))],
        hip=P("twist", "R", (0.3, 0.85), amp=0.15)),
    "take out something from pocket": single(
        head=look_down(0.3, (0.1, 0.6)), hand=grip("R", 1.0, (0.35, 0.5), mode="to"),
        arm=[reach("pocket", "R", (0.1, 0.5)), reach("chest", "R", (0.45, 0.95), (0.1, -0.1, 0.3), mode="to")],
        hip=P("twist", "R", (0.1, 0.5), amp=0.15)),
}
PKU_SCRIPTS: dict[str, Script] = {
    name: (PKU_OWN[name] if name in PKU_OWN else NTU_SCRIPTS[PKU_TO_NTU[name]]) for name in PKU51_CLASSES
}

SCRIPTS: dict[str, dict[str, Script]] = {
    "ntu60": {n: NTU_SCRIPTS[n] for n in NTU120_CLASSES[:60]},
    "ntu120": NTU_SCRIPTS,
    "pku1": PKU_SCRIPTS,
}


def script_for(dataset: str, label: int) -> Script:
    """The script of class `label` (0-based) of `dataset` (ntu60, ntu120, pku1)."""
    from star_repro.data.classes import classes_of

    names = classes_of(dataset)
    if not 0 <= label < len(names):
        raise StarReproError(f"{dataset}: label {label} outside 0..{len(names) - 1}")
    return SCRIPTS[dataset][names[label]]


def check_scripts() -> None:
    """Structural checks: every class scripted, actors as the class needs, no two classes alike."""
    for ds, names in (("ntu120", NTU120_CLASSES), ("pku1", PKU51_CLASSES)):
        scripts = SCRIPTS[ds]
        missing = [n for n in names if n not in scripts]
        if missing:
            raise StarReproError(f"{ds}: no motion script for {missing}")
        seen: dict[str, str] = {}
        for label, name in enumerate(names):
            s = scripts[name]
            want = 2 if label in TWO_PERSON[ds] else 1
            if len(s.actors) != want:
                raise StarReproError(f"{ds} class {name!r}: script has {len(s.actors)} actors, the class has {want}")
            k = s.key()
            if k in seen:
                raise StarReproError(f"{ds}: classes {seen[k]!r} and {name!r} have the same motion script")
            seen[k] = name
