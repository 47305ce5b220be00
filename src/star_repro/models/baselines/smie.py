"""SMIE (Zhou et al., ACM MM'23), `YujieOuO/SMIE` (BASELINES_SPEC §6).

A critic T(v, l) scores (skeleton feature, class embedding) pairs; training maximises a Jensen-Shannon mutual-
information estimate with one shifted negative per positive. The optional temporal constraint asks the MI of the
full sequence to exceed that of a motion-masked one by a margin; it needs features of masked sequences, which the
caller computes with `temporal_mask` and the frozen backbone (`fit(..., train_masked_feats=...)`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from star_repro.errors import StarReproError
from star_repro.models.baselines.common import BaselineMethod


class Critic(nn.Module):
    """T(v, l) = MLP(concat[LN(v), l]): Linear→1024, ReLU, Linear→512, ReLU, Linear→1; LN has no affine."""

    def __init__(self, feat_dim: int, text_dim: int, hidden: tuple[int, int] = (1024, 512)):
        super().__init__()
        self.feat_dim = feat_dim
        self.fc1 = nn.Linear(feat_dim + text_dim, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], 1)

    def norm(self, v: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(v, (self.feat_dim,))

    def forward(self, v: torch.Tensor, l: torch.Tensor, layernorm: bool = True) -> torch.Tensor:
        """Pairwise rows: v (B, F), l (B, D) -> (B,)."""
        x = torch.cat([self.norm(v) if layernorm else v, l], 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x))))).squeeze(1)

    def all_pairs(self, v: torch.Tensor, l: torch.Tensor, layernorm: bool, chunk: int = 256) -> torch.Tensor:
        """(N, K) critic values of every sample against every class; the first layer is split into its visual and
        text parts so each is computed once."""
        v = self.norm(v) if layernorm else v
        w_v, w_l = self.fc1.weight[:, :self.feat_dim], self.fc1.weight[:, self.feat_dim:]
        a_l = l @ w_l.T + self.fc1.bias                       # (K, H)
        out = []
        for i in range(0, len(v), chunk):
            a_v = v[i:i + chunk] @ w_v.T                      # (n, H)
            h = F.relu(a_v[:, None, :] + a_l[None, :, :])     # (n, K, H)
            out.append(self.fc3(F.relu(self.fc2(h))).squeeze(-1))
        return torch.cat(out) if out else v.new_zeros((0, len(l)))


def jsd_mi(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon MI estimate (Deep InfoMax form): E[−softplus(−T_pos)] − E[softplus(T_neg)]."""
    return (-F.softplus(-pos)).mean() - F.softplus(neg).mean()


def shifted(x: torch.Tensor) -> torch.Tensor:
    """x_{i+1} for row i, cyclically: SMIE's single negative per positive."""
    return torch.roll(x, shifts=-1, dims=0)


def smie_losses(critic: Critic, v0: torch.Tensor, l: torch.Tensor, v1: torch.Tensor | None, temporal_weight: float,
                margin: float) -> dict[str, torch.Tensor]:
    """v0: full-sequence features, l: each sample's class embedding, v1: masked-sequence features (or None).
    Loss = −I⁰ (+ w·max(0, β − (I⁰ − I¹)) with the temporal constraint; I¹'s negatives use unmasked features)."""
    mi0 = jsd_mi(critic(v0, l), critic(shifted(v0), l))
    terms = {"mi": mi0}
    loss = -mi0
    if v1 is not None:
        mi1 = jsd_mi(critic(v1, l), critic(shifted(v0), l))
        terms["mi_masked"] = mi1
        terms["temporal"] = torch.clamp(margin - (mi0 - mi1), min=0)
        loss = loss + temporal_weight * terms["temporal"]
    terms["loss"] = loss
    return terms


def smie_lr(epoch: int, base_lr: float, warmup: int, epochs: int) -> float:
    """Set by hand each epoch in SMIE: linear warm-up from 0, then a half cosine to 0 at the last epoch."""
    if epoch < warmup:
        return base_lr * epoch / warmup
    return base_lr * (1 + math.cos(math.pi * (epoch - warmup) / max(epochs - warmup, 1))) / 2


def temporal_mask(x: np.ndarray, keep_low: int, keep_random: int, rng: np.random.RandomState) -> np.ndarray:
    """SMIE's motion mask on raw skeletons (N, C, T, V, M): per sample keep the `keep_low` frames of lowest motion
    energy (mean over channels, joints and persons of squared forward + backward differences), in temporal order,
    then a random `keep_random` of those positions, the same for the whole batch. Returns (N, C, keep_random, V, M).
    SMIE uses 35 then 20 of 50 frames; keeping the ratios on 64 frames gives 45 then 26."""
    x = np.asarray(x)
    if x.ndim != 5:
        raise StarReproError(f"temporal_mask: expected skeletons (N, C, T, V, M), got shape {x.shape}")
    n, _, t, _, _ = x.shape
    if not 0 < keep_random <= keep_low <= t:
        raise StarReproError(f"temporal_mask: need 0 < keep_random ({keep_random}) <= keep_low ({keep_low}) <= "
                             f"frames ({t})")
    d = np.diff(x, axis=2)
    fwd = np.concatenate([d, np.zeros_like(x[:, :, :1])], axis=2)
    bwd = np.concatenate([np.zeros_like(x[:, :, :1]), d], axis=2)
    energy = (fwd ** 2 + bwd ** 2).mean(axis=(1, 3, 4))                 # (N, T)
    low = np.sort(np.argsort(energy, axis=1, kind="stable")[:, :keep_low], axis=1)
    pick = np.sort(rng.choice(keep_low, keep_random, replace=False))
    frames = low[:, pick]                                               # (N, keep_random)
    return np.take_along_axis(x, frames[:, None, :, None, None], axis=2)


class SMIE(BaselineMethod):
    name = "smie"
    has_own_gate = False
    accepts_masked = True
    DEFAULTS = {
        "text": "names",           # names | descriptions (SMIE ships both kinds of embeddings)
        "hidden": [1024, 512],
        "lr": 1e-5,
        "weight_decay": 0.0,
        "batch_size": 128,
        "epochs": 100,
        "warmup_epochs": 15,
        "select_after": 0,         # the main track reports the best epoch after 15; the feature track all epochs
        "temporal_weight": 0.5,
        "temporal_margin": 0.1,    # β
        "test_layernorm": False,   # the public test path omits the LayerNorm used in training (quirk)
    }

    @classmethod
    def needs_for(cls, cfg):
        if cfg["text"] not in ("names", "descriptions"):
            raise StarReproError(f"baselines.smie.text: expected 'names' or 'descriptions', got {cfg['text']!r}")
        return (cfg["text"],)

    def __init__(self, cfg, feat_dim, text, phase, device, gen):
        super().__init__(cfg, feat_dim, text, phase, device, gen)
        self.lang = self.text_tensor(cfg["text"])
        self.critic = Critic(feat_dim, self.lang.shape[1], tuple(cfg["hidden"])).to(device)
        self.opt = torch.optim.Adam(self.critic.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])

    def modules(self):
        return {"critic": self.critic}

    def optimizers(self):
        return [self.opt]

    def begin_unit(self, unit):
        lr = smie_lr(unit, self.cfg["lr"], int(self.cfg["warmup_epochs"]), int(self.cfg["epochs"]))
        for group in self.opt.param_groups:
            group["lr"] = lr

    def train_unit(self, unit, feats, labels):
        sums: dict[str, float] = {}
        n = 0
        for idx in self.batches(len(feats), int(self.cfg["batch_size"])):
            f = feats[idx]
            v0, v1 = (f[:, 0], f[:, 1]) if f.ndim == 3 else (f, None)
            terms = smie_losses(self.critic, v0, self.lang[labels[idx]], v1, self.cfg["temporal_weight"],
                                self.cfg["temporal_margin"])
            self.opt.zero_grad()
            terms["loss"].backward()
            self.opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
            n += len(idx)
        return {k: v / max(n, 1) for k, v in sums.items()}

    def phase_scores(self, feats):
        """log σ(T(v, l_c)) = −softplus(−T) over the phase's classes."""
        cls = torch.as_tensor(self.phase.classes, device=self.device)
        t = self.critic.all_pairs(feats, self.lang[cls], self.cfg["test_layernorm"])
        return -F.softplus(-t)
