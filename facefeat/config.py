"""PaddleX-style configs: a YAML file plus ``-o Section.key=value`` overrides, validated.

One schema (:data:`SCHEMA`) says, for every section and key, the accepted type(s) and the default;
the few per-model differences (batch size, learning rate, ...) come from the registry
(``ModelSpec.train_defaults``; :data:`MODEL_DEFAULTS` shows them as config sections). The YAML
files shipped in the package (``facefeat/configs/<Model>.yaml``) are that schema written out with
comments, and a test keeps them equal to :func:`default_config`.

    cfg = load_config("configs/MobileFaceNet.yaml", ["Global.mode=train", "Train.batch_size=64"])
    cfg.Train.batch_size        # 64 (attribute access)
    cfg["Train"]["epochs_iters"]  # 25 (item access)
    save_config(cfg, "output/config.yaml")

Override values are parsed like YAML scalars (``yaml.safe_load``): ``10`` -> int, ``0.1`` -> float,
``true`` -> bool, ``null`` -> None, ``[1,2]`` -> list; anything else stays a string. For keys whose
type is a string the raw text is kept as written (so ``Global.output=yes`` is the folder ``yes``,
not ``True``). Float keys also accept ``1e-3`` (which YAML 1.1 would read as a string).

Notes on PaddleX semantics kept here:

* ``Train.warmup_steps`` is, as in PaddleX's face_feature module (which passes it to PaddleClas's
  ``warmup_epoch``), the number of *epochs* of linear learning-rate warm-up. Default 1; a float
  such as 0.5 means half an epoch.
* ``Train.num_classes: null`` means "take it from ``train/label.txt``" (max label + 1).
* ``Train.margin: null`` means the loss's own default: ArcMargin m=0.5, CosMargin m=0.35; it is
  filled in when the config is loaded, so a saved config shows the value used.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from facefeat.errors import ConfigError
from facefeat.models.margins import DEFAULT_SCALE, LOSSES, MARGIN_DEFAULTS
from facefeat.registry import get_spec, list_models
from facefeat.utils import atomic_write_text

__all__ = [
    "MODES",
    "LOSSES",
    "LOSS_DEFAULT_MARGIN",
    "MODEL_DEFAULTS",
    "SCHEMA",
    "Config",
    "Key",
    "apply_overrides",
    "as_config",
    "config_dir",
    "config_from_dict",
    "default_config",
    "dump_config",
    "load_config",
    "parse_override",
    "save_config",
    "validate_config",
]

MODES = ("check_dataset", "train", "evaluate", "export", "predict")
LOSS_DEFAULT_MARGIN = MARGIN_DEFAULTS

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}


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
        names = [_TYPE_NAMES.get(t, t.__name__) for t in self.types]
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

def _model_defaults(name: str) -> dict[str, dict[str, Any]]:
    """The config sections in which model ``name`` differs from the schema (from its registry spec)."""
    spec = get_spec(name)
    return {"Global": {"model": spec.name},
            "Train": {**spec.train_defaults, "pretrain_weight_path": spec.name},
            "Export": {"weight_path": spec.name}}


#: model -> the sections in which its defaults differ from the schema's (MobileFaceNet's)
MODEL_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {m: _model_defaults(m) for m in list_models()}


class Config(dict):
    """A nested dict with attribute access: ``cfg.Train.batch_size == cfg["Train"]["batch_size"]``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"config has no {name!r}; it has: {', '.join(map(str, self.keys())) or '(nothing)'}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]

    def to_dict(self) -> dict:
        """Plain nested dicts (no Config), e.g. for ``yaml.safe_dump`` or JSON."""
        return {k: (v.to_dict() if isinstance(v, Config) else _plain(v)) for k, v in self.items()}

    def to_yaml(self) -> str:
        return dump_config(self)

    def __deepcopy__(self, memo):
        return _wrap(_plain(self.to_dict()))


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _wrap(v: Any) -> Any:
    if isinstance(v, Mapping):
        return Config({k: _wrap(x) for k, x in v.items()})
    if isinstance(v, list):
        return [_wrap(x) for x in v]
    return v


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_section(section: str, where: str) -> None:
    if section not in SCHEMA:
        raise ConfigError(
            f"{where}: unknown section {section!r}{_suggest(section, SCHEMA)}; "
            f"valid sections: {', '.join(SCHEMA)}"
        )


def _check_key(section: str, key: str, where: str) -> Key:
    _check_section(section, where)
    keys = SCHEMA[section]
    if key not in keys:
        raise ConfigError(
            f"{where}: unknown key {section}.{key}{_suggest(key, keys)}; "
            f"valid keys of {section}: {', '.join(keys)}"
        )
    return keys[key]


def _coerce(section: str, key: str, spec: Key, value: Any, where: str, raw: str | None = None) -> Any:
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
            + _suggest(str(out), map(str, spec.choices))
        )
    return out


def _defaults_dict(model: str | None) -> dict[str, dict[str, Any]]:
    out = {sec: {k: _plain(spec.default) for k, spec in keys.items()} for sec, keys in SCHEMA.items()}
    for sec, vals in (_model_defaults(model) if model in list_models() else {}).items():
        out[sec].update(_plain(vals))
    if model:
        out["Global"]["model"] = model
    return out


def default_config(model: str = "MobileFaceNet") -> Config:
    """The full default config for ``model`` (schema defaults + that model's differences)."""
    return _finish(_wrap(_defaults_dict(model)))


def _finish(cfg: Config) -> Config:
    """Fill values that depend on other values (the loss's default margin) and check placeholders."""
    train = cfg["Train"]
    if train.get("margin") is None:
        train["margin"] = LOSS_DEFAULT_MARGIN[train["loss"]]
    for name in ("convert", "split"):
        sub = cfg["CheckDataset"].get(name) or {}
        if sub.get("enable"):
            raise ConfigError(
                f"CheckDataset.{name}.enable is true, but facefeat does not {name} datasets; "
                f"prepare train/label.txt and val/pair_label.txt (PaddleX face format), or build a "
                f"demo set with facefeat.data.build_lfw_demo"
            )
    return cfg


def _merge_mapping(cfg: dict[str, dict[str, Any]], data: Mapping, where: str) -> None:
    for section, values in data.items():
        _check_section(str(section), where)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: section {section} must be a mapping of key: value, got {values!r}")
        for key, value in values.items():
            spec = _check_key(section, str(key), where)
            cfg[section][key] = _coerce(section, str(key), spec, _plain(value), where)


def parse_override(text: str) -> tuple[list[str], Any, str]:
    """``"Train.batch_size=64"`` -> (["Train", "batch_size"], 64, "64")."""
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"override {text!r}: expected Section.key=value, e.g. Train.batch_size=64")
    path, raw = text.split("=", 1)
    parts = [p.strip() for p in path.strip().split(".")]
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"override {text!r}: expected Section.key=value, e.g. Train.batch_size=64")
    raw = raw.strip()
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    if value is not None and not isinstance(value, (bool, int, float, str, list, dict)):
        value = raw  # dates, timestamps, ...: keep the text
    return parts, value, raw


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def apply_overrides(cfg: Config, overrides: Sequence[str] | None) -> Config:
    """Apply ``Section.key=value`` overrides in place (validated); returns ``cfg``."""
    for text in overrides or []:
        parts, value, raw = parse_override(text)
        where = f"override -o {text}"
        section, key = parts[0], parts[1]
        spec = _check_key(section, key, where)
        if len(parts) > 2:  # into a mapping-typed key: Predict.kernel_option.run_mode=paddle
            if dict not in spec.types:
                raise ConfigError(f"{where}: {section}.{key} is {spec.type_name}, it has no sub-key {parts[2]!r}")
            node = cfg[section].get(key)
            if node is None:
                node = cfg[section][key] = Config()
            for p in parts[2:-1]:
                if not isinstance(node.get(p), Mapping):
                    node[p] = Config()
                node = node[p]
            node[parts[-1]] = _wrap(value)
            continue
        if str in spec.types and isinstance(value, (str, bool, int, float)):
            # keep what was typed for string keys: yes/no/on/off/1.0 are names, not bools/floats
            value = _unquote(raw)
        cfg[section][key] = _wrap(_coerce(section, key, spec, value, where, raw=raw))
    return cfg


def config_from_dict(data: Mapping | None, overrides: Sequence[str] | None = None, where: str = "<dict>") -> Config:
    """Defaults for the model named in ``data`` (or the overrides), then ``data``, then overrides."""
    data = data or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a config must be a mapping of sections, got {type(data).__name__}")
    model = None
    glob = data.get("Global")
    if isinstance(glob, Mapping) and isinstance(glob.get("model"), str):
        model = glob["model"]
    for text in overrides or []:  # -o Global.model=... picks that model's defaults
        if isinstance(text, str) and text.strip().startswith("Global.model="):
            model = _unquote(text.split("=", 1)[1].strip()) or model
    base = _defaults_dict(model or "MobileFaceNet")
    _merge_mapping(base, data, where)
    cfg = _wrap(base)
    apply_overrides(cfg, overrides)
    return _finish(cfg)


def config_dir() -> Path:
    """The YAML configs shipped inside the package (``facefeat/configs``)."""
    return Path(__file__).resolve().parent / "configs"


def _config_dirs() -> list[Path]:
    env = os.environ.get("FACEFEAT_CONFIG_DIR")
    return ([Path(env)] if env else []) + [config_dir()]


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] | None = None) -> Config:
    """Load a YAML config (or a model name's defaults), apply ``-o`` overrides, validate.

    ``path`` may be a YAML file, a bare model name (``"MobileFaceNet"``: the packaged
    ``facefeat/configs/<name>.yaml`` if present, else the built-in defaults), or None (MobileFaceNet's defaults). Missing keys take
    the defaults of the model named in ``Global.model``.
    """
    if path is None:
        return config_from_dict({}, overrides, "<defaults>")
    p = Path(path)
    if not p.exists() and p.suffix == "" and str(path) in list_models() and os.sep not in str(path):
        for d in _config_dirs():
            cand = d / f"{path}.yaml"
            if cand.is_file():
                p = cand
                break
        else:
            return config_from_dict({"Global": {"model": str(path)}}, overrides, f"<{path} defaults>")
    if not p.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist (resolved: {p.resolve()})")
    if p.is_dir():
        raise ConfigError(f"config path {str(path)!r} is a directory; pass a .yaml file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ({exc})") from exc
    return config_from_dict(data, overrides, str(p))


def as_config(cfg: Mapping) -> Config:
    """``cfg`` itself when it is a :class:`Config` (validated when loaded), else validated into one."""
    return cfg if isinstance(cfg, Config) else validate_config(cfg)


def validate_config(cfg: Mapping) -> Config:
    """Re-validate a (possibly hand-edited) config; returns a fresh, complete Config."""
    return config_from_dict(_plain(cfg), None, "<config>")


def dump_config(cfg: Mapping) -> str:
    data = cfg.to_dict() if isinstance(cfg, Config) else _plain(cfg)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def save_config(cfg: Mapping, path: str | os.PathLike) -> Path:
    """Write ``cfg`` as YAML atomically (temp file + rename)."""
    return atomic_write_text(path, dump_config(cfg))


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
    "device": (str,), "num_threads": (int, type(None)),
    "events": (dict, type(None)),  # events out (MQTT, webhooks): facefeat.events.config.EventsConfig
    # PaddleX keys facefeat does not use
    "hamming_radius": None, "use_hpip": None, "hpi_config": None, "engine": None, "engine_config": None,
}
SUBMODULE_KEYS = ("module_name", "model_name", "model_dir", "batch_size", "weights")


def pipeline_config_path(name: str) -> Path | None:
    """The config shipped for pipeline ``name`` (``facefeat/configs/<name>.yaml``), or None."""
    p = Path(__file__).resolve().parent / "configs" / f"{name}.yaml"
    return p if p.is_file() else None


def _is_none(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "null", "~"))


def load_pipeline_config(pipeline: str | os.PathLike | None = None, config: Mapping | None = None) -> dict:
    """A validated pipeline config from a name (``"face_recognition"``), a YAML path, or a dict.

    Accepts PaddleX's ``face_recognition.yaml`` as written: ``index: None`` (the string) means no
    index; unknown keys are refused with the valid ones listed; PaddleX keys facefeat does not use
    (``hamming_radius``, ``use_hpip``, ...) are accepted and logged.
    """
    import logging

    log = logging.getLogger("facefeat")
    if config is None:
        if pipeline is None:
            raise ConfigError("create_pipeline: pass a pipeline name, a YAML file, or config=dict")
        text = str(pipeline)
        path = Path(text) if text.endswith((".yaml", ".yml")) or os.sep in text else pipeline_config_path(text)
        if path is None:
            raise ConfigError(f"unknown pipeline {text!r}; available: face_recognition (or a .yaml config file)")
        if not path.is_file():
            raise ConfigError(f"pipeline config {text!r} does not exist (resolved: {path.resolve()})")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read ({exc})") from exc
        where = str(path)
    else:
        data, where = config, "<config>"
        if pipeline is not None and isinstance(config, Mapping) and config.get("pipeline_name") not in (None, pipeline):
            log.warning("pipeline %r given with a config for %r; the config's is used",
                        str(pipeline), config.get("pipeline_name"))
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a pipeline config must be a mapping, got {type(data).__name__}")
    cfg = _plain(data)
    name = cfg.setdefault("pipeline_name", "face_recognition")
    if name != "face_recognition":
        raise ConfigError(f"{where}: pipeline_name {name!r} is not supported; facefeat has: face_recognition")
    for key, value in list(cfg.items()):
        if key not in PIPELINE_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{_suggest(str(key), PIPELINE_KEYS)}; "
                              f"valid keys: {', '.join(PIPELINE_KEYS)}")
        types = PIPELINE_KEYS[key]
        if types is None:
            if value is not None:
                log.info("%s: %s is a PaddleX setting facefeat does not use; ignored", where, key)
            continue
        if key == "index":  # a saved index directory, an index object (config=dict), or None
            if _is_none(value):
                cfg[key] = None
            elif not isinstance(value, (str, os.PathLike)) and not hasattr(value, "search"):
                raise ConfigError(f"{where}: index expects a saved index directory or None, got {value!r}")
        elif key == "events":
            from facefeat.events.config import EventsConfig

            EventsConfig.from_mapping(value, f"{where}: events")  # checked here, built where it is used
        elif value is not None and (not isinstance(value, types) or isinstance(value, bool) and bool not in types):
            raise ConfigError(f"{where}: {key} expects {' or '.join(_TYPE_NAMES.get(t, 'null') for t in types)}, "
                              f"got {value!r}")
    subs = cfg.get("SubModules") or {}
    for sub in subs:
        if sub not in ("Detection", "Recognition"):
            raise ConfigError(f"{where}: unknown SubModules.{sub}; face_recognition has Detection and Recognition")
        if not isinstance(subs[sub], Mapping):
            raise ConfigError(f"{where}: SubModules.{sub} must be a mapping, got {subs[sub]!r}")
        for k in subs[sub]:
            if k not in SUBMODULE_KEYS:
                raise ConfigError(f"{where}: unknown key SubModules.{sub}.{k}{_suggest(str(k), SUBMODULE_KEYS)}; "
                                  f"valid keys: {', '.join(SUBMODULE_KEYS)}")
        if _is_none(subs[sub].get("model_dir")):
            subs[sub]["model_dir"] = None
    det = subs.get("Detection") or {}
    det_name = det.get("model_name")
    if det_name not in (None, PIPELINE_DETECTOR):
        if det_name not in PADDLEX_FACE_DETECTORS:
            raise ConfigError(f"{where}: SubModules.Detection.model_name {det_name!r} is unknown; facefeat "
                              f"detects with {PIPELINE_DETECTOR} (PaddleX's {', '.join(PADDLEX_FACE_DETECTORS)} map to it)")
        log.warning("%s: PaddleX face detector %s is not in facefeat; using %s (OpenCV Zoo, 5 landmarks) instead",
                    where, det_name, PIPELINE_DETECTOR)
    if det.get("model_dir") is not None:
        log.warning("%s: SubModules.Detection.model_dir %r ignored: facefeat detects with %s",
                    where, det["model_dir"], PIPELINE_DETECTOR)
    return cfg
