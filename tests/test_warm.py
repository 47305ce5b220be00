"""The warm starter (star_repro.warm), end to end: a real server process, real `star-repro` clients, real signals.

The server preloads only json/numpy (and tests/_warm_probe.py, which records numpy's RNG state through an audit
hook), so these tests stay fast. The commands are real subcommands run in the project root: `star-repro dag ...`.
A job that blocks is `star-repro dag --list --params <fifo>`: reading params.yaml from a FIFO with no writer.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from star_repro import warm

STAR_REPRO = str(Path(sys.executable).parent / "star-repro")
TESTS = Path(__file__).resolve().parent
WARM_LINE = "warm: pid "


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A warm starter preloading json, numpy and the RNG probe; yields (Popen, socket path)."""
    sock = str(tmp_path_factory.mktemp("warm") / "sock")
    server_state = tmp_path_factory.mktemp("probe") / "server.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        mp.setenv("WARM_PROBE_SERVER_OUT", str(server_state))
        proc = warm.start_server(sock, ["json", "numpy", "_warm_probe"])
    assert proc is not None, "the warm starter did not start"
    proc.server_state = server_state
    yield proc, sock
    warm.stop_server(proc)
    assert proc.returncode == 0
    assert not os.path.exists(sock), "the server did not remove its socket"


def _env(sock: str | None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != warm.ENV_VAR}
    if sock:
        env[warm.ENV_VAR] = sock
    env.update(extra)
    return env


def _run(args, sock=None, cwd=None, **kw):
    return subprocess.run([STAR_REPRO, *args], env=_env(sock), cwd=cwd, capture_output=True, text=True,
                          timeout=60, **kw)


def _strip_warm(stderr: str) -> str:
    return "".join(l for l in stderr.splitlines(keepends=True) if not l.startswith(WARM_LINE))


def _children(proc) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children()


def _wait(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _catches_sigterm(pid: int) -> bool:
    """True once the client has installed its forwarding handlers (Python does not catch SIGTERM by default)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _blocked_on_fifo(pid: int) -> bool:
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip()
    except OSError:
        return False
    return wchan in ("wait_for_partner", "pipe_wait", "fifo_open") or wchan in ("", "0")


def _start_blocking_job(server_proc, sock, tmp_path):
    """A client whose job blocks opening a FIFO; returns (client Popen, job pid)."""
    fifo = tmp_path / "params.fifo"
    os.mkfifo(fifo)
    before = {p.pid for p in _children(server_proc)}
    client = subprocess.Popen([STAR_REPRO, "dag", "--list", "--params", str(fifo)], env=_env(sock),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = _wait(lambda: [p.pid for p in _children(server_proc) if p.pid not in before], what="the job")[0]
    _wait(lambda: _catches_sigterm(client.pid), what="the client's signal handlers")
    _wait(lambda: _blocked_on_fifo(job), what="the job to block on the FIFO")
    if Path(f"/proc/{job}/wchan").read_text().strip() in ("", "0"):  # no wchan here: give it time to get there
        time.sleep(1.0)
    return client, job


# (a) same output and exit status as the plain path
@pytest.mark.parametrize("args, rc", [
    (["dag", "--list"], 0),
    (["dag", "--check"], None),
    (["dag", "--params", "missing.yaml"], 2),
    (["dag", "--bogus"], 2),
    (["--version"], 0),
])
def test_warm_path_matches_plain_path(server, project_root, args, rc):
    _, sock = server
    plain = _run(args, cwd=project_root)
    warmed = _run(args, sock=sock, cwd=project_root)
    if rc is not None:
        assert plain.returncode == rc, plain.stderr
    assert warmed.returncode == plain.returncode
    assert warmed.stdout == plain.stdout
    assert _strip_warm(warmed.stderr) == plain.stderr
    (line,) = [l for l in warmed.stderr.splitlines() if l.startswith(WARM_LINE)]  # it ran in the warm starter
    assert " peak RSS " in line and " MiB, CPU " in line and line.endswith("s (user+sys incl. its children)")
    assert "not reachable" not in warmed.stderr
    if rc == 2 and args[1] == "--params":
        assert "star-repro dag: error: missing.yaml not found" in warmed.stderr


def test_concurrent_jobs(server, project_root):
    """Several clients at once (what snakemake --cores N does): each gets its own job and its own result."""
    _, sock = server
    args = [["dag", "--check"], ["dag", "--params", "missing.yaml"], ["dag", "--check"], ["dag", "--bogus"]]
    procs = [subprocess.Popen([STAR_REPRO, *a], env=_env(sock), cwd=project_root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for a in args]
    outputs = [p.communicate(timeout=60) for p in procs]
    results = [(p.returncode, *o) for p, o in zip(procs, outputs)]
    pids = set()
    for a, (rc, out, err) in zip(args, results):
        assert rc == (2 if a[1] in ("--params", "--bogus") else _run(a, cwd=project_root).returncode), err
        (line,) = [l for l in err.splitlines() if l.startswith(WARM_LINE)]
        pids.add(line.split()[2])
    assert len(pids) == len(args)


# (b) the job writes to the client's fds and runs in the client's directory and environment
def test_job_uses_client_fds_cwd_and_env(server, project_root, tmp_path):
    _, sock = server
    # stdout and stderr redirected to files; the server's own cwd (the project root) has params.yaml, the client's
    # (tmp_path) has not
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        rc = subprocess.run([STAR_REPRO, "dag", "--list"], env=_env(sock), cwd=tmp_path, stdout=out, stderr=err,
                            timeout=60).returncode
    assert rc == 2
    assert (tmp_path / "out").read_text() == ""
    err_text = (tmp_path / "err").read_text()
    assert "star-repro dag: error: params.yaml not found" in err_text and WARM_LINE in err_text
    # environment: argparse wraps --help at $COLUMNS (`tables`: its usage has no unbreakable option group)
    for columns in ("50", "200"):
        env = dict(_env(None), COLUMNS=columns)
        plain = subprocess.run([STAR_REPRO, "tables", "--help"], env=env, capture_output=True, text=True,
                               cwd=project_root, timeout=60)
        env[warm.ENV_VAR] = sock
        with open(tmp_path / "help", "w") as out:
            subprocess.run([STAR_REPRO, "tables", "--help"], env=env, stdout=out, stderr=subprocess.DEVNULL,
                           cwd=project_root, timeout=60, check=True)
        assert (tmp_path / "help").read_text() == plain.stdout
        width = max(len(l) for l in plain.stdout.splitlines())
        assert width <= int(columns) and (columns == "50" or width > 50)


# (c) SIGINT and SIGTERM sent to the client reach the job
def test_sigint_to_client_reaches_job(server, tmp_path):
    proc, sock = server
    client, job = _start_blocking_job(proc, sock, tmp_path)
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=20)
    assert client.returncode == 130, err
    assert "star-repro dag: interrupted" in err  # the job's own KeyboardInterrupt handler ran
    assert not psutil.pid_exists(job) or psutil.Process(job).status() == psutil.STATUS_ZOMBIE


def test_sigterm_to_client_reaches_job(server, tmp_path):
    proc, sock = server
    client, job = _start_blocking_job(proc, sock, tmp_path)
    client.send_signal(signal.SIGTERM)
    client.communicate(timeout=20)
    assert client.returncode == 128 + signal.SIGTERM
    _wait(lambda: job not in [p.pid for p in _children(proc)], what="the job to be reaped")


# (d) a client killed outright: the server terminates its job, and keeps serving
def test_killed_client_gets_its_job_terminated(server, project_root, tmp_path):
    proc, sock = server
    client, job = _start_blocking_job(proc, sock, tmp_path)
    client.kill()
    client.communicate(timeout=20)
    _wait(lambda: job not in [p.pid for p in _children(proc)], timeout=warm.KILL_GRACE_S + 5,
          what="the server to terminate the orphaned job")
    again = _run(["dag", "--params", "missing.yaml"], sock=sock, cwd=project_root)
    assert again.returncode == 2 and WARM_LINE in again.stderr


# (e) no server: the command runs in the client's own process, after one line saying so
@pytest.mark.parametrize("kind", ["missing", "stale"])
def test_unreachable_server_falls_back(project_root, tmp_path, kind):
    path = tmp_path / "sock"
    if kind == "stale":  # a socket file nobody listens on
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        s.close()
    plain = _run(["dag", "--check"], cwd=project_root)
    fallback = _run(["dag", "--check"], sock=str(path), cwd=project_root)
    reason = "No such file or directory" if kind == "missing" else "Connection refused"
    note = f"star-repro: warm starter at {path} not reachable ({reason}); running in this process\n"
    assert fallback.returncode == plain.returncode
    assert fallback.stdout == plain.stdout
    assert fallback.stderr == note + plain.stderr


# (f) the wrapper: CMD's exit status, a private socket folder that is removed afterwards, the server stopped
def test_wrapper_returns_cmd_status_and_cleans_up(tmp_path):
    r = subprocess.run([STAR_REPRO, "warm", "--preload", "json", "--", "false"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stderr
    script = 'echo "$STAR_REPRO_WARM"; stat -c %a "$(dirname "$STAR_REPRO_WARM")"; exit 3'
    r = subprocess.run([STAR_REPRO, "warm", "--preload", "json", "--", "sh", "-c", script], capture_output=True,
                       text=True, timeout=60, env=_env(None))
    assert r.returncode == 3, r.stderr
    sock, mode = r.stdout.split()
    assert mode == "700"
    assert not os.path.exists(os.path.dirname(sock))
    assert "star-repro warm: stopped" in r.stderr


@pytest.mark.parametrize("how", ["sigterm-to-wrapper", "ctrl-c-to-group"])
def test_wrapper_interrupted_stops_cmd_and_server(tmp_path, how):
    script = f'echo "$STAR_REPRO_WARM" > {tmp_path}/sock; exec sleep 60'
    p = subprocess.Popen([STAR_REPRO, "warm", "--preload", "json", "--", "sh", "-c", script],
                         env=_env(None), stderr=subprocess.PIPE, text=True, start_new_session=True)
    sock = _wait(lambda: (tmp_path / "sock").exists() and (tmp_path / "sock").read_text().strip(),
                 timeout=30, what="CMD to start")
    servers = [c for c in psutil.Process(p.pid).children() if "star_repro.warm" in " ".join(c.cmdline())]
    assert len(servers) == 1
    if how == "sigterm-to-wrapper":
        p.send_signal(signal.SIGTERM)
        expected = 128 + signal.SIGTERM
    else:  # what a terminal's Ctrl-C does: SIGINT to the foreground process group (not the server's session)
        os.killpg(p.pid, signal.SIGINT)
        expected = 128 + signal.SIGINT
    _, err = p.communicate(timeout=40)
    assert p.returncode == expected, err
    assert not os.path.exists(os.path.dirname(sock))
    assert not servers[0].is_running() or servers[0].status() == psutil.STATUS_ZOMBIE


# (g) every job gets its own numpy RNG state, not a copy of the server's
def test_jobs_do_not_share_numpy_rng_state(server, project_root, tmp_path):
    proc, sock = server
    out = tmp_path / "rng.jsonl"
    params = tmp_path / "warm-probe.yaml"  # the probe's trigger; not valid params, so each job stops right there
    params.write_text("profile: [\n")
    for _ in range(3):
        env = dict(_env(sock), WARM_PROBE_OUT=str(out))
        r = subprocess.run([STAR_REPRO, "dag", "--params", str(params)], env=env, cwd=project_root,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and WARM_LINE in r.stderr, r.stderr
    records = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(records) == 3 and len({r["pid"] for r in records}) == 3
    states = [tuple(r["state"]) for r in records]
    server_state = tuple(json.loads(proc.server_state.read_text())["state"])
    assert len(set(states)) == 3
    assert server_state not in states


def test_server_stop_terminates_running_jobs(tmp_path):
    sock = str(tmp_path / "sock")
    proc = warm.start_server(sock, ["json"])
    client, job = _start_blocking_job(proc, sock, tmp_path)
    warm.stop_server(proc)
    _, err = client.communicate(timeout=20)
    assert client.returncode == 128 + signal.SIGTERM, err
    assert proc.returncode == 0 and not os.path.exists(sock)
    assert not psutil.pid_exists(job)


def test_client_side_stays_light():
    """The client path (star_repro.warm at import) pulls in no third-party module."""
    code = ("import sys, star_repro.cli, star_repro.warm; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch', 'yaml', 'jsonschema')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.strip() == "[]"
