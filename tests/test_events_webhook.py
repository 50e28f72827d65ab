"""Webhook events against a real HTTP receiver on 127.0.0.1: retries until 2xx (delivered once,
signature verified), a hanging receiver bounded by the timeout while the recogniser keeps going,
clear errors at start, ``facefeat events test``, and a ``recognize`` killed with -9 whose
undelivered events are sent by the next run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import first_photo_gallery
from events_fixtures import Receiver, free_port, wait_until, write_video
from facefeat.errors import ConfigError
from facefeat.events import Event, EventHub, EventsConfig
from facefeat.events.webhook import verify_signature

REPO = Path(__file__).resolve().parents[1]
SECRET = "test-secret-1234"
PEOPLE = ["George_W_Bush", "Colin_Powell"]


def _cfg(tmp_path: Path, *urls: str, **kw) -> EventsConfig:
    kw = {"backoff_s": 0.05, "backoff_max_s": 0.5, "timeout_s": 2.0, **kw}
    return EventsConfig(webhooks=list(urls), webhook_secret=SECRET, outbox=str(tmp_path / "outbox.sqlite"), **kw)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def test_retried_until_200_then_delivered_once_and_signed(receiver, tmp_path):
    receiver.plan = [500, 500, 500]
    hub = EventHub.open(_cfg(tmp_path, receiver.url))
    ev = Event("face_recognized", "door", {"person": "Alice", "score": 0.8})
    hub.emit(ev)
    assert hub.flush(15), hub.stats()
    st = hub.stats()["targets"][f"webhook:{receiver.url}"]
    hub.close()
    assert [s for _, _, s in receiver.received] == [500, 500, 500, 200]
    assert receiver.ok_ids() == [ev.id]  # delivered once
    for headers, body, _ in receiver.received:
        assert verify_signature(body, headers["x-facefeat-signature"], SECRET.encode())
        assert headers["x-facefeat-id"] == ev.id and headers["x-facefeat-event"] == "face_recognized"
        assert json.loads(body)["person"] == "Alice"
    assert not verify_signature(receiver.received[0][1], receiver.received[0][0]["x-facefeat-signature"], b"other")
    assert st["delivered"] == 1 and st["failed"] == 3 and st["pending"] == 0


def test_start_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEFEAT_WEBHOOK_SECRET", raising=False)
    port = free_port()
    with pytest.raises(ConfigError, match=rf"webhook http://127.0.0.1:{port}/x: cannot connect to 127.0.0.1:{port}"):
        EventHub.open(_cfg(tmp_path, f"http://127.0.0.1:{port}/x"))
    with pytest.raises(ConfigError, match="does not resolve"):
        EventHub.open(_cfg(tmp_path, "http://no-such-host.invalid/x"))
    with pytest.raises(ConfigError, match="webhook URL 'ftp://h/x': scheme must be http"):
        EventHub.open(_cfg(tmp_path, "ftp://h/x"))
    r = Receiver(auth=("hook", "right"))
    try:
        with pytest.raises(ConfigError, match=r"need a signing secret.*FACEFEAT_WEBHOOK_SECRET"):
            EventHub.open(EventsConfig(webhooks=[r.url], outbox=str(tmp_path / "o.sqlite")))
        bad = r.url.replace("http://", "http://hook:wrong@")
        with pytest.raises(ConfigError) as e:
            EventHub.open(_cfg(tmp_path, bad))
        assert "answered HTTP 401 to the URL's credentials (wrong user name or password?)" in str(e.value)
        assert "http://hook:***@127.0.0.1" in str(e.value) and "wrong@" not in str(e.value)
        hub = EventHub.open(_cfg(tmp_path, r.url.replace("http://", "http://hook:right@")))
        hub.emit(Event("test", "x"))
        assert hub.flush(10)
        hub.close()
        assert r.ok_ids()  # delivered with the URL's credentials
    finally:
        r.stop()



@pytest.fixture(scope="module")
def gallery(pipe, lfw_dir, tmp_path_factory):
    return first_photo_gallery(pipe, lfw_dir, PEOPLE, tmp_path_factory.mktemp("gallery") / "index")


@pytest.fixture(scope="module")
def video(lfw_dir, tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "two.avi", lfw_dir, PEOPLE, frames_each=6, gap=10)


def test_hanging_receiver_does_not_stop_the_recogniser(pipe, gallery, video, tmp_path):
    r = Receiver(plan=["hang"] * 100)  # holds every request until released
    hub = EventHub.open(_cfg(tmp_path, r.url, timeout_s=1.0, away_timeout_s=0.4))
    try:
        records = list(pipe.predict_video(str(video), index=gallery[0], events=hub))
        # the whole video was recognised while the receiver held the sender's first request
        assert records[-1]["event"] == "summary" and records[-1]["frames_processed"] == 32
        assert wait_until(lambda: "timed out" in (hub.senders[0].last_error or ""), 15)
        assert hub.outbox.pending() >= 6
        r.release()
        assert hub.flush(20), hub.stats()
    finally:
        hub.close()
        r.stop()
    # the held request was answered late (after the sender's timeout), so it came twice: de-duplicate on id
    unique = {json.loads(b)["id"]: json.loads(b) for _, b, s in r.received if s == 200}
    kinds = [e["type"] for e in unique.values()]
    assert sorted(e["person"] for e in unique.values() if e["type"] == "face_recognized") == sorted(PEOPLE)
    assert kinds.count("person_arrived") == 2 and kinds.count("person_left") == 2


def test_events_test_command(receiver, tmp_path, capsys):
    from facefeat.cli import main

    bad = Receiver(plan=[401])
    try:
        rc = main(["events", "test", "--webhook", receiver.url, "--webhook", bad.url, "--webhook-secret", SECRET])
    finally:
        bad.stop()
    out = capsys.readouterr()
    assert rc == 1 and "1 of 2 target(s) failed" in out.err
    assert f"ok   webhook:{receiver.url}: HTTP 200 in" in out.out and f"FAIL webhook:{bad.url}: HTTP 401" in out.out
    (headers, body, _), = receiver.received
    assert json.loads(body)["type"] == "test" and verify_signature(body, headers["x-facefeat-signature"], SECRET.encode())
    port = free_port()
    assert main(["events", "test", "--webhook", f"http://127.0.0.1:{port}/h", "--webhook-secret", SECRET]) == 1
    assert "cannot connect" in capsys.readouterr().out


def _outbox_ids(path: Path) -> set[str]:
    """The event ids in an outbox another process writes (empty while it is being created)."""
    if not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0] for r in db.execute("SELECT id FROM events")}
    except sqlite3.OperationalError:  # no tables yet
        return set()
    finally:
        db.close()


@pytest.mark.slow
def test_kill_9_then_restart_delivers(gallery, video, tmp_path):
    r = Receiver(plan=[500] * 10_000)  # the receiver fails everything in the first run
    outbox = tmp_path / "outbox.sqlite"
    conf = tmp_path / "events.yaml"
    conf.write_text("events:\n  flush_timeout_s: 300\n  backoff_s: 0.05\n  backoff_max_s: 0.2\n  away_timeout_s: 0.4\n")
    cmd = [sys.executable, "-m", "facefeat", "recognize", str(video), "--index", str(gallery[1]), "--webhook", r.url,
           "--events-outbox", str(outbox), "--events-config", str(conf)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACEFEAT_WEBHOOK_SECRET": SECRET}
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: len(_outbox_ids(outbox)) >= 6 or p.poll() is not None, 120)
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    undelivered = _outbox_ids(outbox)
    assert len(undelivered) >= 6 and not r.ok_ids()
    with r.lock:
        r.plan = []  # the receiver is fine now
    done = subprocess.run(cmd[:-2], env=env, capture_output=True, timeout=300)  # default flush timeout
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    r.stop()
    assert undelivered <= set(r.ok_ids())  # everything the killed run had committed arrived
    assert _outbox_ids(outbox) == set()


def test_recognize_photos_sends_events(gallery, lfw_dir, tmp_path, capsys, monkeypatch):
    from facefeat.cli import main

    monkeypatch.setenv("FACEFEAT_WEBHOOK_SECRET", SECRET)
    r = Receiver()
    try:
        photo = lfw_dir / "Colin_Powell" / "Colin_Powell_0003.jpg"
        rc = main(["recognize", str(photo), "--index", str(gallery[1]), "--webhook", r.url,
                   "--events-outbox", str(tmp_path / "o.sqlite")])
        assert rc == 0, capsys.readouterr().err
    finally:
        r.stop()
    (headers, body, status), = r.received  # delivered before the command returned
    ev = json.loads(body)
    assert status == 200 and ev["type"] == "face_recognized" and ev["person"] == "Colin_Powell"
    assert ev["source"] == str(photo) and ev["threshold"] == ev["operating_point"]["threshold"]
    assert len(ev["box"]) == 4 and "snapshot" not in ev
