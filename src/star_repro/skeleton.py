"""Kinect v2 joint layout (NTU RGB+D and PKU-MMD) and the body-part partitions STAR uses.

Indices are 0-based. The 6-part lists are the ones of the released code (STAR_SPEC §4.2); the 4- and 2-part
partitions are not released, so the project's reconstruction from the 6-part lists is used (STAR_SPEC §4.2,
[INFERRED]): hand-arm = hand ∪ arm, leg-foot = leg ∪ foot; for 2 parts the hip joins the upper body.
"""
from __future__ import annotations

NUM_JOINTS = 25
JOINT_NAMES: tuple[str, ...] = (
    "spine base", "spine mid", "neck", "head", "left shoulder", "left elbow", "left wrist", "left hand",
    "right shoulder", "right elbow", "right wrist", "right hand", "left hip", "left knee", "left ankle",
    "left foot", "right hip", "right knee", "right ankle", "right foot", "spine shoulder", "left hand tip",
    "left thumb", "right hand tip", "right thumb",
)
# Inward edges, 1-based as in the NTU graph definition.
INWARD_EDGES_1BASED: tuple[tuple[int, int], ...] = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
    (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25),
    (25, 12),
)

SIX_PARTS: dict[str, tuple[int, ...]] = {
    "head": (2, 3, 20),
    "hand": (7, 11, 21, 22, 23, 24),
    "arm": (4, 5, 6, 8, 9, 10),
    "hip": (0, 1),
    "leg": (12, 13, 16, 17),
    "foot": (14, 15, 18, 19),
}
FOUR_PARTS: dict[str, tuple[int, ...]] = {
    "head": SIX_PARTS["head"],
    "hand-arm": tuple(sorted(SIX_PARTS["hand"] + SIX_PARTS["arm"])),
    "hip": SIX_PARTS["hip"],
    "leg-foot": tuple(sorted(SIX_PARTS["leg"] + SIX_PARTS["foot"])),
}
TWO_PARTS: dict[str, tuple[int, ...]] = {
    "upper body": tuple(sorted(SIX_PARTS["head"] + SIX_PARTS["hand"] + SIX_PARTS["arm"] + SIX_PARTS["hip"])),
    "lower body": tuple(sorted(SIX_PARTS["leg"] + SIX_PARTS["foot"])),
}
PARTITIONS: dict[int, dict[str, tuple[int, ...]]] = {6: SIX_PARTS, 4: FOUR_PARTS, 2: TWO_PARTS}

# The label each part carries in the authors' text form "name, Part: description".
PART_LABELS: dict[str, str] = {
    "head": "Head", "hand": "Hand", "arm": "Arm", "hip": "Hip", "leg": "Leg", "foot": "Foot",
    "hand-arm": "Hand-arm", "leg-foot": "Leg-foot", "upper body": "Upper body", "lower body": "Lower body",
}


def partition(num_parts: int) -> dict[str, tuple[int, ...]]:
    try:
        return PARTITIONS[num_parts]
    except KeyError:
        raise ValueError(f"partition must be one of {sorted(PARTITIONS)} parts, got {num_parts!r}") from None


def part_names(num_parts: int) -> tuple[str, ...]:
    return tuple(partition(num_parts))


for _parts in PARTITIONS.values():  # every partition covers all joints exactly once
    assert sorted(j for js in _parts.values() for j in js) == list(range(NUM_JOINTS))
