"""Importers for released description files (STAR and GAP formats), on invented fixtures and the real releases."""
from __future__ import annotations

import pytest

from star_repro.cli import main
from star_repro.data.classes import NTU120_CLASSES, PKU51_CLASSES
from star_repro.errors import InputFormatError
from star_repro.io import sha256_file
from star_repro.text.descriptions import DescriptionCache, cache_path, check_cache, describe
from star_repro.text.importers import import_descriptions, match_class, parse_star

LABELS = ("Head", "Hand", "Arm", "Hip", "Leg", "Foot")


def star_line(name: str, word: str = "sways") -> str:
    return name + "; " + "; ".join(f"{lb}: {word} the {lb.lower()} for {name}" for lb in LABELS)


def gap_line(name: str) -> str:
    return name + ";" + "; ".join(f"{p} bobs a bit for {name}" for p in ("head", "hand", "arm", "hip", "leg", "foot"))


@pytest.fixture()
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_star_format_imports_with_provenance(work):
    f = work / "mine.txt"
    lines = [star_line(n) for n in PKU51_CLASSES]
    lines[8] += ";"  # a trailing ';' (empty 8th field) is tolerated, as in the real release
    f.write_text("\n".join(lines))  # no trailing newline, as released
    r = import_descriptions(f, "star", "pku1")
    assert (r.added, r.changed, r.classes) == (306, 0, 51)
    cache = DescriptionCache.load(cache_path("imported-star", "pku1", 6))
    e = cache.get("drop", "foot")
    assert e.text == "sways the foot for drop" and e.source == "imported"
    assert e.source_file == {"path": "mine.txt", "sha256": sha256_file(f)} and e.response is None
    assert check_cache(cache, cache.classes) == []
    out = describe("pku1", 6, "imported-star", work / "d.json")
    assert out["descriptions"]["bow"]["hip"] == "sways the hip for bow"
    # importing again changes nothing; a changed file is counted as changed
    assert import_descriptions(f, "star", "pku1").unchanged == 306
    f.write_text("\n".join(star_line(n, "rocks") for n in PKU51_CLASSES))
    assert import_descriptions(f, "star", "pku1").changed == 306


def test_short_release_names_match_canonical_names(work):
    classes = ("eat meal/snack", "pickup", "check time (from watch)", "throw", "throw up cap/hat")
    assert match_class("Eat  Meal", classes) == "eat meal/snack"
    assert match_class("eat meal", classes) == "eat meal/snack"
    assert match_class("pick up", classes) == "pickup"
    assert match_class("check time", classes) == "check time (from watch)"
    assert match_class("throw", classes) == "throw"
    assert match_class("pick up", NTU120_CLASSES) == "pick up"
    assert match_class("hopping", PKU51_CLASSES) == "hopping (one foot jumping)"
    with pytest.raises(InputFormatError) as ei:
        match_class("throwing things", classes, file="r.txt", line=7)
    assert ei.value.line == 7 and "candidates: 'throw'" in str(ei.value) and "--name-map" in str(ei.value)


def test_unmatched_name_lists_candidates_and_name_map_fixes_it(work):
    f = work / "r.txt"
    names = list(PKU51_CLASSES)
    names[5] = "clap hands"
    f.write_text("\n".join(star_line(n) for n in names) + "\n")
    with pytest.raises(InputFormatError) as ei:
        import_descriptions(f, "star", "pku1")
    assert ei.value.line == 6 and "'clap hands' matches no class" in str(ei.value) and "'clapping'" in str(ei.value)
    m = work / "map.tsv"
    m.write_text("# release name\tclass\nclap hands\tclapping\n")
    assert import_descriptions(f, "star", "pku1", name_map=m).classes == 51


@pytest.mark.parametrize("bad, line_no, message", [
    ("bow; Head: a; Hand: b; Arm: c; Hip: d; Leg: e", 3, "expected 7 ';'-separated fields"),
    ("bow; Head: a; Hand: b; Arm: c; Hip: d; Knee: e; Foot: f", 3, "field 6 must start with 'Leg:'"),
    ("bow; Head: a; Hand: ; Arm: c; Hip: d; Leg: e; Foot: f", 3, "field 3 (Hand) has no description"),
    ("; Head: a; Hand: b; Arm: c; Hip: d; Leg: e; Foot: f", 3, "expected the class name"),
])
def test_malformed_star_file_names_the_line(work, bad, line_no, message):
    f = work / "bad.txt"
    f.write_text(star_line("clapping") + "\n\n" + bad + "\n" + star_line("reading") + "\n")
    with pytest.raises(InputFormatError) as ei:
        parse_star(f)
    assert ei.value.line == line_no and message in str(ei.value) and str(f) in str(ei.value)


def test_duplicate_and_missing_classes_are_errors(work):
    f = work / "dup.txt"
    f.write_text("\n".join([star_line("bow"), star_line("clapping"), star_line("Bow")]))
    with pytest.raises(InputFormatError, match=r"dup.txt:3: 'Bow' is class 'bow' again \(first at line 1\)"):
        import_descriptions(f, "star", "pku1")
    f.write_text("\n".join([star_line("bow"), star_line("clapping")]))
    with pytest.raises(InputFormatError, match="49 pku1 class"):
        import_descriptions(f, "star", "pku1")
    r = import_descriptions(f, "star", "pku1", allow_partial=True)
    assert r.classes == 2 and r.added == 12


def test_gap_format_with_label_map(work):
    f = work / "gap.txt"
    f.write_text("\n".join(gap_line(n) for n in NTU120_CLASSES))
    m = work / "labels.txt"
    m.write_text("\n".join(" " + n for n in NTU120_CLASSES))
    r = import_descriptions(f, "gap", "ntu120", label_map=m)
    assert r.classes == 120
    cache = DescriptionCache.load(cache_path("imported-gap", "ntu120", 6))
    assert cache.get("drink water", "arm").text == "arm bobs a bit for drink water"
    m.write_text("\n".join(" " + n for n in reversed(NTU120_CLASSES)))
    with pytest.raises(InputFormatError, match=r"gap.txt:1: name 'drink water' differs from .* 'rock-paper-scissors'"):
        import_descriptions(f, "gap", "ntu120", label_map=m)
    f.write_text(gap_line("drink water") + "\n" + "eat meal;a;b;c\n")
    with pytest.raises(InputFormatError, match=r"gap.txt:2: expected 7"):
        import_descriptions(f, "gap", "ntu120")


def test_ntu60_import_from_a_60_class_release(work):
    f = work / "ntu60.txt"
    f.write_text("\n".join(star_line(n) for n in NTU120_CLASSES[:60]))
    import_descriptions(f, "star", "ntu60")
    out = describe("ntu60", 6, "imported-star", work / "n.json")
    assert len(out["classes"]) == 60


def test_cli_import_reports_and_errors(work, capsys):
    f = work / "x.txt"
    f.write_text("\n".join(star_line(n) for n in PKU51_CLASSES[:2]))
    assert main(["descriptions", "import", str(f), "--format", "star", "--dataset", "pku1", "--allow-partial"]) == 0
    assert "imported 2 classes" in capsys.readouterr().out
    f.write_text("bow; Head: x\n")
    assert main(["descriptions", "import", str(f), "--format", "star", "--dataset", "pku1"]) == 2
    assert "x.txt:1: expected 7" in capsys.readouterr().err


@pytest.mark.real_data
@pytest.mark.parametrize("name, dataset, n", [("star_ntu120_part_descriptions.txt", "ntu120", 120),
                                              ("star_pkuv1_part_descriptions.txt", "pku1", 51)])
def test_real_star_releases_give_complete_caches(work, real_data, name, dataset, n):
    src = real_data / "descriptions" / name
    r = import_descriptions(src, "star", dataset)
    assert r.classes == n and r.added == n * 6
    cache = DescriptionCache.load(r.path)
    assert cache.missing() == [] and check_cache(cache, cache.classes) == []
    assert all(e.source_file["sha256"] == sha256_file(src) for _, _, e in cache.items())
    out = describe(dataset, 6, "imported-star", work / "d.json")
    assert all(out["descriptions"][c][p] for c in out["classes"] for p in out["parts"])
    if dataset == "ntu120":
        assert describe("ntu60", 6, "imported-star", work / "d60.json")["classes"] == list(NTU120_CLASSES[:60])


@pytest.mark.real_data
def test_real_gap_release_imports_with_its_label_map(work, real_data):
    d = real_data / "descriptions"
    r = import_descriptions(d / "gap_pasta_openai_t01.txt", "gap", "ntu120", label_map=d / "gap_ntu120_label_map.txt")
    assert r.classes == 120 and DescriptionCache.load(r.path).missing() == []
