"""Fill or refresh a description cache set from the OpenAI chat-completions API (an explicit command only).

Never run by `dvc repro` or Snakemake: the pipeline reads the committed cache offline. This module asks only for
the (class, part) entries that are missing or stale (or every one with `force`), with bounded concurrency,
retries with exponential backoff (honouring Retry-After) on 429, 5xx, timeouts, connection errors, malformed
bodies and invalid answers, and writes the cache atomically after every answer, so an interrupted run resumes
with nothing lost and nothing already saved asked again.

The API key comes from OPENAI_API_KEY or a `.env` file; it is passed to the client and nowhere else (never
logged, printed or written), and any error text is scrubbed of it before it is shown.
"""
from __future__ import annotations

import email.utils
import json
import os
import random
import re
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from star_repro.data.classes import classes_of
from star_repro.errors import StarReproError
from star_repro.skeleton import PART_LABELS
from star_repro.text.descriptions import (
    DEFAULT_CACHE_ROOT, DEFAULT_TEMPLATES_PATH, MAX_TEXT_CHARS, DescriptionCache, Entry, cache_path, check_cache,
    display_path, load_or_new, normalize_text, set_kind,
)
from star_repro.text.prompt_templates import Template, estimate_prompt_tokens, get_template, request_sha256

RETRY_KINDS = ("429", "5xx", "timeout", "connection", "malformed", "invalid")


@dataclass
class FillOptions:
    dataset: str
    partition: int
    source_set: str = "openai"
    template: str | None = None
    classes: Sequence[str] | None = None
    force: bool = False
    cache_root: str | Path = DEFAULT_CACHE_ROOT
    templates_path: str | Path = DEFAULT_TEMPLATES_PATH
    base_url: str | None = None
    env_file: str | Path | None = ".env"
    concurrency: int = 4
    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    timeout: float = 60.0
    max_chars: int = MAX_TEXT_CHARS
    progress: bool = True


@dataclass(frozen=True)
class Job:
    cls: str
    asked: tuple[str, ...]  # parts the request asks about
    store: tuple[str, ...]  # parts whose entries the answer fills
    request: dict[str, Any]
    sha: str


@dataclass
class FillPlan:
    template: Template
    path: Path
    cache: DescriptionCache
    jobs: list[Job]
    missing: int
    stale: int
    forced: int
    valid: int


@dataclass
class FillReport:
    path: Path
    asked: int = 0
    answered: int = 0
    saved: int = 0
    failed: list[tuple[Job, str]] = field(default_factory=list)
    retries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RETRY_KINDS, 0))
    seconds: float = 0.0

    def summary(self) -> str:
        r = ", ".join(f"{k}×{v}" for k, v in self.retries.items() if v) or "none"
        return (f"asked {self.asked} request(s): {self.answered} answered, {len(self.failed)} failed; saved "
                f"{self.saved} description(s) to {display_path(self.path)} in {self.seconds:.1f} s; retries: {r}")


class InvalidAnswer(Exception):
    """The API answered, but not with what the template asks for (retried like a transient error)."""


class _Fatal(Exception):
    """An error that retrying cannot fix (bad key, bad request, unknown model): stop asking."""


# -- the API key -------------------------------------------------------------------------------------------------
def _read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments, `export` and quotes allowed); nothing is put into os.environ."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        out[key.strip()] = value
    return out


def resolve_api_key(env_file: str | Path | None = ".env") -> str | None:
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    if key:
        return key
    if env_file is not None and Path(env_file).is_file():
        return _read_env_file(Path(env_file)).get("OPENAI_API_KEY", "").strip() or None
    return None


def _redactor(secret: str | None) -> Callable[[str], str]:
    def redact(text: str) -> str:
        text = str(text)
        if secret:
            text = text.replace(secret, "[REDACTED]")
        return re.sub(r"sk-[A-Za-z0-9_\-]{8,}", "sk-[REDACTED]", text)
    return redact


# -- planning ------------------------------------------------------------------------------------------------------
def plan_fill(opts: FillOptions) -> FillPlan:
    """What a fill would ask: one job per request, for the missing or stale (or, with force, all) entries."""
    if set_kind(opts.source_set) != "openai":
        raise StarReproError(f"set {opts.source_set!r} is not filled from the API (authored sets are built with "
                             "`descriptions build-authored`, imported-* sets with `descriptions import`)")
    tpl = get_template(opts.template, opts.templates_path)
    path = cache_path(opts.source_set, opts.dataset, opts.partition, opts.cache_root)
    cache = load_or_new(path, opts.source_set, opts.dataset, opts.partition)
    all_classes = classes_of(opts.dataset)
    classes = list(opts.classes) if opts.classes else list(all_classes)
    for c in classes:
        if c not in all_classes:
            from difflib import get_close_matches

            near = get_close_matches(c, all_classes, n=3)
            raise StarReproError(f"{c!r} is not a {opts.dataset} class" +
                                 (f"; did you mean {', '.join(map(repr, near))}?" if near else ""))
    problems = check_cache(cache, classes, template=tpl.name, templates_path=opts.templates_path)
    need = {(p.cls, p.part) for p in problems}
    missing = sum(p.kind == "missing" for p in problems)
    stale = len(problems) - missing
    forced = 0
    if opts.force:
        forced = len(classes) * len(cache.parts) - len(need)
        need = {(c, p) for c in classes for p in cache.parts}
    jobs = []
    for c in classes:
        parts = [p for p in cache.parts if (c, p) in need]
        if not parts:
            continue
        for asked, req in tpl.requests_for(c, parts if tpl.mode == "per_part" else cache.parts):
            store = tuple(p for p in asked if p in parts)
            jobs.append(Job(c, tuple(asked), store, req, request_sha256(req)))
    valid = len(classes) * len(cache.parts) - len(need)
    return FillPlan(tpl, path, cache, jobs, missing, stale, forced, valid)


def format_plan(plan: FillPlan, *, list_requests: bool = True) -> str:
    """The dry-run report: what would be asked, and a token estimate."""
    t = plan.template
    n_desc = sum(len(j.store) for j in plan.jobs)
    prompt = sum(estimate_prompt_tokens(j.request) for j in plan.jobs)
    lines = [
        f"fill plan for {plan.cache.dataset} {plan.cache.partition}-part, set {plan.cache.source_set!r} -> "
        f"{display_path(plan.path)}",
        f"template {t.ident}: model {t.model}, temperature {t.temperature:g}, seed {t.seed}, max_tokens "
        f"{t.max_tokens}, " + ("one request per (class, part)" if t.mode == "per_part" else
                               "one request per class answering all parts as JSON"),
        f"would ask {len(plan.jobs)} request(s) for {n_desc} description(s): {plan.missing} missing, "
        f"{plan.stale} stale, {plan.forced} forced; {plan.valid} already valid and not asked",
        f"estimated tokens: ~{prompt:,} prompt + at most {len(plan.jobs) * t.max_tokens:,} completion "
        "(max_tokens x requests; prompt estimated at ~4 characters per token)",
    ]
    if list_requests:
        for j in plan.jobs:
            q = j.request["messages"][-1]["content"]
            what = j.store[0] if t.mode == "per_part" else ", ".join(j.store)
            lines.append(f"  {j.cls} / {what}: {q}")
    return "\n".join(lines)


# -- answers -------------------------------------------------------------------------------------------------------
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def _clean(text: str) -> str:
    text = normalize_text(text)
    for a, b in (('"', '"'), ("“", "”"), ("'", "'")):
        if len(text) >= 2 and text[0] == a and text[-1] == b:
            text = text[1:-1].strip()
    return text


def _label(s: str) -> str:
    return re.sub(r"[^a-z]", "", s.lower())


def parse_answer(response: Any, job: Job, template: Template, max_chars: int) -> dict[str, str]:
    """The validated description(s) from one response: one non-empty, trimmed, bounded text per part asked."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise InvalidAnswer("the answer has no choices")
    choice = choices[0]
    if choice.finish_reason == "length":
        raise InvalidAnswer(f"the answer was cut at max_tokens={template.max_tokens}")
    if choice.finish_reason == "content_filter":
        raise InvalidAnswer("the answer was withheld by the content filter")
    msg = choice.message
    if getattr(msg, "refusal", None):
        raise InvalidAnswer(f"the model refused: {str(msg.refusal)[:100]}")
    content = msg.content or ""
    if not getattr(response, "id", None):
        raise InvalidAnswer("the answer has no id")
    if template.mode == "per_part":
        texts = {job.asked[0]: _clean(content)}
    else:
        body = content.strip()
        m = _FENCE.match(body)
        if m:
            body = m.group(1)
        try:
            obj = json.loads(body)
        except ValueError:
            raise InvalidAnswer(f"expected a JSON object, got {content[:60]!r}") from None
        if not isinstance(obj, dict):
            raise InvalidAnswer("expected a JSON object of part -> description")
        lookup = {}
        for p in job.asked:
            for alias in (p, PART_LABELS.get(p, p), template.part_words.get(p, p)):
                lookup[_label(alias)] = p
        texts = {}
        for k, v in obj.items():
            p = lookup.get(_label(str(k)))
            if p is not None and isinstance(v, str):
                texts[p] = _clean(v)
        absent = [p for p in job.asked if p not in texts]
        if absent:
            raise InvalidAnswer(f"the answer misses part(s) {', '.join(absent)}")
    for p, t in texts.items():
        if not t:
            raise InvalidAnswer(f"empty description for {p}")
        if len(t) > max_chars:
            raise InvalidAnswer(f"description for {p} has {len(t)} characters, more than {max_chars}")
    return texts


def _retry_after(exc: Any, cap: float) -> float | None:
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return min(cap, max(0.0, float(ms) / 1000))
        ra = headers.get("retry-after")
        if ra is None:
            return None
        try:
            return min(cap, max(0.0, float(ra)))
        except ValueError:
            when = email.utils.parsedate_to_datetime(ra)
            return min(cap, max(0.0, when.timestamp() - time.time()))
    except (TypeError, ValueError):
        return None


# -- the fill ------------------------------------------------------------------------------------------------------
def make_client(api_key: str, base_url: str | None, timeout: float) -> Any:
    import openai

    kwargs: dict[str, Any] = {"api_key": api_key, "max_retries": 0, "timeout": timeout}
    if base_url:
        kwargs["base_url"] = base_url
    return openai.OpenAI(**kwargs)


def fill(opts: FillOptions, *, client: Any = None, log: Callable[[str], None] | None = None) -> FillReport:
    """Ask the API for every missing/stale entry; the cache file is rewritten (atomically) after each answer.

    Returns the report; per-request failures (after `max_attempts`) are listed in it and the rest is saved.
    An error that retrying cannot fix (401, 400, 404, ...) stops the run with a StarReproError.
    """
    import openai

    log = log or (lambda s: print(s, file=sys.stderr))
    plan = plan_fill(opts)
    report = FillReport(path=plan.path)
    if not plan.jobs:
        log(f"nothing to ask: {display_path(plan.path)} has all {plan.valid} description(s), none stale")
        return report
    key = None
    if client is None:
        key = resolve_api_key(opts.env_file)
        if not key:
            raise StarReproError("no OpenAI API key: set OPENAI_API_KEY or put OPENAI_API_KEY=... in .env "
                                 "(git-ignored); `--dry-run` shows what would be asked without a key")
        base_url = opts.base_url or os.environ.get("OPENAI_BASE_URL") or None
        client = make_client(key, base_url, opts.timeout)
    redact = _redactor(key)
    tpl = plan.template
    lock = threading.Lock()
    abort = threading.Event()

    def count(kind: str) -> None:
        with lock:
            report.retries[kind] += 1

    cache = plan.cache

    def save(job: Job, texts: dict[str, str], meta: dict[str, Any]) -> None:
        # in the worker, before it sends its next request: an answer is on disk before anything else is asked
        with lock:
            for p in job.store:
                cache.set(job.cls, p, Entry(text=texts[p], source="openai", request_sha256=job.sha,
                                            model=tpl.model, template=tpl.ident, response=dict(meta)))
            cache.save(plan.path)
            report.answered += 1
            report.saved += len(job.store)

    def ask(job: Job) -> tuple[str, Any]:
        last = "not asked"
        for attempt in range(1, opts.max_attempts + 1):
            if abort.is_set():
                return "aborted", last
            wait_s = None
            try:
                with lock:
                    report.asked += 1
                resp = client.chat.completions.create(**job.request)
                texts = parse_answer(resp, job, tpl, opts.max_chars)
                meta = {"id": str(resp.id), "model": getattr(resp, "model", None),
                        "system_fingerprint": getattr(resp, "system_fingerprint", None)}
                save(job, texts, meta)
                return "ok", None
            except openai.RateLimitError as exc:
                kind, last, wait_s = "429", f"429 rate limited: {exc}", _retry_after(exc, opts.backoff_max)
            except openai.APITimeoutError:
                kind, last = "timeout", f"no answer within {opts.timeout:g} s"
            except openai.APIConnectionError as exc:
                kind, last = "connection", f"connection error: {exc}"
            except openai.APIStatusError as exc:
                if exc.status_code >= 500 or exc.status_code in (408, 409):
                    kind, last = "5xx", f"HTTP {exc.status_code}: {exc}"
                    wait_s = _retry_after(exc, opts.backoff_max)
                else:
                    return "fatal", f"HTTP {exc.status_code}: {exc}"
            except (openai.APIResponseValidationError, json.JSONDecodeError) as exc:
                kind, last = "malformed", f"malformed response body: {exc}"
            except InvalidAnswer as exc:
                kind, last = "invalid", f"invalid answer: {exc}"
            count(kind)
            if attempt < opts.max_attempts:
                if wait_s is None:
                    wait_s = min(opts.backoff_max, opts.backoff_base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                if abort.wait(wait_s):
                    return "aborted", last
        return "failed", f"{last} (after {opts.max_attempts} attempts)"

    from tqdm import tqdm

    started = time.monotonic()
    fatal: str | None = None
    bar = tqdm(total=len(plan.jobs), unit="req", desc=f"fill {cache.dataset} {cache.partition}-part",
               disable=None if opts.progress else True, file=sys.stderr, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=max(1, opts.concurrency), thread_name_prefix="fill")
    try:
        pending: dict[Future, Job] = {pool.submit(ask, j): j for j in plan.jobs}
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                status, payload = fut.result()
                if status == "fatal":
                    fatal = fatal or payload
                    abort.set()
                elif status == "failed":
                    report.failed.append((job, redact(payload)))
                bar.update(1)
                bar.set_postfix(saved=report.saved, retries=sum(report.retries.values()), refresh=False)
    except BaseException:
        abort.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        bar.close()
        report.seconds = time.monotonic() - started
    pool.shutdown(wait=True)
    if fatal is not None:
        raise StarReproError(f"the API refused a request, so nothing more was asked ({redact(fatal)}); "
                             f"{report.saved} description(s) saved to {display_path(plan.path)}")
    log(report.summary())
    for job, why in report.failed:
        log(f"  failed {job.cls} / {', '.join(job.store)}: {why}")
    return report


def fill_or_raise(opts: FillOptions, **kwargs: Any) -> FillReport:
    """`fill`, turning per-request failures into one error that says how to resume."""
    report = fill(opts, **kwargs)
    if report.failed:
        raise StarReproError(f"{len(report.failed)} request(s) failed after {opts.max_attempts} attempts "
                             f"(the {report.saved} answers received are saved); rerun the same command to ask "
                             "only for what is still missing")
    return report
