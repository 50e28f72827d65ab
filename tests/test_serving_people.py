"""The service's issue-11 endpoints against a live uvicorn server on 127.0.0.1: calibrated thresholds
in /face-recognition-infer, /face-verify, the people endpoints with thumbnails, per-person results,
and the enrolment quality policy on index build/add."""

from __future__ import annotations

import math

import cv2
import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serving_fixtures import ThreadServer, b64_bytes, b64_file, lfw_images  # noqa: E402

from facefeat.serving.app import create_app  # noqa: E402

ADMIN, READ = "admin-key-123456", "read-key-1234567"


def _ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["errorCode"] == 0
    return body["result"]


def _err(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert body["errorCode"] == status and body["result"] is None
    assert "Traceback" not in body["errorMsg"]
    for w in words:
        assert w in body["errorMsg"], (w, body["errorMsg"])
    return body["errorMsg"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = create_app(tmp_path_factory.mktemp("serve-people"), infer_concurrency=1, max_build_images=8,
                     api_keys=[ADMIN, "read:" + READ])
    srv = ThreadServer(app).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(server):
    with httpx.Client(base_url=server.url, timeout=60.0, headers={"X-API-Key": ADMIN}) as c:
        yield c


@pytest.fixture(scope="module")
def reader(server):
    with httpx.Client(base_url=server.url, timeout=60.0, headers={"X-API-Key": READ}) as c:
        yield c


@pytest.fixture(scope="module")
def photos(lfw_dir) -> dict:
    return {p: [b64_file(f) for f in lfw_images(lfw_dir, p, 5)] for p in ("George_W_Bush", "Colin_Powell", "Tony_Blair")}


@pytest.fixture(scope="module")
def key(admin, photos) -> str:
    pairs = [{"image": photos[n][i], "label": n} for n in ("George_W_Bush", "Colin_Powell") for i in range(2)]
    res = _ok(admin.post("/face-recognition-index-build", json={"imageLabelPairs": pairs, "quality": "off"}))
    assert res["ids"] == [0, 1, 2, 3]
    return res["indexKey"]


def test_infer_uses_the_calibrated_threshold(reader, key, photos):
    body = {"image": photos["George_W_Bush"][3], "indexKey": key, "visualize": False}
    res = _ok(reader.post("/face-recognition-infer", json=body))
    op = res["operatingPoint"]
    assert op["source"] == "calibrated" and op["operating_point"].startswith("fpir")
    assert res["threshold"] == op["threshold"] and 0 < res["threshold"] < 1
    assert res["faces"][0]["recResults"][0]["label"] == "George_W_Bush"
    # another operating point, a fixed number, and "auto" spelled out
    far = _ok(reader.post("/face-recognition-infer", json={**body, "far": 0.01}))["operatingPoint"]
    assert far["operating_point"].startswith("far") and far["threshold"] != op["threshold"]
    fixed = _ok(reader.post("/face-recognition-infer", json={**body, "recThreshold": 0.5}))
    assert fixed["operatingPoint"]["source"] == "fixed" and fixed["threshold"] == 0.5
    assert _ok(reader.post("/face-recognition-infer", json={**body, "recThreshold": "auto"}))["threshold"] == res["threshold"]
    # strictly typed and bounded
    for bad in ({"far": 0}, {"far": 1.5}, {"fpir": "0.01"}, {"recThreshold": "fast"}, {"recThreshold": 2},
                {"perPerson": "yes"}):
        _err(reader.post("/face-recognition-infer", json={**body, **bad}), 422)
    r = reader.post("/face-recognition-infer", content=b'{"image": "AAAA", "far": NaN}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    _err(reader.post("/face-recognition-infer", json={**body, "recThreshold": 0.5, "far": 0.01}), 400, "not both")


def test_per_person_results(reader, key, photos):
    body = {"image": photos["Colin_Powell"][3], "indexKey": key, "visualize": False, "topk": 2,
            "recThreshold": 0.0}
    plain = _ok(reader.post("/face-recognition-infer", json=body))["faces"][0]
    assert [r["label"] for r in plain["recResults"]] == ["Colin_Powell", "Colin_Powell"]
    assert "sampleIds" not in plain or plain["sampleIds"] is None
    per = _ok(reader.post("/face-recognition-infer", json={**body, "perPerson": True}))["faces"][0]
    assert [r["label"] for r in per["recResults"]] == ["Colin_Powell", "George_W_Bush"]
    assert per["sampleIds"][0] in (2, 3) and per["sampleIds"][1] in (0, 1)


def test_verify(reader, key, photos):
    same = _ok(reader.post("/face-verify", json={"image1": photos["Tony_Blair"][0], "image2": photos["Tony_Blair"][1]}))
    diff = _ok(reader.post("/face-verify", json={"image1": photos["Tony_Blair"][0], "image2": photos["Colin_Powell"][0]}))
    assert same["verified"] is True and diff["verified"] is False
    assert same["score"] > same["threshold"] > diff["score"]
    assert same["operatingPoint"]["operating_point"] == "far=1e-3" and same["far"] is not None
    assert [f["input"] for f in same["faces"]] == ["image1", "image2"] and len(same["faces"][0]["coordinate"]) == 4
    # against a gallery person; a chosen operating point
    person = _ok(reader.post("/face-verify", json={"image1": photos["George_W_Bush"][4], "indexKey": key,
                                                   "label": "George_W_Bush", "far": 0.01}))
    assert person["verified"] is True and person["operatingPoint"]["operating_point"] == "far=1e-2"
    assert person["faces"][1]["person"] == "George_W_Bush" and person["faces"][1]["sample_id"] in (0, 1)
    # bad requests
    _err(reader.post("/face-verify", json={"image1": photos["Tony_Blair"][0]}), 400, "image2")
    _err(reader.post("/face-verify", json={"image1": photos["Tony_Blair"][0], "label": "x"}), 400, "indexKey")
    _err(reader.post("/face-verify", json={"image1": photos["Tony_Blair"][0], "indexKey": key, "label": "Nobody"}),
         404, "Nobody")
    _err(reader.post("/face-verify", json={"image1": photos["Tony_Blair"][0], "image2": "http://example.com/a.jpg"}),
         400, "URLs are disabled")
    blank = b64_bytes(cv2.imencode(".jpg", np.full((120, 160, 3), 200, np.uint8))[1].tobytes())
    _err(reader.post("/face-verify", json={"image1": blank, "image2": photos["Tony_Blair"][0]}), 400, "image1",
         "no face")
    _err(reader.post("/face-verify", json={"image1": photos["Tony_Blair"][0], "image2": photos["Tony_Blair"][1],
                                           "far": -1}), 422)
    with httpx.Client(base_url=str(reader.base_url), timeout=10.0) as anon:
        _err(anon.post("/face-verify", json={"image1": "AAAA", "image2": "AAAA"}), 401)


def test_people_endpoints(admin, reader, key, photos):
    res = _ok(reader.get("/face-recognition-persons", params={"indexKey": key}))
    assert res["personCount"] == 2 and res["imageCount"] == 4
    assert [(p["label"], p["sampleCount"], p["sampleIds"]) for p in res["persons"]] == [
        ("Colin_Powell", 2, [2, 3]), ("George_W_Bush", 2, [0, 1])]
    # thumbnails: the aligned face of each sample, behind the key
    r = reader.get("/face-recognition-thumbnail", params={"indexKey": key, "id": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    thumb = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (112, 112, 3)
    with httpx.Client(base_url=str(reader.base_url), timeout=10.0) as anon:
        _err(anon.get("/face-recognition-thumbnail", params={"indexKey": key, "id": 2}), 401)
    _err(reader.get("/face-recognition-thumbnail", params={"indexKey": key, "id": 99}), 404)
    # writes need the admin key
    add = {"indexKey": key, "label": "Tony_Blair", "images": photos["Tony_Blair"][:2]}
    _err(reader.post("/face-recognition-person-add", json=add), 403)
    _err(reader.post("/face-recognition-person-remove", json={"indexKey": key, "label": "Colin_Powell"}), 403)
    added = _ok(admin.post("/face-recognition-person-add", json=add))
    assert added == {"label": "Tony_Blair", "ids": [4, 5], "imageCount": 6}
    renamed = _ok(admin.post("/face-recognition-person-rename",
                             json={"indexKey": key, "label": "Tony_Blair", "newLabel": "Blair"}))
    assert renamed["renamed"] == 2
    infer = {"image": photos["Tony_Blair"][3], "indexKey": key, "visualize": False}
    assert _ok(reader.post("/face-recognition-infer", json=infer))["faces"][0]["recResults"][0]["label"] == "Blair"
    removed = _ok(admin.post("/face-recognition-person-remove", json={"indexKey": key, "label": "Blair"}))
    assert removed == {"label": "Blair", "removed": [4, 5], "imageCount": 4}
    _err(reader.get("/face-recognition-thumbnail", params={"indexKey": key, "id": 4}), 404)
    _err(admin.post("/face-recognition-person-remove", json={"indexKey": key, "label": "Blair"}), 404, "Blair")
    _err(admin.post("/face-recognition-person-rename", json={"indexKey": key, "label": "Nobody", "newLabel": "x"}), 404)
    _err(admin.post("/face-recognition-person-rename", json={"indexKey": key, "label": "Colin_Powell",
                                                             "newLabel": "   "}), 400, "blank")
    _err(reader.get("/face-recognition-persons", params={"indexKey": "0" * 32}), 404)
    _err(reader.get("/face-recognition-persons", params={"indexKey": "../etc"}), 400)
    # PaddleX's endpoints still see the same index
    info = _ok(reader.get("/face-recognition-index-info", params={"indexKey": key}))
    assert sorted(e["id"] for e in info["entries"]) == [0, 1, 2, 3]


def test_enrolment_quality_policy(server, admin, photos):
    good = photos["Tony_Blair"][0]
    img = cv2.imdecode(np.frombuffer(__import__("base64").b64decode(good), np.uint8), cv2.IMREAD_COLOR)
    blurred = b64_bytes(cv2.imencode(".jpg", cv2.GaussianBlur(img, (0, 0), 6))[1].tobytes())
    pairs = [{"image": good, "label": "Tony_Blair"}, {"image": blurred, "label": "Tony_Blair"}]
    # off (the default, as PaddleX): both enrolled
    res = _ok(admin.post("/face-recognition-index-build", json={"imageLabelPairs": pairs}))
    assert res["ids"] == [0, 1]
    k = res["indexKey"]
    # standard: the blurred one is refused by position with the reason, and nothing changes
    msg = _err(admin.post("/face-recognition-index-add", json={"indexKey": k, "imageLabelPairs": pairs,
                                                               "quality": "standard"}), 400, "imageLabelPairs[1]",
               "quality", "nothing was")
    assert "imageLabelPairs[0]" not in msg
    _err(admin.post("/face-recognition-index-add", json={"indexKey": k, "imageLabelPairs": pairs,
                                                         "quality": "lenient"}), 422)
    _err(admin.post("/face-recognition-person-add", json={"indexKey": k, "label": "Tony_Blair",
                                                          "images": [blurred], "quality": "strict"}), 400, "images[0]")
    # the same photo again for the same person is a duplicate: reported, not added
    dup = _ok(admin.post("/face-recognition-index-add", json={"indexKey": k, "imageLabelPairs": pairs[:1],
                                                              "quality": "standard"}))
    assert dup["ids"] == [0] and dup["duplicates"] == [0] and dup["imageCount"] == 2
    again = [{"image": good, "label": "Tony Blair (2)"}]
    ok = _ok(admin.post("/face-recognition-index-add", json={"indexKey": k, "imageLabelPairs": again,
                                                             "quality": "standard"}))
    assert ok["ids"] == [2] and "duplicates" not in ok
    # the quality figures are stored with each sample (in the gallery's database)
    samples = server.app.state.service.store.samples(k)
    assert set(samples) == {0, 1, 2} and samples[2]["policy"] == "standard"
    assert samples[1]["quality"]["sharpness"] < samples[0]["quality"]["sharpness"]
    from facefeat.index.people import People

    assert set(People.load(server.app.state.service.store.path(k)).samples) == {0, 1, 2}


def test_settings_rec_threshold():
    from facefeat.errors import InputError
    from facefeat.serving.options import Settings, threshold_arg

    assert Settings().rec_threshold == "auto"
    assert threshold_arg("AUTO") == "auto" and threshold_arg("0.35") == 0.35
    Settings(rec_threshold=0.3).check()
    for bad in (math.nan, 1.5, "fast"):
        with pytest.raises(InputError, match="rec_threshold"):
            Settings(rec_threshold=bad).check()


def test_openapi_lists_error_statuses(reader):
    spec = reader.get("/openapi.json").json()
    for path, method in (("/face-verify", "post"), ("/face-recognition-persons", "get"),
                         ("/face-recognition-person-add", "post"), ("/face-recognition-person-remove", "post"),
                         ("/face-recognition-person-rename", "post"), ("/face-recognition-thumbnail", "get")):
        codes = set(spec["paths"][path][method]["responses"])
        assert {"400", "401", "403", "404", "413", "422", "500", "503"} <= codes, (path, codes)
    infer = spec["components"]["schemas"]["InferRequest"]["properties"]
    assert {"far", "fpir", "perPerson"} <= set(infer)


def test_cli_rec_threshold_flag():
    import argparse

    from facefeat.serving.options import configure_cli, settings_from_args

    p = argparse.ArgumentParser()
    configure_cli(p)
    assert settings_from_args(p.parse_args([])).rec_threshold == "auto"
    assert settings_from_args(p.parse_args(["--rec-threshold", "0.45"])).rec_threshold == 0.45
    with pytest.raises(SystemExit):
        p.parse_args(["--rec-threshold", "fast"])


def test_rename_is_seen_by_another_worker(tmp_path):
    """A rename changes no count; another process's store still notices it (the change counter)."""
    from facefeat.index import create_index
    from facefeat.serving.storage import IndexStore

    a, b = IndexStore(tmp_path), IndexStore(tmp_path)
    index = create_index(dim=4, metric_type="IP", index_type="Flat", model_name="m")
    from facefeat.index import SampleRecord

    index.add(np.eye(4, dtype=np.float32)[:2], ["x", "y"],
              records=[SampleRecord(crop=b"jpg", figures={"quality": {"sharpness": 1.0}}), None])
    key = a.create(a.new_key(), index)
    assert set(b.get(key).labels().values()) == {"x", "y"}
    with a.people(key) as people:
        people.rename("x", "z")
    assert set(b.get(key).labels().values()) == {"z", "y"}
    assert b.samples(key) == {0: {"quality": {"sharpness": 1.0}}}
    with b.mutate(key) as idx:  # a PaddleX-style change keeps the per-sample figures
        idx.remove([1])
    assert a.samples(key) == {0: {"quality": {"sharpness": 1.0}}} and a.crop(key, 0) == (b"jpg", "jpeg")
    assert a.crop(key, 1) is None  # removed: its crop is gone with it
    a.delete(key)
    assert not (tmp_path / "indexes" / key).exists()
