"""Shared fixtures: where ../shared lives, and the rule for tests that need it.

Tests that need the shared data or peers skip with a clear reason in a fresh clone, and fail in CI
(where CI=true) because there the data must be present.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facefeat.utils import shared_dir

REPO = Path(__file__).resolve().parents[1]


def need_shared(*parts: str) -> Path:
    """Return ../shared/<parts>; skip the test if it is absent, or fail under CI=true."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        reason = (
            f"needs {path} (the project's shared data/peers beside the checkout); "
            "absent in this clone"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + " - but CI=true, where it must be present")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return need_shared("data", "lfw")


@pytest.fixture(scope="session")
def lfw_pairs() -> Path:
    return need_shared("data", "lfw_pairs.txt")


@pytest.fixture(scope="session")
def paddle_peers() -> Path:
    return need_shared("peers", "paddlex")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session shares one facefeat cache outside the user's home."""
    cache = tmp_path_factory.getbasetemp() / "facefeat-cache"
    monkeypatch.setenv("FACEFEAT_HOME", str(cache))
