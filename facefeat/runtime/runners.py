"""One runner protocol, and the one place that decides backend and precision.

A runner turns a preprocessed ``[N, 3, H, W]`` float32 batch into raw ``[N, D]`` features and
says what it is (``backend``, ``precision``, ``device``). :func:`resolve_runtime` turns what the
user asked for (``"auto"`` by default) into a concrete choice, once:

- ``auto`` on a CPU: OpenVINO in bf16 where the CPU has AMX-BF16 or AVX512-BF16, OpenVINO fp32
  on other x86 CPUs, ONNX Runtime fp32 elsewhere (or where OpenVINO is not installed);
- ``auto`` on CUDA: ONNX Runtime (CUDA execution provider) in fp32;
- an int8 (quantised) model directory runs in int8 on OpenVINO / ONNX Runtime.

Every impossible combination is an error that says what to change or install; nothing silently
runs somewhere else.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from facefeat.errors import DependencyError, DeviceError, InputError
from facefeat.runtime.cpu import cpu_features, has_bf16, is_x86
from facefeat.runtime.devices import DeviceSpec, parse_device

BACKENDS = ("auto", "openvino", "onnxruntime", "torch")
PRECISIONS = ("auto", "fp32", "bf16", "int8")


@runtime_checkable
class Runner(Protocol):
    """Preprocessed batch in, raw features out; thread-safe ``__call__``."""

    backend: str
    precision: str
    device: DeviceSpec

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_runtime(backend: str = "auto", precision: str = "auto", device: "str | DeviceSpec" = "cpu",
                    model_precision: str = "fp32") -> tuple[str, str, DeviceSpec]:
    """``(backend, precision, device)`` to use; ``model_precision`` is that of the stored weights."""
    backend, precision = str(backend).lower(), str(precision).lower()
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    dev = parse_device(device)
    if dev.kind == "gpu":
        dev.index  # noqa: B018 - one GPU id for inference, or a DeviceError
    if model_precision == "int8":
        if precision not in ("auto", "int8"):
            raise InputError(f"this model directory holds int8 (quantised) weights; precision={precision!r} "
                             "is not possible with it: use precision='int8' or 'auto', or the fp32 model")
        precision = "int8"
    elif precision == "int8":
        raise InputError("precision='int8' needs a quantised model directory: make one with "
                         "'facefeat quantize --model NAME --calib DIR --out DIR' (or from a gallery's own faces: "
                         "'facefeat quantize --from-index GALLERY --out DIR'), then create_model(model_dir=DIR)")
    if backend == "auto":
        if dev.kind == "gpu":
            backend = "onnxruntime"
        elif openvino_available() and (is_x86() or precision == "bf16"):
            backend = "openvino"
        else:
            backend = "onnxruntime"
    if precision == "auto":
        precision = "bf16" if backend == "openvino" and has_bf16() else "fp32"
    if backend == "openvino":
        if dev.kind == "gpu":
            raise DeviceError(f"backend='openvino' runs on the CPU here; for device {str(dev)!r} (CUDA) use "
                              "backend='onnxruntime' (or 'auto')")
        if not openvino_available():
            raise DependencyError("backend='openvino' needs the Python package 'openvino', which is not installed; "
                                  "install it with: pip install openvino")
        if precision == "bf16" and not has_bf16():
            raise InputError(f"precision='bf16' needs a CPU with AMX-BF16 or AVX512-BF16; this one has "
                             f"{', '.join(cpu_features()) or 'neither'}: use precision='fp32' (or 'auto')")
    elif backend == "torch" and precision != "fp32":
        raise InputError(f"backend='torch' runs in fp32 only; got precision={precision!r}")
    elif precision == "bf16":
        raise InputError(f"precision='bf16' runs on backend='openvino' (CPU) only, not {backend!r}")
    return backend, precision, dev


def create_runner(onnx_path: str | Path, backend: str, precision: str, device: DeviceSpec,
                  num_threads: int | None = None, cache_key: str | None = None, preprocess=None) -> Runner:
    """A runner for an ONNX file (or OpenVINO IR ``.xml``), for a resolved ``(backend, precision, device)``.

    ``preprocess`` (the model's Preprocess): OpenVINO compiles it into the graph (the runner then
    ``takes_pixels``: uint8 BGR in) where that beats preparing the batch on the host, i.e. where the
    host needs several numpy passes (per-channel mean/std). Where one OpenCV pass does it (every zoo
    model), it stays on the host: measured with OpenVINO bf16 on 2 threads, in-graph was as fast for
    MobileFaceNet and FaceNet and slower for SFace (9.1 vs 7.4 ms per face at batch 32)."""
    if preprocess is not None and (backend != "openvino" or preprocess.single_pass):
        preprocess = None
    if Path(onnx_path).suffix == ".xml" and backend != "openvino":
        raise DependencyError(
            f"{onnx_path} is an OpenVINO IR model (converted from another framework, e.g. FaceNet's TensorFlow "
            f"graph): it runs on backend='openvino' only, not {backend!r}; install OpenVINO (pip install openvino) "
            "and use backend='openvino' or 'auto' on a CPU")
    if backend == "openvino":
        from facefeat.runtime.openvino_runner import OpenVINORunner

        return OpenVINORunner(onnx_path, precision=precision, num_threads=num_threads, cache_key=cache_key,
                              preprocess=preprocess)
    if backend == "onnxruntime":
        from facefeat.runtime.onnx_runner import OrtRunner

        return OrtRunner(onnx_path, num_threads, device, precision=precision)
    raise InputError(f"backend {backend!r} does not run ONNX files (torch needs the zoo model and its weights)")
