"""Training and evaluating the five baselines (ReViSE, JPoSE, CADA-VAE, SynSE, SMIE) on STAR's own inputs
(BASELINES_SPEC §7), writing the same run outputs as STAR so that the tables treat every method alike.

- **Visual**: the pooled feature of the split's own pretrained Shift-GCN (frozen, eval mode), for the protocol's
  known-class training samples (through the leak gate `splits.training_indices`) and its test samples, with the
  backbone's deterministic evaluation feeder (its window and centre crop from `config.json`; PKU clips as stored).
  Features are cached by content (backbone sha256, dataset, protocol, sample list, feeder), so retraining with other
  hyper-parameters, or the evaluation after training, does not run the backbone again.
- **Text**: class names (and, for SMIE `text: descriptions`, the mean of the part descriptions) from the
  experiment's embeddings; JPoSE and SynSE also get the verb and noun phrases of `data/verb_noun.yaml`, encoded with
  the very encoder named in the embeddings' `.json` sidecar through the shared string cache (computed once).
- **Selection** (`selection`: last | val | test) and **γ** (`gamma`: a number, {dataset: number}, `val` or `test`;
  default the paper's Table 1 value) are recorded and labelled in every output.

Run-level keys read from the experiment's `baselines.<method>` section (everything else goes to the method):
`selection`, `gamma`, `gamma_grid`, `val_unknown`, `val_seen_fraction`, `feature_batch_size`, `smie_temporal`,
plus `seed`, `partition` and `profile` injected by the stage.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from star_repro.errors import InputFormatError, StarReproError
from star_repro.io import (canonical_json, save_npy_atomic, save_torch_atomic, sha256_file, sha256_text, tsv_text,
                          write_json_atomic, write_text_atomic)
from star_repro.provenance import file_digest, run_inputs
from star_repro.text.yaml_lines import load_yaml_unique
from star_repro.training.feature_cache import cached_features, dataset_signature, shift_formula_key

#: Keys of a `baselines.<method>` section that this module reads (the rest configure the method itself).
RUN_KEYS = ("selection", "gamma", "gamma_grid", "val_unknown", "val_seen_fraction", "feature_batch_size",
            "smie_temporal")
INJECTED_KEYS = ("seed", "partition", "profile")
#: Keys that only change the evaluation, not the trained model.
EVAL_ONLY_KEYS = ("gamma", "gamma_grid")
SELECTION_OUTPUT = {"last": "last", "val": "val", "test": "test-selected"}
#: SynSE's validation-unknown lists (`rv{k}_0`, BASELINES_SPEC §1.2), keyed by (class count, unknown set).
SYNSE_VAL_UNKNOWN: dict[tuple[int, frozenset], list[int]] = {
    (60, frozenset({10, 11, 19, 26, 56})): [16, 21, 25, 31, 48],
    (60, frozenset({3, 5, 9, 12, 15, 40, 42, 47, 51, 56, 58, 59})): [4, 8, 10, 13, 17, 22, 30, 33, 39, 46, 50, 54],
    (120, frozenset({4, 13, 37, 43, 49, 65, 88, 95, 99, 106})): [5, 10, 32, 61, 72, 74, 76, 77, 83, 96],
    (120, frozenset({5, 9, 11, 16, 18, 20, 22, 29, 35, 39, 45, 49, 59, 68, 70, 81, 84, 87, 93, 94, 104, 113, 114,
                     119})): [1, 3, 4, 10, 17, 19, 27, 47, 48, 53, 58, 63, 66, 79, 83, 86, 89, 92, 97, 98, 100, 103,
                              105, 108],
}
#: Seed of the validation carve-out where SynSE published no list (PKU, the random splits): the seed every
#: SynSE-repo script uses (BASELINES_SPEC §1.4), fixed so that all methods and seeds share one validation split.
VAL_CARVE_SEED = 5
FEATURE_FORMAT = "star-repro-baseline-features/1"
CHECKPOINT_TEXT_KEYS = ("names", "verbs", "nouns", "descriptions", "verb_ids", "noun_ids")
#: What s(v, a) is for each method (docs/baselines.md), recorded in metrics.json.
SCORE_KIND = {
    "revise": "dot product in the 50-d tanh space",
    "jpose": "cosine in the joint space",
    "cada_vae": "softmax probability of the all-class latent classifier",
    "synse": "softmax probability of the all-class latent classifier",
    "smie": "log sigmoid of the critic T(v, l_a)",
}
PAPER_NUMBERS = Path(__file__).resolve().parents[1] / "reporting" / "paper_numbers.yaml"


# ---------------------------------------------------------------------------------------------------- settings
@dataclass
class RunSettings:
    method: str
    dataset: str
    seed: int
    partition: int | None
    profile: str | None
    selection: str
    gamma: float | str               # a number, "val" or "test"
    gamma_from: str                  # where a numeric γ came from (params or paper Table 1)
    gamma_grid: list[float]
    val_unknown: list[int] | None    # explicit list from params (None: SynSE's list or the seeded carve-out)
    val_seen_fraction: float
    feature_batch_size: int
    smie_temporal: list[int] | None  # [keep_low, keep_random] frames of the masked sequences (SMIE only)
    method_cfg: dict = field(default_factory=dict)   # what `fit` gets
    resolved: dict = field(default_factory=dict)     # the method's full resolved configuration


def _key(method: str, key: str) -> str:
    return f"baselines.{method}.{key}"


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def paper_gamma(dataset: str) -> float | None:
    """STAR Table 1's γ for a dataset (reporting/paper_numbers.yaml `table1.gamma`), None when absent."""
    import yaml

    try:
        data = load_yaml_unique(PAPER_NUMBERS.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StarReproError(f"{PAPER_NUMBERS}: unreadable ({exc})") from None
    value = ((data.get("table1") or {}).get("gamma") or {}).get(dataset)
    return float(value) if _is_num(value) else None


def resolve_settings(method: str, cfg: Mapping, dataset: str, split) -> RunSettings:
    """Split the experiment's section into run-level settings and the method's own configuration; check both.
    Errors name the params key."""
    from star_repro.models.baselines import BASELINES
    from star_repro.models.baselines.common import resolve_config

    if method not in BASELINES:
        raise StarReproError(f"experiment method {method!r}: expected star or one of {sorted(BASELINES)}")
    if not isinstance(cfg, Mapping):
        raise StarReproError(f"baselines.{method}: expected a mapping, got {type(cfg).__name__}")
    cfg = copy.deepcopy(dict(cfg))
    seed = cfg.pop("seed", None)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise StarReproError(f"{_key(method, 'seed')}: expected an integer >= 0 (injected by the stage), got {seed!r}")
    partition = cfg.pop("partition", None)
    if partition is not None and partition not in (2, 4, 6):
        raise StarReproError(f"{_key(method, 'partition')}: expected 2, 4 or 6, got {partition!r}")
    profile = cfg.pop("profile", None)

    selection = cfg.pop("selection", "last")
    if selection not in SELECTION_OUTPUT:
        raise StarReproError(f"{_key(method, 'selection')}: expected one of last, val, test, got {selection!r}")

    gamma = cfg.pop("gamma", None)
    gamma_from = "params"
    if gamma is None:
        gamma = paper_gamma(dataset)
        gamma_from = "paper Table 1"
        if gamma is None:
            raise StarReproError(f"{_key(method, 'gamma')}: the paper gives no γ for dataset {dataset!r}; set a "
                                 "number, val or test")
    elif isinstance(gamma, Mapping):
        if dataset not in gamma or not _is_num(gamma[dataset]) or gamma[dataset] < 0:
            raise StarReproError(f"{_key(method, 'gamma')}: no number >= 0 for dataset {dataset!r} in {dict(gamma)}")
        gamma = float(gamma[dataset])
    elif _is_num(gamma):
        if gamma < 0:
            raise StarReproError(f"{_key(method, 'gamma')}: expected a number >= 0, got {gamma!r}")
        gamma = float(gamma)
    elif gamma not in ("val", "test"):
        raise StarReproError(f"{_key(method, 'gamma')}: expected a number >= 0, {{dataset: number}}, val or test, "
                             f"got {gamma!r}")
    if gamma == "val" and selection != "val":
        raise StarReproError(f"{_key(method, 'gamma')}: val needs the validation phase of selection: val "
                             f"(selection is {selection!r})")

    from star_repro.metrics import DEFAULT_GAMMA_GRID

    grid = cfg.pop("gamma_grid", None)
    if grid is None:
        grid = list(DEFAULT_GAMMA_GRID)
    if not isinstance(grid, list) or not grid or not all(_is_num(g) and g >= 0 for g in grid):
        raise StarReproError(f"{_key(method, 'gamma_grid')}: expected a non-empty list of numbers >= 0, got {grid!r}")

    val_unknown = cfg.pop("val_unknown", None)
    if val_unknown is not None:
        if not isinstance(val_unknown, list) or not val_unknown or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in val_unknown):
            raise StarReproError(f"{_key(method, 'val_unknown')}: expected a list of class ids, got {val_unknown!r}")
        stray = [c for c in val_unknown if c not in set(split.known)]
        if stray:
            raise StarReproError(f"{_key(method, 'val_unknown')}: classes {stray} are not known classes of split "
                                 f"{split.name}")
    fraction = cfg.pop("val_seen_fraction", 0.2)
    if not _is_num(fraction) or not 0 < fraction < 1:
        raise StarReproError(f"{_key(method, 'val_seen_fraction')}: expected a number in (0, 1), got {fraction!r}")
    fbs = cfg.pop("feature_batch_size", 64)
    if not isinstance(fbs, int) or isinstance(fbs, bool) or fbs < 1:
        raise StarReproError(f"{_key(method, 'feature_batch_size')}: expected a positive integer, got {fbs!r}")
    temporal = cfg.pop("smie_temporal", None)
    if temporal is not None:
        if method != "smie":
            raise StarReproError(f"{_key(method, 'smie_temporal')}: only SMIE has a temporal constraint")
        if not (isinstance(temporal, list) and len(temporal) == 2 and all(
                isinstance(t, int) and not isinstance(t, bool) for t in temporal) and 0 < temporal[1] <= temporal[0]):
            raise StarReproError(f"{_key(method, 'smie_temporal')}: expected [keep_low, keep_random] with "
                                 f"0 < keep_random <= keep_low (SMIE: 35/20 of 50 frames; 45/26 of 64), "
                                 f"got {temporal!r}")
    resolved = resolve_config(BASELINES[method], cfg, split)
    return RunSettings(method=method, dataset=dataset, seed=seed, partition=partition, profile=profile,
                       selection=selection, gamma=gamma, gamma_from=gamma_from, gamma_grid=[float(g) for g in grid],
                       val_unknown=val_unknown, val_seen_fraction=float(fraction), feature_batch_size=fbs,
                       smie_temporal=temporal, method_cfg=cfg, resolved=resolved)


def validation_unknown(settings: RunSettings, split) -> tuple[list[int], str]:
    """The known classes that play the unknown ones in the validation phase, and where the list comes from."""
    if settings.val_unknown is not None:
        return list(settings.val_unknown), "params"
    key = (split.num_classes, frozenset(split.unknown))
    if key in SYNSE_VAL_UNKNOWN:
        return list(SYNSE_VAL_UNKNOWN[key]), "SynSE rv list (BASELINES_SPEC §1.2)"
    k = len(split.unknown)
    known = np.array(split.known)
    if len(known) < k + 2:
        raise StarReproError(f"selection val: split {split.name} has {len(known)} known classes, too few to carve "
                             f"{k} validation-unknown classes from them")
    picked = sorted(int(c) for c in np.random.RandomState(VAL_CARVE_SEED).choice(known, k, replace=False))
    return picked, f"carved from the known classes (numpy RandomState({VAL_CARVE_SEED}))"


# ---------------------------------------------------------------------------------------------------- helpers
def _threads(threads: int | None):
    from star_repro.training.star_train import torch_threads

    return torch_threads(threads)


def _tqdm(total: int, desc: str, progress: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=None if progress is None else not progress)


def _jsonable(obj):
    """Plain Python types only (numpy scalars and arrays converted), so `torch.load(weights_only=True)` and JSON
    both accept the record."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


_tsv = tsv_text


_save_npy = save_npy_atomic


def _class_names(dataset: str, num_classes: int) -> list[str]:
    from star_repro.data.classes import DATASET_CLASSES

    names = DATASET_CLASSES.get(dataset)
    if names is None or len(names) != num_classes:
        return [f"class_{k}" for k in range(num_classes)]
    return list(names)


# ---------------------------------------------------------------------------------------------------- data
@dataclass
class Samples:
    ds: Any
    dataset: str
    train_idx: np.ndarray
    test_idx: np.ndarray


def select_samples(processed_dir, protocol: str, split) -> Samples:
    """Known-class training samples (through the leak gate, re-checked) and all protocol test samples."""
    from star_repro.data.dataset import ProcessedDataset
    from star_repro.data.splits import assert_no_unknown, evaluation_indices, training_indices

    ds = ProcessedDataset(processed_dir)
    if len(ds.labels) and (ds.labels.min() < 0 or ds.labels.max() >= split.num_classes):
        raise StarReproError(f"{processed_dir}: labels {int(ds.labels.min())}..{int(ds.labels.max())} do not fit "
                             f"split {split.name} ({split.num_classes} classes)")
    prot = ds.protocol(protocol)
    train_idx = training_indices(ds.labels, prot["train"], split)
    assert_no_unknown(ds.labels[train_idx], split)
    if len(train_idx) == 0:
        raise StarReproError(f"{processed_dir}: protocol {protocol} has no training samples of known classes")
    test_idx = evaluation_indices(ds.labels, prot["test"], split, "gzsl")
    if len(test_idx) == 0:
        raise StarReproError(f"{processed_dir}: protocol {protocol} has no test samples")
    return Samples(ds, Path(processed_dir).name, np.asarray(train_idx, np.int64), np.asarray(test_idx, np.int64))


@dataclass
class Backbone:
    model: Any
    sha256: str
    window: int
    p_interval: list[float]
    passthrough: bool
    out_channels: int
    config: dict


def load_backbone(backbone_dir, split, device) -> Backbone:
    """The split's pretrained Shift-GCN, frozen in eval mode, with the evaluation feeder it was tested with."""
    from star_repro.training.star_train import load_backbone as load_frozen_backbone

    model_path = Path(backbone_dir) / "model.pt"
    cfg_path = Path(backbone_dir) / "config.json"
    model, conf = load_frozen_backbone(backbone_dir, split)  # the one place that checks the backbone's config
    train_cfg = conf.get("config")
    if not isinstance(train_cfg, dict) or not isinstance(train_cfg.get("window"), int):
        raise InputFormatError(cfg_path, None, "key 'config.window' missing or not an integer (the pretraining "
                                               "window the backbone expects)")
    p_interval = train_cfg.get("p_interval_test", [0.95])
    if not (isinstance(p_interval, list) and len(p_interval) == 1 and _is_num(p_interval[0])
            and 0 < p_interval[0] <= 1):
        raise InputFormatError(cfg_path, None, f"key 'config.p_interval_test': expected [p] with 0 < p <= 1 (the "
                                               f"deterministic centre crop), got {p_interval!r}")
    feeder = conf.get("feeder", "ntu")
    if feeder not in ("ntu", "pku"):
        raise InputFormatError(cfg_path, None, f"key 'feeder': expected ntu or pku, got {feeder!r}")
    model.eval().to(device)
    return Backbone(model, file_digest(model_path), int(train_cfg["window"]), [float(p_interval[0])],
                    feeder == "pku", int(model.out_channels), conf)


def _extract(backbone: Backbone, joints, indices: np.ndarray, batch_size: int, device, progress, desc: str,
             mask=None) -> np.ndarray:
    """Pooled backbone features of `indices`, in that order; `mask(x) -> x'` transforms each batch first."""
    import torch
    from torch.utils.data import DataLoader

    from star_repro.training.feeder import SkeletonDataset

    ds = SkeletonDataset(joints, None, indices, np.zeros(len(indices), np.int64), train=False,
                         window=backbone.window, p_interval=backbone.p_interval, random_rot=False,
                         passthrough=backbone.passthrough)
    out = np.zeros((len(indices), backbone.out_channels), np.float32)
    pos = 0
    bar = _tqdm(len(indices), desc, progress)
    backbone.model.eval()
    try:
        with torch.no_grad():
            for x, _, _ in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0):
                if mask is not None:
                    x = torch.from_numpy(np.ascontiguousarray(mask(x.numpy())))
                _, pooled = backbone.model.extract(x.float().to(device))
                out[pos:pos + len(x)] = pooled.float().cpu().numpy()
                pos += len(x)
                bar.update(len(x))
    finally:
        bar.close()
    if not np.isfinite(out).all():
        raise StarReproError(f"{desc}: the backbone produced non-finite features")
    return out


def _feature_key(backbone: Backbone, samples: Samples, protocol: str, subset: str, indices: np.ndarray,
                 extra: Mapping | None = None) -> dict:
    return {"format": FEATURE_FORMAT, "backbone_sha256": backbone.sha256, "dataset": samples.dataset,
            **dataset_signature(samples.ds), "protocol": protocol, "subset": subset,
            "indices_sha256": sha256_text(",".join(map(str, np.asarray(indices).tolist()))),
            "feeder": {"window": backbone.window, "p_interval": backbone.p_interval,
                       "passthrough": backbone.passthrough}, **shift_formula_key(backbone.model),
            **(dict(extra) if extra else {})}


def features_for(backbone: Backbone, samples: Samples, protocol: str, subset: str, indices: np.ndarray,
                 cache_dir, batch_size: int, device, progress, mask_spec: Mapping | None = None, mask=None):
    key = _feature_key(backbone, samples, protocol, subset, indices, {"mask": mask_spec} if mask_spec else None)
    return cached_features(cache_dir, key, indices, lambda: _extract(
        backbone, samples.ds.joints, indices, batch_size, device, progress, f"features {subset}", mask))


def smie_mask(keep_low: int, keep_random: int, seed: int):
    """SMIE's motion mask as a batch transform, drawing from a fixed generator (same masks on every rerun)."""
    from star_repro.models.baselines.smie import temporal_mask

    rng = np.random.RandomState(seed)

    def apply(x: np.ndarray) -> np.ndarray:
        return temporal_mask(x, keep_low, keep_random, rng)
    return apply


# ---------------------------------------------------------------------------------------------------- text
def encoder_cfg_from_info(info: Mapping, truncate: str) -> dict:
    """The encoder section that rebuilds the encoder an embeddings sidecar names (`encoder` block)."""
    name = info.get("name")
    if not isinstance(name, str):
        raise StarReproError(f"embeddings sidecar: encoder block without a name: {dict(info)}")
    cfg: dict[str, Any] = {"encoder": name, "truncate": truncate}
    if name.startswith("clip:"):
        wf = str(info.get("weights_file") or "")
        if wf.startswith("random-init(seed=") and wf.endswith(")"):
            cfg["weights"] = "random"
            cfg["seed"] = int(wf[len("random-init(seed="):-1])
        elif wf and Path(wf).is_file():
            cfg["weights"] = wf
        # else: search the usual places; the identity check below catches other weights
        if isinstance(info.get("pretrained"), str):
            cfg["pretrained"] = info["pretrained"]
        if isinstance(info.get("quick_gelu"), bool):
            cfg["quick_gelu"] = info["quick_gelu"]
    return cfg


def make_encoder(cfg, device: str, batch_size: int, hash_cache):
    """Indirection so that tests can substitute a cheap encoder."""
    from star_repro.text.encoders import make_encoder as _make

    return _make(cfg, device=device, batch_size=batch_size, hash_cache=hash_cache)


def phrase_embeddings(meta: Mapping, strings: Sequence[str], cache_dir, device: str = "cpu",
                      batch_size: int = 1, sidecar: str = "embeddings sidecar") -> tuple[np.ndarray, dict]:
    """Encode `strings` with the encoder that made an embeddings file (its sidecar `meta`), through the shared
    string cache: strings already encoded are read, the rest encoded once and added.

    One string per forward pass by default, so a phrase's vector does not depend on which other phrases were
    missing from the shared cache when this run started (batched encoding differs in the last bits)."""
    from star_repro.text.embcache import EmbeddingCache

    info = meta.get("encoder")
    if not isinstance(info, Mapping):
        raise InputFormatError(sidecar, None, "key 'encoder' missing: cannot tell which encoder to use for the "
                                              "verb/noun phrases")
    cache_dir = Path(cache_dir)
    cfg = encoder_cfg_from_info(info, str(meta.get("truncate", "error")))
    encoder = make_encoder(cfg, str(device), batch_size, cache_dir / "weights-sha256.json")
    differ = {k: {"sidecar": info.get(k), "now": v} for k, v in encoder.identity.items() if info.get(k) != v}
    if differ:
        raise StarReproError(f"{sidecar}: the embeddings were made with encoder {dict(info)}, but it resolves now "
                             f"to another identity ({differ}); rerun `star-repro embed` or restore the weights")
    cache = EmbeddingCache(cache_dir, encoder.identity, encoder.dim)
    table = cache.load()
    unique = list(dict.fromkeys(strings))
    keys = {s: sha256_text(s) for s in unique}
    missing = [s for s in unique if keys[s] not in table]
    if missing:
        counts = encoder.count_tokens(missing)
        too_long = [(s, n) for s, n in zip(missing, counts) if n > encoder.max_tokens]
        if too_long and encoder.truncate == "error":
            raise StarReproError(f"verb/noun phrases exceed the {encoder.max_tokens}-token limit of {encoder.name}: "
                                 f"{too_long[:3]} (src/star_repro/data/verb_noun.yaml)")
        vecs = np.asarray(encoder.encode(missing, batch_size=batch_size))
        if vecs.shape != (len(missing), encoder.dim) or not np.isfinite(vecs).all():
            raise StarReproError(f"{encoder.name} returned {vecs.shape} for {len(missing)} phrases (expected "
                                 f"({len(missing)}, {encoder.dim}) finite values)")
        cache.add(missing, vecs.astype(np.float32), counts)
        for s, v in zip(missing, vecs.astype(np.float32)):
            table[keys[s]] = (v, 0)
    out = np.stack([table[keys[s]][0] for s in strings]).astype(np.float32)
    return out, {"encoded": len(missing), "cached": len(unique) - len(missing), "identity": dict(encoder.identity)}


def verb_noun(dataset: str) -> tuple[list[str], list[str]]:
    """Indirection over `star_repro.data.verb_noun.verb_noun` (tests give toy datasets their own phrases)."""
    from star_repro.data.verb_noun import verb_noun as _vn

    return _vn(dataset)


def text_inputs(settings: RunSettings, embeddings_npz, split, device: str = "cpu"):
    """TextInputs for the method, and a record of what was used (file hashes, encoder, phrases)."""
    from star_repro.data.verb_noun import phrase_ids
    from star_repro.models.baselines import BASELINES, TextInputs
    from star_repro.text.embed import load_embeddings

    npz = Path(embeddings_npz)
    names, parts, meta = load_embeddings(npz)
    if names.shape[0] != split.num_classes:
        raise StarReproError(f"{npz}: {names.shape[0]} classes, but split {split.name} has {split.num_classes}")
    if meta.get("dataset") not in (None, settings.dataset):
        raise StarReproError(f"{npz}: embeddings of dataset {meta.get('dataset')!r}, not {settings.dataset!r}")
    if settings.partition is not None and meta.get("partition") not in (None, settings.partition):
        raise StarReproError(f"{npz}: a {meta.get('partition')}-part file, but the experiment's partition is "
                             f"{settings.partition}")
    needs = BASELINES[settings.method].needs_for(settings.resolved)
    record: dict[str, Any] = {"embeddings": {"file": str(npz), "sha256": sha256_file(npz)},
                              "encoder": meta.get("encoder"), "text_form": meta.get("text_form"),
                              "uses": list(needs)}
    kw: dict[str, Any] = {"names": names}
    if "descriptions" in needs:
        kw["descriptions"] = parts.mean(0)
        record["descriptions"] = f"mean over the {parts.shape[0]} part embeddings"
    if "verbs" in needs or "nouns" in needs:
        verbs, nouns = verb_noun(settings.dataset)
        if len(verbs) != split.num_classes or len(nouns) != split.num_classes:
            raise StarReproError(f"verb/noun table: {len(verbs)} classes for {settings.dataset}, expected "
                                 f"{split.num_classes}")
        emb, info = phrase_embeddings(meta, list(verbs) + list(nouns), npz.parent / "cache", device,
                                      sidecar=str(npz.with_suffix(".json")))
        c = split.num_classes
        kw.update(verbs=emb[:c], nouns=emb[c:], verb_ids=phrase_ids(list(verbs)), noun_ids=phrase_ids(list(nouns)))
        record["verb_noun"] = {"table": "src/star_repro/data/verb_noun.yaml", "verbs": list(verbs),
                               "nouns": list(nouns), "encoded_now": info["encoded"], "from_cache": info["cached"]}
    return TextInputs(**kw), record


# ---------------------------------------------------------------------------------------------------- train
def _fingerprint(settings: RunSettings, protocol: str, split, backbone_sha: str, embeddings_sha: str,
                 val_unknown: list[int] | None, n_train: int) -> str:
    """What the trained model depends on (evaluation-only keys excluded); evaluation refuses a stale run."""
    key = {"method": settings.method, "resolved": settings.resolved, "seed": settings.seed,
           "selection": settings.selection, "val_unknown": val_unknown,
           "val_seen_fraction": settings.val_seen_fraction, "smie_temporal": settings.smie_temporal,
           "dataset": settings.dataset, "protocol": protocol, "split": [split.name, list(split.unknown)],
           "backbone_sha256": backbone_sha, "embeddings_sha256": embeddings_sha, "n_train": n_train}
    return sha256_text(canonical_json(_jsonable(key)))


def _history_tsv(history: list[dict], unit_kind: str) -> str:
    cols: list[str] = []
    for row in history:
        for k in row:
            if k not in ("unit", "metric") and k not in cols:
                cols.append(k)
    has_metric = any("metric" in r for r in history)
    header = [unit_kind, *cols] + (["test_zsl"] if has_metric else [])
    rows = [[int(r["unit"]) + 1, *[r.get(c) for c in cols]] + ([r.get("metric")] if has_metric else [])
            for r in history]
    return _tsv(header, [[float(v) if isinstance(v, (np.floating,)) else v for v in r] for r in rows])


def _checkpoint_for_save(ckpt: dict) -> dict:
    """numpy -> torch tensors and plain types, so the file loads with `torch.load(weights_only=True)`."""
    import torch

    out = {k: v for k, v in ckpt.items() if k not in ("text", "state")}
    out = _jsonable(out)
    out["state"] = ckpt["state"]
    out["text"] = {k: (None if v is None else torch.from_numpy(np.ascontiguousarray(v)))
                   for k, v in ckpt["text"].items()}
    return out


def _checkpoint_from_file(obj: dict) -> dict:
    ckpt = dict(obj)
    ckpt["text"] = {k: (None if v is None else v.cpu().numpy()) for k, v in obj["text"].items()}
    return ckpt


def train_baseline(method: str, processed_dir, protocol: str, split, embeddings_npz, backbone_dir, cfg: Mapping,
                   work_dir, device: str = "cpu", *, feature_cache=None, progress: bool | None = None,
                   threads: int | None = None) -> dict:
    """Train one baseline on the known classes; writes `model.pt`, `config.json`, `history.tsv` and
    `selection.json` into `work_dir` and returns the run summary (the content of config.json).

    `feature_cache`: folder of backbone-feature files shared by runs on the same backbone (default
    `work_dir/features`); pass one folder for all experiments so that the five methods and their evaluations
    run the backbone once per split.
    """
    with _threads(threads):
        return _train(method, processed_dir, protocol, split, embeddings_npz, backbone_dir, cfg, work_dir,
                      str(device), feature_cache, progress)


def _train(method, processed_dir, protocol, split, embeddings_npz, backbone_dir, cfg, work_dir, device,
           feature_cache, progress) -> dict:
    from star_repro.data.splits import assert_no_unknown
    from star_repro.models.baselines import Selection, fit, to_checkpoint
    from star_repro.training.common import seed_everything

    t0 = time.perf_counter()
    work_dir = Path(work_dir)
    cache_dir = Path(feature_cache) if feature_cache is not None else work_dir / "features"
    dataset = Path(processed_dir).name
    settings = resolve_settings(method, cfg, dataset, split)
    samples = select_samples(processed_dir, protocol, split)
    labels = samples.ds.labels
    train_labels = labels[samples.train_idx]
    assert_no_unknown(train_labels, split)
    text, text_record = text_inputs(settings, embeddings_npz, split, device)
    backbone = load_backbone(backbone_dir, split, device)
    fbs = settings.feature_batch_size

    t_feat = time.perf_counter()
    train_feats, hit_train = features_for(backbone, samples, protocol, "train", samples.train_idx, cache_dir, fbs,
                                          device, progress)
    masked = None
    if settings.smie_temporal is not None:
        keep_low, keep_random = settings.smie_temporal
        if keep_low > backbone.window and not backbone.passthrough:
            raise StarReproError(f"{_key(method, 'smie_temporal')}: keep_low {keep_low} exceeds the backbone's "
                                 f"{backbone.window}-frame window")
        spec = {"keep_low": keep_low, "keep_random": keep_random, "seed": settings.seed, "batch": fbs}
        masked, _ = features_for(backbone, samples, protocol, "train-masked", samples.train_idx, cache_dir, fbs,
                                 device, progress, spec, smie_mask(keep_low, keep_random, settings.seed))
    val_unknown, val_source = (None, None)
    if settings.selection == "val":
        val_unknown, val_source = validation_unknown(settings, split)
        selection = Selection("val", val_unknown=val_unknown, val_seen_fraction=settings.val_seen_fraction)
    elif settings.selection == "test":
        test_feats, _ = features_for(backbone, samples, protocol, "test", samples.test_idx, cache_dir, fbs, device,
                                     progress)
        zsl = ~split.is_known(labels[samples.test_idx])
        if not zsl.any():
            raise StarReproError(f"{_key(method, 'selection')}: test needs unknown-class test samples; protocol "
                                 f"{protocol} has none")
        selection = Selection("test", feats=test_feats[zsl], labels=labels[samples.test_idx][zsl])
    else:
        selection = Selection("last")
    feat_s = time.perf_counter() - t_feat

    seed_everything(settings.seed)
    t_fit = time.perf_counter()
    model = fit(method, settings.method_cfg, train_feats, train_labels, text, split, seed=settings.seed,
                device=device, selection=selection, train_masked_feats=masked, progress=progress)
    fit_s = time.perf_counter() - t_fit

    work_dir.mkdir(parents=True, exist_ok=True)
    save_torch_atomic(_checkpoint_for_save(to_checkpoint(model)), work_dir / "model.pt")
    sel = dict(model.selection)
    sel_out = {"selection": SELECTION_OUTPUT[settings.selection], **_jsonable(sel),
               "selected_unit": None if sel.get("best_unit") is None else int(sel["best_unit"]) + 1,
               "val_unknown": val_unknown, "val_unknown_source": val_source,
               "val_seen_fraction": settings.val_seen_fraction if settings.selection == "val" else None,
               "val": _jsonable(model.val)}
    write_json_atomic(work_dir / "selection.json", sel_out)
    write_text_atomic(work_dir / "history.tsv", _history_tsv(model.history, sel.get("unit_kind", "epoch")))
    emb_sha = text_record["embeddings"]["sha256"]
    summary = {
        "method": method, "dataset": dataset, "protocol": protocol,
        "split": {"name": split.name, "unknown": list(split.unknown), "num_classes": split.num_classes},
        "seed": settings.seed, "profile": settings.profile, "partition": settings.partition,
        "selection": SELECTION_OUTPUT[settings.selection], "selected_unit": sel_out["selected_unit"],
        "unit_kind": sel.get("unit_kind"), "units_run": sel.get("units_run"),
        "method_config": _jsonable(model.cfg), "run_settings": {
            "selection": settings.selection, "gamma": settings.gamma, "gamma_from": settings.gamma_from,
            "val_unknown": val_unknown, "val_seen_fraction": settings.val_seen_fraction,
            "feature_batch_size": fbs, "smie_temporal": settings.smie_temporal},
        "features": {"backbone_sha256": backbone.sha256, "dim": int(train_feats.shape[1]),
                     "window": backbone.window, "p_interval": backbone.p_interval,
                     "passthrough": backbone.passthrough, "n_train": int(len(samples.train_idx)),
                     "train_from_cache": hit_train, "cache_dir": str(cache_dir),
                     "smie_masked": settings.smie_temporal is not None},
        "text": text_record,
        "fingerprint": _fingerprint(settings, protocol, split, backbone.sha256, emb_sha, val_unknown,
                                    int(len(samples.train_idx))),
        "timing": {"seconds_total": round(time.perf_counter() - t0, 3), "seconds_features": round(feat_s, 3),
                   "seconds_fit": round(fit_s, 3), "device": device},
    }
    write_json_atomic(work_dir / "config.json", _jsonable(summary))
    return summary


# ---------------------------------------------------------------------------------------------------- evaluate
def evaluate_baseline(train_dir, processed_dir, protocol: str, split, embeddings_npz, backbone_dir, cfg: Mapping,
                      out_dir, device: str = "cpu", *, feature_cache=None, progress: bool | None = None,
                      threads: int | None = None) -> dict:
    """Evaluate `train_dir/model.pt` (from `train_baseline`) on the protocol's test samples and write STAR's run
    outputs into `out_dir`: metrics.json, per_class.tsv, confusion_zsl.npy, confusion_gzsl.npy, gamma_sweep.tsv,
    scores_gzsl.npz, provenance.json. Returns the metrics."""
    with _threads(threads):
        return _evaluate(train_dir, processed_dir, protocol, split, embeddings_npz, backbone_dir, cfg, out_dir,
                         str(device), feature_cache, progress)


def _read_run(train_dir: Path) -> tuple[dict, dict, dict]:
    import torch

    paths = {n: train_dir / n for n in ("model.pt", "config.json", "selection.json")}
    for p in paths.values():
        if not p.is_file():
            raise StarReproError(f"{p} is missing: run `star-repro train` for this experiment first")
    docs = {}
    for n in ("config.json", "selection.json"):
        try:
            docs[n] = json.loads(paths[n].read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputFormatError(paths[n], exc.lineno, f"not valid JSON: {exc.msg}") from None
    try:
        obj = torch.load(paths["model.pt"], map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated or foreign file
        raise StarReproError(f"{paths['model.pt']}: unreadable baseline checkpoint ({type(exc).__name__}: {exc}); "
                             "retrain") from None
    if not isinstance(obj, dict) or "text" not in obj:
        raise StarReproError(f"{paths['model.pt']}: not a baseline checkpoint written by train_baseline")
    return _checkpoint_from_file(obj), docs["config.json"], docs["selection.json"]


def _evaluate(train_dir, processed_dir, protocol, split, embeddings_npz, backbone_dir, cfg, out_dir, device,
              feature_cache, progress) -> dict:
    from star_repro import metrics as M
    from star_repro.models.baselines import best_gamma, from_checkpoint, scores
    from star_repro.provenance import write_provenance

    train_dir, out_dir = Path(train_dir), Path(out_dir)
    ckpt, run_cfg, sel_doc = _read_run(train_dir)
    method = run_cfg.get("method")
    dataset = Path(processed_dir).name
    settings = resolve_settings(method, cfg, dataset, split)
    if ckpt.get("method") != method:
        raise StarReproError(f"{train_dir}: model.pt holds {ckpt.get('method')!r} but config.json says {method!r}")
    backbone = load_backbone(backbone_dir, split, device)
    emb_sha = sha256_file(embeddings_npz)
    samples = select_samples(processed_dir, protocol, split)
    val_unknown = (run_cfg.get("run_settings") or {}).get("val_unknown")
    expected = _fingerprint(settings, protocol, split, backbone.sha256, emb_sha, val_unknown,
                            int(len(samples.train_idx)))
    if run_cfg.get("fingerprint") != expected:
        raise StarReproError(f"{train_dir / 'config.json'}: the run was trained with other settings or inputs than "
                             "these (method config, seed, selection, split, backbone or embeddings changed); retrain")
    model = from_checkpoint(ckpt, device=device)

    cache_dir = Path(feature_cache) if feature_cache is not None else None
    feats, hit = features_for(backbone, samples, protocol, "test", samples.test_idx, cache_dir,
                              settings.feature_batch_size, device, progress)
    labels = samples.ds.labels[samples.test_idx]
    known_mask = np.zeros(split.num_classes, bool)
    known_mask[list(split.known)] = True
    unknown = list(split.unknown)

    zsl_rows = ~known_mask[labels]
    if zsl_rows.any():
        zs = scores(model, feats[zsl_rows], "zsl")[:, unknown]
        zsl_pred = M.zsl_predict(zs)
        zsl_target = split.unknown_position(labels[zsl_rows])
    else:
        zsl_pred = zsl_target = np.zeros(0, np.int64)
    zsl_top1 = M.accuracy(zsl_pred, zsl_target)

    S = scores(model, feats, "gzsl").astype(np.float64)
    best = best_gamma(S, labels, known_mask)
    gamma_info: dict = {}
    if settings.gamma == "val":
        if not model.val:
            raise StarReproError(f"{_key(method, 'gamma')}: val, but {train_dir} was trained without a validation "
                                 "phase (selection: val); retrain")
        gamma, source = float(model.val["gamma"]), "val"
        gamma_info = {"rule": "γ maximising H on the validation phase (validation-unknown known classes vs held-out "
                              "samples of the other known classes), exact search",
                      "val_unknown": model.val.get("unknown"), "val_h": model.val.get("h"),
                      "n_val": int(model.val.get("n_seen_heldout", 0)) + int(model.val.get("n_unknown", 0))}
    elif settings.gamma == "test":
        gamma, source = float(best["gamma"]) + 0.0, "test-selected"
    else:
        gamma, source = float(settings.gamma), "fixed"
        gamma_info = {"from": settings.gamma_from}
    gz = M.gzsl_metrics(S, labels, known_mask, gamma)
    grid = sorted(set(settings.gamma_grid) | {gamma, float(best["gamma"])})
    sweep = M.gamma_sweep(S, labels, known_mask, grid)
    gz_pred = M.calibrated_predict(S, known_mask, gamma)

    out_dir.mkdir(parents=True, exist_ok=True)
    names = _class_names(dataset, split.num_classes)
    selection = SELECTION_OUTPUT[settings.selection]
    result = {
        "accuracy_unit": "percent", "method": method,
        "zsl_top1": zsl_top1, "gzsl_seen": gz["seen"], "gzsl_unseen": gz["unseen"], "gzsl_h": gz["h"],
        "gamma": gamma, "gamma_source": source, **({"gamma_rule": gamma_info} if gamma_info else {}),
        "gzsl_best_on_test": {"gamma": float(best["gamma"]), "seen": best["seen"], "unseen": best["unseen"],
                              "h": best["h"], "label": "test-selected", "search": "exact"},
        "gzsl_score": SCORE_KIND.get(method), "gzsl_gate": "calibrated stacking",
        "selection": selection, "selection_label": sel_doc.get("label"), "unit_kind": sel_doc.get("unit_kind"),
        "epoch": sel_doc.get("selected_unit"), "units_run": sel_doc.get("units_run"),
        "test_selected": selection == "test-selected" or source == "test-selected",
        "val_unknown": sel_doc.get("val_unknown"),
        "seed": settings.seed, "profile": settings.profile, "partition": settings.partition,
        "dataset": dataset, "protocol": protocol, "split": split.name,
        "unknown_classes": unknown, "unknown_class_names": [names[u] for u in unknown],
        "n_zsl": int(zsl_rows.sum()), "n_gzsl_seen": gz["n_seen"], "n_gzsl_unseen": gz["n_unseen"],
        "ci95": M.run_intervals(zsl_pred, zsl_target, gz_pred, labels, known_mask),
        "features_from_cache": hit, "inputs": run_inputs(embeddings_npz, backbone_dir),
    }
    write_json_atomic(out_dir / "metrics.json", _jsonable(result))

    zsl_per = {r["class"]: r for r in M.per_class_accuracy(
        np.asarray(unknown)[zsl_pred] if len(zsl_pred) else zsl_pred, labels[zsl_rows], unknown)}
    gz_per = M.per_class_accuracy(gz_pred, labels, range(split.num_classes))
    rows = [(r["class"], names[r["class"]], "known" if known_mask[r["class"]] else "unknown", r["n"], r["acc"],
             zsl_per[r["class"]]["acc"] if r["class"] in zsl_per else None) for r in gz_per]
    write_text_atomic(out_dir / "per_class.tsv", _tsv(("class", "name", "split", "n_test", "gzsl_acc", "zsl_acc"),
                                                      rows))
    _save_npy(out_dir / "confusion_zsl.npy", M.confusion_matrix(zsl_pred, zsl_target, len(unknown)))
    _save_npy(out_dir / "confusion_gzsl.npy", M.confusion_matrix(gz_pred, labels, split.num_classes))
    write_text_atomic(out_dir / "gamma_sweep.tsv", _tsv(
        ("gamma", "seen", "unseen", "h"), [(r["gamma"], r["seen"], r["unseen"], r["h"]) for r in sweep]))
    from star_repro.text.embcache import write_npz_atomic

    write_npz_atomic(out_dir / "scores_gzsl.npz", {"scores": S.astype(np.float32), "labels": labels.astype(np.int64),
                                                   "sample_index": samples.test_idx.astype(np.int64),
                                                   "known_mask": known_mask})
    root = Path(processed_dir)
    write_provenance(out_dir / "provenance.json",
                     {f"baselines.{method}": _jsonable(dict(cfg)), "protocol": protocol,
                      "split": {"name": split.name, "unknown": unknown}},
                     {"processed": [root / f for f in ("joints.npy", "samples.tsv", "protocols.json")],
                      "embeddings": embeddings_npz, "backbone": backbone_dir,
                      "run": [train_dir / "model.pt", train_dir / "config.json", train_dir / "selection.json"]},
                     extra={"train": {k: run_cfg.get(k) for k in ("selection", "selected_unit", "unit_kind",
                                                                  "fingerprint", "method_config", "features")},
                            "device": device})
    return result
