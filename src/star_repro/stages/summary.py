"""`star-repro summary`: where the results of a run are, and what they say at a glance."""
from __future__ import annotations

import csv
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("summary", help="where the tables, figures, runs and per-job benchmarks are")
    p.add_argument("--results", default="results")
    p.add_argument("--benchmarks", default="benchmarks")
    p.set_defaults(handler=run)


def run(args) -> int:
    results = Path(args.results)
    tables = sorted(results.glob("table*.md"))
    figures = sorted(results.glob("fig*.png"))
    print("star-repro results")
    print(f"  tables  ({len(tables)}): " + ", ".join(str(t) for t in tables))
    print(f"  figures ({len(figures)}): " + ", ".join(str(f) for f in figures))
    bench = sorted(Path(args.benchmarks).glob("*.tsv"))
    if bench:
        total = 0.0
        by_kind: dict[str, float] = {}
        for b in bench:
            with open(b, encoding="utf-8") as fh:
                row = next(csv.DictReader(fh, delimiter="\t"), None)
            if row:
                s = float(row["s"])
                total += s
                kind = b.stem.split("_", 1)[0]
                by_kind[kind] = by_kind.get(kind, 0.0) + s
        print(f"  per-job time and memory: {args.benchmarks}/ ({len(bench)} jobs, {total:.0f} s of job time)")
        print("    " + ", ".join(f"{k} {v:.0f} s" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])))
    print("  runs: runs/<experiment>_seed<k>/eval/{metrics.json, gamma_sweep.tsv, per_class.tsv, provenance.json}")
    return 0
