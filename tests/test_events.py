"""Events without a network: the config block (flags, YAML, errors), the outbox (order, acks,
leases, the bound with its drop counter, a killed writer), presence and per-track debouncing,
signatures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from facefeat.errors import ConfigError
from facefeat.events import Event, EventsConfig, Outbox
from facefeat.events.feeds import VideoFeed, gallery_changes
from facefeat.events.presence import Presence
from facefeat.events.types import redact, slug
from facefeat.events.webhook import sign, verify_signature


# -- config ---------------------------------------------------------------------------------------------
def test_config_from_mapping_and_flags():
    cfg = EventsConfig.from_mapping({"mqtt": "mqtt://u:p@broker:1884/home/faces", "webhooks": "http://h/x",
                                     "away_timeout_s": 5, "snapshot": "face"})
    assert cfg.topic_prefix == "home/faces" and cfg.webhooks == ["http://h/x"] and cfg.enabled
    assert cfg.mqtt_password() == "p"
    cfg2 = cfg.merged(mqtt=None, webhooks=[], away_timeout_s=9.0)  # None / [] keep the setting
    assert cfg2.mqtt == cfg.mqtt and cfg2.webhooks == ["http://h/x"] and cfg2.away_timeout_s == 9.0
    assert EventsConfig().topic_prefix == "facefeat" and not EventsConfig().enabled
    assert "p@" not in repr(EventsConfig(webhook_secret="s3cret")) and "s3cret" not in repr(EventsConfig(webhook_secret="s3cret"))


@pytest.mark.parametrize("data,needle", [
    ({"mqtt": "http://broker"}, "scheme must be mqtt:// or mqtts://"),
    ({"mqtt": "mqtt://:1883"}, "has no host"),
    ({"mqtt": "mqtt://broker:99999"}, "mqtt URL 'mqtt://broker:99999' is not valid"),
    ({"webhooks": ["ftp://x/y"]}, "scheme must be http:// or https://"),
    ({"webhooks": ["http://u:hunter2@/y"]}, "has no host"),
    ({"snapshot": "yes"}, "snapshot: expected one of off, face, frame"),
    ({"max_events": 0}, "max_events: expected a positive integer"),
    ({"away_timeout_s": "soon"}, "away_timeout_s: expected a number"),
    ({"mqqt": "mqtt://x"}, "unknown key 'mqqt' (did you mean 'mqtt'?)"),
    ({"mqtt": "mqtt://x/cams/+"}, "events.mqtt: the MQTT topic prefix 'cams/+' must be"),
    ({"discovery_prefix": ""}, "events.discovery_prefix: the MQTT topic prefix '' must be"),
    ({"webhook_secret_file": "/nope/secret"}, "'/nope/secret': no such file"),
])
def test_config_errors_name_the_key(data, needle):
    with pytest.raises(ConfigError) as e:
        EventsConfig.from_mapping(data)
    assert needle in str(e.value)
    assert "hunter2" not in str(e.value)


def test_secret_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEFEAT_WEBHOOK_SECRET", raising=False)
    assert EventsConfig().secret() is None
    monkeypatch.setenv("FACEFEAT_WEBHOOK_SECRET", "from-env")
    assert EventsConfig().secret() == b"from-env"
    f = tmp_path / "secret"
    f.write_text("from-file\n")
    assert EventsConfig(webhook_secret_file=str(f)).secret() == b"from-file"
    assert EventsConfig(webhook_secret="flag", webhook_secret_file=str(f)).secret() == b"flag"


def test_pipeline_yaml_events_block(tmp_path):
    from facefeat.config import load_pipeline_config
    from facefeat.events.cli import load_events_block

    y = tmp_path / "p.yaml"
    y.write_text(textwrap.dedent("""\
        pipeline_name: face_recognition
        events:
          mqtt: mqtt://127.0.0.1:1883/cams
          away_timeout_s: 12
        """))
    assert load_pipeline_config(str(y))["events"]["away_timeout_s"] == 12
    assert load_events_block(y).topic_prefix == "cams"
    y.write_text("pipeline_name: face_recognition\nevents:\n  mqtt: tcp://x\n")
    with pytest.raises(ConfigError, match=r"p.yaml: events.mqtt|scheme must be mqtt"):
        load_pipeline_config(str(y))
    y.write_text("events:\n  away_timout_s: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'away_timeout_s'"):
        load_events_block(y)


def test_helpers():
    assert slug("George_W_Bush") == "george_w_bush"
    assert slug("Zoë") != slug("Zo") and slug("a b") != slug("a_b")
    assert redact("mqtt://u:pw@h:1/x") == "mqtt://u:***@h:1/x" and redact("http://h/x") == "http://h/x"
    body = b'{"id":"1"}'
    assert verify_signature(body, sign(body, b"k"), b"k") and not verify_signature(body + b" ", sign(body, b"k"), b"k")
    with pytest.raises(ValueError):
        Event("face_seen")
    d = Event("face_recognized", "door", {"person": "A", "box": None}).to_dict()
    assert d["type"] == "face_recognized" and d["time"].endswith("Z") and "box" not in d and len(d["id"]) == 32


# -- outbox ---------------------------------------------------------------------------------------------
def _evs(n, person="A"):
    return [Event("face_recognized", "cam", {"person": person, "n": i}) for i in range(n)]


def test_outbox_order_ack_and_counters(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    box.append(_evs(5), ["t1", "t2"])
    got = box.claim("t1", 3)
    assert [json.loads(b)["n"] for _, b in got] == [0, 1, 2]
    assert box.claim("t1", 10)[0][0] == got[0][0]  # the same process may re-claim its own lease
    box.ack("t1", [s for s, _ in got])
    box.release("t1", [s for s, _ in box.claim("t1", 10)])
    c = box.counters()
    assert c["t1"] == {"pending": 2, "delivered": 3, "dropped": 0, "failed": 1}
    assert c["t2"]["pending"] == 5
    box.ack("t2", [s for s, _ in box.claim("t2", 10)])
    box.ack("t1", [s for s, _ in box.claim("t1", 10)])
    assert box.pending() == 0
    assert box._db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0  # nothing kept once delivered
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    box.close()


def test_outbox_bound_drops_oldest_and_counts(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(4):
        box.append(_evs(5), ["t"], limit=12)
    assert box.pending("t") == 12 and box.counters()["t"]["dropped"] == 8
    assert [json.loads(b)["n"] for _, b in box.claim("t", 2)] == [3, 4]  # the oldest went
    box.close()


def test_outbox_survives_kill_9_and_releases_dead_leases(tmp_path):
    path = tmp_path / "o.sqlite"
    code = textwrap.dedent(f"""
        import os, sys, time
        from facefeat.events import Event, Outbox
        box = Outbox({str(path)!r})
        box.append([Event("test", "x", {{"n": i}}) for i in range(7)], ["t"])
        box.claim("t", 5)          # claimed, never acked
        print("ready", flush=True)
        time.sleep(60)
        """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=os.environ.copy())
    assert p.stdout.readline().strip() == b"ready"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    box = Outbox(path)  # a new process: the dead one's leases are released
    assert box.pending("t") == 7 and len(box.claim("t", 10)) == 7
    box.close()


def test_outbox_unwritable_is_a_config_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="events outbox .*cannot open"):
        Outbox(f / "o.sqlite")


# -- presence and debouncing ----------------------------------------------------------------------------
def test_presence_arrive_leave():
    pr = Presence(away_s=2.0)
    (arr,) = pr.seen("door", "A", 0.0)
    assert arr.type == "person_arrived" and arr.data["present_in"] == ["door"] and arr.data["source_people"] == ["A"]
    assert pr.seen("door", "A", 1.5) == [] and pr.tick("door", 3.0) == []
    pr.seen("hall", "A", 100.0)
    (left,) = pr.tick("door", 3.6)
    assert left.type == "person_left" and left.data["present_in"] == ["hall"] and left.data["last_seen"] == 1.5
    assert [e.source for e in pr.end("hall")] == ["hall"] and pr.present() == []


class _Hub:
    def __init__(self, **cfg):
        self.cfg, self.presence, self.events, self.sources = EventsConfig(**cfg), Presence(cfg.get("away_timeout_s", 1.0)), [], []

    def emit(self, *evs):
        self.events += evs

    def announce(self, people=(), sources=()):
        self.sources += list(sources)


def test_video_feed_debounces_per_track():
    hub = _Hub(away_timeout_s=0.5)
    feed = VideoFeed(hub, "cam", threshold=0.3)
    for i in range(10):  # one person on track 1 for ten frames; an unknown face on track 2
        feed.frame({"frame": i, "time": i / 10, "faces": [
            {"track_id": 1, "label": "A", "score": 0.8, "box": [0, 0, 10, 10]},
            {"track_id": 2, "label": None, "score": 0.1, "box": [20, 0, 30, 10]}]})
    feed.track({"track_id": 2, "label": None, "detections": 10, "start": 0, "end": 0.9})
    feed.track({"track_id": 1, "label": "A", "detections": 10})
    feed.frame({"frame": 20, "time": 2.0, "faces": []})
    assert [e.type for e in hub.events] == ["face_recognized", "person_arrived", "face_unknown", "person_left"]
    assert hub.events[0].data["threshold"] == 0.3 and hub.events[0].data["track_id"] == 1
    assert hub.sources == ["cam"]
    gallery_changes(hub, "g", {"A", "B"}, {"B", "C"})
    assert [(e.type, e.data["person"]) for e in hub.events[-2:]] == [("person_added", "C"), ("person_removed", "A")]


def test_snapshot_of_face_and_frame():
    import base64

    import cv2
    import numpy as np

    from facefeat.events.presence import snapshot

    img = np.zeros((1000, 2000, 3), np.uint8)
    face = cv2.imdecode(np.frombuffer(base64.b64decode(snapshot(img, [100, 100, 200, 220], "face")), np.uint8), 1)
    assert face.shape == (180, 150, 3)  # the box and a quarter of it on each side
    frame = cv2.imdecode(np.frombuffer(base64.b64decode(snapshot(img, None, "frame")), np.uint8), 1)
    assert frame.shape == (320, 640, 3)  # at most 640 px a side
    assert snapshot(img, [0, 0, 10, 10], "off") is None and snapshot(None, None, "frame") is None


def test_two_writers_and_status_command(tmp_path, capsys):
    from facefeat.cli import main

    path = tmp_path / "o.sqlite"
    code = textwrap.dedent(f"""
        import sys
        from facefeat.events import Event, Outbox
        box = Outbox({str(path)!r})
        for i in range(100):
            box.append([Event("test", sys.argv[1], {{"n": i}})], ["t"], limit=1000)
        """)
    procs = [subprocess.Popen([sys.executable, "-c", code, f"w{k}"], env=os.environ.copy()) for k in range(2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    box = Outbox(path)
    assert box.pending("t") == 200 and box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    box.ack("t", [s for s, _ in box.claim("t", 50)])
    box.close()
    assert main(["events", "status", "--events-outbox", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["targets"]["t"] == {"pending": 150, "delivered": 50, "dropped": 0, "failed": 0}


def test_full_outbox_loses_the_new_event_not_the_old_ones(tmp_path):
    from events_fixtures import Receiver

    from facefeat.events import EventHub

    r = Receiver(plan=[500] * 5)  # the receiver is failing while the disk fills up
    hub = EventHub.open(EventsConfig(webhooks=[r.url], webhook_secret="k" * 12, outbox=str(tmp_path / "o.sqlite"),
                                     backoff_s=0.05, backoff_max_s=0.2))
    try:
        first = _evs(3)
        hub.emit(*first)
        box = hub.outbox
        with box._lock:
            pages = box._db.execute("PRAGMA page_count").fetchone()[0]
            box._db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full now (SQLITE_FULL)
        hub.emit(*[Event("face_recognized", "cam", {"person": "x" * 5000}) for _ in range(5)])  # no exception
        assert hub.lost == 5 and hub.emitted == 3
        assert hub.flush(15)
        with box._lock:
            assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        hub.close()
        r.stop()
    assert r.ok_ids() == [e.id for e in first]  # what was committed before is intact and delivered
