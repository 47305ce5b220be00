"""Prompt templates (prompts/templates.yaml) and the canonical chat requests built from them.

The canonical request is exactly the body sent to the chat-completions API; its sha256 is stored with every cache
entry made from it, so any change to a template (text, model, temperature, seed, max_tokens) is detectable per
entry and stale answers are never served as if they answered the current question.
"""
from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from star_repro.errors import InputFormatError
from star_repro.skeleton import PARTITIONS
from star_repro.text.yaml_lines import line_of, load_yaml_with_lines

DEFAULT_TEMPLATES_PATH = Path("prompts/templates.yaml")
MODES = ("per_part", "per_class")
ALL_PARTS: tuple[str, ...] = tuple(dict.fromkeys(p for parts in PARTITIONS.values() for p in parts))
_ALLOWED_FIELDS = {"per_part": {"action", "part"}, "per_class": {"action", "parts_json", "parts_list"}}
_REQUIRED_FIELDS = {"per_part": {"action", "part"}, "per_class": {"action"}}
_KEYS = {"version", "doc", "mode", "model", "temperature", "seed", "max_tokens", "system", "user", "part_words",
         "response_format"}


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    mode: str
    model: str
    temperature: float
    seed: int | None
    max_tokens: int
    user: str
    system: str | None = None
    response_format: str | None = None
    part_words: dict[str, str] = field(default_factory=dict)
    doc: str = ""

    @property
    def ident(self) -> str:
        """What entries record as their template: name and version."""
        return f"{self.name}@{self.version}"

    def question(self, action: str, parts: Sequence[str]) -> str:
        if self.mode == "per_part":
            (part,) = parts
            return self.user.format(action=action, part=self.part_words.get(part, part))
        return self.user.format(action=action, parts_json=json.dumps(list(parts), ensure_ascii=False),
                                parts_list=", ".join(parts))

    def request(self, action: str, parts: Sequence[str]) -> dict[str, Any]:
        """The canonical chat-completions request for one class and the part(s) it asks about."""
        if self.mode == "per_part" and len(parts) != 1:
            raise ValueError(f"template {self.ident} asks one part per request, got {list(parts)}")
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": self.question(action, parts)})
        req: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                               "max_tokens": self.max_tokens}
        if self.seed is not None:
            req["seed"] = self.seed
        if self.response_format:
            req["response_format"] = {"type": self.response_format}
        return req

    def requests_for(self, action: str, parts: Sequence[str]) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
        """[(parts answered by the request, request)] covering `parts` for one class."""
        if self.mode == "per_part":
            return [((p,), self.request(action, (p,))) for p in parts]
        return [(tuple(parts), self.request(action, parts))]


def request_sha256(request: dict[str, Any]) -> str:
    """sha256 of the compact canonical JSON of a request (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def estimate_prompt_tokens(request: dict[str, Any]) -> int:
    """A rough prompt size (about 4 characters per token plus the chat format's per-message overhead).

    Good enough for a dry-run budget; the exact count depends on the model's tokenizer, which is not installed.
    """
    total = 3
    for m in request["messages"]:
        total += 4 + max(1, round(len(m["content"]) / 4))
    return total


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}


def load_templates(path: str | Path = DEFAULT_TEMPLATES_PATH) -> tuple[dict[str, Template], str]:
    """All templates of the file and the name of the default one; every field is checked with its line."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(path, None, "prompt template file not found (expected prompts/templates.yaml)")
    data, lines = load_yaml_with_lines(path)

    def fail(key_path: tuple, msg: str) -> InputFormatError:
        return InputFormatError(path, line_of(lines, key_path), f"key {'.'.join(map(str, key_path))}: {msg}")

    if not isinstance(data, dict):
        raise InputFormatError(path, 1, "expected a mapping with keys schema, default, templates")
    if data.get("schema") != 1:
        raise fail(("schema",), f"expected 1, got {data.get('schema')!r}")
    raw = data.get("templates")
    if not isinstance(raw, dict) or not raw:
        raise fail(("templates",), "expected a non-empty mapping of template name -> template")
    out: dict[str, Template] = {}
    for name, t in raw.items():
        kp = ("templates", name)
        if not isinstance(t, dict):
            raise fail(kp, "expected a mapping")
        unknown = set(t) - _KEYS
        if unknown:
            raise fail(kp + (sorted(unknown)[0],), f"unknown key; expected some of {sorted(_KEYS)}")
        for req in ("version", "mode", "model", "temperature", "max_tokens", "user"):
            if req not in t:
                raise fail(kp, f"missing key {req!r}")
        if not isinstance(t["version"], int) or isinstance(t["version"], bool) or t["version"] < 1:
            raise fail(kp + ("version",), f"expected a positive integer, got {t['version']!r}")
        if t["mode"] not in MODES:
            raise fail(kp + ("mode",), f"expected one of {list(MODES)}, got {t['mode']!r}")
        if not isinstance(t["model"], str) or not t["model"].strip():
            raise fail(kp + ("model",), "expected a model id such as gpt-3.5-turbo-0125")
        if not isinstance(t["temperature"], (int, float)) or isinstance(t["temperature"], bool) \
                or not 0 <= t["temperature"] <= 2:
            raise fail(kp + ("temperature",), f"expected a number in [0, 2], got {t['temperature']!r}")
        seed = t.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise fail(kp + ("seed",), f"expected an integer or null, got {seed!r}")
        if not isinstance(t["max_tokens"], int) or isinstance(t["max_tokens"], bool) or t["max_tokens"] < 1:
            raise fail(kp + ("max_tokens",), f"expected a positive integer, got {t['max_tokens']!r}")
        for key in ("user", "system", "doc"):
            if t.get(key) is not None and not isinstance(t[key], str):
                raise fail(kp + (key,), "expected text")
        try:
            fields = _fields(t["user"])
        except ValueError as exc:
            raise fail(kp + ("user",), f"bad placeholder syntax ({exc}); write literal braces as {{{{ }}}}") from None
        mode = t["mode"]
        if not fields <= _ALLOWED_FIELDS[mode] or not _REQUIRED_FIELDS[mode] <= fields:
            raise fail(kp + ("user",), f"placeholders {sorted(fields)}: mode {mode} needs "
                       f"{sorted(_REQUIRED_FIELDS[mode])} and allows {sorted(_ALLOWED_FIELDS[mode])}")
        if t.get("system") and _fields(t["system"]):
            raise fail(kp + ("system",), "the system message takes no placeholders")
        words = t.get("part_words") or {}
        if not isinstance(words, dict) or not all(isinstance(v, str) and v.strip() for v in words.values()):
            raise fail(kp + ("part_words",), "expected a mapping part -> word used in the question")
        bad = set(words) - set(ALL_PARTS)
        if bad:
            raise fail(kp + ("part_words", sorted(bad)[0]), f"unknown part; expected some of {list(ALL_PARTS)}")
        rf = t.get("response_format")
        if rf not in (None, "json_object"):
            raise fail(kp + ("response_format",), f"expected json_object or null, got {rf!r}")
        if mode == "per_class" and rf is None and "json" not in t["user"].lower():
            raise fail(kp + ("user",), "a per_class template must ask for a JSON object")
        out[name] = Template(name=str(name), version=t["version"], mode=mode, model=t["model"].strip(),
                             temperature=float(t["temperature"]), seed=seed, max_tokens=t["max_tokens"],
                             user=t["user"].strip(), system=(t.get("system") or "").strip() or None,
                             response_format=rf, part_words=dict(words), doc=(t.get("doc") or "").strip())
    default = data.get("default")
    if default not in out:
        raise fail(("default",), f"expected one of the template names {sorted(out)}, got {default!r}")
    return out, default


def get_template(name: str | None = None, path: str | Path = DEFAULT_TEMPLATES_PATH) -> Template:
    """The named template (None = the file's default); an unknown name lists the known ones."""
    templates, default = load_templates(path)
    name = name or default
    if name not in templates:
        from star_repro.errors import StarReproError

        raise StarReproError(f"{path}: no template named {name!r}; known: {', '.join(sorted(templates))}")
    return templates[name]
