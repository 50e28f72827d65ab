"""``facefeat serve | events | dataset``: the HTTP service, events out, and dataset tools."""

from __future__ import annotations

import argparse

from facefeat.cli.output import Output, escape
from facefeat.cli.table import command
from facefeat.data.lfw_demo import build_from_cli
from facefeat.data.lfw_demo import configure_cli as configure_lfw_demo
from facefeat.events.cli import configure_cli as configure_events
from facefeat.events.cli import run_cli as run_events
from facefeat.serving.options import configure_cli as configure_serve


def _dataset_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dataset_cmd", metavar="ACTION", required=True)
    configure_lfw_demo(sub.add_parser("lfw-demo", help="build a PaddleX-format demo dataset from LFW"))


@command("dataset", "dataset tools (lfw-demo)", _dataset_args)
def cmd_dataset(args: argparse.Namespace) -> int:
    s = build_from_cli(args)
    Output.of(args).document(s, escape(
        f"LFW demo dataset -> {s['out_dir']}: {s['num_train_images']} train images of {s['num_train_ids']} people, "
        f"{s['num_val_pairs']} val pairs ({s['align']}); next: facefeat train {s['out_dir']} --model MobileFaceNet "
        "--epochs 2 --pretrain none"))
    return 0


@command("events", "events out (MQTT, webhooks): 'test' sends a test event to every target, 'status'",
         configure_events)
def cmd_events(args: argparse.Namespace) -> int:
    return run_events(args)


@command("serve", "run the HTTP service (FastAPI + uvicorn) with the web page", configure_serve)
def cmd_serve(args: argparse.Namespace) -> int:
    from facefeat.serving.app import run_cli  # FastAPI and uvicorn: imported when serving

    return run_cli(args)


__all__ = ["cmd_dataset", "cmd_events", "cmd_serve"]
