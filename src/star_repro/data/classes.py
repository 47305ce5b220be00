"""Canonical class lists of the datasets (one place for each name).

Names are the short forms the STAR release uses (field 0 of its description lines, STAR_SPEC §3.3);
label k (0-based) is action id k+1 of the dataset.
"""
from __future__ import annotations

NTU120_CLASSES: tuple[str, ...] = (
    "drink water", "eat meal", "brush teeth", "brush hair", "drop", "pick up", "throw", "sit down",
    "stand up", "clapping", "reading", "writing", "tear up paper", "put on jacket", "take off jacket",
    "put on a shoe", "take off a shoe", "put on glasses", "take off glasses", "put on a hat/cap",
    "take off a hat/cap", "cheer up", "hand waving", "kicking something", "reach into pocket", "hopping",
    "jump up", "phone call", "play with phone/tablet", "type on a keyboard", "point to something",
    "taking a selfie", "check time (from watch)", "rub two hands", "nod head/bow", "shake head", "wipe face",
    "salute", "put palms together", "cross hands in front", "sneeze/cough", "staggering", "falling down",
    "headache", "chest pain", "back pain", "neck pain", "nausea/vomiting", "fan self", "punch/slap",
    "kicking", "pushing", "pat on back", "point finger", "hugging", "giving object", "touch pocket",
    "shaking hands", "walking towards", "walking apart", "put on headphone", "take off headphone",
    "shoot at basket", "bounce ball", "tennis bat swing", "juggle table tennis ball", "hush", "flick hair",
    "thumb up", "thumb down", "make OK sign", "make victory sign", "staple book", "counting money",
    "cutting nails", "cutting paper", "snap fingers", "open bottle", "sniff/smell", "squat down",
    "toss a coin", "fold paper", "ball up paper", "play magic cube", "apply cream on face",
    "apply cream on hand", "put on bag", "take off bag", "put object into bag", "take object out of bag",
    "open a box", "move heavy objects", "shake fist", "throw up cap/hat", "capitulate", "cross arms",
    "arm circles", "arm swings", "run on the spot", "butt kicks", "cross toe touch", "side kick", "yawn",
    "stretch oneself", "blow nose", "hit with object", "wield knife", "knock over", "grab stuff",
    "shoot with gun", "step on foot", "high-five", "cheers and drink", "carry object", "take a photo",
    "follow", "whisper", "exchange things", "support somebody", "rock-paper-scissors",
)
NTU60_CLASSES: tuple[str, ...] = NTU120_CLASSES[:60]

PKU51_CLASSES: tuple[str, ...] = (
    "bow", "brushing hair", "brushing teeth", "check time (from watch)", "cheer up", "clapping",
    "cross hands in front (say stop)", "drink water", "drop", "eat meal/snack", "falling",
    "giving something to other person", "hand waving", "handshaking", "hopping (one foot jumping)",
    "hugging other person", "jump up", "kicking other person", "kicking something",
    "make a phone call/answer phone", "pat on back of other person", "pickup", "playing with phone/tablet",
    "point finger at the other person", "pointing to something with finger", "punching/slapping other person",
    "pushing other person", "put on a hat/cap", "put something inside pocket", "reading",
    "rub two hands together", "salute", "sitting down", "standing up", "take off a hat/cap",
    "take off glasses", "take off jacket", "take out something from pocket", "taking a selfie",
    "tear up paper", "throw", "touch back (backache)", "touch chest (stomachache/heart pain)",
    "touch head (headache)", "touch neck (neckache)", "typing on a keyboard",
    "use a fan (with hand or paper)/feeling warm", "wear jacket", "wear on glasses", "wipe face", "writing",
)

# Two-person (interaction) classes, 0-based labels: NTU A050-A060 and A106-A120.
NTU_TWO_PERSON: frozenset[int] = frozenset(list(range(49, 60)) + list(range(105, 120)))
PKU_TWO_PERSON: frozenset[int] = frozenset(
    i for i, n in enumerate(PKU51_CLASSES)
    if "other person" in n or n == "handshaking"
)

DATASET_CLASSES: dict[str, tuple[str, ...]] = {
    "ntu60": NTU60_CLASSES,
    "ntu120": NTU120_CLASSES,
    "pku1": PKU51_CLASSES,
}
TWO_PERSON: dict[str, frozenset[int]] = {
    "ntu60": frozenset(i for i in NTU_TWO_PERSON if i < 60),
    "ntu120": NTU_TWO_PERSON,
    "pku1": PKU_TWO_PERSON,
}


def classes_of(dataset: str) -> tuple[str, ...]:
    try:
        return DATASET_CLASSES[dataset]
    except KeyError:
        raise KeyError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASET_CLASSES)}") from None
