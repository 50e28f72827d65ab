"""The event hub: what every recogniser feeds. ``emit`` commits events to the outbox (and returns:
the recogniser never waits for a receiver); a sender thread per target sends what is committed,
in order, retrying with exponential backoff; the outbox keeps at most ``max_events`` undelivered
events per target (older ones dropped, counted).

    hub = EventHub.open(EventsConfig(mqtt="mqtt://broker", webhooks=[...], webhook_secret="..."),
                        outbox="events.sqlite", people=["Alice", "Bob"])
    hub.emit(Event("face_recognized", "door", {"person": "Alice", "score": 0.71}))
    hub.close()          # waits up to flush_timeout_s for delivery; the rest stays for next time
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from facefeat.errors import ConfigError
from facefeat.events.config import EventsConfig
from facefeat.events.mqtt import MqttTarget
from facefeat.events.outbox import Outbox
from facefeat.events.presence import Presence
from facefeat.events.types import DeliveryError, Event, redact
from facefeat.events.webhook import WebhookTarget

log = logging.getLogger("facefeat.events")
BATCH = 32


def build_targets(cfg: EventsConfig) -> list:
    """The configured targets, not yet connected (MQTT first, then each webhook)."""
    targets: list = []
    if cfg.mqtt:
        targets.append(MqttTarget(cfg))
    if cfg.webhooks:
        secret = cfg.secret()
        if not secret:
            raise ConfigError(f"webhooks ({', '.join(redact(u) for u in cfg.webhooks)}) need a signing secret: "
                              "set webhook_secret (--webhook-secret), webhook_secret_file (--webhook-secret-file) "
                              "or $FACEFEAT_WEBHOOK_SECRET")
        targets += [WebhookTarget(u, secret, cfg.timeout_s) for u in dict.fromkeys(cfg.webhooks)]
    return targets


class Sender(threading.Thread):
    """Sends one target's committed events, oldest first; backs off after a failure."""

    def __init__(self, hub: "EventHub", target: Any):
        super().__init__(name=f"facefeat-events-{target.kind}", daemon=True)
        self.hub, self.target = hub, target
        self.wake = threading.Event()
        self.retry_now = threading.Event()  # ends a backoff early: the target is back (MQTT reconnected), or closing
        if hasattr(target, "on_up"):
            target.on_up = self.retry_now.set
        self.failures = 0
        self.last_error: str | None = None

    def run(self) -> None:
        hub, name = self.hub, self.target.name
        while not hub._stop.is_set():
            try:
                batch = hub.outbox.claim(name, BATCH)
            except sqlite3.Error as exc:
                log.error("events outbox %s: claim failed (%s)", hub.outbox.path, exc)
                hub._stop.wait(1.0)
                continue
            if not batch:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            done: list[int] = []
            failed = False
            for seq, body in batch:
                if hub._stop.is_set():
                    break
                try:
                    self.target.send(body)
                    done.append(seq)
                except DeliveryError as exc:
                    failed, self.last_error = True, str(exc)
                    break
                except Exception as exc:  # a bug or a bad body must not kill the sender
                    failed, self.last_error = True, f"{type(exc).__name__}: {exc}"
                    log.exception("events: sending to %s failed", name)
                    break
            try:
                hub.outbox.ack(name, done)
                hub.outbox.release(name, [s for s, _ in batch if s not in set(done)], failed=failed)
            except sqlite3.Error as exc:
                log.error("events outbox %s: ack failed (%s); those events will be sent again", hub.outbox.path, exc)
            if failed:
                self.failures += 1
                delay = min(hub.cfg.backoff_max_s, hub.cfg.backoff_s * 2 ** min(self.failures - 1, 30))
                delay *= 0.8 + 0.4 * random.random()
                quiet = self.failures > 8 and self.failures % 20  # a long outage: a line every 20 attempts
                log.log(logging.DEBUG if quiet else logging.WARNING, "events: %s (attempt %d; retrying in %.1f s)",
                        self.last_error, self.failures, delay)
                self.retry_now.wait(delay)
                self.retry_now.clear()
            elif done:
                self.failures = 0


class EventHub:
    """Outbox + targets + one sender thread each, and the presence tracker recognisers share."""

    def __init__(self, cfg: EventsConfig, outbox: Outbox, targets: list):
        self.cfg, self.outbox, self.targets = cfg, outbox, targets
        self.presence = Presence(cfg.away_timeout_s)
        self._stop = threading.Event()
        self.senders = [Sender(self, t) for t in targets]
        self.emitted = 0
        self.lost = 0  # events the outbox could not commit (full disk, I/O error)
        self._ticker: threading.Thread | None = None

    @classmethod
    def open(cls, cfg: EventsConfig, outbox: str | Path | None = None, people: Iterable[str] = (),
             sources: Iterable[str] = (), check: bool = True) -> "EventHub":
        """Check the config, connect every target (a ConfigError naming the URL when one is bad,
        unreachable or refuses the credentials), open the outbox, start the senders."""
        cfg = cfg.checked()
        if not cfg.enabled:
            raise ConfigError("events: no target configured (set mqtt and/or webhooks)")
        path = cfg.outbox or outbox
        if path is None:
            raise ConfigError("events: no outbox file (set events.outbox / --events-outbox)")
        targets = build_targets(cfg)
        opened: list = []
        try:
            for t in targets:
                if check:
                    t.check()
                opened.append(t)
            box = Outbox(path)
        except BaseException:
            for t in opened:
                t.close()
            raise
        hub = cls(cfg, box, targets)
        for t in targets:
            t.announce(list(people), list(sources))
        for s in hub.senders:
            s.start()
        pending = box.pending()
        log.info("events: %s; outbox %s (%d undelivered)", ", ".join(t.name for t in targets), box.path, pending)
        return hub

    # -- feeding -------------------------------------------------------------------------------------
    def emit(self, *events: Event) -> None:
        """Commit events to the outbox and wake the senders; never waits for a receiver."""
        if not events:
            return
        try:
            self.outbox.append(events, [t.name for t in self.targets], limit=self.cfg.max_events)
        except sqlite3.Error as exc:  # e.g. the disk is full: the recogniser keeps going
            self.lost += len(events)
            log.error("events outbox %s: %d event(s) not saved (%s)", self.outbox.path, len(events), exc)
            return
        self.emitted += len(events)
        for s in self.senders:
            s.wake.set()

    def announce(self, people: Iterable[str] = (), sources: Iterable[str] = ()) -> None:
        """Gallery people and sources for Home Assistant discovery."""
        people, sources = list(people), list(sources)
        for t in self.targets:
            t.announce(people, sources)

    def start_ticker(self, period_s: float = 1.0) -> None:
        """Check wall-clock presence (``person_left`` after the away timeout) every ``period_s``
        (for the service, where no frame loop does it)."""
        def tick() -> None:
            while not self._stop.wait(period_s):
                self.emit(*self.presence.tick(None, time.time()))

        self._ticker = threading.Thread(target=tick, name="facefeat-events-presence", daemon=True)
        self._ticker.start()

    # -- state ---------------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Per target: pending, delivered, dropped, failed (outbox counters), and the last error."""
        counters = self.outbox.counters()
        out = {}
        for s in self.senders:
            c = counters.get(s.target.name, {"pending": 0, "delivered": 0, "dropped": 0, "failed": 0})
            out[s.target.name] = {**c, "last_error": s.last_error}
        return {"targets": out, "emitted": self.emitted, "lost": self.lost}

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every target has every event (True), or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + (self.cfg.flush_timeout_s if timeout_s is None else timeout_s)
        names = [t.name for t in self.targets]
        while True:
            if all(self.outbox.pending(n) == 0 for n in names):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def close(self, flush: bool = True) -> None:
        """Flush (up to ``flush_timeout_s``), stop the senders, close the targets and the outbox."""
        if flush and not self._stop.is_set():
            if not self.flush():
                log.warning("events: %d undelivered event(s) left in %s; they are sent at the next start",
                            self.outbox.pending(), self.outbox.path)
        self._stop.set()
        for s in self.senders:
            s.wake.set()
            s.retry_now.set()
        for s in self.senders:
            s.join(timeout=self.cfg.timeout_s + 1.0)
        for t in self.targets:
            try:
                t.close()
            except Exception as exc:  # closing: report, continue
                log.debug("events: closing %s: %s", t.name, exc)
        if not any(s.is_alive() for s in self.senders):
            self.outbox.close()

    def __enter__(self) -> "EventHub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["EventHub", "Sender", "build_targets"]
