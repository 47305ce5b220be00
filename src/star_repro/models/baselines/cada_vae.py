"""CADA-VAE (Schönfeld et al., CVPR'19) as ported to skeletons in the SynSE repository (BASELINES_SPEC §4),
plus the cyclic linear-VAE machinery SynSE shares with it.

Two linear VAEs (skeleton feature, class-name embedding) trained with reconstruction, annealed KL and switched
cross-reconstruction in cycles of single-batch steps; zero-shot classification by a softmax classifier trained on
latents generated from the unknown classes' text. For GZSL under calibrated stacking the project adds an
all-class classifier over real known-class latents plus generated unknown-class latents (BASELINES_SPEC §7.3).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from star_repro.errors import StarReproError
from star_repro.models.baselines.common import BaselineMethod, split_settings


class LinearVAE(nn.Module):
    """The port's VAE: linear μ and log σ² encoders (no hidden layer), Linear + ReLU decoder, Xavier gain 0.5."""

    def __init__(self, in_dim: int, latent: int):
        super().__init__()
        self.mu = nn.Linear(in_dim, latent)
        self.logvar = nn.Linear(in_dim, latent)
        self.dec = nn.Sequential(nn.Linear(latent, in_dim), nn.ReLU())
        for m in (self.mu, self.logvar, self.dec[0]):
            nn.init.xavier_uniform_(m.weight, gain=0.5)
            nn.init.zeros_(m.bias)

    def encode(self, x):
        return self.mu(x), self.logvar(x)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, gen: torch.Generator, shared_eps: bool) -> torch.Tensor:
    """z = μ + ε·σ. The port draws one ε per sample and broadcasts it over the latent dimensions (`shared_eps`)."""
    shape = (mu.shape[0], 1) if shared_eps else tuple(mu.shape)
    eps = torch.randn(shape, generator=gen).to(mu.device, mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)), summed over dimensions, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


def wasserstein(mu1, logvar1, mu2, logvar2) -> torch.Tensor:
    """2-Wasserstein distance of diagonal Gaussians, averaged over the batch (the port computes it, weight 0)."""
    d = (mu1 - mu2).pow(2).sum(1) + (torch.exp(0.5 * logvar1) - torch.exp(0.5 * logvar2)).pow(2).sum(1)
    return torch.sqrt(d + 1e-12).mean()


def kl_weight(t: int, offset: float, ramp: float, scale: float) -> float:
    """max(0, scale·(t − offset)/ramp): the port's in-cycle KL warm-up, t counted from the cycle start."""
    return max(0.0, scale * (t - offset) / ramp)


def cada_weights(t: int, cfg: dict) -> tuple[float, float, float]:
    """(visual KL k, text KL k₂, cross-reconstruction c) at in-cycle step t (BASELINES_SPEC §4 schedule)."""
    k = kl_weight(t, cfg["kl_offset"], cfg["kl_ramp"], cfg["kl_scale"])
    cross = t > cfg["cross_start"]
    return k, (k if cross else 0.0), (1.0 if cross else 0.0)


def cada_losses(vae_v: LinearVAE, vae_a: LinearVAE, v: torch.Tensor, a: torch.Tensor, weights, gen, shared_eps: bool,
                da_weight: float = 0.0) -> dict[str, torch.Tensor]:
    k, k2, c = weights
    mu_v, lv_v = vae_v.encode(v)
    mu_a, lv_a = vae_a.encode(a)
    z_v = reparameterize(mu_v, lv_v, gen, shared_eps)
    z_a = reparameterize(mu_a, lv_a, gen, shared_eps)
    terms = {
        "rec": F.mse_loss(vae_v.dec(z_v), v) + F.mse_loss(vae_a.dec(z_a), a),
        "kl_visual": kl_divergence(mu_v, lv_v),
        "kl_text": kl_divergence(mu_a, lv_a),
        "cross": F.mse_loss(vae_v.dec(z_a), v) + F.mse_loss(vae_a.dec(z_v), a),
        "da": wasserstein(mu_v, lv_v, mu_a, lv_a),
    }
    terms["loss"] = (terms["rec"] + k * terms["kl_visual"] + k2 * terms["kl_text"] + c * terms["cross"]
                     + da_weight * terms["da"])
    return terms


def fit_softmax_classifier(x: torch.Tensor, y: torch.Tensor, n_classes: int, relu: bool, lr: float, steps: int,
                           seed: int) -> nn.Module:
    """Linear (+ ReLU on the logits, the port's quirk) softmax classifier, full-batch Adam, cross-entropy."""
    with torch.random.fork_rng(devices=[]):      # seeded init without disturbing the caller's global stream
        torch.manual_seed(seed)
        lin = nn.Linear(x.shape[1], n_classes).to(x.device)
    clf = nn.Sequential(lin, nn.ReLU()) if relu else nn.Sequential(lin)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    for _ in range(int(steps)):
        loss = F.cross_entropy(clf(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    clf.eval()
    return clf


class CyclicVAEMethod(BaselineMethod):
    """Shared cycle mechanics of CADA-VAE and SynSE: P single-batch steps per cycle, parameters kept across cycles;
    a ZSL classifier on generated unknown-class latents after each cycle."""
    unit_kind = "cycle"
    OWN_GATE_OVERRIDES = {"temperatures": [1, 2, 3, 4, 5, 6, 7, 8, 9]}
    COMMON_DEFAULTS = {
        "latent_dim": "auto",       # 100 NTU-60 / PKU, 200 NTU-120 (split_settings)
        "cycle_steps": "auto",      # P: 1700 for 5 unknown classes, else 1900
        "cross_start": "auto",      # C: 1400 with P 1700, else 1500
        "cycles": 10,
        "batch_size": 64,
        "lr": 1e-4,
        "kl_offset": 1000,
        "kl_ramp": 3000,
        "kl_scale": 0.1,
        "shared_eps": True,
        "classifier_relu": True,
        "classifier_lr": 1e-3,
        "classifier_steps": 300,
        "zsl_samples_per_class": 500,
        "gzsl_seen_per_class": 200,     # project's GZSL classifier (§7.3): real known-class latents per class ...
        "gzsl_unseen_per_class": 500,   # ... plus generated unknown-class latents per class
    }

    @classmethod
    def finish_config(cls, cfg, split):
        auto = split_settings(split.num_classes, len(split.unknown))
        for key in ("latent_dim", "cycle_steps", "cross_start"):
            if isinstance(cfg[key], dict):    # per split name, e.g. {default: auto, ntu60_seen48_unseen12: 1700}
                cfg[key] = cfg[key].get(split.name, cfg[key].get("default", "auto"))
            if cfg[key] == "auto":
                cfg[key] = auto[key]
            elif isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] <= 0:
                raise StarReproError(f"baselines.{cls.name}.{key}: expected a positive integer, 'auto' or a "
                                     f"mapping split name -> value, got {cfg[key]!r}")
        return cfg

    def __init__(self, cfg, feat_dim, text, phase, device, gen):
        super().__init__(cfg, feat_dim, text, phase, device, gen)
        self.build()
        self.opt = torch.optim.Adam([p for m in self.vae_modules().values() for p in m.parameters()], lr=cfg["lr"])
        self.zsl_clf: nn.Module | None = None
        self.gzsl_clf: nn.Module | None = None
        # Inference-time sampling has its own stream, so the training trajectory is the same in every
        # selection mode (monitoring after a cycle does not shift the minibatch draws).
        self.sample_gen = torch.Generator().manual_seed(gen.initial_seed() + 1)
        self._base_seed = gen.initial_seed()
        self._units_trained = 0

    # ---- subclass hooks ----
    def build(self) -> None:
        raise NotImplementedError

    def vae_modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def step_losses(self, v: torch.Tensor, y: torch.Tensor, t: int, cycle: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def visual_mu(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def visual_sample(self, v: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def generate(self, classes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One sampled latent per entry of `classes` (original ids), from the text encoder(s)."""
        raise NotImplementedError

    # ---- shared ----
    def modules(self):
        mods = dict(self.vae_modules())
        if self.zsl_clf is not None:
            mods["zsl_clf"] = self.zsl_clf
        if self.gzsl_clf is not None:
            mods["gzsl_clf"] = self.gzsl_clf
        return mods

    def load_state_dict(self, state):
        L = self.latent_in()
        if "zsl_clf" in state and self.zsl_clf is None:
            self.zsl_clf = self._empty_clf(L, len(self.phase.unseen))
        if "gzsl_clf" in state and self.gzsl_clf is None:
            self.gzsl_clf = self._empty_clf(L, len(self.phase.classes), relu=False)
        super().load_state_dict(state)

    def _empty_clf(self, in_dim, n, relu: bool | None = None):
        lin = nn.Linear(in_dim, n).to(self.device)
        relu = self.cfg["classifier_relu"] if relu is None else relu
        return nn.Sequential(lin, nn.ReLU()) if relu else nn.Sequential(lin)

    def latent_in(self) -> int:
        return int(self.cfg["latent_dim"])

    def optimizers(self):
        return [self.opt]

    def n_units(self):
        return int(self.cfg["cycles"])

    def train_unit(self, unit, feats, labels):
        sums: dict[str, float] = {}
        n, b = len(feats), int(self.cfg["batch_size"])
        for t in range(int(self.cfg["cycle_steps"])):
            idx = torch.randperm(n, generator=self.gen)[:b].to(self.device)
            terms = self.step_losses(feats[idx], labels[idx], t, unit)
            self.opt.zero_grad()
            terms["loss"].backward()
            self.opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        self._units_trained += 1
        return {k: v / max(int(self.cfg["cycle_steps"]), 1) for k, v in sums.items()}

    def _clf_seed(self, which: int) -> int:
        """Classifier seed from the run seed and the number of cycles trained: the same checkpoint gets the same
        classifier (and the same sampled latents) in every selection mode."""
        return (self._base_seed * 1009 + 2 * self._units_trained + which) % (2 ** 31)

    @torch.no_grad()
    def _generated(self, classes: np.ndarray, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        rep = torch.as_tensor(np.repeat(classes, per_class), device=self.device)
        pos = torch.as_tensor(np.repeat(np.arange(len(classes)), per_class), device=self.device)
        return self.generate(rep, self.sample_gen), pos

    def prepare_inference(self, feats, labels):
        cfg = self.cfg
        self.sample_gen.manual_seed(self._clf_seed(0) + 7)
        x, y = self._generated(self.phase.unseen, int(cfg["zsl_samples_per_class"]))
        self.zsl_clf = fit_softmax_classifier(x, y, len(self.phase.unseen), cfg["classifier_relu"],
                                              cfg["classifier_lr"], cfg["classifier_steps"], self._clf_seed(0))

    def finalize(self, feats, labels):
        """All-class classifier (the project's GZSL path, §7.3): real known-class latents sampled from the visual
        encoder plus generated unknown-class latents; a plain linear softmax as in the original CADA-VAE's GZSL
        classifier (no ReLU on the logits: with it, classes whose logit dies are never predicted)."""
        cfg = self.cfg
        self.sample_gen.manual_seed(self._clf_seed(1) + 7)
        xs, ys = [], []
        lab = labels.cpu().numpy()
        per = int(cfg["gzsl_seen_per_class"])
        with torch.no_grad():
            for j, c in enumerate(self.phase.seen):
                idx = np.flatnonzero(lab == c)
                if idx.size == 0:
                    continue
                pick = torch.randint(0, idx.size, (per,), generator=self.sample_gen).numpy()
                xs.append(self.visual_sample(feats[torch.as_tensor(idx[pick], device=self.device)],
                                             self.sample_gen))
                ys.append(torch.full((per,), j, dtype=torch.long, device=self.device))
            xg, yg = self._generated(self.phase.unseen, int(cfg["gzsl_unseen_per_class"]))
        x = torch.cat(xs + [xg])
        y = torch.cat(ys + [yg + len(self.phase.seen)])
        self.gzsl_clf = fit_softmax_classifier(x, y, len(self.phase.classes), False,
                                               cfg["classifier_lr"], cfg["classifier_steps"], self._clf_seed(1))

    def zsl_scores(self, feats):
        """Softmax of the ZSL classifier on the visual μ (the port's test path), over the unknown classes."""
        return F.softmax(self.zsl_clf(self.visual_mu(feats)), dim=1)

    def gate_logits(self, feats):
        return self.zsl_clf(self.visual_mu(feats))

    def phase_scores(self, feats):
        """Softmax probabilities of the all-class classifier; γ of calibrated stacking acts on these."""
        if self.gzsl_clf is None:
            raise StarReproError(f"{self.name}: the all-class GZSL classifier has not been fitted")
        return F.softmax(self.gzsl_clf(self.visual_mu(feats)), dim=1)


class CADAVAE(CyclicVAEMethod):
    name = "cada_vae"
    DEFAULTS = {**CyclicVAEMethod.COMMON_DEFAULTS,
                "da_weight": 0.0}   # the distribution-alignment (Wasserstein) weight; 0 in the port

    def build(self):
        L = int(self.cfg["latent_dim"])
        self.names = self.text_tensor("names")
        self.vae_v = LinearVAE(self.feat_dim, L).to(self.device)
        self.vae_a = LinearVAE(self.names.shape[1], L).to(self.device)

    def vae_modules(self):
        return {"vae_v": self.vae_v, "vae_a": self.vae_a}

    def step_losses(self, v, y, t, cycle):
        return cada_losses(self.vae_v, self.vae_a, v, self.names[y], cada_weights(t, self.cfg), self.gen,
                           self.cfg["shared_eps"], self.cfg["da_weight"])

    def visual_mu(self, v):
        return self.vae_v.mu(v)

    def visual_sample(self, v, gen):
        return reparameterize(*self.vae_v.encode(v), gen, self.cfg["shared_eps"])

    def generate(self, classes, gen):
        return reparameterize(*self.vae_a.encode(self.names[classes]), gen, self.cfg["shared_eps"])
