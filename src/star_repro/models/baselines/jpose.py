"""JPoSE (Wray et al., ICCV'19) as ported to skeletons in the SynSE repository (BASELINES_SPEC §3).

Separate verb and noun embedding networks, each aligning the visual feature with the class's verb (noun) text, and
a joint network over both; three multi-class hinges plus within-visual hard triplets on shared verbs and nouns.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from star_repro.models.baselines.common import BaselineMethod
from star_repro.models.baselines.revise import multiclass_hinge


def mine_hardest(emb: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Within the batch, per anchor: the same-id sample with the lowest similarity (hardest positive; the anchor
    itself counts) and the different-id sample with the highest similarity (hardest negative). Also returns which
    anchors have any negative at all."""
    with torch.no_grad():
        sim = emb @ emb.T
        same = ids[:, None] == ids[None, :]
        pos = torch.where(same, sim, torch.full_like(sim, float("inf"))).argmin(1)
        neg = torch.where(~same, sim, torch.full_like(sim, float("-inf"))).argmax(1)
        valid = (~same).any(1)
    return pos, neg, valid


def triplet_loss(emb: torch.Tensor, ids: torch.Tensor, margin: float, all_pairs: bool = True) -> torch.Tensor:
    """Hard within-visual triplet loss. The port's quirk (`all_pairs`) sums over every anchor i and every mined
    pair j: (1/B) Σ_i Σ_j max(0, ⟨a_i, neg_j⟩ − ⟨a_i, pos_j⟩ + m); otherwise only i = j."""
    pos, neg, valid = mine_hardest(emb, ids)
    if not bool(valid.any()):
        return emb.sum() * 0.0
    a = emb[valid]
    p, n = emb[pos[valid]], emb[neg[valid]]
    if all_pairs:
        return torch.clamp(emb @ n.T - emb @ p.T + margin, min=0).sum() / len(emb)
    return torch.clamp((a * n).sum(1) - (a * p).sum(1) + margin, min=0).sum() / len(emb)


def text_branch(in_dim: int, hidden: int | None, out_dim: int) -> nn.Sequential:
    if hidden:
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim), nn.ReLU())
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.Tanh())


class PoSNet(nn.Module):
    """One part-of-speech space: a visual branch and a text branch, outputs L2-normalised."""

    def __init__(self, feat_dim: int, text_dim: int, hidden: int | None, out_dim: int):
        super().__init__()
        self.vis = nn.Sequential(nn.Linear(feat_dim, out_dim), nn.Tanh())
        self.txt = text_branch(text_dim, hidden, out_dim)

    def v(self, x):
        return F.normalize(self.vis(x), dim=1)

    def t(self, x):
        return F.normalize(self.txt(x), dim=1)


class JointNet(nn.Module):
    def __init__(self, out_dim: int):
        super().__init__()
        self.vis = nn.Sequential(nn.Linear(2 * out_dim, out_dim), nn.Tanh())
        self.txt = nn.Sequential(nn.Linear(2 * out_dim, out_dim), nn.Tanh())

    def v(self, verb_v, noun_v):
        return F.normalize(self.vis(torch.cat([verb_v, noun_v], 1)), dim=1)

    def t(self, verb_t, noun_t):
        return F.normalize(self.txt(torch.cat([verb_t, noun_t], 1)), dim=1)


def jpose_losses(verb: PoSNet, noun: PoSNet, joint: JointNet, v: torch.Tensor, verb_txt: torch.Tensor,
                 noun_txt: torch.Tensor, cand_verb: torch.Tensor, cand_noun: torch.Tensor, verb_ids: torch.Tensor,
                 noun_ids: torch.Tensor, margin: float, triplet_weight: float, all_pairs: bool,
                 rows: torch.Tensor | None = None):
    """Loss terms of one batch. v: L2-normalised features; verb_txt/noun_txt: each sample's class verb/noun
    embedding (or, with `rows`, each distinct class once and rows[i] the one of sample i: same values, text nets
    run once per class); cand_*: those of every seen class (candidates, without gradient); *_ids: the samples'
    phrase ids."""
    vv, nv = verb.v(v), noun.v(v)
    jv = joint.v(vv, nv)
    vt, nt = verb.t(verb_txt), noun.t(noun_txt)
    jt = joint.t(vt, nt)
    if rows is not None:
        vt, nt, jt = vt[rows], nt[rows], jt[rows]
    with torch.no_grad():
        cvt, cnt = verb.t(cand_verb), noun.t(cand_noun)
        cjt = joint.t(cvt, cnt)
    terms = {
        "hinge_verb": multiclass_hinge(vv, vt, cvt, margin),
        "hinge_noun": multiclass_hinge(nv, nt, cnt, margin),
        "hinge_joint": multiclass_hinge(jv, jt, cjt, margin),
        "triplet_verb": triplet_loss(vv, verb_ids, margin, all_pairs),
        "triplet_noun": triplet_loss(nv, noun_ids, margin, all_pairs),
    }
    terms["loss"] = (terms["hinge_verb"] + terms["hinge_noun"]
                     + triplet_weight * (terms["triplet_verb"] + terms["triplet_noun"]) + terms["hinge_joint"])
    return terms


class JPoSE(BaselineMethod):
    name = "jpose"
    needs = ("names", "verbs", "nouns")
    DEFAULTS = {
        "embed_dim": 50,
        "text_hidden": 512,       # 768/1024-d text: Linear→512, Tanh, Linear→50, ReLU; null: Linear→50, Tanh
        "margin": 0.3,
        "triplet_weight": 0.01,
        "triplet_all_pairs": True,
        "lr": 1e-4,
        "joint_weight_decay": 1e-3,
        "batch_size": 1024,
        "epochs": 2000,
        "early_stop": 40,         # stop after more than this many epochs without a better monitored accuracy
        "plateau": {"factor": 0.1, "patience": 14, "cooldown": 6},
    }

    def __init__(self, cfg, feat_dim, text, phase, device, gen):
        super().__init__(cfg, feat_dim, text, phase, device, gen)
        self.verbs, self.nouns = self.text_tensor("verbs"), self.text_tensor("nouns")
        self.verb_ids = torch.as_tensor(text.verb_ids, device=device)
        self.noun_ids = torch.as_tensor(text.noun_ids, device=device)
        d = cfg["embed_dim"]
        self.verb = PoSNet(feat_dim, self.verbs.shape[1], cfg["text_hidden"], d).to(device)
        self.noun = PoSNet(feat_dim, self.nouns.shape[1], cfg["text_hidden"], d).to(device)
        self.joint = JointNet(d).to(device)
        self.opts = [torch.optim.Adam(self.verb.parameters(), lr=cfg["lr"]),
                     torch.optim.Adam(self.noun.parameters(), lr=cfg["lr"]),
                     torch.optim.Adam(self.joint.parameters(), lr=cfg["lr"], weight_decay=cfg["joint_weight_decay"])]
        self.seen_t = torch.as_tensor(phase.seen, device=device)

    def modules(self):
        return {"verb": self.verb, "noun": self.noun, "joint": self.joint}

    def optimizers(self):
        return self.opts

    def train_unit(self, unit, feats, labels):
        cv, cn = self.verbs[self.seen_t], self.nouns[self.seen_t]

        def batch_terms(idx):
            y = labels[idx]
            cls, rows = torch.unique(y, return_inverse=True)
            return jpose_losses(self.verb, self.noun, self.joint, F.normalize(feats[idx], dim=1), self.verbs[cls],
                                self.nouns[cls], cv, cn, self.verb_ids[y], self.noun_ids[y], self.cfg["margin"],
                                self.cfg["triplet_weight"], self.cfg["triplet_all_pairs"], rows)

        return self.minibatch_epoch(len(feats), batch_terms)

    def phase_scores(self, feats):
        """Cosine between the joint visual and joint text embeddings, over the phase's classes."""
        v = F.normalize(feats, dim=1)
        jv = self.joint.v(self.verb.v(v), self.noun.v(v))
        cls = torch.as_tensor(self.phase.classes, device=self.device)
        jt = self.joint.t(self.verb.t(self.verbs[cls]), self.noun.t(self.nouns[cls]))
        return jv @ jt.T

