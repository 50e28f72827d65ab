"""Events from ``facefeat serve`` (a real uvicorn on 127.0.0.1, a real webhook receiver and a real
mosquitto): recognitions of the infer endpoint with the caller's source, presence, gallery
changes (person_added / person_removed) with Home Assistant discovery following them, the flags,
and a clear error at start for an unreachable receiver."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")

from events_fixtures import MOSQUITTO, Mosquitto, Receiver, Subscriber, free_port, wait_until  # noqa: E402
from serving_fixtures import ThreadServer, b64_file, lfw_images  # noqa: E402
from facefeat.errors import ConfigError  # noqa: E402
from facefeat.events.types import slug  # noqa: E402
from facefeat.events.webhook import verify_signature  # noqa: E402
from facefeat.serving.app import create_app  # noqa: E402

SECRET = "serve-secret-123"


def _ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text[:500]
    return r.json()["result"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not Path(MOSQUITTO).exists():
        reason = f"needs the mosquitto broker ({MOSQUITTO})"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + " - but CI=true")
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("serve-events")
    broker = Mosquitto(tmp / "mosquitto").start()
    receiver = Receiver()
    conf = tmp / "pipeline.yaml"  # the events: block of the pipeline YAML, flags on top
    conf.write_text("pipeline_name: face_recognition\nevents:\n  away_timeout_s: 1.0\n  backoff_s: 0.1\n")
    app = create_app(tmp / "storage", infer_concurrency=1, pipeline=str(conf), mqtt=broker.url(),
                     webhooks=[receiver.url], webhook_secret=SECRET)
    assert app.state.service.events.presence.away_s == 1.0
    srv = ThreadServer(app).start()
    yield srv, receiver, broker, tmp
    srv.stop()
    receiver.stop()
    broker.stop()


def _bodies(receiver: Receiver) -> list[dict]:
    out = {}
    for headers, body, status in list(receiver.received):
        assert verify_signature(body, headers["x-facefeat-signature"], SECRET.encode())
        if status == 200:
            out[json.loads(body)["id"]] = json.loads(body)
    return list(out.values())


def test_service_events(env, lfw_dir):
    srv, receiver, broker, tmp = env
    sub = Subscriber(broker.port, topics=["homeassistant/#", "facefeat/#"])
    c = httpx.Client(base_url=srv.url, timeout=60.0)
    people = ("George_W_Bush", "Colin_Powell")
    pairs = [{"image": b64_file(lfw_images(lfw_dir, p, 1)[0]), "label": p} for p in people]
    key = _ok(c.post("/face-recognition-index-build", json={"imageLabelPairs": pairs}))["indexKey"]
    assert wait_until(lambda: sum(e["type"] == "person_added" for e in _bodies(receiver)) == 2, 15)
    added = [e for e in _bodies(receiver) if e["type"] == "person_added"]
    assert sorted(e["person"] for e in added) == sorted(people) and added[0]["gallery"] == key

    img = b64_file(lfw_images(lfw_dir, "Colin_Powell", 3)[2])
    res = _ok(c.post("/face-recognition-infer", json={"image": img, "indexKey": key},
                     headers={"X-Facefeat-Source": "front door"}))
    assert res["faces"][0]["recResults"][0]["label"] == "Colin_Powell"
    assert wait_until(lambda: any(e["type"] == "person_left" for e in _bodies(receiver)), 15)
    evs = _bodies(receiver)
    rec = next(e for e in evs if e["type"] == "face_recognized")
    assert rec["person"] == "Colin_Powell" and rec["source"] == "front door" and rec["gallery"] == key
    assert rec["threshold"] == res["threshold"] and rec["box"] == res["faces"][0]["bbox"]
    arrived = next(e for e in evs if e["type"] == "person_arrived")
    assert arrived["person"] == "Colin_Powell" and arrived["present_in"] == ["front door"]
    left = next(e for e in evs if e["type"] == "person_left")  # the presence ticker, after the away timeout
    assert left["present_in"] == [] and left["reason"] == "away"

    _ok(c.post("/face-recognition-person-remove", json={"indexKey": key, "label": "George_W_Bush"}))
    assert wait_until(lambda: any(e["type"] == "person_removed" for e in _bodies(receiver)), 15)
    # MQTT followed: discovery for both people appeared, then George's was removed (empty retained)
    conf = "homeassistant/binary_sensor/facefeat_george_w_bush/presence/config"
    assert wait_until(lambda: len(sub.topic(conf)) >= 2, 15)
    assert json.loads(sub.topic(conf)[0])["device"]["name"] == "George_W_Bush" and sub.topic(conf)[-1] == b""
    assert sub.topic("facefeat/person/colin_powell/presence") == [b"ON", b"OFF"]
    src = sub.topic(f"facefeat/source/{slug('front door')}/people")
    assert json.loads(src[0])["people"] == ["Colin_Powell"] and json.loads(src[-1])["state"] == "nobody"
    sub.close()
    c.close()


def test_serve_flags_and_start_error(tmp_path):
    from facefeat.cli import build_parser

    a = build_parser().parse_args(["serve", "--mqtt", "mqtt://h/x", "--webhook", "http://a/1", "--webhook",
                                   "http://b/2", "--webhook-secret-file", "/s", "--events-outbox", "/o.sqlite"])
    assert (a.mqtt, a.webhooks, a.webhook_secret_file, a.events_outbox) == \
        ("mqtt://h/x", ["http://a/1", "http://b/2"], "/s", "/o.sqlite")
    port = free_port()
    with pytest.raises(ConfigError, match=rf"webhook http://127.0.0.1:{port}/h: cannot connect"):
        create_app(tmp_path, webhooks=[f"http://127.0.0.1:{port}/h"], webhook_secret=SECRET)


def test_multi_worker_serve_checks_targets_first(tmp_path, monkeypatch):
    import facefeat.serving.app as app_mod
    from facefeat.serving.options import Settings

    started = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: started.append(k))
    port = free_port()
    with pytest.raises(ConfigError, match=rf"mqtt mqtt://127.0.0.1:{port}: cannot connect"):
        app_mod.serve(Settings(storage_dir=str(tmp_path), workers=2, mqtt=f"mqtt://127.0.0.1:{port}"))
    assert not started  # no worker was started
