"""facefeat import-model on ONNX files the tests make from the zoo's own SFace, in other layouts and
normalisations: the directory it writes gives SFace's features; degenerate models are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from facefeat import create_model
from facefeat.errors import InputError, WeightsError
from facefeat.registry import get_spec
from facefeat.runtime.model_dir import MODEL_FILE, read_model_dir
from facefeat.engine.import_model import import_model
from facefeat.weights.resolver import resolve


def _sface_onnx() -> onnx.ModelProto:
    from facefeat.runtime.zoo import prepare_model_dir

    return onnx.load(str(prepare_model_dir(get_spec("SFace"), resolve(None, "SFace")) / MODEL_FILE))


def _variant(dst: Path, layout: str, order: str, mean: float, std: float, degenerate: bool = False) -> Path:
    """SFace (RGB 0..255 NCHW in) behind nodes that undo ``(x - mean) / std``, ``order`` and ``layout``."""
    m = _sface_onnx()
    g = m.graph
    old = g.input[0].name
    shape = ["N", 112, 112, 3] if layout == "NHWC" else ["N", 3, 112, 112]
    new_in = helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)
    g.initializer.extend([numpy_helper.from_array(np.array(std, np.float32), "k_std"),
                          numpy_helper.from_array(np.array(mean, np.float32), "k_mean"),
                          numpy_helper.from_array(np.array([2, 1, 0], np.int64), "k_rev")])
    nodes, x = [], "image"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["t_nchw"], perm=[0, 3, 1, 2]))
        x = "t_nchw"
    nodes += [helper.make_node("Mul", [x, "k_std"], ["t_mul"]), helper.make_node("Add", ["t_mul", "k_mean"], ["t_pix"])]
    x = "t_pix"
    if order == "BGR":
        nodes.append(helper.make_node("Gather", [x, "k_rev"], ["t_rgb"], axis=1))
        x = "t_rgb"
    for n in g.node:
        n.input[:] = [x if i == old else i for i in n.input]
    for n in reversed(nodes):
        g.node.insert(0, n)
    g.input.remove(g.input[0])
    g.input.insert(0, new_in)
    if degenerate:  # one vector for every face
        out = g.output[0].name
        for n in g.node:
            n.output[:] = ["t_feat" if o == out else o for o in n.output]
        g.initializer.extend([numpy_helper.from_array(np.array(0.0, np.float32), "k_zero"),
                              numpy_helper.from_array(np.ones((1, 128), np.float32), "k_one")])
        g.node.extend([helper.make_node("Mul", ["t_feat", "k_zero"], ["t_z"]),
                       helper.make_node("Add", ["t_z", "k_one"], [out])])
    del g.value_info[:]
    path = dst / f"sface_{layout}_{order}_{mean}_{std}{'_degenerate' if degenerate else ''}.onnx"
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def faces(lfw_dir):
    """Aligned LFW faces of several people (for the check and the comparison)."""
    import cv2

    from facefeat.vision.align import align
    from facefeat.vision.detector import YuNetDetector

    det, out = YuNetDetector(), []
    for person in ("Colin_Powell", "George_W_Bush", "Tony_Blair", "Gerhard_Schroeder"):
        for p in sorted((lfw_dir / person).glob("*.jpg"))[:2]:
            img = cv2.imread(str(p))
            out.append(align(img, det.detect(img)[0]))
    return out


@pytest.fixture(scope="module")
def check_dir(faces, tmp_path_factory):
    import cv2

    d = tmp_path_factory.mktemp("check")
    for i, f in enumerate(faces):
        cv2.imwrite(str(d / f"{i}.png"), f)
    return d


@pytest.mark.parametrize("layout,order,mean,std,preset", [
    ("NHWC", "BGR", 127.5, 127.5, "adaface"),
    ("NCHW", "RGB", 127.5, 128.0, "facenet"),
    # without a preset the colour order and normalisation are found by a check on test faces (seconds each)
    pytest.param("NCHW", "RGB", 0.0, 255.0, None, marks=pytest.mark.slow),
    pytest.param("NHWC", "RGB", 127.5, 127.5, None, marks=pytest.mark.slow),
])
def test_imported_models_give_sface_features(tmp_path, faces, check_dir, layout, order, mean, std, preset):
    src = _variant(tmp_path, layout, order, mean, std)
    out = tmp_path / "imported"
    rep = import_model(src, out, preset=preset, check=None if preset else check_dir, license="Apache-2.0")
    assert (rep["layout"], rep["channel_order"], rep["mean"], rep["std"]) == (layout, order, mean, std)
    _, meta = read_model_dir(out)
    assert meta.extra["license"] == "Apache-2.0" and meta.embedding_size == 128
    ref = create_model("SFace", precision="fp32", num_threads=1).embed(faces)
    for backend in ("onnxruntime", "openvino"):
        got = create_model(model_dir=out, backend=backend, precision="fp32", num_threads=1).embed(faces)
        assert np.min(np.sum(ref * got, axis=1)) > 0.9999


def test_degenerate_and_malformed_models_are_refused(tmp_path, check_dir):
    with pytest.raises(WeightsError, match="refused: the same feature for every face"):
        import_model(_variant(tmp_path, "NCHW", "RGB", 127.5, 127.5, degenerate=True), tmp_path / "x", preset="arcface")
    assert not (tmp_path / "x").exists()
    with pytest.raises(InputError, match="--preset"):
        import_model(_variant(tmp_path, "NCHW", "RGB", 127.5, 127.5), tmp_path / "y")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(WeightsError, match="not a readable ONNX model"):
        import_model(bad, tmp_path / "z", preset="arcface")
    with pytest.raises(InputError, match="unknown preset"):
        import_model(bad, tmp_path / "z", preset="nope")


def test_import_model_command(tmp_path, capsys):
    from facefeat.cli import main

    src = _variant(tmp_path, "NCHW", "RGB", 127.5, 127.5)
    assert main(["import-model", str(src), "--out", str(tmp_path / "m"), "--preset", "insightface",
                 "--license", "MIT"]) == 0
    assert '"license": "MIT"' in capsys.readouterr().out
