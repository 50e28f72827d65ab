"""OpenVINO runner: the cached ``inference.onnx`` compiled for the CPU in fp32, bf16 or int8.

Compiled models are kept in OpenVINO's model cache (``$FACEFEAT_HOME/openvino/<onnx sha256>``),
so a restart loads the compiled blob instead of compiling again; the cache is verified (checksums
and a reference feature, :mod:`facefeat.runtime.compiled_cache`). Each thread gets its own infer
request, so one runner may be shared by many threads.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from facefeat.errors import WeightsError
from facefeat.runtime.compiled_cache import probe_input, verified_compile
from facefeat.runtime.devices import DeviceSpec
from facefeat.runtime.onnx_runner import default_threads
from facefeat.runtime.sigstack import keep_sigaltstack
from facefeat.utils import cache_dir

#: OpenVINO's name of each facefeat precision (int8 models keep their other layers in f32)
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def openvino_cache_dir(key: str) -> Path:
    return cache_dir() / "openvino" / key


def _probe(compiled) -> np.ndarray:
    """Raw features of a compiled model for the fixed probe input (batch 1)."""
    shape = [1 if d.is_dynamic else d.get_length() for d in compiled.input(0).get_partial_shape()]
    with keep_sigaltstack():
        req = compiled.create_infer_request()
        out = req.infer({0: probe_input(tuple(shape))})
    res = out[0] if not hasattr(out, "to_tuple") else out.to_tuple()[0]
    return np.asarray(res).reshape(1, -1).copy()


class OpenVINORunner:
    """Runs an ONNX model (dynamic batch) with OpenVINO on the CPU."""

    backend = "openvino"

    def __init__(self, onnx_path: str | Path, precision: str = "fp32", num_threads: int | None = None,
                 cache_key: str | None = None, cache: bool = True):
        import openvino as ov

        from facefeat.runtime.model_dir import onnx_sha256

        self.path = Path(onnx_path)
        self.precision = precision
        self.device = DeviceSpec("cpu")
        self.num_threads = int(num_threads or default_threads())
        config = {
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
            "INFERENCE_NUM_THREADS": self.num_threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        def compile_model():
            with keep_sigaltstack():  # see facefeat.runtime.sigstack
                return ov.Core().compile_model(str(self.path), "CPU", config)

        try:
            if cache:
                # one cache folder per ONNX content: a re-exported file at the same path never meets a stale blob
                folder = openvino_cache_dir((cache_key or onnx_sha256(self.path))[:16])
                config["CACHE_DIR"] = str(folder)
                self.compiled = verified_compile(folder, compile_model, _probe, str(self.path))
            else:
                self.compiled = compile_model()
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"{self.path}: OpenVINO cannot read or compile this model ({first[:300]})") from exc
        self.version = ov.get_version()
        self._local = threading.local()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        req = getattr(self._local, "req", None)
        with keep_sigaltstack():
            if req is None:
                req = self._local.req = self.compiled.create_infer_request()
            out = req.infer({0: np.ascontiguousarray(batch, np.float32)}, share_inputs=True)
        res = out[0] if not hasattr(out, "to_tuple") else out.to_tuple()[0]
        return np.asarray(res).reshape(len(batch), -1)

    def __del__(self) -> None:
        # release the infer requests and the compiled model with the thread's signal stack kept
        try:
            with keep_sigaltstack():
                self._local = None
                self.compiled = None
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
