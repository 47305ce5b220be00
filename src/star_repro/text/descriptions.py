"""The description cache: the artefact of record for the LLM part descriptions (DESIGN §5).

Layout: `prompts/cache/{set}/{ds}_{P}part.json` with ds in {ntu120, pku1} (NTU-60 reads the first 60 classes of
the ntu120 file, so each fact lives in one place) and P in {6, 4, 2}. A *set* is one source of descriptions:
`authored` (the project's own text, built from prompts/authored/*.yaml), `openai` (API answers; any other name not
starting with `imported-` is also an API set), `imported-star` / `imported-gap` (the authors' releases). Params
choose the set that `describe` reads.

Each file is canonical JSON (sorted keys, indent 2, UTF-8, no timestamps); each entry is an object whose `text` is
on its own line, with its provenance: `source`, `model`, `template`, `request_sha256`, `response` (API answers: id,
system fingerprint, served model) and `source_file` (authored: the YAML's path; imported: the released file's name
and sha256). An authored entry's request_sha256 hashes its record (file, class, partition, part, text), so editing
one description changes only that entry's lines. A partial file is valid (a fill in progress writes one after
every answer); completeness and staleness are checked by `describe`.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from star_repro.data.classes import DATASET_CLASSES, classes_of
from star_repro.errors import InputFormatError, StarReproError
from star_repro.io import canonical_json, write_json_atomic
from star_repro.skeleton import PARTITIONS, part_names
from star_repro.text.prompt_templates import request_sha256
from star_repro.text.yaml_lines import line_of, load_yaml_with_lines

SCHEMA_ID = "star-repro/description-cache/1"
SOURCES = ("openai", "authored", "imported")
CACHE_DATASETS = ("ntu120", "pku1")
DEFAULT_CACHE_ROOT = Path("prompts/cache")
DEFAULT_AUTHORED_DIR = Path("prompts/authored")
DEFAULT_TEMPLATES_PATH = Path("prompts/templates.yaml")
MAX_TEXT_CHARS = 600
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ENTRY_KEYS = {"text", "source", "model", "template", "request_sha256", "response", "source_file"}
_TOP_KEYS = {"schema", "dataset", "partition", "parts", "source_set", "entries"}


class DescriptionsIncomplete(StarReproError):
    """A cache lacks entries (or holds stale ones) that a stage needs; `problems` lists each (class, part)."""

    def __init__(self, message: str, problems: list["Problem"]):
        super().__init__(message)
        self.problems = problems


def normalize_text(text: str) -> str:
    """One line, single spaces, trimmed: descriptions are compared and embedded in this form."""
    return " ".join(text.split())


def cache_dataset(dataset: str) -> str:
    """The cache file that holds a dataset's classes (NTU-60 is the first 60 classes of NTU-120)."""
    if dataset not in DATASET_CLASSES:
        raise StarReproError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASET_CLASSES)}")
    return "ntu120" if dataset == "ntu60" else dataset


def check_set_name(source_set: str) -> str:
    if not isinstance(source_set, str) or not _SET_NAME.fullmatch(source_set):
        raise StarReproError(f"bad description set name {source_set!r}: use letters, digits, '.', '_' or '-' "
                             "(e.g. authored, openai, imported-star)")
    return source_set


def cache_path(source_set: str, dataset: str, partition: int, root: str | Path = DEFAULT_CACHE_ROOT) -> Path:
    part_names(partition)  # validates
    return Path(root) / check_set_name(source_set) / f"{cache_dataset(dataset)}_{partition}part.json"


def set_kind(source_set: str) -> str:
    """Which command fills a set: 'authored', 'imported' or 'openai' (by the set's name)."""
    if source_set == "authored":
        return "authored"
    if source_set.startswith("imported"):
        return "imported"
    return "openai"


def fill_command(source_set: str, dataset: str, partition: int) -> str:
    kind = set_kind(source_set)
    if kind == "authored":
        yaml_name = f"{DEFAULT_AUTHORED_DIR.as_posix()}/{cache_dataset(dataset)}.yaml"
        return (f"star-repro descriptions build-authored --dataset {cache_dataset(dataset)}"
                f"   (after adding the text to {yaml_name})")
    if kind == "imported":
        fmt = source_set.split("-", 1)[1] if "-" in source_set else "star"
        fmt = fmt if fmt in ("star", "gap") else "star"
        return (f"star-repro descriptions import --format {fmt} --set {source_set} --dataset {dataset}"
                f" --partition {partition} FILE")
    return f"star-repro descriptions fill --set {source_set} --dataset {dataset} --partition {partition}"


def display_path(path: str | Path) -> str:
    """A path as recorded in artefacts: relative to the working directory when inside it, POSIX separators."""
    p = Path(path)
    try:
        p = p.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        p = p.resolve()
    return p.as_posix()


@dataclass
class Entry:
    """One description of one (class, part) and where it came from."""

    text: str
    source: str
    request_sha256: str
    model: str | None = None
    template: str | None = None
    response: dict[str, str | None] | None = None
    source_file: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "source": self.source, "model": self.model, "template": self.template,
                "request_sha256": self.request_sha256, "response": self.response, "source_file": self.source_file}

    @classmethod
    def from_json(cls, obj: Any, file: str, key: str) -> "Entry":
        def bad(msg: str) -> InputFormatError:
            return InputFormatError(file, None, f"key {key}: {msg}")

        if not isinstance(obj, dict):
            raise bad("expected an object with text and provenance")
        missing = _ENTRY_KEYS - set(obj)
        if missing:
            raise bad(f"missing field(s) {sorted(missing)}")
        unknown = set(obj) - _ENTRY_KEYS
        if unknown:
            raise bad(f"unknown field(s) {sorted(unknown)}; expected {sorted(_ENTRY_KEYS)}")
        text = obj["text"]
        if not isinstance(text, str) or not text.strip():
            raise bad("text: expected a non-empty string")
        if text != normalize_text(text):
            raise bad("text: expected one trimmed line with single spaces (no newlines or tabs)")
        if len(text) > MAX_TEXT_CHARS:
            raise bad(f"text: {len(text)} characters, more than the limit {MAX_TEXT_CHARS}")
        if obj["source"] not in SOURCES:
            raise bad(f"source: expected one of {list(SOURCES)}, got {obj['source']!r}")
        for k in ("model", "template"):
            if obj[k] is not None and (not isinstance(obj[k], str) or not obj[k]):
                raise bad(f"{k}: expected a non-empty string or null")
        if not isinstance(obj["request_sha256"], str) or not _HEX64.fullmatch(obj["request_sha256"]):
            raise bad("request_sha256: expected 64 lowercase hex digits")
        resp = obj["response"]
        if obj["source"] == "openai":
            if obj["model"] is None or obj["template"] is None:
                raise bad("an openai entry needs model and template")
            if not isinstance(resp, dict) or set(resp) != {"id", "model", "system_fingerprint"} \
                    or not isinstance(resp["id"], str) or not resp["id"]:
                raise bad("response: an openai entry needs {id, model, system_fingerprint} with a non-empty id")
        elif resp is not None:
            raise bad("response: only openai entries carry a response")
        sf = obj["source_file"]
        if obj["source"] in ("authored", "imported"):
            if not isinstance(sf, dict) or set(sf) != {"path", "sha256"} or not isinstance(sf["path"], str) \
                    or not sf["path"]:
                raise bad("source_file: expected {path, sha256} of the file the text came from")
            sha = sf["sha256"]
            if obj["source"] == "imported" and (not isinstance(sha, str) or not _HEX64.fullmatch(sha)):
                raise bad("source_file.sha256: an imported entry records the sha256 of the released file")
            if obj["source"] == "authored" and sf["sha256"] is not None:
                raise bad("source_file.sha256: null for authored entries (their request_sha256 covers the text)")
        elif sf is not None:
            raise bad("source_file: an openai entry has no source file")
        return cls(text=text, source=obj["source"], request_sha256=obj["request_sha256"], model=obj["model"],
                   template=obj["template"], response=resp, source_file=sf)


@dataclass(frozen=True)
class Problem:
    cls: str
    part: str
    kind: str  # 'missing' | 'stale'
    reason: str = ""


class _DuplicateJsonKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    """`json.loads` hook: a key twice in one object is an error (a hand-merged cache could repeat a class)."""
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateJsonKey(k)
        out[k] = v
    return out


@dataclass
class DescriptionCache:
    dataset: str  # a cache dataset: ntu120 | pku1
    partition: int
    source_set: str
    entries: dict[str, dict[str, Entry]] = field(default_factory=dict)

    @property
    def parts(self) -> tuple[str, ...]:
        return part_names(self.partition)

    @property
    def classes(self) -> tuple[str, ...]:
        return classes_of(self.dataset)

    def get(self, cls: str, part: str) -> Entry | None:
        return self.entries.get(cls, {}).get(part)

    def set(self, cls: str, part: str, entry: Entry) -> None:
        if cls not in self.classes:
            raise KeyError(f"{cls!r} is not a {self.dataset} class")
        if part not in self.parts:
            raise KeyError(f"{part!r} is not a part of the {self.partition}-part partition")
        self.entries.setdefault(cls, {})[part] = entry

    def items(self) -> Iterable[tuple[str, str, Entry]]:
        """Entries in label order, then part order."""
        for c in self.classes:
            for p in self.parts:
                e = self.get(c, p)
                if e is not None:
                    yield c, p, e

    def count(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def missing(self, classes: Iterable[str] | None = None) -> list[tuple[str, str]]:
        return [(c, p) for c in (self.classes if classes is None else classes) for p in self.parts
                if self.get(c, p) is None]

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA_ID, "dataset": self.dataset, "partition": self.partition,
                "parts": list(self.parts), "source_set": self.source_set,
                "entries": {c: {p: e.to_json() for p, e in ps.items()} for c, ps in self.entries.items() if ps}}

    def dumps(self) -> str:
        return canonical_json(self.to_json())

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def from_obj(cls, obj: Any, file: str) -> "DescriptionCache":
        """Validate a parsed cache file; every error names the file and the key."""
        def bad(key: str, msg: str) -> InputFormatError:
            return InputFormatError(file, None, f"key {key}: {msg}")

        if not isinstance(obj, dict):
            raise InputFormatError(file, 1, "expected a JSON object (a description cache)")
        missing = _TOP_KEYS - set(obj)
        if missing:
            raise bad(sorted(missing)[0], f"missing; a cache has keys {sorted(_TOP_KEYS)}")
        unknown = set(obj) - _TOP_KEYS
        if unknown:
            raise bad(sorted(unknown)[0], f"unknown key; a cache has keys {sorted(_TOP_KEYS)}")
        if obj["schema"] != SCHEMA_ID:
            raise bad("schema", f"expected {SCHEMA_ID!r}, got {obj['schema']!r}")
        if obj["dataset"] not in CACHE_DATASETS:
            raise bad("dataset", f"expected one of {list(CACHE_DATASETS)}, got {obj['dataset']!r}")
        if obj["partition"] not in PARTITIONS or isinstance(obj["partition"], bool):
            raise bad("partition", f"expected one of {sorted(PARTITIONS)}, got {obj['partition']!r}")
        parts = part_names(obj["partition"])
        if obj["parts"] != list(parts):
            raise bad("parts", f"expected {list(parts)} for {obj['partition']} parts, got {obj['parts']!r}")
        if not isinstance(obj["source_set"], str) or not _SET_NAME.fullmatch(obj["source_set"]):
            raise bad("source_set", f"expected a set name such as 'authored', got {obj['source_set']!r}")
        if not isinstance(obj["entries"], dict):
            raise bad("entries", "expected an object class -> part -> entry")
        known = set(classes_of(obj["dataset"]))
        cache = cls(dataset=obj["dataset"], partition=obj["partition"], source_set=obj["source_set"])
        for c, per_part in obj["entries"].items():
            if c not in known:
                from difflib import get_close_matches

                near = get_close_matches(c, sorted(known), n=3)
                raise bad(f"entries.{c}", f"not a {obj['dataset']} class" +
                          (f"; did you mean {', '.join(map(repr, near))}?" if near else ""))
            if not isinstance(per_part, dict) or not per_part:
                raise bad(f"entries.{c}", "expected a non-empty object part -> entry")
            for p, e in per_part.items():
                if p not in parts:
                    raise bad(f"entries.{c}.{p}", f"not a part of the {obj['partition']}-part partition {list(parts)}")
                cache.entries.setdefault(c, {})[p] = Entry.from_json(e, file, f"entries.{c}.{p}")
        return cache

    @classmethod
    def loads(cls, text: str, file: str) -> "DescriptionCache":
        try:
            obj = json.loads(text, object_pairs_hook=_unique_pairs)
        except json.JSONDecodeError as exc:
            raise InputFormatError(file, exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
        except _DuplicateJsonKey as exc:
            lines = [i + 1 for i, line in enumerate(text.splitlines())
                     if re.search(rf'(^|[{{,\s]){re.escape(json.dumps(exc.key))}\s*:', line)]
            where = f" (lines {', '.join(map(str, lines[:4]))})" if len(lines) > 1 else ""
            raise InputFormatError(file, lines[1] if len(lines) > 1 else None,
                                   f"duplicate key {exc.key!r} in one object{where}: JSON loaders keep the last "
                                   "one silently; keep one") from None
        return cls.from_obj(obj, file)

    @classmethod
    def load(cls, path: str | Path) -> "DescriptionCache":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise StarReproError(f"{path}: description cache not found") from None
        except UnicodeDecodeError as exc:
            raise InputFormatError(path, None, f"not UTF-8 ({exc})") from None
        return cls.loads(text, str(path))


def load_or_new(path: str | Path, source_set: str, dataset: str, partition: int) -> DescriptionCache:
    """The cache at `path`, or an empty one; an existing file must belong to the same set/dataset/partition."""
    path = Path(path)
    cds = cache_dataset(dataset)
    if not path.exists():
        return DescriptionCache(dataset=cds, partition=partition, source_set=source_set)
    cache = DescriptionCache.load(path)
    if (cache.dataset, cache.partition, cache.source_set) != (cds, partition, source_set):
        raise InputFormatError(path, None, f"holds {cache.dataset} {cache.partition}-part set "
                               f"{cache.source_set!r}, expected {cds} {partition}-part set {source_set!r}")
    return cache


# -- staleness ---------------------------------------------------------------------------------------------------
class _TemplateRef:
    """Loads the template only when an API entry needs checking (authored sets never read templates.yaml)."""

    def __init__(self, name: str | None, path: str | Path):
        self.name, self.path, self._tpl = name, Path(path), None

    def get(self):
        if self._tpl is None:
            from star_repro.text.prompt_templates import get_template

            self._tpl = get_template(self.name, self.path)
        return self._tpl


def check_cache(cache: DescriptionCache, classes: Iterable[str], *, template: str | None = None,
                templates_path: str | Path = DEFAULT_TEMPLATES_PATH) -> list[Problem]:
    """Every missing or stale (class, part) among `classes`, in label order then part order.

    Stale means: an API entry whose template (name@version) or request hash differs from what the current
    template would send; an authored entry whose text no longer matches its authored YAML (when that file is
    present). Imported entries are fixed releases: never stale.
    """
    tref = _TemplateRef(template, templates_path)
    problems: list[Problem] = []
    for c in classes:
        for p in cache.parts:
            e = cache.get(c, p)
            if e is None:
                problems.append(Problem(c, p, "missing"))
                continue
            if e.source == "openai":
                tpl = tref.get()
                if e.template != tpl.ident:
                    problems.append(Problem(c, p, "stale", f"made with template {e.template}, current is {tpl.ident}"))
                    continue
                asked = (p,) if tpl.mode == "per_part" else cache.parts
                if request_sha256(tpl.request(c, asked)) != e.request_sha256:
                    problems.append(Problem(c, p, "stale", f"template {tpl.ident} now sends a different request "
                                                           "(model, question or settings changed)"))
            elif e.source == "authored":
                src = e.source_file["path"]  # type: ignore[index]
                now = _authored_texts(src)
                if now is not None:
                    text = now.get(c, {}).get(cache.partition, {}).get(p)
                    if text is None:
                        problems.append(Problem(c, p, "stale", f"no longer in {src}"))
                    elif normalize_text(text) != e.text:
                        problems.append(Problem(c, p, "stale", f"text changed in {src} since the cache was built"))
    return problems


_AUTHORED_MEMO: dict[tuple, dict] = {}


def _authored_texts(src: str) -> dict | None:
    """The current authored texts of a YAML file (None when absent), parsed once per file version."""
    path = Path(src)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _AUTHORED_MEMO:
        _AUTHORED_MEMO.clear()
        _AUTHORED_MEMO[key] = read_authored_raw(path)
    return _AUTHORED_MEMO[key]


def problems_message(problems: list[Problem], cache_file: str, source_set: str, dataset: str,
                     partition: int) -> str:
    """Every problem, grouped by class (one line each), then the exact command that fixes them."""
    n_miss = sum(p.kind == "missing" for p in problems)
    n_stale = len(problems) - n_miss
    lines = [f"{cache_file}: {n_miss} missing and {n_stale} stale description(s) for {dataset} "
             f"({partition} parts, set {source_set!r}):"]
    by_class: dict[str, list[Problem]] = {}
    for p in problems:
        by_class.setdefault(p.cls, []).append(p)
    for c, ps in by_class.items():
        miss = [p.part for p in ps if p.kind == "missing"]
        if miss:
            lines.append(f"  missing  {c}: {', '.join(miss)}")
        for p in ps:
            if p.kind == "stale":
                lines.append(f"  stale    {c} / {p.part}: {p.reason}")
    lines.append("Fill them with:")
    lines.append(f"  {fill_command(source_set, dataset, partition)}")
    return "\n".join(lines)


# -- the describe stage ------------------------------------------------------------------------------------------
def describe(dataset: str, partition: int, source_set: "str | Mapping[str, Any]", out_path: str | Path, *,
             cache_root: str | Path = DEFAULT_CACHE_ROOT, template: str | None = None,
             templates_path: str | Path = DEFAULT_TEMPLATES_PATH) -> dict[str, Any]:
    """Write the descriptions later stages read (docs/formats.md), offline, from one cache set.

    Refuses (DescriptionsIncomplete) when any (class, part) is missing or stale, listing each and the command
    that fills it. `template` names the template API entries must match (None = the templates file's default).
    `source_set` may also be the params block `{source: ..., template: ...}`.
    """
    if isinstance(source_set, Mapping):
        block = dict(source_set)
        if "source" not in block:
            raise StarReproError("params key descriptions.source is missing (the cache set describe reads)")
        template = block.get("template", template)
        source_set = block["source"]
    partition = int(partition)
    classes = classes_of(dataset)
    parts = part_names(partition)
    path = cache_path(source_set, dataset, partition, cache_root)
    shown = display_path(path)
    if not path.is_file():
        problems = [Problem(c, p, "missing") for c in classes for p in parts]
        raise DescriptionsIncomplete(f"{shown} does not exist.\n" + problems_message(
            problems, shown, source_set, dataset, partition), problems)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFormatError(shown, None, f"not UTF-8 ({exc})") from None
    cache = DescriptionCache.loads(text, shown)
    if (cache.dataset, cache.partition, cache.source_set) != (cache_dataset(dataset), partition, source_set):
        raise InputFormatError(shown, None, f"holds {cache.dataset} {cache.partition}-part set "
                               f"{cache.source_set!r}; expected {cache_dataset(dataset)} {partition}-part "
                               f"set {source_set!r}")
    problems = check_cache(cache, classes, template=template, templates_path=templates_path)
    if problems:
        raise DescriptionsIncomplete(problems_message(problems, shown, source_set, dataset, partition), problems)
    out = {
        "dataset": dataset,
        "partition": partition,
        "parts": list(parts),
        "classes": list(classes),
        "descriptions": {c: {p: cache.get(c, p).text for p in parts} for c in classes},  # type: ignore[union-attr]
        "cache": {"file": shown, "sha256": hashlib.sha256(raw).hexdigest()},
    }
    write_json_atomic(out_path, out)
    return out


# -- status --------------------------------------------------------------------------------------------------------
@dataclass
class StatusRow:
    source_set: str
    dataset: str
    partition: int
    file: str
    present: int
    expected: int
    problems: list[Problem]
    sources: dict[str, int]


def cache_status(cache_root: str | Path = DEFAULT_CACHE_ROOT, *, sets: Iterable[str] | None = None,
                 datasets: Iterable[str] | None = None, partitions: Iterable[int] | None = None,
                 template: str | None = None,
                 templates_path: str | Path = DEFAULT_TEMPLATES_PATH) -> list[StatusRow]:
    """Completeness and staleness of every existing cache file (or the requested ones)."""
    root = Path(cache_root)
    if sets is None:
        sets = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    rows = []
    for s in sets:
        for ds in (datasets or CACHE_DATASETS):
            for P in (partitions or sorted(PARTITIONS, reverse=True)):
                path = cache_path(s, ds, P, root)
                if not path.is_file():
                    continue
                cache = DescriptionCache.load(path)
                classes = classes_of(ds)
                problems = check_cache(cache, classes, template=template, templates_path=templates_path)
                src: dict[str, int] = {}
                for _, _, e in cache.items():
                    src[e.source] = src.get(e.source, 0) + 1
                rows.append(StatusRow(s, ds, P, display_path(path), cache.count(), len(classes) * P, problems, src))
    return rows


# -- the project's authored descriptions ---------------------------------------------------------------------------
def authored_path(dataset: str, authored_dir: str | Path = DEFAULT_AUTHORED_DIR) -> Path:
    return Path(authored_dir) / f"{cache_dataset(dataset)}.yaml"


def read_authored_raw(path: str | Path) -> dict[str, dict[int, dict[str, str]]]:
    """The authored texts without completeness checks (used to tell which cache entries went stale)."""
    data, _ = load_yaml_with_lines(path)
    out: dict[str, dict[int, dict[str, str]]] = {}
    if not isinstance(data, dict):
        return out
    for c, per_p in data.items():
        if not isinstance(per_p, dict):
            continue
        for P, parts in per_p.items():
            try:
                P = int(P)
            except (TypeError, ValueError):
                continue
            if isinstance(parts, dict):
                out.setdefault(str(c), {})[P] = {str(k): v for k, v in parts.items() if isinstance(v, str)}
    return out


def read_authored(path: str | Path, dataset: str, *, partitions: Iterable[int] = (6, 4, 2),
                  allow_partial: bool = False) -> dict[str, dict[int, dict[str, str]]]:
    """Validated authored texts: {class: {P: {part: text}}}; every problem is reported with its line.

    The file maps each class name of the dataset to {6: {head, ...}, 4: {...}, 2: {...}}; partition keys may be
    written as numbers or strings. `allow_partial` tolerates absent classes (while the text is being written).
    """
    path = Path(path)
    if not path.is_file():
        raise StarReproError(f"{path}: authored descriptions not found (expected class -> {{6: ..., 4: ..., 2: ...}})")
    data, lines = load_yaml_with_lines(path)
    cds = cache_dataset(dataset)
    known = classes_of(cds)
    partitions = tuple(partitions)
    if not isinstance(data, dict):
        raise InputFormatError(path, 1, "expected a mapping: class name -> {6: {...}, 4: {...}, 2: {...}}")
    issues: list[tuple[int | None, str]] = []
    out: dict[str, dict[int, dict[str, str]]] = {}
    for c, per_p in data.items():
        line = line_of(lines, (c,))
        if c not in known:
            from difflib import get_close_matches

            near = get_close_matches(str(c), known, n=3, cutoff=0.5)
            issues.append((line, f"{c!r} is not a {cds} class" +
                           (f"; did you mean {', '.join(map(repr, near))}?" if near else "")))
            continue
        if not isinstance(per_p, dict):
            issues.append((line, f"{c!r}: expected a mapping partition -> parts"))
            continue
        by_int: dict[int, Any] = {}
        for P, parts in per_p.items():
            try:
                Pi = int(P)
            except (TypeError, ValueError):
                Pi = -1
            if Pi not in PARTITIONS:
                issues.append((line_of(lines, (c, P)), f"{c!r}: unknown partition {P!r}; expected 6, 4 or 2"))
                continue
            by_int[Pi] = (P, parts)
        for Pi in partitions:
            if Pi not in by_int:
                issues.append((line, f"{c!r}: missing partition {Pi}"))
                continue
            P, parts = by_int[Pi]
            if not isinstance(parts, dict):
                issues.append((line_of(lines, (c, P)), f"{c!r} / {Pi}: expected a mapping part -> text"))
                continue
            expected = part_names(Pi)
            for extra in [k for k in parts if k not in expected]:
                issues.append((line_of(lines, (c, P, extra)),
                               f"{c!r} / {Pi}: unknown part {extra!r}; expected {list(expected)}"))
            for part in expected:
                text = parts.get(part)
                where = line_of(lines, (c, P, part))
                if part not in parts:
                    issues.append((where, f"{c!r} / {Pi}: missing part {part!r}"))
                elif not isinstance(text, str) or not text.strip():
                    issues.append((where, f"{c!r} / {Pi} / {part}: expected a non-empty description"))
                elif len(normalize_text(text)) > MAX_TEXT_CHARS:
                    issues.append((where, f"{c!r} / {Pi} / {part}: longer than {MAX_TEXT_CHARS} characters"))
                else:
                    out.setdefault(c, {}).setdefault(Pi, {})[part] = normalize_text(text)
    if not allow_partial:
        absent = [c for c in known if c not in data]
        if absent:
            issues.append((None, f"{len(absent)} {cds} class(es) missing: {', '.join(map(repr, absent))}"))
    if issues:
        issues.sort(key=lambda t: (t[0] is None, t[0] or 0))
        first = issues[0][0]
        shown = [f"line {ln}: {msg}" if ln is not None else msg for ln, msg in issues[:50]]
        more = f"\n  ... and {len(issues) - 50} more" if len(issues) > 50 else ""
        raise InputFormatError(path, first, f"{len(issues)} problem(s) in the authored descriptions:\n  "
                               + "\n  ".join(shown) + more)
    return out


def build_authored(dataset: str, *, authored_dir: str | Path = DEFAULT_AUTHORED_DIR,
                   cache_root: str | Path = DEFAULT_CACHE_ROOT, partitions: Iterable[int] = (6, 4, 2),
                   allow_partial: bool = False) -> list[Path]:
    """Write the `authored` cache files of a dataset from prompts/authored/{ds}.yaml (provenance `authored`)."""
    cds = cache_dataset(dataset)
    src = authored_path(cds, authored_dir)
    partitions = tuple(partitions)
    texts = read_authored(src, cds, partitions=partitions, allow_partial=allow_partial)
    source_file = {"path": display_path(src), "sha256": None}
    written = []
    for P in partitions:
        cache = DescriptionCache(dataset=cds, partition=P, source_set="authored")
        for c in classes_of(cds):
            for part in part_names(P):
                text = texts.get(c, {}).get(P, {}).get(part)
                if text is None:
                    continue
                origin = {"source": "authored", "file": source_file["path"], "dataset": cds, "partition": P,
                          "class": c, "part": part, "text": text}
                cache.set(c, part, Entry(text=text, source="authored", request_sha256=request_sha256(origin),
                                         source_file=dict(source_file)))
        path = cache_path("authored", cds, P, cache_root)
        if not path.is_file() or path.read_text(encoding="utf-8") != cache.dumps():
            cache.save(path)
        written.append(path)
    return written
