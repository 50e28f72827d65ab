"""Calibrated operating points: measured from scores, carried by models, chosen by the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from facefeat import create_pipeline
from facefeat.errors import InputError
from facefeat.registry import get_spec, list_models
from facefeat.engine.calibration import calibrate_pairs, identification_points, verification_points
from facefeat.thresholds import FALLBACK_THRESHOLD, resolve_threshold, store_thresholds


def _scores(n_pos=2000, n_neg=20000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.6, 0.12, n_pos), rng.normal(0.05, 0.1, n_neg)


def test_far_thresholds_hold_their_rate_and_are_ordered():
    pos, neg = _scores()
    v = verification_points(pos, neg)
    t = [v[k]["threshold"] for k in ("far=1e-2", "far=1e-3", "far=1e-4")]
    assert t[0] < t[1] < t[2]
    for k, far in (("far=1e-2", 1e-2), ("far=1e-3", 1e-3), ("far=1e-4", 1e-4)):
        assert np.mean(neg > v[k]["threshold"]) <= far
        assert v[k]["far"] <= far and 0 < v[k]["tar"] <= 1
    assert 0.3 < v["best_accuracy"]["threshold"] < 0.45 and v["best_accuracy"]["accuracy"] > 0.95


def test_unmeasurable_far_is_none_not_a_guess():
    pos, neg = _scores(n_neg=3000)  # LFW's 3,000 impostor pairs cannot measure FAR 1e-4
    rec = calibrate_pairs(np.r_[pos, neg], np.r_[np.ones(pos.size), np.zeros(neg.size)])
    assert rec["verification"]["far=1e-4"] is None
    assert rec["verification"]["far=1e-3"] is not None
    assert rec["data"] == {"genuine_pairs": 2000, "impostor_pairs": 3000}
    with pytest.raises(InputError, match="far=1e-4"):
        resolve_threshold(rec, far=1e-4)


def test_identification_points():
    rng = np.random.default_rng(1)
    imp_top = rng.normal(0.3, 0.05, 5000)
    e = identification_points(imp_top, 1000, genuine_top=rng.normal(0.7, 0.1, 800),
                              genuine_correct=np.ones(800, bool))
    assert e["gallery_size"] == 1000 and e["fpir=0.01"]["threshold"] > e["fpir=0.1"]["threshold"]
    assert e["fpir=0.01"]["fpir"] <= 0.01 and 0.9 < e["fpir=0.01"]["dir"] <= 1


def test_resolve_threshold():
    rec = get_spec("SFace").thresholds
    t, op = resolve_threshold(rec)  # verify: FAR 1e-3
    assert t == rec["verification"]["far=1e-3"]["threshold"] and op["source"] == "calibrated"
    assert op["operating_point"] == "far=1e-3" and op["measured"]["far"] <= 1e-3
    t1, _ = resolve_threshold(rec, far=1e-2)
    t4, _ = resolve_threshold(rec, far=1e-4)
    assert t1 < t < t4
    ti, op = resolve_threshold(rec, task="identify", gallery_size=1500)
    assert op["operating_point"] == "fpir=0.01" and op["measured"]["gallery_size"] > 1000 and ti > t
    _, op = resolve_threshold(rec, task="identify", gallery_size=80)
    assert op["measured"]["gallery_size"] == 100
    assert resolve_threshold(rec, 0.25)[1]["source"] == "fixed"
    tl, op = resolve_threshold(rec, metric_type="L2")
    assert abs(tl - (2 - 2 * t)) < 1e-9
    t, op = resolve_threshold(None)
    assert t == FALLBACK_THRESHOLD and op["source"] == "uncalibrated default"
    for bad in ("high", float("nan")):
        with pytest.raises(InputError):
            resolve_threshold(rec, bad)
    with pytest.raises(InputError, match="not both"):
        resolve_threshold(rec, 0.3, far=1e-3)


def test_zoo_records():
    sface = get_spec("SFace").thresholds
    assert sface["data"]["name"] == "LFW" and "bench/lfw.py --calibrate" in sface["source"]
    assert all(sface["verification"][k] for k in ("far=1e-2", "far=1e-3", "far=1e-4", "best_accuracy"))
    for name in list_models():
        spec = get_spec(name)
        if spec.weights.kind == "url":  # official PaddleX weights are not reachable offline: not measured
            assert spec.thresholds is None
        else:  # the offline models (SFace, FaceNet, SFace+FaceNet): measured on LFW
            assert spec.thresholds["data"]["name"] == "LFW" and "bench/lfw.py --calibrate" in spec.thresholds["source"]


def test_pipeline_uses_the_calibrated_threshold_and_says_so():
    pipe = create_pipeline("face_recognition")
    assert pipe.thresholds == get_spec("SFace").thresholds
    (res,) = list(pipe.predict(np.full((64, 64, 3), 127, np.uint8)))
    op = res["operating_point"]
    assert op["source"] == "calibrated" and op["operating_point"] == "fpir=0.01"
    (res,) = list(pipe.predict(np.full((64, 64, 3), 127, np.uint8), rec_threshold=0.5))
    assert res["operating_point"] == {"threshold": 0.5, "source": "fixed", "operating_point": "fixed"}
    with pytest.raises(InputError):
        create_pipeline("face_recognition", rec_threshold="sometimes")


def test_only_the_default_weights_carry_the_zoo_calibration():
    """Decided by the weights reference's kind: the zoo's default weights (by name) get the
    registry's record; the same file named by its path is "a file" and carries none."""
    from facefeat import create_model
    from facefeat.weights.onnx_import import sface_package_path

    assert create_model("SFace").meta.extra["thresholds"] == get_spec("SFace").thresholds
    assert "thresholds" not in create_model("SFace", weights=str(sface_package_path())).meta.extra
    assert create_pipeline("face_recognition", weights=str(sface_package_path())).thresholds is None
    pytest.importorskip("torch")  # the PyTorch backend decides the same way
    assert create_model("SFace", backend="torch").meta.extra["thresholds"] == get_spec("SFace").thresholds
    assert "thresholds" not in create_model("SFace", str(sface_package_path()), backend="torch").meta.extra


def test_store_thresholds_in_a_model_dir(tmp_path):
    import shutil

    from facefeat import create_model
    from facefeat.runtime.model_dir import read_model_dir

    zoo = create_model("SFace")
    assert store_thresholds(zoo, {"x": 1}) is None  # the zoo cache keeps the zoo's record
    mdir = tmp_path / "mine"
    shutil.copytree(zoo.model_dir, mdir)
    mine = create_model(model_dir=mdir)
    rec = calibrate_pairs(np.r_[np.full(5, 0.8), np.full(5, 0.1)], [1] * 5 + [0] * 5, source="test")
    assert store_thresholds(mine, rec).endswith("inference.yml")
    assert read_model_dir(mdir)[1].extra["thresholds"]["source"] == "test"
    again = create_pipeline("face_recognition", model_dir=mdir)
    assert again.thresholds["source"] == "test"


def test_new_modules_are_torch_free():
    import subprocess
    import sys

    code = ("import sys, facefeat.thresholds, facefeat.pipeline.verify, facefeat.pipeline.enrol, "
            "facefeat.index.people, facefeat.vision.quality, facefeat.vision.retry; "
            "assert 'torch' not in sys.modules, 'imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
