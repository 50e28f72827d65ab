"""``facefeat serve`` settings: one :class:`Settings` dataclass; the CLI flags are generated from
its fields (help, flag name and type live in each field's metadata). Importable without FastAPI."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from facefeat.errors import InputError
from facefeat.utils import cache_dir

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000  # 5000 x 5000
DEFAULT_MAX_BUILD_IMAGES = 64
DEFAULT_MAX_REQUEST_PIXELS = 100_000_000  # all images of one request: 4 of the largest, 300 MB decoded
DEFAULT_MAX_FACES = 100
DEFAULT_MAX_UNKNOWN_FIELDS = 64
ENV_API_KEYS = "FACEFEAT_API_KEYS"
ENV_API_KEY_FILE = "FACEFEAT_API_KEY_FILE"
ROLES = ("admin", "read")
#: what a role prefix looks like: ``Read:KEY``, ``ro:KEY`` are refused, not taken as admin keys
_ROLE_LIKE = re.compile(r"[A-Za-z][A-Za-z_-]{0,15}")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

log = logging.getLogger("facefeat.serving")


def _opt(help: str, flag: str | None = None, cli: bool = True, metavar: str | None = None,
         parse: Any = None) -> dict:
    return {"help": help, "flag": flag, "cli": cli, "metavar": metavar, "parse": parse}


def threshold_arg(v: Any) -> Any:
    """A recognition threshold setting: ``"auto"`` (the model's calibrated point) or a number."""
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'auto' or a number in [0, 1], got {v!r}") from None
    return v


@dataclass
class Settings:
    """Every option of the service; ``facefeat serve --help`` lists them."""

    host: str = field(default="127.0.0.1", metadata=_opt("address to bind"))
    port: int = field(default=8080, metadata=_opt("port to bind"))
    workers: int = field(default=1, metadata=_opt("uvicorn worker processes"))
    log_level: str = field(default="info", metadata=_opt("uvicorn log level"))
    storage_dir: Optional[str] = field(default=None, metadata=_opt(
        "directory for the gallery indexes (default: <facefeat home>/serve, printed at start)", flag="--storage",
        metavar="DIR"))
    pipeline: Optional[str] = field(default=None, metadata=_opt(
        "pipeline config (a face_recognition YAML file); default: the built-in face_recognition pipeline",
        metavar="FILE.yaml"))
    model: Optional[str] = field(default=None, metadata=_opt("feature model (default: the pipeline's, SFace)"))
    index_backend: str = field(default="faiss", metadata=_opt("gallery index backend: faiss or milvus"))
    milvus_uri: Optional[str] = field(default=None, metadata=_opt(
        "Milvus server URI (default: milvus-lite files under --storage)"))
    store: Optional[str] = field(default=None, metadata=_opt(
        "where the galleries live: a postgresql:// URL shared by several servers (default: SQLite files "
        "under --storage)", metavar="URL"))
    max_body_bytes: int = field(default=DEFAULT_MAX_BODY_BYTES, metadata=_opt("largest request body"))
    max_image_pixels: int = field(default=DEFAULT_MAX_IMAGE_PIXELS, metadata=_opt("largest image (width x height)"))
    max_build_images: int = field(default=DEFAULT_MAX_BUILD_IMAGES, metadata=_opt("images per build/add request"))
    max_request_pixels: int = field(default=DEFAULT_MAX_REQUEST_PIXELS, metadata=_opt(
        "decoded pixels of all images of one request together (checked from the headers, before decoding)"))
    max_faces: int = field(default=DEFAULT_MAX_FACES, metadata=_opt(
        "faces processed per image, the largest first; results say facesCapped when an image has more"))
    max_unknown_fields: int = field(default=DEFAULT_MAX_UNKNOWN_FIELDS, metadata=_opt(
        "unknown JSON fields a request body may carry (ignored); more is a 422"))
    request_timeout_s: float = field(default=60.0, metadata=_opt(
        "deadline of one request's work (s): waiting for a pipeline past it is a 503, work past it a 504"))
    header_timeout_s: float = field(default=10.0, metadata=_opt(
        "a connection whose request headers are not all received within this many seconds is closed"))
    body_timeout_s: float = field(default=30.0, metadata=_opt(
        "a request body not received within this many seconds is a 408"))
    client_slots: int = field(default=0, metadata=_opt(
        "pipelines one client (API key, or address) may hold at once (0: no cap; a freed pipeline still goes "
        "first to the waiting client holding fewest)"))
    feature_models: list = field(default_factory=list, metadata=_opt(
        "another zoo model for /face-feature-infer (repeatable)", flag="--feature-model", metavar="NAME"))
    det_threshold: Optional[float] = field(default=None, metadata=_opt("default detection threshold"))
    rec_threshold: Union[float, str, None] = field(default="auto", metadata=_opt(
        "default recognition threshold: auto (the model's calibrated operating point) or a number in [0, 1]",
        parse=threshold_arg, metavar="auto|NUMBER"))
    rec_topk: Optional[int] = field(default=None, metadata=_opt("default number of gallery matches"))
    infer_concurrency: int = field(default=0, metadata=_opt("pipelines working at once (0: min(4, CPUs))"))
    num_threads: Optional[int] = field(default=None, metadata=_opt("runtime threads per model", flag="--threads"))
    batch_window_ms: float = field(default=2.0, metadata=_opt(
        "embed concurrent requests' faces together: wait this long after the first (0: no batching)"))
    batch_max: int = field(default=32, metadata=_opt("most faces embedded in one batch"))
    allow_url_images: bool = field(default=False, metadata=_opt(
        "accept http(s) image URLs (off: base64 only); public addresses only, see --url-allow-network"))
    url_timeout_s: float = field(default=10.0, metadata=_opt("total deadline of one image download (s)"))
    url_max_bytes: int = field(default=0, metadata=_opt("largest downloaded image (0: --max-body-bytes)"))
    url_fetch_concurrency: int = field(default=4, metadata=_opt(
        "image downloads at once (the fetch pool); more are refused with 503"))
    url_allowed_networks: list = field(default_factory=list, metadata=_opt(
        "a non-public network image URLs may reach, e.g. 10.0.0.5/32 (repeatable)", flag="--url-allow-network", metavar="CIDR"))
    api_keys: list = field(default_factory=list, repr=False, metadata=_opt(
        f"API key: KEY or admin:KEY (every operation), read:KEY (no index changes); repeatable; also "
        f"${ENV_API_KEYS} (comma-separated). With keys set every endpoint but /health and the page needs one",
        flag="--api-key", metavar="KEY"))
    api_key_file: Optional[str] = field(default=None, metadata=_opt(
        f"file of API keys, one [admin:|read:]KEY per line (# comments); keeps keys out of the process list; "
        f"also ${ENV_API_KEY_FILE}", metavar="FILE"))
    allowed_hosts: list = field(default_factory=list, metadata=_opt(
        "Host header values accepted (repeatable, * for any); default: the bind address and localhost",
        flag="--allowed-host", metavar="HOST"))
    mqtt: Optional[str] = field(default=None, metadata=_opt(
        "send events (recognitions, presence, gallery changes) to this MQTT broker, with Home Assistant "
        "discovery: mqtt[s]://[user[:pass]@]host[:port][/topic_prefix]", metavar="URL"))
    webhooks: list = field(default_factory=list, metadata=_opt(
        "POST events to this URL (repeatable), signed with --webhook-secret", flag="--webhook", metavar="URL"))
    webhook_secret: Optional[str] = field(default=None, repr=False, metadata=_opt(
        "webhook HMAC-SHA256 key (prefer --webhook-secret-file or $FACEFEAT_WEBHOOK_SECRET)", metavar="SECRET"))
    webhook_secret_file: Optional[str] = field(default=None, metadata=_opt("read the webhook secret from FILE",
                                                                            metavar="FILE"))
    events_outbox: Optional[str] = field(default=None, metadata=_opt(
        "events outbox (SQLite; default: <storage>/events/outbox.sqlite)", metavar="FILE"))
    background_load: bool = field(default=False, metadata=_opt("accept connections before the models are loaded",
                                                               cli=False))

    # -- derived values ------------------------------------------------------------------------------
    def resolved(self) -> "Settings":
        """A checked copy with defaults filled in (storage folder, keys from the environment, hosts)."""
        s = dataclasses.replace(self, feature_models=list(self.feature_models), api_keys=list(self.api_keys),
                                webhooks=list(self.webhooks),
                                allowed_hosts=list(self.allowed_hosts),
                                url_allowed_networks=list(self.url_allowed_networks))
        if not s.storage_dir:
            s.storage_dir = str(cache_dir() / "serve")
        s.storage_dir = str(Path(s.storage_dir).expanduser().resolve())
        env = os.environ.get(ENV_API_KEYS, "")
        s.api_keys += [k.strip() for k in env.split(",") if k.strip() and k.strip() not in s.api_keys]
        s.api_key_file = s.api_key_file or os.environ.get(ENV_API_KEY_FILE) or None
        if s.api_key_file:
            s.api_keys += [k for k in read_key_file(s.api_key_file) if k not in s.api_keys]
            s.api_key_file = None  # read once; workers get the keys themselves
        if not s.allowed_hosts:
            s.allowed_hosts = ["*"] if s.host in ("0.0.0.0", "::", "") else sorted({s.host, *LOOPBACK_NAMES})
        if not s.url_max_bytes:
            s.url_max_bytes = s.max_body_bytes
        s.check()
        return s

    def keys(self) -> list[tuple[str, str]]:
        """``(key, role)`` pairs; a bare key is an admin key. An unknown role prefix (``Read:``,
        ``ro:``, ``readonly:``) is refused rather than taken as part of an admin key."""
        out = []
        for k in self.api_keys:
            role, sep, rest = str(k).partition(":")
            if sep and role in ROLES and rest:
                out.append((rest, role))
            elif sep and _ROLE_LIKE.fullmatch(role):
                raise InputError(f"API key with unknown role {role!r}: roles are {', '.join(ROLES)} (lower case), "
                                 "as admin:KEY or read:KEY; a key that itself holds ':' is given as admin:KEY")
            else:
                out.append((str(k), "admin"))
        return out

    def check(self) -> None:
        for name in ("max_body_bytes", "max_image_pixels", "max_build_images", "url_fetch_concurrency", "workers",
                     "max_request_pixels", "max_faces", "max_unknown_fields"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        if str(self.index_backend).lower() not in ("faiss", "milvus"):
            raise InputError(f"index_backend must be 'faiss' or 'milvus', got {self.index_backend!r}")
        for name in ("det_threshold", "rec_threshold"):
            v = getattr(self, name)
            if name == "rec_threshold" and v == "auto":
                continue
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1):
                raise InputError(f"{name} must be a number in [0, 1]" + (" or 'auto'" if name == "rec_threshold" else "")
                             + f", got {v!r}")
        if isinstance(self.client_slots, bool) or not isinstance(self.client_slots, int) or self.client_slots < 0:
            raise InputError(f"client_slots must be 0 (auto) or a positive integer, got {self.client_slots!r}")
        for name in ("request_timeout_s", "header_timeout_s", "body_timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0 < v <= 3600):
                raise InputError(f"{name} must be in (0, 3600] seconds, got {v!r}")
        if not (isinstance(self.batch_window_ms, (int, float)) and 0 <= self.batch_window_ms <= 1000) or \
                isinstance(self.batch_max, bool) or not isinstance(self.batch_max, int) or self.batch_max < 1:
            raise InputError(f"batch_window_ms must be in [0, 1000] and batch_max a positive integer, got "
                             f"{self.batch_window_ms!r} / {self.batch_max!r}")
        if not (isinstance(self.url_timeout_s, (int, float)) and 0 < self.url_timeout_s <= 300):
            raise InputError(f"url_timeout_s must be in (0, 300] seconds, got {self.url_timeout_s!r}")
        if self.url_max_bytes and not 0 < self.url_max_bytes <= self.max_body_bytes:
            raise InputError(f"url_max_bytes ({self.url_max_bytes}) must be positive and at most "
                             f"max_body_bytes ({self.max_body_bytes})")
        for n in self.url_allowed_networks:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise InputError(f"url_allowed_networks: {n!r} is not an IP network (e.g. 10.0.0.5/32)") from None
        for key, _role in self.keys():
            if len(key) < 8:
                raise InputError("an API key must be at least 8 characters long")
        if self.pipeline and not Path(self.pipeline).is_file():
            raise InputError(f"pipeline config {self.pipeline!r}: no such file")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> "Settings":
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise InputError("serve settings must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown serve settings: {', '.join(unknown)}")
        return cls(**data)


def read_key_file(path: str | os.PathLike) -> list[str]:
    """The keys of an API key file: one ``[role:]KEY`` per line; blank lines and ``#`` comments
    are skipped. A file others may read is used, with a warning."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
        mode = p.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"API key file {str(p)!r}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if mode & 0o077:
        log.warning("API key file %s can be read by other users (mode %o); chmod 600 it", p, mode & 0o777)
    keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not keys:
        raise InputError(f"API key file {str(p)!r} holds no keys (one [admin:|read:]KEY per line)")
    return keys


# -- the CLI, generated from the fields ---------------------------------------------------------------


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def configure_cli(p: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        md = f.metadata
        if not md.get("cli", True):
            continue
        kind = hints[f.name]
        args = (_flag(f),)
        kw: dict[str, Any] = {"dest": f.name, "help": md.get("help")}
        if md.get("metavar"):
            kw["metavar"] = md["metavar"]
        if kind is bool:
            kw["action"] = "store_true"
        elif typing.get_origin(kind) is list or kind is list:
            kw.update(action="append", default=[])
        else:
            inner = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
            kw.update(type=md.get("parse") or inner[0], default=f.default)
        p.add_argument(*args, **kw)


def settings_from_args(a: argparse.Namespace) -> Settings:
    kw = {f.name: getattr(a, f.name) for f in dataclasses.fields(Settings) if hasattr(a, f.name)}
    return Settings(**kw)
