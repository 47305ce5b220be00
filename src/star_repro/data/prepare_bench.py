"""`star-repro bench prepare`: files/s and peak RSS of `prepare`, measured in the same run as the published
procedure written the published way (`star_repro.data.ntu_reference`), on the same files.

Inputs: `n` generated synthetic files, or (`--real DIR`) `n` renamed copies of real `.skeleton` files. Every
measurement runs in its own fresh Python process, so each one's peak RSS is its own high-water mark (VmHWM);
with worker processes the largest worker's, as `prepare` reports it. Speed on a shared machine is noisy: compare the
ratios measured side by side, and quote the load (`uptime`) with them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from star_repro.errors import StarReproError

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
spec = json.loads(Path(sys.argv[1]).read_text())
sys.path[:0] = spec["paths"]
from star_repro.data import prepare as P
files = [Path(f) for f in Path(spec["listing"]).read_text().split("\n")]
out = Path(spec["out"])
P.tune_malloc()
t0 = time.perf_counter()
worker_mib = 0.0
if spec["mode"] == "reference":
    from star_repro.data import ntu_reference
    ntu_reference.run(files, out, spec["dataset"], spec["protocols"], spec["n_classes"])
elif spec["mode"] == "parse":
    from star_repro.data.ntu import parse_skeletons
    for i in range(0, len(files), P.PARSE_BATCH):
        parse_skeletons([(f.read_bytes(), str(f)) for f in files[i:i + P.PARSE_BATCH]])
else:
    m = P.prepare_ntu(spec["dataset"], [files[0].parent], out / "processed", spec["protocols"], None, "fail",
                      spec["workers"], False)
    worker_mib = m["peak_worker_rss_mib"] or 0.0
    if spec["export"]:
        for proto in spec["protocols"]:
            P.export_npz(out / "processed", proto, out / f"{spec['dataset']}_{proto}.npz")
dt = time.perf_counter() - t0
try:  # this process's own high-water mark; ru_maxrss would include the parent's pages after fork+exec
    own = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
except (OSError, IndexError, ValueError):
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "peak_rss_mib": own / 1024.0, "peak_worker_rss_mib": worker_mib}))
"""


def _measure(workdir: Path, files: list[Path], dataset: str, protocols: dict, runs: list[tuple[str, dict]],
             base: dict) -> list[dict]:
    """Run each (what, spec) in a fresh process on `files`; one record per run, with the ratio to the
    reference's time when the reference ran first."""
    from star_repro.data.classes import classes_of

    listing = workdir / "files.txt"
    listing.write_text("\n".join(str(f) for f in files), encoding="utf-8")
    paths = [str(Path(__file__).resolve().parents[2])] + [p for p in sys.path if p]
    results, ref_seconds = [], None
    for what, spec in runs:
        out = workdir / "out"
        shutil.rmtree(out, ignore_errors=True)
        spec = {"paths": paths, "listing": str(listing), "out": str(out), "dataset": dataset,
                "protocols": protocols, "n_classes": len(classes_of(dataset)), "workers": 1, "export": False} | spec
        spec_path = workdir / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(spec_path)], capture_output=True, text=True)
        shutil.rmtree(out, ignore_errors=True)  # outputs are large at big n; only the timing is kept
        if proc.returncode != 0:
            raise StarReproError(f"bench prepare ({what}) failed:\n{proc.stderr[-2000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rec = base | {"what": what, "seconds": round(r["seconds"], 3),
                      "files_per_s": round(len(files) / r["seconds"], 1),
                      "peak_rss_mib": round(r["peak_rss_mib"], 1)}
        if r["peak_worker_rss_mib"] > 0 and spec["workers"] > 1:
            rec["peak_worker_rss_mib"] = round(r["peak_worker_rss_mib"], 1)
        if spec["mode"] == "reference":
            ref_seconds = r["seconds"]
        elif ref_seconds:
            rec["ratio_to_reference"] = round(ref_seconds / r["seconds"], 2)
        results.append(rec)
    return results


def _runs(workers: tuple[int, ...], reference: bool, export: tuple[bool, ...]) -> list[tuple[str, dict]]:
    runs = [("published procedure, reference (per-line parse, per-frame denoise/align, pickles, npz)",
             {"mode": "reference"})] if reference else []
    runs.append(("parse only, vectorised", {"mode": "parse"}))
    for exp in export:
        for w in workers:
            runs.append((f"prepare{' --export npz' if exp else ''}, workers={w}",
                         {"mode": "prepare", "workers": w, "export": exp}))
    return runs


def bench_prepare(n: int, workdir: Path, seed: int = 0, frames: tuple[int, int] = (60, 120),
                  workers: tuple[int, ...] = (1, 2), reference: bool = True, export: tuple[bool, ...] = (False, True),
                  protocols: dict | None = None) -> list[dict]:
    """`n` generated synthetic NTU-120 files (noise bodies, dropped frames) through the reference and `prepare`."""
    from star_repro.data.synth import generate_ntu_bench_files

    workdir = Path(workdir)
    t_gen = time.perf_counter()
    shutil.rmtree(workdir / "skeletons", ignore_errors=True)  # prepare reads the whole folder: no earlier files
    files = generate_ntu_bench_files(workdir / "skeletons", n, seed, frames=frames)
    t_gen = time.perf_counter() - t_gen
    base = {"bench": "prepare", "input": "synthetic", "files": n, "frames_per_file": list(frames),
            "mib": round(sum(os.path.getsize(f) for f in files) / 2 ** 20, 1), "generate_seconds": round(t_gen, 2)}
    return _measure(workdir, files, "ntu120", protocols or {}, _runs(workers, reference, export), base)


def real_sources(real_dir: str | Path) -> tuple[list[Path], list[str]]:
    """The usable `.skeleton` files under `real_dir` (or its `ntu/skeletons`): those with at least one body that
    parse cleanly; and a line per file left out, with the reason."""
    from star_repro.data.ntu import parse_skeleton

    real_dir = Path(real_dir)
    folder = real_dir / "ntu" / "skeletons" if (real_dir / "ntu" / "skeletons").is_dir() else real_dir
    found = sorted(folder.glob("*.skeleton"))
    if not found:
        raise StarReproError(f"{folder}: no .skeleton files (expected the real NTU samples, e.g. "
                             "../shared/data/real or a folder of .skeleton files)")
    usable, left_out = [], []
    for f in found:
        try:
            parse_skeleton(f.read_bytes(), str(f))
            usable.append(f)
        except StarReproError as exc:
            left_out.append(f"{f.name}: {exc}")
    if not usable:
        raise StarReproError(f"{folder}: none of the {len(found)} .skeleton files is a usable sample")
    return usable, left_out


def copy_renamed(sources: list[Path], n: int, out_dir: Path) -> list[Path]:
    """`n` copies of `sources` (cycled, bytes unchanged) under distinct NTU-60 names: each copy keeps its
    source's action and gets its own setup (1-17), camera, subject (1-40) and replication."""
    from star_repro.data.ntu import parse_sample_name

    shutil.rmtree(out_dir, ignore_errors=True)  # prepare reads the whole folder: no files of an earlier run
    out_dir.mkdir(parents=True, exist_ok=True)
    per_action: dict[int, int] = {}
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        action = parse_sample_name(src.stem)["action"]
        k = per_action[action] = per_action.get(action, -1) + 1
        if k >= 17 * 3 * 40 * 2:
            raise StarReproError(f"bench prepare --real: too many copies of action {action} for distinct names")
        setup, camera, subject, rep = 1 + k % 17, 1 + (k // 17) % 3, 1 + (k // 51) % 40, 1 + k // 2040
        path = out_dir / f"S{setup:03d}C{camera:03d}P{subject:03d}R{rep:03d}A{action:03d}.skeleton"
        shutil.copyfile(src, path)
        paths.append(path)
    return sorted(paths)


def bench_prepare_real(real_dir: str | Path, n: int, workdir: Path, protocols: dict,
                       workers: tuple[int, ...] = (1, 2), export: tuple[bool, ...] = (False, True)) -> list[dict]:
    """`n` renamed copies of the real files through the published reference and `prepare` (NTU-60), one run."""
    workdir = Path(workdir)
    sources, left_out = real_sources(real_dir)
    files = copy_renamed(sources, n, workdir / "skeletons")
    base = {"bench": "prepare", "input": f"real: {len(sources)} files copied to {n}", "files": n,
            "mib": round(sum(os.path.getsize(f) for f in files) / 2 ** 20, 1), "left_out": left_out}
    return _measure(workdir, files, "ntu60", protocols, _runs(workers, True, export), base)


def summary(records: list[dict]) -> str:
    """A readable table of the records (files/s, ratio to the reference, peak RSS)."""
    lines = [f"{'what':<84} {'files/s':>8} {'ratio':>6} {'peak RSS MiB':>12} {'worker MiB':>10}"]
    for r in records:
        lines.append(f"{r['what']:<84} {r['files_per_s']:>8} {r.get('ratio_to_reference', ''):>6} "
                     f"{r['peak_rss_mib']:>12} {r.get('peak_worker_rss_mib', ''):>10}")
    return "\n".join(lines)
