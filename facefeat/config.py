"""PaddleX-style configs: a YAML file plus ``-o Section.key=value`` overrides, validated.

One schema (:data:`SCHEMA`, in :mod:`facefeat.config_schema`) says, for every section and key, the accepted type(s) and the default;
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

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from facefeat.config_schema import (
    LOSS_DEFAULT_MARGIN,
    LOSSES,
    MODEL_DEFAULTS,
    MODES,
    SCHEMA,
    TYPE_NAMES,
    Key,
    check_key,
    check_section,
    coerce,
    model_defaults,
    suggest,
)
from facefeat.config_schema import PADDLEX_FACE_DETECTORS, PIPELINE_DETECTOR, PIPELINE_KEYS, SUBMODULE_KEYS
from facefeat.errors import ConfigError
from facefeat.events.config import EventsConfig
from facefeat.registry import list_models
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


def _defaults_dict(model: str | None) -> dict[str, dict[str, Any]]:
    out = {sec: {k: _plain(spec.default) for k, spec in keys.items()} for sec, keys in SCHEMA.items()}
    for sec, vals in (model_defaults(model) if model in list_models() else {}).items():
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
        check_section(str(section), where)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: section {section} must be a mapping of key: value, got {values!r}")
        for key, value in values.items():
            spec = check_key(section, str(key), where)
            cfg[section][key] = coerce(section, str(key), spec, _plain(value), where)


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
        spec = check_key(section, key, where)
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
        cfg[section][key] = _wrap(coerce(section, key, spec, value, where, raw=raw))
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


def _read_yaml(p: Path) -> Any:
    """A config file's YAML; ConfigError naming the file when it cannot be read or parsed."""
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ({exc})") from exc


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
    return config_from_dict(_read_yaml(p), overrides, str(p))


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
        data, where = _read_yaml(path), str(path)
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
            raise ConfigError(f"{where}: unknown key {key!r}{suggest(str(key), PIPELINE_KEYS)}; "
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
            EventsConfig.from_mapping(value, f"{where}: events")  # checked here, built where it is used
        elif value is not None and (not isinstance(value, types) or isinstance(value, bool) and bool not in types):
            raise ConfigError(f"{where}: {key} expects {' or '.join(TYPE_NAMES.get(t, 'null') for t in types)}, "
                              f"got {value!r}")
    subs = cfg.get("SubModules") or {}
    for sub in subs:
        if sub not in ("Detection", "Recognition"):
            raise ConfigError(f"{where}: unknown SubModules.{sub}; face_recognition has Detection and Recognition")
        if not isinstance(subs[sub], Mapping):
            raise ConfigError(f"{where}: SubModules.{sub} must be a mapping, got {subs[sub]!r}")
        for k in subs[sub]:
            if k not in SUBMODULE_KEYS:
                raise ConfigError(f"{where}: unknown key SubModules.{sub}.{k}{suggest(str(k), SUBMODULE_KEYS)}; "
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
