"""The description cache: schema, templates, staleness, `describe`, and the project's authored descriptions."""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from star_repro.data.classes import NTU120_CLASSES, PKU51_CLASSES, classes_of
from star_repro.errors import InputFormatError, StarReproError
from star_repro.skeleton import part_names
from star_repro.text.descriptions import (
    DescriptionCache, DescriptionsIncomplete, Entry, build_authored, cache_path, cache_status, check_cache,
    describe, read_authored,
)
from star_repro.text.prompt_templates import get_template, load_templates, request_sha256

PKU_FEW = PKU51_CLASSES[:3]


def _yaml_text(classes, tag="walks") -> str:
    """A small authored YAML in the project's layout (invented text)."""
    lines = []
    for c in classes:
        lines.append(f'"{c}":')
        for P in (6, 4, 2):
            lines.append(f"  {P}:")
            for p in part_names(P):
                lines.append(f'    {p}: "{tag} the {p} during {c}"')
    return "\n".join(lines) + "\n"


@pytest.fixture()
def workdir(tmp_path, monkeypatch, project_root):
    """A scratch project: relative default paths resolve inside it; templates copied from the project."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts" / "authored").mkdir(parents=True)
    shutil.copy(project_root / "prompts" / "templates.yaml", tmp_path / "prompts" / "templates.yaml")
    return tmp_path


def _openai_entry(tpl, cls, parts, part, text="x y z"):
    req = tpl.request(cls, parts)
    return Entry(text=text, source="openai", request_sha256=request_sha256(req), model=tpl.model,
                 template=tpl.ident, response={"id": "chatcmpl-1", "model": tpl.model, "system_fingerprint": None})


# -- templates -----------------------------------------------------------------------------------------------------
def test_project_templates_state_the_paper_question(project_root):
    templates, default = load_templates(project_root / "prompts" / "templates.yaml")
    tpl = templates[default]
    assert tpl.mode == "per_part" and re.fullmatch(r"gpt-3\.5-turbo-\d{4}", tpl.model)
    assert tpl.question("drink water", ("head",)) == "please describe the head actions simply when people drink water"
    assert tpl.question("drink water", ("hand-arm",)).startswith("please describe the hand and arm actions")
    req = tpl.request("drink water", ("head",))
    assert set(req) == {"model", "messages", "temperature", "seed", "max_tokens"}
    assert request_sha256(req) == request_sha256(json.loads(json.dumps(req)))
    for P in (6, 4, 2):  # every part of every partition has a word in the question
        for p in part_names(P):
            assert p in tpl.part_words
    js = templates["per-class-json"]
    assert js.mode == "per_class" and js.request("bow", part_names(4))["response_format"] == {"type": "json_object"}


def test_template_errors_name_file_line_and_key(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("schema: 1\ndefault: a\ntemplates:\n  a:\n    version: 1\n    mode: per_part\n    model: m\n"
                   "    temperature: 5\n    max_tokens: 10\n    user: 'describe {part} when {action}'\n")
    with pytest.raises(InputFormatError) as ei:
        load_templates(bad)
    assert ei.value.line == 8 and "templates.a.temperature" in str(ei.value)
    bad.write_text(bad.read_text().replace("temperature: 5", "temperature: 0").replace("{part}", "{prt}"))
    with pytest.raises(InputFormatError, match=r"templates\.a\.user"):
        load_templates(bad)


# -- schema ------------------------------------------------------------------------------------------------------
def test_cache_roundtrip_is_canonical_and_one_text_per_line(workdir):
    (workdir / "prompts/authored/pku1.yaml").write_text(_yaml_text(PKU_FEW))
    paths = build_authored("pku1", partitions=(6,), allow_partial=True)
    text = paths[0].read_text(encoding="utf-8")
    cache = DescriptionCache.loads(text, "x")
    assert cache.dumps() == text  # canonical: sorted keys, indent 2, trailing newline
    assert "created" not in text and "time" not in text
    for c, p, e in cache.items():  # each description is one whole line of the file
        assert f'        "text": {json.dumps(e.text, ensure_ascii=False)}' in text.splitlines()
    assert cache.count() == 18 and len(cache.missing()) == (51 - 3) * 6


@pytest.mark.parametrize("mutate, key", [
    (lambda o: o["entries"]["bow"]["head"].update(text="  "), "entries.bow.head: text"),
    (lambda o: o["entries"]["bow"]["head"].update(text="two\nlines"), "entries.bow.head: text"),
    (lambda o: o["entries"]["bow"]["head"].pop("request_sha256"), "entries.bow.head: missing"),
    (lambda o: o["entries"]["bow"]["head"].update(source="gpt"), "entries.bow.head: source"),
    (lambda o: o["entries"]["bow"].update(neck=o["entries"]["bow"]["head"]), "entries.bow.neck"),
    (lambda o: o["entries"].update({"boww": o["entries"]["bow"]}), "entries.boww"),
    (lambda o: o.update(partition=5), "key partition"),
    (lambda o: o.update(parts=["head"]), "key parts"),
])
def test_schema_errors_name_the_key(workdir, mutate, key):
    (workdir / "prompts/authored/pku1.yaml").write_text(_yaml_text(PKU_FEW))
    path = build_authored("pku1", partitions=(6,), allow_partial=True)[0]
    obj = json.loads(path.read_text())
    mutate(obj)
    with pytest.raises(InputFormatError) as ei:
        DescriptionCache.from_obj(obj, "f.json")
    assert ei.value.file == "f.json" and key in str(ei.value)


def test_invalid_json_names_the_line(tmp_path):
    with pytest.raises(InputFormatError) as ei:
        DescriptionCache.loads('{\n  "dataset": "pku1",\n  oops\n}', "c.json")
    assert ei.value.line == 3


# -- authored ------------------------------------------------------------------------------------------------------
def test_authored_errors_give_lines(workdir):
    text = _yaml_text(PKU_FEW)
    lines = text.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip().startswith("hip:"))
    lines[i] = '    hip: ""'
    j = next(k for k, ln in enumerate(lines) if ln.strip().startswith("leg-foot:"))
    lines[j] = '    legfoot: "x"'
    (workdir / "prompts/authored/pku1.yaml").write_text("\n".join(lines) + '\n"bowing":\n  6: {}\n')
    with pytest.raises(InputFormatError) as ei:
        read_authored("prompts/authored/pku1.yaml", "pku1", allow_partial=True)
    msg = str(ei.value)
    assert ei.value.line == i + 1
    assert f"line {i + 1}: 'bow' / 6 / hip: expected a non-empty description" in msg
    assert f"line {j + 1}: 'bow' / 4: unknown part 'legfoot'" in msg
    assert "'bowing' is not a pku1 class; did you mean 'bow'" in msg
    with pytest.raises(InputFormatError, match="48 pku1 class"):
        (workdir / "prompts/authored/pku1.yaml").write_text(_yaml_text(PKU_FEW))
        read_authored("prompts/authored/pku1.yaml", "pku1")


def test_duplicate_class_in_authored_yaml_is_an_error(workdir):
    (workdir / "prompts/authored/pku1.yaml").write_text(_yaml_text(PKU_FEW) + _yaml_text(PKU_FEW[:1]))
    with pytest.raises(InputFormatError, match="duplicate key 'bow'"):
        read_authored("prompts/authored/pku1.yaml", "pku1", allow_partial=True)


# -- describe, missing and stale -------------------------------------------------------------------------------
def test_describe_lists_every_missing_entry_and_the_command(workdir):
    (workdir / "prompts/authored/pku1.yaml").write_text(_yaml_text(PKU_FEW))
    build_authored("pku1", partitions=(6,), allow_partial=True)
    with pytest.raises(DescriptionsIncomplete) as ei:
        describe("pku1", 6, "authored", workdir / "out.json")
    msg = str(ei.value)
    assert len(ei.value.problems) == 48 * 6
    for c in PKU51_CLASSES[3:]:
        assert f"  missing  {c}: head, hand, arm, hip, leg, foot" in msg
    assert "star-repro descriptions build-authored --dataset pku1" in msg
    assert not (workdir / "out.json").exists()
    with pytest.raises(DescriptionsIncomplete, match="descriptions fill --set openai --dataset ntu60 --partition 2"):
        describe("ntu60", 2, "openai", workdir / "out.json")


def _complete_openai_cache(tpl, dataset="pku1", P=6):
    cache = DescriptionCache(dataset, P, "openai")
    for c in classes_of(dataset):
        for p in part_names(P):
            cache.set(c, p, _openai_entry(tpl, c, (p,), p, text=f"{p} of {c}"))
    return cache


def test_changed_template_makes_api_entries_stale(workdir):
    tpl = get_template(None, "prompts/templates.yaml")
    cache = _complete_openai_cache(tpl)
    cache.save(cache_path("openai", "pku1", 6))
    out = describe("pku1", 6, "openai", workdir / "d.json")
    assert out["descriptions"]["bow"]["head"] == "head of bow"
    # same version, different model: every request hash changes
    t = Path("prompts/templates.yaml")
    t.write_text(t.read_text().replace("model: gpt-3.5-turbo-0125", "model: gpt-3.5-turbo-1106", 1))
    with pytest.raises(DescriptionsIncomplete) as ei:
        describe("pku1", 6, "openai", workdir / "d2.json")
    assert {p.kind for p in ei.value.problems} == {"stale"} and len(ei.value.problems) == 51 * 6
    assert "now sends a different request" in str(ei.value)
    # a bumped version names both versions
    t.write_text(t.read_text().replace("version: 1", "version: 2", 1))
    problems = check_cache(cache, ["bow"], templates_path=t)
    assert problems[0].reason == "made with template paper-per-part@1, current is paper-per-part@2"
    # params may pin another template
    with pytest.raises(DescriptionsIncomplete, match="current is per-class-json@1"):
        describe("pku1", 6, {"source": "openai", "template": "per-class-json"}, workdir / "d3.json")


def test_edited_authored_text_is_stale_until_rebuilt(workdir):
    y = workdir / "prompts/authored/pku1.yaml"
    y.write_text(_yaml_text(PKU51_CLASSES))
    build_authored("pku1", partitions=(6,))
    describe("pku1", 6, "authored", workdir / "a.json")
    y.write_text(y.read_text().replace('head: "walks the head during bow"', 'head: "dips the head during bow"'))
    with pytest.raises(DescriptionsIncomplete) as ei:
        describe("pku1", 6, "authored", workdir / "b.json")
    assert [(p.cls, p.part, p.kind) for p in ei.value.problems] == [("bow", "head", "stale")]
    y.write_text(y.read_text() + "# a comment changes the hash but no text\n")
    build_authored("pku1", partitions=(6,))
    y.write_text(y.read_text() + "# another\n")
    out = describe("pku1", 6, "authored", workdir / "c.json")  # hash differs, texts equal: not stale
    assert out["descriptions"]["bow"]["head"] == "dips the head during bow"
    rows = cache_status(workdir / "prompts/cache")
    assert [(r.source_set, r.partition, r.present, r.problems) for r in rows] == [("authored", 6, 306, [])]


def test_ntu60_reads_the_first_60_ntu120_classes(workdir):
    (workdir / "prompts/authored/ntu120.yaml").write_text(_yaml_text(NTU120_CLASSES[:60]))
    build_authored("ntu120", partitions=(2,), allow_partial=True)
    out = describe("ntu60", 2, "authored", workdir / "n.json")
    assert out["classes"] == list(NTU120_CLASSES[:60]) and out["parts"] == ["upper body", "lower body"]
    with pytest.raises(DescriptionsIncomplete):
        describe("ntu120", 2, "authored", workdir / "m.json")


# -- the project's own authored descriptions ------------------------------------------------------------------------
@pytest.fixture()
def at_root(project_root, monkeypatch):
    if not (project_root / "prompts/cache/authored/ntu120_6part.json").is_file():
        pytest.fail("prompts/cache/authored is not built: run `star-repro descriptions build-authored`")
    monkeypatch.chdir(project_root)
    return project_root


@pytest.mark.parametrize("dataset", ["ntu120", "pku1"])
def test_authored_cache_is_complete_current_and_schema_valid(at_root, tmp_path, dataset):
    rebuilt = build_authored(dataset, cache_root=tmp_path)
    for P in (6, 4, 2):
        committed = cache_path("authored", dataset, P)
        cache = DescriptionCache.load(committed)
        assert cache.missing() == [] and check_cache(cache, cache.classes) == []
        assert {e.source for _, _, e in cache.items()} == {"authored"}
        assert committed.read_bytes() == (tmp_path / "authored" / committed.name).read_bytes(), \
            "the committed authored cache is out of date: run `star-repro descriptions build-authored`"
    assert len(rebuilt) == 3


def test_describe_authored_is_deterministic_and_fast(at_root, tmp_path):
    for ds in ("ntu60", "ntu120", "pku1"):
        for P in (6, 4, 2):
            t0 = time.perf_counter()
            out = describe(ds, P, {"source": "authored"}, tmp_path / f"a_{ds}{P}.json")
            elapsed = time.perf_counter() - t0
            describe(ds, P, "authored", tmp_path / f"b_{ds}{P}.json")
            assert elapsed < 1.0
            a, b = (tmp_path / f"a_{ds}{P}.json").read_bytes(), (tmp_path / f"b_{ds}{P}.json").read_bytes()
            assert a == b
            obj = json.loads(a)
            assert set(obj) == {"dataset", "partition", "parts", "classes", "descriptions", "cache"}
            assert obj["classes"] == list(classes_of(ds)) and obj["parts"] == list(part_names(P))
            assert obj["cache"]["file"] == f"prompts/cache/authored/{'ntu120' if ds == 'ntu60' else ds}_{P}part.json"
            assert all(obj["descriptions"][c][p] for c in obj["classes"] for p in obj["parts"])
            assert out == obj


def _sentences(text: str) -> set[str]:
    out = set()
    for s in re.split(r"[.;!?\n]+", text):
        s = re.sub(r"^\s*(head|hand|arm|hip|leg|foot)\s*:", "", s.strip(), flags=re.I)
        s = " ".join(re.sub(r"[^a-z0-9' ]", " ", s.lower()).split())
        if s:
            out.add(s)
    return out


@pytest.mark.real_data
def test_authored_text_shares_no_sentence_with_released_descriptions(at_root, real_data):
    released: set[str] = set()
    files = sorted((real_data / "descriptions").glob("*.txt"))
    assert len(files) >= 3
    for f in files:
        if "label_map" in f.name:
            continue
        for line in f.read_text(encoding="utf-8").splitlines():
            for field in line.split(";")[1:]:
                released |= _sentences(field)
    assert len(released) > 1000
    shared = {}
    for ds in ("ntu120", "pku1"):
        for c, per_p in read_authored(f"prompts/authored/{ds}.yaml", ds).items():
            for P, parts in per_p.items():
                for p, t in parts.items():
                    for s in _sentences(t) & released:
                        shared[s] = (ds, c, P, p)
    assert not shared, f"authored text repeats released sentences: {shared}"


def test_describe_rejects_a_wrong_set_file(workdir):
    (workdir / "prompts/authored/pku1.yaml").write_text(_yaml_text(PKU51_CLASSES))
    src = build_authored("pku1", partitions=(6,))[0]
    dst = cache_path("mine", "pku1", 6)
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    with pytest.raises(InputFormatError, match="holds pku1 6-part set 'authored'"):
        describe("pku1", 6, "mine", workdir / "x.json")
    with pytest.raises(StarReproError, match="bad description set name"):
        describe("pku1", 6, "../x", workdir / "x.json")


def test_duplicate_class_in_cache_json_names_both_lines(project_root, tmp_path):
    text = (project_root / "prompts/cache/authored/pku1_2part.json").read_text(encoding="utf-8")
    DescriptionCache.loads(text, "pku1_2part.json")  # the committed cache loads
    start = text.index('    "bow": {')
    end = text.index("\n    },\n", start) + len("\n    },\n")
    doubled = text[:end] + text[start:end] + text[end:]  # the class "bow" twice in "entries"
    with pytest.raises(InputFormatError) as ei:
        DescriptionCache.loads(doubled, "pku1_2part.json")
    first = text[:start].count("\n") + 1
    second = doubled[:end].count("\n") + 1
    assert ei.value.line == second and f"lines {first}, {second}" in ei.value.reason
    assert "duplicate key 'bow'" in ei.value.reason
