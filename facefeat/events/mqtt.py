"""MQTT target (paho-mqtt): events at QoS 1, retained presence state, Home Assistant discovery, an
availability topic with a last will, TLS for ``mqtts://``.

Topics (``P`` is the URL's path, default ``facefeat``; ``D`` the discovery prefix, ``homeassistant``)::

    P/status                         online | offline (retained; the last will says offline)
    P/events/<type>                  every event's JSON body (QoS 1, not retained)
    P/person/<slug>/presence         ON | OFF (retained)
    P/person/<slug>/last_seen        {"source", "time", "score"} (retained)
    P/source/<slug>/people           {"state": "Alice, Bob", "people": [...], "count"} (retained)
    D/binary_sensor/facefeat_<slug>/presence/config    a person's presence (device: the person)
    D/sensor/facefeat_<slug>/last_seen/config          where the person was seen last
    D/sensor/facefeat_source_<slug>/people/config      who is at a source now

A publish counts as delivered when the broker's PUBACK arrives within the timeout.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import time
from typing import Iterable
from urllib.parse import unquote, urlsplit

from facefeat.errors import ConfigError, require
from facefeat.events.config import MQTT_SCHEMES, EventsConfig, check_url
from facefeat.events.types import DeliveryError, redact, slug

log = logging.getLogger("facefeat.events")
STATE_MAX_CHARS = 255  # Home Assistant's limit for a state


class MqttTarget:
    """The broker of ``cfg.mqtt``. ``check()`` connects (errors name the URL); paho reconnects after."""

    kind = "mqtt"

    def __init__(self, cfg: EventsConfig):
        mqtt = require("paho.mqtt.client", "events", "MQTT events (--mqtt)")
        self._mqtt = mqtt
        url = cfg.mqtt or ""
        check_url(url, MQTT_SCHEMES, "mqtt")
        p = urlsplit(url)
        self.url, self.shown = url, redact(url)
        self.tls = p.scheme.lower() == "mqtts"
        self.host, self.port = p.hostname, p.port or (8883 if self.tls else 1883)
        self.prefix, self.disc = cfg.topic_prefix, cfg.discovery_prefix.strip("/")
        self.discovery, self.timeout_s = cfg.discovery, float(cfg.timeout_s)
        self.status_topic = f"{self.prefix}/status"
        self.name = f"mqtt:{self.host}:{self.port}/{self.prefix}"
        cid = cfg.client_id or f"facefeat-{socket.gethostname()}-{os.getpid()}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True,
                                  protocol=mqtt.MQTTv311)
        if p.username is not None:
            self.client.username_pw_set(unquote(p.username), cfg.mqtt_password())
        self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        if self.tls:
            try:
                self.client.tls_set(ca_certs=cfg.mqtt_ca_file)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise ConfigError(f"mqtt {self.shown}: TLS setup failed ({exc}); check mqtt_ca_file") from None
        self.client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(cfg.backoff_max_s)))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._connected = threading.Event()
        self._answered = threading.Event()
        self._refusal: str | None = None
        self._lock = threading.Lock()
        self._people: set[str] = set()
        self._sources: set[str] = set()
        self.on_up = None  #: called when a connection is (re-)established (the sender retries at once)

    def __repr__(self) -> str:
        return f"MqttTarget({self.shown!r})"

    # -- connection ----------------------------------------------------------------------------------
    def check(self) -> None:
        """Connect now; ConfigError naming the URL for a bad host, a refused connection, a TLS
        failure, or credentials the broker does not accept."""
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except socket.gaierror as exc:
            raise ConfigError(f"mqtt {self.shown}: host {self.host!r} does not resolve ({exc})") from None
        except ssl.SSLError as exc:
            raise ConfigError(f"mqtt {self.shown}: TLS handshake failed ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"mqtt {self.shown}: cannot connect to {self.host}:{self.port} "
                              f"({exc.strerror or exc}); is the broker running?") from None
        self.client.loop_start()
        if not self._answered.wait(self.timeout_s) or self._refusal:
            why = self._refusal or f"no answer (CONNACK) within {self.timeout_s:g} s"
            self.client.loop_stop()
            self.client.disconnect()
            hint = " (wrong user name or password?)" if self._refusal and "auth" in self._refusal.lower() else ""
            raise ConfigError(f"mqtt {self.shown}: the broker refused the connection: {why}{hint}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refusal = str(reason_code)
            self._answered.set()
            if not self._connected.is_set() and not getattr(self, "_was_up", False):
                client.disconnect()  # refused at start: check() reports it; no endless retries
            else:
                log.warning("mqtt %s refused the reconnection: %s", self.shown, reason_code)
            return
        self._refusal, self._was_up = None, True
        self._connected.set()
        self._answered.set()
        client.publish(self.status_topic, "online", qos=1, retain=True)
        with self._lock:
            people, sources = sorted(self._people), sorted(self._sources)
        for person in people:  # Home Assistant asks for discovery again after a broker restart
            self._discover_person(person, wait=False)
        for source in sources:
            self._discover_source(source, wait=False)
        log.info("mqtt %s connected", self.shown)
        if self.on_up is not None:
            self.on_up()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            log.warning("mqtt %s disconnected (%s); reconnecting", self.shown, reason_code)
        self._connected.clear()

    def close(self) -> None:
        """Say offline (retained) and disconnect cleanly."""
        try:
            if self._connected.is_set():
                self.client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(self.timeout_s)
        except Exception as exc:  # closing: nothing more to do
            log.debug("mqtt %s: offline status not sent (%s)", self.shown, exc)
        self._connected.clear()  # a disconnect we asked for: no warning
        self.client.disconnect()
        self.client.loop_stop()

    # -- publishing ----------------------------------------------------------------------------------
    def _publish(self, topic: str, payload: str | bytes, retain: bool = False, wait: bool = True) -> None:
        if not self._connected.is_set():
            raise DeliveryError(f"mqtt {self.shown}: not connected")
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise DeliveryError(f"mqtt {self.shown}: publish failed ({self._mqtt.error_string(info.rc)})")
        if not wait:
            return
        try:
            info.wait_for_publish(self.timeout_s)
        except Exception as exc:
            raise DeliveryError(f"mqtt {self.shown}: publish failed ({exc})") from None
        if not info.is_published():
            raise DeliveryError(f"mqtt {self.shown}: no PUBACK within {self.timeout_s:g} s")

    def send(self, body: str) -> str:
        """Publish one event (and the retained state and discovery it changes)."""
        doc = json.loads(body)
        typ, source, person = doc.get("type", ""), doc.get("source") or "", doc.get("person")
        self._publish(f"{self.prefix}/events/{typ}", body)
        if person and typ in ("face_recognized", "person_arrived", "person_left"):
            self.ensure_person(person)
        if source and typ in ("person_arrived", "person_left"):
            self.ensure_source(source)
            people = doc.get("source_people") or []
            state = ", ".join(people) or "nobody"
            state = state if len(state) <= STATE_MAX_CHARS else state[:STATE_MAX_CHARS - 3] + "..."
            self._publish(f"{self.prefix}/source/{slug(source)}/people",
                          json.dumps({"state": state, "people": people, "count": len(people)}), retain=True)
            self._publish(f"{self.prefix}/person/{slug(person)}/presence",
                          "ON" if doc.get("present_in") else "OFF", retain=True)
        if person and typ in ("face_recognized", "person_arrived"):
            self._publish(f"{self.prefix}/person/{slug(person)}/last_seen",
                          json.dumps({"source": source, "time": doc.get("time"), "score": doc.get("score")}),
                          retain=True)
        if typ == "person_added" and person:
            self.ensure_person(person)
        elif typ == "person_removed" and person:
            self.forget_person(person)
        return "PUBACK"

    def test(self, body: str) -> tuple[bool, str]:
        t0 = time.perf_counter()
        try:
            self._publish(f"{self.prefix}/events/test", body)
        except DeliveryError as exc:
            return False, str(exc)
        return True, f"PUBACK from {self.host}:{self.port} in {(time.perf_counter() - t0) * 1000:.0f} ms " \
                     f"(topic {self.prefix}/events/test)"

    # -- Home Assistant discovery --------------------------------------------------------------------
    def announce(self, people: Iterable[str], sources: Iterable[str]) -> None:
        """Make ``people`` and ``sources`` known (discovery now if connected, and on every reconnect)."""
        for p in people:
            self.ensure_person(p, wait=False)
        for s in sources:
            self.ensure_source(s, wait=False)

    def ensure_person(self, person: str, wait: bool = True) -> None:
        with self._lock:
            new = person not in self._people
            self._people.add(person)
        if new and self._connected.is_set():
            self._discover_person(person, wait)

    def ensure_source(self, source: str, wait: bool = True) -> None:
        with self._lock:
            new = source not in self._sources
            self._sources.add(source)
        if new and self._connected.is_set():
            self._discover_source(source, wait)

    def forget_person(self, person: str) -> None:
        with self._lock:
            self._people.discard(person)
        if self.discovery:
            s = slug(person)
            self._publish(f"{self.disc}/binary_sensor/facefeat_{s}/presence/config", "", retain=True)
            self._publish(f"{self.disc}/sensor/facefeat_{s}/last_seen/config", "", retain=True)
        for topic in ("presence", "last_seen"):
            self._publish(f"{self.prefix}/person/{slug(person)}/{topic}", "", retain=True)

    def _device(self, ident: str, name: str) -> dict:
        return {"identifiers": [ident], "name": name, "manufacturer": "facefeat", "model": "face recognition"}

    def _avail(self) -> dict:
        return {"availability_topic": self.status_topic, "payload_available": "online",
                "payload_not_available": "offline"}

    def _discover_person(self, person: str, wait: bool) -> None:
        if not self.discovery:
            return
        s = slug(person)
        dev = self._device(f"facefeat_person_{s}", person)
        base = f"{self.prefix}/person/{s}"
        self._publish(f"{self.disc}/binary_sensor/facefeat_{s}/presence/config", json.dumps({
            "name": "Presence", "unique_id": f"facefeat_{s}_presence", "object_id": f"facefeat_{s}_presence",
            "state_topic": f"{base}/presence", "payload_on": "ON", "payload_off": "OFF",
            "device_class": "presence", "device": dev, **self._avail()}), retain=True, wait=wait)
        self._publish(f"{self.disc}/sensor/facefeat_{s}/last_seen/config", json.dumps({
            "name": "Last seen where", "unique_id": f"facefeat_{s}_last_seen", "object_id": f"facefeat_{s}_last_seen",
            "state_topic": f"{base}/last_seen", "value_template": "{{ value_json.source }}",
            "json_attributes_topic": f"{base}/last_seen", "icon": "mdi:map-marker-account", "device": dev,
            **self._avail()}), retain=True, wait=wait)

    def _discover_source(self, source: str, wait: bool) -> None:
        if not self.discovery:
            return
        s = slug(source)
        topic = f"{self.prefix}/source/{s}/people"
        self._publish(f"{self.disc}/sensor/facefeat_source_{s}/people/config", json.dumps({
            "name": "People here", "unique_id": f"facefeat_source_{s}_people", "object_id": f"facefeat_source_{s}_people",
            "state_topic": topic, "value_template": "{{ value_json.state }}", "json_attributes_topic": topic,
            "icon": "mdi:account-group", "device": self._device(f"facefeat_source_{s}", f"facefeat {source}"),
            **self._avail()}), retain=True, wait=wait)


__all__ = ["MqttTarget"]
