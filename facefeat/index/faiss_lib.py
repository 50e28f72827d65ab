"""The FAISS library as the gallery's engine uses it: imported on first use, its OpenMP thread
count for small query batches, the ids inside an IVF index, and the engine's defaults that an
earlier facefeat's ``vectors.faiss`` folder (:mod:`facefeat.index.legacy`) is read with too."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from facefeat.errors import require

#: the vectors file of a gallery folder written by an earlier facefeat
VECTORS_FILE = "vectors.faiss"
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 128
#: query batches smaller than this run on one OpenMP thread: FAISS parallelises over queries, so
#: a few queries gain nothing from more threads, but pay their wake-up (milliseconds on a busy host)
SMALL_BATCH = 8

_omp_lock = threading.Lock()
_omp_state = {"depth": 0, "saved": 1}


def faiss_module() -> Any:
    """The ``faiss`` module (a clear error naming the extra to install when it is missing)."""
    return require("faiss", "faiss", "The FAISS gallery index")


@contextmanager
def single_thread() -> Iterator[None]:
    """Run FAISS on one OpenMP thread (a process-wide setting: the first caller in saves the thread
    count, the last one out restores it, so concurrent searches never leave it at 1)."""
    faiss = faiss_module()
    with _omp_lock:
        if _omp_state["depth"] == 0:
            _omp_state["saved"] = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
        _omp_state["depth"] += 1
    try:
        yield
    finally:
        with _omp_lock:
            _omp_state["depth"] -= 1
            if _omp_state["depth"] == 0:
                faiss.omp_set_num_threads(_omp_state["saved"])


def ivf_ids(ivf: Any) -> np.ndarray:
    """Every id stored in an IVF index's inverted lists."""
    f = faiss_module()
    inv = ivf.invlists
    out = []
    for lst in range(ivf.nlist):
        n = inv.list_size(lst)
        if n:
            ptr = inv.get_ids(lst)
            out.append(f.rev_swig_ptr(ptr, n).copy())
            inv.release_ids(lst, ptr)
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


__all__ = ["DEFAULT_EF_CONSTRUCTION", "DEFAULT_EF_SEARCH", "SMALL_BATCH", "VECTORS_FILE", "faiss_module",
           "ivf_ids", "single_thread"]
