"""Verb and noun phrase of every class, for the part-of-speech baselines (JPoSE, SynSE).

SynSE's own verb/noun lists are not public (BASELINES_SPEC §1.3); `verb_noun.yaml` beside this file is the
project's hand-made reconstruction, with the rule written at its top. The embed stage encodes these strings with
the configured text encoder; JPoSE additionally needs which classes share a verb or a noun (`phrase_ids`).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from star_repro.data.classes import NTU120_CLASSES, PKU51_CLASSES
from star_repro.errors import InputFormatError, StarReproError

VERB_NOUN_PATH = Path(__file__).with_name("verb_noun.yaml")
_SECTIONS = {"ntu120": NTU120_CLASSES, "pku1": PKU51_CLASSES}
_SECTION_OF = {"ntu60": "ntu120", "ntu120": "ntu120", "pku1": "pku1"}


def _line(node) -> int:
    return node.start_mark.line + 1


def parse_verb_noun(path: str | Path = VERB_NOUN_PATH) -> dict[str, dict[str, tuple[str, str]]]:
    """Read and check a verb/noun table: every class of every section exactly once, two non-empty strings each."""
    path = Path(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputFormatError(path, mark.line + 1 if mark else None, f"not valid YAML: {exc}") from None
    if not isinstance(root, yaml.MappingNode):
        raise InputFormatError(path, 1, "expected a mapping of dataset sections (ntu120, pku1)")
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for key_node, section in root.value:
        name = key_node.value
        if name not in _SECTIONS:
            raise InputFormatError(path, _line(key_node), f"unknown section {name!r}; expected one of "
                                                          f"{sorted(_SECTIONS)}")
        if not isinstance(section, yaml.MappingNode):
            raise InputFormatError(path, _line(section), f"section {name}: expected a mapping class -> "
                                                         "{verb, noun}")
        table: dict[str, tuple[str, str]] = {}
        for cls_node, entry in section.value:
            cls = cls_node.value
            if cls not in _SECTIONS[name]:
                raise InputFormatError(path, _line(cls_node), f"{name}: {cls!r} is not a class name of "
                                                              "star_repro.data.classes")
            if cls in table:
                raise InputFormatError(path, _line(cls_node), f"{name}: class {cls!r} is listed twice")
            if not isinstance(entry, yaml.MappingNode):
                raise InputFormatError(path, _line(entry), f"{name}.{cls}: expected {{verb: ..., noun: ...}}")
            fields = {k.value: v for k, v in entry.value}
            if set(fields) != {"verb", "noun"}:
                raise InputFormatError(path, _line(entry), f"{name}.{cls}: expected exactly the keys verb and "
                                                           f"noun, got {sorted(fields)}")
            vals = []
            for key in ("verb", "noun"):
                node = fields[key]
                if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
                    raise InputFormatError(path, _line(node), f"{name}.{cls}.{key}: expected a non-empty string")
                vals.append(str(node.value).strip())
            table[cls] = (vals[0], vals[1])
        missing = [c for c in _SECTIONS[name] if c not in table]
        if missing:
            raise InputFormatError(path, _line(key_node), f"section {name} lacks {len(missing)} classes: "
                                                          f"{missing[:5]}")
        out[name] = table
    absent = sorted(set(_SECTIONS) - set(out))
    if absent:
        raise InputFormatError(path, None, f"sections {absent} are missing")
    return out


@lru_cache(maxsize=4)
def _table(path: str) -> dict[str, dict[str, tuple[str, str]]]:
    return parse_verb_noun(path)


def verb_noun(dataset: str, path: str | Path = VERB_NOUN_PATH) -> tuple[list[str], list[str]]:
    """(verbs, nouns) in label order for `ntu60`, `ntu120` or `pku1`."""
    if dataset not in _SECTION_OF:
        raise StarReproError(f"no verb/noun table for dataset {dataset!r}; expected one of {sorted(_SECTION_OF)}")
    section = _SECTION_OF[dataset]
    table = _table(str(Path(path).resolve()))[section]
    names = _SECTIONS[section][:60] if dataset == "ntu60" else _SECTIONS[section]
    return [table[n][0] for n in names], [table[n][1] for n in names]


def phrase_ids(phrases: list[str]) -> np.ndarray:
    """Integer id per class such that classes with the same phrase share an id (JPoSE's positives)."""
    index: dict[str, int] = {}
    return np.array([index.setdefault(p, len(index)) for p in phrases], np.int64)
