"""Synthetic NTU-60/120 and PKU-MMD stand-ins: formats, protocols, planted noise, determinism, motion sanity."""
from __future__ import annotations

import copy
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from star_repro.data import synth
from star_repro.data.classes import NTU120_CLASSES, PKU51_CLASSES, TWO_PERSON, classes_of
from star_repro.data.motion import PARTS, PRIMITIVES, Body, Variation, render, render_batch, rest_pose
from star_repro.data.motion_scripts import NTU_SCRIPTS, SCRIPTS, check_scripts
from star_repro.data.splits import ntu_protocol_indices, parse_pku_split_file, pku_protocol_indices
from star_repro.errors import ParamsError

# Small sizes that still exercise every irregularity often.
TINY = {
    "motion": copy.deepcopy(synth.DEMO_CFG["motion"]),
    "ntu": {"subjects_per_class": 2, "replications": 1, "frames": [14, 18], "short_body_fraction": 0.25,
            "spread_body_fraction": 0.25, "dropped_frame_fraction": 0.25, "max_dropped_frames": 3,
            "missing_per_archive": 3, "compress_level": 1},
    "pku": {"performances_per_class": 2, "actions_per_video": 6, "clip_frames": [12, 18], "gap_frames": [3, 6],
            "subjects": 5, "test_subjects": 2},
}
SEED = 7
NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")

# Protocols as published (STAR_SPEC §1.4).
NTU60_TRAIN = [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]
NTU120_TRAIN = NTU60_TRAIN + [45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85,
                              86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103]
PROTOCOLS = {
    "ntu60": {"xsub": {"by": "subject", "train": NTU60_TRAIN,
                       "test": [s for s in range(1, 41) if s not in NTU60_TRAIN]},
              "xview": {"by": "camera", "train": [2, 3], "test": [1]}},
    "ntu120": {"xsub": {"by": "subject", "train": NTU120_TRAIN,
                        "test": [s for s in range(1, 107) if s not in NTU120_TRAIN]},
               "xset": {"by": "setup", "train": list(range(2, 33, 2)), "test": list(range(1, 33, 2))}},
}
# Unknown-class lists of the paper's splits (STAR_SPEC §3.3).
SPLITS = {
    "ntu60": [[10, 11, 19, 26, 56], [3, 5, 9, 12, 15, 40, 42, 47, 51, 56, 58, 59], [4, 19, 31, 47, 51],
              [12, 29, 32, 44, 59], [7, 20, 28, 39, 58]],
    "ntu120": [[4, 13, 37, 43, 49, 65, 88, 95, 99, 106],
               [5, 9, 11, 16, 18, 20, 22, 29, 35, 39, 45, 49, 59, 68, 70, 81, 84, 87, 93, 94, 104, 113, 114, 119]],
    "pku1": [[1, 9, 20, 34, 50], [3, 7, 11, 15, 19, 21, 25, 31, 33, 36, 43, 48], [3, 14, 29, 31, 49],
             [2, 15, 39, 41, 43], [4, 12, 16, 22, 36]],
}


@pytest.fixture(scope="module")
def ntu60(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ntu60"
    return out, synth.write_ntu(out, "ntu60", TINY, SEED)


@pytest.fixture(scope="module")
def ntu120(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ntu120"
    return out, synth.write_ntu(out, "ntu120", TINY, SEED)


@pytest.fixture(scope="module")
def pku(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "pku1"
    return out, synth.write_pku(out, TINY, SEED)


def _entries(out: Path, manifest: dict) -> dict[str, bytes]:
    data = {}
    for arch in manifest["archives"]:
        with zipfile.ZipFile(out / arch) as zf:
            for info in zf.infolist():
                if not info.filename.endswith("/"):
                    data[info.filename] = zf.read(info)
    return data


# ------------------------------------------------------------------------------------------------ scripts
def test_every_class_has_a_six_part_script_and_no_two_are_alike():
    check_scripts()  # raises on a missing class, a wrong actor count or two identical scripts
    assert list(SCRIPTS["ntu120"]) == list(NTU120_CLASSES)
    assert set(SCRIPTS["pku1"]) == set(PKU51_CLASSES)
    for ds in ("ntu120", "pku1"):
        keys = [s.key() for s in SCRIPTS[ds].values()]
        assert len(set(keys)) == len(keys)
        for label, name in enumerate(classes_of(ds)):
            script = SCRIPTS[ds][name]
            assert len(script.actors) == (2 if label in TWO_PERSON[ds] else 1), name
            for a in script.actors:
                assert [p for p, _ in a.parts] == list(PARTS)
                for part, prims in a.parts:
                    assert prims, (name, part)
                    assert all(p.name in PRIMITIVES[part] for p in prims), (name, part)


def test_two_person_scripts_move_both_actors():
    pushing = NTU_SCRIPTS["pushing"]
    a1, a2 = pushing.actors
    assert any(p.name == "reach" and p.target == "p_chest" for p in a1.part("arm"))
    assert any(p.name == "move" and p.offset[2] < 0 for p in a2.part("hip"))  # the pushed one steps back
    J = render(pushing, [Body(), Body()], 40).joints
    start, end = J[1, 0, 0], J[1, -1, 0]
    assert np.linalg.norm(end[[0, 2]] - start[[0, 2]]) > 0.2


def _uses(script):
    return {(part, p.name) for a in script.actors for part, prims in a.parts for p in prims}


@pytest.mark.parametrize("ds", ["ntu60", "ntu120", "pku1"])
def test_unknown_classes_are_built_from_primitives_that_known_classes_use(ds):
    """The premise of zero-shot transfer through parts: what an unknown class's parts do was seen in training."""
    names = classes_of(ds)
    for unknown in SPLITS[ds]:
        known = set().union(*(_uses(SCRIPTS[ds][names[i]]) for i in range(len(names)) if i not in unknown))
        for u in unknown:
            assert _uses(SCRIPTS[ds][names[u]]) <= known, names[u]


def test_classes_differ_in_motion_not_only_in_script_text():
    feats = {}
    for name, s in NTU_SCRIPTS.items():
        J = render_batch(s, [tuple(Body() for _ in s.actors)], [30], [Variation()])[0].joints
        feats[name] = J - J[:, :1, :1]
    names = list(feats)
    closest = min(float(np.linalg.norm(feats[a] - feats[b], axis=-1).mean())
                  for i, a in enumerate(names) for b in names[i + 1:] if feats[a].shape == feats[b].shape)
    assert closest > 0.003  # metres, mean over joints and frames


# ------------------------------------------------------------------------------------------------ motion sanity
def test_drink_water_brings_the_hand_to_the_head_which_tips_back():
    J = render(NTU_SCRIPTS["drink water"], [Body()], 60).joints[0]
    hand_head = np.linalg.norm(J[:, 11] - J[:, 3], axis=1)  # right hand to head
    assert hand_head[0] > 0.5 and hand_head.min() < 0.15
    near = hand_head < 0.15
    ahead = (J[:, 3] - J[:, 2])[:, 2]  # how far the head is ahead of the neck (the body faces +z)
    assert ahead[near].min() < ahead[0] - 0.02  # while the hand is at the mouth, the head tips back


def test_sit_down_lowers_the_hip_and_stand_up_raises_it():
    sit = render(NTU_SCRIPTS["sit down"], [Body()], 50).joints[0]
    stand = render(NTU_SCRIPTS["stand up"], [Body()], 50).joints[0]
    assert sit[-1, 0, 1] < sit[0, 0, 1] - 0.25
    assert stand[-1, 0, 1] > stand[0, 0, 1] + 0.25
    assert abs(sit[-1, 18, 1] - sit[0, 18, 1]) < 0.03  # the feet stay on the floor


def test_jump_up_leaves_the_ground_and_hand_waving_raises_the_hand():
    jump = render(NTU_SCRIPTS["jump up"], [Body()], 60).joints[0]
    assert (jump[:, [14, 18], 1].min(axis=1) > jump[0, [14, 18], 1].min() + 0.1).any()
    wave = render(NTU_SCRIPTS["hand waving"], [Body()], 60).joints[0]
    above = wave[:, 11, 1] > wave[:, 8, 1]  # right hand above right shoulder
    assert above[25:35].all() and not above[0]
    assert np.ptp(wave[20:45, 11, 0]) > 0.08  # and it moves side to side


def test_bones_keep_their_length_and_bodies_scale():
    J = render(NTU_SCRIPTS["throw"], [Body(scale=1.1)], 40).joints[0]
    for a, b in ((8, 9), (9, 10), (16, 17), (17, 18), (0, 1)):
        length = np.linalg.norm(J[:, a] - J[:, b], axis=1)
        assert np.ptp(length) < 1e-6
    small, big = rest_pose(Body(scale=0.9)), rest_pose(Body(scale=1.1))
    assert big[3, 1] / small[3, 1] == pytest.approx(1.1 / 0.9, rel=1e-6)


def test_skeleton_proportions_resemble_real_kinect_data(real_data):
    from star_repro.data.ntu import denoise, parse_skeleton

    bones = ((8, 9), (9, 10), (16, 17), (17, 18), (4, 8), (0, 20))
    real = []
    for f in sorted((real_data / "ntu" / "skeletons").glob("S00*.skeleton"))[:8]:
        try:
            J = denoise(parse_skeleton(f.read_bytes(), f.name)).joints[:, :75].reshape(-1, 25, 3)
        except Exception:  # the 0-body samples of the missing list
            continue
        real.append([np.median(np.linalg.norm(J[:, a] - J[:, b], axis=1)) for a, b in bones])
    assert len(real) >= 5
    mine = rest_pose(Body())
    ratio = np.array([np.linalg.norm(mine[a] - mine[b]) for a, b in bones]) / np.median(real, axis=0)
    assert ((ratio > 0.75) & (ratio < 1.33)).all(), ratio


# ------------------------------------------------------------------------------------------------ formatting
def test_format_table_writes_kinect_style_and_fixed_decimals():
    v = np.array([[0.5, -0.00000004, 277.41900001, 2.0], [-1.25, 10.0, 1036.2334, 1.0], [0.0, -3.1415926, 0.04, 0.0]])
    text, lengths = synth.format_table(v, (7, 7, 3, 0))
    assert text == b"0.5 0 277.419 2\r\n-1.25 10 1036.233 1\r\n0 -3.1415926 0.04 0\r\n"
    assert lengths.tolist() == [len(x) + 2 for x in text.decode().split("\r\n")[:-1]]
    fixed, _ = synth.format_table(v[:, :2], (6, 6), strip=False, eol=b"\n")
    assert fixed == b"0.500000 0.000000\n-1.250000 10.000000\n0.000000 -3.141593\n"
    rng = np.random.default_rng(0)
    r = rng.normal(0, 3, (500, 3))
    rows = synth.format_table(r, (7, 4, 2))[0].decode().split("\r\n")[:-1]
    back = np.array([[float(x) for x in row.split(" ")] for row in rows])
    assert np.abs(back - r).max(axis=0).tolist() <= [0.5e-7 + 1e-12, 0.5e-4 + 1e-12, 0.5e-2 + 1e-12]


# ------------------------------------------------------------------------------------------------ NTU
def test_ntu_archives_are_named_and_laid_out_like_the_official_ones(ntu60, ntu120):
    out60, m60 = ntu60
    out120, m120 = ntu120
    assert sorted(p.name for p in out60.iterdir()) == [
        "NTU_RGBD_samples_with_missing_skeletons.txt", "manifest.json", "nturgbd_skeletons_s001_to_s017.zip"]
    assert sorted(p.name for p in out120.iterdir()) == [
        "NTU_RGBD120_samples_with_missing_skeletons.txt", "manifest.json", "nturgbd_skeletons_s001_to_s017.zip",
        "nturgbd_skeletons_s018_to_s032.zip"]
    for out, m in ((out60, m60), (out120, m120)):
        for arch in m["archives"]:
            with zipfile.ZipFile(out / arch) as zf:
                infos = zf.infolist()
            names = [i.filename for i in infos]
            assert names[0] == "nturgb+d_skeletons/" and names[1:] == sorted(names[1:])
            assert all(i.date_time == synth.ZIP_DATE for i in infos)
            setups, actions = set(), set()
            for n in names[1:]:
                assert n.startswith("nturgb+d_skeletons/") and n.endswith(".skeleton")
                s, c, p, r, a = (int(g) for g in NAME_RE.match(n[19:-9]).groups())
                setups.add(s)
                actions.add(a)
                assert c in (1, 2, 3) and r == 1
            lo = 1 if "s001" in arch else 18
            assert setups <= set(range(lo, lo + (17 if lo == 1 else 15)))
            assert actions == set(range(1, 61) if lo == 1 else range(61, 121))


def test_ntu_text_format_crlf_and_line_shapes(ntu60):
    out, m = ntu60
    data = _entries(out, m)
    assert len(data) == len(m["samples"]) == 60 * 2 * 3
    for name, raw in list(data.items())[:40] + list(data.items())[-40:]:
        assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
        lines = raw.decode().split("\r\n")[:-1]
        n_frames, i = int(lines[0]), 1
        for _ in range(n_frames):
            n_bodies = int(lines[i])
            i += 1
            for _ in range(n_bodies):
                info = lines[i].split(" ")
                assert len(info) == 10 and re.fullmatch(r"7205759403\d{7}", info[0])
                assert lines[i + 1] == "25"
                for j in range(25):
                    assert len(lines[i + 2 + j].split(" ")) == 12
                i += 27
        assert i == len(lines)


def test_ntu_protocols_have_every_class_on_both_sides(ntu60, ntu120):
    for ds, (out, m) in (("ntu60", ntu60), ("ntu120", ntu120)):
        names = sorted(n for n, r in m["samples"].items() if not r["missing"])
        meta = {k: np.array([m["samples"][n][k] for n in names]) for k in ("subject", "camera", "setup")}
        labels = np.array([m["samples"][n]["label"] for n in names])
        for proto, cfg in PROTOCOLS[ds].items():
            idx = ntu_protocol_indices(meta, cfg)
            for side in ("train", "test"):
                assert set(labels[idx[side]].tolist()) == set(range(len(classes_of(ds)))), (ds, proto, side)


def test_missing_list_names_exactly_the_zero_body_samples(ntu60, ntu120):
    for out, m in (ntu60, ntu120):
        text = (out / m["missing_list"]).read_text()
        lines = text.splitlines()
        assert lines[0] and lines[1]  # the two header lines
        listed = [x for x in lines[2:] if x.strip()]
        zero = []
        for fname, raw in _entries(out, m).items():
            lines_ = raw.decode().split("\r\n")[:-1]
            if all(x == "0" for x in lines_[1:]):
                zero.append(fname.split("/")[-1][:-9])
        assert sorted(listed) == sorted(zero) == m["missing"]
        assert len(listed) == 3 * len(m["archives"])


def test_planted_noise_is_exactly_what_the_denoiser_removes(ntu120):
    """NTU-120 holds NTU-60's archive too (byte-identical, tested below), so this covers both."""
    from star_repro.data.ntu import MissingSkeletonError, denoise, parse_skeleton

    seen = {"length": 0, "spread": 0, "dropped": 0, "two": 0}
    for out, m in (ntu120,):
        for fname, raw in _entries(out, m).items():
            name = fname.split("/")[-1][:-9]
            rec = m["samples"][name]
            if rec["missing"]:
                with pytest.raises(MissingSkeletonError):
                    denoise(parse_skeleton(raw, fname))
                continue
            skel = parse_skeleton(raw, fname)
            res = denoise(skel)
            assert res.removed == rec["noise_bodies"], name
            assert sorted(res.kept) == sorted(rec["bodies"]), name
            assert skel.dropped_frames == rec["dropped_frames"], name
            assert len(rec["bodies"]) == (2 if rec["label"] in TWO_PERSON["ntu120"] else 1), name
            for why in rec["noise_bodies"].values():
                seen[why] += 1
            seen["dropped"] += bool(rec["dropped_frames"])
            seen["two"] += res.actors == 2
    assert min(seen.values()) > 10, seen


def test_ntu_is_deterministic_and_ntu120_shares_the_first_archive(ntu60, ntu120):
    """The two fixtures generate S001-S017 independently (NTU-120 without `reuse`): same seed, same bytes, as
    the real NTU-120 release contains NTU-60's archive. (S018-S032 is generated twice in the next test.)"""
    arch = "nturgbd_skeletons_s001_to_s017.zip"
    assert (ntu120[0] / arch).read_bytes() == (ntu60[0] / arch).read_bytes()
    assert ntu120[1]["archives"][arch] == ntu60[1]["archives"][arch]
    assert {n: r for n, r in ntu120[1]["samples"].items() if r["setup"] <= 17} == ntu60[1]["samples"]
    assert synth._ntu_class_plan(SEED + 1, 0, TINY["ntu"], TINY["motion"])[0].variation != \
        synth._ntu_class_plan(SEED, 0, TINY["ntu"], TINY["motion"])[0].variation


def test_ntu120_reusing_ntu60_gives_the_same_files(ntu60, ntu120, tmp_path):
    """`reuse` copies NTU-60's archive instead of generating it again; the result must not change."""
    out = tmp_path / "ntu120"
    synth.write_ntu(out, "ntu120", TINY, SEED, reuse=ntu60[0])
    for f in ntu120[0].iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes(), f.name
    other = copy.deepcopy(TINY)
    other["ntu"]["frames"] = [15, 18]  # a different config must not reuse (the archive would differ)
    assert synth._reusable(ntu60[0], SEED, {"motion": other["motion"], "ntu": other["ntu"]}) is None


def test_replications_repeat_a_subject_in_its_setup_with_new_variation():
    ntu = dict(TINY["ntu"], subjects_per_class=3, replications=2)
    perfs = synth._ntu_class_plan(SEED, 65, ntu, TINY["motion"])
    assert len(perfs) == 6 and [p.replication for p in perfs] == [1, 2] * 3
    for a, b in zip(perfs[::2], perfs[1::2]):
        assert (a.subject, a.setup) == (b.subject, b.setup) and a.variation != b.variation
        assert b.names == [n.replace("R001", "R002") for n in a.names]
    assert all(18 <= p.setup <= 32 for p in perfs)  # NTU-120's new classes live in setups 18-32


def test_bench_files_are_loose_valid_skeletons(tmp_path):
    from star_repro.data.ntu import parse_skeleton

    paths = synth.generate_ntu_bench_files(tmp_path, 7, seed=1, frames=(20, 30))
    assert len(paths) == 7 and len({p.name for p in paths}) == 7
    for p in paths:
        assert NAME_RE.match(p.stem)
        skel = parse_skeleton(p.read_bytes(), str(p))
        assert 20 <= skel.num_frames + len(skel.dropped_frames) <= 30 and skel.bodies


# ------------------------------------------------------------------------------------------------ PKU
def test_pku_files_labels_and_splits(pku):
    from star_repro.data.pku import cut_clips, read_label_file, read_skeleton_file

    out, m = pku
    videos = sorted(p.stem for p in (out / "skeletons").iterdir())
    assert videos == sorted(p.stem for p in (out / "labels").iterdir())
    assert all(re.fullmatch(r"0\d{3}-[LMR]", v) for v in videos) and len(videos) == 3 * len(m["videos"])
    clip_videos, clip_labels = [], []
    for v in videos:
        raw = (out / "skeletons" / f"{v}.txt").read_bytes()
        assert b"\r" not in raw
        skel = read_skeleton_file(raw, v)
        rows = read_label_file((out / "labels" / f"{v}.txt").read_bytes(), v, len(skel))
        assert rows and all(b.start > a.end + 1 for a, b in zip(rows, rows[1:]))  # gaps between actions
        assert rows[-1].end < len(skel)
        two = m["videos"][v[:4]]["partner"] is not None
        for clip in cut_clips(skel, rows, v, v):
            assert bool(np.abs(clip.data[..., 1]).sum() > 0) == two
            assert (clip.label in TWO_PERSON["pku1"]) == two
            clip_videos.append(v)
            clip_labels.append(clip.label)
    labels = np.array(clip_labels)
    for fname in ("cross-subject.txt", "cross-view.txt"):
        lines = (out / fname).read_text().split("\n")
        assert len(lines) == 5 and lines[4] == ""
        split = parse_pku_split_file(out / fname)
        idx = pku_protocol_indices(clip_videos, split)
        for side in ("train", "test"):
            assert set(labels[idx[side]].tolist()) == set(range(51)), (fname, side)
    view = parse_pku_split_file(out / "cross-view.txt")
    assert {v[-1] for v in view["train"]} == {"L", "R"} and {v[-1] for v in view["test"]} == {"M"}


def test_pku_is_deterministic(pku, tmp_path):
    out, m = pku
    again = tmp_path / "pku1"
    synth.write_pku(again, TINY, SEED)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (again / f).read_bytes() == (out / f).read_bytes(), f


# ------------------------------------------------------------------------------------------------ params
def test_bad_params_name_the_key():
    cfg = copy.deepcopy(TINY)
    del cfg["ntu"]["frames"]
    with pytest.raises(ParamsError, match=r"synth\.ntu: missing keys \['frames'\]"):
        synth.write_ntu("/nonexistent/never", "ntu60", cfg, 0)
    cfg = copy.deepcopy(TINY)
    cfg["ntu"]["subjects_per_class"] = 1
    with pytest.raises(ParamsError, match=r"synth\.ntu\.subjects_per_class"):
        synth.write_ntu("/nonexistent/never", "ntu60", cfg, 0)
    cfg = copy.deepcopy(TINY)
    cfg["pku"]["clip_frames"] = [30, 10]
    with pytest.raises(ParamsError, match=r"synth\.pku\.clip_frames"):
        synth.write_pku("/nonexistent/never", cfg, 0)
    cfg = copy.deepcopy(TINY)
    cfg["motion"]["colour"] = 1
    with pytest.raises(ParamsError, match=r"synth\.motion: unknown keys \['colour'\]"):
        synth.write_pku("/nonexistent/never", cfg, 0)


def test_manifest_matches_the_returned_one(ntu60, pku):
    for out, m in (ntu60, pku):
        assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(m))


def test_extra_test_subjects_add_test_samples_only():
    """`test_subjects_per_class` adds cross-subject test performers; the training performers (and the plan of a
    config without the key) stay as they were."""
    plain = synth._ntu_class_plan(SEED, 10, dict(TINY["ntu"], subjects_per_class=4), TINY["motion"])
    more = synth._ntu_class_plan(SEED, 10, dict(TINY["ntu"], subjects_per_class=4, test_subjects_per_class=6),
                                 TINY["motion"])
    train_of = lambda perfs: [p.subject for p in perfs if p.subject in NTU60_TRAIN]  # noqa: E731
    test_of = lambda perfs: [p.subject for p in perfs if p.subject not in NTU60_TRAIN]  # noqa: E731
    assert len(train_of(plain)) == 2 and len(test_of(plain)) == 2
    assert train_of(more) == train_of(plain) and len(set(test_of(more))) == 6
    same = synth._ntu_class_plan(SEED, 10, dict(TINY["ntu"], subjects_per_class=4, test_subjects_per_class=None),
                                 TINY["motion"])
    assert [p.names for p in same] == [p.names for p in plain]
    bad = copy.deepcopy(TINY)
    bad["ntu"]["test_subjects_per_class"] = 0
    with pytest.raises(ParamsError, match=r"synth\.ntu\.test_subjects_per_class"):
        synth._section(bad, "ntu")


def test_paper_size_plan_has_the_real_archives_structure_and_counts():
    """`synth.size: paper` plans NTU-60 56,880 / NTU-120 114,480 samples laid out like the real release, with
    the official lists' missing counts, and PKU-MMD Phase I at full size (nothing is written here)."""
    from star_repro.data.ntu import NTU_ARCHIVES

    cfg = copy.deepcopy(TINY) | {"size": "paper"}
    motion, ntu = synth._section(cfg, "motion"), synth._section(cfg, "ntu")
    plans = {label: synth._ntu_class_plan_paper(SEED, label, motion) for label in range(120)}
    names = [n for label in range(60) for p in plans[label] for n in p.names]
    assert len(names) == len(set(names)) == 56_880
    metas = [synth.parse_ntu_name(n) for n in names]
    for key, count in (("subject", 40), ("setup", 17), ("camera", 3), ("replication", 2)):
        assert len({m[key] for m in metas}) == count
    assert sum(len(p.names) for label in plans for p in plans[label]) == 114_480
    frames = np.array([p.frames for label in plans for p in plans[label]])
    assert frames.min() >= 32 and frames.max() == 300
    assert 0.85 < np.mean((frames >= 40) & (frames <= 150)) < 0.97  # mostly 40-150, a tail up to 300
    missing = [n for arch in NTU_ARCHIVES["ntu120"] for n in synth._ntu_missing(SEED, arch, plans, ntu, "paper")]
    assert len(set(missing)) == 535 and sum(synth.parse_ntu_name(n)["setup"] <= 17 for n in missing) == 302
    videos = synth._pku_plan(SEED, synth.PAPER_PKU, motion)
    clips = sum(len(v.perfs) for v in videos)
    assert 1_060 <= 3 * len(videos) <= 1_090 and 21_000 <= 3 * clips <= 22_000
    assert len({v.subject for v in videos}) == 66


def test_size_must_be_demo_or_paper():
    with pytest.raises(ParamsError, match=r"synth\.size: expected one of \['demo', 'paper'\]"):
        synth.write_pku("/nonexistent/never", copy.deepcopy(TINY) | {"size": "huge"}, 0)
