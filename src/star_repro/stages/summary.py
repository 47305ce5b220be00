"""`star-repro summary`: where the results of a run are, and what the jobs cost, per kind of stage.

Wall time comes from Snakemake's benchmark files. Peak memory and CPU come from the job's own `warm:` line at the
end of `logs/<stage>.log` when the job ran under `star-repro warm` (the benchmark then only sees the thin client),
else from the benchmark file.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

WARM_LINE = re.compile(r"^warm: pid \d+ peak RSS ([0-9.]+) MiB, CPU ([0-9.]+) s")


def register(sub) -> None:
    p = sub.add_parser("summary", help="where the tables, figures and runs are, and the time and memory per stage "
                                       "kind (from benchmarks/ and logs/)")
    p.add_argument("--results", default="results")
    p.add_argument("--benchmarks", default="benchmarks")
    p.add_argument("--logs", default="logs")
    p.add_argument("--params", default="params.yaml", help="to tell STAR runs from baseline runs (optional)")
    p.set_defaults(handler=run)


def _warm_figures(log: Path) -> tuple[float, float] | None:
    """(peak RSS MiB, CPU s) from the job's `warm:` line, if it ran under the warm starter."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines[-5:]):
        m = WARM_LINE.match(line.strip())
        if m:
            return float(m.group(1)), float(m.group(2))
    return None


def stage_labels(params_path: str) -> dict[str, str]:
    """Stage name -> the kind the registry gives it, train/evaluate split into STAR and baselines. Empty when the
    params cannot be read (the summary then falls back to the name's first word)."""
    try:
        from star_repro.config import load_params
        from star_repro.registry import build_stages, experiment_runs

        params = load_params(params_path)
        stages = build_stages(params)
    except Exception:  # noqa: BLE001 - the summary still works without params
        return {}
    method = {run: exp.get("method", "star") for run, exp, _ in experiment_runs(params)}
    labels = {}
    for st in stages:
        run = st.name.split("_", 1)[1] if st.kind in ("train", "evaluate") else None
        labels[st.name] = (f"{st.kind} ({'STAR' if method[run] == 'star' else 'baselines'})"
                           if run in method else st.kind)
    return labels


def stage_costs(bench_dir: Path, logs_dir: Path, labels: dict[str, str]) -> dict[str, dict]:
    by_kind: dict[str, dict] = {}
    for b in sorted(bench_dir.glob("*.tsv")):
        with open(b, encoding="utf-8") as fh:
            row = next(csv.DictReader(fh, delimiter="\t"), None)
        if not row:
            continue
        kind = labels.get(b.stem, b.stem.split("_", 1)[0])
        k = by_kind.setdefault(kind, {"jobs": 0, "wall": 0.0, "max_wall": 0.0, "cpu": 0.0, "peak_mib": 0.0})
        wall = float(row["s"])
        warm = _warm_figures(logs_dir / f"{b.stem}.log")
        if warm is not None:
            rss, cpu = warm
        else:
            rss = float(row["max_rss"]) if row.get("max_rss") not in (None, "", "NA", "-") else 0.0
            cpu = float(row["cpu_time"]) if row.get("cpu_time") not in (None, "", "NA", "-") else 0.0
        k["jobs"] += 1
        k["wall"] += wall
        k["max_wall"] = max(k["max_wall"], wall)
        k["cpu"] += cpu
        k["peak_mib"] = max(k["peak_mib"], rss)
    return by_kind


def run(args) -> int:
    results = Path(args.results)
    tables = sorted(results.glob("table*.md"))
    figures = sorted(results.glob("fig*.png"))
    print("star-repro results")
    print(f"  tables  ({len(tables)}): " + ", ".join(str(t) for t in tables))
    print(f"  figures ({len(figures)}): " + ", ".join(str(f) for f in figures))
    costs = stage_costs(Path(args.benchmarks), Path(args.logs), stage_labels(args.params))
    if costs:
        jobs = sum(c["jobs"] for c in costs.values())
        total = sum(c["wall"] for c in costs.values())
        print(f"  per-job time and memory: {args.benchmarks}/ and the `warm:` lines of {args.logs}/ "
              f"({jobs} jobs, {total:.0f} s of job wall time)")
        print(f"    {'stage':22s} {'jobs':>5s} {'wall s':>8s} {'mean s':>7s} {'max s':>6s} {'CPU s':>7s} "
              f"{'peak MiB':>9s}")
        for kind, c in sorted(costs.items(), key=lambda kv: -kv[1]["wall"]):
            print(f"    {kind:22s} {c['jobs']:5d} {c['wall']:8.1f} {c['wall'] / c['jobs']:7.2f} "
                  f"{c['max_wall']:6.1f} {c['cpu']:7.1f} {c['peak_mib']:9.0f}")
    print("  runs: runs/<experiment>_seed<k>/eval/{metrics.json, gamma_sweep.tsv, per_class.tsv, provenance.json}")
    return 0
