"""NTU protocol id lists of STAR_SPEC §1.4 (the same values as params.yaml `protocols`), for tests."""
from __future__ import annotations

NTU60_XSUB_TRAIN = [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]
NTU60_XSUB_TEST = [3, 6, 7, 10, 11, 12, 20, 21, 22, 23, 24, 26, 29, 30, 32, 33, 36, 37, 39, 40]
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN + [45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82,
                                        83, 84, 85, 86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103]
NTU120_XSUB_TEST = [s for s in range(1, 107) if s not in NTU120_XSUB_TRAIN]

PROTOCOLS = {
    "ntu60": {
        "xsub": {"by": "subject", "train": NTU60_XSUB_TRAIN, "test": NTU60_XSUB_TEST},
        "xview": {"by": "camera", "train": [2, 3], "test": [1]},
    },
    "ntu120": {
        "xsub": {"by": "subject", "train": NTU120_XSUB_TRAIN, "test": NTU120_XSUB_TEST},
        "xset": {"by": "setup", "train": list(range(2, 33, 2)), "test": list(range(1, 32, 2))},
    },
    "pku1": {"xsub": {"split_file": "cross-subject.txt"}, "xview": {"split_file": "cross-view.txt"}},
}
