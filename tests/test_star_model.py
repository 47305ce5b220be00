"""The STAR model: released part pooling against an explicit index construction (STAR_SPEC §4.3), the forward
against Eq. 1–4 written out, the fused path against the per-part modules, freezing, ablations, and loading a
state dict with the authors' ModelMatch names (§6.1)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from star_repro.errors import StarReproError
from star_repro.models.shiftgcn import ShiftGCN
from star_repro.models.star import StarModel, StarModelConfig, load_authors_star_weights, pool_persons
from star_repro.skeleton import partition


def released_reference(y: torch.Tensor, n: int) -> torch.Tensor:
    """§4.3 literally: per sample, flatten [person 0 block, person 1 block] into F; output element (c', t', v')
    averages F[2q] and F[2q+1] with q its flat position; i.e. original person [c' ≥ C/2], original channel
    2(c' mod C/2) + [s ≥ T'V/2], positions 2s mod T'V and 2s mod T'V + 1, s = t'V + v'."""
    _, c, t, v = y.shape
    out = torch.empty(n, c, t, v, dtype=y.dtype)
    half, grid = c // 2, t * v
    for b in range(n):
        for cc in range(c):
            person = 1 if cc >= half else 0
            for tt in range(t):
                for vv in range(v):
                    s = tt * v + vv
                    ch = 2 * (cc % half) + (1 if s >= grid // 2 else 0)
                    p = (2 * s) % grid
                    a = y[b * 2 + person, ch, p // v, p % v]
                    bb = y[b * 2 + person, ch, (p + 1) // v, (p + 1) % v]
                    out[b, cc, tt, vv] = 0.5 * (a + bb)
    return out


def test_released_pooling_matches_explicit_index_construction():
    g = torch.Generator().manual_seed(0)
    n, c, t, v = 2, 6, 4, 25
    y = torch.randn(n * 2, c, t, v, generator=g, dtype=torch.float64)
    assert torch.equal(pool_persons(y, n, "released"), released_reference(y, n))


def test_correct_pooling_is_person_mean():
    y = torch.randn(6, 4, 3, 25, dtype=torch.float64)
    expect = torch.stack([(y[2 * b] + y[2 * b + 1]) / 2 for b in range(3)])
    assert torch.allclose(pool_persons(y, 3, "correct"), expect)


def test_released_pooling_joint_coverage_of_the_spec():
    """With the real sizes (C=256, T'=16), each named part reads the original joints listed in §4.3."""
    c, t, v = 256, 16, 25
    joint_code = (2.0 ** torch.arange(v, dtype=torch.float64)).view(1, 1, 1, v).expand(2, c, t, v).contiguous()
    pooled = pool_persons(joint_code, 1, "released")[0] * 2  # sum of two distinct powers of two
    expect = {"head": {4, 5, 6, 7, 15, 16}, "hand": {14, 15, *range(17, 25)}, "arm": {*range(8, 14), *range(16, 22)},
              "hip": {0, 1, 2, 3}, "leg": {0, 1, 2, 7, 8, 9, 10, 24}, "foot": {3, 4, 5, 6, 11, 12, 13, 14}}
    for name, joints in partition(6).items():
        codes = pooled[:, :, list(joints)].reshape(-1).long().unique().tolist()
        covered = {j for code in codes for j in range(v) if code >> j & 1}
        assert covered == expect[name], name


def _model(d=24, heads=2, m=5, partition_=6, classes=7, text_dim=12, width=0.0625, **kw):
    torch.manual_seed(0)
    backbone = ShiftGCN(classes - 2, width=width)
    cfg = StarModelConfig(partition=partition_, part_pooling=kw.pop("pooling", "correct"), heads=heads, m=m,
                          attn_dim=d, text_hidden=8, bn_mode=kw.pop("bn_mode", "frozen"), **kw)
    k = len(partition(partition_))
    return StarModel(backbone, torch.randn(classes, text_dim), torch.randn(k, classes, text_dim), cfg)


def _randomise_biases(model):
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.MultiheadAttention):
                mod.in_proj_bias.normal_()
                mod.out_proj.bias.normal_()


@pytest.mark.parametrize("d", [16, 24])  # 16 = backbone channels: packed q/k/v weights; 24: separate
def test_fused_forward_equals_per_part_modules(d):
    model = _model(d=d)
    _randomise_biases(model)
    feat = torch.rand(3, model.backbone_channels, 4, 25)
    fused, glob = model.skeleton_embed(feat)
    loop, glob_loop = model.skeleton_embed_per_part(feat)
    assert torch.allclose(fused, loop, atol=1e-5, rtol=1e-5)
    assert torch.allclose(glob, glob_loop, atol=1e-4, rtol=1e-5)


def test_part_embedding_follows_eq1_to_3_written_out():
    """F_v^e[i] = Σ_{u,f} P[i,u] W[u,f] Φ[i,f], Φ = FFN(concat_h softmax(Q K^T/√d_h) V · W_o), Q = P W_q,
    K = X W_k, V = X W_v, X the part's tokens (t-major, joint-minor); the global embedding is the sum over parts."""
    model = _model(d=24, heads=3, m=4)
    _randomise_biases(model)
    feat = torch.rand(2, model.backbone_channels, 4, 25)
    part, glob = model.skeleton_embed(feat)
    e, att_mod = 1, model.body_part_st_attention_networks[1]
    joints = partition(6)["hand"]
    d, h = 24, 3
    dh = d // h
    bq, bk, bv = att_mod.in_proj_bias.split(d)
    prompt, w = model.body_part_prompts[e], model.body_part_w[e]
    for b in range(2):
        x = torch.stack([feat[b, :, t, j] for t in range(4) for j in joints])  # tokens (T'·|J|, C)
        q = prompt @ att_mod.q_proj_weight.T + bq
        k, v = x @ att_mod.k_proj_weight.T + bk, x @ att_mod.v_proj_weight.T + bv
        heads = [torch.softmax(q[:, i * dh:(i + 1) * dh] @ k[:, i * dh:(i + 1) * dh].T / math.sqrt(dh), -1)
                 @ v[:, i * dh:(i + 1) * dh] for i in range(h)]
        att = torch.cat(heads, 1) @ att_mod.out_proj.weight.T + att_mod.out_proj.bias
        f1, f2 = model.body_part_mapping_matrix1[e], model.body_part_mapping_matrix2[e]
        phi = torch.relu(att @ f1.weight.T + f1.bias) @ f2.weight.T + f2.bias
        expect = torch.stack([sum(prompt[i, u] * (w[u] * phi[i]).sum() for u in range(d)) for i in range(4)])
        assert torch.allclose(part[b, e], expect, atol=1e-4, rtol=1e-4)
    assert torch.allclose(glob, part.sum(1), atol=1e-5)


def test_semantic_stream_with_and_without_prompt():
    model = _model()
    names, parts = model.text_embed()
    e = 2
    d_e = model.part_embeddings[e] + model.pd_prompt[e]
    p1, p2 = model.pd_mapping_matrix1[e], model.pd_mapping_matrix2[e]
    assert torch.allclose(parts[e], p2(torch.relu(p1(d_e))), atol=1e-6)
    a1, a2 = model.crossmodal_align1, model.crossmodal_align2
    assert torch.allclose(names, a2(torch.relu(a1(model.name_embeddings))), atol=1e-6)
    _, no_prompt = model.text_embed(with_prompt=False)
    assert torch.allclose(no_prompt[e], p2(torch.relu(p1(model.part_embeddings[e]))), atol=1e-6)
    assert parts.shape == (6, 7, 5) and names.shape == (7, 5)


def test_backbone_frozen_and_bn_modes():
    for mode, expect_training in (("frozen", False), ("drift", True)):
        model = _model(bn_mode=mode).train()
        assert model.pretraining_model.training is expect_training
        assert model.body_part_mapping_matrix1.training
        assert not any(p.requires_grad for p in model.pretraining_model.parameters())
        assert not any(p is q for p in model.head_parameters() for q in model.pretraining_model.parameters())
        model.eval()
        assert not model.pretraining_model.training


def test_drift_updates_backbone_bn_statistics_frozen_does_not():
    x = torch.randn(4, 3, 16, 25, 2)
    for mode, changes in (("frozen", False), ("drift", True)):
        model = _model(bn_mode=mode).train()
        before = model.pretraining_model.data_bn.running_mean.clone()
        model.backbone_features(x)
        assert (not torch.equal(before, model.pretraining_model.data_bn.running_mean)) is changes


def test_gradients_reach_prompts_and_projectors_not_backbone():
    model = _model().train()
    part, glob = model(torch.randn(2, 3, 16, 25, 2))
    names, parts = model.text_embed()
    (part.sum() + glob.sum() + (parts ** 2).sum() + names.sum()).backward()
    assert model.body_part_prompts[0].grad is not None and model.body_part_prompts[0].grad.abs().sum() > 0
    assert model.pd_prompt[0].grad.abs().sum() > 0
    assert model.body_part_st_attention_networks[3].k_proj_weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.pretraining_model.parameters())


def test_ablation_va_prompt_is_fixed_and_sp_prompt_unused():
    model = _model(use_va_prompt=False, use_sp_prompt=False)
    params = {id(p) for p in model.head_parameters()}
    assert not any(id(p) in params for p in model.body_part_prompts)
    assert not any(id(p) in params for p in model.pd_prompt)
    _, parts = model.text_embed()
    with torch.no_grad():
        for p in model.pd_prompt:
            p.add_(100.0)
    _, parts_after = model.text_embed()
    assert torch.equal(parts, parts_after)  # the semantic-part prompt does not enter


def test_ablation_without_attention_pools_tokens():
    model = _model(use_attention=False)
    assert not hasattr(model, "body_part_st_attention_networks")
    feat = torch.rand(2, model.backbone_channels, 4, 25)
    part, glob = model.skeleton_embed(feat)
    assert part.shape == (2, 6, 5)
    # the embedding depends on the tokens only through their mean: permuting time leaves it unchanged
    assert torch.allclose(model.skeleton_embed(feat.flip(2))[0], part, atol=1e-5)


@pytest.mark.parametrize("k", [2, 4])
def test_coarser_partitions(k):
    model = _model(partition_=k)
    part, glob = model(torch.randn(2, 3, 16, 25, 2))
    assert part.shape == (2, k, 5) and glob.shape == (2, 5)
    assert len(model.body_part_st_attention_networks) == k


def test_embedding_shape_errors():
    backbone = ShiftGCN(5, width=0.0625)
    with pytest.raises(StarReproError, match="partition is 6"):
        StarModel(backbone, torch.randn(7, 12), torch.randn(4, 7, 12), StarModelConfig(attn_dim=8, heads=2, m=4))
    with pytest.raises(StarReproError, match="divisible"):
        StarModelConfig(attn_dim=10, heads=4)


# ------------------------------------------------------------------------------------ the authors' weights
def authors_state_dict(backbone_state, classes=60, seed=0):
    """A state dict named and shaped as STAR_SPEC §6.1 lists the authors' ModelMatch (official-code dims)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd = {f"pretraining_model.{k}": v.clone() for k, v in backbone_state.items()}
    for e in range(6):
        a = f"body_part_st_attention_networks.{e}."
        sd.update({a + "q_proj_weight": r(768, 768), a + "k_proj_weight": r(768, 256),
                   a + "v_proj_weight": r(768, 256), a + "in_proj_bias": r(3 * 768),
                   a + "out_proj.weight": r(768, 768), a + "out_proj.bias": r(768)})
        for i in (1, 2):
            sd[f"body_part_mapping_matrix{i}.{e}.weight"] = r(768, 768)
            sd[f"body_part_mapping_matrix{i}.{e}.bias"] = r(768)
        sd[f"body_part_prompts.{e}"] = r(100, 768)
        sd[f"body_part_w.{e}"] = r(768, 768)
        sd[f"pd_mapping_matrix1.{e}.weight"], sd[f"pd_mapping_matrix1.{e}.bias"] = r(256, 768), r(256)
        sd[f"pd_mapping_matrix2.{e}.weight"], sd[f"pd_mapping_matrix2.{e}.bias"] = r(100, 256), r(100)
        sd[f"pd_prompt.{e}"] = r(classes, 768)
        sd[f"gcn_part_classifier.{e}.weight"], sd[f"gcn_part_classifier.{e}.bias"] = r(100, 256), r(100)
    sd["crossmodal_align1.weight"], sd["crossmodal_align1.bias"] = r(256, 768), r(256)
    sd["crossmodal_align2.weight"], sd["crossmodal_align2.bias"] = r(100, 256), r(100)
    sd["part_weights_factor"] = torch.ones(1, 6)
    sd["global_fc1.weight"], sd["global_fc1.bias"] = r(256, 600), r(256)
    sd["global_fc2.weight"], sd["global_fc2.bias"] = r(100, 256), r(100)
    sd["gcn_flobal_classifier.weight"], sd["gcn_flobal_classifier.bias"] = r(classes, 256), r(classes)
    return sd


@pytest.fixture(scope="module")
def official_model():
    torch.manual_seed(0)
    backbone = ShiftGCN(55)
    cfg = StarModelConfig(partition=6, part_pooling="released", heads=4, m=100, attn_dim=768, text_hidden=256,
                          bn_mode="drift")
    model = StarModel(backbone, torch.randn(60, 768), torch.randn(6, 60, 768), cfg)
    authors_backbone = ShiftGCN(60).state_dict()  # the authors' STAR builds the backbone with fc for 60 classes
    return model, authors_state_dict(authors_backbone)


def test_authors_weights_load_under_official_code_profile(official_model, tmp_path):
    model, sd = official_model
    path = tmp_path / "runs-40-1234.pt"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)  # as saved from DataParallel
    report = load_authors_star_weights(model, path)
    assert "pretraining_model.fc.weight" in report["ignored"] and "global_fc1.weight" in report["ignored"]
    state = model.state_dict()
    for key in ("body_part_st_attention_networks.3.k_proj_weight", "body_part_prompts.5", "pd_prompt.0",
                "crossmodal_align2.bias", "pretraining_model.l10.tcn1.bn.running_var"):
        assert torch.equal(state[key], sd[key]), key
    part, glob = model.eval()(torch.randn(1, 3, 64, 25, 2))
    assert part.shape == (1, 6, 100) and torch.isfinite(glob).all()


def test_authors_weights_errors_name_the_key(official_model):
    model, sd = official_model
    bad = dict(sd)
    bad["pd_prompt.2"] = torch.zeros(120, 768)
    with pytest.raises(StarReproError, match=r"pd_prompt\.2.*\(120, 768\)"):
        load_authors_star_weights(model, bad)
    bad = dict(sd)
    bad["mystery_module.weight"] = torch.zeros(3)
    with pytest.raises(StarReproError, match="mystery_module"):
        load_authors_star_weights(model, bad)
    bad = {k: v for k, v in sd.items() if k != "body_part_w.4"}
    with pytest.raises(StarReproError, match="missing"):
        load_authors_star_weights(model, bad)
