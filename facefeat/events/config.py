"""The ``events:`` block of a pipeline YAML (and the CLI flags / serve settings that fill it): one
dataclass, :class:`EventsConfig`, validated once; every bad value is a ConfigError naming the key.

Secrets stay out of command lines and YAML files when wanted: the webhook secret may come from
``webhook_secret_file`` or ``$FACEFEAT_WEBHOOK_SECRET``, the MQTT password (for a URL with a user
and no password) from ``mqtt_password_file`` or ``$FACEFEAT_MQTT_PASSWORD``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

from facefeat.errors import ConfigError
from facefeat.events.types import redact

ENV_WEBHOOK_SECRET = "FACEFEAT_WEBHOOK_SECRET"
ENV_MQTT_PASSWORD = "FACEFEAT_MQTT_PASSWORD"
SNAPSHOTS = ("off", "face", "frame")
MQTT_SCHEMES = ("mqtt", "mqtts")
WEBHOOK_SCHEMES = ("http", "https")


@dataclass
class EventsConfig:
    """Where events go and how (see ``docs/guides/events.md``)."""

    mqtt: Optional[str] = None  #: mqtt[s]://[user[:pass]@]host[:port][/topic_prefix]
    webhooks: list = field(default_factory=list)  #: http(s) URLs, each gets every event
    webhook_secret: Optional[str] = field(default=None, repr=False)  #: HMAC-SHA256 key
    webhook_secret_file: Optional[str] = None
    mqtt_password_file: Optional[str] = None
    mqtt_ca_file: Optional[str] = None  #: CA bundle for mqtts:// (default: the system's)
    outbox: Optional[str] = None  #: SQLite outbox file (default: chosen by the caller)
    max_events: int = 10000  #: undelivered events kept per target; older ones are dropped (counted)
    away_timeout_s: float = 30.0  #: unseen this long at a source: person_left
    unknown: bool = True  #: emit face_unknown (once per track of an unrecognised face)
    snapshot: str = "off"  #: off | face | frame: a JPEG (base64) in face_recognized / face_unknown
    timeout_s: float = 5.0  #: connect / send deadline per attempt
    backoff_s: float = 0.5  #: first retry delay; doubles per failure
    backoff_max_s: float = 30.0
    flush_timeout_s: float = 10.0  #: on exit, wait this long for the outbox to drain (the rest stays)
    discovery: bool = True  #: Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"
    client_id: Optional[str] = None  #: MQTT client id (default facefeat-<host>-<pid>)

    @property
    def enabled(self) -> bool:
        return bool(self.mqtt or self.webhooks)

    @property
    def topic_prefix(self) -> str:
        path = urlsplit(self.mqtt).path.strip("/") if self.mqtt else ""
        return path or "facefeat"

    # -- building ------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping | None, where: str = "events") -> "EventsConfig":
        """A checked config from a mapping (the YAML block); unknown keys are refused."""
        if data is None:
            return cls()
        if isinstance(data, EventsConfig):
            return data.checked()
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of event settings, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        kw: dict[str, Any] = {}
        for k, v in data.items():
            if k not in names:
                near = difflib.get_close_matches(str(k), names, n=1)
                raise ConfigError(f"{where}: unknown key {k!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                                  + f"; valid keys: {', '.join(names)}")
            kw[k] = v
        if isinstance(kw.get("webhooks"), str):
            kw["webhooks"] = [kw["webhooks"]]
        return cls(**kw).checked(where)

    def merged(self, **flags: Any) -> "EventsConfig":
        """A copy with every flag that is not None (or an empty list) replacing the setting."""
        kw = {k: v for k, v in flags.items() if v is not None and v != []}
        return dataclasses.replace(self, **kw).checked()

    def checked(self, where: str = "events") -> "EventsConfig":
        """Validate every field (types, ranges, URL shapes); returns self."""
        def bad(key: str, what: str) -> ConfigError:
            return ConfigError(f"{where}.{key}: {what}, got {getattr(self, key)!r}")

        for key in ("max_events",):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(key, "expected a positive integer")
        for key in ("away_timeout_s", "timeout_s", "backoff_s", "backoff_max_s", "flush_timeout_s"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(key, "expected a number of seconds >= 0")
        if self.timeout_s <= 0:
            raise bad("timeout_s", "expected a number of seconds > 0")
        for key in ("unknown", "discovery"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "expected true or false")
        if self.snapshot not in SNAPSHOTS:
            raise bad("snapshot", f"expected one of {', '.join(SNAPSHOTS)}")
        for key in ("mqtt", "webhook_secret", "webhook_secret_file", "mqtt_password_file", "mqtt_ca_file",
                    "outbox", "client_id", "discovery_prefix"):
            v = getattr(self, key)
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"{where}.{key}: expected a string, got {type(v).__name__}")
        if not isinstance(self.webhooks, list) or not all(isinstance(u, str) for u in self.webhooks):
            raise ConfigError(f"{where}.webhooks: expected a list of URLs")
        if self.mqtt:
            check_url(self.mqtt, MQTT_SCHEMES, "mqtt")
        for key, topic in (("mqtt", self.topic_prefix), ("discovery_prefix", self.discovery_prefix)):
            if any(c in topic for c in "#+\0") or not topic.strip("/"):
                raise ConfigError(f"{where}.{key}: the MQTT topic prefix {topic!r} must be non-empty, without "
                                  "'#', '+' or NUL")
        for u in self.webhooks:
            check_url(u, WEBHOOK_SCHEMES, "webhook")
        for key in ("webhook_secret_file", "mqtt_password_file", "mqtt_ca_file"):
            v = getattr(self, key)
            if v and not Path(v).expanduser().is_file():
                raise ConfigError(f"{where}.{key}: {v!r}: no such file")
        return self

    # -- secrets -------------------------------------------------------------------------------------
    def secret(self) -> Optional[bytes]:
        """The webhook signing key: the setting, else the file, else the environment."""
        if self.webhook_secret:
            return self.webhook_secret.encode("utf-8")
        if self.webhook_secret_file:
            text = Path(self.webhook_secret_file).expanduser().read_text(encoding="utf-8").strip()
            if not text:
                raise ConfigError(f"webhook_secret_file {self.webhook_secret_file!r} is empty")
            return text.encode("utf-8")
        env = os.environ.get(ENV_WEBHOOK_SECRET, "").strip()
        return env.encode("utf-8") if env else None

    def mqtt_password(self) -> Optional[str]:
        """The URL's password, else the password file, else ``$FACEFEAT_MQTT_PASSWORD``."""
        p = urlsplit(self.mqtt or "")
        if p.password is not None:
            from urllib.parse import unquote

            return unquote(p.password)
        if self.mqtt_password_file:
            return Path(self.mqtt_password_file).expanduser().read_text(encoding="utf-8").strip()
        return os.environ.get(ENV_MQTT_PASSWORD) or None


def check_url(url: str, schemes: tuple[str, ...], what: str) -> None:
    """A ConfigError naming ``url`` (password hidden) unless it has one of ``schemes``, a host and
    a valid port."""
    shown = redact(url)
    try:
        p = urlsplit(url)
        port = p.port
    except ValueError as exc:
        raise ConfigError(f"{what} URL {shown!r} is not valid ({exc})") from None
    if p.scheme.lower() not in schemes:
        raise ConfigError(f"{what} URL {shown!r}: scheme must be {' or '.join(s + '://' for s in schemes)}")
    if not p.hostname:
        raise ConfigError(f"{what} URL {shown!r} has no host")
    if port == 0:
        raise ConfigError(f"{what} URL {shown!r}: port 0 is not a port")


__all__ = ["ENV_MQTT_PASSWORD", "ENV_WEBHOOK_SECRET", "EventsConfig", "SNAPSHOTS", "check_url"]
