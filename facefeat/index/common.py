"""Small shared pieces of the gallery index: search hits, add results, input checks, the model check."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index.store import SampleRecord

METRIC_TYPES = ("IP", "L2", "COSINE")


class IndexConflict(FaceIndexError):
    """Another writer saved the gallery since this copy was loaded; nothing was saved."""


@dataclass(frozen=True)
class Hit:
    """One search result: the gallery entry's id, label and path, and its score (see module doc)."""

    id: int
    label: str
    score: float
    path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AddResult:
    """What :meth:`FaceIndex.add_samples` did: one id per input row (a duplicate's is the id of the
    sample it duplicates), and the input positions that were duplicates (not added again)."""

    ids: list[int]
    duplicates: list[int] = field(default_factory=list)

    @property
    def added(self) -> list[int]:
        dup = set(self.duplicates)
        return [i for p, i in enumerate(self.ids) if p not in dup]


def normalize_metric(metric_type: str) -> str:
    m = str(metric_type).upper()
    if m not in METRIC_TYPES:
        raise InputError(f"metric_type {metric_type!r} is not supported; use one of {', '.join(METRIC_TYPES)}")
    return m


def higher_is_better(metric_type: str) -> bool:
    return metric_type != "L2"


def _short(items: Sequence[Any], n: int = 10) -> str:
    s = ", ".join(str(x) for x in list(items)[:n])
    return s + (f", ... ({len(items)} in all)" if len(items) > n else "")


def as_features(x: Any, dim: int, what: str = "features") -> np.ndarray:
    """Validate ``[N, D]`` (or one ``[D]`` vector) finite float features; return C-contiguous float32."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: cannot convert to a float32 array ({exc})") from exc
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InputError(f"{what}: expected a [N, {dim}] array, got shape {tuple(arr.shape)}")
    if arr.shape[1] != dim:
        raise InputError(
            f"{what}: wrong feature dimension: the index expects dim {dim}, got {arr.shape[1]} "
            "(was the index built with another model?)"
        )
    bad = np.where(~np.isfinite(arr).all(axis=1))[0]
    if bad.size:
        raise InputError(f"{what}: rows {_short(bad.tolist())} contain NaN or infinite values")
    return np.ascontiguousarray(arr)


def _per_row(values: Any, n: int, what: str, conv: Any) -> list:
    if values is None:
        return [None] * n
    if isinstance(values, (str, SampleRecord)):
        values = [values]
    out = [None if v is None or conv is None else conv(v) for v in values] if conv else list(values)
    if len(out) != n:
        raise InputError(f"add: {n} features but {len(out)} {what}; pass one per feature or None")
    return out


def _check_model(have_name: str | None, have_dim: int, model_name: str | None, dim: int | None) -> None:
    if dim is not None and int(dim) != have_dim:
        raise FaceIndexError(
            f"index holds {have_dim}-d features (model '{have_name}') but the model "
            f"'{model_name}' gives {dim}-d ones; rebuild the index with this model"
        )
    if model_name and have_name and model_name != have_name:
        raise FaceIndexError(
            f"index was built with model '{have_name}', not '{model_name}'; features of different "
            "models are not comparable: rebuild the index, or use the model it was built with"
        )


def check_model(index: Any, model_name: str | None, dim: int | None = None) -> None:
    """Function form of :meth:`FaceIndex.check_model`; ``index`` may also be a saved index's
    :func:`read_meta` (to check before loading it)."""
    if isinstance(index, dict):
        _check_model(index.get("model_name"), int(index["dim"]), model_name, dim)
    else:
        index.check_model(model_name, dim)



__all__ = ["AddResult", "Hit", "IndexConflict", "METRIC_TYPES", "as_features", "check_model", "higher_is_better",
           "normalize_metric"]
