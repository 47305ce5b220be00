"""The embed stage: strings, output format, the per-string cache, errors, and the encoder benchmark."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from star_repro.errors import InputFormatError, StarReproError
from star_repro.io import canonical_json, sha256_file, sha256_text
from star_repro.skeleton import PART_LABELS, part_names
from star_repro.text import encoders as enc_mod
from star_repro.text.embcache import EmbeddingCache
from star_repro.text.embed import (
    bench_encoders, bench_strings, embed, embed_from_params, embedding_paths, format_bench, load_embeddings,
    part_text, read_descriptions,
)
from star_repro.text.encoders import make_encoder

CLASSES = ["drink water", "eat meal", "kicking something", "hopping"]
SMALL = {"encoder": "clip:ViT-S-32-alt", "weights": "random", "seed": 5}


# one intra-op thread for the whole module (tests/conftest.py says why)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _texts(partition: int = 6) -> dict[str, dict[str, str]]:
    return {c: {p: f"the {p} moves the way it does to {c}" for p in part_names(partition)} for c in CLASSES}


def write_descriptions(path: Path, texts: dict | None = None, partition: int = 6, **override) -> Path:
    obj = {"dataset": "ntu60", "partition": partition, "parts": list(part_names(partition)), "classes": CLASSES,
           "descriptions": texts or _texts(partition),
           "cache": {"file": "prompts/authored/ntu120.yaml", "sha256": "0" * 64}}
    obj.update(override)
    path.write_text(canonical_json(obj), encoding="utf-8")
    return path


class Counting:
    """Wraps a real encoder and records every string it is asked to encode."""

    def __init__(self, inner):
        self.inner = inner
        self.seen: list[str] = []
        for attr in ("name", "identity", "info", "dim", "max_tokens", "truncate", "device"):
            setattr(self, attr, getattr(inner, attr))

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)

    def encode(self, texts, batch_size=None):
        self.seen += list(texts)
        return self.inner.encode(texts, batch_size=batch_size)


@pytest.fixture(scope="module")
def small():
    return make_encoder(SMALL)


def test_part_text_forms():
    assert part_text("drink water", "head", "tips back", "name_part") == "drink water, Head: tips back"
    assert part_text("cheer up", "hand-arm", "rise", "name_part") == "cheer up, Hand-arm: rise"
    assert part_text("drink water", "upper body", "x", "name_part") == f"drink water, {PART_LABELS['upper body']}: x"
    assert part_text("drink water", "head", " tips back", "description") == " tips back"
    with pytest.raises(StarReproError, match="embed.text_form"):
        part_text("a", "head", "b", "prompt")


def test_embed_writes_the_documented_format(tmp_path, small):
    desc = write_descriptions(tmp_path / "ntu60_6part.json")
    out, meta_path = embedding_paths("ntu60", 6, SMALL["encoder"], tmp_path / "emb")
    assert out.name == "ntu60_6part_clip-ViT-S-32-alt.npz" and meta_path == out.with_suffix(".json")
    counting = Counting(small)
    summary = embed(desc, SMALL, "name_part", out, tmp_path / "cache", batch_size=8, progress=False,
                    encoder=counting)
    assert summary["n_strings"] == 4 * 7 and summary["n_encoded"] == 28 and summary["n_cached"] == 0
    with np.load(out) as z:
        assert sorted(z.files) == ["names", "parts"]
        names, parts = z["names"], z["parts"]
    assert names.shape == (4, 256) and parts.shape == (6, 4, 256)
    assert names.dtype == parts.dtype == np.float32
    meta = json.loads(meta_path.read_text())
    assert meta["encoder"]["name"] == "clip:ViT-S-32-alt"
    assert meta["encoder"]["weights_sha256"] == small.identity["weights_sha256"]
    assert meta["text_form"] == "name_part" and meta["parts"] == list(part_names(6)) and meta["classes"] == CLASSES
    assert meta["npz"]["sha256"] == sha256_file(out)
    texts = _texts()
    for k, p in enumerate(part_names(6)):
        for c_i, c in enumerate(CLASSES):
            rec = meta["strings"]["parts"][p][c_i]
            assert rec["text"] == f"{c}, {PART_LABELS[p]}: {texts[c][p]}"
            assert rec["sha256"] == sha256_text(rec["text"]) and rec["truncated"] is False
    assert [r["text"] for r in meta["strings"]["names"]] == CLASSES
    # rows are the encodings of exactly those strings (not normalised: encode_text output)
    direct = small.encode([CLASSES[2], meta["strings"]["parts"]["foot"][1]["text"]])
    np.testing.assert_allclose(names[2], direct[0], atol=1e-5)
    np.testing.assert_allclose(parts[5, 1], direct[1], atol=1e-5)
    loaded_names, loaded_parts, loaded_meta = load_embeddings(out)
    np.testing.assert_array_equal(loaded_parts, parts)
    assert loaded_meta["dim"] == 256


def test_edit_one_description_reencodes_one_string(tmp_path, small):
    cache = tmp_path / "cache"
    out = tmp_path / "emb" / "e.npz"
    desc = write_descriptions(tmp_path / "d.json")
    first = Counting(small)
    embed(desc, SMALL, "name_part", out, cache, progress=False, encoder=first)
    assert len(first.seen) == 28
    before = out.read_bytes()

    again = Counting(small)
    summary = embed(desc, SMALL, "name_part", out, cache, progress=False, encoder=again)
    assert again.seen == [] and summary["n_cached"] == 28
    assert out.read_bytes() == before  # byte-identical output when nothing changed

    texts = _texts()
    texts["eat meal"]["hand"] = "holds a spoon and lifts food to the mouth"
    write_descriptions(desc, texts)
    edited = Counting(small)
    summary = embed(desc, SMALL, "name_part", out, cache, progress=False, encoder=edited)
    assert edited.seen == ["eat meal, Hand: holds a spoon and lifts food to the mouth"]
    assert summary["n_encoded"] == 1
    with np.load(out) as z:
        new_parts = z["parts"]
    np.testing.assert_allclose(new_parts[1, 1], small.encode(edited.seen)[0], atol=1e-5)


def test_fully_cached_rerun_never_loads_the_model(tmp_path, small):
    weights = tmp_path / "tower.pt"
    torch.save(small.model.state_dict(), weights)
    cfg = {"encoder": "clip:ViT-S-32-alt", "weights": str(weights), "quick_gelu": small.quick_gelu}
    desc = write_descriptions(tmp_path / "d.json")
    out = tmp_path / "e.npz"
    embed(desc, cfg, "description", out, tmp_path / "cache", progress=False)
    built = []
    real_build = enc_mod.ClipTextEncoder._build_tower
    original = enc_mod.ClipTextEncoder.model

    def spy(self):
        built.append(1)
        return original.fget(self)

    try:
        enc_mod.ClipTextEncoder.model = property(spy)
        enc_mod.ClipTextEncoder._build_tower = lambda *a, **k: built.append(2) or real_build(*a, **k)
        summary = embed(desc, cfg, "description", out, tmp_path / "cache", progress=False)
    finally:
        enc_mod.ClipTextEncoder.model = original
        enc_mod.ClipTextEncoder._build_tower = real_build
    assert built == [] and summary["n_encoded"] == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["encoder"]["weights_sha256"] == sha256_file(weights)
    # description form: the descriptions alone
    assert meta["strings"]["parts"]["head"][0]["text"] == "the head moves the way it does to drink water"


def test_interrupted_run_keeps_finished_batches(tmp_path, small):
    desc = write_descriptions(tmp_path / "d.json")

    class Breaks(Counting):
        def encode(self, texts, batch_size=None):
            if self.seen:
                raise KeyboardInterrupt
            return super().encode(texts, batch_size)

    breaking = Breaks(small)
    with pytest.raises(KeyboardInterrupt):
        embed(desc, SMALL, "name_part", tmp_path / "e.npz", tmp_path / "cache", batch_size=10, progress=False,
              encoder=breaking)
    assert not (tmp_path / "e.npz").exists()
    cached = EmbeddingCache(tmp_path / "cache", small.identity, small.dim).load()
    assert len(cached) == 10  # the first batch survived
    resumed = Counting(small)
    embed(desc, SMALL, "name_part", tmp_path / "e.npz", tmp_path / "cache", batch_size=10, progress=False,
          encoder=resumed)
    assert len(resumed.seen) == 18 and not set(resumed.seen) & set(breaking.seen)


def test_too_long_description_error_and_truncate(tmp_path, small):
    texts = _texts()
    texts["kicking something"]["foot"] = "swings " * 80
    desc = write_descriptions(tmp_path / "d.json", texts)
    with pytest.raises(InputFormatError) as info:
        embed(desc, SMALL, "name_part", tmp_path / "e.npz", tmp_path / "cache", progress=False)
    msg = str(info.value)
    assert str(desc) in msg and "descriptions['kicking something']['foot']" in msg and "87 tokens" in msg
    assert "77-token limit of clip:ViT-S-32-alt" in msg and "embed.truncate: truncate" in msg
    lines = desc.read_text().splitlines()
    assert lines[info.value.line - 1].strip().startswith('"foot": "swings swings')
    assert not (tmp_path / "e.npz").exists()

    summary = embed(desc, dict(SMALL, truncate="truncate"), "name_part", tmp_path / "e.npz", tmp_path / "cache",
                    progress=False)
    assert summary["n_truncated"] == 1
    meta = json.loads((tmp_path / "e.json").read_text())
    rec = meta["strings"]["parts"]["foot"][2]
    assert rec["truncated"] is True and rec["n_tokens"] == 87 and meta["truncate"] == "truncate"
    # the cached long string must not slip through a later run in error mode
    with pytest.raises(InputFormatError, match="87 tokens"):
        embed(desc, SMALL, "name_part", tmp_path / "e.npz", tmp_path / "cache", progress=False)


@pytest.mark.parametrize("mutate, pattern", [
    (lambda o: o["descriptions"]["hopping"].pop("leg"), r"descriptions\['hopping'\]\['leg'\]: missing"),
    (lambda o: o["descriptions"]["hopping"].update(leg=""), r"descriptions\['hopping'\]\['leg'\]: expected a non"),
    (lambda o: o["descriptions"]["hopping"].update(tail="x"), r"descriptions\['hopping'\]\['tail'\]"),
    (lambda o: o.update(partition=5), r"key partition: expected 2, 4 or 6"),
    (lambda o: o.update(parts=["head"]), r"key parts: expected the 6 parts"),
    (lambda o: o["descriptions"].pop("eat meal"), r"descriptions\['eat meal'\]: missing"),
    (lambda o: o.pop("classes"), r"missing key 'classes'"),
])
def test_bad_descriptions_name_the_key(tmp_path, mutate, pattern):
    path = write_descriptions(tmp_path / "d.json")
    obj = json.loads(path.read_text())
    mutate(obj)
    path.write_text(canonical_json(obj))
    with pytest.raises(InputFormatError, match=pattern) as info:
        read_descriptions(path)
    assert str(path) in str(info.value)


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{\n  "dataset": "ntu60",\n  "partition": 6,,\n}\n')
    with pytest.raises(InputFormatError) as info:
        read_descriptions(path)
    assert info.value.line == 3 and str(path) in str(info.value)


def test_four_and_two_part_partitions(tmp_path, small):
    for partition in (4, 2):
        desc = write_descriptions(tmp_path / f"d{partition}.json", _texts(partition), partition=partition)
        out = tmp_path / f"e{partition}.npz"
        embed(desc, SMALL, "name_part", out, tmp_path / "cache", progress=False, encoder=small)
        names, parts, meta = load_embeddings(out)
        assert parts.shape == (partition, 4, 256)
        label = PART_LABELS[part_names(partition)[0]]
        assert meta["strings"]["parts"][part_names(partition)[0]][0]["text"].startswith(f"drink water, {label}: ")


def test_cache_shards_compaction_and_damage(tmp_path):
    ident = {"name": "clip:test", "weights_sha256": "f" * 64}
    cache = EmbeddingCache(tmp_path, ident, 3)
    for i in range(5):
        cache.add([f"s{i}"], np.full((1, 3), i, np.float32), [i + 2])
    assert len(cache.shards()) == 5
    assert cache.compact(max_shards=3) and len(cache.shards()) == 1
    table = cache.load()
    assert sorted(table) == sorted(sha256_text(f"s{i}") for i in range(5))
    np.testing.assert_array_equal(table[sha256_text("s4")][0], [4, 4, 4])
    assert table[sha256_text("s4")][1] == 6
    other = EmbeddingCache(tmp_path, dict(ident, weights_sha256="e" * 64), 3)
    assert other.dir != cache.dir and other.load() == {}
    cache.shards()[0].write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(StarReproError, match=r"shard-.*\.npz: damaged cache shard.*delete"):
        cache.load()


def test_load_embeddings_detects_a_stale_pair(tmp_path, small):
    desc = write_descriptions(tmp_path / "d.json")
    out = tmp_path / "e.npz"
    embed(desc, SMALL, "name_part", out, tmp_path / "cache", progress=False, encoder=small)
    with np.load(out) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["names"] = arrays["names"] + 1
    np.savez(out, **arrays)
    with pytest.raises(StarReproError, match="sha256 differs"):
        load_embeddings(out)


def test_embed_from_params_validates_keys(tmp_path):
    desc = write_descriptions(tmp_path / "d.json")
    with pytest.raises(StarReproError, match=r"embed\.text_fromm: unknown key"):
        embed_from_params({"encoder": "sbert:all-MiniLM-L6-v2", "text_fromm": "x"}, desc, tmp_path / "e.npz",
                          tmp_path / "c")
    with pytest.raises(StarReproError, match=r"embed\.batch_size"):
        embed_from_params({"encoder": "clip:ViT-S-32-alt", "weights": "random", "batch_size": 0}, desc,
                          tmp_path / "e.npz", tmp_path / "c")


def test_minilm_demo_path(tmp_path):
    """The demo default end to end: params section -> npz, offline, then a rerun that loads no model."""
    section = {"encoder": "sbert:all-MiniLM-L6-v2", "text_form": "name_part", "truncate": "error",
               "batch_size": 16, "device": "cpu"}
    desc = write_descriptions(tmp_path / "d.json")
    out = tmp_path / "ntu60_6part_sbert-all-MiniLM-L6-v2.npz"
    summary = embed_from_params(section, desc, out, tmp_path / "cache", progress=False)
    assert summary["n_encoded"] == 28
    names, parts, meta = load_embeddings(out)
    assert names.shape == (4, 384) and parts.shape == (6, 4, 384)
    np.testing.assert_allclose(np.linalg.norm(names, axis=1), 1.0, atol=1e-5)
    sims = names @ names.T  # drink water vs eat meal closer than drink water vs kicking something
    assert sims[0, 1] > sims[0, 2]
    original = enc_mod.SbertEncoder.model
    try:
        enc_mod.SbertEncoder.model = property(lambda self: pytest.fail("model loaded on a fully cached rerun"))
        assert embed_from_params(section, desc, out, tmp_path / "cache", progress=False)["n_encoded"] == 0
    finally:
        enc_mod.SbertEncoder.model = original


def test_bench_encoders_reports_real_rates():
    rows = bench_encoders(6, encoders=[SMALL], device="cpu", batch_size=4)
    assert len(rows) == 1
    row = rows[0]
    assert row["encoder"] == "clip:ViT-S-32-alt" and row["n_strings"] == 6 and row["dim"] == 256
    assert row["strings_per_s"] > 0 and row["encode_s"] > 0 and row["peak_rss_mib"] > 0
    assert row["weights"] == "random-init(seed=5)"
    assert "strings_per_s" in format_bench(rows).splitlines()[0]
    strings = bench_strings(50)
    assert len(set(strings)) == 50 and bench_strings(50) == strings


def test_vectors_do_not_depend_on_the_cache_history_at_batch_size_1(tmp_path, small):
    """One string per forward pass: the npz is bitwise the same whether the shared cache was empty or already held
    some of the strings (encoded beside other strings). Batched encoding would differ in the last bits."""
    desc = write_descriptions(tmp_path / "d.json")
    fresh = tmp_path / "fresh.npz"
    embed(desc, SMALL, "name_part", fresh, tmp_path / "cache_a", batch_size=1, progress=False, encoder=small)
    # another job first filled the shared cache with an overlapping set (some of these strings, some others)
    texts = _texts()
    texts["eat meal"]["hand"] = "another text encoded alongside"
    other = write_descriptions(tmp_path / "other.json", texts)
    embed(other, SMALL, "name_part", tmp_path / "other.npz", tmp_path / "cache_b", batch_size=1, progress=False,
          encoder=small)
    after = tmp_path / "after.npz"
    summary = embed(desc, SMALL, "name_part", after, tmp_path / "cache_b", batch_size=1, progress=False,
                    encoder=small)
    assert summary["n_cached"] > 0 and summary["n_encoded"] == 1
    with np.load(fresh) as a, np.load(after) as b:
        np.testing.assert_array_equal(a["names"], b["names"])
        np.testing.assert_array_equal(a["parts"], b["parts"])
