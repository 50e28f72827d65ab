"""Measuring a model's operating points from scores: 1:1 thresholds at given FARs and the
best-accuracy one (:func:`verification_points`), 1:N thresholds at given FPIRs
(:func:`identification_points`), and the thresholds record of a labelled pair list
(:func:`calibrate_pairs`). The record's layout and its use: :mod:`facefeat.thresholds`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from facefeat.engine.verification import accuracy_at, best_threshold
from facefeat.errors import InputError
from facefeat.thresholds import FARS, FPIRS, far_key, fpir_key
from facefeat.utils import json_safe

__all__ = ["calibrate_pairs", "identification_points", "verification_points"]


def _threshold_at_rate(neg: np.ndarray, rate: float) -> tuple[float, float] | None:
    """Smallest threshold ``t`` (a score midpoint) with ``mean(neg > t) <= rate``, and that rate;
    ``None`` when there are fewer than ``1 / rate`` negatives (the rate is not measurable)."""
    n = neg.size
    if n == 0 or n * rate < 1.0 - 1e-9:
        return None
    s = np.sort(neg)[::-1]
    k = int(math.floor(n * rate + 1e-9))  # at most k negatives may lie above t
    if k >= n:
        return float(s[-1]) - 1e-6, 1.0
    hi = float(s[k])  # t >= s[k] keeps s[k] out; place t just above s[k] and below s[k-1]
    above = float(s[k - 1]) if k > 0 else hi + 2e-6
    t = hi + min(1e-6, (above - hi) / 2.0) if above > hi else hi
    return t, float(np.mean(neg > t))


def verification_points(genuine: Any, impostor: Any, fars: Sequence[float] = FARS,
                        pair_scores: Any = None, pair_labels: Any = None) -> dict:
    """1:1 operating points: the threshold at each FAR (with the TAR there) from genuine and
    impostor scores, and the best-accuracy threshold on ``pair_scores``/``pair_labels`` (the
    evaluation pairs; default: genuine + impostor)."""
    pos = np.asarray(genuine, np.float64).reshape(-1)
    neg = np.asarray(impostor, np.float64).reshape(-1)
    if pos.size == 0 or neg.size == 0:
        raise InputError(f"calibration needs genuine and impostor scores; got {pos.size} genuine, {neg.size} impostor")
    out: dict[str, Any] = {}
    for far in fars:
        r = _threshold_at_rate(neg, float(far))
        out[far_key(far)] = None if r is None else {
            "threshold": round(r[0], 6), "far": r[1], "tar": float(np.mean(pos > r[0]))}
    if pair_scores is None:
        pair_scores = np.concatenate([pos, neg])
        pair_labels = np.concatenate([np.ones(pos.size, np.int8), np.zeros(neg.size, np.int8)])
    thr, acc = best_threshold(pair_scores, pair_labels)
    out["best_accuracy"] = {"threshold": round(thr, 6), "accuracy": acc}
    for far in fars:
        if out[far_key(far)] is not None:
            out[far_key(far)]["accuracy"] = accuracy_at(pair_scores, pair_labels, out[far_key(far)]["threshold"])
    return out


def identification_points(impostor_top: Any, gallery_size: int, fpirs: Sequence[float] = FPIRS,
                          genuine_top: Any = None, genuine_correct: Any = None) -> dict:
    """1:N open-set operating points for a gallery of ``gallery_size`` people: the threshold at
    each FPIR (fraction of strangers whose best gallery score passes it), from the strangers'
    best scores, and the DIR there (probes correctly identified above it) when genuine probes'
    best scores and rank-1 correctness are given."""
    imp = np.asarray(impostor_top, np.float64).reshape(-1)
    out: dict[str, Any] = {"gallery_size": int(gallery_size), "impostor_probes": int(imp.size)}
    if genuine_top is not None:
        gt = np.asarray(genuine_top, np.float64).reshape(-1)
        ok = np.asarray(genuine_correct, bool).reshape(-1)
        out["genuine_probes"] = int(gt.size)
    for fpir in fpirs:
        r = _threshold_at_rate(imp, float(fpir))
        if r is None:
            out[fpir_key(fpir)] = None
            continue
        e = {"threshold": round(r[0], 6), "fpir": r[1]}
        if genuine_top is not None:
            e["dir"] = float(np.mean(ok & (gt > r[0])))
        out[fpir_key(fpir)] = e
    return out


def calibrate_pairs(scores: Any, labels: Any, fars: Sequence[float] = FARS, data: Mapping | None = None,
                    source: str = "") -> dict:
    """A thresholds record from a labelled pair list (``evaluate``'s validation pairs)."""
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise InputError(f"calibrate_pairs: {s.size} scores but {y.size} labels")
    ver = verification_points(s[y == 1], s[y == 0], fars, s, y)
    return json_safe({"metric": "cosine", "verification": ver, "identification": [],
            "data": {"genuine_pairs": int(np.sum(y == 1)), "impostor_pairs": int(np.sum(y == 0)), **(data or {})},
            "source": source})
