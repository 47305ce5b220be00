"""Training plumbing shared by the pretraining and STAR trainers: seeding, devices and threads, data-parallel
context, per-epoch checkpoints with resume, and a CPU-capable synchronised BatchNorm.

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with `weights_only=True`.
"""
from __future__ import annotations

import dataclasses
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from star_repro.errors import StarReproError
from star_repro.io import save_torch_atomic


# ----------------------------------------------------------------------------------------------------------------
# Seeds, determinism, devices, threads

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_deterministic(enabled: bool = True) -> None:
    """cuDNN deterministic and no autotuning (as STAR++ and the pretraining code set); deterministic algorithms
    where PyTorch has them (a warning, not an error, where it has none)."""
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN (to expose reads of uninitialised memory): ~1,600
    # fill kernels per Shift-GCN step on a GPU, and no value computed here reads such memory.
    torch.utils.deterministic.fill_uninitialized_memory = False


class restored_torch_flags:
    """Context: torch's determinism, cuDNN and TF32 flags as they were on entry, whatever the body sets."""

    def __enter__(self):
        self.saved = (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.deterministic,
                      torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
                      torch.backends.cudnn.allow_tf32, torch.utils.deterministic.fill_uninitialized_memory)
        return self

    def __exit__(self, *exc):
        s = self.saved
        torch.use_deterministic_algorithms(s[0], warn_only=s[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = s[2], s[3]
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = s[4], s[5]
        torch.utils.deterministic.fill_uninitialized_memory = s[6]
        return False


PRECISIONS = ("fp32", "tf32", "bf16")


def set_precision(precision: str) -> None:
    """fp32: every product in float32 (TF32 off for matmuls and convolutions; PyTorch's default leaves it on for
    convolutions); tf32: TF32 tensor cores for both; bf16: as tf32, plus bf16 autocast in the training step
    (`autocast`). tf32 and bf16 change the numbers; they are speed settings for GPUs, never under official-code."""
    if precision not in PRECISIONS:
        raise StarReproError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    fast = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = fast
    torch.backends.cudnn.allow_tf32 = fast


def autocast(device, precision: str):
    """The autocast context of a precision (bf16 only; a no-op context otherwise)."""
    dev_type = device.type if hasattr(device, "type") else str(device).split(":")[0]
    return torch.autocast(dev_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None = None, local_world_size: int = 1) -> int:
    """Intra-op threads: explicit value, else $OMP_NUM_THREADS, else the cores shared among local processes."""
    if threads is None or threads <= 0:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else max(1, available_cores() // max(1, local_world_size))
    torch.set_num_threads(threads)
    return threads


@dataclasses.dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device, local_rank: int = 0) -> torch.device:
    """'cpu', 'cuda', 'cuda:K' or 'auto'; under torchrun a bare 'cuda' becomes this process's GPU."""
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise StarReproError(f"device {name!r} requested but CUDA is not available (use device 'cpu')")
        return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
    if name != "cpu":
        raise StarReproError(f"device must be 'cpu', 'cuda', 'cuda:K' or 'auto', got {name!r}")
    return torch.device("cpu")


def init_distributed(device: str | torch.device = "cpu") -> DistContext:
    """Read torchrun's environment; start the process group (gloo on CPU, NCCL on GPU) when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    dev = resolve_device(device, local_rank)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
    return DistContext(rank, world, local_rank, local_world, dev)


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum numbers over all processes (float64), in a fixed order, so every rank gets the same totals."""
    if not ctx.distributed:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.cpu().tolist()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


# ----------------------------------------------------------------------------------------------------------------
# Synchronised BatchNorm that also works with gloo on CPU

class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum over processes is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class DistBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are over the global batch of all processes.

    torch's SyncBatchNorm runs on GPUs only; this one all-reduces (sum, sum of squared deviations, count) with a
    differentiable all-reduce, so data-parallel training on CPU normalises exactly like one process with the
    whole batch. State-dict keys are those of BatchNorm.
    """

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not self.training or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64, device=x.device)
        dist.all_reduce(count)
        n = float(count.item())
        mean = all_reduce(x.sum(dims)) / n
        xc = x - mean.view(shape)
        var = all_reduce((xc * xc).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Swap every BatchNorm for a synchronised one (torch's on GPU, DistBatchNorm on CPU), keeping its state."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, DistBatchNorm):
        new = DistBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
        # Share the very tensors, so an optimiser built before the swap still updates them.
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_sync_batchnorm(child, device))
    return module


# ----------------------------------------------------------------------------------------------------------------
# Learning-rate rule and per-epoch checkpoints

def step_lr(base_lr: float, epoch: int, steps: list[int], decay: float = 0.1) -> float:
    """base_lr · decay^#(epoch ≥ s), epoch 0-based, no warm-up (the authors' rule)."""
    return base_lr * decay ** sum(1 for s in steps if epoch >= s)


class CheckpointDir:
    """`{dir}/{prefix}-{k}.pt` after k completed epochs; atomic writes; keeps the newest `keep`."""

    def __init__(self, root: str | Path, keep: int = 2, prefix: str = "epoch"):
        self.root = Path(root)
        self.keep = max(1, int(keep))
        self.prefix = prefix
        self._pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)\.pt$")

    def path(self, epoch: int) -> Path:
        return self.root / f"{self.prefix}-{epoch}.pt"

    def list(self) -> list[tuple[int, Path]]:
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            m = self._pattern.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def save(self, epoch: int, state: Mapping) -> Path:
        dest = self.path(epoch)
        save_torch_atomic(dict(state), dest)
        for k, p in self.list()[:-self.keep]:
            p.unlink(missing_ok=True)
        return dest

    def load(self, path: str | Path) -> dict:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise StarReproError(f"{path}: unreadable checkpoint ({type(exc).__name__}); delete it to restart "
                                 "from the previous one") from None

    def latest(self, max_epoch: int | None = None, fingerprint: str | None = None) -> dict | None:
        """The newest readable checkpoint at or below `max_epoch` whose fingerprint matches (None: none)."""
        for epoch, p in reversed(self.list()):
            if max_epoch is not None and epoch > max_epoch:
                continue
            try:
                state = self.load(p)
            except StarReproError:
                continue  # e.g. a file cut short by a crash outside atomic_path; an older one may do
            if fingerprint is not None and state.get("fingerprint") != fingerprint:
                return None
            return state
        return None

    def clear(self) -> int:
        n = 0
        for _, p in self.list():
            p.unlink(missing_ok=True)
            n += 1
        return n


def rng_state() -> dict:
    """torch's generators (the loops draw everything else from (seed, epoch, index)-derived generators)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
