"""The `embed` stage: class-name and per-part text embeddings from a descriptions file (docs/formats.md).

Text forms (`embed.text_form`):
- `name_part` — what the authors' code encodes (STAR_SPEC §8.2): `name + ',' + field` with field = " Head: <text>",
  i.e. f"{name}, {PART_LABELS[part]}: {description}" ("drink water, Head: tips back ...");
- `description` — the description alone, as the paper words it.
Class names are encoded as they are. Strings are encoded once per (encoder identity, exact string): an edit to one
description re-encodes that one string, and a rerun with everything cached never loads a model.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from star_repro.errors import InputFormatError, StarReproError
from star_repro.io import sha256_file, sha256_text, write_json_atomic
from star_repro.skeleton import PART_LABELS, part_names
from star_repro.text.embcache import EmbeddingCache, write_npz_atomic
from star_repro.text.encoders import (
    ENCODER_CFG_KEYS, Encoder, TextTooLongError, encoder_slug, make_encoder, resolve_device, validate_encoder_cfg,
)

log = logging.getLogger(__name__)

TEXT_FORMS = ("name_part", "description")
EMBED_PARAM_KEYS = ENCODER_CFG_KEYS + ("text_form", "batch_size", "device")
FLUSH_EVERY = 1024  # strings per cache shard while encoding: an interrupted run loses at most this many


@dataclass(frozen=True)
class Descriptions:
    file: Path
    sha256: str
    dataset: str
    partition: int
    parts: tuple[str, ...]  # partition order (star_repro.skeleton)
    classes: tuple[str, ...]  # label order
    texts: dict[str, dict[str, str]]
    cache: Any
    raw_text: str

    def line_of(self, cls: str, part: str | None = None) -> int | None:
        """1-based line of a class (or of one of its parts) in the file, for error messages."""
        lines = self.raw_text.splitlines()
        needle = json.dumps(cls, ensure_ascii=False) + ":"
        start = next((i for i, ln in enumerate(lines) if ln.strip().startswith(needle)
                      and ln.strip().endswith("{")), None)
        if start is None or part is None:
            return None if start is None else start + 1
        pneedle = json.dumps(part, ensure_ascii=False) + ":"
        for i in range(start + 1, len(lines)):
            if lines[i].strip().startswith(pneedle):
                return i + 1
            if lines[i].strip().startswith("}"):
                break
        return start + 1


def read_descriptions(path: str | Path) -> Descriptions:
    """Read and check `data/descriptions/{ds}_{P}part.json` (written by `describe`)."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StarReproError(f"{path}: descriptions file not found (it is written by `star-repro describe`)") \
            from None
    except UnicodeDecodeError as exc:
        raise InputFormatError(str(path), None, f"not UTF-8 text ({exc})") from None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputFormatError(str(path), exc.lineno, f"invalid JSON: {exc.msg}") from None

    def bad(key: str, expected: str, got: Any, line: int | None = None) -> InputFormatError:
        return InputFormatError(str(path), line, f"key {key}: expected {expected}, got {got!r}"[:400])

    if not isinstance(obj, dict):
        raise bad("(top level)", "an object", type(obj).__name__, 1)
    for key in ("dataset", "partition", "parts", "classes", "descriptions"):
        if key not in obj:
            raise InputFormatError(str(path), None, f"missing key {key!r} (expected dataset, partition, parts, "
                                                    "classes, descriptions, cache; docs/formats.md)")
    dataset, partition, parts, classes, texts = (obj[k] for k in
                                                 ("dataset", "partition", "parts", "classes", "descriptions"))
    if not isinstance(dataset, str) or not dataset:
        raise bad("dataset", "a dataset key such as ntu60", dataset)
    if isinstance(partition, bool) or not isinstance(partition, int) or partition not in (2, 4, 6):
        raise bad("partition", "2, 4 or 6 (parts)", partition)
    order = part_names(partition)
    if not isinstance(parts, list) or sorted(map(str, parts)) != sorted(order) or len(parts) != len(order):
        raise bad("parts", f"the {partition} parts {list(order)}", parts)
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise bad("classes", "a non-empty list of class names in label order", classes)
    seen: set[str] = set()
    for i, c in enumerate(classes):
        if c in seen:
            raise bad(f"classes[{i}]", "unique class names", c)
        seen.add(c)
    if not isinstance(texts, dict):
        raise bad("descriptions", "an object {class: {part: text}}", type(texts).__name__)
    desc = Descriptions(path, sha256_file(path), dataset, partition, tuple(order),
                        tuple(classes), {}, obj.get("cache"), raw)
    extra = [c for c in texts if c not in seen]
    if extra:
        raise bad(f"descriptions[{extra[0]!r}]", "only classes listed in `classes`", "an unlisted class",
                  desc.line_of(extra[0]))
    for c in classes:
        if c not in texts:
            raise InputFormatError(str(path), None, f"key descriptions[{c!r}]: missing (every class in `classes` "
                                                    "needs descriptions; run `star-repro describe`)")
        entry = texts[c]
        if not isinstance(entry, dict):
            raise bad(f"descriptions[{c!r}]", "an object {part: text}", type(entry).__name__, desc.line_of(c))
        for p in entry:
            if p not in order:
                raise bad(f"descriptions[{c!r}][{p!r}]", f"only the parts {list(order)}", "an unknown part",
                          desc.line_of(c, p))
        for p in order:
            if p not in entry:
                raise InputFormatError(str(path), desc.line_of(c), f"key descriptions[{c!r}][{p!r}]: missing")
            t = entry[p]
            if not isinstance(t, str) or not t.strip():
                raise bad(f"descriptions[{c!r}][{p!r}]", "a non-empty string", t, desc.line_of(c, p))
        desc.texts[c] = {p: entry[p] for p in order}
    return desc


def part_text(name: str, part: str, description: str, text_form: str) -> str:
    """The exact string encoded for one (class, part)."""
    if text_form == "name_part":
        return f"{name}, {PART_LABELS[part]}: {description}"
    if text_form == "description":
        return description
    raise StarReproError(f"embed.text_form: expected one of {', '.join(TEXT_FORMS)}, got {text_form!r}")


def build_strings(desc: Descriptions, text_form: str) -> tuple[list[str], list[list[str]]]:
    """Class-name strings (label order) and part strings `[part][class]` (partition order)."""
    names = list(desc.classes)
    parts = [[part_text(c, p, desc.texts[c][p], text_form) for c in desc.classes] for p in desc.parts]
    return names, parts


def embedding_paths(dataset: str, partition: int, encoder_name: str,
                    root: str | Path = "data/embeddings") -> tuple[Path, Path]:
    """`data/embeddings/{ds}_{P}part_{encoder_slug}.npz` and its `.json` (docs/formats.md)."""
    npz = Path(root) / f"{dataset}_{partition}part_{encoder_slug(encoder_name)}.npz"
    return npz, npz.with_suffix(".json")


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="str", file=sys.stderr, disable=None if enabled else True,
                dynamic_ncols=True)


def embed(descriptions_json: str | Path, encoder_cfg: dict[str, Any] | str, text_form: str, out_npz: str | Path,
          cache_dir: str | Path, device: str = "cpu", batch_size: int = 1, progress: bool = True, *,
          encoder: Encoder | None = None) -> dict[str, Any]:
    """Write the embedding npz + json for one descriptions file; return counts and timing for logs/metrics.

    `encoder` (optional) replaces the one `encoder_cfg` names — tests use it to count encoder calls.
    """
    t_start = time.perf_counter()
    if text_form not in TEXT_FORMS:
        raise StarReproError(f"embed.text_form: expected one of {', '.join(TEXT_FORMS)}, got {text_form!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise StarReproError(f"embed.batch_size: expected a positive integer, got {batch_size!r}")
    cfg = validate_encoder_cfg(encoder_cfg)
    out_npz, cache_dir = Path(out_npz), Path(cache_dir)
    out_json = out_npz.with_suffix(".json")
    desc = read_descriptions(descriptions_json)
    names, parts = build_strings(desc, text_form)
    if encoder is None:
        encoder = make_encoder(cfg, device=resolve_device(device), batch_size=batch_size,
                               hash_cache=cache_dir / "weights-sha256.json")
    truncate = encoder.truncate

    # where each unique string is used, for error messages
    where: dict[str, list[tuple[str, str | None]]] = {}
    for c in names:
        where.setdefault(c, []).append((c, None))
    for k, p in enumerate(desc.parts):
        for ci, c in enumerate(desc.classes):
            where.setdefault(parts[k][ci], []).append((c, p))
    unique = list(where)

    cache = EmbeddingCache(cache_dir, encoder.identity, encoder.dim)
    table = cache.load()
    keys = {s: sha256_text(s) for s in unique}
    missing = [s for s in unique if keys[s] not in table]
    counts = {s: table[keys[s]][1] for s in unique if keys[s] in table}
    if missing:
        counts.update(zip(missing, encoder.count_tokens(missing)))
    too_long = [s for s in unique if counts[s] > encoder.max_tokens]
    if too_long and truncate == "error":
        cls, part = where[too_long[0]][0]
        lines = []
        for s in too_long[:5]:
            c, p = where[s][0]
            key = f"descriptions[{c!r}][{p!r}]" if p else f"classes[{desc.classes.index(c)}] ({c!r})"
            lines.append(f"{key}: {counts[s]} tokens: {s[:70]!r}{'...' if len(s) > 70 else ''}")
        raise InputFormatError(
            str(desc.file), desc.line_of(cls, part),
            f"{len(too_long)} string(s) exceed the {encoder.max_tokens}-token limit of {encoder.name} "
            f"(counts include the start/end tokens): " + "; ".join(lines)
            + (f"; and {len(too_long) - 5} more" if len(too_long) > 5 else "")
            + f". Shorten the description (in the description cache{_cache_hint(desc)}) or set "
              f"embed.truncate: truncate (strings are then cut to {encoder.max_tokens} tokens, the end token last)")

    n_encoded = 0
    encode_s = 0.0
    if missing:
        log.info("embed: %d of %d unique strings not cached; encoding with %s on %s", len(missing), len(unique),
                 encoder.name, getattr(encoder, "device", "?"))
        pending: list[str] = []
        pending_vecs: list[np.ndarray] = []
        bar = _progress(len(missing), f"embed {encoder.name}", progress)
        try:
            for start in range(0, len(missing), batch_size):
                batch = missing[start:start + batch_size]
                t0 = time.perf_counter()
                try:
                    vecs = encoder.encode(batch, batch_size=batch_size)
                except TextTooLongError as exc:  # counted above; a mismatch here is a bug, reported plainly
                    raise StarReproError(f"{desc.file}: {exc}") from None
                encode_s += time.perf_counter() - t0
                vecs = np.asarray(vecs)
                if vecs.shape != (len(batch), encoder.dim) or not np.all(np.isfinite(vecs)):
                    raise StarReproError(f"{encoder.name} returned {vecs.shape} {vecs.dtype} for {len(batch)} "
                                         f"strings (expected ({len(batch)}, {encoder.dim}) finite values)")
                for s, v in zip(batch, vecs.astype(np.float32)):
                    table[keys[s]] = (v, counts[s])
                pending += batch
                pending_vecs.append(vecs.astype(np.float32))
                n_encoded += len(batch)
                bar.update(len(batch))
                if len(pending) >= FLUSH_EVERY:
                    cache.add(pending, np.concatenate(pending_vecs), [counts[s] for s in pending])
                    pending, pending_vecs = [], []
        finally:
            bar.close()
            if pending:  # keep finished work even when interrupted
                cache.add(pending, np.concatenate(pending_vecs), [counts[s] for s in pending])
        cache.compact()

    def vec(s: str) -> np.ndarray:
        return table[keys[s]][0]

    name_arr = np.stack([vec(s) for s in names]).astype(np.float32)
    part_arr = np.stack([np.stack([vec(s) for s in row]) for row in parts]).astype(np.float32)
    write_npz_atomic(out_npz, {"names": name_arr, "parts": part_arr})

    def record(s: str) -> dict[str, Any]:
        return {"text": s, "sha256": keys[s], "n_tokens": counts[s], "truncated": counts[s] > encoder.max_tokens}

    meta = {
        "dataset": desc.dataset,
        "partition": desc.partition,
        "parts": list(desc.parts),
        "classes": list(desc.classes),
        "descriptions": {"file": str(desc.file), "sha256": desc.sha256, "cache": desc.cache},
        "encoder": dict(getattr(encoder, "info", encoder.identity)),
        "dim": int(encoder.dim),
        "text_form": text_form,
        "truncate": truncate,
        "strings": {"names": [record(s) for s in names],
                    "parts": {p: [record(s) for s in parts[k]] for k, p in enumerate(desc.parts)}},
        "npz": {"file": str(out_npz), "sha256": sha256_file(out_npz), "names": list(name_arr.shape),
                "parts": list(part_arr.shape), "dtype": "float32"},
    }
    write_json_atomic(out_json, meta)
    total_s = time.perf_counter() - t_start
    summary = {
        "out_npz": str(out_npz), "out_json": str(out_json), "encoder": dict(encoder.identity),
        "n_classes": len(names), "n_parts": len(desc.parts), "n_strings": len(names) * (1 + len(desc.parts)),
        "n_unique": len(unique), "n_cached": len(unique) - n_encoded, "n_encoded": n_encoded,
        "n_truncated": len(too_long), "encode_seconds": round(encode_s, 3), "seconds": round(total_s, 3),
        "strings_per_s": round(n_encoded / encode_s, 1) if encode_s > 0 else None,
    }
    log.info("embed: wrote %s (%d classes x %d parts, D=%d); %d encoded, %d from cache", out_npz, len(names),
             len(desc.parts), encoder.dim, n_encoded, summary["n_cached"])
    return summary


def _cache_hint(desc: Descriptions) -> str:
    if isinstance(desc.cache, dict) and desc.cache.get("file"):
        return f" {desc.cache['file']}"
    return ""


def embed_from_params(section: dict[str, Any], descriptions_json: str | Path, out_npz: str | Path,
                      cache_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """`embed` driven by the params.yaml `embed:` section (keys EMBED_PARAM_KEYS); errors name `embed.<key>`."""
    if not isinstance(section, dict):
        raise StarReproError(f"embed: expected a mapping in params.yaml, got {type(section).__name__}")
    unknown = sorted(set(section) - set(EMBED_PARAM_KEYS))
    if unknown:
        raise StarReproError(f"embed.{unknown[0]}: unknown key (expected some of {', '.join(EMBED_PARAM_KEYS)})")
    enc = {k: section[k] for k in ENCODER_CFG_KEYS if k in section}
    return embed(descriptions_json, enc, section.get("text_form", "name_part"), out_npz, cache_dir,
                 device=section.get("device", "auto"), batch_size=section.get("batch_size", 1), progress=progress)


def load_embeddings(npz_path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read an embedding pair for training: (names (C, D), parts (K, C, D), json metadata), checked together."""
    npz_path = Path(npz_path)
    json_path = npz_path.with_suffix(".json")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StarReproError(f"{json_path}: missing (written with {npz_path} by `star-repro embed`)") from None
    except json.JSONDecodeError as exc:
        raise InputFormatError(str(json_path), exc.lineno, f"invalid JSON: {exc.msg}") from None
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            names, parts = z["names"], z["parts"]
    except FileNotFoundError:
        raise StarReproError(f"{npz_path}: missing (run `star-repro embed`)") from None
    except Exception as exc:  # noqa: BLE001
        raise StarReproError(f"{npz_path}: unreadable embeddings ({type(exc).__name__}: {exc})") from None
    recorded = (meta.get("npz") or {}).get("sha256")
    if recorded != sha256_file(npz_path):
        raise StarReproError(f"{npz_path}: does not match {json_path} (sha256 differs); rerun `star-repro embed`")
    c, k, d = len(meta["classes"]), len(meta["parts"]), int(meta["dim"])
    if names.shape != (c, d) or parts.shape != (k, c, d) or names.dtype != np.float32 or parts.dtype != np.float32:
        raise StarReproError(f"{npz_path}: arrays names {names.shape} {names.dtype}, parts {parts.shape} "
                             f"{parts.dtype}; expected float32 ({c}, {d}) and ({k}, {c}, {d})")
    return names, parts, meta


# ---------------------------------------------------------------------------------------------------- benchmark

_BENCH_WORDS = ("slowly", "quickly", "forward", "backward", "upward", "down", "toward the chest", "to the side",
                "bends", "straightens", "lifts", "lowers", "turns", "tilts", "holds", "swings", "steadily",
                "a little", "at the elbow", "with the palm open", "while the body stays upright", "twice",
                "near the face", "away from the body", "in a small circle", "and then returns")
DEFAULT_BENCH_ENCODERS: tuple[dict[str, Any], ...] = (
    {"encoder": "sbert:all-MiniLM-L6-v2"},
    {"encoder": "clip:ViT-B-32", "weights": "random"},
    {"encoder": "clip:ViT-L-14-336", "weights": "random"},
)


def bench_strings(n: int, seed: int = 0) -> list[str]:
    """Deterministic, distinct strings shaped like the `name_part` texts (about 15-30 CLIP tokens)."""
    from star_repro.data.classes import NTU120_CLASSES

    rng = np.random.default_rng(seed)
    labels = list(PART_LABELS.values())
    out = []
    for i in range(n):
        words = " ".join(_BENCH_WORDS[j] for j in rng.integers(0, len(_BENCH_WORDS), size=int(rng.integers(5, 10))))
        out.append(f"{NTU120_CLASSES[i % len(NTU120_CLASSES)]}, {labels[i % len(labels)]}: {words} ({i})")
    return out


def bench_encoders(n_strings: int = 512, encoders: Sequence[dict[str, Any] | str] | None = None,
                   device: str = "cpu", batch_size: int = 64, threads: int | None = None) -> list[dict[str, Any]]:
    """Strings per second of each encoder (no cache), with load time and peak memory.

    CLIP towers default to random weights: throughput depends on the architecture, not the weight values.
    `threads` sets torch's intra-op threads for the run (None: leave torch's default).
    """
    import torch

    dev = resolve_device(device)
    texts = bench_strings(n_strings)
    rows = []
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        for spec in encoders or DEFAULT_BENCH_ENCODERS:
            rows.append(_bench_one(spec, texts, dev, batch_size))
    finally:
        torch.set_num_threads(before)
    return rows


def _bench_one(spec: dict[str, Any] | str, texts: list[str], dev: str, batch_size: int) -> dict[str, Any]:
    import gc
    import resource

    import torch

    cfg = validate_encoder_cfg(spec)
    t0 = time.perf_counter()
    enc = make_encoder(cfg, device=dev, batch_size=batch_size)
    enc.encode(texts[:1])  # loads the model and warms up
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    load_s = time.perf_counter() - t0
    ntok = enc.count_tokens(texts)
    t1 = time.perf_counter()
    vecs = enc.encode(texts, batch_size=batch_size)
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    encode_s = time.perf_counter() - t1
    row = {
        "encoder": enc.name, "weights": Path(str(enc.info.get("weights_file"))).name, "device": dev,
        "threads": torch.get_num_threads(), "batch_size": batch_size, "n_strings": len(texts),
        "mean_tokens": round(float(np.mean(ntok)), 1), "dim": int(vecs.shape[1]), "load_s": round(load_s, 2),
        "encode_s": round(encode_s, 3), "strings_per_s": round(len(texts) / encode_s, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if dev.startswith("cuda"):
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    del enc, vecs
    gc.collect()
    if dev.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def format_bench(rows: list[dict[str, Any]]) -> str:
    """A plain table for the terminal (peak RSS is the process's high-water mark so far)."""
    cols = ["encoder", "weights", "device", "threads", "batch_size", "n_strings", "mean_tokens", "load_s", "encode_s",
            "strings_per_s", "peak_rss_mib"] + (["peak_gpu_mib"] if any("peak_gpu_mib" in r for r in rows) else [])
    table = [cols] + [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in table)
