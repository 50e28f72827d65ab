"""PaddleX-style runs: a config's ``Global.mode`` run by :func:`run_config`. The command lines that
build the config - ``facefeat -c CONFIG.yaml -o Section.key=value ...`` and the subcommands
``check-dataset``, ``train``, ``evaluate`` and ``export`` - are :mod:`facefeat.cli.engine`'s.

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

import os
import sys
from pathlib import Path
from typing import Callable, Mapping

from facefeat.cli.output import Output, escape, feature_line
from facefeat.config import Config, as_config, save_config
from facefeat.engine.distributed import in_torchrun, launch, parse_device, single_device
from facefeat.errors import ConfigError

__all__ = [
    "MODE_RUNNERS",
    "predict_model_dir",
    "run_check_dataset",
    "run_config",
    "run_predict_mode",
    "save_used_config",
]


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
        # file names and lines from the dataset: printed escaped
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
    from facefeat.predict.predictor import create_model

    cfg = as_config(cfg)
    g, p = cfg.Global, cfg.Predict
    if p.input in (None, "", []):
        raise ConfigError("Predict.input is required for predict (an image path, a folder, a URL, or a list)")
    kw = {"device": single_device(g.device), "batch_size": p.batch_size, "flip": p.flip}
    model_dir = predict_model_dir(p.model_dir, g.output)
    model = create_model(model_dir=model_dir, **kw) if model_dir else create_model(g.model, **kw)

    out, failures = Output(quiet=quiet), []
    for res in model.predict(p.input, errors="warn", failures=failures):
        out.record(res, feature_line(res))
        res.save_to_json(g.output)
    for exc in failures:
        out.fail(exc)
    return out.finish()


def _run_train(cfg: Config, quiet: bool) -> int:
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
