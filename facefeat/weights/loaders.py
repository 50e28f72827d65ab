"""Loading a resolved :class:`~facefeat.weights.ref.WeightsRef` into a torch module.

One reader per format (named in :data:`facefeat.weights.resolver.FORMATS`), each
``reader(ref, model) -> LoadedWeights``: the backbone's state dict, the margin head's weight and the
file's header, read once. :func:`load_into` checks the model and loads the state strictly.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from facefeat.errors import WeightsError
from facefeat.registry import ModelSpec
from facefeat.weights.ref import LoadedWeights, WeightsRef
from facefeat.weights.resolver import FORMATS

__all__ = ["load_into", "read_weights"]


def _reader(fmt: str) -> Callable[[WeightsRef, Any], LoadedWeights]:
    f = FORMATS.get(fmt)
    if f is None:
        raise WeightsError(f"unknown weights format {fmt!r}; known: {', '.join(FORMATS)}")
    if f.loader is None:
        raise WeightsError(f"weights of format {fmt!r} ({f.description}) cannot be loaded into a PyTorch "
                           "module; use them with create_model(model_dir=...)")
    module, _, fn = f.loader.partition(":")
    return getattr(importlib.import_module(module), fn)


def read_weights(model: Any, ref: WeightsRef) -> LoadedWeights:
    """Read ``ref`` for ``model`` (a torch module of the weights' architecture), by its format."""
    return _reader(ref.format)(ref, model)


def load_into(model: Any, spec: ModelSpec, ref: WeightsRef) -> LoadedWeights:
    """Load ``ref``'s weights into ``model`` (``spec``'s architecture) strictly, apart from BN
    ``num_batches_tracked``; the model ends in eval mode. Returns what was read (the head and
    header serve fine-tuning). Raises :class:`WeightsError` when they are another model's or do not fit."""
    loaded = read_weights(model, ref)
    name = loaded.header.get("model_name")
    if name not in (None, spec.name):
        raise WeightsError(f"{ref.path}: these are {name} weights; they initialise {name} only, not {spec.name}")
    result = model.load_state_dict(loaded.state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise WeightsError(f"{ref.path}: the weights do not fit {spec.name}: missing {missing[:5]}, "
                           f"unexpected {list(result.unexpected_keys)[:5]}")
    model.eval()
    return loaded
