"""Issue #20, second round, against a live uvicorn server on 127.0.0.1: per-request budgets
(pixels from the headers before decoding, a deadline, a faces cap, fair pipelines), bounded and
escaped unknown fields, API-key roles and key files, slow clients (header and body timeouts, a
413 sent at once), HEAD, framing headers, /docs with no external URL, decode failures as 4xx,
and workers that leave with their master."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import threading

import cv2
import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serving_fixtures import ProcessServer, ThreadServer, b64_bytes, b64_file, lfw_images  # noqa: E402

from facefeat.errors import InputError  # noqa: E402
from facefeat.serving.app import create_app  # noqa: E402
from facefeat.serving.budget import FairSlots, RequestBudget  # noqa: E402
from facefeat.serving.errors import ServiceBusy  # noqa: E402
from facefeat.serving.http import UnknownFields  # noqa: E402
from facefeat.serving.options import Settings, configure_cli, settings_from_args  # noqa: E402
from facefeat.serving.workers import PROTOCOL  # noqa: E402

MAX_BODY = 2_000_000
REQUEST_PIXELS = 150_000  # one 250x250 LFW photo is 62,500
MAX_FACES = 2
UNKNOWN = 8


def _err(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text[:400])
    body = r.json()
    assert body["errorCode"] == status and body["result"] is None
    for w in words:
        assert w in body["errorMsg"], (w, body["errorMsg"])
    return body["errorMsg"]


@pytest.fixture(scope="module")
def faces(lfw_dir):
    return [lfw_images(lfw_dir, p, 1)[0] for p in ("Tony_Blair", "Colin_Powell", "George_W_Bush")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    storage = tmp_path_factory.mktemp("hardening-storage")
    app = create_app(Settings(storage_dir=str(storage), infer_concurrency=2, max_body_bytes=MAX_BODY,
                              max_request_pixels=REQUEST_PIXELS, max_faces=MAX_FACES,
                              max_unknown_fields=UNKNOWN, header_timeout_s=1.0, body_timeout_s=1.0))
    srv = ThreadServer(app)
    srv.server.config.http = PROTOCOL  # as `facefeat serve` runs it (header timeout)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _raw(server, data: bytes, timeout: float = 15.0) -> bytes:
    """Send raw bytes, then read what the server answers until it closes or ``timeout`` passes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and b"errorMsg" in out:
                    break
        except socket.timeout:
            pass
        return out


# -- item 3: per-request budget ---------------------------------------------------------------------


def test_request_pixels_are_budgeted_from_headers_before_decoding(server, client, faces, monkeypatch):
    svc = server.app.state.service
    decoded = []
    real = svc.decode
    monkeypatch.setattr(svc, "decode", lambda *a: decoded.append(a[1]) or real(*a))
    big = cv2.resize(cv2.imread(str(faces[0])), (300, 300))
    ok, buf = cv2.imencode(".png", big)
    r = client.post("/face-verify", json={"image1": b64_bytes(buf.tobytes()), "image2": b64_bytes(buf.tobytes())})
    _err(r, 413, "image2", "max_request_pixels", f"{REQUEST_PIXELS:,}")
    pairs = [{"image": b64_file(f), "label": f"p{i}"} for i, f in enumerate(faces)]
    _err(client.post("/face-recognition-index-build", json={"imageLabelPairs": pairs}), 413, "imageLabelPairs[2]",
         "max_request_pixels")
    assert decoded == []  # refused from the headers: nothing was decoded
    assert client.post("/face-verify", json={"image1": b64_file(faces[0]), "image2": b64_file(faces[1])}).status_code == 200


def test_faces_per_image_are_capped_and_the_cap_is_reported(client, faces):
    tiles = [cv2.resize(cv2.imread(str(f)), (250, 250)) for f in faces]
    collage = np.hstack(tiles)[:, :, :]  # three faces side by side, 750x250 = 187,500 px
    collage = cv2.resize(collage, (540, 180))  # within the request budget
    ok, buf = cv2.imencode(".jpg", collage)
    res = client.post("/face-recognition-infer", json={"image": b64_bytes(buf.tobytes()), "visualize": False})
    assert res.status_code == 200, res.text[:300]
    out = res.json()["result"]
    assert len(out["faces"]) == MAX_FACES and out["facesCapped"] is True
    one = client.post("/face-recognition-infer", json={"image": b64_file(faces[0]), "visualize": False}).json()
    assert one["result"]["facesCapped"] is False


def test_a_request_past_its_deadline_is_504(server, client, faces, monkeypatch):
    svc = server.app.state.service
    monkeypatch.setattr(svc.settings, "request_timeout_s", 1e-6)
    _err(client.post("/face-verify", json={"image1": b64_file(faces[0]), "image2": b64_file(faces[1])}), 504,
         "deadline", "request_timeout_s")


def test_fair_slots_give_a_freed_pipeline_to_the_client_holding_fewest():
    slots = FairSlots(2, per_client=2)
    slots.acquire("heavy", 1)
    slots.acquire("heavy", 1)
    order: list[str] = []
    started = threading.Barrier(3)

    def want(client: str) -> None:
        started.wait(10)
        slots.acquire(client, 30)
        order.append(client)
        slots.release(client)

    heavy3 = threading.Thread(target=want, args=("heavy",))
    heavy3.start()
    normal = threading.Thread(target=want, args=("normal",))
    normal.start()
    started.wait(10)
    for _ in range(200):  # both are queued (bounded wait, no timing asserted)
        with slots._cond:
            if len(slots._waiting) == 2:
                break
        threading.Event().wait(0.01)
    slots.release("heavy")  # heavy still holds one; normal holds none: normal goes first
    normal.join(30)
    heavy3.join(30)
    assert order[0] == "normal"
    slots.release("heavy")


def test_one_client_cannot_hold_every_pipeline():
    slots = FairSlots(2, per_client=1)
    slots.acquire("heavy", 1)
    with pytest.raises(ServiceBusy, match="request_timeout_s"):
        slots.acquire("heavy", 0.05)
    slots.acquire("normal", 0.05)  # the other pipeline is still there for someone else


def test_budget_counts_all_images_of_a_request():
    b = RequestBudget(100, 60)
    b.charge(5, 10, "a")
    b.charge(5, 10, "b")
    with pytest.raises(InputError, match="c: .*max_request_pixels"):
        b.charge(1, 1, "c")


# -- item 2: unknown fields -------------------------------------------------------------------------


def test_a_body_with_many_unknown_fields_is_422(client, faces):
    body = {"image": b64_file(faces[0]), **{f"junk{i}": 1 for i in range(UNKNOWN + 1)}}
    _err(client.post("/face-recognition-infer", json=body), 422, "unknown fields", "max_unknown_fields")
    ok = {"image": b64_file(faces[0]), "visualize": False, **{f"junk{i}": 1 for i in range(UNKNOWN)}}
    assert client.post("/face-recognition-infer", json=ok).status_code == 200


def test_remembered_unknown_names_are_bounded_and_logged_escaped(caplog, monkeypatch):
    monkeypatch.setattr(UnknownFields, "REMEMBERED", 20)
    u = UnknownFields(limit=64)
    with caplog.at_level(logging.WARNING, logger="facefeat.serving"):
        for r in range(50):
            u.note("Req", [f"name{r}-{i}" for i in range(10)])
        u.note("Req", ["evil\nINFO forged line \x1b[31m"])
    assert len(u) == 20
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "forged" not in text or "\\nINFO forged" in text
    assert all("\n" not in rec.getMessage() and "\x1b" not in rec.getMessage() for rec in caplog.records)


# -- item 8: API key roles and key files ---------------------------------------------------------


@pytest.mark.parametrize("key", ["Read:abcdefgh1234", "ro:abcdefgh1234", "readonly:abcdefgh1234", "ADMIN:abcdefgh12"])
def test_unknown_role_prefixes_are_refused(key, tmp_path):
    with pytest.raises(InputError, match="unknown role"):
        Settings(storage_dir=str(tmp_path), api_keys=[key]).resolved()


def test_keys_with_a_colon_and_known_roles_still_work(tmp_path):
    s = Settings(storage_dir=str(tmp_path), api_keys=["admin:a:b:cdefghij", "read:abcdefgh1234", "0123:456789ab"])
    assert s.resolved().keys() == [("a:b:cdefghij", "admin"), ("abcdefgh1234", "read"), ("0123:456789ab", "admin")]


def test_api_key_file_by_flag_and_environment(tmp_path, monkeypatch):
    f = tmp_path / "keys"
    f.write_text("# the service's keys\nadmin:admin-key-012345\n\nread:read-key-0123456\n")
    f.chmod(0o600)
    p = configure_parser()
    s = settings_from_args(p.parse_args(["--api-key-file", str(f), "--storage", str(tmp_path)])).resolved()
    assert sorted(s.keys()) == [("admin-key-012345", "admin"), ("read-key-0123456", "read")]
    monkeypatch.setenv("FACEFEAT_API_KEY_FILE", str(f))
    assert len(Settings(storage_dir=str(tmp_path)).resolved().keys()) == 2
    f.write_text("# nothing\n")
    with pytest.raises(InputError, match="holds no keys"):
        Settings(storage_dir=str(tmp_path)).resolved()
    monkeypatch.setenv("FACEFEAT_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(InputError, match="missing.*cannot read"):
        Settings(storage_dir=str(tmp_path)).resolved()


def configure_parser():
    import argparse

    p = argparse.ArgumentParser()
    configure_cli(p)
    return p


# -- item 12: slow clients, HEAD, framing, docs -------------------------------------------------------


def test_content_length_over_the_limit_is_refused_at_once(server):
    head = (f"POST /face-recognition-infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY * 20}\r\n\r\n").encode()
    out = _raw(server, head + b"{", timeout=10)  # no more body is ever sent
    assert out.startswith(b"HTTP/1.1 413"), out[:200]
    assert b"max_body_bytes" in out


def test_a_body_that_does_not_arrive_is_408(server):
    head = (b"POST /face-recognition-infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"image\": ")
    out = _raw(server, head, timeout=20)
    assert out.startswith(b"HTTP/1.1 408"), out[:200]
    assert b"body_timeout_s" in out


def test_a_connection_whose_headers_do_not_arrive_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line never comes
        assert s.recv(1024) == b""  # closed by the server (header_timeout_s), not by our timeout


def test_head_on_get_routes_and_framing_headers(client):
    for path in ("/health", "/", "/openapi.json"):
        r = client.head(path)
        assert r.status_code == 200, (path, r.status_code)
        assert r.content == b""
    page = client.get("/")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_docs_page_loads_with_no_external_url(client):
    r = client.get("/docs")
    assert r.status_code == 200
    assert not re.findall(r"https?://", r.text), re.findall(r"https?://\S+", r.text)
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", r.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for a in assets:
        assert client.get(a).status_code == 200, a


# -- items 1 and 5 over HTTP ---------------------------------------------------------------------


def test_decode_failures_and_scan_bombs_are_4xx_not_500(client):
    from PIL import Image

    _err(client.post("/face-feature-infer", json={"image": b64_bytes(b"PF\n10 10\n-1\n")}), 400, "cannot decode")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    last, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    bomb = data[:end] + data[last:end] * 100 + data[end:]
    _err(client.post("/face-feature-infer", json={"image": b64_bytes(bomb)}), 413, "scans")


# -- item 11: workers leave with their master ---------------------------------------------------------


@pytest.mark.slow
def test_workers_exit_when_the_master_is_killed(tmp_path):
    srv = ProcessServer(tmp_path / "storage", "--workers", "2", "--infer-concurrency", "1").start()
    try:
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(10)
        gone = False
        for _ in range(300):  # bounded: the workers notice at once (PDEATHSIG) or within a watchdog tick
            try:
                httpx.get(srv.url + "/health", timeout=1)
            except httpx.HTTPError:
                gone = True
                break
            threading.Event().wait(0.1)
        assert gone, "a worker still answers after its master was killed"
    finally:
        try:
            os.killpg(srv.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
