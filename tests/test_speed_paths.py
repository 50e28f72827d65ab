"""The fast paths give today's answers: the list path's read-ahead (facefeat.predict.prefetch) keeps
order, values and errors, and one ``pipe.embed`` call for a list (read-ahead on) finds the same
faces, landmarks and features as one call per photo (no read-ahead). No reference features are
stored: features of real people's faces are biometric data and stay out of the repository."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from facefeat.errors import InputError
from facefeat.predict.prefetch import prefetch

#: the two paths batch differently (1 vs up to 8 faces): equal up to the runtime's batching noise
MIN_COSINE = 0.9999
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



def _check_against_reference(name: str, faces: list[dict], ref: list[dict]) -> None:
    assert len(faces) == len(ref), f"{name}: {len(faces)} faces, reference {len(ref)}"
    for got, want in zip(faces, ref):
        assert np.abs(np.subtract(got["coordinate"], want["coordinate"])).max() <= MAX_PX, name
        assert np.abs(np.subtract(got["landmarks"], want["landmarks"])).max() <= MAX_PX, name
        a, b = np.asarray(got["feature"], np.float64), np.asarray(want["feature"], np.float64)
        cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert cos >= MIN_COSINE, f"{name}: feature cosine {cos:.4f} to the reference"


NAMES = ["Colin_Powell/Colin_Powell_0001.jpg", "George_W_Bush/George_W_Bush_0001.jpg",
         "Serena_Williams/Serena_Williams_0001.jpg", "Tony_Blair/Tony_Blair_0001.jpg",
         "Gerhard_Schroeder/Gerhard_Schroeder_0001.jpg", "Ariel_Sharon/Ariel_Sharon_0001.jpg"]


def test_list_path_matches_one_call_per_photo(pipe, lfw_dir):
    names = NAMES
    ref = {name: pipe.embed(str(lfw_dir / name)) for name in names}
    assert all(ref.values()), "every reference photo has a face"
    # a list longer than one chunk, so the read-ahead runs; every photo twice, in order
    listed = names + names[::-1]
    out = pipe.embed([str(lfw_dir / n) for n in listed])
    assert len(out) == len(listed)
    for name, faces in zip(listed, out):
        _check_against_reference(name, faces, ref[name])


def test_list_path_reports_unreadable_files_in_order(pipe, lfw_dir, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    names = NAMES * 2
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
