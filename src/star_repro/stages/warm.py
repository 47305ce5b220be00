"""`star-repro warm -- CMD`: run CMD with a warm starter that has the heavy modules imported (star_repro.warm)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "warm", help="run CMD with a warm starter: the star-repro jobs inside it skip importing torch & co.",
        description="Starts a fork server that imports the heavy modules once, runs CMD with STAR_REPRO_WARM set "
        "so that every `star-repro` job inside it (snakemake, dvc, a shell loop) runs as a fork of that server, "
        "then stops the server and exits with CMD's status. Example: star-repro warm -- snakemake --cores 2",
        usage="star-repro warm [-h] [--preload MODULES] -- CMD [ARGS...]")
    p.add_argument("--preload", metavar="MODULES", default=None,
                   help="comma-separated modules to import in the server (default: numpy, torch, torch._dynamo, "
                        "sentence_transformers and the stage modules)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="the command to run")
    p.set_defaults(handler=run)


def run(args) -> int:
    from star_repro.warm import parse_preload, run_wrapper

    return run_wrapper(list(args.cmd), parse_preload(args.preload))
