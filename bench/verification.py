"""Speed of the verification metrics on synthetic pair scores: 10-fold threshold search
(``kfold_accuracy``) and ROC operating points (``roc_metrics``), median of a few runs.

The tests check what they compute; this times them (a vectorised search takes well under a second
for 60k pairs):

    python bench/verification.py --pairs 60000 --reps 5
    python bench/verification.py --pairs 2000 --reps 1      # a smoke run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, print_table  # noqa: E402

from facefeat.engine.verification import kfold_accuracy, roc_metrics  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=60000, help="pairs (half genuine, half impostor)")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(1)
    half = a.pairs // 2
    s = np.empty(2 * half)
    s[0::2], s[1::2] = rng.normal(1, 1, half), rng.normal(-1, 1, half)
    y = np.tile([1, 0], half)
    rows = [["metric", "pairs", "median s", "runs s"]]
    for name, fn in (("kfold_accuracy", lambda: kfold_accuracy(s, y)), ("roc_metrics", lambda: roc_metrics(s, y))):
        med, times = median_time(fn, reps=a.reps)
        rows.append([name, str(2 * half), f"{med:.3f}", " ".join(f"{t:.3f}" for t in times)])
    print_table(rows)


if __name__ == "__main__":
    main()
