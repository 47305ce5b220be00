"""The pure-PyTorch temporal shift against a literal loop transcription of STAR_SPEC §5.4."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from star_repro.models.temporal_shift import (
    TemporalShift,
    apply_position_grad_rule,
    set_raw_position_grad,
    temporal_shift,
)


# one intra-op thread for the whole module (tests/conftest.py says why)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _q(x, b, c, hh, ww):
    _, _, h, w = x.shape
    return x[b, c, hh, ww] if 0 <= hh < h and 0 <= ww < w else 0.0


def reference(x, xpos, ypos, stride, grad_out):
    """Loops over every output element, exactly as §5.4 states the forward, the adjoint and the position rule."""
    bsz, ch, h, w = x.shape
    ho = h // stride
    out = np.zeros((bsz, ch, ho, w))
    gx = np.zeros_like(x)
    gy_raw = np.zeros(ch)
    for c in range(ch):
        yy = ypos[c] + 0.5 if stride == 2 else ypos[c]
        xx = xpos[c]
        y1, x1 = math.floor(yy), math.floor(xx)
        dy, dx = yy - y1, xx - x1
        for b in range(bsz):
            for hh in range(ho):
                for ww in range(w):
                    r, col = hh * stride + y1, ww + x1
                    q11, q21 = _q(x, b, c, r, col), _q(x, b, c, r, col + 1)
                    q12, q22 = _q(x, b, c, r + 1, col), _q(x, b, c, r + 1, col + 1)
                    out[b, c, hh, ww] = (q11 * (1 - dx) * (1 - dy) + q21 * dx * (1 - dy)
                                         + q12 * (1 - dx) * dy + q22 * dx * dy)
                    g = grad_out[b, c, hh, ww]
                    for (a, bb, wgt) in ((0, 0, (1 - dx) * (1 - dy)), (0, 1, dx * (1 - dy)),
                                         (1, 0, (1 - dx) * dy), (1, 1, dx * dy)):
                        if 0 <= r + a < h and 0 <= col + bb < w:
                            gx[b, c, r + a, col + bb] += g * wgt
                    gy_raw[c] += g * ((1 - dx) * (q12 - q11) + dx * (q22 - q21))
    gy_raw /= bsz
    gy = np.where(gy_raw == 0, 1e-4, 0.01 * np.sign(gy_raw))
    return out, gx, gy, gy_raw


def _case(seed, stride, h=7, w=4, ch=6, bsz=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(bsz, ch, h, w))
    x[:, 5] = 0.0  # a channel whose position derivative is exactly zero -> the 1e-4 branch
    ypos = rng.uniform(-3.0, 3.0, size=ch)
    ypos[0] = 0.0           # integer position: dy == 0
    ypos[1] = -h - 3.5      # shifted past the start: output all zero
    xpos = rng.uniform(-1.5, 1.5, size=ch)  # exercise the x taps, which the real model keeps near 1e-8
    xpos[2] = 1e-8
    xpos[3] = -1e-8
    grad_out = rng.normal(size=(bsz, ch, h // stride, w))
    return x, xpos, ypos, grad_out


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference(stride, seed):
    x, xpos, ypos, grad_out = _case(seed, stride)
    ref_out, ref_gx, ref_gy, ref_raw = reference(x, xpos, ypos, stride, grad_out)

    xt = torch.tensor(x, requires_grad=True)
    xp = torch.tensor(xpos, requires_grad=True)
    yp = torch.tensor(ypos, requires_grad=True)
    out = temporal_shift(xt, xp, yp, stride)
    assert out.shape == (3, 6, 7 // stride, 4)
    np.testing.assert_allclose(out.detach().numpy(), ref_out, rtol=1e-12, atol=1e-12)
    out.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(xt.grad.numpy(), ref_gx, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(yp.grad.numpy(), ref_gy)
    # Channel 1 samples only padding and channel 5 is all zero: derivative exactly zero -> 1e-4.
    assert yp.grad[1].item() == 1e-4 and yp.grad[5].item() == 1e-4
    assert np.abs(ref_gy[[0, 2, 3, 4]]).tolist() == [0.01] * 4
    np.testing.assert_array_equal(xp.grad.numpy(), np.zeros(6))

    # Raw mode returns the batch-mean derivative; applying the rule afterwards gives the same update.
    mod = TemporalShift(6, stride)
    with torch.no_grad():
        mod.xpos.copy_(torch.tensor(xpos, dtype=torch.float32))
        mod.ypos.copy_(torch.tensor(ypos, dtype=torch.float32))
    set_raw_position_grad(mod, True)
    mod.double()
    mod(torch.tensor(x)).backward(torch.tensor(grad_out))
    np.testing.assert_allclose(mod.ypos.grad.numpy(), ref_raw, rtol=1e-6, atol=1e-9)
    apply_position_grad_rule(mod)
    np.testing.assert_array_equal(np.sign(mod.ypos.grad.numpy()), np.sign(ref_gy))
    assert not mod.xpos.grad.any()


@pytest.mark.parametrize("stride", [1, 2])
def test_input_gradient_is_exact_adjoint(stride):
    torch.manual_seed(3)
    x = torch.randn(2, 4, 9, 5, dtype=torch.float64, requires_grad=True)
    xpos = torch.tensor([1e-8, -1e-8, 0.3, -0.7], dtype=torch.float64)
    ypos = torch.tensor([0.4, -1.2, 2.5, 0.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: temporal_shift(t, xpos, ypos, stride), (x,))


def test_float32_model_positions_are_near_identity_along_joints():
    """With |xpos| ~ 1e-8 the joint axis is untouched; an integer ypos is a pure shift with zero fill."""
    mod = TemporalShift(3, 1)
    with torch.no_grad():
        mod.ypos.copy_(torch.tensor([1.0, -2.0, 0.0]))
        mod.xpos.zero_()
    x = torch.randn(2, 3, 8, 25)
    out = mod(x)
    torch.testing.assert_close(out[:, 0, :-1], x[:, 0, 1:])
    assert not out[:, 0, -1].any()
    torch.testing.assert_close(out[:, 1, 2:], x[:, 1, :-2])
    assert not out[:, 1, :2].any()
    torch.testing.assert_close(out[:, 2], x[:, 2])


def test_module_initialisation_ranges():
    torch.manual_seed(0)
    mod = TemporalShift(512, 2)
    assert mod.xpos.abs().max() <= 1e-8 and mod.xpos.abs().max() > 0
    assert mod.ypos.abs().max() <= 1.0 and mod.ypos.abs().max() > 0.9
    assert [n for n, _ in mod.named_parameters()] == ["xpos", "ypos"]
    with pytest.raises(ValueError):
        TemporalShift(4, 3)


def test_positions_still_get_weight_decay():
    """The x gradient is a zero tensor, not None, so SGD's weight decay still shrinks xpos (as in the kernel)."""
    mod = TemporalShift(4, 1)
    before = mod.xpos.detach().clone()
    opt = torch.optim.SGD(mod.parameters(), lr=0.1, weight_decay=0.5)
    mod(torch.randn(2, 4, 6, 3)).sum().backward()
    assert mod.xpos.grad is not None and not mod.xpos.grad.any()
    opt.step()
    torch.testing.assert_close(mod.xpos.detach(), before * (1 - 0.05))


def kernel_transcription(x, xpos, ypos, stride):
    """The authors' CUDA forward kernel transcribed literally in float32 scalars, one output element at a time:
    `val = q11*(1-dx)*(1-dy) + q21*dx*(1-dy) + q12*(1-dx)*dy + q22*dx*dy`, each operation rounded to float32
    (q21: row y1, column x1+1; q12: row y1+1, column x1). The stride-2 +0.5 is added in float32 first."""
    f32 = np.float32
    bsz, ch, h, w = x.shape
    out = np.zeros((bsz, ch, h // stride, w), np.float32)
    for c in range(ch):
        y = f32(ypos[c] + f32(0.5)) if stride == 2 else f32(ypos[c])
        xx = f32(xpos[c])
        x1, y1 = math.floor(xx), math.floor(y)
        dx, dy = f32(xx - f32(x1)), f32(y - f32(y1))
        for b in range(bsz):
            for hh in range(h // stride):
                for ww in range(w):
                    r, col = hh * stride + y1, ww + x1
                    q11, q21 = f32(_q(x, b, c, r, col)), f32(_q(x, b, c, r, col + 1))
                    q12, q22 = f32(_q(x, b, c, r + 1, col)), f32(_q(x, b, c, r + 1, col + 1))
                    out[b, c, hh, ww] = (q11 * (f32(1) - dx) * (f32(1) - dy) + q21 * dx * (f32(1) - dy)
                                         + q12 * (f32(1) - dx) * dy + q22 * dx * dy)
    return out


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_formula_is_bit_identical_to_the_cuda_expression(stride, seed):
    x, xpos, ypos, grad_out = _case(seed, stride, h=9, w=5, ch=6, bsz=2)
    x32, xp32, yp32 = x.astype(np.float32), xpos.astype(np.float32), ypos.astype(np.float32)
    xp32[4] = np.float32(1e-8)  # the released model's near-zero x offsets, both signs
    xp32[5] = np.float32(-7e-9)
    expected = kernel_transcription(x32, xp32, yp32, stride)
    got = temporal_shift(torch.tensor(x32), torch.tensor(xp32), torch.tensor(yp32), stride, formula="kernel")
    np.testing.assert_array_equal(got.numpy().view(np.int32), expected.view(np.int32))  # bit for bit
    # The adjoint pass of the kernel samples the output gradient at the negated positions with the same expression.
    xt = torch.tensor(x32, requires_grad=True)
    temporal_shift(xt, torch.tensor(xp32), torch.tensor(yp32), 1, formula="kernel").backward(
        torch.tensor(x32[..., ::-1].copy()))
    adj = kernel_transcription(x32[..., ::-1].copy(), -xp32, -yp32, 1)
    np.testing.assert_array_equal(xt.grad.numpy().view(np.int32), adj.view(np.int32))
    # The default lerp form is the same function up to rounding (a few ulp of the inputs' magnitude).
    lerp = temporal_shift(torch.tensor(x32), torch.tensor(xp32), torch.tensor(yp32), stride).numpy()
    assert np.abs(lerp - expected).max() <= 4 * np.finfo(np.float32).eps * np.abs(x32).max()


def test_lerp_and_kernel_forms_differ_in_the_last_bits():
    """Why the switch exists: on float32 activations the lerp form differs in a sizeable share of elements."""
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.normal(size=(4, 64, 32, 25)).astype(np.float32))
    ypos = torch.tensor(rng.uniform(-1, 1, 64).astype(np.float32))
    xpos = torch.tensor(rng.uniform(-1e-8, 1e-8, 64).astype(np.float32))
    a = temporal_shift(x, xpos, ypos, 1).numpy()
    b = temporal_shift(x, xpos, ypos, 1, formula="kernel").numpy()
    share = float(np.mean(a != b))
    assert 0.05 < share < 0.9
    assert np.abs(a - b).max() <= 4 * np.finfo(np.float32).eps * float(x.abs().max())
    with pytest.raises(ValueError, match="formula"):
        temporal_shift(x, xpos, ypos, 1, formula="cuda")


def test_kernel_formula_reaches_every_shift_of_the_backbone_and_the_official_profile(project_root):
    from star_repro.config import load_params
    from star_repro.models.shiftgcn import ShiftGCN
    from star_repro.training.pretrain import resolve_config

    model = ShiftGCN(10, width=0.25, shift_formula="kernel")
    shifts = [m for m in model.modules() if isinstance(m, TemporalShift)]
    assert len(shifts) == 20 and {m.formula for m in shifts} == {"kernel"}
    assert {m.formula for m in ShiftGCN(10, width=0.25).modules() if isinstance(m, TemporalShift)} == {"lerp"}
    params = load_params(project_root / "params.yaml")
    assert resolve_config(params["profiles"]["official-code"]["pretrain"])["shift_formula"] == "kernel"
    assert resolve_config(params["profiles"]["paper"]["pretrain"])["shift_formula"] == "lerp"


@pytest.mark.parametrize("formula", ["lerp", "kernel"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("raw", [False, True])
def test_device_geometry_equals_host_geometry_bit_for_bit(monkeypatch, formula, stride, raw):
    """The GPU path (geometry built where the positions live, no host round trip) against the host path (numpy
    geometry, zero-padded window): forward, input gradient and position gradient identical, with shifts inside,
    at the edge of and far beyond the grid."""
    from star_repro.models import temporal_shift as ts

    rng = np.random.default_rng(7)
    x0 = torch.tensor(rng.normal(size=(3, 6, 12, 5)), dtype=torch.float32)
    ypos0 = torch.tensor(np.r_[rng.uniform(-3, 3, 3), -12.0, 11.5, 40.25], dtype=torch.float32)
    xpos0 = torch.tensor(np.r_[rng.uniform(-1.5, 1.5, 4), -7.0, 5.5], dtype=torch.float32)
    grad = torch.tensor(rng.normal(size=(3, 6, 12 // stride, 5)), dtype=torch.float32)
    results = {}
    for where in ("host", "device"):
        monkeypatch.setattr(ts, "GEOMETRY", where)
        x, xp, yp = (t.clone().requires_grad_(True) for t in (x0, xpos0, ypos0))
        out = temporal_shift(x, xp, yp, stride, raw_position_grad=raw, formula=formula)
        out.backward(grad)
        results[where] = [t.detach().numpy().copy() for t in (out, x.grad, yp.grad, xp.grad)]
    for a, b in zip(results["host"], results["device"]):
        np.testing.assert_array_equal(a, b)
    assert np.abs(results["host"][0]).sum() > 0


def test_auto_geometry_takes_the_host_path_on_cpu_and_the_device_path_elsewhere():
    from star_repro.models import temporal_shift as ts

    assert ts.GEOMETRY == "auto"
    assert not ts._on_device(torch.zeros(1))
    assert ts._on_device(torch.zeros(1, device="meta"))


def test_gpu_layout_of_shiftgcn_computes_the_same_function(monkeypatch):
    """The GPU forms (2-D BatchNorm input, the temporal 1x1 convolution as a matrix product), forced on the CPU:
    same outputs and gradients as the CPU forms, to float32 rounding."""
    from star_repro.models import shiftgcn as sg

    x = torch.randn(3, 3, 16, 25, 2, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3, 5])
    results = {}
    for fast in (False, True):
        monkeypatch.setattr(sg, "_fast_layout", lambda t, fast=fast: fast)
        torch.manual_seed(0)
        model = sg.ShiftGCN(7, width=0.25)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        results[fast] = (float(loss), {k: p.grad.clone() for k, p in model.named_parameters()})
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    for k, g in results[False][1].items():
        torch.testing.assert_close(results[True][1][k], g, rtol=1e-4, atol=1e-5, msg=k)
