"""Keep the calling thread's signal stack across OpenVINO calls.

OpenVINO's CPU plugin (2026.x) installs a signal stack (``sigaltstack``) on the calling thread when
it compiles a model or creates/destroys infer requests, and puts back the one it saw before when
the object goes. Objects released out of order leave a freed stack installed; the next signal
delivered to that thread (SIGCHLD when a subprocess or DataLoader worker exits, SIGINT, SIGTERM)
then cannot be delivered and the kernel kills the process with SIGSEGV (``si_code=SI_KERNEL``).
Seen in the test suite: a long process that compiled and dropped dozens of models crashed while
waiting on a child. :func:`keep_sigaltstack` restores the thread's own signal stack after each call,
so OpenVINO only ever records a valid one.
"""

from __future__ import annotations

import ctypes
import sys
from contextlib import contextmanager
from typing import Iterator


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.sigaltstack.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
        return lib
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return None


_LIBC = _libc()
_SS_ONSTACK = 1


def current() -> tuple[int | None, int, int] | None:
    """The calling thread's signal stack as ``(sp, flags, size)``, or None where it cannot be read."""
    if _LIBC is None:
        return None
    st = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(st)) != 0:
        return None
    return st.ss_sp, st.ss_flags, st.ss_size


@contextmanager
def keep_sigaltstack() -> Iterator[None]:
    """Run the block, then give the thread back the signal stack it had before (if it changed)."""
    before = current()
    try:
        yield
    finally:
        if before is not None and not before[1] & _SS_ONSTACK and current() != before:
            st = _StackT(before[0], before[1], before[2])
            _LIBC.sigaltstack(ctypes.byref(st), None)
