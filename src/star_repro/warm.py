"""The warm starter: a fork server that imports the heavy modules once, so that each pipeline job does not.

Why: `make demo` runs ~315 small jobs, each a fresh `star-repro <stage> ...` process. On a 2-core machine every
one of them pays ~3 s importing torch, ~3 s more importing torch._dynamo (the torch.optim constructors import it)
and, for the embed jobs, ~10 s importing sentence_transformers: import time alone would be most of the demo's
10-minute budget. A process forked from one that has already imported them starts in milliseconds.

How:
  `star-repro warm [--preload MODULES] -- CMD ARGS...` starts the server (`python -m star_repro.warm serve`), waits
  until it has imported the preload modules, runs CMD with `STAR_REPRO_WARM=<socket path>` added to its
  environment, then stops the server (also when CMD fails, on Ctrl-C and on SIGTERM) and returns CMD's exit code.
  The socket lives in a fresh private temporary folder (mode 0700) that is removed at the end.

  Inside CMD (snakemake, dvc, a shell loop), every `star-repro` whose environment has STAR_REPRO_WARM becomes a thin
  client (`run_client`, called first thing in `star_repro.cli.main`; standard library only, so it starts as fast as
  `star-repro --help`): it sends its argv, working directory and environment together with its file descriptors
  0, 1 and 2 over the Unix socket, the server forks, and the child runs `star_repro.cli.main(argv)` with those
  descriptors as its stdin/stdout/stderr, in the client's directory and environment. The client forwards SIGINT,
  SIGTERM and SIGHUP to the child and exits with the child's status (128+N when signal N killed it). When the
  server is not reachable, the client says so in one line on stderr and runs the command in its own process.

  The server sits in its own session (terminal Ctrl-C reaches the clients, which forward it), never initialises
  CUDA, and runs a single-threaded `selectors` loop. It terminates a job whose client went away (SIGTERM to the
  job's process group, SIGKILL 10 s later), and stops (terminating its jobs, removing the socket) on SIGTERM or
  when the process that started it dies.

What a forked job inherits, and what it does not:
  - fresh: stdio, working directory, environment (os.environ), numpy's global RNG and torch's default CPU generator
    (reseeded from the OS, as a fresh process would be; Python's `random` reseeds itself after fork), torch's and
    the BLAS libraries' thread counts when OMP_NUM_THREADS is set, atexit handlers (only the job's own run).
  - inherited from the server: modules already imported (their code is the code as it was when the server
    started: start a new warm starter after editing the package), environment variables that a module read at
    import time (e.g. HF_HUB_OFFLINE, read by huggingface_hub on import: set them where `star-repro warm` runs,
    as the Makefile does), and the str hash seed (PYTHONHASHSEED).

Benchmarks: the job runs in the server's child, so Snakemake's benchmark files (psutil on the job's process tree)
count only the client for max_rss and cpu_time; wall time stays right. The child therefore prints, just before it
exits, one line to stderr: `warm: pid <pid> peak RSS <MiB> MiB, CPU <s> s (user+sys incl. its children)` (from
getrusage; peak RSS is the job's own plus that of its largest waited-for child).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys

from star_repro.warm_client import _FORWARDED, _MAX_REQUEST, ENV_VAR, run_client  # noqa: F401 (run_client: API)

DEFAULT_PRELOAD = (
    "numpy", "torch", "torch._dynamo", "yaml", "jsonschema",
    "star_repro.config", "star_repro.registry", "star_repro.stages.pipeline",
    "star_repro.training.star_train", "star_repro.training.baseline_train", "star_repro.training.pretrain",
    "star_repro.training.evaluate", "sentence_transformers",
)

KILL_GRACE_S = 10.0        # SIGTERM, then SIGKILL this much later
READY_TIMEOUT_S = 600.0    # how long `star-repro warm` waits for the preload


# --------------------------------------------------------------------------------------------------------- server

def _log(msg: str) -> None:
    print(f"star-repro warm: {msg}", file=sys.stderr, flush=True)


def _preload(modules) -> None:
    import importlib
    import time

    t0 = time.monotonic()
    done, skipped = [], []
    for name in modules:
        try:
            importlib.import_module(name)
            done.append(name)
        except BaseException as exc:  # noqa: BLE001 - a module that fails to import is just not preloaded
            if isinstance(exc, KeyboardInterrupt):
                raise
            skipped.append(f"{name} ({type(exc).__name__}: {exc})")
    try:  # the command-line parser and every stage module (cheap; what each job builds first)
        import star_repro.cli

        star_repro.cli.build_parser()
    except Exception as exc:  # noqa: BLE001
        skipped.append(f"star_repro.cli ({type(exc).__name__}: {exc})")
    msg = f"preloaded {len(done)} modules in {time.monotonic() - t0:.1f} s"
    _log(msg + (f"; skipped {'; '.join(skipped)}" if skipped else ""))
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():  # forked children could not use CUDA
        _log("warning: a preloaded module initialised CUDA; jobs that use CUDA will fail in the forked children")


class _Job:
    __slots__ = ("conn", "buf", "fds", "pid", "kill_at")

    def __init__(self, conn):
        self.conn, self.buf, self.fds, self.pid, self.kill_at = conn, b"", [], None, None


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class _Server:
    def __init__(self, path: str):
        import selectors

        self.path = path
        self.parent = os.getppid()
        self.stop = False
        self.jobs: dict[socket.socket, _Job] = {}
        self.children: dict[int, _Job] = {}
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        self.io_defaults = {fd: (s.encoding, s.errors) for fd, s in ((0, sys.stdin), (1, sys.stdout),
                                                                     (2, sys.stderr)) if s is not None}

    # signals: SIGCHLD only wakes the loop; SIGTERM, SIGHUP, SIGINT stop the server
    def install_signals(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, self._on_stop)

    def _on_stop(self, *_):
        self.stop = True

    def loop(self) -> None:
        import time

        while not self.stop:
            for key, _ in self.sel.select(timeout=0.5):
                if key.fileobj is self.listener:
                    self._accept()
                elif key.fileobj == self.wake_r:
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self._readable(key.fileobj)
            self._reap()
            now = time.monotonic()
            for pid, job in list(self.children.items()):
                if job.kill_at is not None and now >= job.kill_at:
                    _signal_group(pid, signal.SIGKILL)
                    job.kill_at = float("inf")
            if os.getppid() != self.parent:
                _log("the process that started the warm starter is gone; stopping")
                self.stop = True
        self.shutdown()

    def _accept(self) -> None:
        import selectors

        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            self.jobs[conn] = _Job(conn)
            self.sel.register(conn, selectors.EVENT_READ)

    def _drop(self, conn: socket.socket) -> None:
        job = self.jobs.pop(conn, None)
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()
        if job is not None:
            for fd in job.fds:
                os.close(fd)
            job.fds = []
            job.conn = None

    def _reply(self, conn: socket.socket, line: str) -> bool:
        try:
            conn.sendall(line.encode() + b"\n")
            return True
        except OSError:
            return False

    def _readable(self, conn: socket.socket) -> None:
        import time

        job = self.jobs.get(conn)
        if job is None:
            return
        if job.pid is None:  # still receiving the request
            try:
                data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            job.fds += fds
            if not data:
                self._drop(conn)
                return
            job.buf += data
            if b"\n" in job.buf:
                self._start(job)
            elif len(job.buf) > _MAX_REQUEST:
                self._reply(conn, "error request too large")
                self._drop(conn)
            return
        try:  # a running job: the client sends nothing more, so readable means it went away
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            if job.pid in self.children:
                _signal_group(job.pid, signal.SIGTERM)
                job.kill_at = time.monotonic() + KILL_GRACE_S

    def _start(self, job: _Job) -> None:
        conn = job.conn
        try:
            request = json.loads(job.buf.split(b"\n", 1)[0])
            argv, cwd, env = list(request["argv"]), str(request["cwd"]), dict(request["env"])
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(conn, f"error bad request ({exc})")
            self._drop(conn)
            return
        if len(job.fds) != 3:
            self._reply(conn, f"error expected 3 file descriptors, got {len(job.fds)}")
            self._drop(conn)
            return
        # signals that arrive between fork and the child's own handlers stay pending instead of reaching the
        # server's handlers in the child
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        pid = os.fork()
        if pid == 0:
            self._child(job.fds, argv, cwd, env)  # never returns
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        try:
            os.setpgid(pid, pid)  # also done in the child: whichever runs first wins the race
        except OSError:
            pass
        for fd in job.fds:
            os.close(fd)
        job.fds, job.buf, job.pid = [], b"", pid
        self.children[pid] = job
        if not self._reply(conn, f"pid {pid}"):
            self._drop(conn)
            _signal_group(pid, signal.SIGTERM)
            import time

            job.kill_at = time.monotonic() + KILL_GRACE_S

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.children.pop(pid, None)
            if job is not None and job.conn is not None:
                conn = job.conn
                self._reply(conn, f"exit {_exit_code(status)}")
                self._drop(conn)

    def shutdown(self) -> None:
        import time

        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for pid in self.children:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_S
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in list(self.children):
            _signal_group(pid, signal.SIGKILL)
            try:
                _, status = os.waitpid(pid, 0)
                job = self.children.pop(pid)
                if job.conn is not None:
                    self._reply(job.conn, f"exit {_exit_code(status)}")
            except (ChildProcessError, KeyError):
                pass
        for conn in list(self.jobs):
            self._drop(conn)
        self.listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        _log("stopped")

    # ------------------------------------------------------------------------------------------ in the child

    def _child(self, fds: list[int], argv: list[str], cwd: str, env: dict) -> None:
        code = 1
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(s, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
            self.sel.close()
            self.listener.close()
            for conn in list(self.jobs):
                conn.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in set(fds) - {0, 1, 2}:
                os.close(fd)
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            self._stdio(env)
            _fresh_process_state(env)
            sys.argv = ["star-repro", *argv]
            code = _run_cli(argv)
        except BaseException as exc:  # noqa: BLE001 - whatever happens, the child leaves through os._exit
            import traceback

            traceback.print_exc()
            code = 130 if isinstance(exc, KeyboardInterrupt) else 1
        finally:
            _finish(code)

    def _stdio(self, env: dict) -> None:
        import io

        enc = err = None
        if env.get("PYTHONIOENCODING"):
            enc, _, err = env["PYTHONIOENCODING"].partition(":")
        unbuffered = bool(env.get("PYTHONUNBUFFERED"))
        streams = []
        for fd in (0, 1, 2):
            d_enc, d_err = self.io_defaults.get(fd, ("utf-8", "strict"))
            tty = os.isatty(fd)
            if fd == 0:
                raw = io.open(fd, "rb", closefd=False)
                streams.append(io.TextIOWrapper(raw, encoding=enc or d_enc, errors=err or d_err,
                                                line_buffering=tty))
                continue
            raw = io.open(fd, "wb", buffering=0 if unbuffered else -1, closefd=False)
            streams.append(io.TextIOWrapper(raw, encoding=enc or d_enc,
                                            errors=(err or d_err) if fd == 1 else "backslashreplace",
                                            line_buffering=tty or fd == 2, write_through=unbuffered))
        sys.stdin, sys.stdout, sys.stderr = streams
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


def _fresh_process_state(env: dict) -> None:
    """What a freshly started process would have: its own RNG states, thread counts, atexit handlers."""
    import atexit
    import weakref

    threads = env.get("OMP_NUM_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(threads))
        if "numpy" in sys.modules:  # the BLAS thread pools sized themselves from the server's environment
            try:
                from threadpoolctl import threadpool_limits

                threadpool_limits(int(threads), user_api="blas")
            except Exception:  # noqa: BLE001 - threadpoolctl is optional
                pass
    if "numpy.random" in sys.modules:
        import numpy

        numpy.random.seed(numpy.frombuffer(os.urandom(32), dtype=numpy.uint32))
    if "torch" in sys.modules:
        sys.modules["torch"].default_generator.seed()
    # atexit: drop the server's handlers (they belong to the server); keep the ones a fresh process relies on
    atexit._clear()
    server_finalizers = set(weakref.finalize._registry)
    weakref.finalize._registered_with_atexit = True  # run the job's own finalizers below, not the server's

    def job_finalizers():
        items = [(f, i) for f, i in weakref.finalize._registry.items() if f not in server_finalizers and i.atexit]
        for f, _ in sorted(items, key=lambda fi: fi[1].index, reverse=True):
            f()

    atexit.register(job_finalizers)
    if "logging" in sys.modules:
        atexit.register(sys.modules["logging"].shutdown)
    if "multiprocessing.util" in sys.modules:
        atexit.register(sys.modules["multiprocessing.util"]._exit_function)


def _run_cli(argv: list[str]) -> int:
    try:
        from star_repro.cli import main

        result = main(argv, warm_child=True)
    except SystemExit as exc:
        result = exc.code
        if result is not None and not isinstance(result, int):
            print(result, file=sys.stderr)
            result = 1
    except KeyboardInterrupt:
        import traceback

        traceback.print_exc()
        result = 130
    return int(result or 0)


def _finish(code: int) -> None:
    """The end of a job: what interpreter shutdown would do, the `warm:` line, then os._exit."""
    import atexit
    import resource
    import threading

    try:
        threading._shutdown()  # wait for non-daemon threads, as the interpreter does at exit
    except BaseException:  # noqa: BLE001
        pass
    try:
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
    try:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        rss = (me.ru_maxrss + kids.ru_maxrss) / 1024
        cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        sys.stderr.write(f"warm: pid {os.getpid()} peak RSS {rss:.0f} MiB, CPU {cpu:.2f} s "
                         "(user+sys incl. its children)\n")
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    os._exit(code & 0xFF)


def serve(path: str, preload, ready_fd: int | None = None) -> int:
    """Run the server: new session, preload, listen on `path`, write "ready" to ready_fd, loop until stopped."""
    try:
        os.setsid()
    except OSError:  # already a session leader
        pass
    _preload(preload)
    server = _Server(path)
    server.install_signals()
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    server.loop()
    return 0


# -------------------------------------------------------------------------------------------- `star-repro warm`

def parse_preload(text: str | None) -> list[str]:
    if text is None:
        return list(DEFAULT_PRELOAD)
    return [m for m in text.replace(",", " ").split() if m]


def start_server(path: str, preload) -> "subprocess.Popen | None":  # noqa: F821
    """Start `python -m star_repro.warm serve` on `path` and wait until it is ready; None (after saying why on
    stderr) when it exits or does not get ready in time."""
    import select
    import subprocess
    import time

    r, w = os.pipe()
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "star_repro.warm", "serve", "--socket", path,
                                 "--preload", ",".join(preload), "--ready-fd", str(w)],
                                pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=2, env=env)
    finally:
        os.close(w)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _log(f"the warm starter was not ready after {READY_TIMEOUT_S:.0f} s")
                stop_server(proc)
                return None
            if select.select([r], [], [], min(left, 1.0))[0]:
                if os.read(r, 64).startswith(b"ready"):
                    return proc
                _log(f"the warm starter exited before it was ready (status {proc.wait()})")
                return None
    except BaseException:
        stop_server(proc)
        raise
    finally:
        os.close(r)


def stop_server(proc) -> None:
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE_S + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_wrapper(cmd: list[str], preload) -> int:
    """`star-repro warm -- CMD`: CMD's exit status (128+N when signal N killed it)."""
    import shutil
    import subprocess
    import tempfile
    import time

    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("star-repro warm: error: no command given (star-repro warm -- CMD ARGS...)", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="star-repro-warm-")  # mode 0700
    if len(tmp) > 90:  # AF_UNIX paths are limited to 107 bytes
        os.rmdir(tmp)
        tmp = tempfile.mkdtemp(prefix="star-repro-warm-", dir="/tmp")
    path = os.path.join(tmp, "sock")
    state: dict = {"child": None, "pending": []}

    def forward(signum, _frame):
        if state["child"] is None:
            state["pending"].append(signum)
        else:
            try:
                state["child"].send_signal(signum)
            except OSError:
                pass

    # like a shell waiting for a foreground job: Ctrl-C reaches CMD from the terminal, so it is not forwarded
    previous = {s: signal.signal(s, h) for s, h in ((signal.SIGINT, lambda *_: None),
                                                    (signal.SIGTERM, forward), (signal.SIGHUP, forward))}
    server = None
    try:
        t0 = time.monotonic()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C during the preload aborts it
        server = start_server(path, preload)
        signal.signal(signal.SIGINT, lambda *_: None)
        env = dict(os.environ)
        if server is not None:
            _log(f"ready at {path} after {time.monotonic() - t0:.1f} s")
            env[ENV_VAR] = path
        else:
            _log("running the command without it")
            env.pop(ENV_VAR, None)
        if state["pending"]:
            return 128 + state["pending"][0]
        try:
            child = subprocess.Popen(cmd, env=env)
        except OSError as exc:
            print(f"star-repro warm: error: cannot run {cmd[0]}: {exc.strerror or exc}", file=sys.stderr)
            return 127
        state["child"] = child
        for s in state["pending"]:
            child.send_signal(s)
        rc = child.wait()
        return 128 - rc if rc < 0 else rc
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGINT, lambda *_: None)
        try:
            if server is not None:
                stop_server(server)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            for s, h in previous.items():
                signal.signal(s, h)


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m star_repro.warm")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run a warm starter server on SOCKET (what `star-repro warm` starts)")
    s.add_argument("--socket", required=True)
    s.add_argument("--preload", default=None, help="comma-separated modules (default: the heavy ones)")
    s.add_argument("--ready-fd", type=int, default=None, help="write 'ready' to this fd when listening")
    args = parser.parse_args(argv)
    return serve(args.socket, parse_preload(args.preload), args.ready_fd)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
