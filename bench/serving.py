"""Throughput and latency of ``POST /face-recognition-infer`` (or ``/face-feature-infer``) on LFW photos,
served by uvicorn workers.

Starts ``facefeat serve`` (``python -m facefeat serve``) on a free 127.0.0.1 port with
``--workers`` processes and a temporary storage directory, builds a gallery from a few LFW people
over HTTP, then runs ``--concurrency`` client threads for ``--duration`` seconds (and at most
``--max-requests`` requests), each sending LFW probe photos (not in the gallery) with the index key.
Prints requests/s, p50/p90/p99 latency and the top-1 accuracy of the answers, then stops the server.

    python bench/serving.py                       # 2 workers, 8 clients, 30 s
    python bench/serving.py --workers 1 --concurrency 4 --duration 10
    python bench/serving.py --baseline /work/main  # the same run against another checkout too (ratio)
    python bench/serving.py --rss-images 14 --duration 0   # memory: large images, varying thresholds
    python bench/serving.py --infer-concurrency 4 --batch-window-ms 2   # batching: detect in 4 threads, embed together
    python bench/serving.py --infer-concurrency 4 --batch-window-ms 0   # the same without batching
    python bench/serving.py --infer-concurrency 4 --batch-window-ms 2 --inprocess   # + ratio to pipe.embed
    python bench/serving.py --route feature --infer-concurrency 4 --batch-window-ms 2 --inprocess
                                        # /face-feature-infer (face crops) + ratio to the model's embed

``--route feature`` drives PaddleX's ``/face-feature-infer`` instead: each request is one face crop
(the central 112x112 of an LFW photo, where LFW's subject is, as JPEG); no gallery is built and no
accuracy is reported; ``--inprocess`` compares with decode + ``model.embed`` of one crop at a time.

``--rss-images N`` sends N large (4900x4900, under the pixel limit) PNGs with varying
``detThreshold`` after the load and prints the server's peak RSS (all worker processes together)
against the stated bound (``--rss-bound-gb``, 1.5 GB for 2 workers); the run stops early when the
RSS passes ``--rss-abort-gb`` so that a server without the detector downscale cannot exhaust memory.

LFW is read from ``$FACEFEAT_SHARED/data/lfw`` (default: ``shared/`` beside the checkout).
Loopback only; the run is bounded in time and count.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the serving tests' helpers: one free_port / base64 reader

from serving_fixtures import b64_file as b64, free_port  # noqa: E402

from facefeat.utils import shared_dir  # noqa: E402

#: --route -> the endpoint driven
ROUTES = {"recognition": "/face-recognition-infer", "feature": "/face-feature-infer"}
PEOPLE = ["George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder",
          "Ariel_Sharon", "Hugo_Chavez", "Junichiro_Koizumi", "Jean_Chretien", "John_Ashcroft"]


def start_server(storage: str, port: int, args: argparse.Namespace, log, repo: Path = REPO) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "facefeat", "serve", "--storage", storage, "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(args.workers), "--log-level", "warning",
           "--infer-concurrency", str(args.infer_concurrency)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.batch_window_ms is not None:  # serving.batching (only given when asked: older checkouts lack it)
        cmd += ["--batch-window-ms", str(args.batch_window_ms), "--batch-max", str(args.batch_max)]
    if args.model:
        cmd += ["--model", args.model]
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(cmd, cwd=str(repo), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def tree_rss(pid: int) -> int:
    """RSS of a process and its children (the uvicorn workers), in bytes."""
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def large_png(side: int = 4900) -> str:
    """A small PNG of side x side pixels (a flat image with a few shapes: compresses to ~100 KB)."""
    import cv2

    img = np.full((side, side, 3), 180, np.uint8)
    cv2.circle(img, (side // 2, side // 2), side // 5, (90, 120, 160), -1)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def rss_run(url: str, proc: subprocess.Popen, key: str, args: argparse.Namespace) -> dict:
    """Large images with varying detThreshold, 2 clients; the peak RSS of the server tree."""
    img = large_png()
    peak = [tree_rss(proc.pid)]
    start = peak[0]
    stop = threading.Event()
    errors: list[str] = []

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            if peak[0] > args.rss_abort_gb * 2**30:
                stop.set()
            time.sleep(0.05)

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as c:
            for i in range(n, args.rss_images, 2):
                if stop.is_set():
                    return
                thr = round(0.30 + 0.05 * i, 2) % 1.0 or 0.5
                r = c.post("/face-recognition-infer", json={"image": img, "indexKey": key, "detThreshold": thr,
                                                            "visualize": False})
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:120]}")

    s = threading.Thread(target=sample, daemon=True)
    s.start()
    cs = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    for t in cs:
        t.start()
    for t in cs:
        t.join(600)
    aborted = stop.is_set()
    stop.set()
    s.join(5)
    return {"rss_start_gb": round(start / 2**30, 2), "rss_peak_gb": round(peak[0] / 2**30, 2),
            "rss_bound_gb": args.rss_bound_gb, "rss_aborted": aborted, "rss_errors": len(errors),
            "rss_within_bound": (not aborted) and peak[0] <= args.rss_bound_gb * 2**30}


def wait_ready(url: str, proc: subprocess.Popen, workers: int, timeout: float = 120.0) -> None:
    """Ready when /health answers 200 ``workers`` times in a row (each worker loads its models)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            streak = streak + 1 if httpx.get(url + "/health", timeout=5).status_code == 200 else 0
        except httpx.HTTPError:
            streak = 0
        if streak >= max(3, 2 * workers):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--concurrency", type=int, default=8, help="client threads")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    ap.add_argument("--max-requests", type=int, default=20000, help="stop after this many requests")
    ap.add_argument("--people", type=int, default=5, help="LFW people in the gallery")
    ap.add_argument("--per-person", type=int, default=2, help="gallery photos per person")
    ap.add_argument("--infer-concurrency", type=int, default=1, help="pipelines per worker")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per worker (0: its default)")
    ap.add_argument("--visualize", action="store_true", help="ask for the annotated image (PaddleX's default)")
    ap.add_argument("--batch-window-ms", type=float, default=None,
                    help="the server's batching window (0: off; default: the server's own)")
    ap.add_argument("--batch-max", type=int, default=32, help="with --batch-window-ms: most faces per batch")
    ap.add_argument("--model", default=None, help="the server's feature model (default SFace)")
    ap.add_argument("--route", choices=list(ROUTES), default="recognition",
                    help="the endpoint driven: recognition (/face-recognition-infer) or feature (/face-feature-infer)")
    ap.add_argument("--inprocess", action="store_true",
                    help="also measure pipe.embed in one process on the same probes (the service's yardstick)")
    ap.add_argument("--baseline", default=None, help="another checkout to measure in the same run (ratio)")
    ap.add_argument("--rss-images", type=int, default=0, help="large images for the memory figure (0: none)")
    ap.add_argument("--rss-bound-gb", type=float, default=1.5, help="stated RSS bound for the server")
    ap.add_argument("--rss-abort-gb", type=float, default=4.0, help="stop the memory run above this RSS")
    ap.add_argument("--json", action="store_true", help="also print the numbers as one JSON line")
    args = ap.parse_args(argv)

    lfw = shared_dir() / "data" / "lfw"
    if not lfw.is_dir():
        print(f"bench/serving.py: LFW not found at {lfw} (set FACEFEAT_SHARED)", file=sys.stderr)
        return 2
    gallery, probes = [], []
    for person in PEOPLE[: args.people]:
        files = sorted((lfw / person).glob("*.jpg"))
        gallery += [(f, person) for f in files[: args.per_person]]
        probes += [(f, person) for f in files[args.per_person: args.per_person + 10]]
    probe_b64 = [(b64(f) if args.route == "recognition" else face_crop_b64(f), person) for f, person in probes]

    rows = []
    for name, repo in [("facefeat", REPO)] + ([("baseline", Path(args.baseline).resolve())] if args.baseline else []):
        rows.append(measure(name, repo, args, gallery, probe_b64))
    base = rows[1] if len(rows) > 1 else None
    for row in rows:
        if base is not None and base["req_per_s"]:
            row["x_baseline"] = round(row["req_per_s"] / base["req_per_s"], 2)
    if args.inprocess:
        ref = inprocess_rate(probes, args) if args.route == "recognition" else inprocess_feature_rate(probe_b64, args)
        what = "pipe.embed" if args.route == "recognition" else "decode + model.embed of one crop"
        print(f"in-process {what} on the same probes (one process, {args.threads or 'default'} threads): "
              f"{ref:.1f} img/s; the service reaches {rows[0]['req_per_s'] / ref:.2f}x of it")
    probes_are = (f"LFW 250x250 probes, gallery {len(gallery)} photos of {args.people} people"
                  if args.route == "recognition" else "LFW central 112x112 face crops")
    print(f"POST {ROUTES[args.route]}  ({probes_are}, {os.cpu_count()} CPUs, visualize={args.visualize}, "
          f"load average {os.getloadavg()[0]:.1f})")
    cols = ["run", "workers", "clients", "seconds", "requests", "errors", "req_per_s", "p50_ms", "p90_ms", "p99_ms",
            "max_ms", "top1_correct", "startup_s"] + (["x_baseline"] if base else [])
    cols += [c for c in ("rss_start_gb", "rss_peak_gb", "rss_bound_gb", "rss_within_bound") if c in rows[0]]
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for row in rows:
        print("  ".join(str(row.get(c, "")).rjust(w) for c, w in zip(cols, widths)))
    errors = [e for r in rows for e in r.pop("first_errors")]
    if errors:
        print(f"first errors: {errors[:3]}")
    if args.json:
        print(json.dumps(rows))
    return 0 if not errors else 1


def face_crop_b64(path: Path) -> str:
    """The central 112x112 of an LFW photo (its subject's face), as base64 JPEG."""
    import cv2

    img = cv2.imread(str(path))
    h, w = img.shape[:2]
    y, x = (h - 112) // 2, (w - 112) // 2
    ok, buf = cv2.imencode(".jpg", img[y:y + 112, x:x + 112], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def inprocess_feature_rate(probe_b64: list, args: argparse.Namespace) -> float:
    """Crops per second of decode + ``model.embed`` one at a time in this process: the feature route's yardstick."""
    from facefeat import create_model
    from facefeat.io.image import decode_image_bytes

    model = create_model(args.model or "SFace", num_threads=args.threads or None)
    data = [base64.b64decode(img) for img, _ in probe_b64]
    model.embed([decode_image_bytes(data[0], "probe")])  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < len(data) or time.perf_counter() - t0 < args.duration:
        model.embed([decode_image_bytes(data[n % len(data)], "probe")])
        n += 1
    return n / (time.perf_counter() - t0)


def inprocess_rate(probes: list, args: argparse.Namespace) -> float:
    """Images per second of ``pipe.embed`` in this process on the probe files (read + detect + align +
    embed + the subject's feature), for ``--duration`` seconds (at least one pass): the service's yardstick."""
    from facefeat import create_pipeline

    kw = {"model": args.model} if args.model else {}
    pipe = create_pipeline("face_recognition", num_threads=args.threads or None, **kw)
    pipe.embed(str(probes[0][0]))  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < len(probes) or time.perf_counter() - t0 < args.duration:
        pipe.embed(str(probes[n % len(probes)][0]))
        n += 1
    return n / (time.perf_counter() - t0)


def build_gallery(url: str, gallery: list) -> str:
    """Build the gallery over HTTP; its index key."""
    with httpx.Client(base_url=url, timeout=120) as c:
        built = c.post("/face-recognition-index-build", json={
            "imageLabelPairs": [{"image": b64(f), "label": p} for f, p in gallery]}).json()
    if built.get("errorCode") != 0:
        raise RuntimeError(f"index build failed: {built.get('errorMsg')}")
    return built["result"]["indexKey"]


def measure(name: str, repo: Path, args: argparse.Namespace, gallery: list, probe_b64: list) -> dict:
    with tempfile.TemporaryDirectory(prefix="facefeat-bench-serve-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log:
            t0 = time.perf_counter()
            proc = start_server(str(Path(tmp) / "storage"), port, args, log, repo)
            try:
                wait_ready(url, proc, args.workers)
                startup = time.perf_counter() - t0
                key = build_gallery(url, gallery) if args.route == "recognition" else None

                lat: list[float] = []
                errors: list[str] = []
                correct = [0]
                lock = threading.Lock()
                deadline = time.monotonic() + args.duration
                budget = [args.max_requests]

                def client(n: int) -> None:
                    rng = random.Random(n)
                    with httpx.Client(base_url=url, timeout=60) as c:
                        while time.monotonic() < deadline:
                            with lock:
                                if budget[0] <= 0:
                                    return
                                budget[0] -= 1
                            img, person = rng.choice(probe_b64)
                            t = time.perf_counter()
                            try:
                                if args.route == "recognition":
                                    r = c.post(ROUTES["recognition"], json={"image": img, "indexKey": key, "topk": 1,
                                                                            "visualize": args.visualize})
                                else:
                                    r = c.post(ROUTES["feature"], json={"image": img})
                                body = r.json()
                                ok = r.status_code == 200 and body["errorCode"] == 0
                            except Exception as exc:  # counted as an error
                                ok, body = False, {"errorMsg": repr(exc)}
                            dt = time.perf_counter() - t
                            with lock:
                                if not ok:
                                    errors.append(str(body.get("errorMsg"))[:200])
                                    continue
                                lat.append(dt)
                                faces = body["result"].get("faces")
                                if faces and faces[0]["recResults"] and faces[0]["recResults"][0]["label"] == person:
                                    correct[0] += 1

                t_load = time.perf_counter()
                threads = [threading.Thread(target=client, args=(n,)) for n in range(args.concurrency)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(args.duration + 120)
                elapsed = time.perf_counter() - t_load
                rss = rss_run(url, proc, key, args) if args.rss_images and key else {}
            finally:
                stop_server(proc)

    ms = np.asarray(lat) * 1000 if lat else np.asarray([np.nan])
    row = {
        "run": name, "workers": args.workers, "clients": args.concurrency, "seconds": round(elapsed, 1),
        "requests": len(lat), "errors": len(errors), "req_per_s": round(len(lat) / max(elapsed, 1e-9), 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1),
        "top1_correct": round(correct[0] / max(1, len(lat)), 3) if args.route == "recognition" else "-",
        "startup_s": round(startup, 1),
        "gallery": len(gallery), "cpus": os.cpu_count(), **rss,
    }
    row["first_errors"] = errors[:3]
    return row


if __name__ == "__main__":
    raise SystemExit(main())
