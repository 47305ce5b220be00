"""A local stand-in for the OpenAI chat-completions endpoint, with injectable faults.

Binds 127.0.0.1 on a random free port only, so tests exercise the real `openai` client, the retry logic and the
cache writes without any network. Faults are consumed in order, one per request, from a queue the test fills
(or chosen per request by a callable); every request is logged so tests can assert what was (not) asked.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

FAULTS = ("429", "500", "503", "timeout", "malformed", "empty", "missing_part", "no_choices", "401", "truncated")


@dataclass
class RequestRecord:
    index: int
    path: str
    authorization: str | None
    body: Any
    fault: str | None
    status: int = 0
    started: float = 0.0
    answered: float | None = None
    content: str | None = None


@dataclass
class FakeOpenAIServer:
    """`responder(body) -> content` makes the assistant's answer for a well-formed request.

    `faults`: fault names applied to successive requests (None = answer normally).
    `fault_fn(body, index) -> fault | None`: an alternative, request-dependent choice (checked when the queue is
    empty). `delay`: seconds added before every normal answer (lets a test kill a client mid-run).
    `on_request(record)`: called before answering (e.g. to validate the cache file at that moment).
    """

    responder: Callable[[Any], str]
    faults: list[str | None] = field(default_factory=list)
    fault_fn: Callable[[Any, int], str | None] | None = None
    delay: float = 0.0
    timeout_sleep: float = 2.0
    retry_after: str = "1"
    on_request: Callable[[RequestRecord], None] | None = None
    requests: list[RequestRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for f in self.faults:
            if f is not None and f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}; expected one of {FAULTS}")

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> "FakeOpenAIServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                server._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # a client that was killed or timed out mid-request is expected here, not a test failure
                import sys

                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- request handling ------------------------------------------------------------------------------------
    def answered(self) -> list[RequestRecord]:
        """Requests that got a valid 200 answer (faults excluded)."""
        with self._lock:
            return [r for r in self.requests if r.status == 200 and r.fault is None]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            index = len(self.requests)
            fault = self.faults.pop(0) if self.faults else None
            if fault is None and self.fault_fn is not None and body is not None:
                fault = self.fault_fn(body, index)
            rec = RequestRecord(index=index, path=h.path, authorization=h.headers.get("Authorization"), body=body,
                                fault=fault, started=time.monotonic())
            self.requests.append(rec)
        if self.on_request is not None:
            self.on_request(rec)
        send = h._send  # type: ignore[attr-defined]
        if h.path.rstrip("/") != "/v1/chat/completions" or body is None:
            rec.status = 404 if body is not None else 400
            send(rec.status, {"error": {"message": "bad request", "type": "invalid_request_error"}})
            return
        if fault == "429":
            rec.status = 429
            send(429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
                 {"Retry-After": self.retry_after})
            return
        if fault in ("500", "503"):
            rec.status = int(fault)
            send(rec.status, {"error": {"message": "The server had an error", "type": "server_error"}})
            return
        if fault == "401":
            rec.status = 401
            send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                 "code": "invalid_api_key"}})
            return
        if fault == "timeout":
            time.sleep(self.timeout_sleep)
        elif self.delay:
            time.sleep(self.delay)
        content = self.responder(body)
        finish = "stop"
        if fault == "empty":
            content = "   "
        elif fault == "missing_part":
            obj = json.loads(content)
            obj.pop(sorted(obj)[0])
            content = json.dumps(obj)
        elif fault == "truncated":
            finish = "length"
        rec.content = content
        payload: dict[str, Any] = {
            "id": f"chatcmpl-fake{index:06d}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body.get("model", "unknown"),
            "system_fingerprint": "fp_fake0001",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 20, "total_tokens": 40},
        }
        if fault == "no_choices":
            payload["choices"] = []
        rec.status = 200
        try:
            if fault == "malformed":
                data = json.dumps(payload).encode()[:-25]
                h.send_response(200)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(data)))
                h.end_headers()
                h.wfile.write(data)
            else:
                send(200, payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout fault)
            rec.status = -1
        rec.answered = time.monotonic()


def loopback_only(monkeypatch) -> None:
    """Make any socket connection to a non-loopback address fail loudly (tests must not reach the network)."""
    import socket

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(addr: Any) -> None:
        if isinstance(addr, tuple) and addr and addr[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to reach {addr!r}; only 127.0.0.1 is allowed")

    def connect(self, addr):  # type: ignore[no-untyped-def]
        check(addr)
        return real_connect(self, addr)

    def connect_ex(self, addr):  # type: ignore[no-untyped-def]
        check(addr)
        return real_connect_ex(self, addr)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


def paper_responder(body: Any) -> str:
    """Answers in the shape of the project's templates: free text per part, or a JSON object per class."""
    import re

    content = body["messages"][-1]["content"]
    if body.get("response_format"):
        parts = json.loads(re.search(r"\[.*?\]", content).group(0))
        action = re.search(r"when people (.+?)\. Answer", content).group(1)
        return json.dumps({p: f"the {p} moves while the person does {action}" for p in parts})
    m = re.search(r"describe the (.+?) actions simply when people (.+)$", content)
    return f"  the {m.group(1)} moves while the person does {m.group(2)}\n"


def asked_of(body: Any) -> tuple[str, tuple[str, ...]]:
    """(class, parts) a request produced by the project's templates asks about."""
    import re

    content = body["messages"][-1]["content"]
    if body.get("response_format"):
        parts = tuple(json.loads(re.search(r"\[.*?\]", content).group(0)))
        return re.search(r"when people (.+?)\. Answer", content).group(1), parts
    m = re.search(r"describe the (.+?) actions simply when people (.+)$", content)
    return m.group(2), (m.group(1),)
