"""Soak benchmark: N concurrent clients mix add / infer / remove on one index of a live server
process for a given time; reports throughput and per-operation latency (p50 / p99).

The client mix is the soak test's (``tests/soak_mix.py``); the test checks correctness with a
fixed count of operations, this measures it (run on a quiet machine):

    python bench/soak.py --seconds 30 --clients 8
    python bench/soak.py --seconds 3 --clients 2          # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the serving tests' helpers and the soak's client mix

from serving_fixtures import ProcessServer, b64_bytes, b64_file, lfw_images  # noqa: E402
from soak_mix import ok, run_clients  # noqa: E402

from _common import LFW_DIR, need  # noqa: E402


def _small_jpeg(path: Path, side: int = 125) -> str:
    img = cv2.resize(cv2.imread(str(path)), (side, side), interpolation=cv2.INTER_AREA)
    done, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert done
    return b64_bytes(buf.tobytes())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="how long the clients run")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-ops", type=int, default=100000, help="operations per client at most")
    ap.add_argument("--server-args", default="--infer-concurrency 2 --threads 1")
    a = ap.parse_args(argv)
    lfw = need(LFW_DIR, "LFW")
    candidates = lfw_images(lfw, "George_W_Bush", 8) + lfw_images(lfw, "Colin_Powell", 8)
    labels = ["George_W_Bush"] * 8 + ["Colin_Powell"] * 8
    smalls = [_small_jpeg(p) for p in candidates]
    with tempfile.TemporaryDirectory(prefix="facefeat-soak-") as tmp:
        srv = ProcessServer(Path(tmp) / "storage", *a.server_args.split(), log_path=Path(tmp) / "server.log").start()
        try:
            with httpx.Client(base_url=srv.url, timeout=60) as c:
                good = [i for i, img in enumerate(smalls) if len(ok(c.post(
                    "/face-recognition-infer", json={"image": img, "visualize": False}))["faces"]) == 1]
                built = ok(c.post("/face-recognition-index-build", json={
                    "imageLabelPairs": [{"image": b64_file(candidates[g]), "label": labels[g]} for g in good]}))
            expected = {i: labels[g] for i, g in zip(built["ids"], good)}
            latency: dict[str, list[float]] = defaultdict(list)
            lock = threading.Lock()

            def timed(run_op) -> None:
                t0 = time.perf_counter()
                op = run_op()
                with lock:
                    latency[op].append(time.perf_counter() - t0)

            end = time.monotonic() + a.seconds
            t_start = time.monotonic()
            mix = run_clients(srv.url, built["indexKey"], [smalls[g] for g in good], expected, a.clients, a.max_ops,
                              stop=lambda: time.monotonic() > end, timed=timed, join_s=a.seconds + 300)
            elapsed = time.monotonic() - t_start
        finally:
            srv.stop()
    if mix.errors:
        raise SystemExit(f"client errors: {mix.errors[:5]}")
    total = sum(mix.counts.values())
    print(f"soak: {a.clients} clients, {elapsed:.1f} s, {total} requests ({total / elapsed:.1f}/s)")
    for op in sorted(latency):
        ms = np.asarray(latency[op]) * 1000
        print(f"  {op:15s} n={len(ms):5d}  p50={np.percentile(ms, 50):7.1f} ms  p99={np.percentile(ms, 99):7.1f} ms")


if __name__ == "__main__":
    main()
