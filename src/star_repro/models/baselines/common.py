"""Shared machinery of the five baselines: inputs, class phases, training loop, model selection, GZSL gates.

Every method works on arrays: pooled backbone features (N, F), original 0-based labels, class text embeddings
(C, D). A method is trained on one *phase*, a (seen, unseen) pair of class lists: the experiment's own
known/unknown split, or, for `val` selection and the methods' own GZSL gate, a validation phase carved out of the
known classes only (BASELINES_SPEC §1.5, §7.4). Unknown-class samples can never enter training: `fit` passes the
labels through `ClassSplit.known_position`, which raises `LeakError`.

Scores are always returned over all C classes of the dataset (columns of classes outside the phase are -inf), so
ZSL is the argmax over the unknown columns and GZSL is calibrated stacking over all columns (STAR Eq. 9).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from star_repro.data.splits import ClassSplit, assert_no_unknown
from star_repro.errors import StarReproError
from star_repro.metrics import accuracy, calibrated_predict, gzsl_metrics, harmonic_mean

SELECTION_MODES = ("last", "val", "test")
SELECTION_LABELS = {
    "last": "last epoch/cycle (no selection)",
    "val": "selected on a seen-class validation split (honest)",
    "test": "selected on the unknown-class test set (optimistic; what the public codes do)",
}
#: Settings of the methods' own GZSL gate (BASELINES_SPEC §1.5); shared by the four methods that have one.
OWN_GATE_DEFAULTS: dict[str, Any] = {
    "holdout_unseen": 300,        # validation samples kept out of the gate's logistic regression ...
    "holdout_seen": 400,          # ... to choose th and T by gate accuracy
    "thresholds": [round(0.25 + 0.01 * i, 2) for i in range(50)],
    "temperatures": [2, 3, 4, 5, 6, 7, 8, 9],   # T of the seen expert's softmax (CADA-VAE/SynSE: 1..9)
    "threshold_quirk": True,      # search "unseen iff P(unseen) > th", test "seen iff P(seen) > th" (§1.5.6)
    "expert_epochs": 30,          # linear seen-class expert standing in for the Shift-GCN classifier
    "expert_lr": 1e-2,
}


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------
def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _ids_from_rows(emb: np.ndarray) -> np.ndarray:
    """Classes whose phrase embeddings are identical share a phrase (same string -> same vector)."""
    _, inv = np.unique(np.round(np.asarray(emb, np.float64), 6), axis=0, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


@dataclass
class TextInputs:
    """Class text embeddings in label order, as the embed stage writes them (not normalised).

    `names` is always needed; JPoSE and SynSE need `verbs` and `nouns`; SMIE may use `descriptions`.
    `verb_ids` / `noun_ids` say which classes share a verb / noun string (JPoSE's triplet positives); when
    absent they are derived from identical embedding rows.
    """
    names: np.ndarray
    verbs: np.ndarray | None = None
    nouns: np.ndarray | None = None
    descriptions: np.ndarray | None = None
    verb_ids: np.ndarray | None = None
    noun_ids: np.ndarray | None = None

    def checked(self, num_classes: int, needs: Sequence[str], method: str) -> "TextInputs":
        """Validate shapes and return a copy with every matrix L2-normalised per class (all public codes do)."""
        out = {}
        for key in ("names", "verbs", "nouns", "descriptions"):
            arr = getattr(self, key)
            if arr is None:
                if key in needs:
                    raise StarReproError(f"{method} needs text embeddings '{key}' (C={num_classes} rows); "
                                         "none were given")
                out[key] = None
                continue
            arr = np.asarray(arr)
            if arr.ndim != 2 or arr.shape[0] != num_classes:
                raise StarReproError(f"text embeddings '{key}': expected shape ({num_classes}, D), got {arr.shape}")
            if not np.isfinite(arr).all():
                raise StarReproError(f"text embeddings '{key}' contain non-finite values")
            out[key] = _l2n(arr)
        for key, src in (("verb_ids", "verbs"), ("noun_ids", "nouns")):
            ids = getattr(self, key)
            if ids is None and out[src] is not None:
                ids = _ids_from_rows(out[src])
            if ids is not None:
                ids = np.asarray(ids, np.int64).reshape(-1)
                if ids.shape[0] != num_classes:
                    raise StarReproError(f"'{key}': expected {num_classes} entries, got {ids.shape[0]}")
            out[key] = ids
        return TextInputs(**out)


@dataclass
class Selection:
    """How the checkpoint (epoch or cycle) is chosen; STAR's three modes, always labelled in the output.

    - `last`: the final epoch/cycle; no learning-rate plateau steps and no early stop (nothing to monitor).
    - `test`: the public codes' practice: ZSL top-1 on `feats`/`labels` (the unknown-class test samples) drives
      the plateau schedule, early stopping and the kept checkpoint.
    - `val`: a validation phase inside the known classes: `val_unknown` known classes play the unknown ones,
      a `val_seen_fraction` of the other known classes' samples is held out; the best epoch/cycle count (and the
      learning-rate drops) found there are replayed when training on all known classes. It also yields a γ.
    """
    mode: str = "last"
    feats: np.ndarray | None = None
    labels: np.ndarray | None = None
    val_unknown: Sequence[int] | None = None
    val_seen_fraction: float = 0.2

    def __post_init__(self):
        if self.mode not in SELECTION_MODES:
            raise StarReproError(f"selection mode must be one of {SELECTION_MODES}, got {self.mode!r}")


@dataclass
class Phase:
    """The class lists one training run sees: `seen` (sorted, original ids) and `unseen` (given order)."""
    seen: np.ndarray
    unseen: np.ndarray
    num_classes: int
    name: str = "train"
    seen_pos: np.ndarray = field(init=False)

    def __post_init__(self):
        self.seen = np.asarray(self.seen, np.int64)
        self.unseen = np.asarray(self.unseen, np.int64)
        self.seen_pos = np.full(self.num_classes, -1, np.int64)
        self.seen_pos[self.seen] = np.arange(len(self.seen))

    @property
    def classes(self) -> np.ndarray:
        """Column order of a method's phase scores: seen classes, then unseen classes."""
        return np.concatenate([self.seen, self.unseen])

    @classmethod
    def of_split(cls, split: ClassSplit) -> "Phase":
        return cls(np.array(split.known), np.array(split.unknown), split.num_classes, "train")


# ----------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------
def resolve_config(method_cls, cfg: Mapping | None, split: ClassSplit) -> dict:
    """Overlay `cfg` on the method's defaults (the public code's values); unknown keys are errors naming the key."""
    cfg = dict(cfg or {})
    defaults = copy.deepcopy(method_cls.DEFAULTS)
    unknown = sorted(set(cfg) - set(defaults) - {"own_gate"})
    if unknown:
        raise StarReproError(f"baselines.{method_cls.name}: unknown keys {unknown}; expected some of "
                             f"{sorted(defaults) + ['own_gate']}")
    out = defaults
    for key, value in cfg.items():
        if key == "own_gate":
            continue
        base = defaults[key]
        if isinstance(base, dict):
            if not isinstance(value, Mapping):
                raise StarReproError(f"baselines.{method_cls.name}.{key}: expected a mapping, got {value!r}")
            extra = sorted(set(value) - set(base))
            if extra:
                raise StarReproError(f"baselines.{method_cls.name}.{key}: unknown keys {extra}; expected some of "
                                     f"{sorted(base)}")
            out[key] = {**base, **value}
        elif isinstance(base, bool):
            if not isinstance(value, bool):
                raise StarReproError(f"baselines.{method_cls.name}.{key}: expected true or false, got {value!r}")
            out[key] = value
        elif isinstance(base, (int, float)) and not isinstance(base, bool):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise StarReproError(f"baselines.{method_cls.name}.{key}: expected a number, got {value!r}")
            out[key] = value
        else:
            out[key] = value
    gate = dict(OWN_GATE_DEFAULTS)
    gate.update(method_cls.OWN_GATE_OVERRIDES)
    user_gate = cfg.get("own_gate") or {}
    extra = sorted(set(user_gate) - set(gate))
    if extra:
        raise StarReproError(f"baselines.{method_cls.name}.own_gate: unknown keys {extra}; expected some of "
                             f"{sorted(gate)}")
    gate.update(user_gate)
    out["own_gate"] = gate
    return method_cls.finish_config(out, split)


def split_settings(num_classes: int, n_unknown: int) -> dict[str, int]:
    """CADA-VAE / SynSE per-split settings (BASELINES_SPEC §7.5): latent L, cycle length P, cross-start C.

    L = 200 on NTU-120, else 100; P = 1700 for 5 unknown classes, else 1900; C = 1400 with P = 1700, else 1500.
    PKU follows the NTU-60 rule (the spec's inference). NTU-60 48/12's released checkpoints imply P = 1700; the
    `official-code` profile can set it explicitly.
    """
    latent = 200 if num_classes == 120 else 100
    steps = 1700 if n_unknown == 5 else 1900
    return {"latent_dim": latent, "cycle_steps": steps, "cross_start": 1400 if steps == 1700 else 1500}


# ----------------------------------------------------------------------------------------------------------------
# Method base class
# ----------------------------------------------------------------------------------------------------------------
# name -> method class, filled as each method's module defines its class (BaselineMethod.__init_subclass__). The
# package's __init__ imports every method module before anyone can reach `fit`, so the table is complete by then;
# looking methods up here, not in the package, keeps this module below the package in the import graph.
_METHODS: dict[str, type] = {}


class BaselineMethod:
    """One baseline's networks, losses and training unit on one phase. Subclasses fill in the hooks."""
    name = "base"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _METHODS[cls.name] = cls
    unit_kind = "epoch"
    DEFAULTS: dict[str, Any] = {}
    OWN_GATE_OVERRIDES: dict[str, Any] = {}
    needs: tuple[str, ...] = ("names",)
    has_own_gate = True

    def __init__(self, cfg: dict, feat_dim: int, text: TextInputs, phase: Phase, device: torch.device,
                 gen: torch.Generator):
        self.cfg = cfg
        self.feat_dim = feat_dim
        self.text = text
        self.phase = phase
        self.device = device
        self.gen = gen
        self.lr_scale = 1.0

    @classmethod
    def finish_config(cls, cfg: dict, split: ClassSplit) -> dict:
        """Resolve split-dependent values (`auto`) once the split is known."""
        return cfg

    @classmethod
    def needs_for(cls, cfg: dict) -> tuple[str, ...]:
        """Which text embeddings this configuration reads."""
        return cls.needs

    @classmethod
    def check_inputs(cls, cfg: dict, feats: np.ndarray) -> dict:
        """Reject features the method cannot use (e.g. ReViSE's log(1 + v) needs v > -1)."""
        return cfg

    # ---- required hooks ----
    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> list[torch.optim.Optimizer]:
        raise NotImplementedError

    def n_units(self) -> int:
        return int(self.cfg["epochs"])

    def train_unit(self, unit: int, feats: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def phase_scores(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, len(phase.classes)) scores, columns in `phase.classes` order."""
        raise NotImplementedError

    # ---- optional hooks ----
    def begin_unit(self, unit: int) -> None:
        """Set a scheduled learning rate before the unit (SMIE's warm-up + cosine)."""

    def prepare_inference(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Fit whatever inference needs after a unit (the generative methods' ZSL classifier)."""

    def finalize(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Fit what GZSL needs once the checkpoint is chosen (the generative methods' all-class classifier)."""

    def zsl_scores(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, len(phase.unseen)) ZSL scores; by default the unseen columns of the phase scores."""
        return self.phase_scores(feats)[:, len(self.phase.seen):]

    def gate_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """What the own gate's softmax is taken of: the ZSL scores (dot/cosine) or classifier logits."""
        return self.zsl_scores(feats)

    # ---- shared helpers ----
    def train_mode(self, flag: bool) -> None:
        for m in self.modules().values():
            m.train(flag)

    def state_dict(self) -> dict[str, dict]:
        return {k: copy.deepcopy(m.state_dict()) for k, m in self.modules().items()}

    def load_state_dict(self, state: Mapping[str, Mapping]) -> None:
        mods = self.modules()
        for k, sd in state.items():
            mods[k].load_state_dict(sd)

    def current_lr(self) -> float:
        opts = self.optimizers()
        return float(opts[0].param_groups[0]["lr"]) if opts else float("nan")

    def scale_lr(self, factor: float) -> None:
        for opt in self.optimizers():
            for group in opt.param_groups:
                group["lr"] *= factor

    def batches(self, n: int, batch_size: int):
        """Shuffled minibatch index tensors of one epoch, from the run's own generator (deterministic)."""
        perm = torch.randperm(n, generator=self.gen)
        for i in range(0, n, batch_size):
            yield perm[i:i + batch_size].to(self.device)

    def minibatch_epoch(self, n: int, batch_terms) -> dict[str, float]:
        """One epoch of SGD steps over shuffled minibatches; `batch_terms(idx)` returns the loss terms of a batch
        (key "loss" is optimised). Returns each term's per-sample mean over the epoch."""
        sums: dict[str, float] = {}
        seen = 0
        for idx in self.batches(n, int(self.cfg["batch_size"])):
            terms = batch_terms(idx)
            for opt in self.optimizers():
                opt.zero_grad()
            terms["loss"].backward()
            for opt in self.optimizers():
                opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
            seen += len(idx)
        return {k: v / max(seen, 1) for k, v in sums.items()}

    def text_tensor(self, key: str) -> torch.Tensor:
        return torch.as_tensor(getattr(self.text, key), device=self.device)


# ----------------------------------------------------------------------------------------------------------------
# Metrics: star_repro.metrics (percent, calibrated stacking) plus an exact γ search
# ----------------------------------------------------------------------------------------------------------------
def best_gamma(scores: np.ndarray, labels: np.ndarray, known_mask: np.ndarray) -> dict[str, float]:
    """The γ that maximises H, searched exactly (keys as `star_repro.metrics.gzsl_metrics`, percent): a sample
    switches from its best known class to its best unknown class when γ exceeds (best known − best unknown score),
    so H only changes at those points; midpoints between consecutive ones are tried (ties: the smaller γ)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    known_mask = np.asarray(known_mask, bool)
    s_known = np.where(known_mask[None, :], scores, -np.inf)
    s_unk = np.where(~known_mask[None, :], scores, -np.inf)
    best_k, best_u = s_known.argmax(1), s_unk.argmax(1)
    delta = s_known.max(1) - s_unk.max(1)
    is_known = known_mask[labels]
    ok_k = (best_k == labels) & is_known      # correct if routed to the known side
    ok_u = (best_u == labels) & ~is_known     # correct if routed to the unknown side
    n_s, n_u = int(is_known.sum()), int((~is_known).sum())
    finite = np.sort(np.unique(delta[np.isfinite(delta)]))
    if finite.size:
        cands = np.concatenate([[finite[0] - 1.0], (finite[:-1] + finite[1:]) / 2, [finite[-1] + 1.0]])
    else:
        cands = np.array([0.0])
    best = None
    for g in cands:
        to_unk = delta < g
        s = 100.0 * float(ok_k[~to_unk].sum()) / n_s if n_s else 0.0
        u = 100.0 * float(ok_u[to_unk].sum()) / n_u if n_u else 0.0
        h = harmonic_mean(s, u)
        if best is None or h > best["h"] + 1e-9:
            best = {"gamma": float(g), "seen": s, "unseen": u, "h": h, "n_seen": n_s, "n_unseen": n_u}
    return best


# ----------------------------------------------------------------------------------------------------------------
# The fitted model and its public functions
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class BaselineModel:
    """A trained baseline: the method object plus everything needed to score and to explain how it was chosen."""
    method: str
    cfg: dict
    split_name: str
    num_classes: int
    known: tuple[int, ...]
    unknown: tuple[int, ...]
    seed: int
    impl: BaselineMethod
    selection: dict
    history: list[dict]
    val: dict | None = None
    own_gate: "OwnGate | None" = None

    @property
    def known_mask(self) -> np.ndarray:
        m = np.zeros(self.num_classes, bool)
        m[list(self.known)] = True
        return m


def _as_feats(x, name: str, feat_dim: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise StarReproError(f"{name}: expected a 2-D array (samples, features), got shape {x.shape}")
    if feat_dim is not None and x.shape[1] != feat_dim:
        raise StarReproError(f"{name}: expected {feat_dim} features per sample, got {x.shape[1]}")
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise StarReproError(f"{name}: {int(bad.sum())} non-finite values (first in row {row})")
    return x.astype(np.float32, copy=False)


def _as_labels(y, n: int, name: str, num_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise StarReproError(f"{name}: expected {n} labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise StarReproError(f"{name}: expected integer class labels, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise StarReproError(f"{name}: labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}")
    return y.astype(np.int64)


def _torch(x: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), device=device)


@torch.no_grad()
def _chunked(fn, feats: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([fn(feats[i:i + chunk]) for i in range(0, len(feats), chunk)]) if len(feats) else fn(feats)


def _scatter(phase_part: np.ndarray, cols: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.full((phase_part.shape[0], num_classes), -np.inf, np.float32)
    out[:, cols] = phase_part
    return out


def _phase_scores_np(impl: BaselineMethod, feats: np.ndarray) -> np.ndarray:
    impl.train_mode(False)
    t = _torch(feats, impl.device)
    s = _chunked(impl.phase_scores, t).float().cpu().numpy()
    return _scatter(s, impl.phase.classes, impl.phase.num_classes)


def _zsl_scores_np(impl: BaselineMethod, feats: np.ndarray) -> np.ndarray:
    impl.train_mode(False)
    t = _torch(feats, impl.device)
    s = _chunked(impl.zsl_scores, t).float().cpu().numpy()
    return _scatter(s, impl.phase.unseen, impl.phase.num_classes)


def scores(model: BaselineModel, feats: np.ndarray, setting: str = "gzsl") -> np.ndarray:
    """(N, C) scores over all classes. `gzsl`: the method's all-class scores (calibrated stacking subtracts γ
    from the known columns). `zsl`: the method's ZSL scores in the unknown columns, -inf elsewhere (differs from
    `gzsl` only for CADA-VAE and SynSE, whose ZSL classifier knows only the unknown classes, as in the port)."""
    feats = _as_feats(feats, "feats", model.impl.feat_dim)
    if setting == "gzsl":
        return _phase_scores_np(model.impl, feats)
    if setting == "zsl":
        return _zsl_scores_np(model.impl, feats)
    raise StarReproError(f"scores setting must be 'zsl' or 'gzsl', got {setting!r}")


def predict_zsl(model: BaselineModel, feats: np.ndarray) -> np.ndarray:
    s = scores(model, feats, "zsl")
    unknown = np.asarray(model.unknown)
    return unknown[np.argmax(s[:, unknown], axis=1)]


def predict_gzsl(model: BaselineModel, feats: np.ndarray, gamma: float | None = None, gate: str = "stacking",
                 seen_logits: np.ndarray | None = None) -> np.ndarray:
    """GZSL labels. `stacking`: calibrated stacking with γ. `own`: the method's own gate (§1.5); `seen_logits`
    (N, |known|, sorted known order) are the backbone classifier's logits, else the fitted linear expert is used."""
    if gate == "stacking":
        if gamma is None:
            raise StarReproError("calibrated stacking needs a γ (gamma)")
        return calibrated_predict(scores(model, feats, "gzsl"), model.known_mask, float(gamma))
    if gate == "own":
        if model.own_gate is None:
            if not model.impl.has_own_gate:
                raise StarReproError(f"{model.method} has no GZSL gate of its own (SMIE reports ZSL only)")
            raise StarReproError(f"{model.method}: the own gate was not fitted; call fit(..., own_gate=True) with "
                                 "Selection.val_unknown set")
        feats = _as_feats(feats, "feats", model.impl.feat_dim)
        return model.own_gate.predict(model.impl, feats, seen_logits)
    raise StarReproError(f"gate must be 'stacking' or 'own', got {gate!r}")


def evaluate(model: BaselineModel, feats: np.ndarray, labels: np.ndarray, gamma: float | None = None,
             gate: str = "stacking", seen_logits: np.ndarray | None = None) -> dict[str, float]:
    """ZSL top-1 on the unknown-class samples of (feats, labels); with γ (or the own gate) GZSL seen / unseen / h on
    all of them. Percent, keys as `star_repro.metrics.gzsl_metrics`."""
    feats = _as_feats(feats, "feats", model.impl.feat_dim)
    labels = _as_labels(labels, len(feats), "labels", model.num_classes)
    unk = ~model.known_mask[labels]
    out: dict[str, float] = {}
    if unk.any():
        out["zsl_top1"] = accuracy(predict_zsl(model, feats[unk]), labels[unk])
    if gate == "stacking" and gamma is not None:
        out.update(gzsl_metrics(scores(model, feats, "gzsl"), labels, model.known_mask, float(gamma)))
    elif gate == "own":
        pred = predict_gzsl(model, feats, None, "own", seen_logits)
        s, u = accuracy(pred[~unk], labels[~unk]), accuracy(pred[unk], labels[unk])
        out.update(seen=s, unseen=u, h=harmonic_mean(s, u), n_seen=int((~unk).sum()), n_unseen=int(unk.sum()))
    elif gate != "stacking":
        raise StarReproError(f"gate must be 'stacking' or 'own', got {gate!r}")
    return out


# ----------------------------------------------------------------------------------------------------------------
# Training loop with model selection
# ----------------------------------------------------------------------------------------------------------------
def _progress(total: int, desc: str, enabled: bool | None):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="unit", leave=False, disable=(None if enabled is None else not enabled))


def _run(impl: BaselineMethod, feats: torch.Tensor, labels: torch.Tensor, *, n_units: int,
         monitor=None, replay_drops: Sequence[int] = (), progress: bool | None = None, desc: str = "") -> dict:
    """Train `n_units` epochs/cycles. With a monitor (ZSL accuracy callable) the plateau schedule, early stop and
    best-checkpoint logic of the public codes run on it; without one, the recorded LR drops are replayed."""
    cfg = impl.cfg
    plateau_cfg = cfg.get("plateau")
    schedulers = []
    if monitor is not None and plateau_cfg:
        schedulers = [torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=plateau_cfg["factor"], patience=plateau_cfg["patience"],
            cooldown=plateau_cfg["cooldown"]) for opt in impl.optimizers()]
    early = cfg.get("early_stop") if monitor is not None else None
    min_unit = int(cfg.get("select_after", 0) or 0)
    history: list[dict] = []
    best = {"metric": -math.inf, "unit": None, "state": None}
    drops: list[int] = []
    since_best = 0
    bar = _progress(n_units, desc, progress)
    try:
        for unit in range(n_units):
            impl.begin_unit(unit)
            lr = impl.current_lr()
            impl.train_mode(True)
            terms = impl.train_unit(unit, feats, labels)
            impl.train_mode(False)
            row = {"unit": unit, "lr": lr, **terms}
            if monitor is not None:
                impl.prepare_inference(feats, labels)
                metric = float(monitor(impl))
                row["metric"] = metric
                if unit >= min_unit and metric > best["metric"]:
                    best = {"metric": metric, "unit": unit, "state": impl.state_dict()}
                    since_best = 0
                else:
                    since_best += 1
                before = impl.current_lr()
                for sch in schedulers:
                    sch.step(metric)
                if impl.current_lr() < before:
                    drops.append(unit)
            elif unit in set(replay_drops):
                impl.scale_lr(plateau_cfg["factor"])
                drops.append(unit)
            history.append(row)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("loss", "metric")})
            if early is not None and since_best > int(early):
                break
    finally:
        bar.close()
    if monitor is not None and best["state"] is not None:
        impl.load_state_dict(best["state"])
    else:
        impl.prepare_inference(feats, labels)
    return {"history": history, "best_unit": best["unit"] if monitor is not None else len(history) - 1,
            "best_metric": best["metric"] if monitor is not None else None, "lr_drops": drops,
            "units_run": len(history)}


def _set_seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def _build(method_cls, cfg, feat_dim, text, phase, device, seed) -> BaselineMethod:
    gen = _set_seed(seed)
    return method_cls(cfg, feat_dim, text, phase, device, gen)


def _carve_validation(labels: np.ndarray, known: Sequence[int], val_unknown: Sequence[int], fraction: float,
                      seed: int, num_classes: int) -> tuple[Phase, np.ndarray, np.ndarray, np.ndarray]:
    """Validation phase inside the known classes: (phase, train idx, held-out seen' idx, val-unknown idx)."""
    known_set = set(int(k) for k in known)
    val_unknown = [int(v) for v in val_unknown]
    stray = [v for v in val_unknown if v not in known_set]
    if stray:
        raise StarReproError(f"selection.val_unknown: classes {stray} are not known classes of the split; the "
                             "validation unknown classes must be carved out of the known ones")
    if len(set(val_unknown)) != len(val_unknown) or not val_unknown:
        raise StarReproError(f"selection.val_unknown: expected distinct classes, got {val_unknown}")
    if not 0.0 < fraction < 1.0:
        raise StarReproError(f"selection.val_seen_fraction: expected a number in (0, 1), got {fraction}")
    seen2 = sorted(known_set - set(val_unknown))
    rng = np.random.RandomState(seed)
    tr, held = [], []
    for c in seen2:
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(fraction * len(idx))) if len(idx) > 1 else 0
        held.append(idx[:k])
        tr.append(idx[k:])
    unk_idx = np.flatnonzero(np.isin(labels, val_unknown))
    if unk_idx.size == 0:
        raise StarReproError(f"selection.val_unknown: no training samples of classes {val_unknown}")
    phase = Phase(np.array(seen2), np.array(val_unknown), num_classes, "val")
    return phase, np.sort(np.concatenate(tr)), np.sort(np.concatenate(held)), unk_idx


def _zsl_monitor(feats: np.ndarray, labels: np.ndarray, unseen: np.ndarray):
    pos = np.full(int(max(labels.max(), unseen.max())) + 1, -1)
    pos[unseen] = np.arange(len(unseen))
    target = torch.as_tensor(pos[labels])

    def monitor(impl: BaselineMethod) -> float:
        t = _torch(feats, impl.device)
        s = _chunked(impl.zsl_scores, t).cpu()
        return 100.0 * float((s.argmax(1) == target).float().mean())
    return monitor


def fit(method: str, cfg: Mapping | None, train_feats: np.ndarray, train_labels: np.ndarray, text: TextInputs,
        split: ClassSplit, *, seed: int = 0, device: str = "cpu", selection: Selection | None = None,
        own_gate: bool = False, train_masked_feats: np.ndarray | None = None,
        progress: bool | None = None) -> BaselineModel:
    """Train baseline `method` on known-class training features and return the model.

    train_feats (N, F) float; train_labels (N,) original 0-based labels (an unknown class raises LeakError);
    text: class embeddings in label order; split: the known/unknown split; selection: `last` | `val` | `test`
    (see `Selection`); own_gate: also fit the method's original GZSL gate (needs `selection.val_unknown`);
    train_masked_feats: SMIE only, features of the masked sequences for its temporal constraint.
    """
    if method not in _METHODS:
        raise StarReproError(f"unknown baseline method {method!r}; expected one of {sorted(_METHODS)}")
    cls = _METHODS[method]
    selection = selection or Selection()
    dev = torch.device(device)
    conf = resolve_config(cls, cfg, split)
    feats = _as_feats(train_feats, "train_feats")
    labels = _as_labels(train_labels, len(feats), "train_labels", split.num_classes)
    split.known_position(labels)          # raises LeakError on any unknown-class sample
    assert_no_unknown(labels, split)
    text = text.checked(split.num_classes, cls.needs_for(conf), method)
    masked = None
    if train_masked_feats is not None:
        if not getattr(cls, "accepts_masked", False):
            raise StarReproError(f"train_masked_feats is only used by SMIE, not by {method}")
        masked = _as_feats(train_masked_feats, "train_masked_feats", feats.shape[1])
        if len(masked) != len(feats):
            raise StarReproError(f"train_masked_feats: expected {len(feats)} rows, got {len(masked)}")
    conf = cls.check_inputs(conf, feats)
    feat_dim = feats.shape[1]

    def tensors(idx):
        f = _torch(feats[idx], dev)
        if masked is not None:
            f = torch.stack([f, _torch(masked[idx], dev)], 1)   # (n, 2, F): full and masked features
        return f, _torch(labels[idx], dev)

    val_record, gate = None, None
    val_best_unit, val_drops = None, []
    if selection.mode == "val" or own_gate:
        if own_gate and not cls.has_own_gate:
            raise StarReproError(f"{method} has no GZSL gate of its own (SMIE reports ZSL only)")
        if not selection.val_unknown:
            raise StarReproError("selection.val_unknown: the validation phase (val selection or the own gate) "
                                 "needs validation-unknown classes carved from the known ones")
        if own_gate and len(selection.val_unknown) != len(split.unknown):
            raise StarReproError(f"selection.val_unknown: the own gate needs as many validation-unknown classes "
                                 f"({len(selection.val_unknown)}) as unknown classes ({len(split.unknown)}): its "
                                 "features are top-k softmaxes")
        vphase, tr, held, unk = _carve_validation(labels, split.known, selection.val_unknown,
                                                  selection.val_seen_fraction, seed, split.num_classes)
        vimpl = _build(cls, conf, feat_dim, text, vphase, dev, seed)
        vf, vl = tensors(tr)
        run = _run(vimpl, vf, vl, n_units=vimpl.n_units(), monitor=_zsl_monitor(feats[unk], labels[unk],
                   vphase.unseen), progress=progress, desc=f"{method} val phase")
        vimpl.finalize(vf, vl)
        ev_idx = np.concatenate([held, unk])
        vscores = _phase_scores_np(vimpl, feats[ev_idx])
        vmask = np.zeros(split.num_classes, bool)
        vmask[vphase.seen] = True
        g = best_gamma(vscores, labels[ev_idx], vmask)
        val_record = {"unknown": [int(c) for c in vphase.unseen], "n_train": int(len(tr)),
                      "n_seen_heldout": int(len(held)), "n_unknown": int(len(unk)),
                      "best_unit": run["best_unit"], "zsl_top1": run["best_metric"], "lr_drops": run["lr_drops"],
                      "gamma": g["gamma"], "seen": g["seen"], "unseen": g["unseen"], "h": g["h"],
                      "history": run["history"]}
        val_best_unit, val_drops = run["best_unit"], run["lr_drops"]
        if own_gate:
            gate = OwnGate(conf["own_gate"], seed)
            gate.fit(vimpl, feats[tr], labels[tr], feats[held], labels[held], feats[unk], labels[unk], split)

    phase = Phase.of_split(split)
    impl = _build(cls, conf, feat_dim, text, phase, dev, seed)
    all_idx = np.arange(len(feats))
    f_all, l_all = tensors(all_idx)
    if selection.mode == "test":
        if selection.feats is None or selection.labels is None:
            raise StarReproError("selection mode 'test' needs the unknown-class test features and labels")
        sf = _as_feats(selection.feats, "selection.feats", feat_dim)
        sl = _as_labels(selection.labels, len(sf), "selection.labels", split.num_classes)
        if split.is_known(sl).any():
            raise StarReproError("selection.labels: test-mode selection takes the unknown-class (ZSL) test samples "
                                 "only; known-class labels were given")
        run = _run(impl, f_all, l_all, n_units=impl.n_units(), monitor=_zsl_monitor(sf, sl, phase.unseen),
                   progress=progress, desc=f"{method} train")
    elif selection.mode == "val":
        n_final = impl.n_units() if val_best_unit is None else int(val_best_unit) + 1
        run = _run(impl, f_all, l_all, n_units=n_final, replay_drops=val_drops,
                   progress=progress, desc=f"{method} train")
    else:
        run = _run(impl, f_all, l_all, n_units=impl.n_units(), progress=progress, desc=f"{method} train")
    impl.finalize(f_all, l_all)
    sel = {"mode": selection.mode, "label": SELECTION_LABELS[selection.mode], "unit_kind": impl.unit_kind,
           "units_run": run["units_run"], "best_unit": run["best_unit"], "best_metric": run["best_metric"],
           "lr_drops": run["lr_drops"]}
    if gate is not None:
        gate.fit_expert_final(impl, feats, labels, split)
    return BaselineModel(method=method, cfg=conf, split_name=split.name, num_classes=split.num_classes,
                         known=tuple(split.known), unknown=tuple(split.unknown), seed=seed, impl=impl,
                         selection=sel, history=run["history"], val=val_record, own_gate=gate)


# ----------------------------------------------------------------------------------------------------------------
# The methods' own GZSL gate (BASELINES_SPEC §1.5)
# ----------------------------------------------------------------------------------------------------------------
def _softmax_np(x: np.ndarray) -> np.ndarray:
    x = x - x.max(1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(1, keepdims=True)


def _topk_sorted(p: np.ndarray, k: int) -> np.ndarray:
    return -np.sort(-p, axis=1)[:, :k]


class LinearExpert:
    """A softmax classifier over the known classes on the pooled features: the stand-in for the Shift-GCN seen
    classifier the original gate uses (whose seen′-only twin for the validation phase we do not train)."""

    def __init__(self, classes: np.ndarray, epochs: int, lr: float, seed: int):
        self.classes = np.asarray(classes)
        self.epochs, self.lr, self.seed = epochs, lr, seed
        self.mean = self.std = None
        self.lin: nn.Linear | None = None

    def fit(self, feats: np.ndarray, labels: np.ndarray) -> "LinearExpert":
        gen = torch.Generator().manual_seed(self.seed)
        self.mean = feats.mean(0)
        self.std = feats.std(0) + 1e-6
        x = torch.as_tensor((feats - self.mean) / self.std)
        pos = np.full(int(max(labels.max(), self.classes.max())) + 1, -1)
        pos[self.classes] = np.arange(len(self.classes))
        y = torch.as_tensor(pos[labels])
        torch.manual_seed(self.seed)
        self.lin = nn.Linear(x.shape[1], len(self.classes))
        opt = torch.optim.Adam(self.lin.parameters(), lr=self.lr)
        for _ in range(self.epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 512):
                b = perm[i:i + 512]
                loss = nn.functional.cross_entropy(self.lin(x[b]), y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return self

    @torch.no_grad()
    def logits(self, feats: np.ndarray) -> np.ndarray:
        return self.lin(torch.as_tensor(((feats - self.mean) / self.std).astype(np.float32))).numpy()


class BinaryLogisticRegression:
    """L2-regularised binary logistic regression, the objective of sklearn's `LogisticRegression(C, lbfgs)`:
    min 0.5·‖w‖² + C·Σ log(1 + exp(−y (xᵀw + b))), intercept unpenalised; solved with L-BFGS in float64.
    (Written here so the gate does not pay sklearn's import time; the solution is the same convex optimum.)"""

    def __init__(self, C: float = 1.0, max_iter: int = 5000, tol: float = 1e-7):
        self.C, self.max_iter, self.tol = C, max_iter, tol
        self.coef_ = self.intercept_ = None

    def fit(self, x: np.ndarray, y01: np.ndarray) -> "BinaryLogisticRegression":
        xt = torch.as_tensor(np.asarray(x, np.float64))
        yt = torch.as_tensor(np.where(np.asarray(y01) == 1, 1.0, -1.0))
        w = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=self.max_iter, tolerance_grad=self.tol,
                                tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = 0.5 * (w * w).sum() + self.C * nn.functional.softplus(-yt * (xt @ w + b)).sum()
            loss.backward()
            return loss
        opt.step(closure)
        self.coef_, self.intercept_ = w.detach().numpy(), float(b.detach())
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Columns: P(class 0), P(class 1), as sklearn orders them."""
        p1 = 1.0 / (1.0 + np.exp(-(np.asarray(x, np.float64) @ self.coef_ + self.intercept_)))
        return np.stack([1 - p1, p1], 1)


class OwnGate:
    """Logistic-regression gate on [top-k softmax of the ZSL model, top-k softmax of the seen expert / T]."""

    def __init__(self, cfg: Mapping, seed: int):
        self.cfg = dict(cfg)
        self.seed = seed
        self.T = self.th = None
        self.lr = None
        self.expert: LinearExpert | None = None
        self.record: dict = {}

    def _features(self, impl: BaselineMethod, feats: np.ndarray, seen_logits: np.ndarray, T: float) -> np.ndarray:
        k = len(impl.phase.unseen)
        if seen_logits.shape[1] < k:
            raise StarReproError(f"own gate: the seen classifier has {seen_logits.shape[1]} classes, fewer than "
                                 f"k = {k} unknown classes")
        impl.train_mode(False)
        z = _chunked(impl.gate_logits, _torch(feats, impl.device)).float().cpu().numpy()
        return np.concatenate([_topk_sorted(_softmax_np(z), k),
                               _topk_sorted(_softmax_np(seen_logits / T), k)], axis=1)

    def fit(self, vimpl: BaselineMethod, tr_f, tr_l, held_f, held_l, unk_f, unk_l, split: ClassSplit) -> None:
        cfg = self.cfg
        expert = LinearExpert(vimpl.phase.seen, cfg["expert_epochs"], cfg["expert_lr"], self.seed).fit(tr_f, tr_l)
        x_f = np.concatenate([unk_f, held_f])
        y = np.concatenate([np.zeros(len(unk_f), np.int64), np.ones(len(held_f), np.int64)])  # 0 = unseen
        rng = np.random.RandomState(self.seed)
        n_u = min(int(cfg["holdout_unseen"]), len(unk_f) // 2)
        n_s = min(int(cfg["holdout_seen"]), len(held_f) // 2)
        hold = np.concatenate([rng.choice(len(unk_f), n_u, replace=False),
                               len(unk_f) + rng.choice(len(held_f), n_s, replace=False)])
        fit_mask = np.ones(len(x_f), bool)
        fit_mask[hold] = False
        logits = expert.logits(x_f)
        best = None
        for T in cfg["temperatures"]:
            feats = self._features(vimpl, x_f, logits, float(T))
            lr = BinaryLogisticRegression(C=1.0, max_iter=5000).fit(feats[fit_mask], y[fit_mask])
            p_unseen = lr.predict_proba(feats[hold])[:, 0]
            for th in cfg["thresholds"]:
                acc = float(((p_unseen > th) == (y[hold] == 0)).mean())
                if best is None or acc > best[0]:
                    best = (acc, float(T), float(th), lr)
        self.record = {"holdout_accuracy": best[0], "T": best[1], "th": best[2], "holdout_unseen": n_u,
                       "holdout_seen": n_s}
        _, self.T, self.th, self.lr = best

    def fit_expert_final(self, impl: BaselineMethod, feats: np.ndarray, labels: np.ndarray,
                         split: ClassSplit) -> None:
        self.expert = LinearExpert(np.array(split.known), self.cfg["expert_epochs"], self.cfg["expert_lr"],
                                   self.seed).fit(feats, labels)

    def predict(self, impl: BaselineMethod, feats: np.ndarray, seen_logits: np.ndarray | None) -> np.ndarray:
        known = impl.phase.seen
        if seen_logits is None:
            seen_logits = self.expert.logits(feats)
        seen_logits = np.asarray(seen_logits, np.float32)
        if seen_logits.shape != (len(feats), len(known)):
            raise StarReproError(f"seen_logits: expected shape ({len(feats)}, {len(known)}) (known classes in "
                                 f"sorted order), got {seen_logits.shape}")
        p_unseen = self.lr.predict_proba(self._features(impl, feats, seen_logits, self.T))[:, 0]
        to_seen = (1 - p_unseen) > self.th if self.cfg["threshold_quirk"] else ~(p_unseen > self.th)
        zsl = _chunked(impl.zsl_scores, _torch(feats, impl.device)).float().cpu().numpy()
        pred_unseen = impl.phase.unseen[zsl.argmax(1)]
        pred_seen = known[seen_logits.argmax(1)]
        return np.where(to_seen, pred_seen, pred_unseen)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------
def to_checkpoint(model: BaselineModel) -> dict:
    """Everything needed to score again (weights, normalised text, config, selection record), for torch.save.
    The own gate is not included; refit it when needed."""
    t = model.impl.text
    return {"format": "star-repro-baseline/1", "method": model.method, "cfg": model.cfg,
            "split_name": model.split_name, "num_classes": model.num_classes, "known": list(model.known),
            "unknown": list(model.unknown), "seed": model.seed, "feat_dim": model.impl.feat_dim,
            "state": model.impl.state_dict(), "selection": model.selection, "history": model.history,
            "val": model.val,
            "text": {k: (None if getattr(t, k) is None else np.asarray(getattr(t, k)))
                     for k in ("names", "verbs", "nouns", "descriptions", "verb_ids", "noun_ids")}}


def from_checkpoint(ckpt: Mapping, device: str = "cpu") -> BaselineModel:
    if ckpt.get("format") != "star-repro-baseline/1":
        raise StarReproError(f"not a baseline checkpoint (format {ckpt.get('format')!r})")
    cls = _METHODS[ckpt["method"]]
    split = ClassSplit(ckpt["split_name"], ckpt["num_classes"], ckpt["unknown"])
    impl = _build(cls, ckpt["cfg"], ckpt["feat_dim"], TextInputs(**ckpt["text"]), Phase.of_split(split),
                  torch.device(device), ckpt["seed"])
    impl.load_state_dict(ckpt["state"])
    impl.train_mode(False)
    return BaselineModel(method=ckpt["method"], cfg=ckpt["cfg"], split_name=ckpt["split_name"],
                         num_classes=ckpt["num_classes"], known=tuple(ckpt["known"]), unknown=tuple(ckpt["unknown"]),
                         seed=ckpt["seed"], impl=impl, selection=ckpt["selection"], history=ckpt["history"],
                         val=ckpt["val"])
