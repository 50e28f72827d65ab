"""The gallery-life endpoints (issue 18) against a live uvicorn server on 127.0.0.1: import an
archive, health, export, merge, person listing and forgetting, migration to the server's model,
key roles and bad archives."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx  # noqa: E402
from gallery_samples import cluster_features, make_stored_gallery  # noqa: E402
from serving_fixtures import ThreadServer  # noqa: E402

from facefeat.index.archive import export_archive  # noqa: E402
from facefeat.serving.app import create_app  # noqa: E402

ADMIN, READ = "admin-key-123456", "read-key-1234567"
TAR = {"Content-Type": "application/x-tar"}


def _ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text[:500]
    assert r.json()["errorCode"] == 0
    return r.json()["result"]


def _err(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text[:500]
    msg = r.json()["errorMsg"]
    for w in words:
        assert w in msg, (w, msg)
    return msg


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = create_app(tmp_path_factory.mktemp("serve-life"), infer_concurrency=1, api_keys=[ADMIN, "read:" + READ])
    srv = ThreadServer(app).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(server):
    with httpx.Client(base_url=server.url, timeout=120.0, headers={"X-API-Key": ADMIN}) as c:
        yield c


@pytest.fixture(scope="module")
def reader(server):
    with httpx.Client(base_url=server.url, timeout=60.0, headers={"X-API-Key": READ}) as c:
        yield c


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("life-src")
    rng = np.random.default_rng(11)
    x, labels, _ = cluster_features(rng, 4, 3)
    x = np.concatenate([x, x[3:4]])  # person_000 holds a photo of person_001
    make_stored_gallery(d / "g", x, labels + ["person_000"])
    export_archive(d / "g", d / "g.tar")
    return (d / "g.tar").read_bytes()


def test_import_health_export_merge(admin, reader, archive):
    _err(reader.post("/face-recognition-index-import", content=archive, headers=TAR), 403)
    res = _ok(admin.post("/face-recognition-index-import", content=archive, headers=TAR))
    key = res["indexKey"]
    assert res["mode"] == "restored" and res["imageCount"] == 13
    health = _ok(reader.get("/face-recognition-index-health", params={"indexKey": key}))
    assert [f["id"] for f in health["fixes"] if f["action"] == "remove_sample"] == [12]
    _err(reader.get("/face-recognition-index-health", params={"indexKey": key, "quality": "lenient"}), 422)
    _err(reader.get("/face-recognition-index-export", params={"indexKey": key}), 403)
    r = admin.get("/face-recognition-index-export", params={"indexKey": key})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
    again = _ok(admin.post("/face-recognition-index-import", params={"indexKey": key}, content=r.content, headers=TAR))
    assert again["mode"] == "merged" and again["samples_added"] == 0 and len(again["duplicates"]) == 13
    _err(admin.get("/face-recognition-index-export", params={"indexKey": "0" * 32}), 404)


def test_bad_archives_are_refused_and_leave_nothing(admin, reader, archive):
    before = _ok(reader.get("/face-recognition-index-list"))["indexes"]
    bad = bytearray(archive)
    bad[2000] ^= 0xFF
    _err(admin.post("/face-recognition-index-import", content=bytes(bad), headers=TAR), 400, "damaged")
    _err(admin.post("/face-recognition-index-import", content=b"hello", headers=TAR), 400, "archive")
    assert _ok(reader.get("/face-recognition-index-list"))["indexes"] == before


def test_person_listing_forgetting_and_migration(admin, reader, archive):
    key = _ok(admin.post("/face-recognition-index-import", content=archive, headers=TAR))["indexKey"]
    _err(reader.get("/face-recognition-person", params={"indexKey": key, "label": "person_002"}), 403)
    rep = _ok(admin.get("/face-recognition-person", params={"indexKey": key, "label": "person_002"}))
    assert [s["id"] for s in rep["samples"]] == [6, 7, 8] and rep["samples"][0]["crop"]["bytes"] > 0
    _err(admin.get("/face-recognition-person", params={"indexKey": key, "label": "nobody"}), 404, "nobody")
    gone = _ok(admin.post("/face-recognition-person-forget", json={"indexKey": key, "label": "person_002"}))
    assert gone["removed"] == [6, 7, 8] and gone["imageCount"] == 10
    persons = _ok(reader.get("/face-recognition-persons", params={"indexKey": key}))["persons"]
    assert "person_002" not in [p["label"] for p in persons]
    _err(admin.get("/face-recognition-thumbnail", params={"indexKey": key, "id": 6}), 404)
    _err(admin.post("/face-recognition-person-forget", json={"indexKey": key, "label": "person_002"}), 404)
    # migrate to the server's model (SFace): every stored crop re-embedded, names kept
    _err(reader.post("/face-recognition-index-migrate", json={"indexKey": key}), 403)
    mig = _ok(admin.post("/face-recognition-index-migrate", json={"indexKey": key}))
    assert mig["embedded"] == 10 and mig["to"] == "SFace"
    after = _ok(reader.get("/face-recognition-persons", params={"indexKey": key}))["persons"]
    assert after == persons
    info = _ok(reader.get("/face-recognition-index-info", params={"indexKey": key}))
    assert info["imageCount"] == 10
    assert _ok(admin.post("/face-recognition-index-migrate", json={"indexKey": key}))["embedded"] == 0


def test_corrections_over_http(admin, reader, lfw_dir):
    from serving_fixtures import b64_file, lfw_images

    bush, powell, blair = ([b64_file(p) for p in lfw_images(lfw_dir, n, 3)]
                           for n in ("George_W_Bush", "Colin_Powell", "Tony_Blair"))
    pairs = [{"image": im, "label": n} for n, ims in (("George_W_Bush", bush[:2]), ("Colin_Powell", powell[:2]))
             for im in ims]
    key = _ok(admin.post("/face-recognition-index-build", json={"imageLabelPairs": pairs, "quality": "off"}))["indexKey"]

    def top():
        res = _ok(reader.post("/face-recognition-infer", json={"image": blair[0], "indexKey": key,
                                                               "recThreshold": 0.0, "topk": 2}))
        return res["faces"][0]["recResults"][0]["label"]

    first = top()
    body = {"indexKey": key, "image": blair[0], "label": first, "kind": "not"}
    _err(reader.post("/face-recognition-correct", json=body), 403)
    cid = _ok(admin.post("/face-recognition-correct", json=body))["correctionId"]
    assert top() != first
    listed = _ok(reader.get("/face-recognition-corrections", params={"indexKey": key}))["corrections"]
    assert [(c["id"], c["kind"], c["label"]) for c in listed] == [(cid, "not", first)]
    assert _ok(admin.post("/face-recognition-correct-undo", json={"indexKey": key, "correctionId": cid}))["kind"] == "not"
    assert top() == first
    _err(admin.post("/face-recognition-correct-undo", json={"indexKey": key, "correctionId": cid}), 400, "already undone")
    _err(admin.post("/face-recognition-correct", json={**body, "label": "Nobody"}), 404, "Nobody")
    yes = _ok(admin.post("/face-recognition-correct", json={"indexKey": key, "image": bush[2], "label": "George_W_Bush",
                                                            "kind": "is", "quality": "off"}))
    assert yes["sampleId"] == 4
    undone = _ok(admin.post("/face-recognition-correct-undo", json={"indexKey": key, "correctionId": yes["correctionId"]}))
    assert undone["removedSample"] == 4
    _err(admin.post("/face-recognition-correct", json={**body, "kind": "maybe"}), 422)


def test_sightings_over_http(admin, reader, lfw_dir):
    from serving_fixtures import b64_file, lfw_images

    bush, blair = ([b64_file(p) for p in lfw_images(lfw_dir, n, 4)] for n in ("George_W_Bush", "Tony_Blair"))
    pairs = [{"image": im, "label": "George_W_Bush"} for im in bush[:2]]
    key = _ok(admin.post("/face-recognition-index-build", json={"imageLabelPairs": pairs, "quality": "off"}))["indexKey"]
    _err(reader.post("/face-recognition-sightings-config", json={"indexKey": key, "record": True}), 403)
    _err(admin.post("/face-recognition-sightings-config", json={"indexKey": key, "retentionDays": 0}), 400, "retention")
    cfg = _ok(admin.post("/face-recognition-sightings-config",
                         json={"indexKey": key, "record": True, "keepUnknown": True, "retentionDays": 3}))
    assert cfg == {"indexKey": key, "record": True, "keepUnknown": True, "retentionDays": 3.0}
    for im in (bush[2], *blair[:3]):
        _ok(reader.post("/face-recognition-infer", json={"image": im, "indexKey": key}))
    seen = _ok(admin.get("/face-recognition-sightings", params={"indexKey": key, "label": "George_W_Bush"}))
    assert len(seen["sightings"]) == 1
    _err(reader.get("/face-recognition-sightings", params={"indexKey": key}), 403)
    found = _ok(admin.post("/face-recognition-sightings-search", json={"indexKey": key, "image": blair[3]}))["sightings"]
    assert len(found) == 3 and all(r["label"] is None for r in found)
    groups = _ok(admin.get("/face-recognition-unknown-groups", params={"indexKey": key}))["groups"]
    assert len(groups) == 1 and groups[0]["size"] == 3
    named = _ok(admin.post("/face-recognition-unknown-name",
                           json={"indexKey": key, "sightingIds": groups[0]["ids"], "label": "Tony_Blair"}))
    assert len(named["sampleIds"]) == 3
    res = _ok(reader.post("/face-recognition-infer", json={"image": blair[3], "indexKey": key}))
    assert res["faces"][0]["recResults"][0]["label"] == "Tony_Blair"
    gone = _ok(admin.post("/face-recognition-sightings-dismiss", json={"indexKey": key, "sightingIds": groups[0]["ids"]}))
    assert gone["deleted"] == 3
