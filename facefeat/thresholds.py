"""Calibrated operating points of a model: measure them, store them, pick one.

A model's ``thresholds`` record (on its :class:`~facefeat.registry.ModelSpec` for the zoo, in the
``facefeat`` block of ``inference.yml`` for every model directory) is a plain JSON-able dict::

    {"metric": "cosine",
     "verification": {"far=1e-2": {"threshold", "far", "tar"}, "far=1e-3": ..., "far=1e-4": ...,
                      "best_accuracy": {"threshold", "accuracy"}},
     "identification": [{"gallery_size": 1680, "fpir=0.01": {"threshold", "fpir", "dir"},
                         "fpir=0.1": ...}],
     "data": {...what it was measured on...}, "source": "..."}

Scores are cosine similarities of L2-normalised features (a face pair is "same" when
``score > threshold``). A FAR is only measured when there are at least ``1 / FAR`` impostor pairs;
otherwise its entry is ``None``. :func:`resolve_threshold` turns ``rec_threshold="auto"`` /
``far=`` / ``fpir=`` into a number and says which operating point it is, converting to a squared
L2 distance for ``L2`` indexes (``d² = 2 - 2·cos`` for unit vectors).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np

from facefeat.errors import InputError
from facefeat.utils import json_safe

log = logging.getLogger("facefeat")

FARS = (1e-2, 1e-3, 1e-4)
FPIRS = (0.01, 0.1)
DEFAULT_FAR = 1e-3
DEFAULT_FPIR = 0.01
#: used when a model carries no calibration (and for ``rec_threshold=None`` in old code paths)
FALLBACK_THRESHOLD = 0.4


def far_key(far: float) -> str:
    """``1e-3 -> "far=1e-3"``."""
    m, e = f"{float(far):.0e}".split("e")
    return f"far={m}e{int(e)}"


def fpir_key(fpir: float) -> str:
    """``0.01 -> "fpir=0.01"``."""
    return f"fpir={float(fpir):g}"


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
    from facefeat.engine.verification import accuracy_at, best_threshold

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


def _entry(rec: Mapping | None, section: str) -> Any:
    return (rec or {}).get(section) if isinstance(rec, Mapping) else None


def resolve_threshold(thresholds: Mapping | None, rec_threshold: Any = "auto", *, far: float | None = None,
                      fpir: float | None = None, task: str = "verify", gallery_size: int | None = None,
                      metric_type: str = "IP") -> tuple[float, dict]:
    """``(threshold, operating point)`` for a decision.

    ``rec_threshold``: a number (used as is), ``"auto"``/``None`` (the model's calibrated point:
    ``far`` for ``task="verify"``, default 1e-3; ``fpir`` for ``task="identify"``, default 1%, at
    the calibrated gallery size closest to ``gallery_size``), or ``"best_accuracy"``. A model
    without calibration falls back to :data:`FALLBACK_THRESHOLD` and says so. The operating point
    dict has ``threshold``, ``source`` (``fixed`` | ``calibrated`` | ``uncalibrated default``),
    ``operating_point`` and, when calibrated, the measured rate and the data it came from.
    """
    if task not in ("verify", "identify"):
        raise InputError(f"task must be 'verify' or 'identify', got {task!r}")
    l2 = str(metric_type).upper() == "L2"
    if rec_threshold not in (None, "auto", "best_accuracy"):
        try:
            t = float(rec_threshold)
        except (TypeError, ValueError):
            raise InputError(f"rec_threshold must be a number, 'auto' or 'best_accuracy', got {rec_threshold!r}") from None
        if not math.isfinite(t):
            raise InputError(f"rec_threshold must be finite, got {rec_threshold!r}")
        if far is not None or fpir is not None:
            raise InputError("give either rec_threshold=<number> or far=/fpir=, not both")
        return t, {"threshold": t, "source": "fixed", "operating_point": "fixed"}
    op: dict[str, Any]
    if rec_threshold == "best_accuracy" or (far is not None) or (fpir is None and task == "verify"):
        if fpir is not None:
            raise InputError("give far= (1:1) or fpir= (1:N), not both")
        ver = _entry(thresholds, "verification") or {}
        key = "best_accuracy" if rec_threshold == "best_accuracy" and far is None else far_key(DEFAULT_FAR if far is None else far)
        e = ver.get(key)
        if e is None and (far is not None or rec_threshold == "best_accuracy") and thresholds is not None:
            have = sorted(k for k, v in ver.items() if v is not None)
            raise InputError(f"the model has no calibrated threshold at {key}; calibrated: {', '.join(have) or 'none'}")
        op = {"operating_point": key, **({"measured": dict(e)} if e else {})}
    else:
        fp = DEFAULT_FPIR if fpir is None else float(fpir)
        key = fpir_key(fp)
        ident = [x for x in (_entry(thresholds, "identification") or []) if isinstance(x, Mapping) and x.get(key)]
        e = None
        if ident:
            n = max(1, int(gallery_size or 1))
            best = min(ident, key=lambda x: abs(math.log(max(1, int(x["gallery_size"]))) - math.log(n)))
            e = dict(best[key])
            e["gallery_size"] = int(best["gallery_size"])
        elif fpir is not None and thresholds is not None:
            raise InputError(f"the model has no calibrated 1:N threshold at {key}")
        op = {"operating_point": key, **({"measured": e} if e else {})}
    if "measured" in op:
        t = float(op["measured"]["threshold"])
        op["source"] = "calibrated"
        if (thresholds or {}).get("data"):
            op["data"] = (thresholds or {}).get("data", {}).get("name") or thresholds.get("source", "")
    else:
        t = FALLBACK_THRESHOLD
        op["source"] = "uncalibrated default"
        what = "1:N (open-set)" if op["operating_point"].startswith("fpir") else "1:1"
        op["note"] = f"the model carries no calibrated {what} threshold at {op['operating_point']}; using {FALLBACK_THRESHOLD}"
    if l2:
        t = 2.0 - 2.0 * t
        op["metric"] = "L2 (squared distance)"
    op["threshold"] = round(t, 6)
    return t, op


def is_match(score: Any, threshold: float, metric_type: str = "IP") -> Any:
    """The one match rule: a similarity (IP, COSINE) matches when ``score > threshold``, a squared
    L2 distance when ``score < threshold`` - the comparison the thresholds were measured with
    (:func:`_threshold_at_rate`). Works on a number or a numpy array of scores."""
    if str(metric_type).upper() == "L2":
        return score < threshold
    return score > threshold


class OperatingPoint:
    """A decision threshold with where it came from: ``op.matches(score)`` is the one comparison.

    ``threshold`` is in the index's score unit (a squared distance for ``L2`` indexes); ``info`` is
    the operating-point dict :func:`resolve_threshold` returns (source, rate, data)."""

    __slots__ = ("threshold", "metric_type", "info")

    def __init__(self, threshold: float, metric_type: str = "IP", info: Mapping | None = None):
        self.threshold = float(threshold)
        self.metric_type = str(metric_type).upper()
        self.info = dict(info or {"threshold": self.threshold})

    def matches(self, score: Any) -> Any:
        return is_match(score, self.threshold, self.metric_type)

    def __repr__(self) -> str:
        return f"OperatingPoint(threshold={self.threshold:g}, metric_type={self.metric_type!r})"


def model_thresholds(predictor: Any) -> dict | None:
    """The thresholds record a predictor's model carries (its model directory's inference.yml)."""
    meta = getattr(predictor, "meta", None)
    extra = getattr(meta, "extra", None) or {}
    rec = extra.get("thresholds")
    if rec is None and getattr(predictor, "model_dir", None) is not None:
        # a zoo cache directory made before thresholds were recorded: the default weights' record
        from pathlib import Path

        from facefeat.registry import get_spec
        from facefeat.utils import cache_dir

        try:
            spec = get_spec(meta.model_name)
            in_cache = Path(predictor.model_dir).resolve().parent == (cache_dir() / "models").resolve()
        except Exception:  # noqa: BLE001 - not a zoo model
            return None
        if in_cache and spec.thresholds and extra.get("weights_file") == spec.weights.filename:
            rec = spec.thresholds
    return dict(rec) if isinstance(rec, Mapping) else None


__all__ = ["FARS", "FPIRS", "OperatingPoint", "calibrate_pairs", "is_match", "far_key", "fpir_key", "identification_points",
           "model_thresholds", "resolve_threshold", "store_thresholds", "verification_points"]


def store_thresholds(predictor: Any, record: Mapping) -> str | None:
    """Write a thresholds record into the predictor's model directory (``inference.yml``), unless
    it is a zoo cache directory (whose record is the zoo's); returns the file written, or None."""
    from pathlib import Path

    from facefeat.runtime.model_dir import META_FILE, read_model_dir, write_model_meta
    from facefeat.utils import cache_dir

    mdir = getattr(predictor, "model_dir", None)
    if mdir is None or Path(mdir).resolve().parent == (cache_dir() / "models").resolve():
        return None
    _, meta = read_model_dir(mdir)
    meta.extra["thresholds"] = json_safe(record)
    write_model_meta(mdir, meta)
    if getattr(predictor, "meta", None) is not None:
        predictor.meta.extra["thresholds"] = meta.extra["thresholds"]
    return str(Path(mdir) / META_FILE)


