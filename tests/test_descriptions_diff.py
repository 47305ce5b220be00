"""`descriptions diff` (files, REV:PATH, revisions) and the git textconv driver, on small invented fixtures."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from star_repro.cli import main
from star_repro.skeleton import part_names
from star_repro.text.desc_diff import diff_specs, render_markdown, render_text, textconv
from star_repro.text.descriptions import build_authored, cache_path
from star_repro.text.importers import import_descriptions

CLASSES = ("bow", "clapping", "drop")


def write_authored(root, texts=None):
    """Authored YAML for three PKU classes; texts[(class, part)] overrides the 6-part text."""
    texts = texts or {}
    out = []
    for c in CLASSES:
        out.append(f'"{c}":')
        for P in (6, 4, 2):
            out.append(f"  {P}:")
            for p in part_names(P):
                t = texts.get((c, p), f"the {p} keeps still during {c}") if P == 6 else f"{p} of {c}"
                out.append(f'    {p}: "{t}"')
    (root / "prompts/authored").mkdir(parents=True, exist_ok=True)
    (root / "prompts/authored/pku1.yaml").write_text("\n".join(out) + "\n")
    return build_authored("pku1", authored_dir=root / "prompts/authored", cache_root=root / "prompts/cache",
                          partitions=(6, 4, 2), allow_partial=True)


@pytest.fixture()
def two_caches(tmp_path, monkeypatch):
    """An authored cache and an imported one that differ in known places."""
    monkeypatch.chdir(tmp_path)
    write_authored(tmp_path)
    lines = []
    for c in ("bow", "clapping"):  # 'drop' is absent from the import
        fields = []
        for p in part_names(6):
            same = (c, p) == ("bow", "hip")
            text = f"the {p} keeps still during {c}" if same else f"the {p} swings | widely for {c}"
            fields.append(f"{p.capitalize()}: {text}")
        lines.append(c + "; " + "; ".join(fields))
    f = tmp_path / "release.txt"
    f.write_text("\n".join(lines) + "\n")
    import_descriptions(f, "star", "pku1", allow_partial=True)
    return cache_path("authored", "pku1", 6), cache_path("imported-star", "pku1", 6)


def test_diff_lists_per_class_per_part_changes(two_caches):
    a, b = two_caches
    (d,) = diff_specs(str(a), str(b))
    kinds = {(c.cls, c.part): c.kind for c in d.changes}
    assert kinds[("bow", "head")] == "changed"
    assert kinds[("bow", "hip")] == "provenance"  # same text, different source
    assert all(kinds[("drop", p)] == "removed" for p in part_names(6))
    assert d.counts() == {"changed": 11, "added": 0, "removed": 6, "provenance": 1} and d.compared == 18
    order = [(c.cls, c.part) for c in d.changes]
    assert order[:2] == [("bow", "head"), ("bow", "hand")]  # label order, then part order
    back = diff_specs(str(b), str(a))[0]
    assert back.counts()["added"] == 6


def test_text_and_markdown_rendering(two_caches):
    a, b = two_caches
    diffs = diff_specs(str(a), str(b))
    text = render_text(diffs)
    assert "pku1, 6 parts: 11 text change(s), 0 added, 6 removed, 1 provenance-only" in text
    block = text[text.index("\nbow\n"):]
    assert "  head  (authored prompts/authored/pku1.yaml -> imported release.txt)\n" \
           "    - the head keeps still during bow\n    + the head swings | widely for bow" in block
    assert "  hip  (same text; source, request_sha256, source_file changed" in block
    assert "\033[" not in text and "\033[31m" in render_text(diffs, color=True)
    assert "hip  (same text" not in render_text(diffs, provenance=False)
    md = render_markdown(diffs)
    assert md.startswith("### Descriptions: `prompts/cache/authored/pku1_6part.json` → `prompts/cache/imported")
    assert "| class | part | change | before | after |" in md
    assert "| bow | head | text (authored prompts/authored/pku1.yaml → imported release.txt) | " \
           "the head keeps still during bow | the head swings \\| widely for bow |" in md
    assert "| drop | foot | removed | the foot keeps still during drop |  |" in md
    assert render_markdown(diff_specs(str(a), str(a))) == "**Description cache:** no description changes.\n"


def test_cli_diff_formats_and_exit_code(two_caches, capsys):
    a, b = map(str, two_caches)
    assert main(["descriptions", "diff", a, b, "--exit-code", "--color", "never"]) == 1
    assert "    + the hand swings | widely for bow" in capsys.readouterr().out
    assert main(["descriptions", "diff", a, a, "--exit-code"]) == 0
    assert capsys.readouterr().out == "No description changes.\n"
    assert main(["descriptions", "diff", a, b, "--format", "markdown"]) == 0
    assert "| clapping | foot | text" in capsys.readouterr().out
    assert main(["descriptions", "diff", a, "no-such-thing"]) == 2
    assert "neither a cache file" in capsys.readouterr().err


def _git(repo, *args):
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=str(repo))
    r = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                        *args], cwd=repo, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture()
def repo(tmp_path, monkeypatch):
    """A throwaway git repository (never the project's) with two commits of an authored cache."""
    r = tmp_path / "repo"
    r.mkdir()
    monkeypatch.chdir(r)
    _git(r, "init", "-q")
    write_authored(r)
    _git(r, "add", "-A")
    _git(r, "commit", "-q", "-m", "v1")
    write_authored(r, {("clapping", "hand"): "the palms meet again and again in front of the chest"})
    _git(r, "add", "-A")
    _git(r, "commit", "-q", "-m", "v2")
    return r


def test_diff_between_git_revisions(repo):
    diffs = diff_specs("HEAD~1", "HEAD")
    assert [d.label_a for d in diffs] == [f"HEAD~1:prompts/cache/authored/pku1_{P}part.json" for P in (2, 4, 6)]
    changed = [(d.title, c.cls, c.part, c.kind) for d in diffs for c in d.changes]
    assert changed == [("pku1, 6 parts", "clapping", "hand", "changed")]
    assert diffs[2].changes[0].new.text == "the palms meet again and again in front of the chest"
    # REV:PATH against the working tree, and a new file in the working tree
    write_authored(repo, {("drop", "foot"): "the feet stay planted as the object falls"})
    (one,) = diff_specs("HEAD:prompts/cache/authored/pku1_6part.json", "prompts/cache/authored/pku1_6part.json")
    assert [(c.cls, c.part) for c in one.changes] == [("clapping", "hand"), ("drop", "foot")]
    wt = diff_specs("HEAD", "WORKTREE")
    assert sum(len(d.changes) for d in wt) == 2
    text = render_text(wt)
    assert "--- HEAD:prompts/cache/authored/pku1_6part.json" in text and "2part" not in text


def test_textconv_and_git_diff_driver(repo, project_root):
    path = repo / "prompts/cache/authored/pku1_6part.json"
    out = textconv(path.read_text(), str(path))
    lines = out.splitlines()
    assert lines[0].startswith("# description cache: pku1, 6 parts")
    assert lines[1] == "bow / head: the head keeps still during bow"
    assert lines[2].startswith("    [authored; file ") and "request " in lines[2]
    assert len(lines) == 1 + 2 * 18
    # the documented driver, wired into this throwaway repo as docs/descriptions.md says
    (repo / ".gitattributes").write_text("prompts/cache/**/*.json diff=starcache\n")
    cmd = f"PYTHONPATH={project_root / 'src'} {sys.executable} -m star_repro.cli descriptions textconv"
    _git(repo, "config", "diff.starcache.textconv", cmd)
    diff = _git(repo, "diff", "HEAD~1", "HEAD", "--", "prompts/cache/authored/pku1_6part.json")
    assert "-clapping / hand: the hand keeps still during clapping" in diff
    assert "+clapping / hand: the palms meet again and again in front of the chest" in diff
    assert '"text"' not in diff


def test_textconv_shows_a_broken_file_as_is(tmp_path, capsys):
    f = tmp_path / "x.json"
    f.write_text('{"not": "a cache"}\n')
    assert main(["descriptions", "textconv", str(f)]) == 0
    captured = capsys.readouterr()
    assert captured.out == '{"not": "a cache"}\n' and "not a valid cache" in captured.err
