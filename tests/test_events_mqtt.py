"""MQTT events against a real mosquitto broker on a loopback port: a video of two people in turn
(both recognised, presence on then off, Home Assistant discovery retained, availability), the
broker stopped mid-run and started again (every event arrives), and clear errors at start for a
bad URL, an unreachable broker and wrong credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from events_fixtures import MOSQUITTO, Mosquitto, Subscriber, free_port, self_signed_cert, wait_until, write_video
from facefeat.errors import ConfigError
from facefeat.events import Event, EventHub, EventsConfig

pytest.importorskip("paho.mqtt.client")
PEOPLE = ["George_W_Bush", "Colin_Powell"]


def _need_mosquitto() -> None:
    if not Path(MOSQUITTO).exists():
        reason = f"needs the mosquitto broker ({MOSQUITTO}; apt-get install mosquitto)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + " - but CI=true, where it must be installed")
        pytest.skip(reason)


@pytest.fixture
def broker(tmp_path):
    _need_mosquitto()
    b = Mosquitto(tmp_path / "mosquitto").start()
    yield b
    b.stop()


def _cfg(url: str, tmp_path: Path, **kw) -> EventsConfig:
    return EventsConfig(mqtt=url, outbox=str(tmp_path / "outbox.sqlite"), backoff_s=0.1, backoff_max_s=1.0,
                        timeout_s=3.0, **kw)



@pytest.fixture(scope="module")
def gallery(pipe, lfw_dir):
    return pipe.build_index([str(lfw_dir / p / f"{p}_0001.jpg") for p in PEOPLE + ["Tony_Blair"]],
                            PEOPLE + ["Tony_Blair"], index_type="Flat")


def test_video_two_people_events_presence_discovery(broker, pipe, gallery, lfw_dir, tmp_path):
    video = write_video(tmp_path / "two.avi", lfw_dir, PEOPLE, frames_each=6, gap=10)
    sub = Subscriber(broker.port)
    hub = EventHub.open(_cfg(broker.url(prefix="home"), tmp_path, away_timeout_s=0.4),
                        people=sorted(set(gallery.labels().values())))
    try:
        records = list(pipe.predict_video(str(video), index=gallery, events=hub))
        assert hub.flush(20)
    finally:
        hub.close()
    assert [t["label"] for t in records if t["event"] == "track"] == PEOPLE
    assert wait_until(lambda: len(sub.bodies("home/events/")) >= 6, 10)
    sub.close()
    evs = sub.bodies("home/events/")
    kinds = [(e["type"], e.get("person")) for e in evs]
    assert [k for k in kinds if k[0] == "face_recognized"] == [("face_recognized", p) for p in PEOPLE]
    for p in PEOPLE:  # arrived, then left after the away timeout (video time), in that order
        mine = [t for t, who in kinds if who == p and t.startswith("person_")]
        assert mine == ["person_arrived", "person_left"], kinds
    left = [e for e in evs if e["type"] == "person_left"]
    assert left[0]["reason"] == "away" and left[0]["source"] == str(video)
    rec = next(e for e in evs if e["type"] == "face_recognized")
    assert rec["score"] > 0.3 and rec["threshold"] and rec["track_id"] >= 1 and len(rec["box"]) == 4
    assert len({e["id"] for e in evs}) == len(evs)
    bush = "home/person/george_w_bush/presence"
    assert sub.topic(bush) == [b"ON", b"OFF"]

    # a new subscriber gets the retained state: discovery per gallery person and the source, availability
    late = Subscriber(broker.port, topics=["homeassistant/#", "home/#"])
    assert wait_until(lambda: len(late.messages) >= 9, 5)
    late.close()
    retained = {t: json.loads(p) if p.startswith(b"{") else p.decode() for t, p, r in late.messages if r}
    for p in PEOPLE + ["Tony_Blair"]:
        s = p.lower()
        conf = retained[f"homeassistant/binary_sensor/facefeat_{s}/presence/config"]
        assert conf["state_topic"] == f"home/person/{s}/presence" and conf["device"]["name"] == p
        assert conf["availability_topic"] == "home/status" and conf["device_class"] == "presence"
        assert retained[f"homeassistant/sensor/facefeat_{s}/last_seen/config"]["value_template"]
    src = [t for t in retained if t.startswith("homeassistant/sensor/facefeat_source_")]
    assert len(src) == 1 and retained[src[0]]["json_attributes_topic"].startswith("home/source/")
    assert retained[bush] == "OFF" and retained["home/status"] == "offline"  # closed cleanly
    assert retained["home/person/colin_powell/last_seen"]["source"] == str(video)


def test_broker_restart_loses_no_event(broker, tmp_path):
    sub = Subscriber(broker.port, topics=["facefeat/events/#"], client_id="counter")  # persistent session
    hub = EventHub.open(_cfg(broker.url(), tmp_path))
    try:
        first = [Event("face_recognized", "cam", {"person": "A", "n": i}) for i in range(20)]
        hub.emit(*first)
        assert hub.flush(15)
        broker.stop()
        second = [Event("face_recognized", "cam", {"person": "B", "n": i}) for i in range(30)]
        for ev in second:  # emitted while the broker is down: committed, not lost, not blocking
            hub.emit(ev)
        assert hub.outbox.pending() > 0
        broker.start()
        assert hub.flush(30), hub.stats()
        want = {e.id for e in first + second}
        assert wait_until(lambda: want <= {b["id"] for b in sub.bodies()}, 20)
        st = hub.stats()
    finally:
        hub.close()
        sub.close()
    got = [b["id"] for b in sub.bodies()]
    assert set(got) == want  # every event arrived (duplicates are allowed, at-least-once)
    (target,) = st["targets"].values()
    assert target["pending"] == 0 and target["delivered"] >= 50 and target["failed"] >= 1 and st["lost"] == 0


def test_start_errors_name_the_url(tmp_path):
    _need_mosquitto()
    with pytest.raises(ConfigError, match=r"mqtt URL 'http://h': scheme must be mqtt"):
        EventHub.open(_cfg("http://h", tmp_path))
    port = free_port()  # nobody listens there
    with pytest.raises(ConfigError, match=rf"mqtt mqtt://127.0.0.1:{port}: cannot connect to 127.0.0.1:{port}"):
        EventHub.open(_cfg(f"mqtt://127.0.0.1:{port}", tmp_path))
    with pytest.raises(ConfigError, match=r"host 'no-such-host.invalid' does not resolve"):
        EventHub.open(_cfg("mqtt://no-such-host.invalid", tmp_path))
    b = Mosquitto(tmp_path / "auth", users={"cam": "right"}).start()
    try:
        with pytest.raises(ConfigError) as e:
            EventHub.open(_cfg(b.url("cam", "wrong"), tmp_path))
        msg = str(e.value)
        assert "refused the connection" in msg and "wrong user name or password" in msg
        assert f"mqtt://cam:***@127.0.0.1:{b.port}" in msg and "wrong@" not in msg
        hub = EventHub.open(_cfg(b.url("cam", "right"), tmp_path))  # the right password works
        hub.emit(Event("test", "x"))
        assert hub.flush(10)
        hub.close()
    finally:
        b.stop()


def test_mqtts_with_a_ca_file_and_events_test_command(tmp_path, capsys):
    _need_mosquitto()
    import shutil

    if not shutil.which("openssl"):
        pytest.skip("needs openssl to make a certificate")
    from facefeat.cli import main

    cert, key = self_signed_cert(tmp_path)
    b = Mosquitto(tmp_path / "tls", tls=(cert, key)).start()
    try:
        url = f"mqtts://127.0.0.1:{b.port}/secure"
        with pytest.raises(ConfigError, match=r"mqtts://127.0.0.1:\d+/secure: .*(TLS|certificate)"):
            EventHub.open(_cfg(url, tmp_path))  # the system CAs do not know this certificate
        hub = EventHub.open(_cfg(url, tmp_path, mqtt_ca_file=str(cert)))
        hub.emit(Event("test", "tls"))
        assert hub.flush(10)
        hub.close()
        conf = tmp_path / "events.yaml"
        conf.write_text(f"events:\n  mqtt: {url}\n  mqtt_ca_file: {cert}\n")
        assert main(["events", "test", "--events-config", str(conf)]) == 0
        out = capsys.readouterr().out
        assert f"ok   mqtt:127.0.0.1:{b.port}/secure: PUBACK from 127.0.0.1:{b.port}" in out
    finally:
        b.stop()


def test_last_will_marks_a_killed_recogniser_offline(broker, tmp_path):
    import signal
    import subprocess
    import sys
    import textwrap

    sub = Subscriber(broker.port, topics=["cam/status"])
    code = textwrap.dedent(f"""
        import time
        from facefeat.events import EventHub, EventsConfig
        hub = EventHub.open(EventsConfig(mqtt={broker.url(prefix='cam')!r}, outbox={str(tmp_path / 'o.sqlite')!r}))
        print("ready", flush=True)
        time.sleep(60)
        """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=os.environ.copy())
    try:
        assert p.stdout.readline().strip() == b"ready"
        assert wait_until(lambda: sub.topic("cam/status") == [b"online"], 10)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    assert wait_until(lambda: sub.topic("cam/status") == [b"online", b"offline"], 10)  # the broker sent the will
    sub.close()
