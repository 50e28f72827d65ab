"""Inference speed of the face feature module, against PaddleX measured in the same run.

For each model x backend x batch size (1, 32): warm-up, then >= 3 timed passes of
``list(model.predict(images, batch_size=bs))`` over N random 112x112 BGR images (the same
protocol as ../shared/peers/paddlex/bench.py), 2 threads; prints median ms/img, img/s and
achieved GFLOP/s (2 FLOP per multiply-add). Where the PaddleX peer venv exists
(../shared/peers/paddlex/README.md: setup.sh + make_models.py), its bench runs in the same
invocation and the ratio PaddleX ms / facefeat ms is printed.

MobileFaceNet and ResNet50_face use the peer's random-weight .pdparams (speed does not depend
on the weights). Usage: python bench/inference.py [--models ...] [--backends ...] [-n 256]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("FACEFEAT_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PADDLE_PEERS, median_time, print_table  # noqa: E402

from facefeat import create_model, get_spec  # noqa: E402

PDX_PY = os.environ.get("PDX_VENV", "/tmp/pdx-venv") + "/bin/python"
PDX_MODELS = os.environ.get("PDX_MODELS", "/tmp/pdx-models")


def weights_for(name: str) -> str | None:
    if name == "SFace":
        return None
    return str(PADDLE_PEERS / name / "model.pdparams")


def gflops(name: str) -> float | None:
    """GFLOP per 112x112 image (torch's flop counter: 2 per multiply-add)."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from facefeat.runtime.torch_build import build_torch_model
    except ImportError:
        return None
    model = build_torch_model(get_spec(name))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 112, 112))
    return counter.get_total_flops() / 1e9


def run_paddlex(models: list[str], n: int) -> dict[tuple[str, int], float]:
    """Run the peer's bench (numpy inputs) and parse ms/img per (model, bs)."""
    if not (os.path.exists(PDX_PY) and os.path.isdir(PDX_MODELS)):
        print(f"PaddleX peer not installed ({PDX_PY}, {PDX_MODELS}); see {PADDLE_PEERS}/README.md - no ratios")
        return {}
    env = dict(os.environ, PDX_BENCH_N=str(n))
    out = subprocess.run([PDX_PY, str(PADDLE_PEERS / "bench.py"), *models], capture_output=True, text=True,
                         env=env, timeout=3600)
    res = {}
    for line in out.stdout.splitlines():
        m = re.match(r"(\S+)\s+bs=(\d+)\s+input=numpy\s+([\d.]+) ms/img", line)
        if m:
            res[(m.group(1), int(m.group(2)))] = float(m.group(3))
    if not res:
        print("PaddleX bench printed no timings:\n" + out.stdout[-2000:] + out.stderr[-2000:])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["SFace", "MobileFaceNet", "ResNet50_face"])
    ap.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    ap.add_argument("-n", type=int, default=256, help="images per timed pass")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-paddlex", action="store_true")
    args = ap.parse_args()

    rng = np.random.RandomState(123)
    imgs = [rng.randint(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(args.n)]
    pdx_models = [m for m in args.models if m in ("MobileFaceNet", "ResNet50_face")]
    pdx = {} if args.no_paddlex or not pdx_models else run_paddlex(pdx_models, args.n)

    rows = [["model", "backend", "bs", "ms/img", "img/s", "GFLOP/s", "PaddleX ms/img", "speed-up"]]
    for name in args.models:
        macs = gflops(name)
        for backend in args.backends:
            try:
                model = create_model(name, weights_for(name), backend=backend, num_threads=THREADS)
            except Exception as exc:  # e.g. torch missing
                print(f"{name}/{backend}: skipped ({exc})")
                continue
            for bs in args.batch_sizes:
                n = args.n if not (name == "ResNet50_face" and backend == "torch") else min(args.n, 64)
                med, _ = median_time(lambda: list(model.predict(imgs[:n], batch_size=bs)), reps=args.reps)
                ms = med / n * 1e3
                ref = pdx.get((name, bs))
                rows.append([name, backend, str(bs), f"{ms:.2f}", f"{1e3 / ms:.1f}",
                             f"{macs / ms * 1e3:.1f}" if macs else "-",
                             f"{ref:.2f}" if ref else "-", f"{ref / ms:.2f}x" if ref else "-"])
                print(" ".join(rows[-1]), flush=True)
    print()
    print(f"{THREADS} threads, {args.n} random 112x112 BGR images per pass, median of {args.reps}; "
          "GFLOP/s counts 2 FLOP per multiply-add; speed-up = PaddleX ms / facefeat ms")
    print_table(rows)


if __name__ == "__main__":
    main()
