"""YAML loading that remembers where each key is, so errors in hand-edited files can name the line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from star_repro.errors import InputFormatError

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class UniqueKeyLoader(_BaseLoader):
    """The safe loader (libyaml's when present), but a key given twice in one mapping is an error naming the
    key and both lines: plain PyYAML keeps the last value silently (`profile: demo` then `profile: paper` loads
    `paper`). Merge keys (`<<`) may still override, as YAML intends."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k_node, _ in node.value:
                if k_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(k_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable key: the base constructor reports it
                    continue
                line = k_node.start_mark.line + 1
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first}, again at line {line})",
                        k_node.start_mark)
                seen[key] = line
        return super().construct_mapping(node, deep)


_Loader = _BaseLoader  # load_yaml_with_lines finds duplicates itself, naming the whole key path


def load_yaml_unique(text: str) -> Any:
    """`yaml.safe_load` that refuses duplicate keys (`UniqueKeyLoader`); errors are `yaml.MarkedYAMLError`."""
    return yaml.load(text, Loader=UniqueKeyLoader)


def _scalar_key(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        if node.tag.endswith(":int"):
            try:
                return int(node.value)
            except ValueError:
                return node.value
        return node.value
    return f"<{node.id} key>"


def load_yaml_with_lines(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Return (data, lines) where lines[(k1, k2, ...)] is the 1-based line of that key.

    A key that appears twice in one mapping is an error here (plain PyYAML keeps the last one silently, which
    would hide a duplicated class in an authored file).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputFormatError(path, None, f"not UTF-8 text ({exc})") from None
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise InputFormatError(path, line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise InputFormatError(path, None, f"invalid YAML: {exc}") from None
    lines: dict[tuple, int] = {}

    def walk(n: yaml.Node | None, key_path: tuple) -> None:
        if isinstance(n, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k_node, v_node in n.value:
                key = _scalar_key(k_node)
                line = k_node.start_mark.line + 1
                if key in seen:
                    where = " / ".join(map(str, key_path + (key,)))
                    raise InputFormatError(path, line, f"duplicate key {where!r} (first at line {seen[key]})")
                seen[key] = line
                lines[key_path + (key,)] = line
                walk(v_node, key_path + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                lines[key_path + (i,)] = item.start_mark.line + 1
                walk(item, key_path + (i,))

    walk(node, ())
    return data, lines


def line_of(lines: dict[tuple, int], key_path: tuple) -> int | None:
    """The line of the deepest existing prefix of key_path (so a missing key points at its parent)."""
    for n in range(len(key_path), 0, -1):
        if key_path[:n] in lines:
            return lines[key_path[:n]]
    return None
