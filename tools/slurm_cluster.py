"""A real one-node SLURM cluster on this machine (slurmctld + slurmd + munge), for the SLURM tests and for trying
`workflow/profiles/slurm` without a site cluster.

Why a real one: the Snakemake SLURM executor talks to `sbatch`/`squeue`/`scancel`, so only real daemons show that the
profile's settings, the resource mapping, retries and resumption work. Facts this relies on (Debian 12, SLURM 22.05):
the config must live at /etc/slurm/slurm.conf (with only $SLURM_CONF set, `srun` inside a batch job finds no
configuration), there is no accounting daemon (so `sacct` does not work; finished jobs are read from squeue, which
keeps them for MinJobAge seconds, and from the jobcomp text file this cluster writes), no cgroups.

Usage: `python tools/slurm_cluster.py up [--gpus N]`, `... status`, `... down`. Needs root to install packages and to
write /etc/slurm; a configuration at /etc/slurm/slurm.conf that this module did not write is never touched.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from star_repro.errors import StarReproError
from star_repro.io import write_text_atomic

ETC_SLURM = Path(os.environ.get("STAR_REPRO_ETC_SLURM", "/etc/slurm"))
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PID = Path("/run/munge/munged.pid")
MARKER = "# star-repro one-node test cluster (written by star_repro.cluster; safe to delete when it is stopped)"
PACKAGES = ("slurm-wlm", "munge")
TOOLS = ("slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "scancel", "srun", "munged", "munge", "unmunge")
STATE_FILE = "cluster.json"
MUNGE_STARTED = "munge.started"
READY_STATES = {"idle", "mixed", "allocated", "completing"}


class ClusterError(StarReproError):
    """The local test cluster could not be installed, started or stopped; the message says why and where to look."""


def default_base() -> Path:
    return Path(os.environ.get("STAR_REPRO_SLURM_DIR", Path(tempfile.gettempdir()) / "star-repro-slurm"))


@dataclass
class Cluster:
    """A running one-node cluster: where its files are and what it offers."""

    base: str
    node: str
    partition: str
    cpus: int
    real_memory_mb: int
    gpus: int
    slurmctld_pid: int
    slurmd_pid: int
    started_munge: bool
    install_seconds: float = 0.0

    @property
    def jobcomp(self) -> Path:
        """One line per finished job (JobId, Name, JobState, ExitCode, ...): a job record without slurmdbd."""
        return Path(self.base) / "jobcomp.txt"

    def finished_jobs(self) -> list[dict[str, str]]:
        return read_jobcomp(self.jobcomp)

    def queue(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (pending, running and finished within MinJobAge)."""
        out = _run(["squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%k"], check=True).stdout
        rows = []
        for line in out.splitlines():
            if line.strip():
                jid, name, state, comment = (line.split("|", 3) + ["", "", ""])[:4]
                rows.append({"id": jid.strip(), "name": name.strip(), "state": state.strip(),
                             "comment": comment.strip()})
        return rows


# ---------------------------------------------------------------------------------------------------------- helpers

def _run(cmd: list[str], *, check: bool = False, timeout: float = 60, input: str | None = None,
         env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input, env=env)
    except FileNotFoundError as exc:
        raise ClusterError(f"`{cmd[0]}` is not installed ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from exc
    if check and res.returncode != 0:
        raise ClusterError(f"`{' '.join(cmd)}` failed with exit code {res.returncode}: "
                           f"{(res.stderr or res.stdout).strip()[-2000:]}")
    return res


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); treat it as gone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return f"last lines of {path}:\n" + "\n".join(lines[-n:])


def _is_ours(daemon: str, pid: int) -> bool:
    """Only a slurmctld/slurmd process started from a config file carrying our marker may be stopped here."""
    cmd = _cmdline(pid)
    if not cmd or Path(cmd[0]).name != daemon:
        return False
    if "-f" in cmd:
        i = cmd.index("-f")
        conf = Path(cmd[i + 1]) if i + 1 < len(cmd) else None
        try:
            return conf is not None and MARKER in conf.read_text()
        except OSError:
            # the config file went away with its folder: our daemons always run from a marked file under `base`
            return conf is not None and conf.name == "slurm.conf" and "star-repro-slurm" in str(conf)
    return False


def read_jobcomp(path: Path) -> list[dict[str, str]]:
    """Parse SLURM's jobcomp/filetxt lines (`Key=Value` pairs separated by spaces) into dicts."""
    jobs = []
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return jobs
    for line in text.splitlines():
        rec: dict[str, str] = {}
        key = None
        for tok in line.split(" "):
            if "=" in tok and tok.split("=", 1)[0].isalpha():
                key, val = tok.split("=", 1)
                rec[key] = val
            elif key is not None:  # a value with spaces (job names, work dirs)
                rec[key] += " " + tok
        if rec:
            jobs.append({k: v.strip() for k, v in rec.items()})
    return jobs


# -------------------------------------------------------------------------------------------------------- packages

def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]


def ensure_packages(install: bool = True, log=lambda msg: print(msg, file=sys.stderr)) -> float:
    """Install Debian's slurm-wlm and munge when a tool is missing; returns the install's seconds (0 if none)."""
    missing = missing_tools()
    if not missing:
        return 0.0
    if not install:
        raise ClusterError(f"SLURM/munge tools missing: {', '.join(missing)}; install them with "
                           f"`apt-get install -y --no-install-recommends {' '.join(PACKAGES)}`")
    if shutil.which("apt-get") is None:
        raise ClusterError(f"SLURM/munge tools missing ({', '.join(missing)}) and there is no apt-get to install "
                           f"{' '.join(PACKAGES)}; install SLURM and munge with this system's package manager")
    if os.geteuid() != 0:
        raise ClusterError(f"SLURM/munge tools missing ({', '.join(missing)}); installing {' '.join(PACKAGES)} "
                           "needs root (run as root or install them yourself)")
    t0 = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("cluster: apt-get update")
    _run(["apt-get", "update", "-q"], check=True, timeout=600, env=env)
    log(f"cluster: apt-get install {' '.join(PACKAGES)}")
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], check=True, timeout=900, env=env)
    still = missing_tools()
    if still:
        raise ClusterError(f"after installing {' '.join(PACKAGES)} these tools are still missing: {', '.join(still)}")
    seconds = time.monotonic() - t0
    log(f"cluster: packages installed in {seconds:.0f} s")
    return seconds


# ----------------------------------------------------------------------------------------------------------- munge

def _munge_works() -> bool:
    try:
        cred = _run(["munge", "-n"], timeout=10)
        if cred.returncode != 0:
            return False
        return _run(["unmunge"], input=cred.stdout, timeout=10).returncode == 0
    except ClusterError:
        return False


def ensure_munge() -> bool:
    """A working munged (key at /etc/munge/munge.key, 1 KiB, 0400, owner munge); True when we started it."""
    if _munge_works():
        return False
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(MUNGE_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(1024))
    os.chmod(MUNGE_KEY, 0o400)
    try:
        import pwd

        pw = pwd.getpwnam("munge")
        for p in (MUNGE_KEY, MUNGE_KEY.parent):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    except KeyError:
        pass  # no munge user: munged --force as root still accepts a root-owned key
    for d in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
        Path(d).mkdir(parents=True, exist_ok=True)
    # --force: munged refuses root-owned log files and sockets otherwise (harmless warnings as root)
    res = _run(["munged", "--force"], timeout=20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _munge_works():
            return True
        time.sleep(0.2)
    raise ClusterError(f"munged did not start (exit {res.returncode}): {(res.stderr or res.stdout).strip()[-1000:]}; "
                       f"{_tail(Path('/var/log/munge/munged.log'))}")


def stop_munge() -> None:
    pid = _read_pid(MUNGE_PID)
    if pid and _alive(pid) and Path(_cmdline(pid)[0] or "x").name == "munged":
        _terminate([pid], timeout=10)


# ---------------------------------------------------------------------------------------------------------- config

def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ClusterError("cannot read MemTotal from /proc/meminfo")


def render_slurm_conf(base: Path, node: str, cpus: int, real_memory_mb: int, gpus: int = 0,
                      partition: str = "debug") -> str:
    """The minimal configuration known to work here: munge auth, no cgroups, no accounting, state under `base`."""
    b = Path(base)
    gres = f" Gres=gpu:{gpus}" if gpus else ""
    lines = [
        MARKER,
        "ClusterName=starrepro",
        f"SlurmctldHost={node}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        # no slurmdbd: the completion record of every job goes to a text file instead
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={b / 'jobcomp.txt'}",
        "ReturnToService=2",
        # finished jobs stay visible to `squeue --states=all` (the executor's status source) for 5 minutes
        "MinJobAge=300",
        "InactiveLimit=0",
        # a job without --mem would otherwise take the whole node's memory and run alone
        "DefMemPerCPU=1000",
        "KillWait=5",
        "SchedulerType=sched/backfill",
        f"StateSaveLocation={b / 'state'}",
        f"SlurmdSpoolDir={b / 'spool'}",
        f"SlurmctldPidFile={b / 'slurmctld.pid'}",
        f"SlurmdPidFile={b / 'slurmd.pid'}",
        f"SlurmctldLogFile={b / 'slurmctld.log'}",
        f"SlurmdLogFile={b / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
    ]
    if gpus:
        lines.append("GresTypes=gpu")
    lines += [
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={real_memory_mb}{gres} State=UNKNOWN",
        f"PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


# slurmd drops file-less GPUs ("Removing file-less GPU"), so stand-in GPUs point at harmless character devices.
STAND_IN_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom")


def render_gres_conf(node: str, gpus: int) -> str:
    """Stand-in GPUs: GPU-declaring rules get scheduled (one per GPU at a time) on a machine without GPUs."""
    if not 0 < gpus <= len(STAND_IN_GPU_FILES):
        raise ClusterError(f"gpus must be between 1 and {len(STAND_IN_GPU_FILES)} for stand-in GPUs, got {gpus}")
    lines = [MARKER] + [f"NodeName={node} Name=gpu File={f}" for f in STAND_IN_GPU_FILES[:gpus]]
    return "\n".join(lines) + "\n"


def _etc_conf_is_foreign() -> Path | None:
    for name in ("slurm.conf", "gres.conf"):
        p = ETC_SLURM / name
        if p.exists() and MARKER not in p.read_text(errors="replace"):
            return p
    return None


# ----------------------------------------------------------------------------------------------------- start/stop

def _terminate(pids: list[int], timeout: float = 20) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _known_daemon_pids(base: Path) -> dict[str, int]:
    """PIDs of our daemons: from pid files under `base` and under the base named by a marked /etc/slurm config."""
    found: dict[str, int] = {}
    bases = [Path(base)]
    etc = ETC_SLURM / "slurm.conf"
    if etc.exists() and MARKER in etc.read_text(errors="replace"):
        for line in etc.read_text().splitlines():
            if line.startswith("SlurmctldPidFile="):
                bases.append(Path(line.split("=", 1)[1]).parent)
    for b in bases:
        for daemon in ("slurmctld", "slurmd"):
            pid = _read_pid(b / f"{daemon}.pid")
            if pid and _alive(pid) and _is_ours(daemon, pid):
                found.setdefault(daemon, pid)
    if len(found) < 2:
        # pid files lost with their folder: find our daemons by their command line (`-f <our marked slurm.conf>`)
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and _alive(int(proc.name)):
                for daemon in ("slurmctld", "slurmd"):
                    if daemon not in found and _is_ours(daemon, int(proc.name)):
                        found[daemon] = int(proc.name)
    return found


def _node_state(node: str) -> tuple[str, str]:
    res = _run(["sinfo", "--noheader", "--Node", f"--nodes={node}", "--format=%T|%E"], timeout=10)
    if res.returncode != 0 or not res.stdout.strip():
        return "", (res.stderr or "").strip()
    state, _, reason = res.stdout.strip().splitlines()[0].partition("|")
    return state.strip().rstrip("*~#!%$@^-").lower(), reason.strip()


def status(base: Path | None = None) -> Cluster | None:
    """The running cluster recorded under `base`, or None when it is not (fully) up."""
    base = Path(base or default_base())
    try:
        info = json.loads((base / STATE_FILE).read_text())
        cl = Cluster(**info)
    except (OSError, ValueError, TypeError):
        return None
    if not (_alive(cl.slurmctld_pid) and _alive(cl.slurmd_pid)):
        return None
    if not (_is_ours("slurmctld", cl.slurmctld_pid) and _is_ours("slurmd", cl.slurmd_pid)):
        return None
    state, _ = _node_state(cl.node)
    return cl if state in READY_STATES else None


def start(base: Path | None = None, *, gpus: int = 0, partition: str = "debug", install: bool = True,
          real_memory_mb: int | None = None, timeout: float = 60,
          log=lambda msg: print(msg, file=sys.stderr)) -> Cluster:
    """Start (or reuse) the one-node cluster. Idempotent: a running cluster with the same settings is returned as
    is; one left over with other settings or a half-dead one is stopped first."""
    base = Path(base or default_base()).resolve()
    install_seconds = ensure_packages(install=install, log=log)
    foreign = _etc_conf_is_foreign()
    if foreign is not None:
        raise ClusterError(f"{foreign} exists and was not written by star-repro; this machine seems to have its own "
                           "SLURM configuration, which this test cluster will not overwrite")
    node = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem = real_memory_mb or max(1000, int(_mem_total_mb() * 0.9))
    conf = render_slurm_conf(base, node, cpus, mem, gpus, partition)

    running = status(base)
    if running is not None and (base / "slurm.conf").read_text() == conf \
            and (ETC_SLURM / "slurm.conf").exists() and (ETC_SLURM / "slurm.conf").read_text() == conf:
        log(f"cluster: already running (slurmctld {running.slurmctld_pid}, slurmd {running.slurmd_pid})")
        return running
    if _known_daemon_pids(base):
        log("cluster: stopping a cluster left from an earlier start")
        stop(base, stop_munged=False, log=log)  # munged stays: it is about to be used

    base.mkdir(parents=True, exist_ok=True)
    started_munge = ensure_munge()
    if started_munge:
        # remembered on disk so that `stop` also ends munged after a failed start
        (base / MUNGE_STARTED).write_text("munged was started by star_repro.cluster\n")
    try:
        return _start_daemons(base, node, cpus, mem, gpus, partition, conf, started_munge, install_seconds,
                              timeout, log)
    except ClusterError:
        stop(base, log=log)
        raise


def _start_daemons(base: Path, node: str, cpus: int, mem: int, gpus: int, partition: str, conf: str,
                   started_munge: bool, install_seconds: float, timeout: float, log) -> Cluster:
    for d in ("state", "spool"):
        (base / d).mkdir(parents=True, exist_ok=True)
    write_text_atomic(base / "slurm.conf", conf)
    ETC_SLURM.mkdir(parents=True, exist_ok=True)
    # srun inside batch jobs reads /etc/slurm/slurm.conf regardless of $SLURM_CONF
    write_text_atomic(ETC_SLURM / "slurm.conf", conf)
    if gpus:
        write_text_atomic(base / "gres.conf", render_gres_conf(node, gpus))
        write_text_atomic(ETC_SLURM / "gres.conf", render_gres_conf(node, gpus))
    else:
        for p in (base / "gres.conf", ETC_SLURM / "gres.conf"):
            if p.exists():
                p.unlink()
    for name in ("slurmctld.log", "slurmd.log"):
        if (base / name).exists():
            (base / name).unlink()

    conf_path = str(base / "slurm.conf")
    # -c: start from a clean job state (a test cluster must not resurrect jobs of an earlier run)
    res = _run(["slurmctld", "-c", "-f", conf_path], timeout=30)
    if res.returncode != 0:
        raise ClusterError(f"slurmctld failed to start (exit {res.returncode}): {res.stderr.strip()}\n"
                           f"{_tail(base / 'slurmctld.log')}")
    ctld = _wait_pid(base / "slurmctld.pid", "slurmctld", base)
    res = _run(["slurmd", "-f", conf_path], timeout=30)
    if res.returncode != 0:
        raise ClusterError(f"slurmd failed to start (exit {res.returncode}): {res.stderr.strip()}\n"
                           f"{_tail(base / 'slurmd.log')}")
    slurmd = _wait_pid(base / "slurmd.pid", "slurmd", base)

    deadline = time.monotonic() + timeout
    state, reason = "", ""
    while time.monotonic() < deadline:
        state, reason = _node_state(node)
        if state in READY_STATES:
            break
        if state in ("drained", "draining", "down", "fail", "inval") and reason:
            break
        time.sleep(0.5)
    if state not in READY_STATES:
        raise ClusterError(f"node {node} did not become idle within {timeout:.0f} s (state {state or '?'}"
                           f"{', reason ' + reason if reason else ''})\n{_tail(base / 'slurmctld.log')}\n"
                           f"{_tail(base / 'slurmd.log')}")
    cl = Cluster(base=str(base), node=node, partition=partition, cpus=cpus, real_memory_mb=mem, gpus=gpus,
                 slurmctld_pid=ctld, slurmd_pid=slurmd, started_munge=started_munge,
                 install_seconds=round(install_seconds, 1))
    write_text_atomic(base / STATE_FILE, json.dumps(asdict(cl), indent=2) + "\n")
    log(f"cluster: node {node} {state} ({cpus} CPUs, {mem} MB{f', {gpus} GPU(s)' if gpus else ''}); "
        f"state in {base}")
    return cl




def _wait_pid(pidfile: Path, daemon: str, base: Path, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _read_pid(pidfile)
        if pid and _alive(pid):
            return pid
        time.sleep(0.1)
    raise ClusterError(f"{daemon} did not write a live pid to {pidfile} within {timeout:.0f} s\n"
                       f"{_tail(base / f'{daemon}.log')}")


def stop(base: Path | None = None, *, stop_munged: bool | None = None, timeout: float = 20,
         log=lambda msg: print(msg, file=sys.stderr)) -> bool:
    """Cancel our cluster's jobs and stop its daemons by their pid files. Returns False when nothing was running."""
    base = Path(base or default_base()).resolve()
    pids = _known_daemon_pids(base)
    if pids.get("slurmctld"):
        jobs = _run(["squeue", "--noheader", "--format=%i"], timeout=10)
        ids = [j.strip() for j in jobs.stdout.split() if j.strip()] if jobs.returncode == 0 else []
        if ids:
            _run(["scancel", *ids], timeout=20)
            log(f"cluster: cancelled {len(ids)} job(s)")
    if pids:
        # slurmd first so that it does not try to reach a vanished controller
        for daemon in ("slurmd", "slurmctld"):
            if daemon in pids:
                _terminate([pids[daemon]], timeout=timeout)
        log(f"cluster: stopped {', '.join(f'{d} {p}' for d, p in pids.items())}")
    if stop_munged if stop_munged is not None else (base / MUNGE_STARTED).exists():
        stop_munge()
        log("cluster: stopped munged")
        (base / MUNGE_STARTED).unlink(missing_ok=True)
    (base / STATE_FILE).unlink(missing_ok=True)
    return bool(pids)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/slurm_cluster.py",
                                 description="Start, inspect or stop a one-node SLURM cluster on this machine.")
    ap.add_argument("action", choices=["up", "down", "status"])
    ap.add_argument("--base", type=Path, default=None, help=f"state folder (default: {default_base()})")
    ap.add_argument("--gpus", type=int, default=0, help="count-only GPUs the node offers (GRES gpu)")
    ap.add_argument("--partition", default="debug")
    args = ap.parse_args(argv)
    try:
        if args.action == "up":
            cl = start(args.base, gpus=args.gpus, partition=args.partition)
            print(json.dumps(asdict(cl), indent=2))
        elif args.action == "down":
            if not stop(args.base):
                print("cluster: nothing was running", file=sys.stderr)
        else:
            cl = status(args.base)
            if cl is None:
                print("cluster: not running", file=sys.stderr)
                return 1
            print(json.dumps(asdict(cl), indent=2))
    except ClusterError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
