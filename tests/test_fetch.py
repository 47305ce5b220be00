"""`star-repro fetch` against a local HTTP server on 127.0.0.1 (a thread of this test, stopped at the end and by a
timer): a good file, a hash mismatch (refused, nothing placed), a cut connection (resumed with Range), no server
(a clear error), and the released description files served from ../shared (imported, never copied here)."""
from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from star_repro import fetch as F
from star_repro.cli import main

GOOD = bytes(range(256)) * 200          # 51,200 bytes: several read chunks
CUT_AFTER = 20_000


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_once: set[str] = set()
    requests: list[tuple[str, str | None]] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        name = self.path.rsplit("/", 1)[1]
        rng = self.headers.get("Range")
        self.requests.append((name, rng))
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        if start >= len(body):
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if name in self.cut_once:
            self.cut_once.discard(name)
            self.wfile.write(body[start:CUT_AFTER])  # promise everything, send part, drop the connection
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture()
def server():
    _Handler.files, _Handler.cut_once, _Handler.requests = {}, set(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    stop = threading.Timer(120.0, httpd.shutdown)  # bounded even if a test hangs
    stop.daemon = True
    stop.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    stop.cancel()
    httpd.shutdown()
    httpd.server_close()
    t.join(5)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_good_file_is_verified_and_placed(server, tmp_path):
    url, h = server
    h.files["good.bin"] = GOOD
    dest = tmp_path / "w" / "good.bin"
    assert F.download(f"{url}/good.bin", dest, _sha(GOOD), backoff=0, quiet=True) == "downloaded"
    assert dest.read_bytes() == GOOD
    assert not dest.with_name("good.bin.part").exists()
    # a second run finds it verified and asks nothing
    n = len(h.requests)
    assert F.download(f"{url}/good.bin", dest, _sha(GOOD), backoff=0, quiet=True) == "present"
    assert len(h.requests) == n


def test_hash_mismatch_is_refused_and_nothing_placed(server, tmp_path):
    url, h = server
    h.files["bad.bin"] = GOOD[:-1] + b"X"
    dest = tmp_path / "bad.bin"
    with pytest.raises(F.FetchError, match=r"sha256 .* expected .*refused.*nothing placed"):
        F.download(f"{url}/bad.bin", dest, _sha(GOOD), backoff=0, quiet=True)
    assert not dest.exists() and not dest.with_name("bad.bin.part").exists()


def test_cut_connection_resumes_with_range(server, tmp_path):
    url, h = server
    h.files["cut.bin"] = GOOD
    h.cut_once.add("cut.bin")
    dest = tmp_path / "cut.bin"
    assert F.download(f"{url}/cut.bin", dest, _sha(GOOD), backoff=0, quiet=True) == "downloaded"
    assert dest.read_bytes() == GOOD
    assert h.requests == [("cut.bin", None), ("cut.bin", f"bytes={CUT_AFTER}-")]


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    url, h = server
    h.files["good.bin"] = GOOD
    dest = tmp_path / "good.bin"
    dest.with_name("good.bin.part").write_bytes(GOOD[:1000])
    F.download(f"{url}/good.bin", dest, _sha(GOOD), backoff=0, quiet=True)
    assert dest.read_bytes() == GOOD and h.requests == [("good.bin", "bytes=1000-")]


def test_existing_wrong_file_is_not_overwritten(server, tmp_path):
    url, h = server
    h.files["good.bin"] = GOOD
    dest = tmp_path / "good.bin"
    dest.write_bytes(b"something else")
    with pytest.raises(F.FetchError, match="exists but its sha256"):
        F.download(f"{url}/good.bin", dest, _sha(GOOD), backoff=0, quiet=True)
    assert dest.read_bytes() == b"something else" and h.requests == []


def test_no_server_is_a_clear_error(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["fetch", "clip", "--mirror", f"http://127.0.0.1:{port}/x", "--weights-dir", str(tmp_path),
                 "--attempts", "2", "--backoff", "0", "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 2
    assert "could not download" in err and "after 2 attempt(s)" in err and "offline" in err
    assert "ConnectionRefusedError" in err and F.CLIP_SHA256 in err
    assert not (tmp_path / F.CLIP_FILE).exists()


def test_clip_pin_matches_open_clip():
    from open_clip.pretrained import get_pretrained_cfg

    assert get_pretrained_cfg("ViT-L-14-336", "openai")["url"] == F.CLIP_URL


def test_fetch_descriptions_imports_the_release(server, tmp_path, real_data, capsys):
    """The released files, served from ../shared by the local server, pass the pinned hashes and are imported."""
    url, h = server
    for ds, (name, _sha256) in F.STAR_DESCRIPTION_FILES.items():
        h.files[name] = (real_data / "descriptions" / f"star_{name}").read_bytes()
    cache_root, releases = tmp_path / "cache", tmp_path / "releases"
    code = main(["fetch", "descriptions", "--mirror", url, "--releases-dir", str(releases),
                 "--cache-root", str(cache_root), "--backoff", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "imported 120 classes" in out and "imported 51 classes" in out
    from star_repro.text.descriptions import DescriptionCache

    ntu = DescriptionCache.load(cache_root / "imported-star" / "ntu120_6part.json")
    assert ntu.count() == 120 * 6 and not ntu.missing()
    assert {e.source_file["sha256"] for _, _, e in ntu.items()} == {F.STAR_DESCRIPTION_FILES["ntu120"][1]}
    assert [r[0] for r in h.requests] == [n for n, _ in F.STAR_DESCRIPTION_FILES.values()]


def test_descriptions_with_another_hash_are_refused(server, tmp_path, capsys):
    url, h = server
    for name, _sha256 in F.STAR_DESCRIPTION_FILES.values():
        h.files[name] = b"drink water; Head: a stand-in line\n"
    code = main(["fetch", "descriptions", "--mirror", url, "--releases-dir", str(tmp_path / "r"),
                 "--cache-root", str(tmp_path / "c"), "--backoff", "0"])
    assert code == 2 and "refused" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not any((tmp_path / "r").iterdir())


def test_a_local_write_failure_is_a_named_error_not_a_traceback(server, tmp_path):
    """Disk full or a folder where the partial file goes: FetchError naming the .part file, no retries."""
    url, h = server
    h.files["good.bin"] = GOOD
    dest = tmp_path / "w" / "good.bin"
    part = dest.with_name("good.bin.part")
    part.mkdir(parents=True)  # open(part, ...) fails with IsADirectoryError, even as root
    with pytest.raises(F.FetchError, match=r"good\.bin\.part: cannot write the download"):
        F.download(f"{url}/good.bin", dest, _sha(GOOD), attempts=3, backoff=0.01, quiet=True)
    assert not dest.exists() and len(h.requests) == 1
