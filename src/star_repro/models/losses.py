"""STAR's three losses (MPCE, SCE, GCE) and the similarity they share (STAR_SPEC §7, paper Eq. 5–8).

The released code and the paper differ in how logits are formed: the code uses cosine similarity at temperature 1
and adds 1e-12 inside the log; the paper writes plain dot products and a plain cross-entropy. Both are reachable
through `similarity`, `temperature` and `ce_eps`, so one code path serves the `paper` and `official-code` profiles.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SIMILARITIES = ("cosine", "dot")
SCE_CLASSES = ("all", "known")


def similarity(a: torch.Tensor, b: torch.Tensor, mode: str = "cosine", temperature: float = 1.0) -> torch.Tensor:
    """Pairwise scores a (N, L) × b (C, L) -> (N, C); cosine L2-normalises both sides first."""
    if mode == "cosine":
        a = a / a.norm(dim=-1, keepdim=True)
        b = b / b.norm(dim=-1, keepdim=True)
    elif mode != "dot":
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {mode!r}")
    scores = a @ b.transpose(-1, -2)
    return scores / temperature if temperature != 1.0 else scores


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Mean CE. With eps > 0 it is −log(softmax + eps) as the released code writes it; eps = 0 is the stable form."""
    if eps > 0:
        prob = torch.softmax(logits, dim=-1)
        return -(prob.gather(-1, target.unsqueeze(-1)).squeeze(-1) + eps).log().mean()
    return F.cross_entropy(logits, target)


def mpce_loss(part_emb: torch.Tensor, part_text: torch.Tensor, target: torch.Tensor, known: torch.Tensor, *,
              mode: str = "cosine", temperature: float = 1.0, eps: float = 0.0) -> torch.Tensor:
    """Multi-part CE (Eq. 5): each part's skeleton embedding against that part's side information, known classes.

    part_emb (B, K, L); part_text (K, C, L) over all classes; target (B,) = positions in `known` (sorted ids).
    The mean over the batch and then over parts equals one mean over all (part, sample) pairs.
    """
    b, k, _ = part_emb.shape
    logits = similarity(part_emb.transpose(0, 1), part_text[:, known], mode, temperature)  # (K, B, S)
    return cross_entropy(logits.reshape(k * b, -1), target.repeat(k), eps)


def gce_loss(global_emb: torch.Tensor, name_text: torch.Tensor, target: torch.Tensor, known: torch.Tensor, *,
             mode: str = "cosine", temperature: float = 1.0, eps: float = 0.0) -> torch.Tensor:
    """Global CE (Eq. 7): summed skeleton embedding against class-name embeddings of the known classes."""
    return cross_entropy(similarity(global_emb, name_text[known], mode, temperature), target, eps)


def sce_loss(part_text: torch.Tensor, name_text: torch.Tensor, classes: torch.Tensor, *,
             eps: float = 0.0) -> torch.Tensor:
    """Semantic CE (Eq. 6): each class's augmented side information should score highest with its own name.

    As coded: raw dot products, a softmax over the classes in `classes` (all C, unknown included, in the released
    code), averaged over those class anchors and over parts.
    """
    names = name_text[classes]
    k, n = part_text.shape[0], len(classes)
    logits = part_text[:, classes] @ names.T  # (K, n, n)
    target = torch.arange(n, device=part_text.device).repeat(k)
    return cross_entropy(logits.reshape(k * n, n), target, eps)


@dataclass(frozen=True)
class LossConfig:
    similarity: str = "cosine"
    temperature: float = 1.0
    ce_eps: float = 1e-12
    sce_classes: str = "all"
    alpha: float = 0.1  # SCE weight
    beta: float = 0.1   # GCE weight
    use_mpce: bool = True
    use_sce: bool = True
    use_gce: bool = True


def star_loss(part_emb: torch.Tensor, global_emb: torch.Tensor, part_text: torch.Tensor, name_text: torch.Tensor,
              target: torch.Tensor, known: torch.Tensor, cfg: LossConfig) -> dict[str, torch.Tensor]:
    """L = MPCE + α·SCE + β·GCE (Eq. 8), with each term switchable for the Table 7 ablations.

    Returns the total under "loss" and each enabled component under its name (for logging).
    """
    out: dict[str, torch.Tensor] = {}
    total = part_emb.new_zeros(())
    if cfg.use_mpce:
        out["mpce"] = mpce_loss(part_emb, part_text, target, known, mode=cfg.similarity,
                                temperature=cfg.temperature, eps=cfg.ce_eps)
        total = total + out["mpce"]
    if cfg.use_sce:
        classes = (torch.arange(name_text.shape[0], device=name_text.device) if cfg.sce_classes == "all"
                   else known)
        out["sce"] = sce_loss(part_text, name_text, classes, eps=cfg.ce_eps)
        total = total + cfg.alpha * out["sce"]
    if cfg.use_gce:
        out["gce"] = gce_loss(global_emb, name_text, target, known, mode=cfg.similarity,
                              temperature=cfg.temperature, eps=cfg.ce_eps)
        total = total + cfg.beta * out["gce"]
    out["loss"] = total
    return out


def known_tensor(known: Sequence[int], device=None) -> torch.Tensor:
    return torch.as_tensor(list(known), dtype=torch.long, device=device)
