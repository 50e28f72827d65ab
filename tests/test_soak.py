"""Soak: N concurrent clients mix add / infer / remove on one index of a live server process.

Bounded by a count of operations (``FACEFEAT_SOAK_CLIENTS`` clients x ``FACEFEAT_SOAK_OPS`` each),
loopback only; nothing is timed (``bench/soak.py`` measures throughput and latency with the same
client mix, :mod:`soak_mix`). Afterwards the index must hold exactly the expected ids (nothing lost,
nothing duplicated, every label right); then the server process is stopped and a new one started
on the same storage directory, which must serve the same index.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serving_fixtures import ProcessServer, b64_bytes, b64_file, lfw_images  # noqa: E402
from soak_mix import ok as _ok  # noqa: E402
from soak_mix import run_clients  # noqa: E402

CLIENTS = int(os.environ.get("FACEFEAT_SOAK_CLIENTS", 8))
OPS_PER_CLIENT = int(os.environ.get("FACEFEAT_SOAK_OPS", 150))
SERVER_ARGS = ["--infer-concurrency", "2", "--threads", "1"]


def _small_jpeg(path: Path, side: int = 125) -> str:
    img = cv2.resize(cv2.imread(str(path)), (side, side), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return b64_bytes(buf.tobytes())


@pytest.mark.slow
@pytest.mark.timeout(900)
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

        mix = run_clients(srv.url, key, [smalls[g] for g in good], expected, CLIENTS, OPS_PER_CLIENT)
        assert not mix.errors, mix.errors[:5]
        counts, expected, assigned = mix.counts, mix.expected, mix.assigned
        assert sum(counts.values()) == CLIENTS * OPS_PER_CLIENT, dict(counts)
        assert counts["add"] >= CLIENTS and counts["infer"] >= CLIENTS and counts["remove"] >= 1, dict(counts)

        with httpx.Client(base_url=srv.url, timeout=60) as c:
            info = _ok(c.get("/face-recognition-index-info", params={"indexKey": key}))
        got_ids = [e["id"] for e in info["entries"]]
        assert len(got_ids) == len(set(got_ids)), "duplicated ids in the index"
        assert set(got_ids) == set(expected), (
            f"lost: {sorted(set(expected) - set(got_ids))[:20]}, unexpected: {sorted(set(got_ids) - set(expected))[:20]}")
        assert {e["id"]: e["label"] for e in info["entries"]} == expected
        assert info["imageCount"] == len(expected)
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
            assert {"indexKey": key, "indexName": None, "imageCount": len(expected), "model": "SFace"} in listed
            res = _ok(c.post("/face-recognition-infer", json={"image": b64_file(candidates[good[-1]]),
                                                              "indexKey": key, "topk": 1}))
            assert res["faces"][0]["recResults"], res
            # and it still takes writes, continuing the id sequence
            res = _ok(c.post("/face-recognition-index-add", json={
                "imageLabelPairs": [{"image": smalls[good[0]], "label": "after-restart"}], "indexKey": key}))
            assert res["ids"][0] > max(assigned) and res["imageCount"] == len(expected) + 1
    finally:
        srv.stop()
