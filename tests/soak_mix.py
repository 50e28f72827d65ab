"""The soak's client mix (add / remove / remove-missing / infer on one index of a live server),
shared by tests/test_soak.py (bounded by a count of operations) and bench/soak.py (bounded by
time, with latencies): the test checks what the index holds afterwards, the bench times it.

``stop()`` and ``on_op(op, seconds)`` are the bench's hooks; the test passes neither, so nothing
here reads a clock unless it is asked to.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import httpx


def ok(r: httpx.Response) -> dict:
    """The ``result`` of a successful service response; AssertionError with the body otherwise."""
    if r.status_code != 200:
        raise AssertionError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}")
    body = r.json()
    assert body["errorCode"] == 0 and body["errorMsg"] == "Success", body
    return body["result"]


@dataclass
class Mix:
    """What the clients did: the ids each assigned label (``expected``), every id ever assigned,
    operation counts, and the errors they hit."""

    expected: dict[int, str]
    assigned: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _one_op(c: httpx.Client, rng: random.Random, mix: Mix, key: str, images: list[str], label: str,
            mine: dict[int, str], removed: list[int]) -> str:
    roll = rng.random()
    if roll < 0.35 or (roll < 0.55 and not mine):
        k = rng.choice((1, 1, 2))
        # a new person per add, distinct photos: the same photo twice for one person is a duplicate
        # (reported, not added)
        label = f"{label}-{len(mine) + len(removed)}"
        pairs = [{"image": img, "label": label} for img in rng.sample(images, k)]
        res = ok(c.post("/face-recognition-index-add", json={"imageLabelPairs": pairs, "indexKey": key}))
        assert len(res["ids"]) == k and "duplicates" not in res, res
        with mix.lock:
            dup = mix.assigned.intersection(res["ids"])
            assert not dup, f"ids assigned twice: {sorted(dup)}"
            mix.assigned.update(res["ids"])
        mine.update({i: label for i in res["ids"]})
        return "add"
    if roll < 0.55:
        ids = rng.sample(sorted(mine), min(len(mine), rng.choice((1, 1, 2))))
        ok(c.post("/face-recognition-index-remove", json={"ids": ids, "indexKey": key}))
        for i in ids:
            del mine[i]
        removed.extend(ids)
        return "remove"
    if roll < 0.60 and removed:
        # removing an id that is already gone is idempotent: reported missing, the others removed
        gone = rng.choice(removed)
        others = rng.sample(sorted(mine), min(1, len(mine)))
        res = ok(c.post("/face-recognition-index-remove", json={"ids": [gone] + others, "indexKey": key}))
        assert res["missing"] == [gone] and res["removed"] == others, res
        for i in others:
            del mine[i]
        removed.extend(others)
        return "remove-missing"
    res = ok(c.post("/face-recognition-infer", json={"image": rng.choice(images), "indexKey": key, "topk": 3,
                                                      "visualize": False}))
    assert len(res["faces"]) >= 1 and len(res["faces"][0]["recResults"]) <= 3, res
    return "infer"


def run_clients(url: str, key: str, images: list[str], expected: dict[int, str], clients: int, ops: int, *,
                stop: Callable[[], bool] | None = None,
                timed: Callable[[Callable[[], str]], None] | None = None, join_s: float = 600) -> Mix:
    """``clients`` threads, each doing up to ``ops`` random operations on index ``key`` (fewer when
    ``stop()`` says so); ``timed(run_op)`` wraps each operation (the bench measures it there).
    Returns the :class:`Mix`; the ids the clients added and kept are merged into ``expected``."""
    mix = Mix(dict(expected), set(expected))

    def client(n: int) -> None:
        rng = random.Random(1000 + n)
        mine: dict[int, str] = {}
        removed: list[int] = []
        try:
            with httpx.Client(base_url=url, timeout=60) as c:
                for _ in range(ops):
                    if stop is not None and stop():
                        break

                    def run_op() -> str:
                        op = _one_op(c, rng, mix, key, images, f"client{n}", mine, removed)
                        with mix.lock:
                            mix.counts[op] += 1
                        return op

                    run_op() if timed is None else timed(run_op)
            with mix.lock:
                mix.expected.update(mine)
        except Exception as exc:  # reported by the caller
            with mix.lock:
                mix.errors.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,), name=f"soak-{n}") for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_s)
    assert not any(t.is_alive() for t in threads), "a soak client did not finish"
    return mix
