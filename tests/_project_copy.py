"""Copies of the project for tests that run the whole pipeline elsewhere (SLURM, DVC remote, a second clone).

A copy holds what a fresh clone would: git-tracked files plus untracked files git does not ignore (so work not yet
committed is exercised too), never data/, runs/ or .venv. It becomes its own git repository so that DVC works there.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
TINY_PARAMS = Path("tests/data/params.tiny.yaml")
GIT_ENV = {"GIT_AUTHOR_NAME": "star-repro tests", "GIT_AUTHOR_EMAIL": "tests@star-repro.invalid",
           "GIT_COMMITTER_NAME": "star-repro tests", "GIT_COMMITTER_EMAIL": "tests@star-repro.invalid"}
# outputs of the pipeline: a copy must rebuild them, not inherit them from the working tree
PRODUCED = ("results", "metrics", "plots", "dvc.lock")


def project_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout.decode()
    files = [f for f in out.split("\0") if f]
    return [f for f in files if (root / f).is_file() and f.split("/")[0] not in PRODUCED]


def tiny_params(root: Path) -> Path:
    """The shrunk demo params of the end-to-end tests ($STAR_REPRO_TINY_PARAMS overrides the project's file)."""
    path = Path(os.environ.get("STAR_REPRO_TINY_PARAMS", root / TINY_PARAMS))
    if not path.is_file():
        pytest.skip(f"{TINY_PARAMS} (the shrunk demo profile for end-to-end tests) is not in the project yet")
    return path


def env_for(copy: Path, **extra: str) -> dict[str, str]:
    """The environment the copy's commands run in: its own sources first, the venv's tools on PATH, CPU only."""
    env = dict(os.environ)
    env.update(GIT_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(copy / "src")] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
                "STAR_REPRO_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"`{' '.join(cmd)}` in {cwd} failed ({res.returncode}):\n"
                             f"--- stdout\n{res.stdout[-4000:]}\n--- stderr\n{res.stderr[-6000:]}")
    return res


def copy_project(root: Path, dest: Path, params: Path | None = None, git: bool = True) -> Path:
    """Copy the project into `dest` (optionally with another params.yaml and a re-rendered dvc.yaml), git-commit it."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in project_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    env = env_for(dest)
    if params is not None:
        shutil.copyfile(params, dest / "params.yaml")
        run([str(VENV_BIN / "star-repro"), "dag", "--write"], dest, env)
    if git:
        run(["git", "init", "-q", "-b", "main"], dest, env)
        run(["git", "add", "-A"], dest, env)
        run(["git", "commit", "-q", "-m", "copy of the project under test"], dest, env)
    return dest


def clone(src: Path, dest: Path) -> Path:
    """A fresh clone: only what git holds (no data, no DVC cache)."""
    run(["git", "clone", "-q", str(src), str(dest)], src.parent, env_for(src))
    return dest


# A shim in front of `star-repro`: appends every call with its $SLURM_JOB_ID and $CUDA_VISIBLE_DEVICES to calls.tsv,
# fails the first call matching $STAR_SHIM_FAIL_ONCE (exit 42), holds calls matching $STAR_SHIM_HOLD until a
# `release` file exists. It is reached two ways, because the Snakefile puts the venv's bin first on PATH: as a bash
# function defined through $BASH_ENV (read by every non-interactive bash, which is how Snakemake runs commands, in
# SLURM jobs too since they inherit the environment), and as `star-repro` first on PATH (for /bin/sh callers).
SHIM = r"""#!/usr/bin/env bash
# test shim in front of star-repro: record, fail once, hold
d="$STAR_SHIM_DIR"
printf '%s\t%s\t%s\t%s\n' "${SLURM_JOB_ID:-}" "$(date +%s.%N)" "${CUDA_VISIBLE_DEVICES:-}" "$*" >> "$d/calls.tsv"
if [[ -n "${STAR_SHIM_FAIL_ONCE:-}" && "$*" == *"$STAR_SHIM_FAIL_ONCE"* && ! -e "$d/failed" ]]; then
  touch "$d/failed"; echo "shim: injected failure of: $*" >&2; exit 42
fi
if [[ -n "${STAR_SHIM_HOLD:-}" && "$*" == *"$STAR_SHIM_HOLD"* ]]; then
  touch "$d/held"
  while [[ ! -e "$d/release" ]]; do sleep 0.2; done
fi
exec "$STAR_SHIM_REAL" "$@"
"""


def make_shim(where: Path, real: str) -> dict[str, str]:
    """Environment entries that route every `star-repro` call through the shim (see SHIM) to `real`."""
    (where / "bin").mkdir(parents=True)
    shim = where / "bin" / "star-repro"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    (where / "bash_env.sh").write_text(f'star-repro() {{ "{shim}" "$@"; }}\n')
    return {"STAR_SHIM_DIR": str(where), "STAR_SHIM_REAL": real, "BASH_ENV": str(where / "bash_env.sh"),
            "PATH": os.pathsep.join([str(where / "bin"), str(VENV_BIN), os.environ.get("PATH", "")])}


def calls(shim_dir: Path, with_gpus: bool = False) -> list[tuple[str, ...]]:
    """(SLURM job id or '', command arguments[, $CUDA_VISIBLE_DEVICES]) for every call of the shim, in order."""
    path = shim_dir / "calls.tsv"
    rows = [r.split("\t", 3) for r in (path.read_text().splitlines() if path.exists() else [])]
    return [(r[0], r[3], r[2]) if with_gpus else (r[0], r[3]) for r in rows]
