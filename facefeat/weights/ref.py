"""What the resolver hands on: a typed weights reference, and what reading one gives.

Torch-free: :class:`LoadedWeights` holds tensors only once a loader has read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LoadedWeights", "WeightsRef"]


@dataclass(frozen=True)
class WeightsRef:
    """A resolved weights reference.

    ``kind``: what the user named (``zoo``, ``url``, ``file``, ``checkpoint_dir``, ``model_dir``);
    ``format``: a key of :data:`facefeat.weights.resolver.FORMATS`; ``path``: the local file or
    directory; ``model_name``: the model the weights belong to when known (a zoo name, a
    checkpoint's ``model_name``, a model directory's meta), else None; ``given``: the text as
    named, for messages; ``checkpoint``: a facefeat checkpoint as read while resolving it (so it is
    read from disk once), else None.
    """

    kind: str
    format: str
    path: Path
    model_name: str | None = None
    given: str = ""
    checkpoint: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def is_dir(self) -> bool:
        return self.format in ("model_dir", "paddle_inference")

    @property
    def is_default(self) -> bool:
        """The zoo model's own default weights: its calibrated operating points apply to them
        (and to nothing else: a file, URL or checkpoint carries its own or none)."""
        return self.kind == "zoo"

    def calibration(self, spec: Any) -> dict[str, Any] | None:
        """The calibrated operating points that apply to these weights out of ``spec`` (a
        :class:`~facefeat.registry.ModelSpec`): its record when they are its default weights, else None."""
        rec = getattr(spec, "thresholds", None)
        return dict(rec) if self.is_default and rec else None


@dataclass
class LoadedWeights:
    """One read of a weights file, for a torch module of the model's architecture.

    ``state``: the backbone's state dict (torch tensors, the module's names); ``head``: the margin
    head's weight ``[embedding_size, num_classes]`` when the file holds one, else None;
    ``header``: what the file says about itself (``model_name``, ``epoch``, ``best_metric``, ...).
    """

    state: dict[str, Any]
    head: Any = None
    header: dict[str, Any] = field(default_factory=dict)
