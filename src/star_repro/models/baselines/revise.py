"""ReViSE (Tsai et al., ICCV'17) as ported to skeletons in the SynSE repository (BASELINES_SPEC §2).

Two autoencoders (visual, text) whose 100-d codes are tied by an MMD term and mapped by tanh heads into a
50-d space where a multi-class hinge ranks the sample's own class above every other seen class.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from star_repro.errors import StarReproError
from star_repro.models.baselines.common import BaselineMethod


def relu_mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers each followed by ReLU (the port's encoders and decoders, output layer included)."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def mmd_loss(x: torch.Tensor, y: torch.Tensor, scale: float = 32.0) -> torch.Tensor:
    """Biased MMD² with the single Gaussian kernel exp(-scale·‖a − b‖²): mean K_xx + K_yy − K_xy − K_yx."""
    def k(a, b):
        d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return torch.exp(-scale * d2.clamp(min=0))
    return k(x, x).mean() + k(y, y).mean() - k(x, y).mean() - k(y, x).mean()


def multiclass_hinge(t_v: torch.Tensor, t_pos: torch.Tensor, t_cands: torch.Tensor, margin: float) -> torch.Tensor:
    """(1/B) Σ_i Σ_c max(0, ⟨t_v,i, t_c⟩ − ⟨t_v,i, t_pos,i⟩ + m) over all candidate classes c (own class included,
    which adds the constant m, as in the port)."""
    pos = (t_v * t_pos).sum(1, keepdim=True)
    return torch.clamp(t_v @ t_cands.T - pos + margin, min=0).sum(1).mean()


class ReViSENet(nn.Module):
    def __init__(self, feat_dim: int, text_dim: int, code_dim: int, embed_dim: int, visual_hidden: int | None,
                 text_hidden: int | None):
        super().__init__()
        vh = [visual_hidden] if visual_hidden else []
        th = [text_hidden] if text_hidden else []
        self.v_enc = relu_mlp([feat_dim, *vh, code_dim])
        self.v_dec = relu_mlp([code_dim, *vh[::-1], feat_dim])
        self.v_head = nn.Sequential(nn.Linear(code_dim, embed_dim), nn.Tanh())
        self.t_enc = relu_mlp([text_dim, *th, code_dim])
        self.t_dec = relu_mlp([code_dim, *th[::-1], text_dim])
        self.t_head = nn.Sequential(nn.Linear(code_dim, embed_dim), nn.Tanh())

    def visual(self, v):
        h = self.v_enc(v)
        return h, self.v_dec(h), self.v_head(h)

    def textual(self, a):
        h = self.t_enc(a)
        return h, self.t_dec(h), self.t_head(h)


def revise_losses(net: ReViSENet, v: torch.Tensor, a: torch.Tensor, cand_text: torch.Tensor, margin: float,
                  mmd_scale: float, rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The four loss terms of one batch: v (pre-processed features), a (each sample's class-name embedding),
    cand_text (the seen classes' embeddings; their heads are computed without gradient). With `rows`, `a` holds
    each distinct class once and rows[i] says which one sample i has: the text AE then runs once per class (same
    values and gradients, a fraction of the cost at batch 1024)."""
    h_v, rec_v, t_v = net.visual(v)
    h_a, rec_a, t_a = net.textual(a)
    if rows is not None:
        a, h_a, rec_a, t_a = a[rows], h_a[rows], rec_a[rows], t_a[rows]
    with torch.no_grad():
        t_c = net.t_head(net.t_enc(cand_text))
    terms = {
        "hinge": multiclass_hinge(t_v, t_a, t_c, margin),
        "rec_visual": nn.functional.mse_loss(rec_v, v),
        "rec_text": nn.functional.mse_loss(rec_a, a),
        "mmd": mmd_loss(h_v, h_a, mmd_scale),
    }
    terms["loss"] = terms["hinge"] + terms["rec_visual"] + terms["rec_text"] + terms["mmd"]
    return terms


class ReViSE(BaselineMethod):
    name = "revise"
    DEFAULTS = {
        "log_transform": True,   # v <- log(1 + v) at training and test time
        "code_dim": 100,
        "embed_dim": 50,
        "visual_hidden": None,   # shallow visual AE for 256-d features
        "text_hidden": 512,      # deep text AE for sentence-encoder embeddings (768/1024-d)
        "margin": 0.3,
        "mmd_scale": 32.0,
        "lr": 1e-4,
        "text_weight_decay": 1e-3,
        "batch_size": 1024,
        "epochs": 300,
        "plateau": {"factor": 0.1, "patience": 25, "cooldown": 3},
    }

    @classmethod
    def check_inputs(cls, cfg, feats: np.ndarray):
        if cfg["log_transform"] and feats.size and float(feats.min()) <= -1.0:
            raise StarReproError(f"revise: log(1 + v) needs features > -1 (pooled post-ReLU features are >= 0); "
                                 f"train_feats has minimum {float(feats.min()):.4g}; set log_transform: false")
        return cfg

    def __init__(self, cfg, feat_dim, text, phase, device, gen):
        super().__init__(cfg, feat_dim, text, phase, device, gen)
        self.names = self.text_tensor("names")
        self.net = ReViSENet(feat_dim, self.names.shape[1], cfg["code_dim"], cfg["embed_dim"],
                             cfg["visual_hidden"], cfg["text_hidden"]).to(device)
        visual = [p for n, p in self.net.named_parameters() if n.startswith("v_")]
        textual = [p for n, p in self.net.named_parameters() if n.startswith("t_")]
        self.opts = [torch.optim.Adam(visual, lr=cfg["lr"]),
                     torch.optim.Adam(textual, lr=cfg["lr"], weight_decay=cfg["text_weight_decay"])]
        self.seen_t = torch.as_tensor(phase.seen, device=device)

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return self.opts

    def pre(self, v: torch.Tensor) -> torch.Tensor:
        return torch.log1p(torch.clamp(v, min=-1 + 1e-6)) if self.cfg["log_transform"] else v

    def train_unit(self, unit, feats, labels):
        cands = self.names[self.seen_t]

        def batch_terms(idx):
            cls, rows = torch.unique(labels[idx], return_inverse=True)
            return revise_losses(self.net, self.pre(feats[idx]), self.names[cls], cands,
                                 self.cfg["margin"], self.cfg["mmd_scale"], rows)

        return self.minibatch_epoch(len(feats), batch_terms)

    def phase_scores(self, feats):
        """⟨t_v, t_c⟩ in the 50-d space (dot product, as the port), over the phase's classes."""
        t_v = self.net.v_head(self.net.v_enc(self.pre(feats)))
        cls = torch.as_tensor(self.phase.classes, device=self.device)
        t_c = self.net.t_head(self.net.t_enc(self.names[cls]))
        return t_v @ t_c.T
