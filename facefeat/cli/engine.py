"""The engine's command lines: PaddleX's ``facefeat -c CONFIG.yaml -o Section.key=value ...`` (the
mode runner, :func:`main_config`) and the subcommands ``check-dataset``, ``train``, ``evaluate`` and
``export``, which build the same config from flags and run it with
:func:`facefeat.engine.runner.run_config` (the config's YAML and the engine are imported when a command
runs, torch per mode)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from facefeat.cli.output import Output
from facefeat.cli.table import command
from facefeat.models.margins import LOSSES


def _flatten(overrides: Sequence[Sequence[str]] | None) -> list[str]:
    return [o for group in (overrides or []) for o in (group if isinstance(group, (list, tuple)) else [group])]


def main_config(argv: Sequence[str]) -> int:
    """``facefeat -c CONFIG -o Section.key=value ...`` (PaddleX's command line)."""
    argv = list(argv)
    ap = argparse.ArgumentParser(prog="facefeat", description="Run a PaddleX-style config: -c FILE -o Section.key=value")
    ap.add_argument("-c", "--config", required=True, help="YAML config (configs/<Model>.yaml) or a model name")
    ap.add_argument("-o", "--override", action="append", nargs="+", default=[], metavar="Section.key=value",
                    help="override a config value; repeatable")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bars or per-image prints")
    args = ap.parse_args(argv)
    from facefeat.config import load_config
    from facefeat.engine.runner import run_config

    cfg = load_config(args.config, _flatten(args.override))
    return run_config(cfg, quiet=args.quiet)


def _config_from_args(args: argparse.Namespace, mode: str, overrides: list[str]):
    from facefeat.config import load_config

    base = getattr(args, "config", None)
    model = getattr(args, "model", None)
    if base is None:
        base = model or "MobileFaceNet"
    ovr = [f"Global.mode={mode}"]
    if model:
        ovr.append(f"Global.model={model}")
    ovr += overrides + _flatten(getattr(args, "override", None))
    return load_config(base, ovr)


def _common(p: argparse.ArgumentParser, model_help: str = "zoo model (default: the config's, else MobileFaceNet)") -> None:
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("-c", "--config", default=None, help="start from this YAML config (default: the model's)")
    p.add_argument("-o", "--override", action="append", nargs="+", default=[], metavar="Section.key=value",
                   help="any config override, as with facefeat -c; repeatable")
    p.add_argument("--output", default=None, help="output folder (Global.output)")
    p.add_argument("--device", default=None, help="cpu, gpu, gpu:0, gpu:0,1")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _opt(overrides: list[str], key: str, value) -> None:
    if value is not None:
        overrides.append(f"{key}={value}")


def configure_check_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", help="PaddleX face dataset: train/label.txt, val/pair_label.txt")
    p.add_argument("--output", default="./output", help="where check_dataset_result.json goes")
    p.add_argument("--sample-num", type=int, default=None, help="demo images copied per split (default 10)")
    p.add_argument("--full-decode", action="store_true", help="decode every image (slow)")
    p.add_argument("--quiet", action="store_true")


@command("check-dataset", "check a PaddleX face dataset (train/label.txt, val/pair_label.txt)",
         configure_check_dataset)
def cmd_check_dataset(args: argparse.Namespace) -> int:
    from facefeat.config import load_config
    from facefeat.engine.runner import run_check_dataset

    ovr = ["Global.mode=check_dataset", f"Global.dataset_dir={args.dataset_dir}", f"Global.output={args.output}"]
    _opt(ovr, "CheckDataset.sample_num", args.sample_num)
    if args.full_decode:
        ovr.append("CheckDataset.full_decode=true")
    rc = run_check_dataset(load_config(None, ovr), quiet=args.quiet or _json(args))
    return _emit(args, Path(args.output) / "check_dataset_result.json", rc)


def _json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _emit(args: argparse.Namespace, result_file: Path, rc: int) -> int:
    """``--json``: print the mode's result file (the human summary was printed by the mode)."""
    if _json(args) and result_file.is_file():
        Output(json_mode=True).document(json.loads(result_file.read_text(encoding="utf-8")), "")
    return rc


def _output_of(cfg) -> Path:
    return Path(cfg.Global.output)


def configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", help="PaddleX face dataset: train/label.txt (+ val/pair_label.txt)")
    _common(p)
    p.add_argument("--epochs", type=int, default=None, help="Train.epochs_iters")
    p.add_argument("--batch-size", type=int, default=None, help="per-device batch size")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--warmup", type=float, default=None, help="warm-up epochs (Train.warmup_steps)")
    p.add_argument("--pretrain", default=None,
                   help="weights to start from: a file, URL, model name, or 'none' (from scratch)")
    p.add_argument("--resume", default=None, help="checkpoint (or its folder) to resume")
    p.add_argument("--loss", default=None, choices=list(LOSSES))
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)


@command("train", "train a face feature model (ArcMargin/CosMargin) on a PaddleX face dataset",
         configure_train)
def cmd_train(args: argparse.Namespace) -> int:
    from facefeat.engine.runner import run_config

    ovr = [f"Global.dataset_dir={args.dataset_dir}"]
    _opt(ovr, "Global.output", args.output)
    _opt(ovr, "Global.device", args.device)
    _opt(ovr, "Train.epochs_iters", args.epochs)
    _opt(ovr, "Train.batch_size", args.batch_size)
    _opt(ovr, "Train.learning_rate", args.lr)
    _opt(ovr, "Train.warmup_steps", args.warmup)
    if args.pretrain is not None:
        ovr.append("Train.pretrain_weight_path=" + ("null" if args.pretrain.lower() in ("none", "null", "") else args.pretrain))
    _opt(ovr, "Train.resume_path", args.resume)
    _opt(ovr, "Train.loss", args.loss)
    _opt(ovr, "Train.num_workers", args.num_workers)
    _opt(ovr, "Train.seed", args.seed)
    cfg = _config_from_args(args, "train", ovr)
    return _emit(args, _output_of(cfg) / "train_result.json", run_config(cfg, quiet=args.quiet or _json(args)))


def configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("pairs", help="a PaddleX dataset (val/pair_label.txt), a pair_label.txt, or LFW pairs.txt")
    _common(p, "zoo model (default SFace when no weights are given)")
    p.add_argument("--weights", default=None,
                   help="model.pt / .pdparams / .onnx, an exported model folder, or a model name")
    p.add_argument("--model-dir", default=None, help="an exported model folder (inference.onnx + inference.yml)")
    p.add_argument("--no-flip", action="store_true", help="headline metrics without the flip test")
    p.add_argument("--batch-size", type=int, default=None)


@command("evaluate", "face verification on a pair list: 10-fold accuracy, ROC AUC, EER, TAR@FAR",
         configure_evaluate)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from facefeat.engine.runner import run_config

    ovr = [f"Global.dataset_dir={args.pairs}"]
    _opt(ovr, "Global.output", args.output)
    _opt(ovr, "Global.device", args.device)
    weights = args.model_dir or args.weights
    if weights is None and args.config is None:
        weights = args.model or "SFace"
    if args.model is None and args.config is None and weights in (None, "SFace"):
        args.model = "SFace"
    if weights is not None:
        ovr.append(f"Evaluate.weight_path={weights}")
    if args.no_flip:
        ovr.append("Evaluate.flip=false")
    _opt(ovr, "Evaluate.batch_size", args.batch_size)
    cfg = _config_from_args(args, "evaluate", ovr)
    return _emit(args, _output_of(cfg) / "evaluate_result.json", run_config(cfg, quiet=args.quiet or _json(args)))


def configure_export(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--weights", default=None, help="model.pt / .pdparams / .onnx or a model name (default: the model's)")
    p.add_argument("--opset", type=int, default=None)


@command("export", "export a model to ONNX (inference.onnx + inference.yml)",
         configure_export)
def cmd_export(args: argparse.Namespace) -> int:
    from facefeat.engine.runner import run_config

    ovr: list[str] = []
    _opt(ovr, "Global.output", args.output)
    _opt(ovr, "Export.weight_path", args.weights)
    _opt(ovr, "Export.opset", args.opset)
    if args.weights is None and args.model:
        ovr.append(f"Export.weight_path={args.model}")
    cfg = _config_from_args(args, "export", ovr)
    return _emit(args, _output_of(cfg) / "export_result.json", run_config(cfg, quiet=args.quiet or _json(args)))


__all__ = ["cmd_check_dataset", "cmd_evaluate", "cmd_export", "cmd_train", "main_config"]
