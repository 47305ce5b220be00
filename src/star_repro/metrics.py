"""ZSL / GZSL metrics with calibrated stacking (paper Eq. 9, STAR_SPEC §7). Accuracies are in percent.

All accuracies are per-sample (micro), as the authors compute them. GZSL predicts over all classes after
subtracting γ from the known classes' scores; S and U are the accuracies on test samples of known and unknown
classes, H = 2SU/(S+U) (0 when both are 0).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The γ list hard-coded in the authors' mains (STAR_SPEC §7) plus the paper's Table 1 values.
AUTHORS_GAMMA_GRID: tuple[float, ...] = (
    0.0, 0.001, 0.005, 0.010, 0.011, 0.012, 0.013, 0.014, 0.015,
    *[round(0.020 + 0.005 * i, 3) for i in range(16)],  # 0.020 … 0.095
    0.25, 0.5, 0.75,
)
PAPER_TABLE1_GAMMA: dict[str, float] = {"ntu60": 0.012, "ntu120": 0.069, "pku1": 0.022}
DEFAULT_GAMMA_GRID: tuple[float, ...] = tuple(sorted(set(AUTHORS_GAMMA_GRID) | set(PAPER_TABLE1_GAMMA.values())))


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Top-1 in percent; 0 for an empty set (nothing to be right about is reported as 0, with its count elsewhere)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if len(target) == 0:
        return 0.0
    return float(100.0 * np.mean(pred == target))


def harmonic_mean(s: float, u: float) -> float:
    return 0.0 if s + u == 0 else 2.0 * s * u / (s + u)


def zsl_predict(scores_unknown: np.ndarray) -> np.ndarray:
    """Argmax over the unknown classes' columns (positions in the unknown list)."""
    return np.asarray(scores_unknown).argmax(1)


def zsl_top1(scores_unknown: np.ndarray, target_pos: np.ndarray) -> float:
    return accuracy(zsl_predict(scores_unknown), target_pos)


def calibrated_predict(scores: np.ndarray, known_mask: np.ndarray, gamma: float) -> np.ndarray:
    """pred = argmax_a (score[a] − γ·1[a known]) over all classes (calibrated stacking)."""
    scores = np.asarray(scores, np.float64)
    return (scores - gamma * np.asarray(known_mask, np.float64)[None, :]).argmax(1)


def gzsl_metrics(scores: np.ndarray, labels: np.ndarray, known_mask: np.ndarray, gamma: float) -> dict:
    """S, U, H (percent) for all-class scores (N, C) and original labels (N,)."""
    labels = np.asarray(labels)
    known_mask = np.asarray(known_mask, bool)
    pred = calibrated_predict(scores, known_mask, gamma)
    seen = known_mask[labels]
    s = accuracy(pred[seen], labels[seen])
    u = accuracy(pred[~seen], labels[~seen])
    return {"gamma": float(gamma), "seen": s, "unseen": u, "h": harmonic_mean(s, u),
            "n_seen": int(seen.sum()), "n_unseen": int((~seen).sum())}


def gamma_sweep(scores: np.ndarray, labels: np.ndarray, known_mask: np.ndarray,
                gammas: Sequence[float]) -> list[dict]:
    return [gzsl_metrics(scores, labels, known_mask, g) for g in gammas]


def best_gamma(sweep: Sequence[dict]) -> dict:
    """Highest H; ties go to the smaller γ (the first in sorted order)."""
    rows = sorted(sweep, key=lambda r: r["gamma"])
    return max(rows, key=lambda r: r["h"])


def gamma_for_unknown_rate(scores: np.ndarray, known_mask: np.ndarray, rate: float) -> float:
    """γ chosen on known-class validation samples only, so that a fraction `rate` of them goes to unknown classes.

    A sample moves to an unknown class once γ exceeds its margin (best known score − best unknown score). With
    the margins sorted, γ is the midpoint between the k-th and (k+1)-th smallest, k = floor(rate·n), so exactly
    the k smallest move (ties at the boundary stay); 0 when margins below 0 already give that share. `rate` is
    the share of known-class samples one accepts to lose in exchange for recovering unknown-class samples; no
    test data is involved.
    """
    scores = np.asarray(scores, np.float64)
    known_mask = np.asarray(known_mask, bool)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"gamma_val_rate must be in [0, 1), got {rate}")
    if len(scores) == 0:
        raise ValueError("no validation samples to choose γ on")
    margin = np.sort(scores[:, known_mask].max(1) - scores[:, ~known_mask].max(1))
    k = int(np.floor(rate * len(margin)))
    if k == 0:
        return 0.0
    if margin[k - 1] < 0:
        return 0.0
    return float(0.5 * (margin[k - 1] + margin[k]))


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> list[dict]:
    """One row per class id in `classes`: sample count and accuracy (percent; None when the class has no samples)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    rows = []
    for c in classes:
        sel = labels == c
        n = int(sel.sum())
        rows.append({"class": int(c), "n": n, "acc": float(100.0 * np.mean(pred[sel] == c)) if n else None})
    return rows


def confusion_matrix(pred: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """(n, n) int64 counts, rows = true class position, columns = predicted position."""
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (np.asarray(target, np.int64), np.asarray(pred, np.int64)), 1)
    return cm



#: A run's headline metrics, in order, from the keys of its evaluation record: what `dvc metrics show` tabulates
#: (one row per run, one column per key) and `dvc metrics diff` / `dvc exp show` compare. Fixed, so every run's
#: row has the same columns. n_gzsl (all GZSL test samples) is added after them.
HEADLINE_FROM: dict[str, str] = {"ZSL": "zsl_top1", "S": "gzsl_seen", "U": "gzsl_unseen", "H": "gzsl_h",
                                 "gamma": "gamma", "gamma_from": "gamma_source", "selection": "selection",
                                 "seed": "seed", "n_zsl": "n_zsl"}


def headline(result: dict) -> dict:
    """A run's headline metrics from its full evaluation record (`eval/metrics.json`, STAR or baseline): ZSL top-1
    and GZSL S/U/H in percent, the γ used and where it came from (fixed | val | test-selected), the model
    selection (last | val | test-selected), the seed and the test sample counts. Nothing else: bookkeeping and
    per-class detail stay in the run folder."""
    missing = [k for k in [*HEADLINE_FROM.values(), "n_gzsl_seen", "n_gzsl_unseen"] if k not in result]
    if missing:
        raise KeyError(f"evaluation record without {missing} (expected the keys of eval/metrics.json)")
    out = {key: result[src] for key, src in HEADLINE_FROM.items()}
    out["n_gzsl"] = result["n_gzsl_seen"] + result["n_gzsl_unseen"]
    return out
