"""A summary of the runtime on this machine (``facefeat info``, benchmarks)."""

from __future__ import annotations

import importlib.metadata as md
import platform
from typing import Any

from facefeat.runtime.cpu import cpu_features
from facefeat.runtime.runners import resolve_runtime


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def runtime_summary(backend: str = "auto", precision: str = "auto", device: str = "cpu") -> dict[str, Any]:
    """Installed runtimes, ONNX Runtime providers, CPU features and what ``backend``/``precision``
    resolve to here (or the error saying why they cannot)."""
    doc: dict[str, Any] = {
        "machine": platform.machine(), "processor": platform.processor() or None,
        "cpu_features": list(cpu_features()),
        "openvino": _version("openvino"),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "torch": _version("torch"), "nncf": _version("nncf"),
    }
    try:
        import onnxruntime as ort

        doc["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:  # pragma: no cover - a core dependency
        doc["onnxruntime_providers"] = []
    try:
        be, prec, dev = resolve_runtime(backend, precision, device)
        doc["resolved"] = {"backend": be, "precision": prec, "device": str(dev)}
    except Exception as exc:  # report, do not fail: this is a diagnostic
        doc["resolved"] = {"error": f"{type(exc).__name__}: {exc}"}
    return doc
