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
                    ``best_model/model.pt``)
model directory     ``inference.onnx`` + ``inference.yml`` (facefeat export), or PaddleX's
                    ``inference.json`` + ``inference.pdiparams`` (format ``paddle_inference``);
                    a training output's ``inference/`` / ``best_model/inference/`` too
==================  ==========================================================================

and loads weights into a torch module through one table of loaders by format
(:func:`load_into`). Nothing here imports torch until a checkpoint has to be read.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from facefeat.errors import InputError, WeightsError
from facefeat.registry import ModelSpec, get_spec, list_models

__all__ = [
    "FORMATS",
    "Format",
    "WeightsNotFoundError",
    "WeightsRef",
    "is_null",
    "load_into",
    "model_kwargs",
    "resolve",
    "resolve_model_dir",
    "resolve_weights",
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
    loader: str | None = None  # "module:function(model, path)" loading into a torch module


#: format name -> Format: the one suffix -> format map and the one table of loaders
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("pdparams", "PaddleX/PaddleClas trained weights", (".pdparams",),
           loader="facefeat.weights.paddle:load_paddle_weights"),
    Format("onnx_int8bq", "OpenCV Zoo SFace ONNX (int8 block-quantised or fp32)", (".onnx",),
           loader="facefeat.models.sface:load_onnx_weights"),
    Format("facefeat", "facefeat training checkpoint", (".pt", ".pth"),
           loader="facefeat.weights.checkpoint:load_facefeat_checkpoint"),
    Format("model_dir", "exported model directory (inference.onnx + inference.yml)",
           dir_files=("inference.onnx", "inference.yml")),
    Format("paddle_inference", "PaddleX inference directory (inference.json + inference.pdiparams)",
           dir_files=("inference.json", "inference.pdiparams"),
           loader="facefeat.weights.paddle_inference:load_paddle_inference"),
)}


@dataclass(frozen=True)
class WeightsRef:
    """A resolved weights reference.

    ``kind``: what the user named (``zoo``, ``url``, ``file``, ``checkpoint_dir``, ``model_dir``);
    ``format``: a key of :data:`FORMATS`; ``path``: the local file or directory; ``model_name``:
    the model the weights belong to when known (a zoo name, a checkpoint's ``model_name``, a
    model directory's meta), else None; ``given``: the text as named, for messages.
    """

    kind: str
    format: str
    path: Path
    model_name: str | None = None
    given: str = ""

    @property
    def is_dir(self) -> bool:
        return self.format in ("model_dir", "paddle_inference")


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


def _checkpoint_model(path: Path) -> str | None:
    from facefeat.weights.checkpoint import load_checkpoint

    name = load_checkpoint(path).get("model_name")
    return str(name) if name else None


def _from_dir(d: Path, given: str, where: str, purpose: str) -> WeightsRef:
    fmt = _dir_format(d)
    if fmt and purpose != "resume":
        return WeightsRef("model_dir", fmt, d, _dir_model(d, fmt), given)
    tail = ("latest",) if purpose == "resume" else ("best_model",)
    for cand in (d / CKPT_NAME, *(d / t / CKPT_NAME for t in tail)):
        if cand.is_file():
            return WeightsRef("checkpoint_dir", "facefeat", cand, _checkpoint_model(cand), given)
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


def _download(url: str, where: str) -> Path:
    from facefeat.weights.sources import download, weights_cache_dir

    name = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or "weights"
    dst = weights_cache_dir() / name
    if not dst.is_file():
        try:
            download(url, dst)
        except WeightsError:
            raise
        except Exception as exc:
            raise WeightsError(f"{where}: download of {url} failed ({exc}); no network? Put the file at {dst} "
                               "or pass a local path") from exc
    return dst


def resolve(what: str | os.PathLike | WeightsRef | None, model: str | ModelSpec | None = None, *,
            purpose: str = "weights", where: str = "weights") -> WeightsRef:
    """Turn what the user named into a :class:`WeightsRef` (see the module docstring).

    ``what`` None (or "null") means ``model``'s default weights. ``purpose="resume"`` looks for a
    resumable checkpoint (``model.pt`` or ``latest/model.pt``) in a folder. ``where`` names the
    setting in messages (``Train.pretrain_weight_path``, ``--weights``, ...). Raises
    :class:`WeightsError` (:class:`WeightsNotFoundError` for a name that is nothing at all).
    """
    if isinstance(what, WeightsRef):
        return what
    if is_null(what):
        if model is None:
            raise WeightsError(f"{where}: no weights and no model named")
        spec = model if isinstance(model, ModelSpec) else get_spec(model)
        from facefeat.weights.sources import default_weights

        path, fmt = default_weights(spec)
        return WeightsRef("zoo", fmt, path, spec.name, spec.name)
    text = os.fspath(what).strip() if isinstance(what, os.PathLike) else str(what).strip()
    if text.lower().startswith(("http://", "https://")):
        path = _download(text, where)
        fmt = _file_format(path, where)
        return WeightsRef("url", fmt, path, _checkpoint_model(path) if fmt == "facefeat" else None, text)
    p = Path(text).expanduser()
    if p.is_dir():
        return _from_dir(p, text, where, purpose)
    if p.is_file():
        fmt = _file_format(p, where)
        if FORMATS[fmt].dir_files:
            return WeightsRef("model_dir", fmt, p.parent, _dir_model(p.parent, fmt), text)
        return WeightsRef("file", fmt, p, _checkpoint_model(p) if fmt == "facefeat" else None, text)
    zoo = _zoo_name(text)
    if zoo is not None:
        return resolve(None, zoo, where=where)
    if p.name == "best_model.pdparams" and (p.parent / CKPT_NAME).is_file():
        # PaddleX's default Evaluate.weight_path; facefeat trains to best_model/model.pt beside it
        log.warning("%s not found; using %s", p, p.parent / CKPT_NAME)
        return resolve(p.parent / CKPT_NAME, model, purpose=purpose, where=where)
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


def resolve_weights(spec: ModelSpec, weights: str | os.PathLike | WeightsRef | None = None) -> tuple[Path, str]:
    """``(local path, format)`` of ``weights`` for ``spec`` (None: its default weights)."""
    ref = resolve(weights, spec)
    return ref.path, ref.format


def _loader(fmt: str) -> Callable[[Any, Path], Any]:
    f = FORMATS.get(fmt)
    if f is None:
        raise WeightsError(f"unknown weights format {fmt!r}; known: {', '.join(FORMATS)}")
    if f.loader is None:
        raise WeightsError(f"weights of format {fmt!r} ({f.description}) cannot be loaded into a PyTorch "
                           "module; use them with create_model(model_dir=...)")
    module, _, fn = f.loader.partition(":")
    return getattr(importlib.import_module(module), fn)


def load_into(model: Any, spec: ModelSpec, ref: WeightsRef | str | os.PathLike, fmt: str | None = None) -> None:
    """Load weights (a ref, or a path with its ``fmt``) into a torch module of ``spec``'s architecture."""
    if not isinstance(ref, WeightsRef):
        p = Path(ref)
        ref = WeightsRef("file", fmt or _file_format(p, "weights"), p, None, str(ref))
    if ref.format == "facefeat":
        _loader("facefeat")(model, ref.path, spec)
    else:
        _loader(ref.format)(model, ref.path)
    model.eval()
