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
    b = bsub.add_parser("prepare", help="files/s and peak RSS of `prepare` on N synthetic NTU files")
    b.add_argument("--n", type=int, default=2000)
    b.add_argument("--workdir", default=None, help="where to write the generated files (default: a temp dir)")
    b.set_defaults(handler=_prepare)
    b = bsub.add_parser("encode", help="strings/s of each text encoder (CLIP with random weights)")
    b.add_argument("--n", type=int, default=256)
    b.add_argument("--device", default=os.environ.get("STAR_REPRO_DEVICE", "cpu"))
    b.add_argument("--batch-size", type=int, default=64)
    b.set_defaults(handler=_encode)
    b = bsub.add_parser("shiftgcn", help="Shift-GCN training/inference samples/s and peak memory")
    b.add_argument("--device", default=os.environ.get("STAR_REPRO_DEVICE", "cpu"))
    b.add_argument("--batch", type=int, default=16)
    b.set_defaults(handler=_shiftgcn)
    b = bsub.add_parser("star", help="STAR training/evaluation samples/s at paper and demo sizes")
    b.add_argument("--device", default=os.environ.get("STAR_REPRO_DEVICE", "cpu"))
    b.set_defaults(handler=_star)


def _print(results) -> int:
    for r in results if isinstance(results, list) else [results]:
        print(json.dumps(r, sort_keys=True))
    return 0


def _prepare(args) -> int:
    from star_repro.data.prepare import bench_prepare

    if args.workdir:
        return _print(bench_prepare(args.n, Path(args.workdir)))
    with tempfile.TemporaryDirectory(prefix="star-bench-") as tmp:
        return _print(bench_prepare(args.n, Path(tmp)))


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
