"""Figures 3–5 from run outputs only (PNG).

Fig. 3: GZSL S/U/H against the calibration γ, and ZSL / GZSL H against the number of visual-attribute prompts m.
Fig. 4: t-SNE of the skeleton and semantic spaces with and without the prompts.
Fig. 5: confusion matrices on the unknown classes.
The main experiments of each figure are named in params.yaml (`figures`).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from star_repro.data.classes import classes_of
from star_repro.errors import StarReproError


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _eval_dir(runs_root: Path, exp_name: str, params: dict) -> Path:
    seed = params["experiments"][exp_name].get("seeds", [1])[0]
    d = runs_root / f"{exp_name}_seed{seed}" / "eval"
    if not d.is_dir():
        raise StarReproError(f"{d} is missing: run `star-repro evaluate --experiment {exp_name}` first")
    return d


def _read_tsv(path: Path) -> dict[str, np.ndarray]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise StarReproError(f"{path} has no rows")
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def _subtitle(params: dict) -> str:
    return " [synthetic data]" if params["data"]["source"] == "synthetic" else ""


def fig3_gamma(params: dict, runs_root: Path, exp_name: str, out: Path) -> None:
    plt = _plt()
    d = _eval_dir(runs_root, exp_name, params)
    sweep = _read_tsv(d / "gamma_sweep.tsv")
    metrics = json.loads((d / "metrics.json").read_text())
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, label, style in (("seen", "S (known)", "-o"), ("unseen", "U (unknown)", "-s"), ("h", "H", "-^")):
        (line,) = ax.plot(sweep["gamma"], sweep[key], style, ms=3, label=label)
        band = _wilson_band(sweep[key], metrics.get(f"n_gzsl_{key}"))
        if band is not None:  # 95 % Wilson interval of S and U at each γ (their test-sample counts)
            ax.fill_between(sweep["gamma"], band[0], band[1], color=line.get_color(), alpha=0.15, lw=0)
    ax.axvline(float(metrics["gamma"]), color="grey", ls="--", lw=1, label=f"γ used = {float(metrics['gamma']):g}")
    ax.set_xlabel("calibration γ")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"GZSL vs γ — {exp_name}{_subtitle(params)}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)


def _wilson_band(percent: np.ndarray, n) -> tuple[np.ndarray, np.ndarray] | None:
    """Lower and upper 95 % Wilson bounds of accuracies given in percent over n samples (None without n)."""
    from star_repro.metrics import wilson_interval

    if not n:
        return None
    bounds = [wilson_interval(int(round(p * n / 100.0)), int(n)) for p in percent]
    return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])


def fig3_m(params: dict, runs_root: Path, base: str, out: Path) -> None:
    plt = _plt()
    prof = params["profiles"][params["profile"]]["star"]
    points = [(int(prof["m"]), base)]
    for name, exp in params["experiments"].items():
        if "fig3" in exp["tables"] and name.startswith(base + "_m"):
            points.append((int(exp["overrides"]["m"]), name))
    points.sort()
    zsl, h, err = [], [], {"zsl": [], "h": []}
    for _m, name in points:
        met = json.loads((_eval_dir(runs_root, name, params) / "metrics.json").read_text())
        zsl.append(met["zsl_top1"])
        h.append(met["gzsl_h"])
        for key, value in (("zsl", met["zsl_top1"]), ("h", met["gzsl_h"])):
            iv = (met.get("ci95") or {}).get(key)
            err[key].append((value - iv[0], iv[1] - value) if iv else (0.0, 0.0))
    ms = [m for m, _ in points]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    # error bars: the 95 % interval of each run's test samples (Wilson for ZSL, bootstrap for H)
    ax.errorbar(ms, zsl, yerr=np.array(err["zsl"]).T, fmt="-o", capsize=3, label="ZSL top-1")
    ax.errorbar(ms, h, yerr=np.array(err["h"]).T, fmt="-s", capsize=3, label="GZSL H")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ms, [str(m) for m in ms])
    ax.set_xlabel("visual-attribute prompts m")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"accuracy vs m — {base}{_subtitle(params)}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)


def _tsne(x: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(max(2, min(30, (len(x) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(x, np.float64))


def fig4_tsne(params: dict, runs_root: Path, full: str, no_prompts: str, out: Path) -> None:
    """Left: skeleton global embeddings of unknown-class test samples; right: class-name vs part-description
    projections; top row the full model, bottom row the model without prompts."""
    plt = _plt()
    names = classes_of(params["experiments"][full]["dataset"])
    fig, axes = plt.subplots(2, 2, figsize=(9, 8))
    for row, exp_name in enumerate((full, no_prompts)):
        z = np.load(_eval_dir(runs_root, exp_name, params) / "tsne_inputs.npz")
        sk, lab = z["skeleton"], z["labels"]
        pts = _tsne(sk)
        ax = axes[row, 0]
        for c in np.unique(lab):
            sel = lab == c
            ax.scatter(pts[sel, 0], pts[sel, 1], s=8, label=names[c])
        ax.set_title(f"skeleton space — {exp_name}", fontsize=8)
        ax.legend(fontsize=6, markerscale=2)
        sem, sem_lab, kind = z["semantic"], z["semantic_labels"], z["semantic_kind"]
        pts = _tsne(sem)
        ax = axes[row, 1]
        for k, marker in ((0, "o"), (1, "x")):
            sel = kind == k
            ax.scatter(pts[sel, 0], pts[sel, 1], c=sem_lab[sel] % 20, cmap="tab20", marker=marker, s=14,
                       label="class name" if k == 0 else "part descriptions")
        ax.set_title(f"semantic space — {exp_name}", fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle(f"t-SNE with and without prompts{_subtitle(params)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)


def fig5_confusion(params: dict, runs_root: Path, exp_name: str, out: Path) -> None:
    plt = _plt()
    d = _eval_dir(runs_root, exp_name, params)
    cm = np.load(d / "confusion_zsl.npy").astype(float)
    exp = params["experiments"][exp_name]
    names = classes_of(exp["dataset"])
    unknown = params["splits"][exp["split"]]["unknown"]
    labels = [names[u] for u in unknown]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels) + 2, 1.0 + 0.55 * len(labels) + 1.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"ZSL confusion (row-normalised) — {exp_name}{_subtitle(params)}", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)


def figure_plan(params: dict) -> list[tuple[str, callable, tuple]]:
    """(output file name, function, extra args) for every figure; the registry declares these as outputs."""
    cfg = params["figures"]
    plan = []
    for base in cfg["main"]:
        plan.append((f"fig3_gamma_{base}.png", fig3_gamma, (base,)))
        plan.append((f"fig3_m_{base}.png", fig3_m, (base,)))
    for base in cfg["tsne"]:
        plan.append((f"fig4_tsne_{base}.png", fig4_tsne, (base, f"{base}_no_prompts")))
    for base in cfg["confusion"]:
        plan.append((f"fig5_confusion_{base}.png", fig5_confusion, (base,)))
    return plan


def write_figures(params: dict, runs_root: Path, out_dir: Path, only: str | None = None) -> list[Path]:
    from star_repro.io import atomic_path

    written = []
    plan = [item for item in figure_plan(params) if only is None or item[0] == only]
    if only is not None and not plan:
        raise StarReproError(f"no figure named {only!r}; planned: {[f for f, _, _ in figure_plan(params)]}")
    for fname, fn, extra in plan:
        for name in extra:
            if name not in params["experiments"]:
                raise StarReproError(f"figures: {fname} needs the experiment {name!r}, which params.yaml lacks")
        out = out_dir / fname
        with atomic_path(out) as tmp:
            fn(params, runs_root, *extra, tmp)
        written.append(out)
    return written
