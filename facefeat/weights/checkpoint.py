"""facefeat training checkpoints as a weights format: safe reading and loading into a backbone.

The training side (saving, resuming) is :mod:`facefeat.engine.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facefeat.errors import WeightsError, require
from facefeat.registry import ModelSpec

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "load_facefeat_checkpoint"]

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


def load_facefeat_checkpoint(model, path: str | Path, spec: ModelSpec) -> None:
    """Load a facefeat checkpoint's backbone into ``model`` (its model name and keys must fit)."""
    state = load_checkpoint(path)
    if state.get("model_name") not in (None, spec.name):
        raise WeightsError(f"{path}: checkpoint is of model {state['model_name']!r}, not {spec.name!r}")
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    if missing or unexpected:
        raise WeightsError(
            f"{path}: checkpoint does not fit {spec.name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
