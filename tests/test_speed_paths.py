"""The fast paths give today's answers: the list path's read-ahead (facefeat.predict.prefetch) keeps
order, values and errors, and ``pipe.embed`` (one call per photo and one call for a list) still
finds the faces, landmarks and features recorded in tests/data/e2e_reference.json (made with the
per-photo path before the read-ahead existed)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from facefeat.errors import InputError
from facefeat.predict.prefetch import prefetch

REFERENCE = Path(__file__).parent / "data" / "e2e_reference.json"
#: a reference made in bf16 is compared with fp32 on CPUs without bf16: cosine, not equality
MIN_COSINE = 0.99
MAX_PX = 1.0


def test_prefetch_keeps_order_and_values():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))
    assert list(prefetch([])) == []


def test_prefetch_raises_the_producers_error_at_its_position():
    def gen():
        yield 1
        yield 2
        raise InputError("third item is bad")

    got = []
    with pytest.raises(InputError, match="third item is bad"):
        for x in prefetch(gen()):
            got.append(x)
    assert got == [1, 2]


def test_prefetch_runs_ahead_by_at_most_depth_and_stops_when_closed():
    made = []
    gate = threading.Event()

    def gen():
        for i in range(1000):
            made.append(i)
            yield i

    it = prefetch(gen(), depth=2)
    assert next(it) == 0
    for _ in range(50):  # bounded wait for the producer to fill the queue
        if len(made) >= 3:
            break
        gate.wait(0.02)
    gate.wait(0.2)
    assert len(made) == 3  # the one consumed and two ahead; the producer waits for room
    it.close()
    n = len(made)
    gate.wait(0.3)
    assert len(made) == n  # stopped
    assert not [t for t in threading.enumerate() if t.name == "facefeat-prefetch"]


def test_prefetch_refuses_a_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        list(prefetch([1], depth=0))


@pytest.fixture(scope="module")
def pipe():
    from facefeat import create_pipeline

    return create_pipeline("face_recognition")


def _check_against_reference(name: str, faces: list[dict], ref: list[dict]) -> None:
    assert len(faces) == len(ref), f"{name}: {len(faces)} faces, reference {len(ref)}"
    for got, want in zip(faces, ref):
        assert np.abs(np.subtract(got["coordinate"], want["coordinate"])).max() <= MAX_PX, name
        assert np.abs(np.subtract(got["landmarks"], want["landmarks"])).max() <= MAX_PX, name
        a, b = np.asarray(got["feature"], np.float64), np.asarray(want["feature"], np.float64)
        cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert cos >= MIN_COSINE, f"{name}: feature cosine {cos:.4f} to the reference"


def test_per_photo_and_list_paths_match_the_reference(pipe, lfw_dir):
    ref = json.loads(REFERENCE.read_text())["images"]
    names = list(ref)
    for name in names:
        _check_against_reference(name, pipe.embed(str(lfw_dir / name)), ref[name])
    # a list longer than one chunk, so the read-ahead runs; every photo twice, in order
    listed = names + names[::-1]
    out = pipe.embed([str(lfw_dir / n) for n in listed])
    assert len(out) == len(listed)
    for name, faces in zip(listed, out):
        _check_against_reference(name, faces, ref[name])


def test_list_path_reports_unreadable_files_in_order(pipe, lfw_dir, tmp_path):
    ref = json.loads(REFERENCE.read_text())["images"]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    names = list(ref) * 2
    paths = [str(lfw_dir / n) for n in names]
    paths.insert(9, str(bad))  # in the second chunk, read while the first one embeds
    failures: list = []
    results, seen = [], []
    for r in pipe.predict(paths, failures=failures):
        results.append(r)
        seen.append(len(failures))
    assert [r["input_path"] for r in results] == [p for p in paths if p != str(bad)]
    # reported with its own chunk (photos 8-15), not earlier while the first chunk is still coming out
    assert seen == [0] * 8 + [1] * (len(results) - 8)
    assert len(failures) == 1 and "broken.jpg" in str(failures[0])
    with pytest.raises(InputError, match="broken.jpg"):
        pipe.embed(paths)
