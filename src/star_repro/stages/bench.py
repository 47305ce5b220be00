"""`star-repro bench ...`: throughput and peak memory of the heavy stages on generated data."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks of the heavy stages (throughput, peak memory)",
                       description="Each benchmark generates its own data, prints one JSON line per measurement "
                       "and a readable summary. Numbers depend on the machine: quote them with its description.")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH")
    bsub.required = True
    b = bsub.add_parser("prepare", help="files/s and peak RSS of `prepare` beside the published procedure",
                        description="Measures, in one run and on the same N files, the published NTU procedure "
                        "written the published way (per-line parsing, per-frame denoise and align, pickles, "
                        ".npz) and `prepare` with and without --export npz; prints one JSON line each and a "
                        "table with the ratios.")
    b.add_argument("--n", type=int, default=2000)
    b.add_argument("--real", default=None, metavar="DIR",
                   help="copy and rename the real .skeleton files found in DIR (or DIR/ntu/skeletons) to N files "
                   "instead of generating synthetic ones")
    b.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    b.add_argument("--params", default="params.yaml", help="protocols for the .npz export (default params.yaml)")
    b.add_argument("--workdir", default=None, help="where to write the input files (default: a temp dir)")
    b.set_defaults(handler=_prepare)
    b = bsub.add_parser("synth", help="samples/s and peak RSS of writing the synthetic stand-ins",
                        description="Writes the stand-ins (demo or paper size) under --out and reports their "
                        "counts, seconds, samples/s and the process's peak RSS. Paper size needs ~15 GB (NTU-120).")
    b.add_argument("--size", choices=["demo", "paper"], default="demo")
    b.add_argument("--dataset", action="append", choices=["ntu60", "ntu120", "pku1"],
                   help="repeatable (default: all three; NTU-120 then reuses NTU-60's first archive)")
    b.add_argument("--out", required=True, help="folder to write into (kept, for a following prepare)")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(handler=_synth)
    b = bsub.add_parser("encode", help="strings/s of each text encoder (CLIP with random weights)")
    b.add_argument("--n", type=int, default=256)
    b.add_argument("--device", default=os.environ.get("STAR_REPRO_DEVICE", "cpu"))
    b.add_argument("--batch-size", type=int, default=64)
    b.set_defaults(handler=_encode)
    b = bsub.add_parser("shiftgcn", help="Shift-GCN training/inference samples/s and peak memory")
    b.add_argument("--device", default=os.environ.get("STAR_REPRO_DEVICE", "cpu"))
    b.add_argument("--batch", type=int, default=16)
    b.set_defaults(handler=_shiftgcn)
    b = bsub.add_parser("paper", help="GPU rehearsal of the paper DAG: Shift-GCN, STAR and CLIP rates, and the "
                        "extrapolated wall time of every stage and of the whole DAG on 1, 4 and 16 GPUs",
                        description="Writes synthetic NTU-60 (xsub, split 55/5), prepares it, then measures "
                        "Shift-GCN pretraining with the paper recipe over a fixed number of steps (samples/s, "
                        "data-wait fraction, peak GPU memory, GPU utilisation), STAR training/evaluation at "
                        "paper size and CLIP ViT-L/14@336 text embedding (random weights); extrapolates the "
                        "paper DAG from them (labelled as such). Writes OUT (JSON) and OUT with .md.")
    b.add_argument("--device", default=os.environ.get("STAR_REPRO_DEVICE", "cpu"))
    b.add_argument("--size", choices=["paper", "tiny"], default="paper",
                   help="paper: the paper recipe (minutes on a GPU); tiny: the same code in seconds (tests)")
    b.add_argument("--out", required=True, help="the JSON record (a .md beside it)")
    b.add_argument("--params", default="params.yaml")
    b.add_argument("--workdir", default=None, help="where the rehearsal data go (default: a temp dir)")
    b.add_argument("--parts", default=None,
                   help="comma-separated subset of pretrain,star,embed,step_variants (default: all; the "
                        "extrapolation needs the first three)")
    b.add_argument("--variants", default=None,
                   help="comma-separated names of the step variants to time (default: all; see STEP_VARIANTS "
                        "in stages/paper_bench.py)")
    b.set_defaults(handler=_paper)
    b = bsub.add_parser("star", help="STAR training/evaluation samples/s at paper and demo sizes")
    b.add_argument("--device", default=os.environ.get("STAR_REPRO_DEVICE", "cpu"))
    b.set_defaults(handler=_star)


def _print(results) -> int:
    for r in results if isinstance(results, list) else [results]:
        print(json.dumps(r, sort_keys=True))
    return 0


def _prepare(args) -> int:
    from star_repro.config import load_params
    from star_repro.data import prepare_bench

    def run(workdir: Path) -> list[dict]:
        if args.real:
            protocols = load_params(args.params)["protocols"]["ntu60"]
            return prepare_bench.bench_prepare_real(args.real, args.n, workdir, protocols, tuple(args.workers))
        protocols = load_params(args.params)["protocols"]["ntu120"]
        return prepare_bench.bench_prepare(args.n, workdir, workers=tuple(args.workers), protocols=protocols)

    if args.workdir:
        records = run(Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="star-bench-") as tmp:
            records = run(Path(tmp))
    _print(records)
    print(prepare_bench.summary(records))
    return 0


def _synth(args) -> int:
    from star_repro.data.synth import DEMO_CFG, bench_synth

    cfg = dict(DEMO_CFG) | {"size": args.size}
    return _print(bench_synth(args.out, cfg, args.seed, args.dataset or ("ntu60", "ntu120", "pku1")))


def _encode(args) -> int:
    from star_repro.text.embed import bench_encoders, format_bench

    rows = bench_encoders(args.n, device=args.device, batch_size=args.batch_size)
    _print(rows)
    print(format_bench(rows))
    return 0


def _shiftgcn(args) -> int:
    from star_repro.models.shiftgcn import bench_shiftgcn

    return _print(bench_shiftgcn(device=args.device, batch=args.batch))


def _star(args) -> int:
    from star_repro.training.star_train import bench_star

    return _print(bench_star(device=args.device))


def _paper(args) -> int:
    from star_repro.config import load_params
    from star_repro.stages.paper_bench import markdown, run

    params = load_params(args.params)
    split = (lambda v: None if v is None else [x.strip() for x in v.split(",") if x.strip()])
    opts = dict(parts=split(args.parts), variants=split(args.variants))
    if args.workdir:
        record = run(args.device, args.size, Path(args.out), params, Path(args.workdir), **opts)
    else:
        with tempfile.TemporaryDirectory(prefix="star-bench-paper-") as tmp:
            record = run(args.device, args.size, Path(args.out), params, Path(tmp), **opts)
    print(markdown(record))
    return 0
