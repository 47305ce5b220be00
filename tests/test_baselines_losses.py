"""Each baseline loss against a plain reference computation of BASELINES_SPEC's formulas on small random tensors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from star_repro.models.baselines.cada_vae import (LinearVAE, cada_losses, cada_weights, kl_divergence, reparameterize,
                                                  wasserstein)
from star_repro.metrics import gzsl_metrics
from star_repro.models.baselines.common import best_gamma
from star_repro.models.baselines.jpose import JointNet, PoSNet, jpose_losses, mine_hardest, triplet_loss
from star_repro.models.baselines.revise import ReViSENet, mmd_loss, multiclass_hinge, revise_losses
from star_repro.models.baselines.smie import Critic, jsd_mi, smie_losses, smie_lr, temporal_mask
from star_repro.models.baselines.synse import synse_losses, synse_weights

rng = np.random.RandomState(0)


def t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def npa(x):
    return x.detach().double().numpy()


def softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def mse(a, b):
    return float(np.mean((np.asarray(a) - np.asarray(b)) ** 2))


def np_seq(seq: nn.Sequential, x: np.ndarray) -> np.ndarray:
    """Plain numpy forward through Linear / ReLU / Tanh layers."""
    for layer in seq:
        if isinstance(layer, nn.Linear):
            x = x @ npa(layer.weight).T + npa(layer.bias)
        elif isinstance(layer, nn.ReLU):
            x = np.maximum(x, 0)
        elif isinstance(layer, nn.Tanh):
            x = np.tanh(x)
        else:
            raise TypeError(layer)
    return x


def l2n(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ------------------------------------------------------------------ ReViSE
def ref_mmd(x, y, scale):
    def k(a, b):
        return np.array([[math.exp(-scale * float(np.sum((ai - bj) ** 2))) for bj in b] for ai in a])
    return k(x, x).mean() + k(y, y).mean() - k(x, y).mean() - k(y, x).mean()


def ref_hinge(tv, tpos, tc, m):
    total = 0.0
    for i in range(len(tv)):
        pos = float(tv[i] @ tpos[i])
        total += sum(max(0.0, float(tv[i] @ tc[c]) - pos + m) for c in range(len(tc)))
    return total / len(tv)


def test_mmd_matches_reference():
    x, y = rng.randn(6, 4) * 0.3, rng.randn(6, 4) * 0.3 + 0.1
    assert float(mmd_loss(t(x), t(y), 32.0)) == pytest.approx(ref_mmd(x, y, 32.0), abs=1e-10)
    assert float(mmd_loss(t(x), t(x), 32.0)) == pytest.approx(0.0, abs=1e-12)


def test_multiclass_hinge_matches_reference():
    tv, tpos, tc = rng.randn(5, 3), rng.randn(5, 3), rng.randn(4, 3)
    assert float(multiclass_hinge(t(tv), t(tpos), t(tc), 0.3)) == pytest.approx(ref_hinge(tv, tpos, tc, 0.3))


def test_revise_total_loss_matches_reference():
    torch.manual_seed(0)
    net = ReViSENet(8, 6, 5, 3, None, 7).double()
    v, a, cands = np.abs(rng.randn(4, 8)), l2n(rng.randn(4, 6)), l2n(rng.randn(5, 6))
    terms = revise_losses(net, t(v), t(a), t(cands), 0.3, 32.0)
    h_v = np_seq(net.v_enc, v)
    h_a = np_seq(net.t_enc, a)
    t_v, t_a = np_seq(net.v_head, h_v), np_seq(net.t_head, h_a)
    t_c = np_seq(net.t_head, np_seq(net.t_enc, cands))
    ref = {"hinge": ref_hinge(t_v, t_a, t_c, 0.3), "rec_visual": mse(np_seq(net.v_dec, h_v), v),
           "rec_text": mse(np_seq(net.t_dec, h_a), a), "mmd": ref_mmd(h_v, h_a, 32.0)}
    for k, val in ref.items():
        assert float(terms[k].detach()) == pytest.approx(val, rel=1e-9, abs=1e-12), k
    assert float(terms["loss"].detach()) == pytest.approx(sum(ref.values()), rel=1e-9)


def test_revise_per_class_text_rows_give_the_same_loss_and_gradients():
    torch.manual_seed(5)
    net = ReViSENet(8, 6, 5, 3, None, 7).double()
    v, names, cands = t(np.abs(rng.randn(6, 8))), t(l2n(rng.randn(3, 6))), t(l2n(rng.randn(4, 6)))
    y = torch.tensor([2, 0, 2, 1, 0, 2])
    full = revise_losses(net, v, names[y], cands, 0.3, 32.0)
    full["loss"].backward()
    g_full = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    cls, rows = torch.unique(y, return_inverse=True)
    dedup = revise_losses(net, v, names[cls], cands, 0.3, 32.0, rows)
    dedup["loss"].backward()
    assert float(dedup["loss"].detach()) == pytest.approx(float(full["loss"].detach()), rel=1e-12)
    assert all(torch.allclose(a, p.grad) for a, p in zip(g_full, net.parameters()))


def test_revise_candidates_carry_no_gradient():
    """The seen-class candidates' text heads are computed without gradient; only the positive term trains them."""
    torch.manual_seed(1)
    net = ReViSENet(8, 6, 5, 3, None, 7).double()
    v, a, cands = t(np.abs(rng.randn(4, 8))), t(l2n(rng.randn(4, 6))), t(l2n(rng.randn(5, 6)))
    revise_losses(net, v, a, cands, 0.3, 32.0)["hinge"].backward()
    got = net.t_head[0].weight.grad.clone()
    net.zero_grad()
    t_v = net.v_head(net.v_enc(v))
    t_a = net.t_head(net.t_enc(a))
    t_c = net.t_head(net.t_enc(cands)).detach()
    pos = (t_v * t_a).sum(1, keepdim=True)
    torch.clamp(t_v @ t_c.T - pos + 0.3, min=0).sum(1).mean().backward()
    assert torch.allclose(got, net.t_head[0].weight.grad)


# ------------------------------------------------------------------ JPoSE
def ref_mine(e, ids):
    s = e @ e.T
    pos, neg, valid = [], [], []
    for i in range(len(e)):
        same = [j for j in range(len(e)) if ids[j] == ids[i]]
        diff = [j for j in range(len(e)) if ids[j] != ids[i]]
        pos.append(min(same, key=lambda j: s[i, j]))
        neg.append(max(diff, key=lambda j: s[i, j]) if diff else -1)
        valid.append(bool(diff))
    return pos, neg, valid


def ref_triplet(e, ids, m, all_pairs):
    pos, neg, valid = ref_mine(e, ids)
    js = [j for j in range(len(e)) if valid[j]]
    total = 0.0
    for i in range(len(e)):
        pairs = js if all_pairs else ([i] if valid[i] else [])
        for j in pairs:
            total += max(0.0, float(e[i] @ e[neg[j]]) - float(e[i] @ e[pos[j]]) + m)
    return total / len(e)


def test_mining_matches_reference():
    e = l2n(rng.randn(7, 4))
    ids = np.array([0, 1, 0, 2, 1, 0, 2])
    pos, neg, valid = mine_hardest(t(e), torch.tensor(ids))
    rp, rn, rv = ref_mine(e, ids)
    assert pos.tolist() == rp and valid.tolist() == rv
    assert [n for n, ok in zip(neg.tolist(), rv) if ok] == [n for n, ok in zip(rn, rv) if ok]


@pytest.mark.parametrize("all_pairs", [True, False])
def test_triplet_loss_matches_reference(all_pairs):
    e = l2n(rng.randn(8, 5))
    ids = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    got = float(triplet_loss(t(e), torch.tensor(ids), 0.3, all_pairs))
    assert got == pytest.approx(ref_triplet(e, ids, 0.3, all_pairs), rel=1e-9)


def test_triplet_loss_without_negatives_is_zero():
    e = t(l2n(rng.randn(4, 3)))
    assert float(triplet_loss(e, torch.zeros(4, dtype=torch.long), 0.3)) == 0.0


def test_jpose_total_loss_matches_reference():
    torch.manual_seed(2)
    verb, noun, joint = PoSNet(6, 5, 7, 4).double(), PoSNet(6, 5, 7, 4).double(), JointNet(4).double()
    v = l2n(np.abs(rng.randn(6, 6)))
    y = np.array([0, 1, 2, 0, 1, 3])
    verb_ids, noun_ids = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2])
    V, N = l2n(rng.randn(4, 5)), l2n(rng.randn(4, 5))
    seen = np.array([0, 1, 2, 3])
    terms = jpose_losses(verb, noun, joint, t(v), t(V[y]), t(N[y]), t(V[seen]), t(N[seen]),
                         torch.tensor(verb_ids[y]), torch.tensor(noun_ids[y]), 0.3, 0.01, True)
    vv, nv = l2n(np_seq(verb.vis, v)), l2n(np_seq(noun.vis, v))
    jv = l2n(np_seq(joint.vis, np.concatenate([vv, nv], 1)))
    VT, NT = l2n(np_seq(verb.txt, V)), l2n(np_seq(noun.txt, N))
    JT = l2n(np_seq(joint.txt, np.concatenate([VT, NT], 1)))
    ref = (ref_hinge(vv, VT[y], VT[seen], 0.3) + ref_hinge(nv, NT[y], NT[seen], 0.3)
           + 0.01 * (ref_triplet(vv, verb_ids[y], 0.3, True) + ref_triplet(nv, noun_ids[y], 0.3, True))
           + ref_hinge(jv, JT[y], JT[seen], 0.3))
    assert float(terms["loss"].detach()) == pytest.approx(ref, rel=1e-9)
    cls, rows = torch.unique(torch.tensor(y), return_inverse=True)
    dedup = jpose_losses(verb, noun, joint, t(v), t(V[cls.numpy()]), t(N[cls.numpy()]), t(V[seen]), t(N[seen]),
                         torch.tensor(verb_ids[y]), torch.tensor(noun_ids[y]), 0.3, 0.01, True, rows)
    assert float(dedup["loss"].detach()) == pytest.approx(ref, rel=1e-9)


# ------------------------------------------------------------------ CADA-VAE / SynSE
def test_kl_and_wasserstein_match_reference():
    mu, lv = rng.randn(5, 4), rng.randn(5, 4) * 0.5
    ref = np.mean([-0.5 * np.sum(1 + lv[i] - mu[i] ** 2 - np.exp(lv[i])) for i in range(5)])
    assert float(kl_divergence(t(mu), t(lv))) == pytest.approx(ref, rel=1e-10)
    mu2, lv2 = rng.randn(5, 4), rng.randn(5, 4) * 0.5
    w = np.mean([math.sqrt(np.sum((mu[i] - mu2[i]) ** 2) + np.sum((np.exp(lv[i] / 2) - np.exp(lv2[i] / 2)) ** 2))
                 for i in range(5)])
    assert float(wasserstein(t(mu), t(lv), t(mu2), t(lv2))) == pytest.approx(w, rel=1e-6)


def test_reparameterisation_shares_one_epsilon_per_sample():
    mu, lv = t(rng.randn(4, 6)), t(rng.randn(4, 6))
    z = reparameterize(mu, lv, torch.Generator().manual_seed(0), shared_eps=True)
    eps = npa((z - mu) / torch.exp(0.5 * lv))
    assert np.allclose(eps, eps[:, :1])
    z2 = reparameterize(mu, lv, torch.Generator().manual_seed(0), shared_eps=False)
    eps2 = npa((z2 - mu) / torch.exp(0.5 * lv))
    assert not np.allclose(eps2, eps2[:, :1])


def test_cada_schedule_matches_spec():
    cfg = {"kl_offset": 1000, "kl_ramp": 3000, "kl_scale": 0.1, "cross_start": 1400}
    assert cada_weights(0, cfg) == (0.0, 0.0, 0.0)
    k, k2, c = cada_weights(1400, cfg)          # not yet "t > C"
    assert (k, k2, c) == (pytest.approx(0.1 * 400 / 3000), 0.0, 0.0)
    k, k2, c = cada_weights(1699, cfg)          # end of a 1700-step cycle: 0.0233
    assert k == pytest.approx(0.0233, abs=1e-4) and k2 == k and c == 1.0


def test_synse_schedule_matches_spec():
    cfg = {"kl_offset": 1000, "kl_ramp": 3000, "kl_scale": 0.1, "cross_start": 1500, "text_kl_from_cycle": 2}
    assert synse_weights(1899, 1, cfg)[1] == 0.0                      # cycles 0 and 1: no text KL
    k, k_txt, c = synse_weights(1899, 2, cfg)
    assert k == pytest.approx(0.1 * 899 / 3000) and k_txt == pytest.approx(0.0133, abs=1e-4) and c == 1.0
    assert synse_weights(1500, 3, cfg)[2] == 0.0


def _vae_np(vae: LinearVAE, x):
    return x @ npa(vae.mu.weight).T + npa(vae.mu.bias), x @ npa(vae.logvar.weight).T + npa(vae.logvar.bias)


def _dec_np(vae: LinearVAE, z):
    return np.maximum(z @ npa(vae.dec[0].weight).T + npa(vae.dec[0].bias), 0)


def _kl_np(mu, lv):
    return float(np.mean(-0.5 * np.sum(1 + lv - mu ** 2 - np.exp(lv), axis=1)))


def test_cada_loss_matches_reference():
    torch.manual_seed(3)
    vae_v, vae_a = LinearVAE(8, 4).double(), LinearVAE(6, 4).double()
    v, a = np.abs(rng.randn(5, 8)), l2n(rng.randn(5, 6))
    gen = torch.Generator().manual_seed(11)
    ref_gen = torch.Generator().manual_seed(11)
    weights = (0.02, 0.01, 1.0)
    terms = cada_losses(vae_v, vae_a, t(v), t(a), weights, gen, True, da_weight=0.0)
    eps_v = npa(torch.randn((5, 1), generator=ref_gen).double())
    eps_a = npa(torch.randn((5, 1), generator=ref_gen).double())
    mu_v, lv_v = _vae_np(vae_v, v)
    mu_a, lv_a = _vae_np(vae_a, a)
    z_v, z_a = mu_v + eps_v * np.exp(lv_v / 2), mu_a + eps_a * np.exp(lv_a / 2)
    rec = mse(_dec_np(vae_v, z_v), v) + mse(_dec_np(vae_a, z_a), a)
    cross = mse(_dec_np(vae_v, z_a), v) + mse(_dec_np(vae_a, z_v), a)
    ref = rec + 0.02 * _kl_np(mu_v, lv_v) + 0.01 * _kl_np(mu_a, lv_a) + 1.0 * cross
    assert float(terms["loss"].detach()) == pytest.approx(ref, rel=1e-9)
    assert float(terms["cross"].detach()) == pytest.approx(cross, rel=1e-9)


def test_synse_loss_matches_reference():
    torch.manual_seed(4)
    vae_v, vae_n, vae_w = LinearVAE(8, 6).double(), LinearVAE(5, 3).double(), LinearVAE(5, 3).double()
    v, n, w = np.abs(rng.randn(4, 8)), l2n(rng.randn(4, 5)), l2n(rng.randn(4, 5))
    gen, ref_gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    terms = synse_losses(vae_v, vae_n, vae_w, t(v), t(n), t(w), (0.03, 0.004, 1.0), gen, True)
    eps = [npa(torch.randn((4, 1), generator=ref_gen).double()) for _ in range(3)]
    (mu_v, lv_v), (mu_n, lv_n), (mu_w, lv_w) = _vae_np(vae_v, v), _vae_np(vae_n, n), _vae_np(vae_w, w)
    z_v, z_n, z_w = (mu_v + eps[0] * np.exp(lv_v / 2), mu_n + eps[1] * np.exp(lv_n / 2),
                     mu_w + eps[2] * np.exp(lv_w / 2))
    rec = mse(_dec_np(vae_v, z_v), v) + mse(_dec_np(vae_n, z_n), n) + mse(_dec_np(vae_w, z_w), w)
    cross = (mse(_dec_np(vae_n, z_v[:, :3]), n) + mse(_dec_np(vae_w, z_v[:, 3:]), w)
             + mse(_dec_np(vae_v, np.concatenate([z_n, z_w], 1)), v))
    ref = rec + 0.03 * _kl_np(mu_v, lv_v) + 0.004 * (_kl_np(mu_n, lv_n) + _kl_np(mu_w, lv_w)) + cross
    assert float(terms["loss"].detach()) == pytest.approx(ref, rel=1e-9)


# ------------------------------------------------------------------ SMIE
def critic_np(c: Critic, v, l, layernorm=True):
    if layernorm:
        v = (v - v.mean(1, keepdims=True)) / np.sqrt(v.var(1, keepdims=True) + 1e-5)
    x = np.concatenate([v, l], 1)
    h = np.maximum(x @ npa(c.fc1.weight).T + npa(c.fc1.bias), 0)
    h = np.maximum(h @ npa(c.fc2.weight).T + npa(c.fc2.bias), 0)
    return (h @ npa(c.fc3.weight).T + npa(c.fc3.bias))[:, 0]


def test_jsd_mi_matches_reference():
    pos, neg = rng.randn(7), rng.randn(7)
    ref = np.mean(-softplus(-pos)) - np.mean(softplus(neg))
    assert float(jsd_mi(t(pos), t(neg))) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("temporal", [False, True])
def test_smie_loss_matches_reference(temporal):
    torch.manual_seed(6)
    critic = Critic(6, 4, (8, 5)).double()
    v0, l = rng.randn(5, 6), l2n(rng.randn(5, 4))
    v1 = rng.randn(5, 6) if temporal else None
    terms = smie_losses(critic, t(v0), t(l), t(v1) if temporal else None, 0.5, 0.1)
    nxt = np.roll(v0, -1, axis=0)                      # row i pairs l_i with v_{i+1}
    i0 = np.mean(-softplus(-critic_np(critic, v0, l))) - np.mean(softplus(critic_np(critic, nxt, l)))
    ref = -i0
    if temporal:
        i1 = np.mean(-softplus(-critic_np(critic, v1, l))) - np.mean(softplus(critic_np(critic, nxt, l)))
        ref += 0.5 * max(0.0, 0.1 - (i0 - i1))
    assert float(terms["loss"].detach()) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("layernorm", [False, True])
def test_critic_all_pairs_matches_rowwise(layernorm):
    torch.manual_seed(7)
    critic = Critic(6, 4, (8, 5)).double()
    v, l = rng.randn(9, 6), l2n(rng.randn(3, 4))
    got = npa(critic.all_pairs(t(v), t(l), layernorm, chunk=4))
    ref = np.stack([critic_np(critic, v, np.repeat(l[c:c + 1], 9, 0), layernorm) for c in range(3)], 1)
    assert np.allclose(got, ref, atol=1e-10)


def test_smie_learning_rate_schedule():
    assert smie_lr(0, 1e-5, 15, 100) == 0.0
    assert smie_lr(5, 1e-5, 15, 100) == pytest.approx(1e-5 / 3)
    assert smie_lr(15, 1e-5, 15, 100) == pytest.approx(1e-5)
    assert smie_lr(99, 1e-5, 15, 100) == pytest.approx(1e-5 * (1 + math.cos(math.pi * 84 / 85)) / 2)


def test_temporal_mask_keeps_low_motion_frames_in_order():
    x = rng.randn(3, 3, 12, 4, 2)
    out = temporal_mask(x, 8, 5, np.random.RandomState(0))
    pick = np.sort(np.random.RandomState(0).choice(8, 5, replace=False))
    for i in range(3):
        energy = []
        for f in range(12):
            e = np.zeros_like(x[i, :, 0])
            if f + 1 < 12:
                e = e + (x[i, :, f + 1] - x[i, :, f]) ** 2
            if f > 0:
                e = e + (x[i, :, f] - x[i, :, f - 1]) ** 2
            energy.append(e.mean())
        low = sorted(sorted(range(12), key=lambda f: energy[f])[:8])
        frames = [low[p] for p in pick]
        assert np.array_equal(out[i], x[i][:, frames])


# ------------------------------------------------------------------ γ search
def test_best_gamma_beats_a_dense_grid():
    s = rng.randn(60, 6)
    labels = rng.randint(0, 6, 60)
    known = np.array([True, True, True, False, False, False])
    best = best_gamma(s, labels, known)
    grid = [gzsl_metrics(s, labels, known, g)["h"] for g in np.linspace(-5, 5, 4001)]
    assert best["h"] == pytest.approx(max(grid), abs=1e-9)
    again = gzsl_metrics(s, labels, known, best["gamma"])
    assert (again["seen"], again["unseen"], again["h"]) == pytest.approx((best["seen"], best["unseen"], best["h"]))


def test_best_gamma_with_columns_outside_the_phase():
    """Columns of classes outside a phase are -inf (validation phase); they must never be predicted."""
    s = rng.randn(30, 5)
    s[:, 4] = -np.inf
    labels = rng.randint(0, 4, 30)
    known = np.array([True, True, False, False, True])
    best = best_gamma(s, labels, known)
    assert np.isfinite(best["gamma"]) and 0 <= best["h"] <= 100


def test_gate_logistic_regression_reaches_the_regularised_optimum():
    """The gate's logistic regression minimises 0.5‖w‖² + C Σ log(1 + exp(−y(xᵀw + b))): gradient zero there."""
    from star_repro.models.baselines.common import BinaryLogisticRegression

    x = rng.rand(200, 4)
    y01 = (x[:, 0] + 0.3 * rng.randn(200) > 0.5).astype(int)
    lr = BinaryLogisticRegression(C=1.0).fit(x, y01)
    y = np.where(y01 == 1, 1.0, -1.0)
    margin = y * (x @ lr.coef_ + lr.intercept_)
    sig = 1 / (1 + np.exp(margin))                      # d/dm log(1 + e^{-m}) = -sigmoid(-m)
    grad_w = lr.coef_ - (x * (y * sig)[:, None]).sum(0)
    grad_b = -(y * sig).sum()
    assert np.abs(grad_w).max() < 1e-5 and abs(grad_b) < 1e-5
    p = lr.predict_proba(x)
    assert np.allclose(p.sum(1), 1) and np.allclose(p[:, 1], 1 / (1 + np.exp(-(x @ lr.coef_ + lr.intercept_))))
