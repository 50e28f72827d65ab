"""Calibrated operating points of a model: the record it carries, storing it, picking one
(measuring them from scores is :mod:`facefeat.engine.calibration`).

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
from pathlib import Path
from typing import Any, Mapping

from facefeat.errors import InputError
from facefeat.runtime.model_dir import META_FILE, read_model_dir, write_model_meta
from facefeat.utils import cache_dir, json_safe

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
    """The thresholds record a predictor's model carries (its model directory's inference.yml; a
    zoo model's default weights: the registry's record, see :func:`facefeat.runtime.zoo.zoo_model_dir`)."""
    extra = getattr(getattr(predictor, "meta", None), "extra", None) or {}
    rec = extra.get("thresholds")
    return dict(rec) if isinstance(rec, Mapping) else None


__all__ = ["FARS", "FPIRS", "OperatingPoint", "far_key", "fpir_key", "is_match", "model_thresholds",
           "resolve_threshold", "store_thresholds"]


def store_thresholds(predictor: Any, record: Mapping) -> str | None:
    """Write a thresholds record into the predictor's model directory (``inference.yml``), unless
    it is a zoo cache directory (whose record is the zoo's); returns the file written, or None."""
    mdir = getattr(predictor, "model_dir", None)
    if mdir is None or Path(mdir).resolve().parent == (cache_dir() / "models").resolve():
        return None
    _, meta = read_model_dir(mdir)
    meta.extra["thresholds"] = json_safe(record)
    write_model_meta(mdir, meta)
    if getattr(predictor, "meta", None) is not None:
        predictor.meta.extra["thresholds"] = meta.extra["thresholds"]
    return str(Path(mdir) / META_FILE)


