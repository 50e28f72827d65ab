"""The one weights resolver: what the user named -> one typed :class:`WeightsRef`.

Every entry point that takes weights (``create_model(weights=, model_dir=)``, ``create_pipeline``,
``Train.pretrain_weight_path``, ``Train.resume_path``, ``Evaluate.weight_path``,
``Export.weight_path``, the CLI's ``--weights`` / ``--model-dir``) calls :func:`resolve`. It accepts

==================  ==========================================================================
form                means
==================  ==========================================================================
zoo name            that model's default weights (package file, cache, or download once)
http(s) URL         downloaded once into ``$FACEFEAT_HOME/weights``, then read as a file
file                by suffix, from :data:`FORMATS` (``.pdparams``, ``.onnx``, ``.pt``/``.pth``);
                    an ``inference.onnx`` inside an exported model directory means that directory
checkpoint folder   its ``model.pt`` (``purpose="resume"``: else ``latest/model.pt``; otherwise
                    ``best_model/model.pt``); a checkpoint is read once, here, and travels on the ref
model directory     ``inference.onnx`` + ``inference.yml`` (facefeat export), or PaddleX's
                    ``inference.json`` + ``inference.pdiparams`` (format ``paddle_inference``);
                    a training output's ``inference/`` / ``best_model/inference/`` too
==================  ==========================================================================

``purpose="pretrain"`` (``Train.pretrain_weight_path``) wants weights of ``model`` itself: a zoo
name must be that model's, and an exported model directory is refused. :data:`FORMATS` names each
format's reader; :func:`facefeat.weights.loaders.load_into` loads a ref into a torch module.
Nothing here imports torch until a checkpoint has to be read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facefeat.errors import ConfigError, InputError, WeightsError
from facefeat.registry import ModelSpec, get_spec, list_models
from facefeat.weights.checkpoint import load_checkpoint
from facefeat.weights.ref import WeightsRef
from facefeat.weights.sources import default_weights, download_once

__all__ = [
    "FORMATS",
    "Format",
    "WeightsNotFoundError",
    "is_null",
    "model_kwargs",
    "resolve",
    "resolve_model_dir",
]

log = logging.getLogger("facefeat")

CKPT_NAME = "model.pt"


class WeightsNotFoundError(WeightsError, InputError):
    """What the user named is neither a file, a folder with a model, a URL nor a zoo name."""


@dataclass(frozen=True)
class Format:
    """One weights format: file suffixes (or directory marker files), and the torch loader."""

    name: str
    description: str
    suffixes: tuple[str, ...] = ()
    dir_files: tuple[str, ...] = ()  # a directory holding all of these is this format
    loader: str | None = None  # "module:function": reader(ref, model) -> LoadedWeights (facefeat.weights.loaders)


#: format name -> Format: the one suffix -> format map and the one table of loaders
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("pdparams", "PaddleX/PaddleClas trained weights", (".pdparams",),
           loader="facefeat.weights.paddle:read_paddle_weights"),
    Format("onnx_int8bq", "OpenCV Zoo SFace ONNX (int8 block-quantised or fp32)", (".onnx",),
           loader="facefeat.weights.onnx_import:read_sface_onnx"),
    Format("facefeat", "facefeat training checkpoint", (".pt", ".pth"),
           loader="facefeat.weights.checkpoint:read_facefeat_checkpoint"),
    Format("model_dir", "exported model directory (inference.onnx + inference.yml)",
           dir_files=("inference.onnx", "inference.yml")),
    Format("paddle_inference", "PaddleX inference directory (inference.json + inference.pdiparams)",
           dir_files=("inference.json", "inference.pdiparams"),
           loader="facefeat.weights.paddle_inference:read_paddle_inference_weights"),
)}


def is_null(value: Any) -> bool:
    """``None``, ``""``, ``"null"`` and ``"none"`` mean "no weights" (config and CLI spelling)."""
    return value is None or str(value).strip().lower() in ("", "null", "none")


def _zoo_name(text: str) -> str | None:
    low = text.lower()
    return next((m for m in list_models() if m.lower() == low), None)


def _dir_format(d: Path) -> str | None:
    for f in FORMATS.values():
        if f.dir_files and all((d / n).is_file() for n in f.dir_files):
            return f.name
    return None


def _file_format(p: Path, where: str) -> str:
    if p.parent.is_dir() and p.name in ("inference.onnx", "inference.json", "inference.pdiparams"):
        fmt = _dir_format(p.parent)
        if fmt:
            return fmt
    suffix = p.suffix.lower()
    for f in FORMATS.values():
        if suffix in f.suffixes:
            return f.name
    known = ", ".join(f"{s} ({f.description})" for f in FORMATS.values() for s in f.suffixes)
    raise WeightsError(f"{where} {str(p)!r}: unknown weights format {suffix or '(no suffix)'!r}; expected {known}, "
                       "or a folder (model.pt, inference.onnx + inference.yml)")


def _checkpoint_ref(kind: str, path: Path, given: str) -> WeightsRef:
    """A facefeat checkpoint's ref: read once here (its model name), the contents kept for loading."""
    ckpt = load_checkpoint(path)
    name = ckpt.get("model_name")
    return WeightsRef(kind, "facefeat", path, str(name) if name else None, given, ckpt)


def _from_dir(d: Path, given: str, where: str, purpose: str) -> WeightsRef:
    fmt = _dir_format(d)
    if fmt and purpose != "resume":
        return WeightsRef("model_dir", fmt, d, _dir_model(d, fmt), given)
    tail = ("latest",) if purpose == "resume" else ("best_model",)
    for cand in (d / CKPT_NAME, *(d / t / CKPT_NAME for t in tail)):
        if cand.is_file():
            return _checkpoint_ref("checkpoint_dir", cand, given)
    if purpose != "resume":
        for sub in (d / "inference", d / "best_model" / "inference"):
            fmt = _dir_format(sub)
            if fmt:
                return WeightsRef("model_dir", fmt, sub, _dir_model(sub, fmt), given)
    wanted = f"{CKPT_NAME} (nor latest/{CKPT_NAME})" if purpose == "resume" else \
        f"a model ({CKPT_NAME}, inference.onnx + inference.yml, or inference.json + inference.pdiparams)"
    raise WeightsError(f"{where} {given!r} is a folder without {wanted}")


def _dir_model(d: Path, fmt: str) -> str | None:
    """The model an exported directory holds, from its inference.yml (facefeat's block, else
    PaddleX's ``Global.model_name``); None when unreadable (the runtime's reader says why)."""
    try:
        import yaml

        doc = yaml.safe_load((d / "inference.yml").read_text(encoding="utf-8")) or {}
        name = (doc.get("facefeat") or {}).get("model_name") or (doc.get("Global") or {}).get("model_name")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return _zoo_name(str(name)) if name else None


def resolve_model_dir(model_dir: str | os.PathLike, where: str = "model_dir") -> WeightsRef:
    """A model directory: facefeat's export or PaddleX's inference dir (the runtime validates it:
    ``facefeat.runtime.model_dir.read_model_dir`` names what is missing)."""
    p = Path(model_dir).expanduser()
    fmt = "paddle_inference" if p.is_dir() and _dir_format(p) == "paddle_inference" else "model_dir"
    return WeightsRef("model_dir", fmt, p, _dir_model(p, fmt) if p.is_dir() else None, str(model_dir))


def resolve(what: str | os.PathLike | WeightsRef | None, model: str | ModelSpec | None = None, *,
            purpose: str = "weights", where: str = "weights") -> WeightsRef:
    """Turn what the user named into a :class:`WeightsRef` (see the module docstring).

    ``what`` None (or "null") means ``model``'s default weights. ``purpose="resume"`` looks for a
    resumable checkpoint (``model.pt`` or ``latest/model.pt``) in a folder; ``purpose="pretrain"``
    wants weights to fine-tune ``model`` from (see the module docstring). ``where`` names the
    setting in messages (``Train.pretrain_weight_path``, ``--weights``, ...). Raises
    :class:`WeightsError` (:class:`WeightsNotFoundError` for a name that is nothing at all).
    """
    if isinstance(what, WeightsRef):
        return what
    ref = _resolve(what, model, purpose, where)
    if purpose == "pretrain" and ref.is_dir:
        raise WeightsError(f"{where} {ref.given!r} is an exported model directory; fine-tune from "
                           f"its weights instead ({CKPT_NAME}, .pdparams or .onnx)")
    return ref


def _default(model: str | ModelSpec | None, purpose: str, where: str) -> WeightsRef:
    if model is None:
        raise WeightsError(f"{where}: no weights and no model named")
    spec = model if isinstance(model, ModelSpec) else get_spec(model)
    try:
        path, fmt = default_weights(spec)
    except WeightsError as exc:
        if purpose != "pretrain":
            raise
        raise WeightsError(
            f"{where}={spec.name} means the default pretrained weights of {spec.name}, which cannot be "
            f"obtained ({exc}). Offline, point {where} at a local file (.pdparams / .pt / .onnx) or set "
            "it to null to train from scratch.") from exc
    return WeightsRef("zoo", fmt, path, spec.name, spec.name)


def _resolve(what: str | os.PathLike | None, model: str | ModelSpec | None, purpose: str,
             where: str) -> WeightsRef:
    if is_null(what):
        return _default(model, purpose, where)
    text = os.fspath(what).strip() if isinstance(what, os.PathLike) else str(what).strip()
    if text.lower().startswith(("http://", "https://")):
        path = download_once(text, where=where)
        fmt = _file_format(path, where)
        return _checkpoint_ref("url", path, text) if fmt == "facefeat" else WeightsRef("url", fmt, path, None, text)
    p = Path(text).expanduser()
    if p.is_dir():
        return _from_dir(p, text, where, purpose)
    if p.is_file():
        fmt = _file_format(p, where)
        if FORMATS[fmt].dir_files:
            return WeightsRef("model_dir", fmt, p.parent, _dir_model(p.parent, fmt), text)
        return _checkpoint_ref("file", p, text) if fmt == "facefeat" else WeightsRef("file", fmt, p, None, text)
    zoo = _zoo_name(text)
    if zoo is not None:
        if purpose == "pretrain" and model is not None:
            name = model.name if isinstance(model, ModelSpec) else get_spec(model).name
            if zoo != name:
                raise ConfigError(f"{where}={text} names model {zoo}, but the model is {name}; use {name}, "
                                  "a weights file, or null (from scratch)")
        return _default(zoo, purpose, where)
    if p.name == "best_model.pdparams" and (p.parent / CKPT_NAME).is_file():
        # PaddleX's default Evaluate.weight_path; facefeat trains to best_model/model.pt beside it
        log.warning("%s not found; using %s", p, p.parent / CKPT_NAME)
        return _resolve(p.parent / CKPT_NAME, model, purpose, where)
    raise WeightsNotFoundError(
        f"{where} {text!r} does not exist: it is neither a file, a folder with a model, an http(s) URL nor "
        f"a zoo model name ({', '.join(list_models())})")


def model_kwargs(what: str | os.PathLike | WeightsRef | None, model: str | ModelSpec | None = None, *,
                 where: str = "--model") -> dict[str, Any]:
    """``create_model`` keywords for what the user named: ``{"model_dir": dir}`` for a model
    directory, else ``{"model_name": ..., "weights": ref}`` (the service's ``--model`` and
    ``Evaluate.weight_path`` take any form this way)."""
    ref = resolve(what, model, where=where)
    if ref.is_dir:
        return {"model_dir": ref.path}
    name = ref.model_name or (model.name if isinstance(model, ModelSpec) else model)
    return {"model_name": name, "weights": ref}
