"""Helpers shared by the benchmarks: paths to ../shared, timing, tables."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

from facefeat.utils import shared_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_dir()
LFW_DIR = SHARED / "data" / "lfw"
LFW_PAIRS = SHARED / "data" / "lfw_pairs.txt"
PADDLE_PEERS = SHARED / "peers" / "paddlex"


def need(path: Path, what: str) -> Path:
    if not path.exists():
        raise SystemExit(f"{what} not found at {path}; set FACEFEAT_SHARED to the folder holding data/ and peers/")
    return path


def median_time(fn: Callable[[], object], reps: int = 3, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(str(c).rjust(w) if i and j else str(c).ljust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
