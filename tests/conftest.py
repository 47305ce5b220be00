"""Shared fixtures. Real third-party files are read from ../shared/data/real and never copied."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
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
