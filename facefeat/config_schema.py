"""The mode configs' schema: every section and key with its accepted type(s) and default
(:data:`SCHEMA`), the per-model differences from the registry (:data:`MODEL_DEFAULTS`), and
checking one value against its key (:func:`coerce`). Loading and overriding is :mod:`facefeat.config`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from facefeat.errors import ConfigError
from facefeat.models.margins import DEFAULT_SCALE, LOSSES, MARGIN_DEFAULTS
from facefeat.registry import get_spec, list_models

__all__ = ["LOSSES", "LOSS_DEFAULT_MARGIN", "MODEL_DEFAULTS", "MODES", "PADDLEX_FACE_DETECTORS", "PIPELINE_DETECTOR",
           "PIPELINE_KEYS", "SCHEMA", "SUBMODULE_KEYS", "TYPE_NAMES", "Key", "check_key", "check_section", "coerce",
           "model_defaults", "suggest"]

MODES = ("check_dataset", "train", "evaluate", "export", "predict")
LOSS_DEFAULT_MARGIN = MARGIN_DEFAULTS

TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}


@dataclass(frozen=True)
class Key:
    """One config key: accepted type(s), default, whether ``null`` is allowed, allowed values."""

    types: tuple[type, ...]
    default: Any = None
    nullable: bool = False
    choices: tuple | None = None
    doc: str = ""

    @property
    def type_name(self) -> str:
        names = [TYPE_NAMES.get(t, t.__name__) for t in self.types]
        if self.nullable:
            names.append("null")
        text = " or ".join(names)
        if self.choices:
            text += " (one of: " + ", ".join(map(str, self.choices)) + ")"
        return text


def _k(types: type | tuple[type, ...], default: Any = None, nullable: bool = False, choices=None, doc: str = "") -> Key:
    types = types if isinstance(types, tuple) else (types,)
    return Key(types, default, nullable or default is None, tuple(choices) if choices else None, doc)


#: section -> key -> Key. The single source of keys, types and (model-independent) defaults.
SCHEMA: dict[str, dict[str, Key]] = {
    "Global": {
        "model": _k(str, "MobileFaceNet", doc="model name (" + ", ".join(list_models()) + ")"),
        "mode": _k(str, "check_dataset", choices=MODES, doc="what main runs"),
        "dataset_dir": _k(str, None, doc="PaddleX face dataset: train/label.txt, val/pair_label.txt"),
        "device": _k(str, "cpu", doc="cpu, gpu, gpu:0 or gpu:0,1 (several GPUs: data parallel)"),
        "output": _k(str, "./output", doc="where results, weights and logs go"),
    },
    "CheckDataset": {
        "sample_num": _k(int, 10, doc="how many demo images to copy to output/check_dataset/demo_img"),
        "full_decode": _k(bool, False, doc="decode every image (slow) instead of reading headers only"),
        "convert": _k(dict, {"enable": False, "src_dataset_type": None}, doc="PaddleX placeholder; not supported"),
        "split": _k(
            dict, {"enable": False, "train_percent": None, "val_percent": None}, doc="PaddleX placeholder; not supported"
        ),
    },
    "Train": {
        "num_classes": _k(int, None, doc="identities in train/label.txt; null: max label + 1"),
        "epochs_iters": _k(int, 25, doc="epochs"),
        "batch_size": _k(int, 128, doc="per-device batch size"),
        "learning_rate": _k(float, 0.002, doc="peak learning rate (AdamW, cosine decay)"),
        "pretrain_weight_path": _k(str, None, doc="weights to start from (path, URL or model name); null: scratch"),
        "warmup_steps": _k((int, float), 1, doc="linear warm-up length in EPOCHS (PaddleX's meaning)"),
        "resume_path": _k(str, None, doc="checkpoint to resume (model, optimizer, epoch)"),
        "log_interval": _k(int, 1, doc="log every N iterations"),
        "eval_interval": _k(int, 1, doc="evaluate every N epochs"),
        "save_interval": _k(int, 1, doc="save a checkpoint every N epochs"),
        "weight_decay": _k(float, 0.05),
        "num_workers": _k(int, 2, doc="data-loader worker processes"),
        "seed": _k(int, 0),
        "flip": _k(bool, True, doc="random horizontal flip augmentation"),
        "grad_clip": _k(float, None, doc="clip gradients to this global norm; null: off"),
        "amp": _k(bool, False, doc="mixed precision (GPU only)"),
        "loss": _k(str, "ArcMargin", choices=LOSSES, doc="margin head"),
        "margin": _k(float, None, doc="m; null: the loss's default ("
                     + ", ".join(f"{k} {v}" for k, v in MARGIN_DEFAULTS.items()) + ")"),
        "scale": _k(float, DEFAULT_SCALE, doc="s, the logit scale"),
    },
    "Evaluate": {
        "weight_path": _k(str, "output/best_model/model.pt", nullable=True),
        "log_interval": _k(int, 1),
        "flip": _k(bool, True, doc="add the horizontally flipped image's feature (flip test)"),
        "batch_size": _k(int, 64),
    },
    "Export": {
        "weight_path": _k(str, None, doc="weights to export; null: the model's pretrained weights"),
        "opset": _k(int, 17, doc="ONNX opset"),
    },
    "Predict": {
        "batch_size": _k(int, 1),
        "model_dir": _k(str, "output/best_model/inference", nullable=True),
        "input": _k((str, list), None, doc="image path, directory, URL or a list of these"),
        "flip": _k(bool, False, doc="add the flipped image's feature (PaddleX does not)"),
        "kernel_option": _k(dict, {"run_mode": "paddle"}, doc="PaddleX compatibility; run_mode is ignored"),
    },
}


def model_defaults(name: str) -> dict[str, dict[str, Any]]:
    """The config sections in which model ``name`` differs from the schema (from its registry spec)."""
    spec = get_spec(name)
    return {"Global": {"model": spec.name},
            "Train": {**spec.train_defaults, "pretrain_weight_path": spec.name},
            "Export": {"weight_path": spec.name}}


#: model -> the sections in which its defaults differ from the schema's (MobileFaceNet's)
MODEL_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {m: model_defaults(m) for m in list_models()}


def suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_section(section: str, where: str) -> None:
    if section not in SCHEMA:
        raise ConfigError(
            f"{where}: unknown section {section!r}{suggest(section, SCHEMA)}; "
            f"valid sections: {', '.join(SCHEMA)}"
        )


def check_key(section: str, key: str, where: str) -> Key:
    check_section(section, where)
    keys = SCHEMA[section]
    if key not in keys:
        raise ConfigError(
            f"{where}: unknown key {section}.{key}{suggest(key, keys)}; "
            f"valid keys of {section}: {', '.join(keys)}"
        )
    return keys[key]


def coerce(section: str, key: str, spec: Key, value: Any, where: str, raw: str | None = None) -> Any:
    """Check ``value`` against ``spec``; return it, converted where that is lossless."""
    name = f"{section}.{key}"

    def bad(extra: str = "") -> ConfigError:
        shown = raw if raw is not None else repr(value)
        return ConfigError(
            f"{where}: {name} expects {spec.type_name}, got {shown!r}"
            + (f" ({type(value).__name__})" if raw is None else "")
            + extra
        )

    if value is None:
        if spec.nullable:
            return None
        raise bad()
    out = _MISSING = object()
    for t in spec.types:
        if t is bool and isinstance(value, bool):
            out = value
        elif t is int and isinstance(value, int) and not isinstance(value, bool):
            out = value
        elif t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            out = float(value)
        elif t is str and isinstance(value, str):
            out = value
        elif t is list and isinstance(value, (list, tuple)):
            out = list(value)
        elif t is dict and isinstance(value, Mapping):
            out = dict(value)
        if out is not _MISSING:
            break
    if out is _MISSING:
        # lenient, lossless conversions: numbers written where a string is expected (a folder
        # named 2024), and floats YAML 1.1 reads as strings ("1e-3").
        if str in spec.types and isinstance(value, (int, float)) and not isinstance(value, bool):
            out = raw if raw is not None else str(value)
        elif float in spec.types and isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                raise bad() from None
        elif int in spec.types and isinstance(value, float) and value.is_integer():
            out = int(value)
        else:
            raise bad()
    if spec.choices and out not in spec.choices:
        raise ConfigError(
            f"{where}: {name} must be one of {', '.join(map(str, spec.choices))}; got {out!r}"
            + suggest(str(out), map(str, spec.choices))
        )
    return out


# -- pipeline configs (PaddleX's pipeline YAML: pipeline_name, thresholds, index, SubModules) --------
#: facefeat's detector, and the PaddleX face detectors it stands in for (logged when mapped)
PIPELINE_DETECTOR = "YuNet"
PADDLEX_FACE_DETECTORS = ("PP-YOLOE_plus-S_face", "BlazeFace", "BlazeFace-FPN-SSH", "PicoDet_LCNet_x2_5_face")
#: top-level keys of a face_recognition config -> accepted types (None: any, ignored with a note)
PIPELINE_KEYS: dict[str, tuple[type, ...] | None] = {
    "pipeline_name": (str,), "index": (str, type(None)), "det_threshold": (int, float),
    "rec_threshold": (int, float, str), "rec_topk": (int,), "SubModules": (dict,),  # str: "auto"
    # facefeat's own knobs (same names as the FaceRecognitionPipeline arguments)
    "align": (str,), "flip": (bool,), "min_face_size": (int,), "nms_threshold": (int, float),
    "landmarks": (str,),  # plain | mirror: facefeat.vision.refine
    "device": (str,), "num_threads": (int, type(None)),
    "events": (dict, type(None)),  # events out (MQTT, webhooks): facefeat.events.config.EventsConfig
    # PaddleX keys facefeat does not use
    "hamming_radius": None, "use_hpip": None, "hpi_config": None, "engine": None, "engine_config": None,
}
SUBMODULE_KEYS = ("module_name", "model_name", "model_dir", "batch_size", "weights")
