"""Importers for the part descriptions released by others, into the project's cache (provenance `imported`).

Formats (STAR_SPEC §8.1):
- `star`: one class per line, `name; Head: text; Hand: text; Arm: text; Hip: text; Leg: text; Foot: text`
  (a trailing `;` giving an empty last field is tolerated, as in the release's `drop` line). Other partitions
  use their own part labels (`Hand-arm:`, `Upper body:`, ...).
- `gap`: one class per line, `name;text;text;text;text;text;text`: the six 6-part descriptions in the order head,
  hand, arm, hip, leg, foot, without labels. GAP ships the class names separately (one per line, a leading space);
  pass that file as `label_map` to check each line's name against it.

Release names are matched to the dataset's canonical names (exactly, then ignoring case, spacing and punctuation,
then by the unique variant without a parenthesis or `/alternative`); an unmatched name is an error listing the
closest candidates, and `name_map` (a TSV `release name<TAB>canonical name`) resolves the rest by hand.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from star_repro.data.classes import classes_of
from star_repro.errors import InputFormatError, StarReproError
from star_repro.io import sha256_file
from star_repro.skeleton import PART_LABELS, part_names
from star_repro.text.descriptions import (
    DEFAULT_CACHE_ROOT, MAX_TEXT_CHARS, DescriptionCache, Entry, cache_dataset, cache_path, check_set_name,
    load_or_new, normalize_text,
)
from star_repro.text.prompt_templates import request_sha256

FORMATS = ("star", "gap")


@dataclass
class ParsedLine:
    line: int
    name: str
    texts: dict[str, str]


def _read_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise StarReproError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise InputFormatError(path, None, f"not UTF-8 text ({exc})") from None
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]


def _label_key(label: str) -> str:
    return re.sub(r"[^a-z]", "", label.lower())


def parse_star(path: str | Path, partition: int = 6) -> list[ParsedLine]:
    """Parse STAR's `name; Part: text; ...` lines; errors name the line and the expected field."""
    path = Path(path)
    parts = part_names(partition)
    labels = [PART_LABELS[p] for p in parts]
    out = []
    for ln, line in _read_lines(path):
        fields = [f.strip() for f in line.split(";")]
        while len(fields) > 1 and fields[-1] == "":
            fields.pop()
        name = fields[0]
        if not name:
            raise InputFormatError(path, ln, "expected the class name before the first ';'")
        if len(fields) != 1 + len(parts):
            raise InputFormatError(path, ln, f"expected {1 + len(parts)} ';'-separated fields (name; "
                                   + "; ".join(f"{lb}: ..." for lb in labels) + f"), found {len(fields)}")
        texts = {}
        for k, (part, label, field) in enumerate(zip(parts, labels, fields[1:]), start=2):
            head, sep, body = field.partition(":")
            if not sep or _label_key(head) != _label_key(label):
                raise InputFormatError(path, ln, f"field {k} must start with '{label}:', found {field[:30]!r}")
            body = normalize_text(body)
            if not body:
                raise InputFormatError(path, ln, f"field {k} ({label}) has no description")
            if len(body) > MAX_TEXT_CHARS:
                raise InputFormatError(path, ln, f"field {k} ({label}) is longer than {MAX_TEXT_CHARS} characters")
            texts[part] = body
        out.append(ParsedLine(ln, name, texts))
    if not out:
        raise InputFormatError(path, None, "no description lines found")
    return out


def parse_gap(path: str | Path, label_map: str | Path | None = None) -> list[ParsedLine]:
    """Parse GAP's `name;text;...` lines (six texts, 6-part order); optionally check names against its label map."""
    path = Path(path)
    parts = part_names(6)
    names_by_line: list[str] | None = None
    if label_map is not None:
        names_by_line = [n for _, n in _read_lines(Path(label_map))]
    out = []
    for k, (ln, line) in enumerate(_read_lines(path)):
        fields = [f.strip() for f in line.split(";")]
        while len(fields) > 1 and fields[-1] == "":
            fields.pop()
        if len(fields) != 1 + len(parts):
            raise InputFormatError(path, ln, f"expected 7 ';'-separated fields (name;head;hand;arm;hip;leg;foot), "
                                   f"found {len(fields)}")
        name = fields[0]
        if not name:
            raise InputFormatError(path, ln, "expected the class name before the first ';'")
        if names_by_line is not None:
            if k >= len(names_by_line):
                raise InputFormatError(path, ln, f"line {k + 1} of descriptions has no name in {label_map} "
                                       f"({len(names_by_line)} names)")
            if _compact(names_by_line[k]) != _compact(name):
                raise InputFormatError(path, ln, f"name {name!r} differs from {label_map} entry {k + 1} "
                                       f"{names_by_line[k]!r}")
        texts = {}
        for i, (part, field) in enumerate(zip(parts, fields[1:]), start=2):
            body = normalize_text(field)
            if not body:
                raise InputFormatError(path, ln, f"field {i} ({part}) has no description")
            if len(body) > MAX_TEXT_CHARS:
                raise InputFormatError(path, ln, f"field {i} ({part}) is longer than {MAX_TEXT_CHARS} characters")
            texts[part] = body
        out.append(ParsedLine(ln, name, texts))
    if not out:
        raise InputFormatError(path, None, "no description lines found")
    if names_by_line is not None and len(names_by_line) != len(out):
        raise InputFormatError(path, None, f"{len(out)} description lines but {len(names_by_line)} names in "
                               f"{label_map}")
    return out


# -- class-name matching -----------------------------------------------------------------------------------------
def _norm(name: str) -> str:
    return " ".join(name.lower().split())


def _compact(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _variants(name: str) -> set[str]:
    """The name, without a parenthesised remark, and the part before a '/alternative', compacted."""
    n = _norm(name)
    out = {n, re.sub(r"\s*\([^)]*\)", "", n).strip()}
    out |= {v.split("/")[0].strip() for v in list(out)}
    return {_compact(v) for v in out if _compact(v)}


def read_name_map(path: str | Path) -> dict[str, str]:
    path = Path(path)
    out = {}
    for ln, line in _read_lines(path):
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 2 or not cols[0].strip() or not cols[1].strip():
            raise InputFormatError(path, ln, "expected 'release name<TAB>canonical name'")
        out[_norm(cols[0])] = cols[1].strip()
    return out


def match_class(name: str, classes: tuple[str, ...], *, name_map: dict[str, str] | None = None,
                file: str | Path = "?", line: int | None = None) -> str:
    """The canonical class a release's name refers to; an unmatched or ambiguous name lists candidates."""
    if name_map and _norm(name) in name_map:
        target = name_map[_norm(name)]
        if target not in classes:
            raise InputFormatError(file, line, f"name map sends {name!r} to {target!r}, which is not a class")
        return target
    if name in classes:
        return name
    for key in (_norm, _compact):
        hits = [c for c in classes if key(c) == key(name)]
        if len(hits) == 1:
            return hits[0]
    v = _variants(name)
    hits = [c for c in classes if _variants(c) & v]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise InputFormatError(file, line, f"class name {name!r} is ambiguous: it could be "
                               + ", ".join(map(repr, hits)) + "; add it to a --name-map file")
    near = difflib.get_close_matches(_norm(name), [_norm(c) for c in classes], n=5, cutoff=0.4)
    canon = {_norm(c): c for c in classes}
    cands = ", ".join(repr(canon[n]) for n in near) if near else "none close"
    raise InputFormatError(file, line, f"class name {name!r} matches no class of the dataset; candidates: {cands}"
                           " (map it with --name-map FILE: 'release name<TAB>canonical name')")


# -- import ----------------------------------------------------------------------------------------------------
@dataclass
class ImportResult:
    path: Path
    added: int
    changed: int
    unchanged: int
    classes: int


def import_descriptions(file: str | Path, fmt: str, dataset: str, *, partition: int = 6,
                        source_set: str | None = None, cache_root: str | Path = DEFAULT_CACHE_ROOT,
                        model: str | None = None, name_map: str | Path | None = None,
                        label_map: str | Path | None = None, allow_partial: bool = False,
                        replace: bool = False) -> ImportResult:
    """Import a released description file into `prompts/cache/{set}/` (default set `imported-{fmt}`).

    Every class of `dataset` must be present unless `allow_partial`; entries of the existing file that the
    import does not cover are kept unless `replace`. Each entry records the file's name and sha256.
    """
    if fmt not in FORMATS:
        raise StarReproError(f"unknown format {fmt!r}; expected one of {list(FORMATS)}")
    file = Path(file)
    if fmt == "gap":
        if partition != 6:
            raise StarReproError("GAP releases 6-part descriptions only (use --partition 6)")
        parsed = parse_gap(file, label_map)
    else:
        if label_map is not None:
            raise StarReproError("--label-map applies to the gap format only")
        parsed = parse_star(file, partition)
    source_set = check_set_name(source_set or f"imported-{fmt}")
    cds = cache_dataset(dataset)
    universe = classes_of(cds)
    mapping = read_name_map(name_map) if name_map else None
    matched: dict[str, ParsedLine] = {}
    for pl in parsed:
        c = match_class(pl.name, universe, name_map=mapping, file=file, line=pl.line)
        if c in matched:
            raise InputFormatError(file, pl.line, f"{pl.name!r} is class {c!r} again (first at line "
                                   f"{matched[c].line})")
        matched[c] = pl
    wanted = classes_of(dataset)
    absent = [c for c in wanted if c not in matched]
    if absent and not allow_partial:
        raise InputFormatError(file, None, f"{len(absent)} {dataset} class(es) have no line: "
                               + ", ".join(map(repr, absent)) + " (use --allow-partial to import anyway)")
    sha = sha256_file(file)
    source_file = {"path": file.name, "sha256": sha}
    path = cache_path(source_set, cds, partition, cache_root)
    cache = DescriptionCache(cds, partition, source_set) if replace else load_or_new(path, source_set, cds, partition)
    added = changed = unchanged = 0
    for c in universe:
        pl = matched.get(c)
        if pl is None:
            continue
        for part, text in pl.texts.items():
            origin = {"source": "imported", "format": fmt, "file_sha256": sha, "dataset": cds,
                      "partition": partition, "class": c, "part": part}
            entry = Entry(text=text, source="imported", request_sha256=request_sha256(origin), model=model,
                          source_file=dict(source_file))
            old = cache.get(c, part)
            if old is None:
                added += 1
            elif old == entry:
                unchanged += 1
            else:
                changed += 1
            cache.set(c, part, entry)
    cache.save(path)
    return ImportResult(path=path, added=added, changed=changed, unchanged=unchanged, classes=len(matched))
