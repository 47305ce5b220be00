"""Shared fixtures. Real third-party files are read from ../shared/data/real and never copied."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# test tooling that is not part of the installed package (tools/slurm_cluster.py: the one-node SLURM cluster)
sys.path.insert(0, str(PROJECT_ROOT / "tools"))
REAL_DATA = Path(os.environ.get("STAR_REPRO_REAL_DATA", PROJECT_ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real third-party files; tests using it skip with the reason when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real third-party data not found at {REAL_DATA} (set STAR_REPRO_REAL_DATA or place "
                    "../shared/data/real beside the project)")
    return REAL_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny-tensor tests: they gain nothing from more, and on a busy 2-core
    machine OpenMP barriers and spin-waits cost more than they bring. The previous count is restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
