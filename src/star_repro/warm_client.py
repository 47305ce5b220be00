"""The warm starter's client (see `star_repro.warm` for the whole design): what `star_repro.cli.main` calls first
inside `star-repro warm -- CMD`. Standard library only, so a job starts as fast as `star-repro --help`; kept apart
from the server so that the CLI (which the server's children run) and the server import it, not each other.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys

ENV_VAR = "STAR_REPRO_WARM"
_MAX_REQUEST = 64 << 20
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _note(path: str, reason: str) -> None:
    print(f"star-repro: warm starter at {path} not reachable ({reason}); running in this process", file=sys.stderr)


def _std_fds() -> tuple[list[int], list[int]]:
    """fds 0, 1, 2; a closed one is replaced by /dev/null (returned second, to close after sending)."""
    fds, opened = [], []
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            nul = os.open(os.devnull, mode)
            fds.append(nul)
            opened.append(nul)
    return fds, opened


class _Lines:
    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def next(self) -> str | None:
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")


def run_client(path: str, argv: list[str]) -> int | None:
    """Run `star-repro argv` in the warm starter at `path`: the exit status, or None when it is not reachable
    (after a one-line note on stderr; the caller then runs the command itself)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        request = json.dumps({"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)}).encode() + b"\n"
    except OSError as exc:
        sock.close()
        _note(path, exc.strerror or str(exc))
        return None
    with sock:
        fds, opened = _std_fds()
        try:
            sent = socket.send_fds(sock, [request], fds)
            if sent < len(request):
                sock.sendall(request[sent:])
        except OSError as exc:
            _note(path, f"sending the job failed: {exc.strerror or exc}")
            return None
        finally:
            for fd in opened:
                os.close(fd)
        lines = _Lines(sock)
        first = lines.next()
        if first is None or not first.startswith("pid "):
            _note(path, first[len("error "):] if first and first.startswith("error ") else "it closed the connection")
            return None
        pid = int(first.split()[1])

        def forward(signum, _frame):
            try:
                os.kill(pid, signum)
            except OSError:
                pass

        previous = {s: signal.signal(s, forward) for s in _FORWARDED}
        try:
            last = lines.next()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        if last is None or not last.startswith("exit "):
            print(f"star-repro: warm starter at {path} closed the connection while job pid {pid} ran",
                  file=sys.stderr)
            return 1
        return int(last.split()[1])
