"""`star-repro dag`: render dvc.yaml from the stage registry, check it is current, list stages; write DVC's
per-stage params files."""
from __future__ import annotations

import json
import re
import subprocess
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
    mode.add_argument("--stage-params", action="store_true",
                      help="write data/stage_params/<stage>.json, the params keys of each stage (what DVC tracks; "
                      "the `stage_params` stage of dvc.yaml runs this)")
    p.set_defaults(handler=run)

    p = sub.add_parser(
        "sync", help="bring one engine in step with outputs the other one made (dvc: after Snakemake; "
        "snakemake: after dvc repro)",
        description="`sync dvc` (after a Snakemake run): writes DVC's per-stage params files, then `dvc commit "
        "--force --no-relink` for every stage whose outputs all exist, so that `dvc status` is clean and `dvc "
        "repro` runs nothing; it records the outputs as they are and leaves them untouched (Snakemake's "
        "timestamps stay). `sync snakemake` (after `dvc repro`): when `dvc status` is clean, `snakemake --touch` "
        "records the current params in Snakemake's metadata and orders the timestamps, so that `snakemake -n` "
        "finds nothing to do; it refuses while DVC has changes.")
    p.add_argument("engine", choices=["dvc", "snakemake"], help="the engine to bring in step")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--dvc-yaml", default="dvc.yaml")
    p.set_defaults(handler=run_sync)


def run(args) -> int:
    from star_repro.config import load_params
    from star_repro.io import write_text_atomic
    from star_repro.registry import STAGE_PARAMS_DIR, build_stages, render_dvc_yaml

    params = load_params(args.params)
    if args.stage_params:
        print(f"wrote {write_stage_params(params)} params files to {STAGE_PARAMS_DIR}/")
        return 0
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


def write_stage_params(params: dict) -> int:
    """Replace data/stage_params/ with one file per stage of `params` in one swap (no stale files remain)."""
    from star_repro.io import atomic_dir
    from star_repro.registry import STAGE_PARAMS_DIR, stage_params_files

    files = stage_params_files(params)
    with atomic_dir(STAGE_PARAMS_DIR) as tmp:
        for path, text in files.items():
            (tmp / Path(path).name).write_text(text, encoding="utf-8")
    return len(files)


def _tool(name: str) -> str:
    """An engine's executable from this environment (the venv's bin), else from PATH."""
    here = Path(sys.executable).with_name(name)
    return str(here) if here.exists() else name


def run_sync(args) -> int:
    from star_repro.config import load_params
    from star_repro.errors import StarReproError
    from star_repro.registry import render_dvc_yaml

    params = load_params(args.params)
    target = Path(args.dvc_yaml)
    if not target.is_file() or target.read_text(encoding="utf-8") != render_dvc_yaml(params):
        raise StarReproError(f"{target} is not the render of {args.params}: run `star-repro dag --write` first")
    return sync_dvc(params, args.params) if args.engine == "dvc" else sync_snakemake(args.params)


def _configfile_args(params_path: str) -> list[str]:
    return [] if Path(params_path).resolve() == Path("params.yaml").resolve() else ["--configfile", params_path]


def snakemake_pending(params_path: str) -> set[str]:
    """The rules a `snakemake -n` would run now: outputs that exist but are stale for the current params, code or
    inputs (and everything downstream of them), as Snakemake judges them."""
    from star_repro.errors import StarReproError

    res = subprocess.run([_tool("snakemake"), "-n", "--cores", "1", *_configfile_args(params_path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise StarReproError(f"`snakemake -n` failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    text = res.stdout + res.stderr
    return set(re.findall(r"^(?:local)?rule (\S+):", text, flags=re.M)) - {"all"}


def sync_dvc(params: dict, params_path: str = "params.yaml") -> int:
    """Record the outputs of a Snakemake run in dvc.lock: only the stages whose outputs exist and that Snakemake
    itself holds current (an output left from before a params or code change is not vouched for)."""
    from star_repro.errors import StarReproError
    from star_repro.registry import STAGE_PARAMS_STAGE, build_stages

    pending = snakemake_pending(params_path)
    write_stage_params(params)
    done, incomplete = [], {}
    for st in build_stages(params):
        absent = [o for o in st.snakemake_outputs() + st.persist if not Path(o).exists()]
        if st.name in pending:
            incomplete[st.name] = ["a current output (Snakemake would rerun it)"]
        elif absent:
            incomplete[st.name] = [f"{absent[0]}"]
        else:
            done.append(st.name)
    # no targets = every stage: one pass over dvc.yaml instead of one lookup per named stage
    targets = [STAGE_PARAMS_STAGE, *done] if incomplete else []
    res = subprocess.run([_tool("dvc"), "commit", "--force", "--quiet", "--no-relink", *targets])
    if res.returncode != 0:
        raise StarReproError(f"`dvc commit` failed (exit {res.returncode}); dvc.lock is unchanged for the stages "
                             "it did not reach")
    print(f"sync dvc: recorded {len(done) + 1} stages in dvc.lock")
    if incomplete:
        shown = ", ".join(f"{name} (no {paths[0]})" for name, paths in list(incomplete.items())[:10])
        more = f" and {len(incomplete) - 10} more" if len(incomplete) > 10 else ""
        print(f"sync dvc: not recorded (run snakemake, then sync again): {shown}{more}", file=sys.stderr)
    return 0


def sync_snakemake(params_path: str) -> int:
    """After `dvc repro`: mark DVC's up-to-date outputs as current for Snakemake (params metadata, timestamps)."""
    from star_repro.errors import StarReproError

    status = subprocess.run([_tool("dvc"), "status", "--json"], capture_output=True, text=True)
    if status.returncode != 0:
        raise StarReproError(f"`dvc status` failed (exit {status.returncode}):\n{status.stderr[-2000:]}")
    changed = json.loads(status.stdout or "{}")
    if changed:
        names = ", ".join(sorted(changed)[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        raise StarReproError(f"DVC is not up to date ({names}): run `dvc repro` first; `sync snakemake` only "
                             "marks outputs that DVC vouches for")
    res = subprocess.run([_tool("snakemake"), "--touch", "--cores", "1", *_configfile_args(params_path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise StarReproError(f"`snakemake --touch` failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    touched = sorted(set(re.findall(r"\(Rule: ([^)]+)\)", res.stderr + res.stdout)) - {"all"})
    print(f"sync snakemake: marked {len(touched)} jobs as current in Snakemake's metadata"
          + (f" ({', '.join(touched[:10])}{' ...' if len(touched) > 10 else ''})" if touched else ""))
    return 0
