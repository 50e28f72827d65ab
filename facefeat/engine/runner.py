"""PaddleX-style runs, ``facefeat -c CONFIG.yaml -o Section.key=value ...``, and the subcommands
``check-dataset``, ``train``, ``evaluate`` and ``export``.

    facefeat -c configs/MobileFaceNet.yaml -o Global.mode=check_dataset -o Global.dataset_dir=./dataset/x
    facefeat -c configs/MobileFaceNet.yaml -o Global.mode=train -o Global.dataset_dir=./dataset/x
    facefeat -c configs/MobileFaceNet.yaml -o Global.mode=evaluate -o Global.dataset_dir=./dataset/x \\
             -o Evaluate.weight_path=./output/best_model/model.pt
    facefeat -c configs/MobileFaceNet.yaml -o Global.mode=export -o Export.weight_path=./output/best_model/model.pt
    facefeat -c configs/MobileFaceNet.yaml -o Global.mode=predict -o Predict.model_dir=./output/best_model/inference \\
             -o Predict.input=face.jpg

    facefeat check-dataset ./dataset/x
    facefeat train ./dataset/x --model MobileFaceNet --epochs 10 --pretrain none
    facefeat evaluate ./dataset/x --weights ./output/best_model/model.pt
    facefeat export --model MobileFaceNet --weights ./output/best_model/model.pt --output ./exported

The config used is saved in ``Global.output`` by :func:`run_config` (one policy,
:func:`save_used_config`): as ``config.yaml`` by train and check_dataset, as
``config_<mode>.yaml`` by evaluate, export and predict (so evaluating into a training output keeps
that training's ``config.yaml``). Nothing here imports torch until a mode needs it.

``Global.device=gpu:0,1`` (or ``FACEFEAT_NPROC=N`` with ``Global.device=cpu``) makes ``train``
re-launch itself under ``python -m torch.distributed.run`` (see :mod:`facefeat.engine.distributed`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

from facefeat.config import Config, as_config, load_config, save_config
from facefeat.errors import ConfigError
from facefeat.models.margins import LOSSES

__all__ = [
    "COMMANDS",
    "MODE_RUNNERS",
    "cmd_check_dataset",
    "cmd_evaluate",
    "cmd_export",
    "cmd_train",
    "configure_check_dataset",
    "configure_evaluate",
    "configure_export",
    "configure_train",
    "main_config",
    "register_commands",
    "run_config",
    "save_used_config",
]


# ------------------------------------------------------------------------------------------------
# modes


#: the file each mode's config is saved as in ``Global.output`` (other modes: ``config_<mode>.yaml``)
CONFIG_FILES = {"check_dataset": "config.yaml", "train": "config.yaml"}
#: set for the workers of a run this process launched: their config is saved already
_SAVED_ENV = "FACEFEAT_CONFIG_SAVED"


def save_used_config(cfg: Config) -> Path:
    """The one policy: ``<Global.output>/<CONFIG_FILES[mode]>``, written once, by rank 0."""
    mode = cfg.Global.mode
    out = Path(cfg.Global.output)
    path = out / CONFIG_FILES.get(mode, f"config_{mode}.yaml")
    if os.environ.get("RANK", "0") == "0" and os.environ.get(_SAVED_ENV) != str(path):
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, path)
    return path


def run_check_dataset(cfg: Mapping, quiet: bool = False) -> int:
    from facefeat.data.check import check_dataset

    cfg = as_config(cfg)
    g, c = cfg.Global, cfg.CheckDataset
    if not g.dataset_dir:
        raise ConfigError("Global.dataset_dir is required for check_dataset")
    out = Path(g.output)
    res = check_dataset(g.dataset_dir, out, sample_num=c.sample_num, full_decode=c.full_decode)
    if not quiet:
        a = res.get("attributes", {})
        status = "passed" if res.get("check_pass") else f"FAILED ({res.get('num_errors')} error(s))"
        print(f"dataset check {status}: {a.get('train_samples')} train images, {a.get('train_num_classes')} "
              f"classes, {a.get('val_samples')} val pairs; report: {out / 'check_dataset_result.json'}")
        from facefeat.cli_output import escape  # file names and lines from the dataset: printed escaped

        for e in res.get("errors", [])[:20]:
            where = f"{e['file']}:{e['line']}" if e.get("line") is not None else e["file"]
            print(f"  error: {escape(where)}: {escape(e['message'])}", file=sys.stderr)
        for w in res.get("warnings", [])[:10]:
            where = f"{w['file']}:{w['line']}" if w.get("line") is not None else w["file"]
            print(f"  warning: {escape(where)}: {escape(w['message'])}", file=sys.stderr)
    return 0 if res.get("check_pass") else 1


#: Predict.model_dir's default (PaddleX's): what training writes under ./output
DEFAULT_PREDICT_MODEL_DIR = "output/best_model/inference"


def predict_model_dir(model_dir: str | None, output: str | os.PathLike) -> str | None:
    """The model ``Global.mode=predict`` runs: ``Predict.model_dir`` when it exists; for the default
    (``output/best_model/inference``) the model that export or train wrote under ``Global.output``:
    ``<output>/best_model/inference`` (train), else ``<output>/inference`` (export)."""
    if not model_dir or model_dir != DEFAULT_PREDICT_MODEL_DIR or Path(model_dir).is_dir():
        return model_dir
    out = Path(output)
    for cand in (out / "best_model" / "inference", out / "inference"):
        if (cand / "inference.yml").is_file():
            print(f"facefeat: Predict.model_dir: using {cand}", file=sys.stderr)
            return str(cand)
    raise ConfigError(f"Predict.model_dir {model_dir} does not exist, and {out} holds no exported model "
                      f"({out / 'best_model' / 'inference'} from train, {out / 'inference'} from export): run "
                      "export (or train) first, or pass -o Predict.model_dir=DIR")


def run_predict_mode(cfg: Mapping, quiet: bool = False) -> int:
    from facefeat.engine.distributed import single_device
    from facefeat.predict.predictor import create_model

    cfg = as_config(cfg)
    g, p = cfg.Global, cfg.Predict
    if p.input in (None, "", []):
        raise ConfigError("Predict.input is required for predict (an image path, a folder, a URL, or a list)")
    kw = {"device": single_device(g.device), "batch_size": p.batch_size, "flip": p.flip}
    model_dir = predict_model_dir(p.model_dir, g.output)
    model = create_model(model_dir=model_dir, **kw) if model_dir else create_model(g.model, **kw)
    from facefeat.cli_output import Output, feature_line

    out, failures = Output(quiet=quiet), []
    for res in model.predict(p.input, errors="warn", failures=failures):
        out.record(res, feature_line(res))
        res.save_to_json(g.output)
    for exc in failures:
        out.fail(exc)
    return out.finish()


def _run_train(cfg: Config, quiet: bool) -> int:
    from facefeat.engine.distributed import in_torchrun, launch, parse_device

    dev = parse_device(cfg.Global.device)
    if dev.nproc > 1 and not in_torchrun():  # one process per device: run the saved config under torchrun
        path = save_used_config(cfg)
        args = ["-c", str(path)] + (["--quiet"] if quiet else [])
        return launch(dev, args, env={**os.environ, _SAVED_ENV: str(path)})
    from facefeat.engine.train import run_train

    res = run_train(cfg, quiet=quiet, on_start=lambda: save_used_config(cfg))
    return 0 if (not res or res.get("done_flag")) else 1


def _run_evaluate(cfg: Config, quiet: bool) -> int:
    from facefeat.engine.evaluate import run_evaluate

    run_evaluate(cfg, quiet=quiet)
    return 0


def _run_export(cfg: Config, quiet: bool) -> int:
    from facefeat.engine.export import run_export

    return 0 if run_export(cfg, quiet=quiet).get("verify_ok", True) else 1


#: Global.mode -> its runner (config in, exit code out)
MODE_RUNNERS: dict[str, Callable[[Config, bool], int]] = {
    "check_dataset": run_check_dataset,
    "train": _run_train,
    "evaluate": _run_evaluate,
    "export": _run_export,
    "predict": run_predict_mode,
}


def run_config(cfg: Mapping, quiet: bool = False) -> int:
    """Run ``cfg``'s ``Global.mode``; returns the exit code.

    The config used is saved (:func:`save_used_config`) once the mode has run - train saves it
    as it starts writing - so a run that could not start writes nothing.
    """
    mode = (cfg.get("Global") or {}).get("mode")
    if mode not in MODE_RUNNERS:
        raise ConfigError(f"unknown Global.mode {mode!r}; one of: {', '.join(MODE_RUNNERS)}")
    cfg = as_config(cfg)
    rc = MODE_RUNNERS[mode](cfg, quiet)
    if mode != "train":
        save_used_config(cfg)
    return rc


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
    cfg = load_config(args.config, _flatten(args.override))
    return run_config(cfg, quiet=args.quiet)


# ------------------------------------------------------------------------------------------------
# subcommands


def _config_from_args(args: argparse.Namespace, mode: str, overrides: list[str]):
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


def cmd_check_dataset(args: argparse.Namespace) -> int:
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
        import json

        from facefeat.cli_output import Output

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


def cmd_train(args: argparse.Namespace) -> int:
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


def cmd_evaluate(args: argparse.Namespace) -> int:
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


def cmd_export(args: argparse.Namespace) -> int:
    ovr: list[str] = []
    _opt(ovr, "Global.output", args.output)
    _opt(ovr, "Export.weight_path", args.weights)
    _opt(ovr, "Export.opset", args.opset)
    if args.weights is None and args.model:
        ovr.append(f"Export.weight_path={args.model}")
    cfg = _config_from_args(args, "export", ovr)
    return _emit(args, _output_of(cfg) / "export_result.json", run_config(cfg, quiet=args.quiet or _json(args)))


#: name -> (help, configure, function), for facefeat.cli's registry
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "check-dataset": ("check a PaddleX face dataset (train/label.txt, val/pair_label.txt)",
                      configure_check_dataset, cmd_check_dataset),
    "train": ("train a face feature model (ArcMargin/CosMargin) on a PaddleX face dataset",
              configure_train, cmd_train),
    "evaluate": ("face verification on a pair list: 10-fold accuracy, ROC AUC, EER, TAR@FAR",
                 configure_evaluate, cmd_evaluate),
    "export": ("export a model to ONNX (inference.onnx + inference.yml)", configure_export, cmd_export),
}


def register_commands(command: Callable) -> None:
    """Register the subcommands with ``facefeat.cli.command`` (``command(name, help, configure)(fn)``)."""
    for name, (help_, configure, fn) in COMMANDS.items():
        command(name, help_, configure)(fn)
