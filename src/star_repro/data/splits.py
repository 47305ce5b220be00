"""Protocol splits and known/unknown class splits; the one gate every training stage passes through.

Protocol membership (which samples are train/test) is computed here from sample metadata, in the order the
published scripts produce it (STAR_SPEC §1.4): samples are grouped by the ID list in its given order, and kept in
file order inside a group. The ID lists themselves are data in params.yaml (`protocols`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from star_repro.errors import LeakError, StarReproError


def _grouped(values: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    parts = [np.flatnonzero(values == i) for i in ids]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def ntu_protocol_indices(meta: Mapping[str, np.ndarray], protocol_cfg: Mapping) -> dict[str, np.ndarray]:
    """Train/test indices for one NTU protocol.

    `protocol_cfg` is one entry of params `protocols.<dataset>.<protocol>`: `{"by": "subject"|"camera"|"setup",
    "train": [ids], "test": [ids]}`. Returned indices follow the published grouping order.
    """
    by = protocol_cfg["by"]
    if by not in ("subject", "camera", "setup"):
        raise StarReproError(f"protocol 'by' must be subject, camera or setup, got {by!r}")
    values = np.asarray(meta[by])
    train = _grouped(values, protocol_cfg["train"])
    test = _grouped(values, protocol_cfg["test"])
    covered = np.zeros(len(values), bool)
    covered[train] = True
    covered[test] = True
    if not covered.all():
        stray = sorted(set(np.asarray(values)[~covered].tolist()))
        raise StarReproError(f"{by} ids {stray[:10]} are in neither the train nor the test list of the protocol")
    return {"train": train, "test": test}


def parse_pku_split_file(path) -> dict[str, list[str]]:
    """PKU-MMD split file: header, comma-separated train videos, header, comma-separated test videos.

    UTF-8 text (an error names the file, line and encoding); every listed name must be a video name like
    0002-L, and no video may be on both lists.
    """
    from star_repro.data.pku import VIDEO_RE
    from star_repro.errors import InputFormatError
    from star_repro.io import read_text

    lines = read_text(path).splitlines()
    if len(lines) < 4:
        raise InputFormatError(path, len(lines) + 1,
                               "expected 4 lines: header, training videos, header, testing videos")
    lists = {}
    for key, line_no in (("train", 2), ("test", 4)):
        names = [v.strip() for v in lines[line_no - 1].split(",") if v.strip()]
        bad = [v for v in names if not VIDEO_RE.match(v)]
        if bad:
            raise InputFormatError(path, line_no, f"{bad[0][:40]!r} is not a PKU-MMD video name: expected "
                                                  "comma-separated names like 0002-L")
        lists[key] = names
    train, test = lists["train"], lists["test"]
    both = sorted(set(train) & set(test))
    if both:
        raise InputFormatError(path, 2, f"videos listed for both training and testing: {both[:5]}")
    return {"train": train, "test": test}


def pku_protocol_indices(videos: Sequence[str], split: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """A clip is train when its video is in the training list, test otherwise (the published rule)."""
    train_set = set(split["train"])
    is_train = np.array([v in train_set for v in videos], bool)
    return {"train": np.flatnonzero(is_train).astype(np.int64),
            "test": np.flatnonzero(~is_train).astype(np.int64)}


class ClassSplit:
    """A known/unknown class split (STAR_SPEC §3.3). Known classes are kept sorted ascending, as the code does."""

    def __init__(self, name: str, num_classes: int, unknown: Sequence[int]):
        unknown = [int(u) for u in unknown]
        bad = [u for u in unknown if not 0 <= u < num_classes]
        if bad:
            raise StarReproError(f"split {name}: unknown classes {bad} outside 0..{num_classes - 1}")
        if len(set(unknown)) != len(unknown):
            raise StarReproError(f"split {name}: unknown classes repeat: {unknown}")
        self.name = name
        self.num_classes = num_classes
        self.unknown = tuple(unknown)  # in the order given (ZSL label positions follow it)
        self.known = tuple(sorted(set(range(num_classes)) - set(unknown)))
        self._known_pos = np.full(num_classes, -1, np.int64)
        self._known_pos[list(self.known)] = np.arange(len(self.known))
        self._unknown_pos = np.full(num_classes, -1, np.int64)
        self._unknown_pos[list(self.unknown)] = np.arange(len(self.unknown))

    @classmethod
    def from_params(cls, name: str, cfg: Mapping, num_classes: int) -> "ClassSplit":
        return cls(name, num_classes, cfg["unknown"])

    def is_known(self, labels: np.ndarray) -> np.ndarray:
        return self._known_pos[np.asarray(labels)] >= 0

    def known_position(self, labels: np.ndarray) -> np.ndarray:
        """Original label -> position in the sorted known list (training targets)."""
        pos = self._known_pos[np.asarray(labels)]
        if (pos < 0).any():
            raise LeakError(f"split {self.name}: labels {sorted(set(np.asarray(labels)[pos < 0].tolist()))} "
                            "are unknown classes and have no known-class position")
        return pos

    def unknown_position(self, labels: np.ndarray) -> np.ndarray:
        """Original label -> position in the unknown list (ZSL targets)."""
        pos = self._unknown_pos[np.asarray(labels)]
        if (pos < 0).any():
            raise StarReproError(f"split {self.name}: labels are not unknown classes")
        return pos


def training_indices(labels: np.ndarray, protocol_train: np.ndarray, split: ClassSplit) -> np.ndarray:
    """The samples a stage may train on: protocol training samples of known classes only.

    Every training stage selects its data through this function; it re-checks its own result so that a bug
    upstream cannot let an unknown-class sample through.
    """
    protocol_train = np.asarray(protocol_train, np.int64)
    chosen = protocol_train[split.is_known(labels[protocol_train])]
    assert_no_unknown(labels[chosen], split)
    return chosen


def assert_no_unknown(train_labels: np.ndarray, split: ClassSplit) -> None:
    leaked = ~split.is_known(np.asarray(train_labels))
    if leaked.any():
        classes = sorted(set(np.asarray(train_labels)[leaked].tolist()))
        raise LeakError(f"split {split.name}: {int(leaked.sum())} samples of unknown classes {classes} "
                        "would reach training")


def evaluation_indices(labels: np.ndarray, protocol_test: np.ndarray, split: ClassSplit, setting: str) -> np.ndarray:
    """ZSL: test samples of unknown classes; GZSL: all test samples (STAR_SPEC §3.1)."""
    protocol_test = np.asarray(protocol_test, np.int64)
    if setting == "zsl":
        return protocol_test[~split.is_known(labels[protocol_test])]
    if setting == "gzsl":
        return protocol_test
    raise StarReproError(f"evaluation setting must be 'zsl' or 'gzsl', got {setting!r}")
