"""The published NTU procedure (STAR_SPEC §1) written the way the published scripts are written: the speed
baseline of `star-repro bench prepare --real` and an independent cross-check of `prepare`'s output.

Three steps, each a pass over all samples with its results kept in memory and pickled for the next step, as
the three published scripts do (`get_raw_skes_data`, `get_raw_denoised_data`, `seq_transformation`):

- `read_skeleton`: one `readline` per line, `split`, a small NumPy array per joint line;
- `denoise`: per-body filters with a Python loop over frames (spread test, placement, missing-frame removal);
- `translate_and_align`: a loop over frames for the origin and the translation, then one (N, 300, 150) array;
- `write_npz`: per protocol, `x_*` (N, 300, 150) float32 and one-hot `y_*` float64, saved with `np.savez`.

Written here from the spec, not taken from the published code. It has no error handling beyond what the
published scripts have: feed it only valid, non-missing files. `prepare` (`star_repro.data.ntu`) is the
pipeline's implementation; a test checks the two agree bit for bit on the real files.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from star_repro.data.ntu import (MAX_FRAMES, NOISE_LEN_THRES, NOISE_SPR_THRES1, NOISE_SPR_THRES2,
                                 parse_sample_name)


def read_skeleton(path: str | Path) -> dict:
    """{"name", "data": {body_id: {"joints" (n*25, 3), "colors" (n, 25, 2), "interval", ["motion"]}},
    "num_frames"} of one file, read line by line."""
    bodies: dict[str, dict] = {}
    with open(path, "r") as fr:
        n_frames = int(fr.readline())
        valid = -1
        n_dropped = 0
        for _ in range(n_frames):
            n_bodies = int(fr.readline())
            if n_bodies == 0:
                n_dropped += 1
                continue
            valid += 1
            for _b in range(n_bodies):
                body_id = fr.readline().split()[0]
                n_joints = int(fr.readline())
                joints = np.zeros((n_joints, 3), np.float32)
                colors = np.zeros((n_joints, 2), np.float32)
                for j in range(n_joints):
                    tokens = fr.readline().split()
                    joints[j] = np.array(tokens[:3], dtype=np.float32)
                    colors[j] = np.array(tokens[5:7], dtype=np.float32)
                body = bodies.get(body_id)
                if body is None:
                    bodies[body_id] = {"joints": joints, "colors": colors[None], "interval": [valid]}
                else:
                    body["joints"] = np.vstack((body["joints"], joints))
                    body["colors"] = np.vstack((body["colors"], colors[None]))
                    body["interval"].append(body["interval"][-1] + 1)
    if len(bodies) > 1:
        for body in bodies.values():
            body["motion"] = np.sum(np.var(body["joints"], axis=0))
    return {"name": Path(path).name.split(".")[0], "data": bodies, "num_frames": n_frames - n_dropped}


def _spread_valid_frames(joints: np.ndarray) -> list[int]:
    """Frames whose x-extent is at most 0.8 x the y-extent; compared in float64 like NumPy 1.x did."""
    points = joints.reshape(-1, 25, 3)
    valid = []
    for f in range(points.shape[0]):
        x = points[f, :, 0]
        y = points[f, :, 1]
        if float(x.max() - x.min()) <= NOISE_SPR_THRES1 * float(y.max() - y.min()):
            valid.append(f)
    return valid


def _place(out: np.ndarray, body: dict, first_col: int) -> None:
    points = body["joints"].reshape(-1, 75)
    for k, f in enumerate(range(body["interval"][0], body["interval"][-1] + 1)):
        out[f, first_col:first_col + 75] = points[k]


def denoise(sample: dict) -> np.ndarray:
    """(T, 75) or (T, 150) float32: the actors of one sample, selected and placed frame by frame."""
    bodies = sample["data"]
    n = sample["num_frames"]
    if len(bodies) == 1:
        out = np.zeros((n, 75), np.float32)
        _place(out, next(iter(bodies.values())), 0)
        return out
    left = {b: d for b, d in bodies.items() if len(d["interval"]) > NOISE_LEN_THRES}
    for body_id in list(left):
        if len(left) == 1:
            break
        body = left[body_id]
        valid = _spread_valid_frames(body["joints"])
        n_all = len(body["interval"])
        if n_all - len(valid) == 0:
            continue
        if (n_all - len(valid)) / float(n_all) >= NOISE_SPR_THRES2:
            del left[body_id]
        else:
            kept = body["joints"].reshape(-1, 25, 3)[valid].reshape(-1, 3)
            body["motion"] = min(body["motion"], np.sum(np.var(kept, axis=0)))
    ranked = sorted(left.items(), key=lambda kv: kv[1]["motion"], reverse=True)
    if len(ranked) == 1:
        out = np.zeros((n, 75), np.float32)
        _place(out, ranked[0][1], 0)
    else:
        out = np.zeros((n, 150), np.float32)
        _place(out, ranked[0][1], 0)
        s1, e1 = ranked[0][1]["interval"][0], ranked[0][1]["interval"][-1]
        s2 = e2 = 0
        for _, body in ranked[1:]:
            s, e = body["interval"][0], body["interval"][-1]
            if min(e1, e) - max(s1, s) <= 0:
                _place(out, body, 0)
                s1, e1 = min(s, s1), max(e, e1)
            elif min(e2, e) - max(s2, s) <= 0:
                _place(out, body, 75)
                s2, e2 = min(s, s2), max(e, e2)
    keep = [f for f in range(out.shape[0]) if out[f].sum() != 0]  # remove_missing_frames
    return out[keep] if len(keep) < out.shape[0] else out


def translate_and_align(samples: list[np.ndarray], dataset: str) -> np.ndarray:
    """Centre each sample on actor 1's spine-mid joint in its first non-zero frame (frame by frame), re-zero
    each actor's missing frames, then stack into one zero-padded (N, 300, 150) array."""
    aligned = np.zeros((len(samples), MAX_FRAMES, 150), np.float32)
    for idx, joints in enumerate(samples):
        joints = joints.copy()
        t, width = joints.shape
        if width == 150:
            miss1 = [f for f in range(t) if joints[f, :75].sum() == 0]
            miss2 = [f for f in range(t) if joints[f, 75:].sum() == 0]
        i = 0
        while i < t and not np.any(joints[i, :75] != 0):
            i += 1
        origin = joints[i, 3:6].copy()
        shift = np.tile(origin, width // 3)
        for f in range(t):
            joints[f] -= shift
        if width == 150:
            for f in miss1:
                joints[f, :75] = 0
            for f in miss2:
                joints[f, 75:] = 0
            aligned[idx, :t] = joints
        elif dataset == "ntu120":
            aligned[idx, :t] = np.hstack((joints, joints))
        else:
            aligned[idx, :t] = np.hstack((joints, np.zeros_like(joints)))
    return aligned


def write_npz(aligned: np.ndarray, names: list[str], protocols: dict, n_classes: int, out_dir: Path) -> list[Path]:
    """One `.npz` per protocol; sample order inside a split follows the protocol's id list, then file order."""
    meta = [parse_sample_name(n) for n in names]
    labels = np.array([m["action"] - 1 for m in meta])
    paths = []
    for proto, cfg in protocols.items():
        by = np.array([m[cfg["by"]] for m in meta])
        parts = {}
        for side in ("train", "test"):
            idx = np.concatenate([np.flatnonzero(by == v) for v in cfg[side]]).astype(np.int64)
            y = np.zeros((len(idx), n_classes))
            y[np.arange(len(idx)), labels[idx]] = 1
            parts[f"x_{side}"], parts[f"y_{side}"] = aligned[idx], y
        path = out_dir / f"{proto}.npz"
        np.savez(path, **parts)
        paths.append(path)
    return paths


def run(files: list[Path], out_dir: Path, dataset: str, protocols: dict, n_classes: int) -> np.ndarray:
    """The whole procedure on `files` (sorted by name): raw pickle, denoised pickle, npz per protocol.
    Returns the aligned (N, 300, 150) array."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = [read_skeleton(f) for f in files]
    with open(out_dir / "raw_skes_data.pkl", "wb") as fh:
        pickle.dump(raw, fh, pickle.HIGHEST_PROTOCOL)
    del raw
    with open(out_dir / "raw_skes_data.pkl", "rb") as fh:
        raw = pickle.load(fh)
    denoised = [denoise(s) for s in raw]
    names = [s["name"] for s in raw]
    del raw
    with open(out_dir / "raw_denoised_joints.pkl", "wb") as fh:
        pickle.dump(denoised, fh, pickle.HIGHEST_PROTOCOL)
    del denoised
    with open(out_dir / "raw_denoised_joints.pkl", "rb") as fh:
        denoised = pickle.load(fh)
    aligned = translate_and_align(denoised, dataset)
    write_npz(aligned, names, protocols, n_classes, out_dir)
    return aligned
