"""STAR: dual-prompt part alignment on top of a frozen Shift-GCN (STAR_SPEC §6, paper §3.3).

Module and parameter names follow the authors' `ModelMatch` (STAR_SPEC §6.1) so that their trained state dict loads
(`load_authors_star_weights`). Every place where the released code departs from the paper is a field of
`StarModelConfig` (STAR_SPEC §12); the ablations of paper Tables 6–7 are fields too:

- `use_attention=False` ("w/o AM"): the cross-attention is replaced by the mean of the part's tokens mapped to
  `attn_dim` by one linear layer, the same vector for every prompt row; the FFN and the prompt projection
  diag(P W Φᵀ) are kept, so only the attention over space-time tokens is removed.
- `use_va_prompt=False` ("w/o VPP"): the visual-attribute prompts stay as fixed random matrices (same init, never
  trained); queries and the projection then carry no learned attribute knowledge.
- `use_sp_prompt=False` ("w/o SPP"): side information is projected without the semantic-part prompt.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from star_repro.errors import StarReproError
from star_repro.models.shiftgcn import read_state_dict
from star_repro.skeleton import partition

PART_POOLINGS = ("correct", "released")
BN_MODES = ("drift", "frozen")


@dataclass(frozen=True)
class StarModelConfig:
    partition: int = 6
    part_pooling: str = "released"
    heads: int = 4
    m: int = 100               # visual-attribute prompts = latent dimension (as coded, STAR_SPEC §6.1)
    attn_dim: int = 768        # prompt / attention dimension (= the CLIP text dim in the code)
    text_hidden: int = 256     # hidden width of both text projectors (768 -> 256 -> m)
    use_attention: bool = True
    use_va_prompt: bool = True
    use_sp_prompt: bool = True
    bn_mode: str = "drift"
    va_prompt_std: float | str = 1.0  # a number, or "fan_in" = 1/sqrt(dim)
    w_std: float | str = 1.0
    sp_prompt_std: float | str = 1.0

    def __post_init__(self):
        if self.part_pooling not in PART_POOLINGS:
            raise StarReproError(f"part_pooling must be one of {PART_POOLINGS}, got {self.part_pooling!r}")
        if self.bn_mode not in BN_MODES:
            raise StarReproError(f"bn_mode must be one of {BN_MODES}, got {self.bn_mode!r}")
        if self.attn_dim % self.heads:
            raise StarReproError(f"attn_dim ({self.attn_dim}) must be divisible by heads ({self.heads})")
        partition(self.partition)


def resolve_std(value, dim: int) -> float:
    """An init std: a number, or "fan_in" for 1/sqrt(dim) (keeps dot-product logits O(1) at any width)."""
    if value == "fan_in":
        return 1.0 / math.sqrt(dim)
    return float(value)


def pool_persons(y: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Backbone output (N·M, C, T, V), rows ordered (n, m) -> per-sample features (N, C, T, V).

    `correct` averages the persons. `released` reproduces `y.view(N, C, T, V, M).mean(-1)` of the authors' code,
    a raw reinterpretation of memory that mixes channels, frames and joints (STAR_SPEC §4.3).
    """
    nm, c, t, v = y.shape
    if nm % n:
        raise ValueError(f"backbone output has {nm} rows, not a multiple of the batch size {n}")
    persons = nm // n
    if mode == "correct":
        return y.reshape(n, persons, c, t, v).mean(1)
    if mode == "released":
        return y.contiguous().view(n, c, t, v, persons).mean(-1)
    raise ValueError(f"part_pooling must be one of {PART_POOLINGS}, got {mode!r}")


class StarModel(nn.Module):
    """Skeleton stream (per-part cross-attention with visual-attribute prompts) and semantic stream (side
    information + semantic-part prompts, class names), both mapped into an m-dimensional shared space."""

    def __init__(self, backbone: nn.Module, names: torch.Tensor, parts: torch.Tensor, cfg: StarModelConfig,
                 backbone_channels: int | None = None):
        super().__init__()
        part_map = partition(cfg.partition)
        if parts.shape[0] != len(part_map):
            raise StarReproError(f"part embeddings have {parts.shape[0]} parts but partition is {cfg.partition}")
        if parts.shape[1:] != names.shape:
            raise StarReproError(f"part embeddings {tuple(parts.shape)} do not match name embeddings "
                                 f"{tuple(names.shape)} (expected (K, C, D) and (C, D))")
        self.cfg = cfg
        num_classes, text_dim = names.shape
        c_in = int(backbone_channels if backbone_channels is not None else backbone.out_channels)
        d, m, k = cfg.attn_dim, cfg.m, len(part_map)
        self.num_parts, self.num_classes, self.text_dim, self.backbone_channels = k, num_classes, text_dim, c_in
        self.part_names = tuple(part_map)

        self.pretraining_model = backbone
        for p in self.pretraining_model.parameters():
            p.requires_grad_(False)
        for e, joints in enumerate(part_map.values()):
            self.register_buffer(f"part_joints_{e}", torch.tensor(joints, dtype=torch.long), persistent=False)
        # All parts' joints padded to the longest part, for the fused (all parts at once) forward.
        jmax = max(len(j) for j in part_map.values())
        padded = torch.zeros(k, jmax, dtype=torch.long)
        valid = torch.zeros(k, jmax, dtype=torch.bool)
        for e, joints in enumerate(part_map.values()):
            padded[e, :len(joints)] = torch.tensor(joints)
            valid[e, :len(joints)] = True
        self.register_buffer("_joints_padded", padded, persistent=False)
        self.register_buffer("_joints_valid", valid, persistent=False)
        self.register_buffer("name_embeddings", names.detach().float().clone(), persistent=False)
        self.register_buffer("part_embeddings", parts.detach().float().clone(), persistent=False)

        if cfg.use_attention:
            self.body_part_st_attention_networks = nn.ModuleList(
                nn.MultiheadAttention(d, cfg.heads, kdim=c_in, vdim=c_in, batch_first=True) for _ in range(k))
        else:
            self.body_part_pool_proj = nn.ModuleList(nn.Linear(c_in, d) for _ in range(k))
        self.body_part_mapping_matrix1 = nn.ModuleList(nn.Linear(d, d) for _ in range(k))
        self.body_part_mapping_matrix2 = nn.ModuleList(nn.Linear(d, d) for _ in range(k))
        va_std, w_std = resolve_std(cfg.va_prompt_std, d), resolve_std(cfg.w_std, d)
        sp_std = resolve_std(cfg.sp_prompt_std, text_dim)
        self.body_part_prompts = nn.ParameterList(
            nn.Parameter(torch.randn(m, d) * va_std, requires_grad=cfg.use_va_prompt) for _ in range(k))
        self.body_part_w = nn.ParameterList(nn.Parameter(torch.randn(d, d) * w_std) for _ in range(k))
        self.pd_mapping_matrix1 = nn.ModuleList(nn.Linear(text_dim, cfg.text_hidden) for _ in range(k))
        self.pd_mapping_matrix2 = nn.ModuleList(nn.Linear(cfg.text_hidden, m) for _ in range(k))
        self.pd_prompt = nn.ParameterList(
            nn.Parameter(torch.randn(num_classes, text_dim) * sp_std, requires_grad=cfg.use_sp_prompt)
            for _ in range(k))
        self.crossmodal_align1 = nn.Linear(text_dim, cfg.text_hidden)
        self.crossmodal_align2 = nn.Linear(cfg.text_hidden, m)
        self.register_buffer("part_weights_factor", torch.ones(1, k))
        self.train()  # applies bn_mode to the backbone from the start

    # ------------------------------------------------------------------ mode handling
    def train(self, mode: bool = True):
        """The backbone is frozen either way; `drift` lets its BatchNorms follow train mode (as the code does,
        STAR_SPEC §9.1), `frozen` keeps them in eval mode with the pretrained statistics."""
        super().train(mode)
        if self.cfg.bn_mode == "frozen":
            self.pretraining_model.eval()
        return self

    # ------------------------------------------------------------------ skeleton stream
    def backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, V, M) -> pooled backbone features (N, C, T', V); no gradient reaches the frozen backbone."""
        with torch.no_grad():
            y, _ = self.pretraining_model.extract(x)
        return pool_persons(y, x.shape[0], self.cfg.part_pooling)

    def part_tokens(self, feat: torch.Tensor, e: int) -> torch.Tensor:
        """Tokens of part e: (N, T'·|J|, C), t-major and joint-minor as the code orders them."""
        joints = getattr(self, f"part_joints_{e}")
        sel = feat.index_select(3, joints)  # (N, C, T', J)
        return sel.permute(0, 2, 3, 1).reshape(feat.shape[0], -1, feat.shape[1])

    def skeleton_embed(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features -> part embeddings F_v^e (N, K, m) and the global F_v = Σ_e w_e F_v^e (N, m).

        With attention, all K branches run as one batched computation (same parameters, same result as the
        per-part loop `skeleton_embed_per_part` up to float rounding; ~K times fewer kernel launches, which is
        what the many small demo trainings on a CPU are bound by)."""
        part = self._part_embed_fused(feat) if self.cfg.use_attention else self.skeleton_embed_per_part(feat)[0]
        glob = (part * self.part_weights_factor.view(1, -1, 1)).sum(1)
        return part, glob

    def skeleton_embed_per_part(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The straightforward per-part loop through the authors' modules (reference for the fused path)."""
        n = feat.shape[0]
        part_embs = []
        for e in range(self.num_parts):
            tokens = self.part_tokens(feat, e)
            prompt = self.body_part_prompts[e]
            if self.cfg.use_attention:
                query = prompt.unsqueeze(0).expand(n, -1, -1)
                att, _ = self.body_part_st_attention_networks[e](query, tokens, tokens, need_weights=False)
            else:
                att = self.body_part_pool_proj[e](tokens.mean(1)).unsqueeze(1)  # (N, 1, d)
            phi = self.body_part_mapping_matrix2[e](torch.relu(self.body_part_mapping_matrix1[e](att)))
            pw = prompt @ self.body_part_w[e]  # (m, d)
            if self.cfg.use_attention:
                part_embs.append((phi * pw.unsqueeze(0)).sum(-1))  # diag(P W Φᵀ)
            else:
                part_embs.append(phi.squeeze(1) @ pw.T)
        part = torch.stack(part_embs, 1)
        glob = (part * self.part_weights_factor.view(1, -1, 1)).sum(1)
        return part, glob

    def _attention_weights(self):
        """Per-part MHA weights stacked over parts: Wq (K,d,d), Wk/Wv (K,d,C), biases (K,d), Wo (K,d,d), bo."""
        d = self.cfg.attn_dim
        mods = self.body_part_st_attention_networks
        if mods[0]._qkv_same_embed_dim:
            w = torch.stack([a.in_proj_weight for a in mods])
            wq, wk, wv = w[:, :d], w[:, d:2 * d], w[:, 2 * d:]
        else:
            wq = torch.stack([a.q_proj_weight for a in mods])
            wk = torch.stack([a.k_proj_weight for a in mods])
            wv = torch.stack([a.v_proj_weight for a in mods])
        b = torch.stack([a.in_proj_bias for a in mods])
        wo = torch.stack([a.out_proj.weight for a in mods])
        bo = torch.stack([a.out_proj.bias for a in mods])
        return wq, wk, wv, b[:, :d], b[:, d:2 * d], b[:, 2 * d:], wo, bo

    def _part_embed_fused(self, feat: torch.Tensor) -> torch.Tensor:
        """The K attention branches batched. The demo's trainings are bound by the per-sample work here, so the
        1/√d_h scale is applied to the sample-free queries (K·m values instead of the K·N·h·m·L scores; bit for
        bit the same result when √d_h is a power of two, as in the demo's d_h = 16) and padded joints get an
        additive -inf instead of a masked copy of the scores (the same values and gradients): 1.2x per step.
        Equal to the module-by-module loop up to float rounding (tests/test_star_model.py)."""
        n, c, t, _ = feat.shape
        k, jmax = self._joints_padded.shape
        d, h, m = self.cfg.attn_dim, self.cfg.heads, self.cfg.m
        dh = d // h
        # tokens (K, N, T'·Jmax, C), t-major / joint-minor; padded joints are masked out of the softmax
        tok = feat[:, :, :, self._joints_padded.reshape(-1)].view(n, c, t, k, jmax)
        tok = tok.permute(3, 0, 2, 4, 1).reshape(k, n, t * jmax, c)
        pad = torch.zeros(k, t, jmax, dtype=feat.dtype, device=feat.device)
        pad = pad.masked_fill(~self._joints_valid.view(k, 1, jmax), float("-inf")).view(k, 1, 1, 1, t * jmax)
        wq, wk, wv, bq, bk, bv, wo, bo = self._attention_weights()
        prompts = torch.stack(list(self.body_part_prompts))                       # (K, m, d)
        q = torch.baddbmm(bq.unsqueeze(1), prompts, wq.transpose(1, 2)) * dh ** -0.5  # (K, m, d), sample-free
        kk = torch.einsum("knlc,kdc->knld", tok, wk) + bk.view(k, 1, 1, d)
        vv = torch.einsum("knlc,kdc->knld", tok, wv) + bv.view(k, 1, 1, d)
        qh = q.view(k, 1, m, h, dh).permute(0, 1, 3, 2, 4)                          # (K, 1, h, m, dh)
        kh = kk.view(k, n, -1, h, dh).permute(0, 1, 3, 4, 2)                        # (K, N, h, dh, L)
        vh = vv.view(k, n, -1, h, dh).permute(0, 1, 3, 2, 4)                        # (K, N, h, L, dh)
        att = torch.matmul(torch.softmax(torch.matmul(qh, kh) + pad, -1), vh)      # (K, N, h, m, dh)
        att = att.permute(0, 1, 3, 2, 4).reshape(k, n, m, d)
        att = torch.einsum("knmd,ked->knme", att, wo) + bo.view(k, 1, 1, d)
        w1 = torch.stack([l.weight for l in self.body_part_mapping_matrix1])
        b1 = torch.stack([l.bias for l in self.body_part_mapping_matrix1])
        w2 = torch.stack([l.weight for l in self.body_part_mapping_matrix2])
        b2 = torch.stack([l.bias for l in self.body_part_mapping_matrix2])
        phi = torch.relu(torch.einsum("knmd,ked->knme", att, w1) + b1.view(k, 1, 1, d))
        phi = torch.einsum("knmd,ked->knme", phi, w2) + b2.view(k, 1, 1, d)
        pw = torch.bmm(prompts, torch.stack(list(self.body_part_w)))               # (K, m, d)
        return (phi * pw.unsqueeze(1)).sum(-1).permute(1, 0, 2)                     # (N, K, m)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.skeleton_embed(self.backbone_features(x))

    # ------------------------------------------------------------------ semantic stream
    def text_embed(self, with_prompt: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Class-name projections F_cn (C, m) and side-information projections F_si (K, C, m).

        `with_prompt` overrides whether the semantic-part prompt is added (Fig. 4 compares both).
        """
        use_prompt = self.cfg.use_sp_prompt if with_prompt is None else with_prompt
        names = self.crossmodal_align2(torch.relu(self.crossmodal_align1(self.name_embeddings)))
        desc = self.part_embeddings
        if use_prompt:
            desc = desc + torch.stack(list(self.pd_prompt))
        w1 = torch.stack([l.weight for l in self.pd_mapping_matrix1])
        b1 = torch.stack([l.bias for l in self.pd_mapping_matrix1])
        w2 = torch.stack([l.weight for l in self.pd_mapping_matrix2])
        b2 = torch.stack([l.bias for l in self.pd_mapping_matrix2])
        hidden = torch.relu(torch.baddbmm(b1.unsqueeze(1), desc, w1.transpose(1, 2)))
        return names, torch.baddbmm(b2.unsqueeze(1), hidden, w2.transpose(1, 2))

    def head_parameters(self) -> list[nn.Parameter]:
        """What the optimiser trains: everything except the frozen backbone and disabled prompts."""
        return [p for n, p in self.named_parameters()
                if p.requires_grad and not n.startswith("pretraining_model.")]

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("pretraining_model.")}


# ---------------------------------------------------------------------------------- authors' weights
# Modules of the authors' ModelMatch that no optimised loss uses (STAR_SPEC §6.1); their keys are accepted and
# reported as ignored. Also the backbone classifier, whose size differs between pretraining and STAR (§5.6).
AUTHORS_UNUSED_PREFIXES = ("gcn_part_classifier.", "global_fc1.", "global_fc2.", "gcn_flobal_classifier.",
                           "cvae.", "part_classification.", "kl.", "body_part_index_list")
AUTHORS_BACKBONE_PREFIX = "pretraining_model."


def load_authors_star_weights(model: StarModel, source: str | Path | Mapping[str, torch.Tensor]) -> dict:
    """Load a state dict saved by the authors' `ModelMatch` into `model` (built with the official-code profile).

    Accepts a path to a `torch.save`d state dict (or a dict holding one under "state_dict"/"model") or the dict
    itself. Strips a DataParallel `module.` prefix. The backbone's `fc.*` and the unused modules are ignored;
    any other missing, unexpected or mis-shaped key is an error naming it. Returns what was loaded and ignored.
    """
    state, where = read_state_dict(source, "STAR weights file")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}

    own = model.state_dict()
    ignored, to_load = [], {}
    for key, value in state.items():
        if key.startswith(AUTHORS_UNUSED_PREFIXES) or key.startswith(AUTHORS_BACKBONE_PREFIX + "fc."):
            ignored.append(key)
            continue
        if key not in own:
            raise StarReproError(f"{where}: key {key!r} has no counterpart in the STAR model "
                                 "(expected the authors' ModelMatch names, STAR_SPEC §6.1)")
        if not isinstance(value, torch.Tensor):
            raise StarReproError(f"{where}: key {key!r} is a {type(value).__name__}, expected a tensor")
        if tuple(value.shape) != tuple(own[key].shape):
            raise StarReproError(f"{where}: key {key!r} has shape {tuple(value.shape)}, the model expects "
                                 f"{tuple(own[key].shape)} (build the model with the official-code profile "
                                 "and the dataset's class count)")
        to_load[key] = value
    # Optional: the backbone classifier (unused), BatchNorm step counters (unused with a set momentum) and the
    # constant all-ones part weights.
    missing = sorted(k for k in own if k not in to_load
                     and not k.startswith(AUTHORS_BACKBONE_PREFIX + "fc.")
                     and not k.endswith(".num_batches_tracked") and k != "part_weights_factor")
    if missing:
        raise StarReproError(f"{where}: {len(missing)} model keys are missing from the state dict, e.g. "
                             f"{missing[:5]}")
    model.load_state_dict(to_load, strict=False)
    return {"loaded": sorted(to_load), "ignored": sorted(ignored)}
