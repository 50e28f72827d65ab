"""The module API: create_model + predict on every input kind, results, errors, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefeat import create_model, list_models
from facefeat.errors import InputError, ModelNotFoundError, WeightsError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sface():
    return create_model("SFace")


@pytest.fixture(scope="module")
def faces(tmp_path_factory, lfw_dir) -> list[Path]:
    """A few LFW images, centre-cropped to 112x112, written as JPEG files."""
    out = tmp_path_factory.mktemp("faces")
    paths = []
    for person in ["Aaron_Eckhart", "AJ_Cook", "Colin_Powell", "Tony_Blair"]:
        src = sorted((lfw_dir / person).glob("*.jpg"))[0]
        img = cv2.imread(str(src))[60:190, 60:190]
        p = out / f"{person}.jpg"
        cv2.imwrite(str(p), cv2.resize(img, (112, 112)))
        paths.append(p)
    return paths


def test_zoo_lists_three_models():
    assert {"SFace", "MobileFaceNet", "ResNet50_face"} <= set(list_models())


def test_unknown_model_names_the_choices():
    with pytest.raises(ModelNotFoundError, match="SFace"):
        create_model("NoSuchNet")


def test_predict_path_gives_unit_feature(sface, faces, tmp_path):
    (res,) = list(sface.predict(str(faces[0])))
    assert res["input_path"] == str(faces[0]) and res["page_index"] is None
    f = np.asarray(res["feature"])
    assert f.shape == (128,) and abs(np.linalg.norm(f) - 1) < 1e-5
    out = res.save_to_json(tmp_path / "res.json")
    doc = json.loads(out.read_text())
    # PaddleX writes the inner result dict; .json (and print) wrap it in {"res": ...}
    assert set(doc) == {"input_path", "page_index", "feature"}
    assert {"res": doc} == res.json


def test_every_input_kind_gives_the_same_feature(sface, faces):
    from PIL import Image

    path = faces[0]
    bgr = cv2.imread(str(path))
    ref = np.asarray(next(sface.predict(str(path)))["feature"])
    kinds = [path, bgr, Image.open(path), path.read_bytes()]
    for x in kinds:
        got = np.asarray(next(sface.predict(x))["feature"])
        assert np.abs(got - ref).max() < 1e-5, type(x)


def test_directory_and_list_batching_keep_one_feature_per_image(sface, faces):
    d = faces[0].parent
    one = [np.asarray(r["feature"]) for r in sface.predict(str(d), batch_size=1)]
    many = list(sface.predict(str(d), batch_size=3))
    assert [r["input_path"] for r in many] == [str(p) for p in sorted(d.glob("*.jpg"))]
    for a, r in zip(one, many):
        assert np.asarray(r["feature"]).shape == (128,)  # not the whole batch (PaddleX 3.7.2 bug)
        assert np.abs(a - np.asarray(r["feature"])).max() < 1e-4
    listed = list(sface.predict([str(p) for p in faces], batch_size=4))
    assert len(listed) == len(faces)


def test_flip_sums_image_and_mirror(sface, faces):
    img = cv2.imread(str(faces[1]))
    raw = sface.raw_features([img]) + sface.raw_features([img[:, ::-1].copy()])
    expect = raw[0] / np.linalg.norm(raw[0])
    got = np.asarray(next(sface.predict(img, flip=True))["feature"])
    assert np.abs(got - expect).max() < 1e-5


def test_bad_inputs_name_the_input(sface, tmp_path):
    with pytest.raises(InputError, match="missing.jpg: no such file"):
        list(sface.predict(str(tmp_path / "missing.jpg")))
    bad = tmp_path / "notimage.jpg"
    bad.write_text("hello")
    with pytest.raises(InputError, match="notimage.jpg: cannot decode"):
        list(sface.predict(str(bad)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty: directory holds no image files"):
        list(sface.predict(str(empty)))
    with pytest.raises(InputError, match=r"shape \(3, 4, 5, 6\)"):
        list(sface.predict(np.zeros((3, 4, 5, 6), np.uint8)))
    with pytest.raises(InputError, match="dtype int64"):
        list(sface.predict(np.zeros((112, 112, 3), np.int64) - 1))


def test_directory_reports_failures_and_yields_the_rest(sface, faces, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    for p in faces[:2]:
        (d / p.name).write_bytes(p.read_bytes())
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    results = list(sface.predict(str(d), batch_size=2))
    assert len(results) == 2
    assert len(sface.failures) == 1 and "broken.jpg" in str(sface.failures[0])


def test_offline_paddlex_weights_error_names_url_cache_and_weights_arg(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEFEAT_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEFEAT_DOWNLOAD_TIMEOUT", "3")
    import facefeat.weights.sources as sources

    monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT_S", 3.0)

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
    with pytest.raises(WeightsError) as err:
        create_model("MobileFaceNet")
    msg = str(err.value)
    assert "MobileFaceNet_pretrained.pdparams" in msg and "https://" in msg
    assert str(tmp_path / "cache" / "weights") in msg and "weights=" in msg


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match="nope.pdparams"):
        create_model("MobileFaceNet", weights=str(tmp_path / "nope.pdparams"))


def test_paddlex_weights_onnx_matches_torch_backend(paddle_peers, faces):
    w = paddle_peers / "MobileFaceNet" / "model.pdparams"
    ort_model = create_model("MobileFaceNet", weights=str(w), backend="onnxruntime", batch_size=4)
    torch_model = create_model("MobileFaceNet", weights=str(w), backend="torch", batch_size=4)
    a = np.asarray([r["feature"] for r in ort_model.predict([str(p) for p in faces])])
    b = np.asarray([r["feature"] for r in torch_model.predict([str(p) for p in faces])])
    assert a.shape == (len(faces), 128)
    assert np.abs(a - b).max() < 1e-4


def test_paddlex_preprocessing_matches_reference(paddle_peers):
    """Our preprocessing of a BGR image == PaddleX's (BGR->RGB, /127.5-1, CHW)."""
    model = create_model("MobileFaceNet", weights=str(paddle_peers / "MobileFaceNet" / "model.pdparams"))
    ref = np.load(paddle_peers / "MobileFaceNet" / "reference_io.npz")
    x = ref["x"]  # [2,3,112,112] in [-1,1], RGB
    rgb = np.round((x.transpose(0, 2, 3, 1) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    bgr = [im[..., ::-1].copy() for im in rgb]
    assert np.abs(model.preprocess(bgr) - (rgb.astype(np.float32) / 127.5 - 1).transpose(0, 3, 1, 2)).max() < 1e-6


def test_cli_predict_and_models(faces, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "facefeat", "predict", str(faces[0]), "--model", "SFace",
                        "--save-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "feature" in r.stdout
    doc = json.loads((out / f"{faces[0].stem}_res.json").read_text())
    assert len(doc["feature"]) == 128
    r = subprocess.run([sys.executable, "-m", "facefeat", "models"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ResNet50_face" in r.stdout and "Apache-2.0" in r.stdout
    r = subprocess.run([sys.executable, "-m", "facefeat", "predict", str(tmp_path / "nope.jpg")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "nope.jpg: no such file" in r.stderr
