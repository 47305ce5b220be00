"""SynSE (Gupta et al., ICIP'21), `synse/synse.py` of its repository (BASELINES_SPEC §5).

Three linear VAEs: skeleton (latent L), noun and verb (latent L/2 each). The skeleton latent's first half is tied
to the noun latent and its second half to the verb latent by cross-reconstruction; the ZSL classifier is trained
on concatenated [noun, verb] latents generated for the unknown classes.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from star_repro.errors import StarReproError
from star_repro.models.baselines.cada_vae import (CyclicVAEMethod, LinearVAE, kl_divergence, kl_weight,
                                                  reparameterize)


def synse_weights(t: int, cycle: int, cfg: dict) -> tuple[float, float, float]:
    """(skeleton KL k, text KL k_txt, cross-reconstruction c) at in-cycle step t of cycle `cycle` (0-based):
    k as in CADA-VAE; k_txt = max(0, scale·(t − C)/ramp) from the third cycle on, else 0; c = 1 after C."""
    k = kl_weight(t, cfg["kl_offset"], cfg["kl_ramp"], cfg["kl_scale"])
    k_txt = kl_weight(t, cfg["cross_start"], cfg["kl_ramp"], cfg["kl_scale"]) if cycle >= cfg["text_kl_from_cycle"] \
        else 0.0
    return k, k_txt, (1.0 if t > cfg["cross_start"] else 0.0)


def synse_losses(vae_v: LinearVAE, vae_n: LinearVAE, vae_w: LinearVAE, v: torch.Tensor, n: torch.Tensor,
                 w: torch.Tensor, weights, gen, shared_eps: bool) -> dict[str, torch.Tensor]:
    """v: skeleton features; n, w: each sample's class noun and verb embeddings."""
    k, k_txt, c = weights
    mu_v, lv_v = vae_v.encode(v)
    mu_n, lv_n = vae_n.encode(n)
    mu_w, lv_w = vae_w.encode(w)
    z_v = reparameterize(mu_v, lv_v, gen, shared_eps)
    z_n = reparameterize(mu_n, lv_n, gen, shared_eps)
    z_w = reparameterize(mu_w, lv_w, gen, shared_eps)
    half = z_n.shape[1]
    terms = {
        "rec": F.mse_loss(vae_v.dec(z_v), v) + F.mse_loss(vae_n.dec(z_n), n) + F.mse_loss(vae_w.dec(z_w), w),
        "kl_visual": kl_divergence(mu_v, lv_v),
        "kl_text": kl_divergence(mu_n, lv_n) + kl_divergence(mu_w, lv_w),
        "cross": (F.mse_loss(vae_n.dec(z_v[:, :half]), n) + F.mse_loss(vae_w.dec(z_v[:, half:]), w)
                  + F.mse_loss(vae_v.dec(torch.cat([z_n, z_w], 1)), v)),
    }
    terms["loss"] = terms["rec"] + k * terms["kl_visual"] + k_txt * terms["kl_text"] + c * terms["cross"]
    return terms


class SynSE(CyclicVAEMethod):
    name = "synse"
    needs = ("names", "verbs", "nouns")
    DEFAULTS = {**CyclicVAEMethod.COMMON_DEFAULTS,
                "text_kl_from_cycle": 2}   # the text KL is off in cycles 0 and 1

    @classmethod
    def finish_config(cls, cfg, split):
        cfg = super().finish_config(cfg, split)
        if cfg["latent_dim"] % 2:
            raise StarReproError(f"baselines.synse.latent_dim: must be even (noun and verb halves), got "
                                 f"{cfg['latent_dim']}")
        return cfg

    def build(self):
        L = int(self.cfg["latent_dim"])
        self.verbs, self.nouns = self.text_tensor("verbs"), self.text_tensor("nouns")
        self.vae_v = LinearVAE(self.feat_dim, L).to(self.device)
        self.vae_n = LinearVAE(self.nouns.shape[1], L // 2).to(self.device)
        self.vae_w = LinearVAE(self.verbs.shape[1], L // 2).to(self.device)

    def vae_modules(self):
        return {"vae_v": self.vae_v, "vae_n": self.vae_n, "vae_w": self.vae_w}

    def step_losses(self, v, y, t, cycle):
        return synse_losses(self.vae_v, self.vae_n, self.vae_w, v, self.nouns[y], self.verbs[y],
                            synse_weights(t, cycle, self.cfg), self.gen, self.cfg["shared_eps"])

    def visual_mu(self, v):
        return self.vae_v.mu(v)

    def visual_sample(self, v, gen):
        return reparameterize(*self.vae_v.encode(v), gen, self.cfg["shared_eps"])

    def generate(self, classes, gen):
        """[noun latent, verb latent] (noun first, matching the skeleton latent's halves)."""
        z_n = reparameterize(*self.vae_n.encode(self.nouns[classes]), gen, self.cfg["shared_eps"])
        z_w = reparameterize(*self.vae_w.encode(self.verbs[classes]), gen, self.cfg["shared_eps"])
        return torch.cat([z_n, z_w], 1)
