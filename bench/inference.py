"""Inference speed of the face feature module, against raw OpenVINO and PaddleX in the same run.

For each model (every zoo model by default) x batch size (1, 32), the runners' timed passes are
interleaved (A B C A B C ...; a warm-up pass of each first) - >= 3 passes each of
``list(model.predict(images, batch_size=bs, align="off"))`` over N random 112x112 BGR images (the same
protocol as ../shared/peers/paddlex/bench.py), 2 threads; prints median ms/img, img/s and
achieved GFLOP/s (2 FLOP per multiply-add). Runners (``--runs``):

- ``auto``: facefeat's default (``create_model(name)``; the chosen backend/precision is printed);
- ``BACKEND/PRECISION``: facefeat with that backend and precision (e.g. ``onnxruntime/fp32``);
- ``raw``: OpenVINO on the same cached ONNX with auto's precision, driven directly (one OpenCV
  blob per batch, infer, L2-normalise): the floor a thin wrapper can reach; ``auto/raw`` (raw ms /
  auto ms, from the same interleaved passes; target >= 0.95x) is printed for every model and batch;
- ``int8``: facefeat on the int8 model directory given by ``--int8-dir NAME=DIR`` (facefeat quantize).

Where the PaddleX peer venv exists (../shared/peers/paddlex/README.md: setup.sh +
make_models.py), its bench runs in the same invocation and PaddleX ms / facefeat ms is printed.
MobileFaceNet and ResNet50_face use the peer's random-weight .pdparams (speed does not depend
on the weights). Usage: python bench/inference.py [--models ...] [--runs ...] [-n 256]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("FACEFEAT_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PADDLE_PEERS, print_table  # noqa: E402

from facefeat import create_model, get_spec  # noqa: E402
from facefeat.registry import list_models  # noqa: E402
from facefeat.runtime.info import runtime_summary  # noqa: E402

PDX_PY = os.environ.get("PDX_VENV", "/tmp/pdx-venv") + "/bin/python"
PDX_MODELS = os.environ.get("PDX_MODELS", "/tmp/pdx-models")


def weights_for(name: str) -> str | None:
    if get_spec(name).weights.kind != "url":  # SFace, FaceNet, SFace+FaceNet: weights in installed packages
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
    if not get_spec(name).arch:  # FaceNet, SFace+FaceNet: no PyTorch definition
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


class RawOpenVINO:
    """OpenVINO driven directly on a facefeat model directory's ONNX: the wrapper's floor."""

    def __init__(self, model, precision: str):
        import openvino as ov

        from facefeat.runtime.openvino_runner import INFERENCE_PRECISION

        cfg = {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision], "INFERENCE_NUM_THREADS": THREADS,
               "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        self.req = ov.Core().compile_model(str(model.runner.path), "CPU", cfg).create_infer_request()
        pp = model.meta.preprocess  # uniform mean/std in every zoo model: one OpenCV blob does it
        self.scale, self.mean = 1.0 / pp.std[0], tuple(pp.mean)
        self.size, self.swap = (pp.input_size[1], pp.input_size[0]), pp.channel_order == "RGB"

    def __call__(self, imgs, batch_size: int):
        import cv2

        out = []
        for i in range(0, len(imgs), batch_size):
            x = cv2.dnn.blobFromImages(imgs[i:i + batch_size], self.scale, self.size, self.mean, swapRB=self.swap)
            y = self.req.infer({0: x})[0]
            out.extend(y / np.linalg.norm(y, axis=1, keepdims=True))
        return out


def make_runner(name: str, run: str, int8_dirs: dict[str, str]):
    """``(label, fn(imgs, bs))`` for one entry of --runs."""
    if run == "auto":
        m = create_model(name, weights_for(name), num_threads=THREADS)
    elif run == "raw":
        auto = create_model(name, weights_for(name), num_threads=THREADS)
        if auto.backend != "openvino":
            raise RuntimeError(f"auto runs {auto.backend}, not OpenVINO")
        return f"raw openvino/{auto.precision}", RawOpenVINO(auto, auto.precision)
    elif run == "int8":
        if name not in int8_dirs:
            raise RuntimeError("no --int8-dir given")
        m = create_model(model_dir=int8_dirs[name], num_threads=THREADS)
    else:
        backend, _, precision = run.partition("/")
        m = create_model(name, weights_for(name), backend=backend, precision=precision or "auto",
                         num_threads=THREADS)
    label = f"{run} = {m.backend}/{m.precision}" if run in ("auto", "int8") else f"{m.backend}/{m.precision}"
    return label, lambda imgs, bs: list(m.predict(imgs, batch_size=bs, align="off"))  # the module alone: no face checks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list_models(), help="zoo models (default: all of them)")
    ap.add_argument("--runs", nargs="+", default=["auto", "raw", "onnxruntime/fp32", "openvino/fp32", "int8"],
                    help="auto | raw | int8 | BACKEND/PRECISION (e.g. torch/fp32)")
    ap.add_argument("--int8-dir", action="append", default=[], metavar="NAME=DIR",
                    help="int8 model directory of NAME (from facefeat quantize) for the 'int8' run")
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    ap.add_argument("-n", type=int, default=256, help="images per timed pass")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-paddlex", action="store_true")
    args = ap.parse_args()
    int8_dirs = dict(kv.split("=", 1) for kv in args.int8_dir)

    rt = runtime_summary()
    print(f"runtime: auto -> {rt['resolved']}; CPU features {', '.join(rt['cpu_features'])}; "
          f"openvino {rt['openvino']}, onnxruntime {rt['onnxruntime']}; load {os.getloadavg()[0]:.1f}")
    rng = np.random.RandomState(123)
    imgs = [rng.randint(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(args.n)]
    pdx_models = [m for m in args.models if m in ("MobileFaceNet", "ResNet50_face")]
    pdx = {} if args.no_paddlex or not pdx_models else run_paddlex(pdx_models, args.n)

    rows = [["model", "runner", "bs", "ms/img", "img/s", "GFLOP/s", "auto/raw", "cpu ms/img", "auto/raw cpu",
             "PaddleX ms/img", "PaddleX/ours"]]
    for name in args.models:
        macs = gflops(name)
        h, w = get_spec(name).input_size  # images at each model's own input size (FaceNet 160, fused 272x160)
        imgs = [rng.randint(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(args.n)]
        runners = {}
        for run in args.runs:
            try:
                runners[run] = make_runner(name, run, int8_dirs)
            except Exception as exc:  # e.g. torch or openvino missing, no int8 dir, no weights
                print(f"{name}/{run}: skipped ({exc})")
        for bs in args.batch_sizes:
            passes: dict[str, list[float]] = {run: [] for run in runners}
            cpu: dict[str, list[float]] = {run: [] for run in runners}
            sizes = {run: args.n if not run.startswith("torch") else min(args.n, 64) for run in runners}
            for rep in range(args.reps + 1):  # the first round warms up
                for run, (_, fn) in runners.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn(imgs[:sizes[run]], bs)
                    if rep:
                        passes[run].append(time.perf_counter() - t0)
                        cpu[run].append(time.process_time() - c0)
            times = {run: statistics.median(t) / sizes[run] * 1e3 for run, t in passes.items()}
            cpu_ms = {run: statistics.median(t) / sizes[run] * 1e3 for run, t in cpu.items()}
            for run, (label, _) in runners.items():
                ms = times[run]
                ratio = cpu_ratio = "-"
                if run == "raw" and "auto" in times:
                    ratio, cpu_ratio = f"{ms / times['auto']:.2f}x", f"{cpu_ms[run] / cpu_ms['auto']:.2f}x"
                ref = pdx.get((name, bs))
                rows.append([name, label, str(bs), f"{ms:.2f}", f"{1e3 / ms:.1f}",
                             f"{macs / ms * 1e3:.1f}" if macs else "-", ratio, f"{cpu_ms[run]:.2f}", cpu_ratio,
                             f"{ref:.2f}" if ref else "-", f"{ref / ms:.2f}x" if ref else "-"])
                print(" ".join(rows[-1]), flush=True)
    print()
    print(f"{THREADS} threads, {args.n} random BGR images at each model's input size per pass, median of {args.reps}; "
          "GFLOP/s counts 2 FLOP per multiply-add; auto/raw = raw OpenVINO ms / facefeat auto ms "
          "(1.00x: the wrapper costs nothing; the cpu columns use process CPU time, steadier on a shared machine); PaddleX/ours = PaddleX ms / facefeat ms; "
          f"load {os.getloadavg()[0]:.1f}")
    print_table(rows)


if __name__ == "__main__":
    main()
