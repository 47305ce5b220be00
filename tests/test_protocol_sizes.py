"""Protocol split logic on the full available-sample lists: the standard CTR-GCN split sizes, without skeletons."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from star_repro.data.ntu import parse_sample_name
from star_repro.data.prepare import read_missing_list
from star_repro.data.splits import ntu_protocol_indices, parse_pku_split_file
from protocol_lists import PROTOCOLS

pytestmark = pytest.mark.real_data

SIZES = {"ntu60": {"xsub": (40091, 16487), "xview": (37646, 18932)},
         "ntu120": {"xsub": (63026, 50919), "xset": (54468, 59477)}}
TOTALS = {"ntu60": 56578, "ntu120": 113945}


@functools.lru_cache(maxsize=None)
def _meta(real_data, dataset):
    path = real_data / "ntu" / "lists" / f"{dataset}_available" / "skes_available_name.txt"
    names = [n for n in path.read_text().split() if n]
    parsed = [parse_sample_name(n) for n in names]
    return names, {k: np.array([p[k] for p in parsed]) for k in ("setup", "camera", "subject", "replication")}


@pytest.mark.parametrize("dataset", ["ntu60", "ntu120"])
def test_standard_split_sizes(real_data, dataset):
    names, meta = _meta(real_data, dataset)
    assert len(names) == TOTALS[dataset] and names == sorted(names)
    for proto, (n_train, n_test) in SIZES[dataset].items():
        idx = ntu_protocol_indices(meta, PROTOCOLS[dataset][proto])
        assert (len(idx["train"]), len(idx["test"])) == (n_train, n_test), proto
        assert len(np.intersect1d(idx["train"], idx["test"])) == 0
        # published order: grouped by the id list's order, file order inside a group
        key = {"xsub": "subject", "xview": "camera", "xset": "setup"}[proto]
        ids = PROTOCOLS[dataset][proto]["train"]
        groups = meta[key][idx["train"]]
        assert [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g] == [i for i in ids if i in set(groups)]
        for g in ids[:3]:
            members = idx["train"][groups == g]
            assert (np.diff(members) > 0).all()


@pytest.mark.parametrize("dataset,total", [("ntu60", 56880), ("ntu120", 114480)])
def test_available_lists_are_all_names_minus_the_missing_lists(real_data, dataset, total):
    names, _ = _meta(real_data, dataset)
    list_name = {"ntu60": "NTU_RGBD_samples_with_missing_skeletons.txt",
                 "ntu120": "NTU_RGBD120_samples_with_missing_skeletons.txt"}[dataset]
    missing = read_missing_list(real_data / "ntu" / "lists" / list_name)
    assert len(missing) == {"ntu60": 302, "ntu120": 535}[dataset]
    assert not set(missing) & set(names) and len(names) + len(missing) == total


def test_pku_split_files(real_data):
    videos = sorted(p.stem for p in (real_data / "pku" / "labels").glob("*.txt"))
    assert len(videos) == 1076
    xsub = parse_pku_split_file(real_data / "pku" / "cross-subject.txt")
    xview = parse_pku_split_file(real_data / "pku" / "cross-view.txt")
    for split in (xsub, xview):
        assert sorted(split["train"] + split["test"]) == videos  # every video on exactly one side
    assert (len(xsub["train"]), len(xsub["test"])) == (944, 132)
    assert {v[-1] for v in xview["train"]} == {"L", "R"} and {v[-1] for v in xview["test"]} == {"M"}
    # cross-subject: all views of one recording (same subject) fall on the same side
    sides: dict[str, set] = {}
    for part in ("train", "test"):
        for v in xsub[part]:
            sides.setdefault(v[:4], set()).add(part)
    assert all(len(s) == 1 for s in sides.values())
