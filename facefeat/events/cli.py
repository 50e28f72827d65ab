"""Event flags for ``facefeat recognize`` (and the events part of a pipeline YAML), and the
``facefeat events`` command: ``test`` sends one test event to every target and reports what each
answered; ``status`` shows an outbox's counters."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from facefeat.errors import ConfigError
from facefeat.events.config import SNAPSHOTS, EventsConfig
from facefeat.events.hub import EventHub, build_targets
from facefeat.events.outbox import Outbox
from facefeat.events.types import Event
from facefeat.utils import cache_dir


def default_outbox() -> Path:
    """``<facefeat home>/events/outbox.sqlite``: the outbox of ``recognize`` unless configured."""
    return cache_dir() / "events" / "outbox.sqlite"


def add_event_flags(p: argparse.ArgumentParser) -> None:
    """The event flags (every one optional; they override the YAML's ``events:`` block)."""
    g = p.add_argument_group("events (MQTT / webhooks; see docs/guides/events.md)")
    g.add_argument("--mqtt", default=None, metavar="URL",
                   help="send events to this broker: mqtt[s]://[user[:pass]@]host[:port][/topic_prefix]")
    g.add_argument("--webhook", dest="webhooks", action="append", default=[], metavar="URL",
                   help="POST events to this URL (repeatable)")
    g.add_argument("--webhook-secret", default=None, metavar="SECRET",
                   help="HMAC-SHA256 key of X-Facefeat-Signature (visible in 'ps': prefer "
                        "--webhook-secret-file or $FACEFEAT_WEBHOOK_SECRET)")
    g.add_argument("--webhook-secret-file", default=None, metavar="FILE", help="read the webhook secret from FILE")
    g.add_argument("--events-config", default=None, metavar="FILE.yaml",
                   help="a pipeline YAML with an events: block (or a YAML of the block alone)")
    g.add_argument("--events-outbox", default=None, metavar="FILE",
                   help=f"the SQLite outbox (default: {default_outbox()})")
    g.add_argument("--away-timeout", type=float, default=None, metavar="S",
                   help="presence: unseen this many seconds means left (default 30)")
    g.add_argument("--snapshot", default=None, choices=SNAPSHOTS, help="a JPEG of the face or frame in events")


def load_events_block(path: str | os.PathLike) -> EventsConfig:
    """The ``events:`` block of a pipeline YAML, or a YAML holding the block alone."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"events config {str(path)!r}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if isinstance(data, dict) and ("pipeline_name" in data or "SubModules" in data):
        from facefeat.config import load_pipeline_config

        return EventsConfig.from_mapping(load_pipeline_config(str(p)).get("events"), f"{p}: events")
    if isinstance(data, dict) and set(data) == {"events"}:
        data = data["events"]
    return EventsConfig.from_mapping(data, f"{p}: events")


def config_from_args(args: argparse.Namespace, base: EventsConfig | None = None) -> EventsConfig:
    """``base`` (or the ``--events-config`` file's block) with the flags applied."""
    if base is None:
        base = load_events_block(args.events_config) if getattr(args, "events_config", None) else EventsConfig()
    return base.merged(mqtt=args.mqtt, webhooks=list(args.webhooks or []), webhook_secret=args.webhook_secret,
                       webhook_secret_file=args.webhook_secret_file, outbox=args.events_outbox,
                       away_timeout_s=getattr(args, "away_timeout", None), snapshot=getattr(args, "snapshot", None))


def open_hub(args: argparse.Namespace, people: Iterable[str] = (), sources: Iterable[str] = ()):
    """The hub the flags ask for (connected, senders running), or None when no target is set."""
    cfg = config_from_args(args)
    if not cfg.enabled:
        return None

    return EventHub.open(cfg, outbox=cfg.outbox or default_outbox(), people=people, sources=sources)


# -- facefeat events ----------------------------------------------------------------------------------
def configure_cli(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="events_cmd", metavar="ACTION", required=True)
    t = sub.add_parser("test", help="send one test event to every configured target; report each answer")
    add_event_flags(t)
    t.add_argument("--json", action="store_true", help="print the report as JSON")
    s = sub.add_parser("status", help="an outbox's counters per target (pending, delivered, dropped, failed)")
    s.add_argument("--events-outbox", default=None, metavar="FILE", help=f"default: {default_outbox()}")


def run_cli(args: argparse.Namespace) -> int:
    if args.events_cmd == "status":
        return _status(args)
    return _test(args)


def _status(args: argparse.Namespace) -> int:
    path = Path(args.events_outbox or default_outbox())
    if not path.is_file():
        raise ConfigError(f"events outbox {path}: no such file")
    box = Outbox(path)
    try:
        print(json.dumps({"outbox": str(path), "targets": box.counters()}, indent=2))
    finally:
        box.close()
    return 0


def _test(args: argparse.Namespace) -> int:
    """Connect each target (a start error is that target's answer) and send it one test event."""
    cfg = config_from_args(args)
    if not cfg.enabled:
        raise ConfigError("events test: no target configured; give --mqtt and/or --webhook (or --events-config)")
    rows: list[dict[str, Any]] = []
    for target in build_targets(cfg):
        ev = Event("test", "facefeat events test", {"message": "facefeat test event"})
        try:
            target.check()
            ok, answer = target.test(ev.to_json())
        except ConfigError as exc:
            ok, answer = False, str(exc)
        finally:
            target.close()
        rows.append({"target": target.name, "ok": ok, "answer": answer, "id": ev.id})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['target']}: {r['answer']}")
    if not all(r["ok"] for r in rows):
        print(f"facefeat: events test: {sum(not r['ok'] for r in rows)} of {len(rows)} target(s) failed",
              file=sys.stderr)
        return 1
    return 0


__all__ = ["add_event_flags", "config_from_args", "configure_cli", "default_outbox", "load_events_block",
           "open_hub", "run_cli"]
