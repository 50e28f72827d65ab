"""Import PaddlePaddle ``.pdparams`` weights (PaddleClas / PaddleX) into facefeat's torch models.

A ``.pdparams`` file is a pickle (written by ``paddle.save``) of a dict of numpy arrays.
Unpickling can run arbitrary code, so :func:`load_pdparams` uses an unpickler that only
admits the few globals needed to rebuild numpy arrays and refuses everything else.

Paddle -> torch conventions handled by :func:`paddle_to_torch_state_dict`:

* PaddleX "trained model" keys carry a ``backbone.`` prefix (stripped) and an ArcMargin
  ``head.weight`` (ignored); a bare backbone state dict (no prefix) is accepted too;
* BatchNorm running stats ``_mean`` / ``_variance`` -> ``running_mean`` / ``running_var``;
* PReLU slope ``_weight`` -> ``weight``;
* Linear weight is [in, out] in Paddle and [out, in] in torch (transposed).

torch is imported lazily, so the loader is usable without torch.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facefeat.errors import WeightsError
from facefeat.weights.ref import LoadedWeights, WeightsRef

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["load_pdparams", "paddle_to_torch_state_dict", "read_paddle_weights"]


def _np_core_attr(name: str) -> Any:
    """numpy._core.multiarray.<name> (numpy 2) or numpy.core.multiarray.<name> (numpy 1)."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return getattr(multiarray, name)


# (module, name) pairs a .pdparams may reference. Files written under numpy 1.x name
# numpy.core.multiarray, under numpy 2.x numpy._core.multiarray; both resolve to the
# running numpy's object. `scalar` rebuilds numpy scalars (bookkeeping values);
# `_codecs.encode` (latin-1 only) is how protocol-2 pickles spell raw bytes.
_ALLOWED: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = lambda: _np_core_attr("_reconstruct")
    _ALLOWED[(_mod, "scalar")] = lambda: _np_core_attr("scalar")
_ALLOWED[("numpy", "ndarray")] = lambda: np.ndarray
_ALLOWED[("numpy", "dtype")] = lambda: np.dtype
_ALLOWED[("collections", "OrderedDict")] = lambda: collections.OrderedDict


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles store array bytes as latin-1 text."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED[("_codecs", "encode")] = lambda: _latin1_encode


def _empty_bytes(*args: Any) -> bytes:
    """Stand-in for ``bytes()``: protocol-2 pickles spell an empty array's data as ``bytes()``."""
    if args:
        raise pickle.UnpicklingError("refusing bytes() with arguments")
    return b""


for _mod in ("__builtin__", "builtins"):
    _ALLOWED[(_mod, "bytes")] = lambda: _empty_bytes


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """Stand-in for ``numpy._core.numeric._frombuffer``: how protocol-5 pickles rebuild an array
    from its (in-band) bytes; numeric dtypes only, and the bytes must fill the shape exactly."""
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise pickle.UnpicklingError("refusing an object array")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise pickle.UnpicklingError(f"bad array shape {shape!r}")
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"bad array order {order!r}")
    arr = np.frombuffer(buf, dtype=dt)
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise pickle.UnpicklingError(f"array bytes hold {arr.size} values, shape {shape} needs another count")
    return arr.reshape(shape, order=order)


# protocol 5 (Python >= 3.8 pickles numpy arrays with their bytes as a buffer)
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = lambda: _frombuffer


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays, dicts and plain values, and nothing else."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise WeightsError(
                f"{self._source} asks to load '{module}.{name}'; refusing: "
                ".pdparams files may only contain numpy arrays"
            )
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise WeightsError(
            f"{self._source} uses pickle persistent ids (a torch checkpoint?); refusing: "
            ".pdparams files may only contain numpy arrays"
        )


def load_pdparams(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a Paddle ``.pdparams`` file safely and return ``{name: numpy array}``.

    Non-array entries (e.g. Paddle's ``'StructuredToParameterName@@'`` name map) are dropped.

    Raises:
        WeightsError: the file is missing or unreadable, is not a pickle, is not a dict, holds
            an object array, or references any global other than numpy's array rebuilders.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"Paddle weights file not found: {p}")
    try:
        with open(p, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, str(p)).load()
    except WeightsError:
        raise
    except OSError as exc:
        raise WeightsError(f"cannot read Paddle weights file {p}: {exc}") from exc
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... from bad bytes
        raise WeightsError(
            f"{p} is not a valid .pdparams file (not a readable pickle: "
            f"{type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise WeightsError(
            f"{p} is not a .pdparams state dict: the pickle holds a {type(obj).__name__}, "
            "expected a dict of numpy arrays"
        )
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(value, np.ndarray):
            continue  # bookkeeping (StructuredToParameterName@@, ...)
        if value.dtype.hasobject:
            raise WeightsError(f"{p}: entry {key!r} is an object array; expected numeric weights")
        out[str(key)] = value
    if not out:
        raise WeightsError(f"{p} holds no numpy arrays; is it a .pdparams state dict?")
    return out


_RENAMES = {"_mean": "running_mean", "_variance": "running_var", "_weight": "weight"}


def _format_names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def paddle_to_torch_state_dict(
    params: dict[str, np.ndarray], model: "torch.nn.Module"
) -> dict[str, "torch.Tensor"]:
    """Map a Paddle state dict onto ``model``'s parameter/buffer names and layouts.

    Keys under ``backbone.`` are used (prefix stripped) and ``head.*`` is ignored; if no key has
    the ``backbone.`` prefix, every key is taken as a backbone key. Linear weights are
    transposed (decided by the torch module type at that name).

    Raises:
        WeightsError: listing torch entries left unfilled, Paddle entries with no torch
            counterpart, and entries whose shapes disagree.
    """
    import torch
    from torch import nn

    # stripped key -> (key as in the file, array)
    source: dict[str, tuple[str, np.ndarray]] = {}
    unexpected: list[str] = []
    prefixed = any(k.startswith("backbone.") for k in params)
    for k, v in params.items():
        if k.startswith("head."):
            continue  # ArcMargin classifier: training only
        if not prefixed:
            source[k] = (k, v)
        elif k.startswith("backbone."):
            source[k[len("backbone."):]] = (k, v)
        else:
            unexpected.append(k)  # e.g. a neck: the embedding would differ without it

    modules = dict(model.named_modules())
    expected = {
        k: v
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    out: dict[str, torch.Tensor] = {}
    mis_shaped: list[str] = []
    mis_shaped_keys: set[str] = set()
    for pkey, (file_key, value) in source.items():
        mod_name, _, attr = pkey.rpartition(".")
        tkey = f"{mod_name}.{_RENAMES.get(attr, attr)}" if mod_name else _RENAMES.get(attr, attr)
        if tkey not in expected:
            unexpected.append(file_key)
            continue
        arr = np.asarray(value)
        if isinstance(modules.get(mod_name), nn.Linear) and attr == "weight" and arr.ndim == 2:
            arr = arr.T  # Paddle Linear weight is [in, out]
        target = expected[tkey]
        if tuple(arr.shape) != tuple(target.shape):
            mis_shaped.append(
                f"{file_key} {list(np.shape(value))} -> {tkey} expects {list(target.shape)}"
            )
            mis_shaped_keys.add(tkey)
            continue
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:  # torch.from_numpy wants writable memory
            arr = arr.copy()
        out[tkey] = torch.from_numpy(arr).to(target.dtype)
    missing = [k for k in expected if k not in out and k not in mis_shaped_keys]
    if missing or unexpected or mis_shaped:
        parts = [f"Paddle weights do not fit {type(model).__name__}:"]
        if missing:
            parts.append(f"{len(missing)} missing (not in the file): {_format_names(missing)}")
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected (no {type(model).__name__} counterpart): "
                f"{_format_names(unexpected)}"
            )
        if mis_shaped:
            parts.append(f"{len(mis_shaped)} with mismatched shapes: {_format_names(mis_shaped)}")
        raise WeightsError(" ".join(parts[:1]) + " " + "; ".join(parts[1:]))
    return out


def read_paddle_weights(ref: WeightsRef, model: "torch.nn.Module") -> LoadedWeights:
    """A ``.pdparams`` file as ``model``'s state dict (every entry must fit), with PaddleX's
    ``head.weight`` (``[embedding_size, num_classes]``, torch's layout too) when it has one.

    Raises WeightsError if the file is unsafe/unreadable or its entries do not fit the model.
    """
    import torch

    path = ref.path
    arrays = load_pdparams(path)
    try:
        state = paddle_to_torch_state_dict(arrays, model)
    except WeightsError as exc:
        if str(Path(path)) in str(exc):
            raise
        raise WeightsError(f"{path}: {exc}") from exc
    head = arrays.get("head.weight")
    return LoadedWeights(state, None if head is None else torch.from_numpy(np.array(head, dtype=np.float32)))
