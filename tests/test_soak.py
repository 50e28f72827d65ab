"""Soak: N concurrent clients mix add / infer / remove on one index of a live server process.

Bounded in time (``FACEFEAT_SOAK_SECONDS``, default 30 s) and in count (``MAX_OPS_PER_CLIENT``),
loopback only. Afterwards the index must hold exactly the expected ids (nothing lost, nothing
duplicated, every label right); then the server process is stopped and a new one started on the
same storage directory, which must serve the same index.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serving_fixtures import ProcessServer, b64_bytes, b64_file, lfw_images  # noqa: E402

CLIENTS = int(os.environ.get("FACEFEAT_SOAK_CLIENTS", 8))
SECONDS = float(os.environ.get("FACEFEAT_SOAK_SECONDS", 30))
MAX_OPS_PER_CLIENT = 400
SERVER_ARGS = ["--infer-concurrency", "2", "--threads", "1"]


def _small_jpeg(path: Path, side: int = 125) -> str:
    img = cv2.resize(cv2.imread(str(path)), (side, side), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return b64_bytes(buf.tobytes())


def _ok(r: httpx.Response) -> dict:
    if r.status_code != 200:
        raise AssertionError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}")
    body = r.json()
    assert body["errorCode"] == 0 and body["errorMsg"] == "Success", body
    return body["result"]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q)) if xs else float("nan")


def test_soak_concurrent_mutations_then_restart(lfw_dir, tmp_path):
    storage = tmp_path / "storage"
    log_path = tmp_path / "server.log"
    candidates = lfw_images(lfw_dir, "George_W_Bush", 8) + lfw_images(lfw_dir, "Colin_Powell", 8)
    labels = ["George_W_Bush"] * 8 + ["Colin_Powell"] * 8
    # small images keep the two cores' load bounded; the gallery uses them too
    smalls = [_small_jpeg(p) for p in candidates]

    srv = ProcessServer(storage, *SERVER_ARGS, log_path=log_path).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            # the photos whose small copy shows one face (a request with a faceless image is refused whole)
            good = [i for i, img in enumerate(smalls)
                    if len(_ok(c.post("/face-recognition-infer", json={"image": img, "visualize": False}))["faces"]) == 1]
            assert len(good) >= 8, good
            built = _ok(c.post("/face-recognition-index-build", json={
                "imageLabelPairs": [{"image": b64_file(candidates[g]), "label": labels[g]} for g in good]}))
        key = built["indexKey"]
        assert len(built["ids"]) == len(good)  # positional: one id per pair
        expected: dict[int, str] = {i: labels[g] for i, g in zip(built["ids"], good)}

        deadline = time.monotonic() + SECONDS
        lock = threading.Lock()
        assigned: set[int] = set(expected)
        errors: list[str] = []
        counts: dict[str, int] = defaultdict(int)
        latency: dict[str, list[float]] = defaultdict(list)

        def client(n: int) -> None:
            rng = random.Random(1000 + n)
            mine: dict[int, str] = {}
            removed: list[int] = []
            label = f"client{n}"
            try:
                with httpx.Client(base_url=srv.url, timeout=60) as c:
                    for _ in range(MAX_OPS_PER_CLIENT):
                        if time.monotonic() > deadline:
                            break
                        roll = rng.random()
                        t0 = time.perf_counter()
                        if roll < 0.35 or (roll < 0.55 and not mine):
                            k = rng.choice((1, 1, 2))
                            # a new person per add, distinct photos: the same photo twice for one person
                            # is a duplicate (reported, not added)
                            label = f"client{n}-{len(mine) + len(removed)}"
                            pairs = [{"image": smalls[g], "label": label} for g in rng.sample(good, k)]
                            res = _ok(c.post("/face-recognition-index-add",
                                             json={"imageLabelPairs": pairs, "indexKey": key}))
                            assert len(res["ids"]) == k and "duplicates" not in res, res
                            with lock:
                                dup = assigned.intersection(res["ids"])
                                assert not dup, f"ids assigned twice: {sorted(dup)}"
                                assigned.update(res["ids"])
                            mine.update({i: label for i in res["ids"]})
                            op = "add"
                        elif roll < 0.55:
                            ids = rng.sample(sorted(mine), min(len(mine), rng.choice((1, 1, 2))))
                            _ok(c.post("/face-recognition-index-remove", json={"ids": ids, "indexKey": key}))
                            for i in ids:
                                del mine[i]
                            removed.extend(ids)
                            op = "remove"
                        elif roll < 0.60 and removed:
                            # removing an id that is already gone is idempotent: reported missing, the
                            # others removed
                            gone = rng.choice(removed)
                            others = rng.sample(sorted(mine), min(1, len(mine)))
                            res = _ok(c.post("/face-recognition-index-remove",
                                             json={"ids": [gone] + others, "indexKey": key}))
                            assert res["missing"] == [gone] and res["removed"] == others, res
                            for i in others:
                                del mine[i]
                            removed.extend(others)
                            op = "remove-missing"
                        else:
                            res = _ok(c.post("/face-recognition-infer",
                                             json={"image": smalls[rng.choice(good)], "indexKey": key, "topk": 3,
                                                   "visualize": False}))
                            assert len(res["faces"]) >= 1 and len(res["faces"][0]["recResults"]) <= 3, res
                            op = "infer"
                        dt = time.perf_counter() - t0
                        with lock:
                            counts[op] += 1
                            latency[op].append(dt)
                with lock:
                    expected.update(mine)
            except Exception as exc:  # reported by the main thread
                with lock:
                    errors.append(f"client {n}: {exc!r}")

        t_start = time.monotonic()
        threads = [threading.Thread(target=client, args=(n,), name=f"soak-{n}") for n in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + 120)
        elapsed = time.monotonic() - t_start
        assert not any(t.is_alive() for t in threads), "a soak client did not finish"
        assert not errors, errors[:5]

        total = sum(counts.values())
        print(f"\nsoak: {CLIENTS} clients, {elapsed:.1f} s, {total} requests ({total / elapsed:.1f}/s)")
        for op in sorted(counts):
            print(f"  {op:15s} n={counts[op]:5d}  p50={_pct(latency[op], 50):7.1f} ms  p99={_pct(latency[op], 99):7.1f} ms")
        assert counts["add"] >= CLIENTS and counts["infer"] >= CLIENTS and counts["remove"] >= 1, dict(counts)
        assert elapsed >= SECONDS * 0.9 or total >= CLIENTS * MAX_OPS_PER_CLIENT * 0.9

        with httpx.Client(base_url=srv.url, timeout=60) as c:
            info = _ok(c.get("/face-recognition-index-info", params={"indexKey": key}))
        got_ids = [e["id"] for e in info["entries"]]
        assert len(got_ids) == len(set(got_ids)), "duplicated ids in the index"
        assert set(got_ids) == set(expected), (
            f"lost: {sorted(set(expected) - set(got_ids))[:20]}, unexpected: {sorted(set(got_ids) - set(expected))[:20]}")
        assert {e["id"]: e["label"] for e in info["entries"]} == expected
        assert info["imageCount"] == len(expected)
        print(f"  index {key}: {len(expected)} entries, as expected")
        rc = srv.stop()
        assert rc == 0, f"server exited with {rc}:\n{srv.log_text()[-3000:]}"
        # no half-written index was left behind
        leftovers = [p.name for p in (storage / "indexes").iterdir()
                     if p.name.startswith(".") and not p.name.endswith(".lock")]  # lock files stay
        assert not leftovers, leftovers
        assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]

        # a new server process on the same storage serves the same index
        srv = ProcessServer(storage, *SERVER_ARGS, log_path=log_path).start()
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            info2 = _ok(c.get("/face-recognition-index-info", params={"indexKey": key}))
            assert info2 == info
            listed = _ok(c.get("/face-recognition-index-list"))["indexes"]
            assert {"indexKey": key, "imageCount": len(expected), "model": "SFace"} in listed
            res = _ok(c.post("/face-recognition-infer", json={"image": b64_file(candidates[good[-1]]),
                                                              "indexKey": key, "topk": 1}))
            assert res["faces"][0]["recResults"], res
            # and it still takes writes, continuing the id sequence
            res = _ok(c.post("/face-recognition-index-add", json={
                "imageLabelPairs": [{"image": smalls[good[0]], "label": "after-restart"}], "indexKey": key}))
            assert res["ids"][0] > max(assigned) and res["imageCount"] == len(expected) + 1
    finally:
        srv.stop()
