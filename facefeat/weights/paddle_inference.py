"""Read PaddleX's exported *inference model* without Paddle and load it into a torch model.

``paddle.jit.save`` (PaddleX ``export``) writes a directory with

* ``inference.json``: the PIR program (JSON). Only read as data: the parameter ops (``"p"``:
  name, dtype, shape) and, for every compute op, which parameters it consumes, in order;
* ``inference.pdiparams``: every parameter, sorted by name, each a serialised DenseTensor
  (``uint32`` version 0, ``uint64`` LoD level count + levels, ``uint32`` version 0, ``int32``
  size of a ``TensorDesc`` protobuf (data type, dims), then the raw little-endian data);
* ``inference.yml``: PaddleX's pre/post-processing and ``Global.model_name``.

Nothing in these files is executed: the JSON is parsed by :mod:`json`, the YAML by
``yaml.safe_load``, and the parameter file by bounds-checked reads that must agree, tensor by
tensor, with the names, shapes and dtypes the program declares.

PIR names parameters by creation counters (``create_parameter_12.w_0``, ``batch_norm2d_3.w_1``)
rather than by layer attribute, so :func:`inference_state_dict` pairs the program's layers (in
execution order) with the torch model's parameterised modules (in forward order, found by
running a dummy batch), producing a Paddle-style state dict that
:func:`facefeat.weights.paddle.paddle_to_torch_state_dict` maps as it maps ``.pdparams``.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facefeat.errors import InputError, WeightsError
from facefeat.registry import get_spec
from facefeat.weights.paddle import paddle_to_torch_state_dict
from facefeat.weights.ref import LoadedWeights, WeightsRef

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "PROGRAM_FILE",
    "PARAMS_FILE",
    "CONFIG_FILE",
    "PaddleInferenceModel",
    "ProgramLayer",
    "inference_model_name",
    "inference_state_dict",
    "is_paddle_inference_dir",
    "read_paddle_inference_weights",
    "paddle_inference_dir",
    "read_paddle_inference",
]

PROGRAM_FILE = "inference.json"
PARAMS_FILE = "inference.pdiparams"
CONFIG_FILE = "inference.yml"
MAX_PROGRAM_BYTES = 64 << 20  # a backbone's program is ~0.2-2 MB of JSON
MAX_DESC_BYTES = 1 << 16
#: one parameter above this many bytes is refused (its dims are absurd or overflow int64)
MAX_PARAM_BYTES = 1 << 36

# PIR type names ("0.t_f32") and TensorDesc data_type codes -> numpy dtype ("bf16" is widened)
_PIR_DTYPES = {"t_bool": "bool", "t_i8": "int8", "t_ui8": "uint8", "t_i16": "int16", "t_i32": "int32",
               "t_i64": "int64", "t_f16": "float16", "t_bf16": "bf16", "t_f32": "float32", "t_f64": "float64"}
_DESC_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32", 6: "float64",
                20: "uint8", 21: "int8", 22: "bf16"}
# ops through which a parameter passes unchanged in value (a bias reshaped to [1, C, 1, 1])
_PASS_THROUGH = {"reshape", "reshape_", "unsqueeze", "unsqueeze_", "squeeze", "squeeze_", "assign"}


@dataclass
class ProgramLayer:
    """One compute op of the program that consumes parameters (in the op's input order)."""

    op: str  # "conv2d", "depthwise_conv2d", "batch_norm_", "prelu", "matmul", "add", ...
    params: list[str]
    struct_name: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PaddleInferenceModel:
    """What :func:`read_paddle_inference` found in an inference model directory."""

    directory: Path
    model_name: str | None
    params: dict[str, np.ndarray]  # PIR parameter name -> array (float32 for float tensors)
    layers: list[ProgramLayer]
    input_shape: list[int] | None = None


# -- locating ----------------------------------------------------------------------------------------
def paddle_inference_dir(path: str | os.PathLike | None) -> Path | None:
    """The inference model directory ``path`` names (the directory, or one of its files), else None."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_file() and p.name in (PROGRAM_FILE, PARAMS_FILE, CONFIG_FILE):
        p = p.parent
    if p.is_dir() and (p / PROGRAM_FILE).is_file() and (p / PARAMS_FILE).is_file():
        return p
    return None


def is_paddle_inference_dir(path: str | os.PathLike | None) -> bool:
    """True if ``path`` is (or is a file of) a PaddleX inference model: inference.json + .pdiparams."""
    return paddle_inference_dir(path) is not None


def _require_dir(path: str | os.PathLike) -> Path:
    d = paddle_inference_dir(path)
    if d is None:
        raise WeightsError(
            f"{str(path)!r} is not a PaddleX inference model directory: it needs {PROGRAM_FILE} and "
            f"{PARAMS_FILE} (written by PaddleX export / paddle.jit.save)"
        )
    return d


def inference_model_name(path: str | os.PathLike) -> str | None:
    """``Global.model_name`` of the directory's ``inference.yml`` (None if the file is absent)."""
    import yaml

    cfg = _require_dir(path) / CONFIG_FILE
    if not cfg.is_file():
        return None
    try:
        doc = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise WeightsError(f"{cfg}: not a readable PaddleX inference.yml ({exc})") from exc
    glob = doc.get("Global") if isinstance(doc, dict) else None
    name = glob.get("model_name") if isinstance(glob, dict) else None
    if name is not None and not isinstance(name, str):
        raise WeightsError(f"{cfg}: Global.model_name must be a string, got {name!r}")
    if doc is not None and not isinstance(doc, dict):
        raise WeightsError(f"{cfg}: not a PaddleX inference.yml (expected a mapping, got {type(doc).__name__})")
    return name


def resolve_model_name(model_name: str | None, path: str | os.PathLike) -> str:
    """The zoo model to build for inference dir ``path``: ``model_name`` or the yml's, which must agree."""
    found = inference_model_name(path)
    if model_name is None:
        if found is None:
            raise InputError(
                f"{path}: {CONFIG_FILE} names no model (Global.model_name); pass the model name, "
                "e.g. create_model('MobileFaceNet', model_dir=...)"
            )
        return get_spec(found).name
    name = get_spec(model_name).name
    if found is not None and found.lower() != name.lower():
        raise InputError(f"{path} holds a PaddleX {found} inference model, not {name}")
    return name


# -- the program (inference.json) -----------------------------------------------------------------
def _attr_value(attr: Any) -> Any:
    at = attr.get("AT") if isinstance(attr, dict) else None
    if not isinstance(at, dict):
        return None
    d = at.get("D")
    if isinstance(d, list) and all(isinstance(x, dict) and "D" in x for x in d):
        return [x["D"] for x in d]
    return d


def _read_program(path: Path) -> tuple[list[tuple[str, str, list[int]]], list[ProgramLayer], list[int] | None]:
    """``[(name, dtype, shape)]`` of the parameter ops, the parameter-consuming layers, the input shape."""
    size = path.stat().st_size
    if size > MAX_PROGRAM_BYTES:
        raise WeightsError(f"{path}: {size} bytes is too large for an inference program (limit {MAX_PROGRAM_BYTES})")
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WeightsError(f"{path}: not a PaddlePaddle PIR program (not readable JSON: {exc})") from exc
    base = doc.get("base_code") if isinstance(doc, dict) else None
    if not isinstance(base, dict) or base.get("magic") != "pir":
        raise WeightsError(
            f"{path}: not a PaddlePaddle PIR program (no base_code.magic 'pir'); export the model "
            "with PaddleX >= 3 (paddle.jit.save with PIR), or pass its .pdparams instead"
        )
    try:
        ops = doc["program"]["regions"][0]["blocks"][0]["ops"]
        params: list[tuple[str, str, list[int]]] = []
        value_param: dict[int, str] = {}
        layers: list[ProgramLayer] = []
        input_shape = None
        for op in ops:
            kind = str(op["#"])
            if kind == "p":
                name = str(op["A"][3])
                tt = op["O"]["TT"]["D"]
                dtype = _PIR_DTYPES.get(str(tt[0]["#"]).split(".")[-1])
                if dtype is None:
                    raise WeightsError(f"{path}: parameter {name!r} has unsupported type {tt[0]['#']!r}")
                shape = [int(s) for s in tt[1]]
                if any(s < 0 for s in shape):
                    raise WeightsError(f"{path}: parameter {name!r} has an undefined shape {shape}")
                if math.prod(shape) * _itemsize(dtype) > MAX_PARAM_BYTES:
                    raise WeightsError(f"{path}: parameter {name!r} has absurd dimensions {shape} (over "
                                       f"{MAX_PARAM_BYTES:,} bytes); the program is damaged")
                params.append((name, dtype, shape))
                value_param[int(op["O"]["%"])] = name
                continue
            opname = kind.split(".", 1)[-1]
            outs = op.get("O") or []
            attrs = {a.get("N"): _attr_value(a) for a in op.get("A") or [] if isinstance(a, dict)}
            if opname == "data" and input_shape is None:
                input_shape = [int(s) for s in attrs.get("shape") or []] or None
            ins = [i.get("%") for i in op.get("I") or [] if isinstance(i, dict)]
            used = [value_param[i] for i in ins if i in value_param]
            if not used:
                continue
            if opname in _PASS_THROUGH and ins and ins[0] in value_param:
                for o in outs:
                    value_param[int(o["%"])] = value_param[ins[0]]
                continue
            layers.append(ProgramLayer(opname, used, str(attrs.get("struct_name") or ""), attrs))
    except WeightsError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise WeightsError(f"{path}: malformed PIR program ({type(exc).__name__}: {exc})") from exc
    if not params:
        raise WeightsError(f"{path}: the program declares no parameters")
    names = [n for n, _, _ in params]
    if len(set(names)) != len(names):
        raise WeightsError(f"{path}: the program declares a parameter name twice")
    return params, layers, input_shape


# -- the parameters (inference.pdiparams) ------------------------------------------------------------
def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    out, shift = 0, 0
    while True:
        if i >= end or shift > 63:
            raise ValueError("truncated or overlong varint")
        c = buf[i]
        i += 1
        out |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return out, i


def _tensor_desc(buf: bytes) -> tuple[int, list[int]]:
    """(data_type, dims) of a ``TensorDesc`` protobuf (field 1 varint, field 2 repeated int64)."""
    i, dtype, dims = 0, None, []
    while i < len(buf):
        key, i = _varint(buf, i, len(buf))
        fnum, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i, len(buf))
            if fnum == 1:
                dtype = v
            elif fnum == 2:
                dims.append(v)
        elif wire == 2:
            n, i = _varint(buf, i, len(buf))
            end = i + n
            if end > len(buf):
                raise ValueError("truncated TensorDesc")
            if fnum == 2:
                while i < end:
                    v, i = _varint(buf, i, end)
                    dims.append(v)
            i = end
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    if dtype is None:
        raise ValueError("TensorDesc without a data type")
    if any(d >= 1 << 62 for d in dims):  # a negative int64 (-1) is not a stored tensor's dim
        raise ValueError(f"TensorDesc has negative dims {dims}")
    return dtype, dims


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bf16" else np.dtype(dtype).itemsize


def _to_array(raw: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    if dtype == "bf16":
        bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    arr = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).reshape(shape)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    return arr.astype(arr.dtype.newbyteorder("="))


def _read_params(path: Path, declared: list[tuple[str, str, list[int]]]) -> dict[str, np.ndarray]:
    """Read every tensor of ``path``; they must be the declared parameters, in name order."""
    data_bytes = sum(math.prod(shape) * _itemsize(dt) for _, dt, shape in declared)  # exact, no overflow
    size = path.stat().st_size
    if not data_bytes <= size <= data_bytes + len(declared) * (32 + MAX_DESC_BYTES):
        raise WeightsError(
            f"{path}: {size} bytes, but the {len(declared)} parameters {PROGRAM_FILE} declares need "
            f"{data_bytes} bytes of data (plus small headers); the files do not belong together "
            "(or one is truncated)"
        )
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc}") from exc
    out: dict[str, np.ndarray] = {}
    off = 0
    for name, dtype, shape in sorted(declared, key=lambda t: t[0]):
        where = f"{path}: tensor {len(out) + 1} ({name})"
        try:
            (ver,) = struct.unpack_from("<I", buf, off)
            (lod_levels,) = struct.unpack_from("<Q", buf, off + 4)
            off += 12
            if ver != 0 or lod_levels > 16:
                raise ValueError(f"bad header (version {ver}, {lod_levels} LoD levels)")
            for _ in range(lod_levels):
                (n,) = struct.unpack_from("<Q", buf, off)
                off += 8 + n
            (tver, desc_len) = struct.unpack_from("<Ii", buf, off)
            off += 8
            if tver != 0 or not 0 < desc_len <= MAX_DESC_BYTES or off + desc_len > len(buf):
                raise ValueError(f"bad tensor header (version {tver}, desc size {desc_len})")
            code, dims = _tensor_desc(buf[off:off + desc_len])
            off += desc_len
        except (struct.error, ValueError) as exc:
            raise WeightsError(
                f"{where}: not a Paddle parameter file ({exc}); is {path.name} really "
                f"inference.pdiparams from paddle.jit.save?"
            ) from exc
        file_dtype = _DESC_DTYPES.get(code)
        if file_dtype is None:
            raise WeightsError(f"{where}: unsupported data type code {code}")
        if list(dims) != list(shape) or file_dtype != dtype:
            raise WeightsError(
                f"{where}: holds {file_dtype}{list(dims)} but {PROGRAM_FILE} declares {dtype}{list(shape)}; "
                "the two files do not belong together (or one is damaged)"
            )
        nbytes = math.prod(dims) * _itemsize(file_dtype)
        if off + nbytes > len(buf):
            raise WeightsError(f"{where}: file ends {off + nbytes - len(buf)} bytes early (truncated?)")
        try:
            out[name] = _to_array(buf[off:off + nbytes], file_dtype, list(dims))
        except ValueError as exc:  # dims that do not fit the bytes (never past the checks above)
            raise WeightsError(f"{where}: cannot read {file_dtype}{list(dims)} ({exc})") from exc
        off += nbytes
    if off != len(buf):
        raise WeightsError(
            f"{path}: {len(buf) - off} bytes left after the {len(out)} parameters {PROGRAM_FILE} declares; "
            "the files do not belong together"
        )
    return out


def read_paddle_inference(path: str | os.PathLike) -> PaddleInferenceModel:
    """Read a PaddleX inference model directory (or one of its files): parameters, layers, model name.

    Raises:
        WeightsError: a file is missing, not what its name says, damaged, or the two disagree.
    """
    d = _require_dir(path)
    declared, layers, input_shape = _read_program(d / PROGRAM_FILE)
    params = _read_params(d / PARAMS_FILE, declared)
    return PaddleInferenceModel(d, inference_model_name(d), params, layers, input_shape)


# -- onto a torch model ------------------------------------------------------------------------------
def _forward_order(model: "torch.nn.Module", input_shape: list[int] | None) -> list[tuple[str, Any]]:
    """Modules that hold parameters/buffers themselves, in the order ``model.forward`` runs them."""
    import torch

    names = {m: n for n, m in model.named_modules()}
    order: list[tuple[str, Any]] = []

    def hook(mod, _inp, _out):
        order.append((names[mod], mod))

    leaves = [m for m in model.modules()
              if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))]
    handles = [m.register_forward_hook(hook) for m in leaves]
    h, w = getattr(model, "input_size", None) or (input_shape[2:] if input_shape and len(input_shape) == 4 else (112, 112))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, int(h), int(w)))
    finally:
        for hd in handles:
            hd.remove()
        model.train(was_training)
    return order


def inference_state_dict(inf: PaddleInferenceModel, model: "torch.nn.Module") -> dict[str, np.ndarray]:
    """Name the inference model's parameters as a Paddle state dict of ``model``'s architecture.

    Raises:
        WeightsError: the program's layers do not line up with ``model``'s (another architecture).
    """
    from torch import nn

    where = f"{inf.directory}"
    arch = type(model).__name__
    layers = iter(enumerate(inf.layers))
    state: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def take(mod_name: str, kinds: tuple[str, ...], n: int) -> ProgramLayer:
        try:
            i, layer = next(layers)
        except StopIteration:
            raise WeightsError(f"{where}: the program ends before {arch}'s {mod_name}; not a {arch} model") from None
        if layer.op not in kinds or len(layer.params) != n:
            raise WeightsError(
                f"{where}: program layer {i} ({layer.op} {layer.struct_name or ''} with {len(layer.params)} "
                f"parameters) does not match {arch}'s {mod_name} (expects {'/'.join(kinds)} with {n}); "
                f"is this a {arch} inference model?"
            )
        return layer

    def put(key: str, pname: str) -> None:
        if pname in used:
            raise WeightsError(f"{where}: parameter {pname} is used by two layers; cannot map it onto {arch}")
        used.add(pname)
        state[key] = inf.params[pname]

    for name, mod in _forward_order(model, inf.input_shape):
        pre = f"{name}." if name else ""
        if isinstance(mod, nn.Conv2d):
            put(pre + "weight", take(name, ("conv2d", "depthwise_conv2d"), 1).params[0])
            if mod.bias is not None:
                put(pre + "bias", take(name + " bias", ("add",), 1).params[0])
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            mean, var, scale, bias = take(name, ("batch_norm_", "batch_norm"), 4).params
            for attr, p in (("_mean", mean), ("_variance", var), ("weight", scale), ("bias", bias)):
                put(pre + attr, p)
        elif isinstance(mod, nn.PReLU):
            put(pre + "_weight", take(name, ("prelu",), 1).params[0])
        elif isinstance(mod, nn.Linear):
            layer = take(name, ("matmul",), 1)
            w = inf.params[layer.params[0]]
            if layer.attrs.get("transpose_y"):
                w = w.T  # stored [out, in]: give paddle.py the [in, out] it expects
            used.add(layer.params[0])
            state[pre + "weight"] = np.ascontiguousarray(w)
            if mod.bias is not None:
                put(pre + "bias", take(name + " bias", ("add",), 1).params[0])
        else:
            raise WeightsError(f"{where}: cannot map PaddleX parameters onto {arch}'s {type(mod).__name__} {name!r}")
    rest = [f"{layer.op} {layer.struct_name}".strip() for _, layer in layers]
    unused = sorted(set(inf.params) - used)
    if rest or unused:
        raise WeightsError(
            f"{where}: {len(rest)} program layer(s) and {len(unused)} parameter(s) left over after mapping "
            f"onto {arch} (first: {(rest or unused)[0]}); not a {arch} inference model"
        )
    return state


def read_paddle_inference_weights(ref: WeightsRef, model: "torch.nn.Module") -> LoadedWeights:
    """A PaddleX inference model directory's parameters as ``model``'s state dict (strictly mapped)."""
    inf = read_paddle_inference(ref.path)
    try:
        state = paddle_to_torch_state_dict(inference_state_dict(inf, model), model)
    except WeightsError as exc:
        if str(inf.directory) in str(exc):
            raise
        raise WeightsError(f"{inf.directory}: {exc}") from exc
    return LoadedWeights(state)
