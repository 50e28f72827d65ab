#!/usr/bin/env bash
# CUDA check for a machine with an NVIDIA GPU: parity (GPU vs CPU features, cosine) and speed
# (ms/img at batch 1 and 32) of every zoo model on ONNX Runtime's CUDA execution provider, and on
# the TensorRT provider where the installed onnxruntime-gpu has it. Short: a few minutes.
#
#   bash bench/gpu.sh                 # uses the current python; installs onnxruntime-gpu if missing
#   FACEFEAT_GPU_N=128 bash bench/gpu.sh
#
# Exits non-zero when a GPU result differs from the CPU (cosine < 0.9999) or CUDA is unusable.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
N=${FACEFEAT_GPU_N:-256}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "gpu.sh: no NVIDIA GPU (nvidia-smi failed)"; exit 2; }
if ! "$PY" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
  echo "gpu.sh: onnxruntime has no CUDA provider; installing onnxruntime-gpu (facefeat[gpu])"
  "$PY" -m pip uninstall -q -y onnxruntime || true
  "$PY" -m pip install -q "onnxruntime-gpu>=1.18" nvidia-cudnn-cu12 nvidia-cublas-cu12 nvidia-cuda-runtime-cu12 nvidia-cufft-cu12 nvidia-curand-cu12
fi
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} FACEFEAT_GPU_N=$N "$PY" - <<'PYEOF'
import os, sys, time
import numpy as np
import onnxruntime as ort
try:
    ort.preload_dlls()  # onnxruntime-gpu >= 1.21: CUDA/cuDNN from the nvidia-* wheels
except Exception:
    pass
from facefeat import create_model, list_models
from facefeat.registry import get_spec
from facefeat.runtime.onnx_runner import OrtRunner

n = int(os.environ["FACEFEAT_GPU_N"])
providers = ort.get_available_providers()
print("onnxruntime", ort.__version__, providers)
peers = os.path.join(os.path.dirname(os.getcwd()), "shared", "peers", "paddlex")
rng = np.random.RandomState(0)
imgs = [rng.randint(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(n)]
bad = 0
rows = []
for name in list_models():
    w = None if get_spec(name).weights.kind == "package" else os.path.join(peers, name, "model.pdparams")
    if w and not os.path.exists(w):
        w = None  # default weights (downloaded) if the PaddleX peers are not beside the checkout
    try:
        cpu = create_model(name, w, backend="onnxruntime", precision="fp32", batch_size=32)
    except Exception as exc:
        print(f"{name}: skipped ({exc})"); continue
    ref = cpu.embed(imgs[:64])
    runs = {"cuda": create_model(name, w, device="gpu:0", batch_size=32)}
    if "TensorrtExecutionProvider" in providers:
        trt = OrtRunner(cpu.runner.path, device="gpu:0")
        trt.session.set_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider"])
        m = create_model(name, w, device="gpu:0", batch_size=32); m.runner = trt
        runs["tensorrt"] = m
    for label, m in runs.items():
        got = m.embed(imgs[:64])
        cos = float((got * ref).sum(1).min())
        ok = cos >= 0.9999
        bad += not ok
        for bs in (1, 32):
            m.embed(imgs[:bs * 2], batch_size=bs)
            t0 = time.perf_counter(); m.embed(imgs, batch_size=bs); dt = time.perf_counter() - t0
            rows.append((name, label, bs, dt / n * 1e3, cos, ok))
            print(f"{name:14s} {label:9s} bs={bs:<3d} {dt / n * 1e3:7.3f} ms/img  cos_min vs CPU {cos:.6f} {'ok' if ok else 'MISMATCH'}", flush=True)
print(m.runtime_info() if rows else "no rows")
sys.exit(1 if bad or not rows else 0)
PYEOF
