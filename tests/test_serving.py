"""The HTTP service against a live uvicorn server on 127.0.0.1 (real sockets, real HTTP client).

Covers every endpoint with LFW photos, the PaddleX envelope, the limits (body size, streamed body,
image pixels, images per request), bad inputs (never a 500 with a traceback), index keys that try
to leave the storage directory, persistence across a new app on the same storage, and Milvus.
"""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serving_fixtures import ThreadServer, b64_bytes, b64_file, lfw_images  # noqa: E402

from facefeat.serving.app import create_app  # noqa: E402

MAX_BODY = 1_000_000
MAX_PIXELS = 2_000_000
MAX_IMAGES = 6


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def _check_envelope(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert set(body) == {"logId", "errorCode", "errorMsg", "result"}, body
    assert isinstance(body["logId"], str) and body["logId"]
    assert r.headers.get("x-log-id") in (None, body["logId"])
    if status == 200:
        assert body["errorCode"] == 0 and body["errorMsg"] == "Success"
        assert body["result"] is not None
    else:
        assert body["errorCode"] == status
        assert body["result"] is None
        assert body["errorMsg"] and "Traceback" not in body["errorMsg"] and 'File "' not in body["errorMsg"]
    return body


def _error(r: httpx.Response, status: int, *words: str) -> str:
    msg = _check_envelope(r, status)["errorMsg"]
    for w in words:
        assert w in msg, (w, msg)
    return msg


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-storage")


@pytest.fixture(scope="module")
def server(storage):
    app = create_app(storage, max_body_bytes=MAX_BODY, max_image_pixels=MAX_PIXELS, max_build_images=MAX_IMAGES,
                     infer_concurrency=2)
    srv = ThreadServer(app).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


@pytest.fixture(scope="module")
def people(lfw_dir) -> dict[str, list[Path]]:
    return {p: lfw_images(lfw_dir, p, 6) for p in ("George_W_Bush", "Colin_Powell", "Tony_Blair")}


@pytest.fixture(scope="module")
def gallery(client, people) -> dict:
    """An index of Bush and Powell (two photos each); photos [2:] of each are the probes."""
    pairs = [{"image": b64_file(p), "label": name} for name in ("George_W_Bush", "Colin_Powell")
             for p in people[name][:2]]
    r = client.post("/face-recognition-index-build", json={"imageLabelPairs": pairs})
    res = _check_envelope(r, 200)["result"]
    return res


# -- service endpoints ----------------------------------------------------------------------------


def test_health_docs_openapi(client):
    res = _check_envelope(client.get("/health"), 200)["result"]
    assert res["status"] == "ready" and res["models"] == ["SFace"] and res["indexBackend"] == "faiss"
    spec = client.get("/openapi.json").json()
    for path in ("/face-feature-infer", "/face-recognition-index-build", "/face-recognition-index-add",
                 "/face-recognition-index-remove", "/face-recognition-infer", "/face-recognition-index-info"):
        assert path in spec["paths"], path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_health_is_503_until_ready(server, client):
    svc = server.app.state.service
    svc.ready.clear()
    try:
        _error(client.get("/health"), 503, "not ready")
        _error(client.post("/face-recognition-infer", json={"image": "AAAA"}), 503, "not ready")
    finally:
        svc.ready.set()
    _check_envelope(client.get("/health"), 200)


def test_models_loaded_at_startup(server):
    svc = server.app.state.service
    assert svc.ready.is_set() and svc.default_model == "SFace" and svc._pool.qsize() == 2


# -- face feature module ----------------------------------------------------------------------------


def test_face_feature_infer(client, people):
    from facefeat import create_model

    path = people["Tony_Blair"][0]
    res = _check_envelope(client.post("/face-feature-infer", json={"image": b64_file(path)}), 200)["result"]
    assert res["model"] == "SFace" and res["dim"] == 128 and len(res["feature"]) == 128
    feat = np.asarray(res["feature"], np.float32)
    assert abs(np.linalg.norm(feat) - 1) < 1e-4
    ref = create_model("SFace").embed([cv2.imread(str(path))])[0]
    np.testing.assert_allclose(feat, ref, atol=1e-5)
    # a data URL works too; flip gives another, close feature
    data_url = "data:image/jpeg;base64," + b64_file(path)
    flipped = _check_envelope(client.post("/face-feature-infer", json={"image": data_url, "flip": True,
                                                                       "model": "SFace"}), 200)["result"]
    f2 = np.asarray(flipped["feature"], np.float32)
    assert 0.8 < float(feat @ f2) < 0.99999
    _error(client.post("/face-feature-infer", json={"image": b64_file(path), "model": "ResNet50_face"}), 400,
           "not loaded", "SFace")


# -- gallery and recognition -------------------------------------------------------------------------


def test_build_and_recognise(client, gallery, people):
    assert gallery["imageCount"] == 4 and gallery["ids"] == [0, 1, 2, 3]
    key = gallery["indexKey"]
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)
    for name in ("George_W_Bush", "Colin_Powell"):
        img = cv2.imread(str(people[name][3]))
        r = client.post("/face-recognition-infer", json={"image": b64_file(people[name][3]), "indexKey": key,
                                                         "topk": 2, "visualize": True})
        res = _check_envelope(r, 200)["result"]
        assert len(res["faces"]) >= 1
        face = res["faces"][0]
        x0, y0, x1, y1 = face["bbox"]
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
        assert 0.5 < face["score"] <= 1.0
        recs = face["recResults"]
        assert len(recs) == 2 and recs[0]["label"] == name
        assert recs[0]["score"] >= recs[1]["score"] and recs[0]["score"] > 0.4
        vis = cv2.imdecode(np.frombuffer(base64.b64decode(res["image"]), np.uint8), cv2.IMREAD_COLOR)
        assert vis is not None and vis.shape == img.shape
        assert not np.array_equal(vis, img)  # something was drawn
    # topk honoured; the visualisation is returned unless the client says visualize: false (PaddleX)
    r = client.post("/face-recognition-infer", json={"image": b64_file(people["Colin_Powell"][4]), "indexKey": key,
                                                     "topk": 1, "visualize": False})
    res = _check_envelope(r, 200)["result"]
    assert len(res["faces"][0]["recResults"]) == 1 and res["image"] is None
    r = client.post("/face-recognition-infer", json={"image": b64_file(people["Colin_Powell"][4]), "indexKey": key,
                                                     "topk": 10})
    assert len(_check_envelope(r, 200)["result"]["faces"][0]["recResults"]) == 4  # the whole gallery
    # a stranger is not named at a strict threshold; without an index faces are only detected
    r = client.post("/face-recognition-infer", json={"image": b64_file(people["Tony_Blair"][0]), "indexKey": key,
                                                     "recThreshold": 0.9})
    assert _check_envelope(r, 200)["result"]["faces"][0]["recResults"] == []
    r = client.post("/face-recognition-infer", json={"image": b64_file(people["Tony_Blair"][0])})
    faces = _check_envelope(r, 200)["result"]["faces"]
    assert len(faces) == 1 and faces[0]["recResults"] == []
    # a photo with no face
    blank = b64_bytes(_jpeg(np.full((120, 160, 3), 200, np.uint8)))
    r = client.post("/face-recognition-infer", json={"image": blank, "indexKey": key})
    assert _check_envelope(r, 200)["result"]["faces"] == []


def test_add_info_remove(client, people):
    pairs = [{"image": b64_file(people["Tony_Blair"][0]), "label": "Tony_Blair"}]
    key = _check_envelope(client.post("/face-recognition-index-build", json={"imageLabelPairs": pairs,
                                                                             "indexType": "Flat",
                                                                             "metricType": "IP"}), 200)["result"]["indexKey"]
    pairs = [{"image": b64_file(p), "label": "Colin_Powell"} for p in people["Colin_Powell"][:2]]
    res = _check_envelope(client.post("/face-recognition-index-add", json={"imageLabelPairs": pairs,
                                                                           "indexKey": key}), 200)["result"]
    assert res == {"imageCount": 3, "ids": [1, 2]}
    info = _check_envelope(client.get("/face-recognition-index-info", params={"indexKey": key}), 200)["result"]
    assert info["entries"] == [{"id": 0, "label": "Tony_Blair"}, {"id": 1, "label": "Colin_Powell"},
                               {"id": 2, "label": "Colin_Powell"}]
    assert info["imageCount"] == 3 and info["model"] == "SFace" and info["dim"] == 128
    assert info["backend"] == "faiss" and info["metricType"] == "IP" and info["indexType"] == "Flat"
    listed = _check_envelope(client.get("/face-recognition-index-list"), 200)["result"]["indexes"]
    assert {"indexKey": key, "indexName": None, "imageCount": 3, "model": "SFace"} in listed

    # removal is idempotent: ids not in the index are reported, not an error (PaddleX)
    res = _check_envelope(client.post("/face-recognition-index-remove", json={"ids": [1, 7, 8], "indexKey": key}),
                          200)["result"]
    assert res == {"imageCount": 2, "removed": [1], "missing": [7, 8]}
    res = _check_envelope(client.post("/face-recognition-index-remove", json={"ids": [1], "indexKey": key}), 200)
    assert res["result"] == {"imageCount": 2, "removed": [], "missing": [1]}
    # ids are never reused
    res = _check_envelope(client.post("/face-recognition-index-add", json={"imageLabelPairs": pairs[:1],
                                                                           "indexKey": key}), 200)["result"]
    assert res["ids"] == [3] and res["imageCount"] == 3
    # Tony is now recognised from another photo
    r = client.post("/face-recognition-infer", json={"image": b64_file(people["Tony_Blair"][2]), "indexKey": key})
    assert _check_envelope(r, 200)["result"]["faces"][0]["recResults"][0]["label"] == "Tony_Blair"


def test_index_name(client, people, storage):
    """A gallery built with ``indexName`` is listed and described by it (the web page shows it
    instead of the key), kept in the gallery's metadata; blank or control-character names are 422."""
    pairs = [{"image": b64_file(people["Tony_Blair"][0]), "label": "Tony_Blair"}]
    res = _check_envelope(client.post("/face-recognition-index-build",
                                      json={"imageLabelPairs": pairs, "indexName": "  Front door "}), 200)["result"]
    key = res["indexKey"]
    assert res["indexName"] == "Front door" and res["ids"] == [0]
    listed = _check_envelope(client.get("/face-recognition-index-list"), 200)["result"]["indexes"]
    assert {"indexKey": key, "indexName": "Front door", "imageCount": 1, "model": "SFace"} in listed
    info = _check_envelope(client.get("/face-recognition-index-info", params={"indexKey": key}), 200)["result"]
    assert info["indexName"] == "Front door"
    for bad in ("   ", "a\nb", "x" * 101, 7):
        _error(client.post("/face-recognition-index-build", json={"imageLabelPairs": pairs, "indexName": bad}),
               422, "indexName")
    from facefeat.index import open_store

    with open_store(storage / "indexes" / key) as st:  # kept in the gallery's own metadata
        assert st.meta()["name"] == "Front door"
    _check_envelope(client.post("/face-recognition-index-delete", json={"indexKey": key}), 200)
    assert not (storage / "indexes" / key).exists()


def test_gallery_rejects_faceless_images(client, people):
    blank = b64_bytes(_jpeg(np.full((100, 100, 3), 90, np.uint8)))
    pairs = [{"image": blank, "label": "nobody"}, {"image": b64_file(people["Tony_Blair"][1]), "label": "Tony"}]
    # ids are positional: a request with a faceless image is refused as a whole, naming each bad pair
    listed = len(_check_envelope(client.get("/face-recognition-index-list"), 200)["result"]["indexes"])
    _error(client.post("/face-recognition-index-build", json={"imageLabelPairs": pairs}), 400,
           "imageLabelPairs[0] ('nobody'): no face detected", "nothing was changed")
    assert len(_check_envelope(client.get("/face-recognition-index-list"), 200)["result"]["indexes"]) == listed
    res = _check_envelope(client.post("/face-recognition-index-build", json={"imageLabelPairs": pairs[1:]}),
                          200)["result"]
    assert res["ids"] == [0]
    three = [pairs[1], pairs[0], pairs[1], pairs[0]]
    _error(client.post("/face-recognition-index-add", json={"imageLabelPairs": three, "indexKey": res["indexKey"]}),
           400, "2 of 4", "imageLabelPairs[1]", "imageLabelPairs[3]", "nothing was changed")
    info = _check_envelope(client.get("/face-recognition-index-info", params={"indexKey": res["indexKey"]}),
                           200)["result"]
    assert info["imageCount"] == 1
    # after the refusal the next add still gets the next ids, one per pair, in order
    others = [{"image": b64_file(people["Tony_Blair"][i]), "label": "Tony"} for i in (2, 3)]
    r = client.post("/face-recognition-index-add", json={"imageLabelPairs": others, "indexKey": res["indexKey"]})
    assert _check_envelope(r, 200)["result"]["ids"] == [1, 2]
    # the same photos again: duplicates, reported with the ids they already have, nothing added
    r = client.post("/face-recognition-index-add", json={"imageLabelPairs": others + [pairs[1]],
                                                         "indexKey": res["indexKey"]})
    assert _check_envelope(r, 200)["result"] == {"imageCount": 3, "ids": [1, 2, 0], "duplicates": [0, 1, 2]}


def test_concurrent_adds_keep_every_id(client, people):
    pairs = [{"image": b64_file(people["Tony_Blair"][0]), "label": "seed"}]
    key = _check_envelope(client.post("/face-recognition-index-build", json={"imageLabelPairs": pairs}),
                          200)["result"]["indexKey"]
    got: list[list[int]] = []
    errors: list[str] = []

    def worker(i):
        try:
            with httpx.Client(base_url=str(client.base_url), timeout=60) as c:
                for n in range(3):  # a new person each time: the same photo twice for one person is a duplicate
                    body = {"imageLabelPairs": [{"image": b64_file(people["Colin_Powell"][i % 6]),
                                                 "label": f"w{i}-{n}"}], "indexKey": key}
                    r = c.post("/face-recognition-index-add", json=body)
                    got.append(_check_envelope(r, 200)["result"]["ids"])
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    ids = sorted(i for g in got for i in g)
    assert ids == list(range(1, 13))
    info = _check_envelope(client.get("/face-recognition-index-info", params={"indexKey": key}), 200)["result"]
    assert [e["id"] for e in info["entries"]] == list(range(13))


# -- errors and limits ----------------------------------------------------------------------------


def test_bad_images_are_400(client, gallery):
    key = gallery["indexKey"]
    _error(client.post("/face-recognition-infer", json={"image": "not base64 !!!", "indexKey": key}), 400,
           "image", "base64")
    _error(client.post("/face-recognition-infer", json={"image": b64_bytes(b"hello, not an image")}), 400,
           "image", "cannot decode")
    _error(client.post("/face-recognition-infer", json={"image": ""}), 400, "empty")
    _error(client.post("/face-feature-infer", json={"image": "data:image/png,abc"}), 400, "base64")
    pairs = [{"image": b64_bytes(b"GIF89a nonsense"), "label": "x"}]
    _error(client.post("/face-recognition-index-build", json={"imageLabelPairs": pairs}), 400,
           "imageLabelPairs[0].image")
    _error(client.post("/face-recognition-index-build", json={"imageLabelPairs": [{"image": "AAAA", "label": "  "}]}),
           400, "label")


def test_malformed_bodies_are_422(client, gallery):
    key = gallery["indexKey"]
    hdr = {"content-type": "application/json"}
    _error(client.post("/face-recognition-infer", content=b'{"image": ', headers=hdr), 422, "json")
    _error(client.post("/face-recognition-infer", json={"indexKey": key}), 422, "image")
    _error(client.post("/face-recognition-infer", json={"image": "AAAA", "topk": 0}), 422, "topk")
    _error(client.post("/face-recognition-infer", json={"image": "AAAA", "detThreshold": "high"}), 422, "detThreshold")
    _error(client.post("/face-recognition-index-remove", json={"ids": ["x"], "indexKey": key}), 422, "ids")
    before = client.get("/face-recognition-index-info", params={"indexKey": key}).json()["result"]["imageCount"]
    r = client.post("/face-recognition-index-remove", json={"ids": [], "indexKey": key})  # PaddleX: 200, no-op
    assert r.status_code == 200 and r.json()["result"] == {"imageCount": before, "removed": [], "missing": []}
    _error(client.post("/face-recognition-index-build", json={"imageLabelPairs": []}), 422, "imageLabelPairs")
    _error(client.post("/face-recognition-index-build", json=[1, 2]), 422)
    _error(client.get("/face-recognition-index-info"), 422, "indexKey")
    _error(client.get("/no-such-endpoint"), 404)
    _error(client.get("/face-recognition-infer"), 405)


def test_unknown_and_hostile_index_keys(client, storage, people):
    img = b64_file(people["Tony_Blair"][0])
    pairs = [{"image": img, "label": "x"}]
    unknown = "0123456789abcdef0123456789abcdef"
    _error(client.post("/face-recognition-infer", json={"image": img, "indexKey": unknown}), 404, unknown)
    _error(client.post("/face-recognition-index-add", json={"imageLabelPairs": pairs, "indexKey": unknown}), 404)
    _error(client.post("/face-recognition-index-remove", json={"ids": [0], "indexKey": unknown}), 404)
    _error(client.get("/face-recognition-index-info", params={"indexKey": unknown}), 404)
    assert not (storage / "locks" / f"{unknown}.lock").exists()  # unknown keys make no files
    before = sorted(p.name for p in storage.parent.iterdir())
    for bad in ("../", "../../etc/passwd", "..", "/tmp/x", "0123456789ABCDEF0123456789ABCDEF",
                "../" + unknown, unknown + "/../" + unknown, unknown[:-1] + "\x00", ""):
        _error(client.post("/face-recognition-infer", json={"image": img, "indexKey": bad}), 400, "indexKey")
        _error(client.post("/face-recognition-index-add", json={"imageLabelPairs": pairs, "indexKey": bad}), 400,
               "indexKey")
        _error(client.post("/face-recognition-index-remove", json={"ids": [0], "indexKey": bad}), 400, "indexKey")
        _error(client.get("/face-recognition-index-info", params={"indexKey": bad}), 400, "indexKey")
    # nothing was written beside the storage dir, and inside it only indexes/<key>/gallery.db*
    assert sorted(p.name for p in storage.parent.iterdir()) == before
    assert {p.name for p in storage.iterdir()} <= {"indexes"}
    for p in (storage / "indexes").iterdir():
        assert len(p.name) == 32 and {f.name for f in p.iterdir()} <= {"gallery.db", "gallery.db-wal", "gallery.db-shm"}
    # static files cannot be used to read outside their folder either
    r = client.get("/static/../app.py")
    assert r.status_code == 404 or "create_app" not in r.text
    r = client.get("/static/%2e%2e/app.py")
    assert r.status_code == 404 or "create_app" not in r.text


def test_limits_are_413(client, gallery, people):
    key = gallery["indexKey"]
    # too many images in one request
    pairs = [{"image": b64_file(people["Tony_Blair"][0]), "label": "t"}] * (MAX_IMAGES + 1)
    _error(client.post("/face-recognition-index-build", json={"imageLabelPairs": pairs}), 413,
           "max_build_images", str(MAX_IMAGES))
    _error(client.post("/face-recognition-index-add", json={"imageLabelPairs": pairs, "indexKey": key}), 413,
           "max_build_images")
    # decompression bomb: a small PNG of many pixels
    bomb = _png(np.zeros((1600, 1600), np.uint8))
    assert len(bomb) < 50_000
    _error(client.post("/face-recognition-infer", json={"image": b64_bytes(bomb)}), 413,
           "max_image_pixels", f"{MAX_PIXELS:,}")
    _error(client.post("/face-feature-infer", json={"image": b64_bytes(bomb)}), 413, "max_image_pixels")
    # body larger than the limit, announced by Content-Length
    big = {"image": "A" * (MAX_BODY + 10)}
    _error(client.post("/face-recognition-infer", json=big), 413, "max_body_bytes", f"{MAX_BODY:,}")

    # ... and streamed in chunks without a Content-Length
    def chunks():
        yield b'{"image": "'
        for _ in range(30):
            yield b"A" * 65536
        yield b'"}'

    _error(client.post("/face-recognition-infer", content=chunks(), headers={"content-type": "application/json"}),
           413, "max_body_bytes")
    # the server is still fine
    _check_envelope(client.get("/health"), 200)


def test_internal_errors_are_500_without_traceback(server, client, monkeypatch):
    svc = server.app.state.service

    def boom(*a, **k):
        raise RuntimeError("secret detail from deep inside")

    monkeypatch.setattr(svc, "image_bytes", boom)
    msg = _error(client.post("/face-recognition-infer", json={"image": "AAAA"}), 500, "internal server error")
    assert "secret" not in msg


# -- persistence ----------------------------------------------------------------------------------


def test_indexes_survive_a_new_server(storage, client, gallery, people):
    key = gallery["indexKey"]
    before = _check_envelope(client.get("/face-recognition-index-info", params={"indexKey": key}), 200)["result"]
    srv2 = ThreadServer(create_app(storage, infer_concurrency=1)).start()
    try:
        with httpx.Client(base_url=srv2.url, timeout=60) as c2:
            after = _check_envelope(c2.get("/face-recognition-index-info", params={"indexKey": key}), 200)["result"]
            assert after == before
            r = c2.post("/face-recognition-infer", json={"image": b64_file(people["Colin_Powell"][5]), "indexKey": key})
            assert _check_envelope(r, 200)["result"]["faces"][0]["recResults"][0]["label"] == "Colin_Powell"
            # a change made by one server is seen by the other (shared storage, as with several workers)
            pairs = [{"image": b64_file(people["Tony_Blair"][3]), "label": "Tony_Blair"}]
            added = _check_envelope(c2.post("/face-recognition-index-add",
                                            json={"imageLabelPairs": pairs, "indexKey": key}), 200)["result"]
        info = _check_envelope(client.get("/face-recognition-index-info", params={"indexKey": key}), 200)["result"]
        assert info["imageCount"] == before["imageCount"] + 1
        assert {"id": added["ids"][0], "label": "Tony_Blair"} in info["entries"]
        r = client.post("/face-recognition-index-remove", json={"ids": added["ids"], "indexKey": key})
        assert _check_envelope(r, 200)["result"]["imageCount"] == before["imageCount"]
    finally:
        srv2.stop()


@pytest.mark.slow  # starts milvus-lite
def test_milvus_backend(tmp_path, people):
    pytest.importorskip("pymilvus")
    storage = tmp_path / "milvus-storage"
    srv = ThreadServer(create_app(storage, index_backend="milvus", infer_concurrency=1)).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            pairs = [{"image": b64_file(p), "label": n} for n in ("George_W_Bush", "Tony_Blair") for p in people[n][:2]]
            res = _check_envelope(c.post("/face-recognition-index-build", json={"imageLabelPairs": pairs}),
                                  200)["result"]
            key = res["indexKey"]
            assert res["imageCount"] == 4
            info = _check_envelope(c.get("/face-recognition-index-info", params={"indexKey": key}), 200)["result"]
            assert info["backend"] == "milvus"
            r = c.post("/face-recognition-infer", json={"image": b64_file(people["Tony_Blair"][4]), "indexKey": key})
            assert _check_envelope(r, 200)["result"]["faces"][0]["recResults"][0]["label"] == "Tony_Blair"
            r = c.post("/face-recognition-index-remove", json={"ids": [2, 3], "indexKey": key})
            assert _check_envelope(r, 200)["result"]["imageCount"] == 2
    finally:
        srv.stop()
    srv = ThreadServer(create_app(storage, index_backend="milvus", infer_concurrency=1)).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            info = _check_envelope(c.get("/face-recognition-index-info", params={"indexKey": key}), 200)["result"]
            assert [e["label"] for e in info["entries"]] == ["George_W_Bush", "George_W_Bush"]
    finally:
        srv.stop()


def test_serve_settings_validation(tmp_path):
    from facefeat.errors import InputError
    from facefeat.serving.app import create_app_from_env, serve

    with pytest.raises(InputError, match="max_body_bytes"):
        create_app(tmp_path, max_body_bytes=0)
    with pytest.raises(InputError, match="index_backend"):
        create_app(tmp_path, index_backend="sqlite")
    with pytest.raises(InputError, match="workers"):
        serve(port=0, workers=0, storage_dir=str(tmp_path))
    env = os.environ.pop("FACEFEAT_SERVE_CONFIG", None)
    try:
        with pytest.raises(InputError, match="FACEFEAT_SERVE_CONFIG"):
            create_app_from_env()
    finally:
        if env is not None:
            os.environ["FACEFEAT_SERVE_CONFIG"] = env


def test_image_urls(server, client, gallery, people, monkeypatch):
    """Images may be http(s) URLs (here a loopback file server); the server can refuse them."""
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    folder = people["Colin_Powell"][0].parent
    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    settings = server.app.state.service.settings
    monkeypatch.setattr(settings, "allow_url_images", True)
    monkeypatch.setattr(settings, "url_allowed_networks", ["127.0.0.1/32"])  # the loopback file server
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/"
        url = base + people["Colin_Powell"][5].name
        r = client.post("/face-recognition-infer", json={"image": url, "indexKey": gallery["indexKey"]})
        assert _check_envelope(r, 200)["result"]["faces"][0]["recResults"][0]["label"] == "Colin_Powell"
        _error(client.post("/face-recognition-infer", json={"image": base + "missing.jpg"}), 400, "HTTP 404")
        monkeypatch.setattr(server.app.state.service.settings, "allow_url_images", False)
        _error(client.post("/face-recognition-infer", json={"image": url}), 400, "URLs are disabled")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_background_load_reports_503_until_ready(tmp_path):
    """With background_load the port opens at once and /health says 503 until the models are in."""
    import time

    import uvicorn

    app = create_app(tmp_path, background_load=True, infer_concurrency=1)
    svc = app.state.service
    gate = threading.Event()
    real_load = svc.load

    def gated_load():
        gate.wait(60)
        real_load()

    svc.load = gated_load
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        _error(httpx.get(url + "/health"), 503, "still loading")
        _error(httpx.post(url + "/face-feature-infer", json={"image": "AAAA"}), 503, "not ready")
        gate.set()
        while time.monotonic() < deadline:
            r = httpx.get(url + "/health")
            if r.status_code == 200:
                break
            time.sleep(0.1)
        assert _check_envelope(r, 200)["result"]["status"] == "ready"
    finally:
        gate.set()
        server.should_exit = True
        t.join(30)
