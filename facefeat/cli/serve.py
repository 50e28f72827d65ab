"""``facefeat serve | events | dataset``: the HTTP service, events out, and dataset tools."""

from __future__ import annotations

import argparse

from facefeat.cli.output import Output, escape
from facefeat.cli.table import command
from facefeat.events import cli as events_cli
from facefeat.serving import options as serving_options


def _dataset_args(p: argparse.ArgumentParser) -> None:
    from facefeat.data.lfw_demo import configure_cli

    sub = p.add_subparsers(dest="dataset_cmd", metavar="ACTION", required=True)
    configure_cli(sub.add_parser("lfw-demo", help="build a PaddleX-format demo dataset from LFW"))


@command("dataset", "dataset tools (lfw-demo)", _dataset_args)
def cmd_dataset(args: argparse.Namespace) -> int:
    from facefeat.data.lfw_demo import build_from_cli

    s = build_from_cli(args)
    Output.of(args).document(s, escape(
        f"LFW demo dataset -> {s['out_dir']}: {s['num_train_images']} train images of {s['num_train_ids']} people, "
        f"{s['num_val_pairs']} val pairs ({s['align']}); next: facefeat train {s['out_dir']} --model MobileFaceNet "
        "--epochs 2 --pretrain none"))
    return 0


def _events_args(p: argparse.ArgumentParser) -> None:
    events_cli.configure_cli(p)


@command("events", "events out (MQTT, webhooks): 'test' sends a test event to every target, 'status'", _events_args)
def cmd_events(args: argparse.Namespace) -> int:
    return events_cli.run_cli(args)


def _serve_args(p: argparse.ArgumentParser) -> None:
    serving_options.configure_cli(p)


@command("serve", "run the HTTP service (FastAPI + uvicorn) with the web page", _serve_args)
def cmd_serve(args: argparse.Namespace) -> int:
    from facefeat.serving.app import run_cli

    return run_cli(args)


__all__ = ["cmd_dataset", "cmd_events", "cmd_serve"]
