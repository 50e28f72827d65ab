"""Service hardening against a live uvicorn server on 127.0.0.1: API keys and roles, trusted hosts,
strict request types, safe image URLs (a slow server, oversized bodies, redirects into loopback and
the metadata address, the fetch pool), no absolute server paths in errors, the OpenAPI error bodies,
and the settings/CLI (one Settings, flags generated from it)."""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serving_fixtures import ThreadServer, b64_file, lfw_images  # noqa: E402

from facefeat.serving.app import create_app  # noqa: E402
from facefeat.serving.options import Settings, configure_cli, settings_from_args  # noqa: E402

ADMIN = "admin-key-0123456789"
READ = "read-key-0123456789"
PUBLIC_HOST = "127.0.0.2"  # stands for a public image host (allowed by --url-allow-network)
URL_TIMEOUT = 1.5
URL_MAX_BYTES = 200_000


def _err(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text[:400])
    body = r.json()
    assert set(body) == {"logId", "errorCode", "errorMsg", "result"} and body["errorCode"] == status
    assert body["result"] is None
    for w in words:
        assert w in body["errorMsg"], (w, body["errorMsg"])
    return body["errorMsg"]


def _ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text[:400]
    return r.json()["result"]


class _Images(http.server.BaseHTTPRequestHandler):
    """/face.jpg, /slow (drips bytes), /big (over the cap), /to-loopback, /to-metadata (redirects)."""

    face: bytes = b""
    loopback_url = ""
    started = threading.Event()

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/face.jpg":
            self._send(200, self.face, "image/jpeg")
        elif self.path == "/slow":
            type(self).started.set()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(self.face)))
            self.end_headers()
            try:
                for i in range(min(len(self.face), 600)):  # bounded: at most 60 s
                    self.wfile.write(self.face[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass  # the client gave up (as it should)
        elif self.path == "/big":
            self.send_response(200)  # no Content-Length: the cap must apply to the bytes read
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b"\xff" * 16384)
            except OSError:
                pass
        elif self.path == "/to-loopback":
            self._redirect(self.loopback_url)
        elif self.path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        else:
            self._send(404, b"no", "text/plain")

    def _send(self, status, data, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, url):
        self.send_response(302)
        self.send_header("Location", url)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Counter(http.server.BaseHTTPRequestHandler):
    hits = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def _start(httpd):
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def face(lfw_dir) -> Path:
    return lfw_images(lfw_dir, "Tony_Blair", 1)[0]


@pytest.fixture(scope="module")
def image_hosts(face):
    inner = _start(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter))
    _Images.face = face.read_bytes()
    _Images.loopback_url = f"http://127.0.0.1:{inner.server_address[1]}/secret"
    try:
        outer = _start(http.server.ThreadingHTTPServer((PUBLIC_HOST, 0), _Images))
    except OSError as exc:  # pragma: no cover - every Linux loopback is 127/8
        inner.shutdown()
        pytest.fail(f"cannot bind {PUBLIC_HOST}: {exc}")
    yield f"http://{PUBLIC_HOST}:{outer.server_address[1]}", inner
    outer.shutdown()
    inner.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    storage = tmp_path_factory.mktemp("secure-storage")
    app = create_app(Settings(storage_dir=str(storage), infer_concurrency=1, api_keys=[ADMIN, f"read:{READ}"],
                              allow_url_images=True, url_timeout_s=URL_TIMEOUT, url_max_bytes=URL_MAX_BYTES,
                              url_fetch_concurrency=1, url_allowed_networks=[f"{PUBLIC_HOST}/32"]))
    srv = ThreadServer(app).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(server):
    with httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": ADMIN}) as c:
        yield c


@pytest.fixture(scope="module")
def reader(server):
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {READ}"}) as c:
        yield c


@pytest.fixture(scope="module")
def index_key(admin, face) -> str:
    r = admin.post("/face-recognition-index-build", json={"imageLabelPairs": [{"image": b64_file(face),
                                                                                 "label": "Tony"}]})
    return _ok(r)["indexKey"]


# -- who may do what --------------------------------------------------------------------------------


def test_api_keys_and_roles(server, admin, reader, index_key, face):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger().addHandler(handler)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as anon:
            assert anon.get("/health").status_code == 200  # health and the page stay public
            assert anon.get("/").status_code == 200
            for method, path, body in (("GET", "/face-recognition-index-list", None),
                                       ("GET", f"/face-recognition-index-info?indexKey={index_key}", None),
                                       ("POST", "/face-recognition-infer", {"image": "AAAA"}),
                                       ("POST", "/face-recognition-index-delete", {"indexKey": index_key})):
                r = anon.request(method, path, json=body)
                _err(r, 401, "API key is required")
                assert r.headers["www-authenticate"].startswith("Bearer")
                _err(anon.request(method, path, json=body, headers={"X-API-Key": ADMIN[:-1] + "X"}), 401,
                     "not valid")
        listed = _ok(reader.get("/face-recognition-index-list"))["indexes"]
        assert index_key in [i["indexKey"] for i in listed]
        assert _ok(reader.get("/face-recognition-index-info", params={"indexKey": index_key}))["imageCount"] == 1
        assert _ok(reader.post("/face-recognition-infer", json={"image": b64_file(face), "indexKey": index_key}))
        pairs = [{"image": b64_file(face), "label": "x"}]
        _err(reader.post("/face-recognition-index-add", json={"imageLabelPairs": pairs, "indexKey": index_key}),
             403, "read-only")
        _err(reader.post("/face-recognition-index-remove", json={"ids": [0], "indexKey": index_key}), 403)
        _err(reader.post("/face-recognition-index-delete", json={"indexKey": index_key}), 403)
        # index deletion is an admin operation; afterwards the key is unknown
        key2 = _ok(admin.post("/face-recognition-index-build", json={"imageLabelPairs": pairs}))["indexKey"]
        assert _ok(admin.post("/face-recognition-index-delete", json={"indexKey": key2})) == {"indexKey": key2,
                                                                                             "deleted": True}
        _err(admin.get("/face-recognition-index-info", params={"indexKey": key2}), 404)
        _err(admin.post("/face-recognition-index-delete", json={"indexKey": key2}), 404)
        assert key2 not in [i["indexKey"] for i in _ok(admin.get("/face-recognition-index-list"))["indexes"]]
    finally:
        logging.getLogger().removeHandler(handler)
    logged = "\n".join(str(r.getMessage()) for r in records)
    assert ADMIN not in logged and READ not in logged
    assert ADMIN not in repr(server.app.state.settings) and READ not in repr(server.app.state.settings)


def test_keys_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFEAT_API_KEYS", f"{ADMIN}, read:{READ}")
    s = Settings(storage_dir=str(tmp_path)).resolved()
    assert s.keys() == [(ADMIN, "admin"), (READ, "read")]
    from facefeat.errors import InputError

    with pytest.raises(InputError, match="at least 8"):
        Settings(storage_dir=str(tmp_path), api_keys=["short"]).resolved()


def test_trusted_hosts(server, admin):
    _err(admin.get("/health", headers={"Host": "rebind.attacker.example"}), 400, "Host header")
    _err(admin.get("/face-recognition-index-list", headers={"Host": "evil.example:8080"}), 400, "Host header")
    assert admin.get("/health", headers={"Host": f"localhost:{server.port}"}).status_code == 200
    assert admin.get("/health", headers={"Host": f"127.0.0.1:{server.port}"}).status_code == 200
    assert Settings(host="0.0.0.0").resolved().allowed_hosts == ["*"]
    assert set(Settings(host="10.1.2.3").resolved().allowed_hosts) == {"10.1.2.3", "localhost", "127.0.0.1", "::1"}


def test_warning_when_binding_beyond_loopback_without_key(tmp_path, monkeypatch, capsys):
    import uvicorn

    from facefeat.serving import app as app_mod

    monkeypatch.delenv("FACEFEAT_API_KEYS", raising=False)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setattr(app_mod, "create_app", lambda s: None)
    app_mod.serve(Settings(storage_dir=str(tmp_path), host="0.0.0.0"))
    assert "without an API key" in capsys.readouterr().err
    app_mod.serve(Settings(storage_dir=str(tmp_path), host="127.0.0.1"))
    app_mod.serve(Settings(storage_dir=str(tmp_path), host="0.0.0.0", api_keys=[ADMIN]))
    assert "without an API key" not in capsys.readouterr().err


# -- strict request types -------------------------------------------------------------------------


def test_strict_request_types(admin, index_key, face):
    hdr = {"content-type": "application/json"}
    for ids in ([True], ["0"], [0.5], [-1], [2**63]):
        msg = _err(admin.post("/face-recognition-index-remove", json={"ids": ids, "indexKey": index_key}), 422)
        problems = json.loads(msg)  # errorMsg is the JSON list of problems, as PaddleX sends it
        assert isinstance(problems, list) and problems[0]["loc"][:2] == ["body", "ids"]
    info = _ok(admin.get("/face-recognition-index-info", params={"indexKey": index_key}))
    assert [e["id"] for e in info["entries"]] == [0]  # nothing was removed
    img = b64_file(face)
    for field in ("recThreshold", "detThreshold", "hammingRadius"):
        raw = '{"image": "%s", "%s": NaN}' % (img, field)
        _err(admin.post("/face-recognition-infer", content=raw, headers=hdr), 422, field)
    _err(admin.post("/face-recognition-infer", json={"image": img, "visualize": "yes"}), 422, "visualize")
    _err(admin.post("/face-recognition-infer", json={"image": img, "topk": "3"}), 422, "topk")
    pairs = [{"image": img, "label": "x"}]
    for bad in ("HNSW100000", "HNSW2", "IVF999999", "Flat; rm -rf", "LSH"):
        _err(admin.post("/face-recognition-index-build", json={"imageLabelPairs": pairs, "indexType": bad}), 422,
             "indexType")
    _err(admin.post("/face-recognition-index-build", json={"imageLabelPairs": pairs, "metricType": "JACCARD"}), 422,
         "metricType")
    # documented-unused (hammingRadius) and unknown fields are accepted and ignored, logged once
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("facefeat.serving").addHandler(handler)
    try:
        for _ in range(2):
            r = admin.post("/face-recognition-infer", json={"image": img, "indexKey": index_key, "hammingRadius": 3,
                                                            "someNewField": {"a": 1}})
            res = _ok(r)
    finally:
        logging.getLogger("facefeat.serving").removeHandler(handler)
    assert sum("someNewField" in rec.getMessage() for rec in records) == 1
    assert res["faces"][0]["recResults"][0]["label"] == "Tony" and res["image"]  # visualize defaults to true


# -- image URLs -------------------------------------------------------------------------------------


def test_url_images_off_by_default(tmp_path):
    assert Settings().allow_url_images is False
    s = Settings(storage_dir=str(tmp_path)).resolved()
    assert s.url_max_bytes == s.max_body_bytes
    from facefeat.errors import InputError

    with pytest.raises(InputError, match="url_max_bytes"):
        Settings(storage_dir=str(tmp_path), max_body_bytes=1000, url_max_bytes=2000).resolved()


def test_url_images_are_fetched_safely(admin, index_key, image_hosts):
    base, inner = image_hosts
    res = _ok(admin.post("/face-recognition-infer", json={"image": base + "/face.jpg", "indexKey": index_key}))
    assert res["faces"][0]["recResults"][0]["label"] == "Tony"
    # loopback, private, link-local and metadata addresses are refused - directly and on a redirect hop
    for url in (inner.server_address and f"http://127.0.0.1:{inner.server_address[1]}/secret",
                "http://localhost:9/x", "http://10.0.0.1/x", "http://169.254.169.254/latest/meta-data/",
                "http://[::1]:9/x", "http://[::ffff:127.0.0.1]:9/x", "http://0.0.0.0:9/x",
                base + "/to-loopback", base + "/to-metadata"):
        msg = _err(admin.post("/face-recognition-infer", json={"image": url}), 400, "non-public address")
        assert "127.0.0.1" not in msg and "169.254" not in msg and str(inner.server_address[1]) not in msg
    assert _Counter.hits == 0  # the internal server was never reached
    # errors name the problem without internal details
    _err(admin.post("/face-recognition-infer", json={"image": base + "/missing"}), 400, "HTTP 404")
    _err(admin.post("/face-recognition-infer", json={"image": "ftp://example.com/x.jpg"}), 400, "base64")
    # a body over the byte cap is a 413
    _err(admin.post("/face-recognition-infer", json={"image": base + "/big"}), 413, f"{URL_MAX_BYTES:,}")


def test_slow_url_server_hits_the_total_deadline_without_starving_inference(server, admin, image_hosts, face):
    base, _ = image_hosts
    _Images.started.clear()
    out: dict = {}

    def slow():
        out["r"] = admin.post("/face-recognition-infer", json={"image": base + "/slow"})

    t = threading.Thread(target=slow)
    t.start()
    assert _Images.started.wait(30)
    # the only fetch slot is taken: another URL is refused at once (503), base64 inference still runs
    _err(admin.post("/face-recognition-infer", json={"image": base + "/face.jpg"}), 503, "downloads in progress")
    assert _ok(admin.post("/face-recognition-infer", json={"image": b64_file(face)}))["faces"]
    t.join(60)
    assert not t.is_alive()
    # the server drips a byte every 0.1 s for 60 s: only the total deadline ends it, with this message
    # (per-read timeouts would not fire, and the request would outlive the join above)
    _err(out["r"], 400, "longer than")


# -- errors, OpenAPI, health ------------------------------------------------------------------------


def test_errors_never_leak_server_paths(server, admin, index_key):
    import sqlite3

    storage = Path(server.app.state.settings.storage_dir)
    db = sqlite3.connect(storage / "indexes" / index_key / "gallery.db", isolation_level=None)
    seq, nid = db.execute("SELECT seq, next_id FROM galleries").fetchone()
    try:  # another writer's change whose feature is damaged: the server replays it and finds it corrupt
        db.execute("INSERT INTO samples (gallery, id, label, source, feature, created) VALUES ('default', ?, 'x', "
                   "NULL, ?, 0)", (nid, b"\0" * 7))
        db.execute("INSERT INTO changes (gallery, seq, kind, ids, label) VALUES ('default', ?, 'add', ?, NULL)",
                   (seq + 1, str(nid)))
        db.execute("UPDATE galleries SET seq = ?, next_id = ?", (seq + 1, nid + 1))
        r = admin.get("/face-recognition-index-info", params={"indexKey": index_key})
        assert r.status_code in (409, 500), r.text
        msg = r.json()["errorMsg"]
        assert "corrupt" in msg and str(storage) not in msg and "/tmp" not in msg and "/root" not in msg, msg
    finally:
        db.execute("DELETE FROM samples WHERE id = ?", (nid,))
        db.execute("DELETE FROM changes WHERE seq = ?", (seq + 1,))
        db.execute("UPDATE galleries SET seq = ?, next_id = ?", (seq, nid))
        db.close()
    assert admin.get("/face-recognition-index-info", params={"indexKey": index_key}).status_code == 200


def test_openapi_lists_every_error_status(admin):
    spec = admin.get("/openapi.json").json()
    ref = "#/components/schemas/ErrorEnvelope"
    assert spec["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "needed when the server has API keys (--api-key)"}
    assert spec["paths"]["/face-recognition-index-list"]["get"]["security"] == [{"APIKeyHeader": []}]
    assert set(spec["components"]["schemas"]["ErrorEnvelope"]["properties"]) == {"logId", "errorCode", "errorMsg",
                                                                                  "result"}
    for path, ops in spec["paths"].items():
        for op in ops.values():
            codes = set(op["responses"])
            assert {"200", "400", "401", "403", "404", "413", "422", "500", "503"} <= codes, (path, codes)
            assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"] == ref


def test_health_reports_runtime(admin):
    res = _ok(admin.get("/health"))
    assert res["status"] == "ready" and isinstance(res["runtime"], dict) and res["runtime"].get("backend")


# -- settings and CLI -------------------------------------------------------------------------------


def test_cli_flags_come_from_settings(tmp_path, monkeypatch):
    import dataclasses

    p = argparse.ArgumentParser()
    configure_cli(p)
    flags = {a.dest for a in p._actions}
    for f in dataclasses.fields(Settings):
        assert (f.name in flags) == f.metadata.get("cli", True), f.name
    monkeypatch.setenv("FACEFEAT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACEFEAT_API_KEYS", raising=False)
    s = settings_from_args(p.parse_args([])).resolved()  # `facefeat serve` with no arguments
    assert s.storage_dir == str((tmp_path / "home" / "serve").resolve()) and not s.allow_url_images
    a = p.parse_args(["--storage", str(tmp_path / "st"), "--allow-url-images", "--api-key", ADMIN,
                      "--feature-model", "MobileFaceNet", "--threads", "1", "--det-threshold", "0.6"])
    s = settings_from_args(a).resolved()
    assert s.allow_url_images and s.keys() == [(ADMIN, "admin")] and s.feature_models == ["MobileFaceNet"]
    assert s.num_threads == 1 and s.det_threshold == 0.6
    assert Settings.from_json(s.to_json()) == s
    from facefeat.errors import InputError

    with pytest.raises(InputError, match="pipeline config"):
        settings_from_args(p.parse_args(["--pipeline", str(tmp_path / "none.yaml")])).resolved()
    with pytest.raises(InputError, match="det_threshold"):
        Settings(det_threshold=float("nan")).resolved()


def test_gallery_rejections_by_position():
    """Rejections come from the pipeline's structured results (input positions), not from messages."""
    from collections import namedtuple

    import numpy as np

    from facefeat.serving.service import Service

    Rej = namedtuple("Rej", "index name label reason")
    Out = namedtuple("Out", "features labels names positions rejected")

    class StructuredPipe:
        def gallery_features(self, imgs, labels):
            return Out(np.zeros((1, 4)), labels[1:2], ["gallery[1]"], [1],
                       [Rej(0, "misleading gallery[1] name", labels[0], "no face detected"),
                        Rej(2, "x", labels[2], "2 faces of similar size")])

    feats, problems = Service._embed_gallery(StructuredPipe(), [0, 1, 2], ["a", "b", "c"])
    assert problems == ["imageLabelPairs[0] ('a'): no face detected",
                        "imageLabelPairs[2] ('c'): 2 faces of similar size"]
