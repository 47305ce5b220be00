"""Tables 2–7 from run outputs only, beside the paper's numbers (CSV for machines, Markdown for people).

Every number comes from `runs/<run>/eval/metrics.json`; the paper's values come from `paper_numbers.yaml`
(unknown cells stay empty, never guessed). Several seeds give mean ± std. ZSL, S, U and H carry the 95 % interval
of the run's test samples (`ci95` in metrics.json; several seeds: their samples pooled), so a reader sees how much
of a difference the test set can resolve. Synthetic data are marked in every row
and in every Markdown title.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev

from star_repro.data.classes import classes_of
from star_repro.errors import StarReproError
from star_repro.io import write_text_atomic
from star_repro.text.yaml_lines import load_yaml_unique

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.yaml")
METRICS = (("zsl", "zsl_top1"), ("seen", "gzsl_seen"), ("unseen", "gzsl_unseen"), ("h", "gzsl_h"))
METHOD_ORDER = ("revise", "jpose", "cada_vae", "synse", "smie", "star")
METHOD_LABEL = {"revise": "ReViSE", "jpose": "JPoSE", "cada_vae": "CADA-VAE", "synse": "SynSE", "smie": "SMIE",
                "star": "STAR"}
TITLES = {
    2: "Table 2 — NTU RGB+D 60 (ZSL top-1; GZSL S / U / H, %)",
    3: "Table 3 — NTU RGB+D 120 (ZSL top-1; GZSL S / U / H, %)",
    4: "Table 4 — PKU-MMD Phase I (ZSL top-1; GZSL S / U / H, %)",
    5: "Table 5 — mean over the three random known/unknown splits (ZSL top-1; GZSL H, %)",
    6: "Table 6 — number of body parts (ZSL top-1; GZSL H, %)",
    7: "Table 7 — component ablation (ZSL top-1; GZSL H, %; Δ = variant − full model)",
}
# variants shown under another name: the negative control must not read as an ablation
VARIANT_LABEL = {"control_deranged_text": "CONTROL: unknown-class text deranged (ZSL at or below chance)"}
# what each row's runs rest on (evaluate records it from the embeddings' and backbone's records)
INPUT_LABELS = ("descriptions", "encoder", "backbone")
CSV_COLUMNS = ("table", "cell", "dataset", "protocol", "split", "method", "variant", "metric", "ours", "ours_std",
               "ci95_lo", "ci95_hi", "ci95_n", "n", "paper", "diff", "selection", "gamma", "profile",
               "data") + INPUT_LABELS + ("runs",)


def cell_name(exp: dict, splits: dict) -> str:
    """e.g. ntu60_xsub_55_5 (the paper's cell), with _split1.. for the random re-splits."""
    split = exp["split"]
    n_classes = len(classes_of(exp["dataset"]))
    n_unknown = len(splits[split]["unknown"])
    name = f"{exp['dataset']}_{exp['protocol']}_{n_classes - n_unknown}_{n_unknown}"
    if "_split" in split:
        name += "_split" + split.rsplit("_split", 1)[1]
    return name


def load_run_metrics(runs_root: Path, params: dict) -> dict[str, list[dict]]:
    """experiment name -> metrics of each seed's run (every expected run must exist)."""
    from star_repro.config import experiment_runs

    out: dict[str, list[dict]] = defaultdict(list)
    for run, exp, _seed in experiment_runs(params):
        path = runs_root / run / "eval" / "metrics.json"
        if not path.exists():
            raise StarReproError(f"{path} is missing: run `star-repro evaluate --experiment {exp['name']}` first")
        with open(path, encoding="utf-8") as fh:
            m = json.load(fh)
        m["_run"] = run
        out[exp["name"]].append(m)
    return out


def _agg(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    return mean(vals), (stdev(vals) if len(vals) > 1 else None)


def _fmt(v: float | None, std: float | None = None, signed: bool = False) -> str:
    if v is None:
        return "–"
    s = f"{v:+.1f}" if signed else f"{v:.1f}"
    return s + (f" ± {std:.1f}" if std is not None else "")


def build_rows(params: dict, runs_root: Path) -> list[dict]:
    paper = load_yaml_unique(PAPER_NUMBERS.read_text(encoding="utf-8"))
    metrics = load_run_metrics(runs_root, params)
    exps = params["experiments"]
    splits = params["splits"]
    data = params["data"]["source"]
    rows: list[dict] = []

    def base_row(table, cell, exp, method, variant, metric, values, runs, paper_value, ours=None, std=None):
        if ours is None:
            ours, std = _agg(values)
        diff = None if ours is None or paper_value is None else ours - paper_value
        sel = sorted({str(r.get("selection", "?")) for r in runs})
        ci = _pooled_interval(runs, metric) if table != 5 else None
        return {"table": table, "cell": cell, "dataset": exp["dataset"], "protocol": exp["protocol"],
                "split": exp["split"], "method": method, "variant": variant, "metric": metric,
                "ours": ours, "ours_std": std, "ci95_lo": ci and ci[0], "ci95_hi": ci and ci[1],
                "ci95_n": ci and ci[2], "n": len(values), "paper": paper_value, "diff": diff,
                "selection": "+".join(sel), "gamma": _gamma_text(runs), "profile": params["profile"], "data": data,
                **{k: _input_label(runs, k) for k in INPUT_LABELS}, "runs": " ".join(r["_run"] for r in runs)}

    # Tables 2-4: one cell per experiment (dataset x protocol x split), every method.
    for table in (2, 3, 4):
        for name, exp in exps.items():
            if table not in exp["tables"]:
                continue
            cell = cell_name(exp, splits)
            method = exp.get("method", "star")
            pv = (paper.get(f"table{table}") or {}).get(cell, {}).get(method, {})
            runs = metrics[name]
            for key, mkey in METRICS:
                rows.append(base_row(table, cell, exp, method, exp.get("variant", "full"), key,
                                     [r.get(mkey) for r in runs], runs, pv.get(key)))
    # Table 5: per dataset and method, mean over the random splits (and seeds).
    groups: dict[tuple[str, str], list[tuple[dict, list[dict]]]] = defaultdict(list)
    for name, exp in exps.items():
        if 5 in exp["tables"]:
            groups[(exp["dataset"], exp.get("method", "star"))].append((exp, metrics[name]))
    for (ds, method), items in sorted(groups.items()):
        pv = (paper.get("table5") or {}).get(ds, {}).get(method, {})
        exp0 = items[0][0] | {"split": "+".join(e["split"] for e, _ in items), "protocol": items[0][0]["protocol"]}
        all_runs = [r for _, rs in items for r in rs]
        for key, mkey in (("zsl", "zsl_top1"), ("h", "gzsl_h")):
            per_split = [_agg([r.get(mkey) for r in rs])[0] for _, rs in items]
            rows.append(base_row(5, f"{ds}_random_splits", exp0, method, "mean of splits", key, per_split,
                                 all_runs, pv.get(key)))
    # Table 6 (partitions) and 7 (ablations): the variants and the full model of the same cell (the full model's
    # row also when its experiment is listed only under another table, e.g. Table 2).
    for table in (6, 7):
        in_table = {n for n, e in exps.items() if table in e["tables"]}
        variant_cells = {(cell_name(e, splits), e.get("method", "star")) for n, e in exps.items()
                         if n in in_table and e.get("variant", "full") != "full"}
        for name, exp in exps.items():
            if exp.get("variant", "full") == "full" and \
                    (cell_name(exp, splits), exp.get("method", "star")) in variant_cells:
                in_table.add(name)
        for name, exp in exps.items():
            if name not in in_table:
                continue
            cell = cell_name(exp, splits)
            variant = exp.get("variant", "full")
            runs = metrics[name]
            full = [n for n, e in exps.items() if cell_name(e, splits) == cell and e.get("variant") == "full"
                    and e.get("method", "star") == exp.get("method", "star")]
            full_runs = metrics[full[0]] if full else []
            for key, mkey in (("zsl", "zsl_top1"), ("h", "gzsl_h")):
                ours, std = _agg([r.get(mkey) for r in runs])
                if table == 7 and variant != "full":
                    # paired: the full model's runs of the variant's seeds (all of them if it shares none)
                    seeds = {r.get("seed") for r in runs}
                    paired = [r for r in full_runs if r.get("seed") in seeds] or full_runs
                    full_v = _agg([r.get(mkey) for r in paired])[0]
                    delta = None if ours is None or full_v is None else ours - full_v
                    pv = (paper.get("table7") or {}).get(exp["dataset"], {}).get(variant, {}).get(key)
                    row = base_row(7, cell, exp, exp.get("method", "star"), variant, f"{key}_delta",
                                   [r.get(mkey) for r in runs], runs, pv, ours=delta, std=None)
                    rows.append(row)
                label = f"{exp.get('partition', 6)}part" if table == 6 else variant
                rows.append(base_row(table, cell, exp, exp.get("method", "star"), label, key,
                                     [r.get(mkey) for r in runs], runs, None, ours=ours, std=std))
    return rows


def _pooled_interval(runs: list[dict], metric: str) -> tuple[float, float, int] | None:
    """(low, high, test samples) of the 95 % interval of `metric` (zsl, seen, unseen, h) over the runs' test
    samples pooled; None for other metrics or when a run predates `ci95`."""
    from star_repro.metrics import pooled_intervals

    if metric not in ("zsl", "seen", "unseen", "h"):
        return None
    rec = pooled_intervals([r.get("ci95") for r in runs])
    if rec is None or rec[metric] is None:
        return None
    counts = rec["counts"]
    n = counts["seen"][1] + counts["unseen"][1] if metric == "h" else counts[metric][1]
    return rec[metric][0], rec[metric][1], n


def _fmt_interval(r: dict) -> str:
    """` [lo, hi]` for one run, ` [pooled lo, hi]` for several; empty without an interval."""
    if r.get("ci95_lo") is None:
        return ""
    pooled = "pooled " if r["n"] > 1 else ""
    return f" [{pooled}{r['ci95_lo']:.1f}, {r['ci95_hi']:.1f}]"


def _input_label(runs: list[dict], key: str) -> str:
    """The description set, text encoder or backbone source of a row's runs ('+'-joined when they differ)."""
    from star_repro.provenance import NOT_RECORDED

    return "+".join(sorted({str((r.get("inputs") or {}).get(key) or NOT_RECORDED) for r in runs})) or NOT_RECORDED


def _gamma_text(runs: list[dict]) -> str:
    """γ to 4 significant digits with where it came from: `0.2015 (val)`; over several runs the range per
    source: `0.0099–0.137 (test-selected)`."""
    by_src: dict[str, list] = defaultdict(list)
    for r in runs:
        by_src[str(r.get("gamma_source") or "")].append(r.get("gamma"))
    parts = []
    for src, gs in sorted(by_src.items()):
        nums = sorted(g for g in gs if isinstance(g, (int, float)))
        if not nums:
            txt = "?"
        elif nums[0] == nums[-1]:
            txt = f"{nums[0]:.4g}"
        else:
            txt = f"{nums[0]:.4g}–{nums[-1]:.4g}"
        parts.append(f"{txt} ({src})" if src else txt)
    return "; ".join(parts) if parts else "?"


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]))
                    for k in CSV_COLUMNS})
    return buf.getvalue()


def rows_to_markdown(table: int, rows: list[dict], params: dict) -> str:
    synthetic = params["data"]["source"] == "synthetic"
    mark = " — SYNTHETIC DATA (embedded stand-ins; not comparable with the paper)" if synthetic else ""
    lines = [f"# {TITLES[table]}{mark}", ""]
    lines.append(f"Profile `{params['profile']}`; data `{params['data']['source']}`. Each cell: ours (paper, Δ). "
                 "– = not recovered / not run. Per row: model selection, γ, and what the runs rest on (the "
                 "description set, the text encoder, the backbone: pretrained here or the authors' release). "
                 "[lo, hi]: 95 % interval over the test samples (Wilson for ZSL, S, U; bootstrap over test "
                 "samples at the run's γ for H); with several seeds, mean ± sd over seeds and the interval of "
                 "their test samples pooled.")
    lines.append("")
    by_cell: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_cell[r["cell"]].append(r)
    metric_keys = sorted({r["metric"] for r in rows}, key=lambda k: ["zsl", "seen", "unseen", "h", "zsl_delta",
                                                                      "h_delta"].index(k))
    for cell, crows in by_cell.items():
        # chance level of ZSL top-1 (one in |U|): the reference for tiny synthetic test sets
        n_unknown = {len(params["splits"][sp]["unknown"]) for r in crows for sp in r["split"].split("+")}
        chance = "" if len(n_unknown) != 1 else f" (ZSL chance {100.0 / n_unknown.pop():.1f} %)"
        lines.append(f"## {cell}{chance}")
        lines.append("")
        lines.append("| method | variant | " + " | ".join(metric_keys) + " | selection | γ | seeds | descriptions | "
                     "encoder | backbone |")
        lines.append("|---|---|" + "---|" * len(metric_keys) + "---|---|---|---|---|---|")
        keyed: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
        for r in crows:
            keyed[(r["method"], r["variant"])][r["metric"]] = r
        order = sorted(keyed, key=lambda mv: (METHOD_ORDER.index(mv[0]) if mv[0] in METHOD_ORDER else 99, mv[1]))
        for method, variant in order:
            cells = []
            any_row = None
            for k in metric_keys:
                r = keyed[(method, variant)].get(k)
                if r is None:
                    cells.append("")
                    continue
                any_row = r
                signed = k.endswith("_delta")
                txt = _fmt(r["ours"], r["ours_std"], signed) + _fmt_interval(r)
                if r["paper"] is not None:
                    d = "" if r["diff"] is None else f", {r['diff']:+.1f}"
                    txt += f" ({_fmt(r['paper'], signed=signed)}{d})"
                cells.append(txt)
            lines.append(f"| {METHOD_LABEL.get(method, method)} | {VARIANT_LABEL.get(variant, variant)} | "
                         + " | ".join(cells) +
                         f" | {any_row['selection']} | {any_row['gamma']} | {any_row['n']} | "
                         + " | ".join(any_row[k] for k in INPUT_LABELS) + " |")
        lines.append("")
    return "\n".join(lines)


def write_tables(params: dict, runs_root: Path, out_dir: Path, table: int) -> list[Path]:
    rows = build_rows(params, runs_root) if params.get("experiments") else []
    written = []
    for table in [table]:
        trows = [r for r in rows if r["table"] == table]
        csv_path, md_path = out_dir / f"table{table}.csv", out_dir / f"table{table}.md"
        write_text_atomic(csv_path, rows_to_csv(trows))
        body = (rows_to_markdown(table, trows, params) if trows else
                f"# {TITLES[table]}\n\nNo experiment feeds this table in params.yaml.\n")
        write_text_atomic(md_path, body)
        written += [csv_path, md_path]
    return written
