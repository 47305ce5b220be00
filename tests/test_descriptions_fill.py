"""The OpenAI fill against a local chat-completions server (127.0.0.1) that injects faults.

Covers: 429 with Retry-After, 5xx, a timeout, malformed JSON, an empty answer, an answer without choices, a
truncated answer and (JSON mode) an answer missing a part; the cache is valid after every write; a fill killed
with SIGKILL resumes without asking again for what it saved; the API key never reaches a file or a log.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fake_openai_server import FakeOpenAIServer, asked_of, loopback_only, paper_responder
from star_repro.cli import main
from star_repro.data.classes import PKU51_CLASSES
from star_repro.errors import StarReproError
from star_repro.skeleton import part_names
from star_repro.text.descriptions import DescriptionCache, DescriptionsIncomplete, cache_path, describe
from star_repro.text.llm_fill import FillOptions, fill, fill_or_raise, format_plan, plan_fill

PARTS6 = part_names(6)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path, project_root):
    loopback_only(monkeypatch)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def opts(server: FakeOpenAIServer, project_root: Path, **kw) -> FillOptions:
    base = dict(dataset="pku1", partition=6, base_url=server.base_url,
                templates_path=project_root / "prompts/templates.yaml",
                concurrency=1, backoff_base=0.01, backoff_max=5.0, timeout=0.5, max_attempts=8, progress=False,
                env_file=None)
    base.update(kw)
    return FillOptions(**base)


def _validate_cache_each_request(path: Path, seen: list[int]):
    """on_request hook: the cache on disk must be a valid cache, never shrinking, whenever a request arrives."""
    def hook(rec):
        if path.exists():
            n = DescriptionCache.load(path).count()
            assert not seen or n >= seen[-1]
            seen.append(n)
    return hook


def test_fill_survives_every_fault_and_writes_valid_entries(project_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + uuid.uuid4().hex)
    path = cache_path("openai", "pku1", 6)
    seen: list[int] = []
    faults = ["429", "500", "timeout", "malformed", "empty", "no_choices", "truncated", "503"]
    with FakeOpenAIServer(paper_responder, faults=list(faults), timeout_sleep=1.5, retry_after="1",
                          on_request=_validate_cache_each_request(path, seen)) as srv:
        report = fill(opts(srv, project_root, classes=["bow", "clapping"], max_attempts=10, backoff_base=0.002),
                      log=lambda s: None)
        reqs = list(srv.requests)
    assert report.failed == [] and report.saved == 12 and report.answered == 12
    assert report.retries == {"429": 1, "5xx": 2, "timeout": 1, "connection": 0, "malformed": 1, "invalid": 3}
    assert len(reqs) == 12 + len(faults)
    assert reqs[1].started - reqs[0].started >= 0.95  # Retry-After: 1 was honoured
    cache = DescriptionCache.load(path)
    assert cache.count() == 12 and seen == sorted(seen) and seen[-1] == 11
    e = cache.get("bow", "head")
    assert e.text == "the head moves while the person does bow"  # trimmed
    assert e.source == "openai" and e.model == "gpt-3.5-turbo-0125" and e.template == "paper-per-part@1"
    assert e.response["id"].startswith("chatcmpl-fake") and e.response["system_fingerprint"] == "fp_fake0001"
    # each request body is the canonical request, and its hash is what the entry records
    from star_repro.text.prompt_templates import request_sha256
    for r in reqs:
        cls, (part,) = asked_of(r.body)
        if r.status == 200 and r.fault is None:
            assert cache.get(cls, part).request_sha256 == request_sha256(
                {k: r.body[k] for k in ("model", "messages", "temperature", "seed", "max_tokens")})


def test_json_mode_retries_an_answer_missing_a_part(project_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-json")
    with FakeOpenAIServer(paper_responder, faults=["missing_part", "malformed"]) as srv:
        report = fill(opts(srv, project_root, classes=["bow", "drop"], template="per-class-json", partition=4),
                      log=lambda s: None)
        assert len(srv.requests) == 4
        assert srv.requests[0].body["response_format"] == {"type": "json_object"}
    assert report.retries["invalid"] == 1 and report.retries["malformed"] == 1 and report.saved == 8
    cache = DescriptionCache.load(cache_path("openai", "pku1", 4))
    assert cache.get("drop", "leg-foot").text == "the leg-foot moves while the person does drop"
    assert cache.get("drop", "hip").request_sha256 == cache.get("drop", "head").request_sha256


def test_concurrent_fill_then_nothing_left_to_ask(project_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-conc")
    classes = list(PKU51_CLASSES[:5])
    with FakeOpenAIServer(paper_responder, faults=["500", None, "429", None, "empty"], retry_after="0",
                          delay=0.01) as srv:
        r1 = fill(opts(srv, project_root, classes=classes, concurrency=4), log=lambda s: None)
        n1 = len(srv.requests)
        r2 = fill(opts(srv, project_root, classes=classes, concurrency=4), log=lambda s: None)
        assert len(srv.requests) == n1  # nothing asked twice
    assert r1.saved == 30 and r2.asked == 0
    cache = DescriptionCache.load(cache_path("openai", "pku1", 6))
    assert cache.missing(classes) == []


def test_persistent_failure_is_reported_and_the_rest_is_saved(project_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fail")
    bad = lambda body, i: "500" if "people bow" in body["messages"][-1]["content"] and "head" in \
        body["messages"][-1]["content"] else None  # noqa: E731
    with FakeOpenAIServer(paper_responder, fault_fn=bad) as srv:
        with pytest.raises(StarReproError, match="1 request.s. failed after 3 attempts"):
            fill_or_raise(opts(srv, project_root, classes=["bow"], max_attempts=3), log=lambda s: None)
        cache = DescriptionCache.load(cache_path("openai", "pku1", 6))
        assert cache.missing(["bow"]) == [("bow", "head")]
        srv.fault_fn = None
        n = len(srv.requests)
        fill_or_raise(opts(srv, project_root, classes=["bow"]), log=lambda s: None)
        assert [asked_of(r.body) for r in srv.requests[n:]] == [("bow", ("head",))]


def test_dry_run_lists_requests_and_estimates_tokens(project_root, capsys):
    tpl = str(project_root / "prompts/templates.yaml")
    assert main(["descriptions", "fill", "--dataset", "ntu60", "--partition", "6", "--dry-run", "--templates", tpl,
                 "--class", "drink water", "--class", "sit down"]) == 0
    out = capsys.readouterr().out
    assert "would ask 12 request(s) for 12 description(s): 12 missing, 0 stale" in out
    assert "  drink water / head: please describe the head actions simply when people drink water" in out
    assert "at most 960 completion" in out and "prompt" in out
    assert not Path("prompts/cache").exists()  # a dry run writes nothing and needs no key
    plan = plan_fill(FillOptions(dataset="pku1", partition=2, templates_path=tpl, template="per-class-json"))
    assert len(plan.jobs) == 51 and plan.jobs[0].asked == ("upper body", "lower body")
    assert "one request per class" in format_plan(plan, list_requests=False)


def test_fill_refuses_non_api_sets_and_unknown_classes(project_root):
    tpl = project_root / "prompts/templates.yaml"
    with pytest.raises(StarReproError, match="not filled from the API"):
        plan_fill(FillOptions(dataset="pku1", partition=6, source_set="authored", templates_path=tpl))
    with pytest.raises(StarReproError, match="did you mean 'clapping'"):
        plan_fill(FillOptions(dataset="pku1", partition=6, classes=["claping"], templates_path=tpl))
    with pytest.raises(StarReproError, match="no OpenAI API key"):
        fill(FillOptions(dataset="pku1", partition=6, classes=["bow"], templates_path=tpl, env_file=None))


def test_api_key_never_reaches_files_or_logs(project_root, tmp_path, capsys, caplog):
    key = "sk-proj-" + uuid.uuid4().hex + "KEYMARK"
    (tmp_path / ".env").write_text(f"# local secrets\nexport OPENAI_API_KEY='{key}'\n")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("openai").setLevel(logging.DEBUG)
    tpl = str(project_root / "prompts/templates.yaml")
    with FakeOpenAIServer(paper_responder, faults=["429", "500", "malformed"], retry_after="0") as srv:
        args = ["descriptions", "fill", "--dataset", "pku1", "--class", "bow", "--base-url", srv.base_url,
                "--templates", tpl, "--backoff-base", "0.01", "--concurrency", "2"]
        assert main(args) == 0
        assert {r.authorization for r in srv.requests} == {f"Bearer {key}"}  # the key was used ...
        srv.faults.extend(["401"])
        assert main(args + ["--force"]) == 2  # a refused key stops the run with a clear error
    out, err = capsys.readouterr()
    assert "the API refused a request" in err and "401" in err
    logged = caplog.text
    assert len(logged) > 0
    for text in (out, err, logged):  # ... and appears nowhere else
        assert key not in text and "KEYMARK" not in text
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.name != ".env":
            assert key.encode() not in f.read_bytes(), f
    cache = DescriptionCache.load(cache_path("openai", "pku1", 6))
    assert cache.missing(["bow"]) == []


def test_sigkilled_fill_resumes_without_asking_again(project_root, tmp_path):
    classes = ["bow", "clapping", "drop", "throw"]
    path = cache_path("openai", "pku1", 6)
    env = dict(os.environ, PYTHONPATH=str(project_root / "src"), OPENAI_API_KEY="sk-test-kill",
               NO_PROXY="127.0.0.1,localhost")
    with FakeOpenAIServer(paper_responder, delay=0.15) as srv:
        cmd = [sys.executable, "-m", "star_repro.cli", "descriptions", "fill", "--dataset", "pku1",
               "--base-url", srv.base_url, "--templates", str(project_root / "prompts/templates.yaml"),
               "--concurrency", "2", "--no-progress", "--env-file", str(tmp_path / "none.env")]
        for c in classes:
            cmd += ["--class", c]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if path.exists() and DescriptionCache.load(path).count() >= 7:
                break
            if proc.poll() is not None:
                pytest.fail(f"fill ended early: {proc.stderr.read().decode()}")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        n_first = len(srv.requests)
        saved = DescriptionCache.load(path)  # valid after the kill
        before = {(c, p): e for c, p, e in saved.items()}
        assert 7 <= len(before) < 24 and n_first < 24

        srv.delay = 0.0
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        second = [asked_of(r.body) for r in srv.requests[n_first:]]
    asked_again = [(c, ps[0]) for c, ps in second if (c, ps[0]) in before]
    assert asked_again == []  # nothing already cached was asked again
    assert len(second) == 24 - len(before)
    final = DescriptionCache.load(path)
    assert final.missing(classes) == []
    assert all(final.get(c, p) == e for (c, p), e in before.items())  # nothing lost
    assert b"sk-test-kill" not in done.stderr + done.stdout
    with pytest.raises(DescriptionsIncomplete):  # the other 47 classes are missing: describe refuses
        describe("pku1", 6, "openai", tmp_path / "d.json", templates_path=project_root / "prompts/templates.yaml")
