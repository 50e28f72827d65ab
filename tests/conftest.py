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


def make_gallery(root: Path, lfw_dir: Path, people: list[str], per_person: int = 2) -> Path:
    """``root/<person>/<file>.jpg`` (the first ``per_person`` LFW photos of each) + ``gallery.txt``,
    PaddleX's gallery layout."""
    lines = []
    for person in people:
        for src in sorted((lfw_dir / person).glob("*.jpg"))[:per_person]:
            (root / person).mkdir(parents=True, exist_ok=True)
            (root / person / src.name).write_bytes(src.read_bytes())
            lines.append(f"{person}/{src.name} {person}")
    (root / "gallery.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return need_shared("data", "lfw")


@pytest.fixture(scope="session")
def lfw_pairs() -> Path:
    return need_shared("data", "lfw_pairs.txt")


@pytest.fixture(scope="session")
def paddle_peers() -> Path:
    return need_shared("peers", "paddlex")


@pytest.fixture(scope="module")
def pipe():
    """The default face-recognition pipeline, one per test module (a module may change its index)."""
    from facefeat import create_pipeline

    return create_pipeline("face_recognition")


def first_photo_gallery(pipe, lfw_dir: Path, people: list[str], directory: Path):
    """A Flat gallery of each person's first LFW photo, saved in ``directory``: ``(index, directory)``."""
    index = pipe.build_index([str(lfw_dir / p / f"{p}_0001.jpg") for p in people], people, index_type="Flat")
    index.save(directory)
    return index, directory


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session shares one facefeat cache outside the user's home."""
    cache = tmp_path_factory.getbasetemp() / "facefeat-cache"
    monkeypatch.setenv("FACEFEAT_HOME", str(cache))


def zoo_params(names):
    """Zoo model names as test parameters, as timm's tests derive them from the registry; the 512-d
    PyTorch backbones (ResNet50_face) take seconds per test, so their cases run in the slow lane."""
    from facefeat.registry import get_spec

    heavy = {n for n in names if get_spec(n).arch and get_spec(n).embedding_size >= 512}
    return [pytest.param(n, marks=pytest.mark.slow, id=n) if n in heavy else n for n in names]
