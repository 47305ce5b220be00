"""The `star-repro` command: one subcommand per pipeline stage plus helpers.

Every module in `star_repro.stages` that defines `register(subparsers)` contributes its subcommands, so a stage's
command-line entry lives next to its code. Heavy imports (torch, open_clip) happen inside the handlers, which keeps
`star-repro --help` fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from star_repro import __version__
from star_repro.errors import StarReproError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="star-repro",
        description="Reproducibility pipeline for STAR (zero-shot skeleton action recognition, ACM MM 2024). "
        "Each pipeline stage is a subcommand; `dvc repro` and `snakemake` call the same commands.",
    )
    parser.add_argument("--version", action="version", version=f"star-repro {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    import star_repro.stages as stages_pkg

    for info in sorted(pkgutil.iter_modules(stages_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"star_repro.stages.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None, *, warm_child: bool = False) -> int:
    if argv is None:
        argv = sys.argv[1:]
    # Inside `star-repro warm -- CMD`, hand the job to the warm starter (star_repro.warm; standard library only,
    # imported only then). warm_child: this is already the warm starter's forked child.
    warm = os.environ.get("STAR_REPRO_WARM")
    if warm and not warm_child and argv[:1] != ["warm"]:
        from star_repro.warm_client import run_client

        code = run_client(warm, argv)
        if code is not None:
            return code
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except StarReproError as exc:
        print(f"star-repro {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"star-repro {args.command}: interrupted; completed work is kept and the stage resumes on rerun",
              file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
