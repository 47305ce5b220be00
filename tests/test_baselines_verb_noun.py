"""The project's verb/noun table for JPoSE and SynSE: complete, well-formed, and errors that point at the line."""
from __future__ import annotations

import pytest

from star_repro.data.classes import NTU120_CLASSES, PKU51_CLASSES, classes_of
from star_repro.data.verb_noun import VERB_NOUN_PATH, parse_verb_noun, phrase_ids, verb_noun
from star_repro.errors import InputFormatError, StarReproError


@pytest.mark.parametrize("dataset", ["ntu60", "ntu120", "pku1"])
def test_every_class_has_a_verb_and_a_noun(dataset):
    verbs, nouns = verb_noun(dataset)
    assert len(verbs) == len(nouns) == len(classes_of(dataset))
    assert all(v.strip() and n.strip() for v, n in zip(verbs, nouns))
    # distinct classes stay distinguishable by their pair of phrases
    pairs = list(zip(verbs, nouns))
    assert len(set(pairs)) == len(pairs)


def test_rule_examples_from_the_spec():
    verbs, nouns = verb_noun("ntu120")
    row = {c: (v, n) for c, v, n in zip(NTU120_CLASSES, verbs, nouns)}
    assert row["put on a hat/cap"] == ("put on", "hat/cap")
    assert row["take off jacket"] == ("take off", "jacket")
    assert row["clapping"] == ("clap", "body")              # nominalised verb; noun-less -> "body"
    assert row["jump up"] == ("jump up", "body")
    assert row["nausea/vomiting"] == ("vomit", "body")
    assert row["pushing"] == ("push", "other person")       # partner taken from the official name
    assert row["walking towards"] == ("walk towards", "each other")
    assert verb_noun("ntu60")[0] == verbs[:60]


def test_pku_and_ntu_agree_on_shared_actions():
    ntu = dict(zip(NTU120_CLASSES, zip(*verb_noun("ntu120"))))
    pku = dict(zip(PKU51_CLASSES, zip(*verb_noun("pku1"))))
    for name in set(ntu) & set(pku):
        assert ntu[name] == pku[name], name
    assert pku["wear jacket"] == ntu["put on jacket"]


def test_phrase_ids_group_identical_phrases():
    ids = phrase_ids(["put on", "take off", "put on", "wave"])
    assert ids.tolist() == [0, 1, 0, 2]


def test_unknown_dataset():
    with pytest.raises(StarReproError, match="no verb/noun table"):
        verb_noun("kinetics")


def _table_with(tmp_path, transform):
    text = transform(VERB_NOUN_PATH.read_text(encoding="utf-8"))
    path = tmp_path / "vn.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_missing_class_is_reported(tmp_path):
    path = _table_with(tmp_path, lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("  salute:")))
    with pytest.raises(InputFormatError, match=r"lacks 1 classes: \[.salute.\]"):
        parse_verb_noun(path)


def test_unknown_class_name_points_at_its_line(tmp_path):
    path = _table_with(tmp_path, lambda t: t.replace("  hush: {verb: hush", "  husha: {verb: hush"))
    with pytest.raises(InputFormatError) as err:
        parse_verb_noun(path)
    assert err.value.line == _line_of(path.read_text(), "husha:")
    assert "'husha' is not a class name" in str(err.value) and str(path) in str(err.value)


def test_bad_entry_points_at_its_line(tmp_path):
    path = _table_with(tmp_path, lambda t: t.replace("  yawn: {verb: yawn, noun: body}", "  yawn: {verb: yawn}"))
    with pytest.raises(InputFormatError, match="ntu120.yawn: expected exactly the keys verb and noun") as err:
        parse_verb_noun(path)
    assert err.value.line == _line_of(path.read_text(), "  yawn:")
    path = _table_with(tmp_path, lambda t: t.replace("  yawn: {verb: yawn, noun: body}", "  yawn: {verb: '', noun: x}"))
    with pytest.raises(InputFormatError, match="ntu120.yawn.verb: expected a non-empty string"):
        parse_verb_noun(path)


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "vn.yaml"
    path.write_text("ntu120:\n  drink water: {verb: drink, noun: [water\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match="not valid YAML") as err:
        parse_verb_noun(path)
    assert err.value.line is not None and str(path) in str(err.value)
