"""Hostile loads against ``facefeat serve`` (issue #20): seconds, statuses and the server's peak
memory, so that the service's memory bound can be stated and checked.

Starts ``python -m facefeat serve`` (one worker, default settings but ``--infer-concurrency``)
from a checkout (``--repo``, default this one: run it once with ``--repo /path/to/old/checkout``
for the "before" numbers), then runs, each bounded in time and count:

- ``scan-bomb``: a progressive JPEG (``--bomb-side``) whose last scan repeats ``--bomb-repeats`` times;
- ``unknown-fields``: ``--field-bodies`` bodies of ``--field-names`` new unknown field names each;
- ``build``: one index-build with ``--build-images`` face-less ``--side`` PNGs;
- ``verify``: ``--concurrency`` concurrent /face-verify requests with two ``--side`` PNGs each;
- ``collage``: three requests with a ``--collage-side`` picture of ``--collage-faces`` LFW faces
  (one API key), while a normal request of another key is timed next to them (fairness);
- ``slow-client``: headers that never finish (closed after header_timeout_s?) and a
  Content-Length over the body limit (413 at once?).

Prints one JSON line per load and the peak RSS of the server process tree over the whole run.

    python bench/hostile.py                                   # the issue's sizes (minutes, GBs on old code)
    python bench/hostile.py --side 1500 --build-images 4 --concurrency 3 --bomb-repeats 300 \
        --field-bodies 3 --field-names 20000 --collage-faces 100 --collage-side 1600   # a small run
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from serving_fixtures import free_port  # noqa: E402

from facefeat.utils import shared_dir  # noqa: E402


HEAVY, NORMAL = "bench-heavy-client-key", "bench-normal-client-key"  # two clients, for fairness


def tree_rss(pid: int) -> int:
    try:
        p = psutil.Process(pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)])
    except psutil.Error:
        return 0


class Peak:
    """Samples the server tree's RSS every 50 ms; ``mark()`` starts a new per-load peak."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.load_peak, self.stop = pid, 0, 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            r = tree_rss(self.pid)
            self.peak, self.load_peak = max(self.peak, r), max(self.load_peak, r)
            time.sleep(0.05)

    def mark(self) -> int:
        before, self.load_peak = self.load_peak, tree_rss(self.pid)
        return before


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    return buf.tobytes()


def scan_bomb(side: int, repeats: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    smooth = cv2.resize((rng.random((8, 8, 3)) * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, "JPEG", progressive=True, quality=30)
    data = buf.getvalue()
    last, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * repeats + data[end:]


def faceless(side: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)  # flat blocks: a few hundred KB as PNG, full size when decoded
    small = (rng.random((side // 100, side // 100, 3)) * 255).astype(np.uint8)
    return png(cv2.resize(small, (side, side), interpolation=cv2.INTER_NEAREST))


def collage(side: int, n: int) -> bytes:
    lfw = shared_dir() / "data" / "lfw"
    files = sorted(lfw.glob("*/*.jpg"))[: max(n, 1)]
    k = int(np.ceil(np.sqrt(n)))
    tile = side // k
    out = np.full((side, side, 3), 100, np.uint8)
    for i, f in enumerate(files[:n]):
        face = cv2.resize(cv2.imread(str(f))[60:190, 60:190], (tile, tile))
        r, c = divmod(i, k)
        out[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = face
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes()


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # a reset connection is an answer too
        out = f"{type(exc).__name__}"
    return round(time.perf_counter() - t0, 2), out


def status(r) -> object:
    return r.status_code if hasattr(r, "status_code") else r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", default=str(REPO), help="checkout to serve from (compare before/after)")
    ap.add_argument("--infer-concurrency", type=int, default=2)
    ap.add_argument("--side", type=int, default=5000)
    ap.add_argument("--build-images", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=12)
    ap.add_argument("--bomb-side", type=int, default=4000)
    ap.add_argument("--bomb-repeats", type=int, default=2000)
    ap.add_argument("--field-bodies", type=int, default=26)
    ap.add_argument("--field-names", type=int, default=500_000)
    ap.add_argument("--collage-side", type=int, default=4800)
    ap.add_argument("--collage-faces", type=int, default=2500)
    ap.add_argument("--timeout", type=float, default=900.0, help="client timeout per request (s)")
    ap.add_argument("--only", default="", help="comma-separated loads to run (default: all)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    want = (lambda name: not only or name in only)

    storage = tempfile.mkdtemp(prefix="facefeat-hostile-")
    port = free_port()
    log = open(Path(storage) / "server.log", "wb")
    env = dict(os.environ, PYTHONPATH=args.repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "facefeat", "serve", "--storage", storage, "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning", "--infer-concurrency",
                             str(args.infer_concurrency), "--api-key", HEAVY, "--api-key", NORMAL], cwd=args.repo, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"server exited; log: {Path(storage) / 'server.log'}")
            time.sleep(0.2)
        peak = Peak(proc.pid)
        c = httpx.Client(base_url=url, timeout=args.timeout, headers={"X-API-Key": HEAVY})
        print(json.dumps({"load": "idle", "rss_mb": tree_rss(proc.pid) >> 20, "repo": args.repo,
                          "loadavg": os.getloadavg()}), flush=True)

        def report(name: str, **kw) -> None:
            print(json.dumps({"load": name, **kw, "load_peak_rss_mb": peak.mark() >> 20}), flush=True)

        if want("scan-bomb"):
            bomb = scan_bomb(args.bomb_side, args.bomb_repeats)
            s, r = timed(lambda: c.post("/face-feature-infer", json={"image": b64(bomb)}))
            report("scan-bomb", kb=len(bomb) >> 10, seconds=s, status=status(r))
        if want("unknown-fields"):
            t0 = time.perf_counter()
            codes = []
            for b in range(args.field_bodies):
                body = {"image": "", **{f"f{b}_{i}": 0 for i in range(args.field_names)}}
                codes.append(status(c.post("/face-feature-infer", json=body)))
            report("unknown-fields", seconds=round(time.perf_counter() - t0, 2), statuses=sorted(set(codes)),
                   rss_after_mb=tree_rss(proc.pid) >> 20)
        if want("build"):
            imgs = [faceless(args.side, i) for i in range(args.build_images)]
            pairs = [{"image": b64(d), "label": f"p{i}"} for i, d in enumerate(imgs)]
            s, r = timed(lambda: c.post("/face-recognition-index-build", json={"imageLabelPairs": pairs}))
            report("build", mb=sum(map(len, imgs)) >> 20, seconds=s, status=status(r))
        if want("verify"):
            img = b64(faceless(args.side, 99))
            with ThreadPoolExecutor(args.concurrency) as ex:
                t0 = time.perf_counter()
                codes = list(ex.map(lambda _: status(timed(lambda: c.post(
                    "/face-verify", json={"image1": img, "image2": img}))[1]), range(args.concurrency)))
            report("verify", seconds=round(time.perf_counter() - t0, 2), statuses=sorted(map(str, set(codes))))
        if want("collage"):
            pic = b64(collage(args.collage_side, args.collage_faces))
            normal = b64(collage(400, 1))
            with ThreadPoolExecutor(4) as ex:
                heavy = [ex.submit(timed, lambda: c.post("/face-recognition-infer",
                                                         json={"image": pic, "visualize": False}))
                         for _ in range(3)]
                time.sleep(0.5)
                s_normal, r_normal = timed(lambda: c.post("/face-recognition-infer", headers={"X-API-Key": NORMAL},
                                                          json={"image": normal, "visualize": False}))
                hs = [h.result() for h in heavy]
            report("collage", heavy_seconds=[h[0] for h in hs], heavy_status=[status(h[1]) for h in hs],
                   faces=[len(h[1].json()["result"]["faces"]) if status(h[1]) == 200 else None for h in hs],
                   normal_seconds=s_normal, normal_status=status(r_normal))
        if want("slow-client"):
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                t0 = time.perf_counter()
                try:
                    closed = s.recv(10) == b""
                except socket.timeout:
                    closed = False
                header_s = round(time.perf_counter() - t0, 2)
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                s.sendall(b"POST /face-feature-infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"X-API-Key: " + HEAVY.encode() + b"\r\nContent-Length: 999999999\r\n\r\n{")
                t0 = time.perf_counter()
                try:
                    first = s.recv(64)
                except socket.timeout:
                    first = b"(no answer)"
                over_s = round(time.perf_counter() - t0, 2)
            report("slow-client", header_closed=closed, header_seconds=header_s,
                   over_limit_answer=first[:12].decode("latin-1"), over_limit_seconds=over_s)
        peak.stop.set()
        print(json.dumps({"load": "all", "peak_rss_mb": peak.peak >> 20, "loadavg": os.getloadavg()}), flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
