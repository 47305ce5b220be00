"""Shift-GCN (STAR_SPEC §5) in plain PyTorch, with the authors' state-dict names so their `.pt` files load.

Layout: `data_bn` over (person, joint, channel), ten units (spatial shift block `gcn1`, temporal shift block
`tcn1`, unit residual), `fc` for pretraining only. The spatial shift gathers are stored as int64 buffers
`gcn1.shift_in` / `gcn1.shift_out` (the authors stored them as frozen parameters; the key names and values are the
same). A width multiplier scales the 64/128/256 channel widths for the demo profile; width 1 is the paper's model.
"""
from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from star_repro.errors import StarReproError
from star_repro.models.temporal_shift import TemporalShift

# (in, out, temporal stride, residual) of l1..l10 at width 1; "none" | "identity" | "conv".
BASE_UNITS: tuple[tuple[int, int, int, str], ...] = (
    (3, 64, 1, "none"), (64, 64, 1, "identity"), (64, 64, 1, "identity"), (64, 64, 1, "identity"),
    (64, 128, 2, "conv"), (128, 128, 1, "identity"), (128, 128, 1, "identity"),
    (128, 256, 2, "conv"), (256, 256, 1, "identity"), (256, 256, 1, "identity"),
)


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def unit_channels(width: float = 1.0, in_channels: int = 3) -> list[tuple[int, int, int, str]]:
    """The (in, out, stride, residual) of each unit at a width multiplier."""
    units = []
    for i, (cin, cout, stride, res) in enumerate(BASE_UNITS):
        cin = in_channels if i == 0 else scaled(cin, width)
        units.append((cin, scaled(cout, width), stride, res))
    return units


def spatial_shift_in_index(channels: int, num_point: int = 25) -> torch.Tensor:
    """Flat gather index of shift_in: joint v, channel c reads joint (v + c) mod V (STAR_SPEC §5.2)."""
    v = torch.arange(num_point).view(-1, 1)
    c = torch.arange(channels).view(1, -1)
    return ((v * channels + c + c * channels) % (channels * num_point)).reshape(-1)


def spatial_shift_out_index(channels: int, num_point: int = 25) -> torch.Tensor:
    """Flat gather index of shift_out: joint v, channel d reads joint (v − d) mod V (Python modulo)."""
    v = torch.arange(num_point).view(-1, 1)
    d = torch.arange(channels).view(1, -1)
    return torch.remainder(v * channels + d - d * channels, channels * num_point).reshape(-1)


class _Permute(torch.autograd.Function):
    """x[:, perm] for a permutation; the backward gathers with the inverse permutation instead of the
    scatter-add index_select would use (faster, and deterministic on GPU)."""

    @staticmethod
    def forward(ctx, x, perm):
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=perm.device)
        ctx.save_for_backward(inv)
        return x.index_select(1, perm)

    @staticmethod
    def backward(ctx, grad):
        (inv,) = ctx.saved_tensors
        return grad.index_select(1, inv), None


# On a GPU, two layers run as the same arithmetic through faster kernels (the CPU keeps the forms the bit-exact
# tests check; on a GPU neither form is bit-reproducible across cuDNN algorithms anyway):
# - the spatial block's BatchNorm over (N·T, V·C) gets 2-D input, which PyTorch normalises with its channels-last
#   kernels, instead of (N·T, V·C, 1), which cuDNN treats as 1x1 images with strided channels (5-10x slower);
# - the temporal 1x1 convolution is a matrix product (cuBLAS), whose weight gradient is deterministic and fast,
#   where cuDNN's deterministic weight-gradient algorithm for 1x1 convolutions is ~20x off the arithmetic.
# `star-repro bench paper` times both forms side by side (STEP_VARIANTS).
FAST_CUDA_LAYOUT = True


def _fast_layout(x: torch.Tensor) -> bool:
    return FAST_CUDA_LAYOUT and x.is_cuda


def _conv_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    nn.init.constant_(conv.bias, 0)


def _bn_init(bn: nn.modules.batchnorm._BatchNorm, scale: float) -> None:
    nn.init.constant_(bn.weight, scale)
    nn.init.constant_(bn.bias, 0)


class SpatialShift(nn.Module):
    """Shift-GCN spatial block (STAR_SPEC §5.2): shift in, feature mask, point-wise linear, shift out, BN."""

    def __init__(self, in_channels: int, out_channels: int, num_point: int = 25):
        super().__init__()
        self.in_channels, self.out_channels, self.num_point = in_channels, out_channels, num_point
        if in_channels != out_channels:
            self.down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
            _conv_init(self.down[0])
            _bn_init(self.down[1], 1)
        else:
            self.down = None
        self.Linear_weight = nn.Parameter(torch.empty(in_channels, out_channels))
        nn.init.normal_(self.Linear_weight, 0, math.sqrt(1.0 / out_channels))
        self.Linear_bias = nn.Parameter(torch.zeros(1, 1, out_channels))
        self.Feature_Mask = nn.Parameter(torch.zeros(1, num_point, in_channels))
        self.bn = nn.BatchNorm1d(num_point * out_channels)
        self.register_buffer("shift_in", spatial_shift_in_index(in_channels, num_point))
        self.register_buffer("shift_out", spatial_shift_out_index(out_channels, num_point))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x0.shape
        x = x0.permute(0, 2, 3, 1).reshape(n * t, v * c)
        x = _Permute.apply(x, self.shift_in).view(n * t, v, c)
        x = x * (torch.tanh(self.Feature_Mask) + 1)
        x = torch.matmul(x, self.Linear_weight) + self.Linear_bias
        x = _Permute.apply(x.reshape(n * t, v * self.out_channels), self.shift_out)
        # (N, C, 1) rather than (N, C): same statistics, but PyTorch's CPU backward for 2-D input is ~15x slower.
        x = self.bn(x) if _fast_layout(x) else self.bn(x.unsqueeze(-1))
        x = x.view(n, t, v, self.out_channels).permute(0, 3, 1, 2).contiguous()
        x = x + (self.down(x0) if self.down is not None else x0)
        return torch.relu(x)


class ShiftTCN(nn.Module):
    """Shift-GCN temporal block (STAR_SPEC §5.3): BN, shift, 1x1 conv, ReLU, strided shift, BN."""

    def __init__(self, channels: int, stride: int = 1, shift_formula: str = "lerp"):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.bn2 = nn.BatchNorm2d(channels)
        _bn_init(self.bn2, 1)
        self.shift_in = TemporalShift(channels, stride=1, init_scale=1, formula=shift_formula)
        self.shift_out = TemporalShift(channels, stride=stride, init_scale=1, formula=shift_formula)
        self.temporal_linear = nn.Conv2d(channels, channels, 1)
        nn.init.kaiming_normal_(self.temporal_linear.weight, mode="fan_out")  # bias keeps PyTorch's default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shift_in(self.bn(x))
        if _fast_layout(x):
            b, c, t, v = x.shape
            conv = self.temporal_linear
            x = torch.matmul(conv.weight.view(conv.out_channels, c), x.reshape(b, c, t * v))
            x = torch.relu(x + conv.bias.view(1, -1, 1)).view(b, -1, t, v)
        else:
            x = torch.relu(self.temporal_linear(x))
        return self.bn2(self.shift_out(x))


class _ResidualConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1))
        self.bn = nn.BatchNorm2d(out_channels)
        _conv_init(self.conv)
        _bn_init(self.bn, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ShiftGCNUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, residual: str, num_point: int = 25,
                 shift_formula: str = "lerp"):
        super().__init__()
        self.gcn1 = SpatialShift(in_channels, out_channels, num_point)
        self.tcn1 = ShiftTCN(out_channels, stride, shift_formula)
        self.residual_kind = residual
        if residual == "conv":
            self.residual = _ResidualConv(in_channels, out_channels, stride)
        elif residual not in ("none", "identity"):
            raise ValueError(f"residual must be none, identity or conv, got {residual!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn1(self.gcn1(x))
        if self.residual_kind == "identity":
            y = y + x
        elif self.residual_kind == "conv":
            y = y + self.residual(x)
        return torch.relu(y)


class ShiftGCN(nn.Module):
    """The backbone STAR uses. Input (N, C=3, T, V=25, M=2); T must be a multiple of 4 for the two strides.
    `shift_formula`: the temporal shift's evaluation order ("kernel" = the authors' CUDA expression)."""

    def __init__(self, num_class: int, num_point: int = 25, num_person: int = 2, in_channels: int = 3,
                 width: float = 1.0, shift_formula: str = "lerp"):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        self.num_class, self.num_point, self.num_person, self.in_channels = num_class, num_point, num_person, in_channels
        self.width = float(width)
        self.shift_formula = shift_formula
        self.data_bn = nn.BatchNorm1d(num_person * in_channels * num_point)
        _bn_init(self.data_bn, 1)
        units = unit_channels(width, in_channels)
        for k, (cin, cout, stride, res) in enumerate(units, start=1):
            self.add_module(f"l{k}", ShiftGCNUnit(cin, cout, stride, res, num_point, shift_formula))
        self.out_channels = units[-1][1]
        self.fc = nn.Linear(self.out_channels, num_class)
        nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_class))

    def units(self) -> list[ShiftGCNUnit]:
        return [getattr(self, f"l{k}") for k in range(1, len(BASE_UNITS) + 1)]

    def extract(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone output (N·M, C_out, T/4, V), rows ordered (n, m), and the pooled vector (N, C_out)."""
        if x.dim() != 5 or x.shape[1] != self.in_channels or x.shape[3] != self.num_point \
                or x.shape[4] != self.num_person:
            raise ValueError(f"Shift-GCN expects (N, {self.in_channels}, T, {self.num_point}, {self.num_person}), "
                             f"got {tuple(x.shape)}")
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for unit in self.units():
            x = unit(x)
        pooled = x.view(n, m, x.shape[1], -1).mean(3).mean(1)
        return x, pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.extract(x)[1])


# ----------------------------------------------------------------------------------------------------------------
# The authors' checkpoints

def read_state_dict(path_or_state, what: str = "Shift-GCN checkpoint") -> tuple[dict, str]:
    """The state dict of a checkpoint file (weights-only load, unwrapped) or of a given mapping, and a name for
    messages; shared by the Shift-GCN and STAR weight importers."""
    if isinstance(path_or_state, Mapping):
        return unwrap_state_dict(path_or_state, "<state dict>"), "<state dict>"
    path = Path(path_or_state)
    if not path.is_file():
        raise StarReproError(f"{path}: {what} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpicklable, truncated or not a torch file
        raise StarReproError(f"{path}: not a loadable weights-only PyTorch checkpoint ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return unwrap_state_dict(obj, str(path)), str(path)


# where training scripts commonly nest the state dict inside a saved checkpoint
STATE_DICT_KEYS = ("state_dict", "model", "model_state", "model_state_dict")


def unwrap_state_dict(obj, where: str) -> dict:
    """The state dict inside a loaded checkpoint: the object itself, or the first of STATE_DICT_KEYS holding one
    when the object holds no tensors at its top level (shared by the Shift-GCN and STAR weight importers)."""
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise StarReproError(f"{where}: expected a state dict (parameter name -> tensor), found {type(obj).__name__}")
    return dict(obj)


def normalise_state_keys(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Strip a DataParallel `module.` prefix, and take a STAR model's `pretraining_model.` backbone if present."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    keys = list(state)
    backbone = [k for k in keys if k.split("module.", 1)[-1].startswith("pretraining_model.")]
    for k in backbone or keys:
        name = k[len("module."):] if k.startswith("module.") else k
        if backbone:
            name = name[len("pretraining_model."):]
        out[name] = state[k]
    return out


def load_authors_checkpoint(model: ShiftGCN, path_or_state, strict_except_fc: bool = True) -> dict:
    """Load released Shift-GCN weights; `fc.*` is dropped when its class count differs from the model's.

    With `strict_except_fc`, every other key must be present with the same shape (an error lists the
    differences); without it, matching keys load and the rest are reported. Returns
    {"missing": [...], "unexpected": [...], "dropped": [...]}.
    """
    raw, where = read_state_dict(path_or_state)
    state = normalise_state_keys(raw)
    own = model.state_dict()
    dropped = []
    if "fc.weight" in state and tuple(state["fc.weight"].shape) != tuple(own["fc.weight"].shape):
        dropped = [k for k in state if k.startswith("fc.")]
        for k in dropped:
            del state[k]
    bad_shape = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                 for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state and not (dropped and k.startswith("fc."))]
    unexpected = [k for k in state if k not in own]
    for k in [k for k in state if k.endswith((".shift_in", ".shift_out")) and k in own]:
        if tuple(state[k].shape) == tuple(own[k].shape) and not torch.equal(state[k].to(torch.int64), own[k]):
            bad_shape.append(f"{k}: spatial shift indices differ from the Shift-GCN formula")
    if strict_except_fc and (bad_shape or missing or unexpected):
        lines = []
        if bad_shape:
            lines.append("shape/value mismatches: " + "; ".join(bad_shape[:8]))
        if missing:
            lines.append(f"missing keys ({len(missing)}): {missing[:8]}")
        if unexpected:
            lines.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}")
        raise StarReproError(f"{where}: does not match Shift-GCN at width {model.width} "
                             f"({model.out_channels} output channels): " + " | ".join(lines))
    loadable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(loadable, strict=False)
    return {"missing": missing, "unexpected": unexpected, "dropped": dropped}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Benchmark

def _bench_one(width: float, batch: int, frames: int, device: str, steps: int, num_class: int,
               threads: int | None = None) -> dict:
    import resource

    if threads:
        torch.set_num_threads(threads)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch itself (hundreds of MiB)
    dev = torch.device(device)
    torch.manual_seed(0)
    model = ShiftGCN(num_class, width=width).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, frames, 25, 2, device=dev)
    y = torch.randint(0, num_class, (batch,), device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def train_step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    model.train()
    train_step()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync()
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        model(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync()
        infer_s = time.perf_counter() - t0
    rec = {
        "width": width, "channels": model.out_channels, "params": count_parameters(model), "batch": batch,
        "frames": frames, "device": str(dev), "threads": torch.get_num_threads(),
        "train_samples_per_s": round(batch * steps / train_s, 2),
        "infer_samples_per_s": round(batch * steps / infer_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_model_mib": round(base_rss, 1),
    }
    if dev.type == "cuda":
        rec["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return rec


def bench_shiftgcn(widths=(1.0, 0.125), batch: int = 16, device: str = "cpu", frames: int = 64, steps: int = 3,
                   num_class: int = 55, isolate: bool = True, threads: int | None = None) -> list[dict]:
    """Training and inference samples/s and peak memory of Shift-GCN per width, on random input.

    With `isolate` each width runs in a fresh process, so the peak RSS belongs to that width alone.
    `threads`: torch intra-op threads (None: torch's default).
    """
    if not isolate:
        return [_bench_one(float(w), batch, frames, device, steps, num_class, threads) for w in widths]
    import json
    import subprocess
    import sys

    results = []
    for w in widths:
        code = ("import json,sys; from star_repro.models.shiftgcn import _bench_one; "
                f"print(json.dumps(_bench_one({float(w)!r}, {batch}, {frames}, {device!r}, {steps}, {num_class}, "
                f"{threads!r})))")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise StarReproError(f"benchmark of width {w} failed:\n{proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Benchmark Shift-GCN training/inference throughput and memory")
    ap.add_argument("--widths", default="1.0,0.125", help="comma-separated width multipliers")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args(argv)
    rows = bench_shiftgcn([float(w) for w in args.widths.split(",")], batch=args.batch, device=args.device,
                          frames=args.frames, steps=args.steps, threads=args.threads)
    cols = ["width", "channels", "params", "batch", "device", "threads", "train_samples_per_s",
            "infer_samples_per_s", "peak_rss_mib", "rss_before_model_mib", "cuda_max_allocated_mib"]
    cols = [c for c in cols if any(c in r for r in rows)]
    print("\t".join(cols))
    for r in rows:
        print("\t".join(str(r.get(c, "")) for c in cols))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
