"""Each STAR loss against a plain loop computation written here from STAR_SPEC §7 (the code) and paper Eq. 5–8."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from star_repro.models.losses import (
    LossConfig, cross_entropy, gce_loss, mpce_loss, sce_loss, similarity, star_loss,
)

B, K, C, L = 5, 3, 7, 4
KNOWN = [0, 2, 3, 5, 6]      # ascending known list; 1 and 4 unknown


def _data(seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    part = torch.randn(B, K, L, generator=g, dtype=torch.float64) * scale
    glob = part.sum(1)
    part_text = torch.randn(K, C, L, generator=g, dtype=torch.float64) * scale
    names = torch.randn(C, L, generator=g, dtype=torch.float64) * scale
    target = torch.tensor([0, 4, 1, 3, 2])  # positions in KNOWN
    return part, glob, part_text, names, target


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a)) / math.sqrt(sum(y * y for y in b))


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _neg_log_softmax(logits, i, eps):
    m = max(logits)
    exps = [math.exp(v - m) for v in logits]
    p = exps[i] / sum(exps)
    return -math.log(p + eps) if eps else -(logits[i] - m - math.log(sum(exps)))


def ref_mpce(part, part_text, target, sim, tau=1.0, eps=0.0):
    """(1/K) Σ_e (1/B) Σ_b −log softmax_{a∈S}(sim(F_v^{b,e}, F_si^{e,a})/τ)[y_b] (+eps inside the log, as coded)."""
    p, t = part.tolist(), part_text.tolist()
    total = 0.0
    for e in range(K):
        per = 0.0
        for b in range(B):
            logits = [sim(p[b][e], t[e][a]) / tau for a in KNOWN]
            per += _neg_log_softmax(logits, int(target[b]), eps)
        total += per / B
    return total / K


def ref_gce(glob, names, target, sim, tau=1.0, eps=0.0):
    g, n = glob.tolist(), names.tolist()
    return sum(_neg_log_softmax([sim(g[b], n[a]) / tau for a in KNOWN], int(target[b]), eps)
               for b in range(B)) / B


def ref_sce(part_text, names, classes, eps=0.0):
    """(1/K) Σ_e (1/|Q|) Σ_{a∈Q} −log softmax_{a'∈Q}(F_si^{e,a} · F_cn^{a'})[a] with raw dot products."""
    t, n = part_text.tolist(), names.tolist()
    total = 0.0
    for e in range(K):
        per = 0.0
        for i, a in enumerate(classes):
            per += _neg_log_softmax([_dot(t[e][a], n[a2]) for a2 in classes], i, eps)
        total += per / len(classes)
    return total / K


KN = torch.tensor(KNOWN)


def test_mpce_code_form_cosine_temperature_1_eps():
    part, _, part_text, _, target = _data()
    got = mpce_loss(part, part_text, target, KN, mode="cosine", temperature=1.0, eps=1e-12)
    assert got.item() == pytest.approx(ref_mpce(part, part_text, target, _cos, 1.0, 1e-12), rel=1e-10)


def test_mpce_paper_eq5_dot_product():
    part, _, part_text, _, target = _data(1)
    got = mpce_loss(part, part_text, target, KN, mode="dot", temperature=1.0, eps=0.0)
    assert got.item() == pytest.approx(ref_mpce(part, part_text, target, _dot), rel=1e-10)


def test_mpce_temperature_divides_logits():
    part, _, part_text, _, target = _data(2)
    got = mpce_loss(part, part_text, target, KN, mode="cosine", temperature=0.1)
    assert got.item() == pytest.approx(ref_mpce(part, part_text, target, _cos, 0.1), rel=1e-10)
    assert got.item() != pytest.approx(mpce_loss(part, part_text, target, KN, mode="cosine").item())


def test_gce_code_and_paper_forms():
    _, glob, _, names, target = _data(3)
    assert gce_loss(glob, names, target, KN, mode="cosine", eps=1e-12).item() == \
        pytest.approx(ref_gce(glob, names, target, _cos, 1.0, 1e-12), rel=1e-10)
    assert gce_loss(glob, names, target, KN, mode="dot").item() == \
        pytest.approx(ref_gce(glob, names, target, _dot), rel=1e-10)


def test_sce_all_classes_as_coded_and_known_only():
    _, _, part_text, names, _ = _data(4)
    all_c = torch.arange(C)
    assert sce_loss(part_text, names, all_c, eps=1e-12).item() == \
        pytest.approx(ref_sce(part_text, names, list(range(C)), 1e-12), rel=1e-10)
    assert sce_loss(part_text, names, KN).item() == pytest.approx(ref_sce(part_text, names, KNOWN), rel=1e-10)
    # the two differ: the coded SCE also uses the unknown classes' names and descriptions
    assert sce_loss(part_text, names, all_c).item() != pytest.approx(sce_loss(part_text, names, KN).item())


def test_sce_gradient_reaches_unknown_rows_only_when_all_classes():
    _, _, part_text, names, _ = _data(5)
    for classes, expect in ((torch.arange(C), True), (KN, False)):
        pt = part_text.clone().requires_grad_(True)
        sce_loss(pt, names, classes).backward()
        unknown_grad = pt.grad[:, [1, 4]].abs().sum().item()
        assert (unknown_grad > 0) == expect


def test_star_total_is_mpce_plus_alpha_sce_plus_beta_gce():
    part, glob, part_text, names, target = _data(6)
    cfg = LossConfig(similarity="cosine", temperature=1.0, ce_eps=1e-12, sce_classes="all", alpha=0.3, beta=0.7)
    out = star_loss(part, glob, part_text, names, target, KN, cfg)
    mp = ref_mpce(part, part_text, target, _cos, 1.0, 1e-12)
    sc = ref_sce(part_text, names, list(range(C)), 1e-12)
    gc = ref_gce(glob, names, target, _cos, 1.0, 1e-12)
    assert out["mpce"].item() == pytest.approx(mp, rel=1e-10)
    assert out["sce"].item() == pytest.approx(sc, rel=1e-10)
    assert out["gce"].item() == pytest.approx(gc, rel=1e-10)
    assert out["loss"].item() == pytest.approx(mp + 0.3 * sc + 0.7 * gc, rel=1e-10)


@pytest.mark.parametrize("drop", ["use_mpce", "use_sce", "use_gce"])
def test_ablation_switches_remove_their_term(drop):
    part, glob, part_text, names, target = _data(7)
    full = star_loss(part, glob, part_text, names, target, KN, LossConfig(alpha=0.1, beta=0.1))
    cfg = LossConfig(alpha=0.1, beta=0.1, **{drop: False})
    out = star_loss(part, glob, part_text, names, target, KN, cfg)
    term = drop[4:]
    assert term not in out
    weight = {"mpce": 1.0, "sce": 0.1, "gce": 0.1}[term]
    assert out["loss"].item() == pytest.approx(full["loss"].item() - weight * full[term].item(), rel=1e-10)


def test_paper_profile_losses_stay_finite_with_large_dot_products():
    part, glob, part_text, names, target = _data(8, scale=30.0)  # dot logits in the thousands
    out = star_loss(part, glob, part_text, names, target, KN,
                    LossConfig(similarity="dot", ce_eps=0.0, alpha=0.1, beta=0.1))
    assert all(torch.isfinite(v) for v in out.values())
    assert out["mpce"].item() == pytest.approx(ref_mpce(part, part_text, target, _dot), rel=1e-9)


def test_cross_entropy_eps_form_matches_formula():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]], dtype=torch.float64)
    target = torch.tensor([0, 1])
    p = torch.softmax(logits, 1)
    expect = -(np.log(p[0, 0].item() + 1e-12) + np.log(p[1, 1].item() + 1e-12)) / 2
    assert cross_entropy(logits, target, 1e-12).item() == pytest.approx(expect, rel=1e-12)
    assert cross_entropy(logits, target, 0.0).item() == pytest.approx(expect, rel=1e-9)


def test_similarity_modes():
    a = torch.tensor([[3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert similarity(a, b, "cosine")[0].tolist() == pytest.approx([0.6, 0.8])
    assert similarity(a, b, "dot").tolist() == [[3.0, 8.0]]
    assert similarity(a, b, "cosine", 0.5)[0].tolist() == pytest.approx([1.2, 1.6])
    with pytest.raises(ValueError, match="similarity"):
        similarity(a, b, "euclid")
