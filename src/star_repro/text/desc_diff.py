"""What changed between two description caches (two files, or every cache file between two git revisions).

Changes are reported per class and part (text changed, added, removed, or provenance only), in label order, as
coloured terminal text or as Markdown for a PR comment. `textconv` flattens a cache to one `class / part: text`
line per entry (plus its provenance) so that plain `git diff` on a cache file is readable (docs/descriptions.md).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from star_repro.data.classes import classes_of
from star_repro.errors import StarReproError
from star_repro.text.descriptions import DEFAULT_CACHE_ROOT, DescriptionCache, Entry

WORKTREE = "WORKTREE"
_PROV_FIELDS = ("source", "model", "template", "request_sha256", "response", "source_file")


@dataclass
class Change:
    cls: str
    part: str
    kind: str  # 'changed' | 'added' | 'removed' | 'provenance'
    old: Entry | None
    new: Entry | None

    @property
    def provenance_fields(self) -> list[str]:
        if self.old is None or self.new is None:
            return []
        return [f for f in _PROV_FIELDS if getattr(self.old, f) != getattr(self.new, f)]


@dataclass
class FileDiff:
    label_a: str
    label_b: str
    title: str
    compared: int
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("changed", "added", "removed", "provenance"), 0)
        for c in self.changes:
            out[c.kind] += 1
        return out


def _order(a: DescriptionCache | None, b: DescriptionCache | None) -> tuple[list[str], list[str]]:
    classes: list[str] = []
    parts: list[str] = []
    for cache in (a, b):
        if cache is None:
            continue
        for c in classes_of(cache.dataset):
            if c not in classes:
                classes.append(c)
        for p in cache.parts:
            if p not in parts:
                parts.append(p)
    return classes, parts


def diff_caches(a: DescriptionCache | None, b: DescriptionCache | None, label_a: str = "a",
                label_b: str = "b") -> FileDiff:
    """Per (class, part) changes from a to b; None stands for an absent file (everything added or removed)."""
    classes, parts = _order(a, b)
    ref = b or a
    title = f"{ref.dataset}, {ref.partition} parts" if ref else "empty"
    out = FileDiff(label_a, label_b, title, 0)
    if a is not None and b is not None:
        if a.dataset != b.dataset:
            out.notes.append(f"datasets differ: {a.dataset} vs {b.dataset}")
        if a.partition != b.partition:
            out.notes.append(f"partitions differ: {a.partition} vs {b.partition} parts")
    for c in classes:
        for p in parts:
            old = a.get(c, p) if a is not None else None
            new = b.get(c, p) if b is not None else None
            if old is None and new is None:
                continue
            out.compared += 1
            if old is None:
                out.changes.append(Change(c, p, "added", None, new))
            elif new is None:
                out.changes.append(Change(c, p, "removed", old, None))
            elif old.text != new.text:
                out.changes.append(Change(c, p, "changed", old, new))
            elif old != new:
                out.changes.append(Change(c, p, "provenance", old, new))
    return out


# -- where the two sides come from ---------------------------------------------------------------------------------
def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, encoding="utf-8")


def _toplevel(cwd: Path) -> Path | None:
    r = _git(["rev-parse", "--show-toplevel"], cwd)
    return Path(r.stdout.strip()) if r.returncode == 0 else None


def _is_rev(rev: str, top: Path | None) -> bool:
    if rev == WORKTREE:
        return True
    return top is not None and _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], top).returncode == 0


def _cache_files_at(rev: str, top: Path, under: str) -> set[str]:
    if rev == WORKTREE:
        base = top / under
        return {p.relative_to(top).as_posix() for p in base.rglob("*.json")} if base.is_dir() else set()
    r = _git(["ls-tree", "-r", "--name-only", rev, "--", under], top)
    if r.returncode != 0:
        raise StarReproError(f"git ls-tree {rev} failed: {r.stderr.strip()}")
    return {ln for ln in r.stdout.splitlines() if ln.endswith(".json")}


def _read_at(rev: str, path: str, top: Path) -> str | None:
    if rev == WORKTREE:
        p = top / path
        return p.read_text(encoding="utf-8") if p.is_file() else None
    r = _git(["show", f"{rev}:{path}"], top)
    return r.stdout if r.returncode == 0 else None


def load_sides(a: str, b: str, *, paths: list[str] | None = None, cwd: str | Path = ".",
               under: str = DEFAULT_CACHE_ROOT.as_posix()) -> list[tuple[str, str | None, str, str | None]]:
    """[(label_a, text_a, label_b, text_b)]: two files, two `REV:path` objects, or two revisions.

    Two revisions (`WORKTREE` = the working tree) compare every cache file under `under` (or `paths`) present
    on either side, paired by path.
    """
    cwd = Path(cwd)
    top = _toplevel(cwd)

    def single(spec: str) -> str | None:
        p = cwd / spec
        if p.is_file():
            return p.read_text(encoding="utf-8")
        if ":" in spec and top is not None:
            rev, _, path = spec.partition(":")
            if _is_rev(rev, top):
                text = _read_at(rev, path, top)
                if text is None:
                    raise StarReproError(f"{spec}: no such file at revision {rev}")
                return text
        return None

    ta, tb = single(a), single(b)
    if ta is not None and tb is not None:
        return [(a, ta, b, tb)]
    if ta is None and tb is None and _is_rev(a, top) and _is_rev(b, top):
        assert top is not None or (a == WORKTREE and b == WORKTREE)
        top = top or cwd
        files = sorted(set(paths) if paths else _cache_files_at(a, top, under) | _cache_files_at(b, top, under))
        return [(f"{a}:{f}", _read_at(a, f, top), f"{b}:{f}", _read_at(b, f, top)) for f in files]
    bad = a if ta is None and not _is_rev(a, top) else b
    raise StarReproError(f"{bad!r} is neither a cache file, a REV:PATH, nor a git revision (give two files or "
                         "two revisions; WORKTREE means the working tree)")


def diff_specs(a: str, b: str, *, paths: list[str] | None = None, cwd: str | Path = ".") -> list[FileDiff]:
    out = []
    for la, ta, lb, tb in load_sides(a, b, paths=paths, cwd=cwd):
        ca = DescriptionCache.loads(ta, la) if ta is not None else None
        cb = DescriptionCache.loads(tb, lb) if tb is not None else None
        out.append(diff_caches(ca, cb, la, lb))
    return out


# -- rendering -------------------------------------------------------------------------------------------------
def _prov(e: Entry) -> str:
    bits = [e.source]
    if e.model:
        bits.append(e.model)
    if e.template:
        bits.append(e.template)
    if e.source_file:
        bits.append(e.source_file["path"])
    return " ".join(bits)


def _summary(d: FileDiff) -> str:
    n = d.counts()
    return (f"{d.title}: {n['changed']} text change(s), {n['added']} added, {n['removed']} removed, "
            f"{n['provenance']} provenance-only ({d.compared} entries compared)")


def render_text(diffs: list[FileDiff], *, color: bool = False, provenance: bool = True) -> str:
    def c(code: str, s: str) -> str:
        return f"\033[{code}m{s}\033[0m" if color else s

    lines: list[str] = []
    for d in diffs:
        if not d.changes and len(diffs) > 1:
            continue
        lines.append(c("1", f"--- {d.label_a}"))
        lines.append(c("1", f"+++ {d.label_b}"))
        lines.extend(c("33", f"note: {n}") for n in d.notes)
        lines.append(_summary(d))
        last = None
        for ch in d.changes:
            if ch.kind == "provenance" and not provenance:
                continue
            if ch.cls != last:
                lines.append(c("1;36", ch.cls))
                last = ch.cls
            if ch.kind == "added":
                lines.append(f"  {ch.part}  (added, {_prov(ch.new)})")  # type: ignore[arg-type]
                lines.append(c("32", f"    + {ch.new.text}"))  # type: ignore[union-attr]
            elif ch.kind == "removed":
                lines.append(f"  {ch.part}  (removed, was {_prov(ch.old)})")  # type: ignore[arg-type]
                lines.append(c("31", f"    - {ch.old.text}"))  # type: ignore[union-attr]
            else:
                po, pn = _prov(ch.old), _prov(ch.new)  # type: ignore[arg-type]
                how = f"{po} -> {pn}" if po != pn else po
                if ch.kind == "provenance":
                    lines.append(f"  {ch.part}  (same text; {', '.join(ch.provenance_fields)} changed: {how})")
                else:
                    lines.append(f"  {ch.part}  ({how})")
                    lines.append(c("31", f"    - {ch.old.text}"))  # type: ignore[union-attr]
                    lines.append(c("32", f"    + {ch.new.text}"))  # type: ignore[union-attr]
        lines.append("")
    if not any(d.changes for d in diffs):
        return "No description changes.\n"
    return "\n".join(lines)


def _md(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(diffs: list[FileDiff], *, provenance: bool = True, fold_over: int = 40) -> str:
    if not any(d.changes for d in diffs):
        return "**Description cache:** no description changes.\n"
    out: list[str] = []
    for d in diffs:
        if not d.changes:
            continue
        out.append(f"### Descriptions: `{d.label_a}` → `{d.label_b}`")
        out.append("")
        out.extend(f"> {n}" for n in d.notes)
        out.append(_summary(d))
        out.append("")
        rows = [ch for ch in d.changes if provenance or ch.kind != "provenance"]
        if not rows:
            continue
        table = ["| class | part | change | before | after |", "|---|---|---|---|---|"]
        for ch in rows:
            before = _md(ch.old.text) if ch.old else ""
            after = _md(ch.new.text) if ch.new else ""
            if ch.kind == "provenance":
                what = "provenance: " + ", ".join(ch.provenance_fields)
                before, after = _md(_prov(ch.old)), _md(_prov(ch.new))  # type: ignore[arg-type]
            elif ch.kind == "changed" and _prov(ch.old) != _prov(ch.new):  # type: ignore[arg-type]
                what = f"text ({_md(_prov(ch.old))} → {_md(_prov(ch.new))})"  # type: ignore[arg-type]
            else:
                what = ch.kind if ch.kind != "changed" else "text"
            table.append(f"| {_md(ch.cls)} | {ch.part} | {what} | {before} | {after} |")
        if len(rows) > fold_over:
            out.append(f"<details><summary>{len(rows)} changed entries</summary>")
            out.append("")
            out.extend(table)
            out.append("")
            out.append("</details>")
        else:
            out.extend(table)
        out.append("")
    return "\n".join(out) + "\n"


# -- git textconv -----------------------------------------------------------------------------------------------
def textconv(text: str, label: str = "cache") -> str:
    """A cache as one `class / part: text` line per entry (label order) with its provenance indented below."""
    cache = DescriptionCache.loads(text, label)
    lines = [f"# description cache: {cache.dataset}, {cache.partition} parts ({', '.join(cache.parts)}), "
             f"set {cache.source_set}, {cache.count()} entries"]
    for c, p, e in cache.items():
        lines.append(f"{c} / {p}: {e.text}")
        prov = [e.source]
        if e.model:
            prov.append(f"model {e.model}")
        if e.template:
            prov.append(f"template {e.template}")
        if e.source_file:
            sha = e.source_file.get("sha256")
            prov.append(f"file {e.source_file['path']}" + (f" sha256 {sha[:12]}" if sha else ""))
        prov.append(f"request {e.request_sha256[:12]}")
        if e.response:
            prov.append(f"response {e.response.get('id')} {e.response.get('system_fingerprint') or ''}".rstrip())
        lines.append(f"    [{'; '.join(prov)}]")
    return "\n".join(lines) + "\n"
