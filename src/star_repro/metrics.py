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


# ---------------------------------------------------------------------------------------------- intervals
# 95 % intervals from the test samples: small synthetic test sets make point estimates noisy, and a table must say
# how noisy. ZSL, S and U are proportions (Wilson score interval); H is not, so it gets a bootstrap over test samples.
CI_LEVEL = 0.95
CI_Z = 1.959963984540054  # two-sided 95 % normal quantile
H_BOOTSTRAP_DRAWS = 4000
H_BOOTSTRAP_SEED = 20240501


def wilson_interval(k: int, n: int, z: float = CI_Z) -> tuple[float, float] | None:
    """Wilson score interval of k successes in n trials, in percent; None when n is 0 (nothing to estimate)."""
    k, n = int(k), int(n)
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return None
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at k = 0 and k = n the exact bounds are 0 and 1; rounding would put them a hair inside
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return float(100.0 * lo), float(100.0 * hi)


def h_bootstrap_interval(k_seen: int, n_seen: int, k_unseen: int, n_unseen: int,
                         draws: int = H_BOOTSTRAP_DRAWS, seed: int = H_BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """Percentile bootstrap interval of H (percent) at a fixed γ, resampling the known-class and the unknown-class
    test samples separately (each stratum keeps its size).

    Resampling n samples with replacement from a stratum with k correct gives Binomial(n, k/n) correct ones, so
    the counts suffice: no per-sample arrays are needed, and pooling seeds means adding their counts. γ is held
    fixed (its own uncertainty is not included). None when either stratum is empty.
    """
    if n_seen <= 0 or n_unseen <= 0:
        return None
    rng = np.random.default_rng(seed)
    s = rng.binomial(int(n_seen), k_seen / n_seen, draws) / n_seen
    u = rng.binomial(int(n_unseen), k_unseen / n_unseen, draws) / n_unseen
    tot = s + u
    h = np.divide(2.0 * s * u, tot, out=np.zeros(draws), where=tot > 0)
    lo, hi = np.quantile(h, [(1 - CI_LEVEL) / 2, (1 + CI_LEVEL) / 2])
    return float(100.0 * lo), float(100.0 * hi)


def interval_record(counts: dict) -> dict:
    """95 % intervals of ZSL, S, U (Wilson) and H (bootstrap) from correct/total counts
    {"zsl": [k, n], "seen": [k, n], "unseen": [k, n]}; what a run's metrics.json stores under `ci95`."""
    out: dict = {"level": CI_LEVEL, "method": {"zsl": "wilson", "seen": "wilson", "unseen": "wilson",
                                               "h": f"stratified bootstrap over test samples, {H_BOOTSTRAP_DRAWS} "
                                                    "draws, fixed gamma"},
                 "counts": {k: [int(v[0]), int(v[1])] for k, v in counts.items()}}
    for key in ("zsl", "seen", "unseen"):
        iv = wilson_interval(*counts[key])
        out[key] = None if iv is None else list(iv)
    iv = h_bootstrap_interval(*counts["seen"], *counts["unseen"])
    out["h"] = None if iv is None else list(iv)
    return out


def run_intervals(zsl_pred: np.ndarray, zsl_target: np.ndarray, gz_pred: np.ndarray, labels: np.ndarray,
                  known_mask: np.ndarray) -> dict:
    """`interval_record` of one evaluated run from its per-sample predictions (ZSL positions and calibrated
    GZSL class ids)."""
    labels = np.asarray(labels)
    seen = np.asarray(known_mask, bool)[labels]
    hit = np.asarray(gz_pred) == labels
    counts = {"zsl": [int(np.sum(np.asarray(zsl_pred) == np.asarray(zsl_target))), len(zsl_target)],
              "seen": [int(hit[seen].sum()), int(seen.sum())], "unseen": [int(hit[~seen].sum()), int((~seen).sum())]}
    return interval_record(counts)


def pooled_intervals(records: Sequence[dict]) -> dict | None:
    """The intervals of several runs' test samples taken together (counts added): the pooled interval of a
    multi-seed cell. None when any run lacks counts."""
    if not records or any(not r or "counts" not in r for r in records):
        return None
    keys = ("zsl", "seen", "unseen")
    counts = {k: [sum(r["counts"][k][0] for r in records), sum(r["counts"][k][1] for r in records)] for k in keys}
    return interval_record(counts)



#: A run's headline metrics, in order, from the keys of its evaluation record: what `dvc metrics show` tabulates
#: (one row per run, one column per key) and `dvc metrics diff` / `dvc exp show` compare. Fixed, so every run's
#: row has the same columns. n_gzsl (all GZSL test samples) is added after them.
HEADLINE_FROM: dict[str, str] = {"ZSL": "zsl_top1", "S": "gzsl_seen", "U": "gzsl_unseen", "H": "gzsl_h",
                                 "gamma": "gamma", "gamma_from": "gamma_source", "selection": "selection",
                                 "seed": "seed", "n_zsl": "n_zsl"}
#: The 95 % interval of each accuracy (the record's `ci95`), as `<key>_lo` / `<key>_hi` columns after n_gzsl.
HEADLINE_INTERVALS: dict[str, str] = {"ZSL": "zsl", "S": "seen", "U": "unseen", "H": "h"}
#: Every headline key, in the order a headline file holds them.
HEADLINE_KEYS: list[str] = [*HEADLINE_FROM, "n_gzsl",
                            *(f"{key}_{end}" for key in HEADLINE_INTERVALS for end in ("lo", "hi"))]


def headline(result: dict) -> dict:
    """A run's headline metrics from its full evaluation record (`eval/metrics.json`, STAR or baseline): ZSL top-1
    and GZSL S/U/H in percent, the γ used and where it came from (fixed | val | test-selected), the model
    selection (last | val | test-selected), the seed, the test sample counts and the 95 % intervals of the
    four accuracies (null where the record has none). Nothing else: bookkeeping and
    per-class detail stay in the run folder."""
    missing = [k for k in [*HEADLINE_FROM.values(), "n_gzsl_seen", "n_gzsl_unseen"] if k not in result]
    if missing:
        raise KeyError(f"evaluation record without {missing} (expected the keys of eval/metrics.json)")
    out = {key: result[src] for key, src in HEADLINE_FROM.items()}
    out["n_gzsl"] = result["n_gzsl_seen"] + result["n_gzsl_unseen"]
    intervals = result.get("ci95") or {}
    for key, ci_key in HEADLINE_INTERVALS.items():
        out[f"{key}_lo"], out[f"{key}_hi"] = intervals.get(ci_key) or (None, None)
    return out
