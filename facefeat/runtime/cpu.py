"""What this CPU can do, for choosing a precision and for reporting (``facefeat info``, /health)."""

from __future__ import annotations

import platform
from functools import lru_cache

#: the instruction-set extensions that decide which kernels run, in report order
REPORTED = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni", "avx2", "fma",
            "asimd", "sve")
BF16_FEATURES = ("amx_bf16", "avx512_bf16")


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


@lru_cache(maxsize=1)
def cpu_features() -> tuple[str, ...]:
    """The :data:`REPORTED` features this CPU has (Linux: /proc/cpuinfo; elsewhere: what
    OpenVINO reports, as ``bf16``/``int8``)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    if flags:
        return tuple(f for f in REPORTED if f in flags)
    try:  # macOS / Windows: ask OpenVINO (coarser)
        import openvino as ov

        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        return tuple(c.lower() for c in caps if c in ("BF16", "INT8"))
    except Exception:  # pragma: no cover - no openvino, or an odd platform
        return ()


def has_bf16() -> bool:
    """True where the CPU has bf16 dot-product instructions (AMX-BF16 or AVX512-BF16)."""
    feats = cpu_features()
    return any(f in feats for f in BF16_FEATURES) or "bf16" in feats
