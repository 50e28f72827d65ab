"""OpenVINO runner: the cached ``inference.onnx`` compiled for the CPU in fp32, bf16 or int8.

Given a :class:`~facefeat.runtime.preprocess.Preprocess`, the compiled graph also does the
preprocessing (OpenVINO's PrePostProcessor: uint8 BGR NHWC in, u8 -> f32, channel order, mean/std,
NHWC -> NCHW), so callers hand it ``Preprocess.pixels`` (``takes_pixels``) and no float copy of the
batch is made in numpy (:func:`facefeat.runtime.runners.create_runner` says when that is used).

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
from facefeat.runtime.preprocess import Preprocess
from facefeat.runtime.sigstack import keep_sigaltstack
from facefeat.utils import cache_dir

#: OpenVINO's name of each facefeat precision (int8 models keep their other layers in f32)
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def openvino_cache_dir(key: str) -> Path:
    return cache_dir() / "openvino" / key


def _probe(compiled) -> np.ndarray:
    """Raw features of a compiled model for the fixed probe input (batch 1)."""
    import openvino as ov

    port = compiled.input(0)
    shape = [1 if d.is_dynamic else d.get_length() for d in port.get_partial_shape()]
    x = probe_input(tuple(shape))
    if port.get_element_type() == ov.Type.u8:  # preprocessing inside the graph: uint8 pixels in
        x = np.round((x + 1.0) * 127.5).astype(np.uint8)
    with keep_sigaltstack():
        req = compiled.create_infer_request()
        out = req.infer({0: x})
    res = out[0] if not hasattr(out, "to_tuple") else out.to_tuple()[0]
    return np.asarray(res).reshape(1, -1).copy()


def with_preprocess(model, pp: Preprocess):
    """``model`` (an ``ov.Model`` taking ``[N, 3, H, W]`` float) taking ``[N, H, W, 3]`` uint8 BGR,
    preprocessed as ``pp`` says inside the graph."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    inp = ppp.input(0)
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    inp.model().set_layout(ov.Layout("NCHW"))
    steps = inp.preprocess()
    steps.convert_element_type(ov.Type.f32)
    if pp.channel_order == "RGB":
        steps.convert_color(ColorFormat.RGB)
    if any(m != 0.0 for m in pp.mean):
        steps.mean(list(pp.mean))
    if any(sd != 1.0 for sd in pp.std):
        steps.scale(list(pp.std))
    return ppp.build()


class OpenVINORunner:
    """Runs an ONNX model (dynamic batch) with OpenVINO on the CPU."""

    backend = "openvino"

    def __init__(self, onnx_path: str | Path, precision: str = "fp32", num_threads: int | None = None,
                 cache_key: str | None = None, cache: bool = True, preprocess: Preprocess | None = None):
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
        self._config, self._cache = config, cache
        self._cache_key = (cache_key or onnx_sha256(self.path))[:16] if cache else None
        #: True: ``__call__`` takes ``Preprocess.pixels`` (uint8 NHWC BGR) as well as float NCHW batches
        self.takes_pixels = preprocess is not None
        self.version = ov.get_version()
        self._lock = threading.Lock()
        self._local = threading.local()
        self.compiled = self.compiled_pixels = None
        if preprocess is None:
            self.compiled = self._compile(None)
        else:
            self.compiled_pixels = self._compile(preprocess)

    def _compile(self, preprocess: Preprocess | None):
        """Compile the model (with ``preprocess`` inside the graph when given); a cached blob is
        verified (:func:`~facefeat.runtime.compiled_cache.verified_compile`), one cache folder per
        ONNX content and graph variant."""
        import openvino as ov

        config = dict(self._config)

        def compile_model():
            with keep_sigaltstack():  # see facefeat.runtime.sigstack
                core = ov.Core()
                if preprocess is None:
                    return core.compile_model(str(self.path), "CPU", config)
                return core.compile_model(with_preprocess(core.read_model(str(self.path)), preprocess), "CPU",
                                          config)

        try:
            if self._cache:
                # a re-exported file at the same path never meets a stale blob
                # and one per precision: the folder's reference feature is that of one precision
                folder = openvino_cache_dir(self._cache_key + ("" if preprocess is None else "-pixels")
                                            + ("" if self.precision == "fp32" else f"-{self.precision}"))
                config["CACHE_DIR"] = str(folder)
                return verified_compile(folder, compile_model, _probe, str(self.path))
            return compile_model()
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"{self.path}: OpenVINO cannot read or compile this model ({first[:300]})") from exc

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Raw features of a float ``[N, 3, H, W]`` batch, or (``takes_pixels``) of uint8 ``[N, H, W, 3]``
        BGR pixels, preprocessed in the graph."""
        pixels = self.takes_pixels and batch.dtype == np.uint8
        if not pixels and self.compiled is None:
            with self._lock:  # a float batch on a pixels runner: the plain graph, compiled once
                if self.compiled is None:
                    self.compiled = self._compile(None)
        name = "req_pixels" if pixels else "req"
        req = getattr(self._local, name, None)
        with keep_sigaltstack():
            if req is None:
                req = (self.compiled_pixels if pixels else self.compiled).create_infer_request()
                setattr(self._local, name, req)
            x = np.ascontiguousarray(batch, np.uint8 if pixels else np.float32)
            out = req.infer({0: x}, share_inputs=True)
        res = out[0] if not hasattr(out, "to_tuple") else out.to_tuple()[0]
        return np.asarray(res).reshape(len(batch), -1)

    def __del__(self) -> None:
        # release the infer requests and the compiled model with the thread's signal stack kept
        try:
            with keep_sigaltstack():
                self._local = None
                self.compiled = self.compiled_pixels = None
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
