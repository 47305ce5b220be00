"""`star-repro dag`: render dvc.yaml from the stage registry, check it is current, list stages."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "dag", help="render or check dvc.yaml from the stage registry; list the stages",
        description="dvc.yaml is generated from the stage registry and params.yaml. --check exits 1 when the "
        "committed dvc.yaml differs from a fresh render (run --write to update it).")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--dvc-yaml", default="dvc.yaml")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is stale")
    mode.add_argument("--write", action="store_true", help="(re)write dvc.yaml")
    mode.add_argument("--list", action="store_true", help="print stages with deps, outs and params keys (JSON)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from star_repro.config import load_params
    from star_repro.io import write_text_atomic
    from star_repro.registry import build_stages, render_dvc_yaml

    params = load_params(args.params)
    fresh = render_dvc_yaml(params)
    target = Path(args.dvc_yaml)
    if args.write:
        write_text_atomic(target, fresh)
        print(f"wrote {target} ({len(build_stages(params))} stages)")
        return 0
    if args.list:
        json.dump([s.__dict__ for s in build_stages(params)], sys.stdout, indent=1)
        print()
        return 0
    current = target.read_text(encoding="utf-8") if target.exists() else ""
    if current != fresh:
        import difflib

        diff = list(difflib.unified_diff(current.splitlines(), fresh.splitlines(), str(target), "fresh render",
                                         lineterm="", n=1))
        print("\n".join(diff[:60]), file=sys.stderr)
        print(f"{target} is stale: run `star-repro dag --write` and commit it", file=sys.stderr)
        return 1
    print(f"{target} is current ({len(build_stages(params))} stages)")
    return 0
