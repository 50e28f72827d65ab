"""facefeat training checkpoints as a weights format: safe reading and loading into a backbone.

The training side (saving, resuming) is :mod:`facefeat.engine.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facefeat.errors import WeightsError, require
from facefeat.weights.ref import LoadedWeights, WeightsRef

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "read_facefeat_checkpoint"]

CHECKPOINT_FORMAT = "facefeat-checkpoint-v1"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a facefeat checkpoint safely (``weights_only``); a bare state dict is accepted too."""
    torch = require("torch", "train", "reading a facefeat checkpoint (.pt)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable facefeat/torch checkpoint ({exc})") from exc
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return obj
    if isinstance(obj, dict) and obj and all(hasattr(v, "shape") for v in obj.values()):
        return {"model": obj}
    raise WeightsError(f"{path}: not a facefeat checkpoint (expected a dict with a 'model' state dict)")


#: the large parts of a checkpoint; everything else is its header
_BODY = ("model", "head", "optimizer", "scheduler", "scaler", "rng", "history", "config")


def read_facefeat_checkpoint(ref: WeightsRef, model: Any = None) -> LoadedWeights:
    """A facefeat checkpoint's backbone state, head weight and header (read while resolving the
    ref, else now); :func:`facefeat.weights.loaders.load_into` checks its model name."""
    ckpt = ref.checkpoint if ref.checkpoint is not None else load_checkpoint(ref.path)
    head = ckpt.get("head")
    return LoadedWeights(ckpt["model"], head.get("weight") if isinstance(head, dict) else None,
                         {k: v for k, v in ckpt.items() if k not in _BODY})
