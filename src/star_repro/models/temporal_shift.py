"""Shift-GCN's learnable temporal shift in plain PyTorch (STAR_SPEC §5.4), replacing the authors' CUDA extension.

Each channel c samples its input bilinearly at (h·s + y_c, w + x_c), with zero padding outside the (T, V) grid,
where y_c = ypos_c (+0.5 at stride 2) and x_c = xpos_c. Because the offsets are per channel, the op is one gather
of an integer-shifted window per channel followed by two lerps: no loops over channels, every pass is O(output)
(measured at 1.5-2x a 1x1 convolution of the same tensor, forward + backward, on CPU).

Two evaluation orders of the same bilinear weights (`formula`):
- "lerp" (default): two `torch.lerp`s, rows then columns; fastest.
- "kernel": the authors' CUDA kernel's own expression, q11·(1−dx)·(1−dy) + q21·dx·(1−dy) + q12·(1−dx)·dy +
  q22·dx·dy, evaluated left to right in the input's dtype. The two differ by 1-2 ulp in about a third of the
  elements; "kernel" is what the `official-code` profile uses, so that an eval-mode backbone reproduces the
  authors' model bit for bit (the adjoint and the position derivative use the kernel's expressions too).

The position gradient is the authors' non-standard rule, not the true derivative: the batch-mean derivative
g_y[c] is replaced by 0.01·sign(g_y[c]) (1e-4 where it is exactly zero) and the x gradient is forced to zero.
In "raw" mode the op returns the batch-mean derivative unchanged and `apply_position_grad_rule` applies the rule
later: data-parallel training all-reduces the raw values first, so the sign is taken of the global batch mean
and the result does not depend on the device count.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

SIGN_STEP = 0.01
ZERO_STEP = 1e-4
FORMULAS = ("lerp", "kernel")


def _geometry(xs: np.ndarray, ys: np.ndarray, stride: int, h_in: int, w_in: int, device) -> dict:
    """Integer parts, fractional weights, padding and flat gather index for sampling at (h·s + ys, w + xs).

    Built with numpy from the C positions (one small transfer): a few microseconds instead of dozens of tiny
    torch calls, which dominated the op at demo sizes. Float arithmetic stays in the positions' dtype.
    """
    y1 = np.floor(ys)
    x1 = np.floor(xs)
    h_out = h_in // stride
    # Offsets beyond the whole axis give all-zero samples; clamping them keeps the padding bounded without
    # changing any value (both neighbours stay outside the grid).
    ky = np.clip(y1, -h_in - 1, h_in).astype(np.int64)
    kx = np.clip(x1, -w_in - 1, w_in).astype(np.int64)
    rows = (h_out - 1) * stride + 2  # window rows each channel reads (both lerp neighbours of every output row)
    cols = w_in + 1
    pad_top = max(0, -int(ky.min()))
    pad_bottom = max(0, int(ky.max()) + rows - h_in)
    pad_left = max(0, -int(kx.min()))
    pad_right = max(0, int(kx.max()) + cols - w_in)
    wp = w_in + pad_left + pad_right
    start = (ky + pad_top) * wp + (kx + pad_left)  # (C,)
    index = start[:, None, None] + np.arange(rows)[None, :, None] * wp + np.arange(cols)[None, None, :]
    return {"dy": torch.from_numpy(ys - y1).to(device), "dx": torch.from_numpy(xs - x1).to(device),
            "h_out": h_out, "rows": rows, "cols": cols,
            "index": torch.from_numpy(index.reshape(len(start), -1)).to(device),
            "pad": (pad_left, pad_right, pad_top, pad_bottom)}


def _window(x: torch.Tensor, geo: dict) -> torch.Tensor:
    """G[b, c, j, i] = X[b, c, j + ky_c, i + kx_c] (zero outside): every input value the channel's taps touch."""
    b, ch = x.shape[:2]
    xp = torch.nn.functional.pad(x, geo["pad"]) if any(geo["pad"]) else x
    flat = xp.reshape(b, ch, -1)
    g = flat.gather(2, geo["index"].unsqueeze(0).expand(b, -1, -1))
    return g.view(b, ch, geo["rows"], geo["cols"])


def _taps(g: torch.Tensor, stride: int, h_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows y1 and y1+1 of each output row h (window rows h·s and h·s + 1)."""
    top = g[:, :, 0:(h_out - 1) * stride + 1:stride]
    bottom = g[:, :, 1:(h_out - 1) * stride + 2:stride]
    return top, bottom


def _geometry_on_device(xs: torch.Tensor, ys: torch.Tensor, stride: int, h_in: int, w_in: int) -> dict:
    """`_geometry` computed where the positions live, with no host round trip: the window's taps are gathered
    from the unpadded input at clamped indices and those outside the grid are set to zero (`valid`), which gives
    the same values as gathering from a zero-padded copy. On a GPU the host version forced a synchronisation
    (positions to the host, three index uploads) in every shift of every step; this one only queues kernels."""
    y1 = torch.floor(ys)
    x1 = torch.floor(xs)
    h_out = h_in // stride
    rows = (h_out - 1) * stride + 2
    cols = w_in + 1
    ky = y1.clamp(-h_in - 1, h_in).long()
    kx = x1.clamp(-w_in - 1, w_in).long()
    r = ky.view(-1, 1, 1) + torch.arange(rows, device=ys.device).view(1, -1, 1)  # (C, rows, 1)
    c = kx.view(-1, 1, 1) + torch.arange(cols, device=ys.device).view(1, 1, -1)  # (C, 1, cols)
    valid = (r >= 0) & (r < h_in) & (c >= 0) & (c < w_in)  # (C, rows, cols)
    index = r.clamp(0, h_in - 1) * w_in + c.clamp(0, w_in - 1)
    return {"dy": ys - y1, "dx": xs - x1, "h_out": h_out, "rows": rows, "cols": cols,
            "index": index.reshape(len(ys), -1), "valid": valid}


def _window_on_device(x: torch.Tensor, geo: dict) -> torch.Tensor:
    b, ch = x.shape[:2]
    g = x.reshape(b, ch, -1).gather(2, geo["index"].unsqueeze(0).expand(b, -1, -1))
    g = g.view(b, ch, geo["rows"], geo["cols"])
    return torch.where(geo["valid"], g, g.new_zeros(()))


# "auto": the host geometry on a CPU (cheapest there), the on-device one elsewhere; "host" / "device" force one
# (the tests compare the two bit for bit; the GPU benchmark times both).
GEOMETRY = "auto"


def _on_device(x: torch.Tensor) -> bool:
    return GEOMETRY == "device" or (GEOMETRY == "auto" and x.device.type != "cpu")


def _sample(x: torch.Tensor, xs, ys, stride: int, formula: str = "lerp"):
    """Bilinear sample of every channel at (h·s + ys_c, w + xs_c), zero outside; returns (out, window, geometry).
    xs, ys: numpy arrays (host geometry) or tensors on x's device (on-device geometry)."""
    if isinstance(xs, torch.Tensor):
        geo = _geometry_on_device(xs, ys, stride, x.shape[2], x.shape[3])
        g = _window_on_device(x, geo)
    else:
        geo = _geometry(xs, ys, stride, x.shape[2], x.shape[3], x.device)
        g = _window(x, geo)
    top, bottom = _taps(g, stride, geo["h_out"])
    wy1 = geo["dy"].to(x.dtype).view(1, -1, 1, 1)
    wx1 = geo["dx"].to(x.dtype).view(1, -1, 1, 1)
    if formula == "kernel":
        return _kernel_formula(top, bottom, wx1, wy1), g, geo
    rows = torch.lerp(top, bottom, wy1)  # (B, C, Ho, W+1)
    out = torch.lerp(rows[..., :-1], rows[..., 1:], wx1)
    return out, g, geo


def _kernel_formula(top: torch.Tensor, bottom: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """The CUDA kernel's `q11*(1-dx)*(1-dy) + q21*dx*(1-dy) + q12*(1-dx)*dy + q22*dx*dy`, one rounding per
    operation in the kernel's left-to-right order (q21: row y1, column x1+1; q12: row y1+1, column x1)."""
    q11, q21 = top[..., :-1], top[..., 1:]
    q12, q22 = bottom[..., :-1], bottom[..., 1:]
    one_dx, one_dy = 1 - dx, 1 - dy
    return q11 * one_dx * one_dy + q21 * dx * one_dy + q12 * one_dx * dy + q22 * dx * dy


class _TemporalShiftFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, xpos, ypos, stride: int, raw: bool, formula: str):
        if stride not in (1, 2):
            raise ValueError(f"temporal shift stride must be 1 or 2, got {stride}")
        ys = (ypos + 0.5 if stride == 2 else ypos).detach()
        xs = xpos.detach()
        if _on_device(x):
            ys, xs = ys.clone(), xs.clone()  # the optimiser updates the parameters in place
        else:
            ys, xs = ys.cpu().numpy(), xs.cpu().numpy()
        out, g, geo = _sample(x, xs, ys, stride, formula)
        ctx.save_for_backward(g, geo["dx"])
        ctx.meta = (stride, geo["h_out"], tuple(x.shape), raw, xs, ys, xpos.dtype, formula)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        g, dx = ctx.saved_tensors
        stride, h_out, shape, raw, xs, ys, pos_dtype, formula = ctx.meta
        b, ch, h_in, w_in = shape
        grad_out = grad_out.contiguous()

        grad_x = None
        if ctx.needs_input_grad[0]:
            # The adjoint of sampling at +(y, x) is sampling at −(y, x): the same taps with the same weights (up to
            # rounding), integer positions included. At stride 2 the output gradient is first spread back onto
            # the even input rows. Gathers only, so it is deterministic on every device.
            src = grad_out
            if stride == 2:
                src = grad_out.new_zeros(b, ch, h_in, w_in)
                src[:, :, 0:2 * h_out:2] = grad_out
            grad_x, _, _ = _sample(src, -xs, -ys, 1, formula)

        grad_xpos = grad_ypos = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            top, bottom = _taps(g, stride, h_out)
            diff = bottom - top  # q(y1+1, ·) − q(y1, ·)
            wx1 = dx.to(grad_out.dtype).view(1, -1, 1, 1)
            if formula == "kernel":  # the kernel's (1-dx)*(q12-q11) + dx*(q22-q21)
                d_out_dy = (1 - wx1) * diff[..., :-1] + wx1 * diff[..., 1:]
            else:
                d_out_dy = torch.lerp(diff[..., :-1], diff[..., 1:], wx1)
            raw_y = ((grad_out * d_out_dy).sum(dim=(0, 2, 3)) / b).to(pos_dtype)
            grad_ypos = raw_y if raw else position_grad_rule(raw_y)
            grad_xpos = torch.zeros_like(raw_y)
        return grad_x, grad_xpos, grad_ypos, None, None, None


def position_grad_rule(raw: torch.Tensor) -> torch.Tensor:
    """0.01·sign(g), and 1e-4 where g is exactly zero (the authors' kernel)."""
    return torch.where(raw == 0, torch.full_like(raw, ZERO_STEP), SIGN_STEP * torch.sign(raw))


def temporal_shift(x: torch.Tensor, xpos: torch.Tensor, ypos: torch.Tensor, stride: int = 1,
                   raw_position_grad: bool = False, formula: str = "lerp") -> torch.Tensor:
    """Bilinear per-channel shift of x (B, C, T, V) along T (and V), output (B, C, T // stride, V).
    `formula`: "lerp" or "kernel" (the authors' CUDA expression; see the module docstring)."""
    if formula not in FORMULAS:
        raise ValueError(f"temporal shift formula must be one of {FORMULAS}, got {formula!r}")
    if x.dim() != 4:
        raise ValueError(f"temporal shift expects (B, C, T, V), got shape {tuple(x.shape)}")
    if xpos.shape != (x.shape[1],) or ypos.shape != (x.shape[1],):
        raise ValueError(f"positions must have shape ({x.shape[1]},), got {tuple(xpos.shape)}, {tuple(ypos.shape)}")
    return _TemporalShiftFn.apply(x, xpos, ypos, int(stride), bool(raw_position_grad), formula)


class TemporalShift(nn.Module):
    """One learnable shift per channel; parameter names (`xpos`, `ypos`) match the authors' checkpoints."""

    def __init__(self, channels: int, stride: int = 1, init_scale: float = 1.0, formula: str = "lerp"):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if formula not in FORMULAS:
            raise ValueError(f"formula must be one of {FORMULAS}, got {formula!r}")
        self.stride = stride
        self.formula = formula
        self.raw_position_grad = False
        self.xpos = nn.Parameter(torch.empty(channels).uniform_(-1e-8, 1e-8))
        self.ypos = nn.Parameter(torch.empty(channels).uniform_(-init_scale, init_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_shift(x, self.xpos, self.ypos, self.stride, self.raw_position_grad, self.formula)

    def extra_repr(self) -> str:
        return f"channels={self.ypos.numel()}, stride={self.stride}, formula={self.formula}"


def set_raw_position_grad(model: nn.Module, raw: bool = True) -> int:
    """Switch every TemporalShift in `model` to raw (deferred) position gradients; returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, TemporalShift):
            m.raw_position_grad = raw
            n += 1
    return n


@torch.no_grad()
def apply_position_grad_rule(model: nn.Module) -> None:
    """Turn raw position gradients into the authors' update (call after backward and any all-reduce)."""
    for m in model.modules():
        if isinstance(m, TemporalShift) and m.raw_position_grad:
            if m.ypos.grad is not None:
                m.ypos.grad.copy_(position_grad_rule(m.ypos.grad))
            if m.xpos.grad is not None:
                m.xpos.grad.zero_()


__all__ = ["TemporalShift", "temporal_shift", "position_grad_rule", "apply_position_grad_rule",
           "set_raw_position_grad", "SIGN_STEP", "ZERO_STEP", "FORMULAS"]
