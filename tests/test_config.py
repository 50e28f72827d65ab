"""Config: PaddleX-style YAML, typed -o overrides, one schema for keys/types/defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from facefeat.config import (
    MODEL_DEFAULTS,
    SCHEMA,
    Config,
    default_config,
    dump_config,
    load_config,
    save_config,
)
from facefeat.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


@pytest.mark.parametrize("model", sorted(MODEL_DEFAULTS))
def test_shipped_yaml_equals_schema_defaults(model):
    path = CONFIGS / f"{model}.yaml"
    cfg = load_config(path)
    assert cfg == default_config(model)
    # every schema key is written in the file (the file documents them all)
    raw = yaml.safe_load(path.read_text())
    assert list(raw) == list(SCHEMA)
    for sec, keys in SCHEMA.items():
        assert set(raw[sec]) == set(keys), sec


def test_paddlex_defaults():
    m = default_config("MobileFaceNet")
    assert (m.Train.epochs_iters, m.Train.batch_size, m.Train.learning_rate) == (25, 128, 0.002)
    r = default_config("ResNet50_face")
    assert (r.Train.batch_size, r.Train.learning_rate) == (64, 0.004)
    s = default_config("SFace")
    assert s.Train.learning_rate < m.Train.learning_rate
    assert m.Global.output == "./output"
    assert m.Train.weight_decay == 0.05
    assert m.Train.loss == "ArcMargin" and m.Train.margin == 0.5 and m.Train.scale == 64.0
    assert m.Train.warmup_steps == 1


def test_attribute_and_item_access():
    cfg = load_config(CONFIGS / "MobileFaceNet.yaml")
    assert isinstance(cfg, Config) and isinstance(cfg.Train, Config)
    assert cfg.Train.batch_size == cfg["Train"]["batch_size"] == 128
    cfg.Train.batch_size = 7
    assert cfg["Train"]["batch_size"] == 7
    with pytest.raises(AttributeError, match="batch_size"):
        cfg.Train.nope  # noqa: B018


def test_overrides_are_typed():
    cfg = load_config(
        CONFIGS / "MobileFaceNet.yaml",
        [
            "Global.mode=train",
            "Train.epochs_iters=10",
            "Train.learning_rate=0.1",
            "Train.amp=true",
            "Train.grad_clip=null",
            "Train.resume_path=runs/last.pt",
            "Predict.input=[a.jpg, b.jpg]",
            "Global.device=gpu:0,1",
            "Train.weight_decay=1e-4",
            "Train.warmup_steps=0.5",
            "Global.output=yes",
            "Predict.kernel_option.run_mode=onnxruntime",
        ],
    )
    assert cfg.Global.mode == "train"
    assert cfg.Train.epochs_iters == 10 and isinstance(cfg.Train.epochs_iters, int)
    assert cfg.Train.learning_rate == 0.1 and isinstance(cfg.Train.learning_rate, float)
    assert cfg.Train.amp is True
    assert cfg.Train.grad_clip is None
    assert cfg.Train.resume_path == "runs/last.pt"
    assert cfg.Predict.input == ["a.jpg", "b.jpg"]
    assert cfg.Global.device == "gpu:0,1"
    assert cfg.Train.weight_decay == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as a string
    assert cfg.Train.warmup_steps == 0.5
    assert cfg.Global.output == "yes"  # a string key keeps the text (YAML would say True)
    assert cfg.Predict.kernel_option.run_mode == "onnxruntime"


def test_float_key_accepts_int():
    cfg = load_config(None, ["Train.learning_rate=1"])
    assert cfg.Train.learning_rate == 1.0 and isinstance(cfg.Train.learning_rate, float)


def test_loss_margin_default_follows_loss():
    assert load_config(None, ["Train.loss=CosMargin"]).Train.margin == 0.35
    assert load_config(None, ["Train.loss=ArcMargin"]).Train.margin == 0.5
    assert load_config(None, ["Train.loss=CosMargin", "Train.margin=0.4"]).Train.margin == 0.4
    with pytest.raises(ConfigError, match="ArcMargin, CosMargin"):
        load_config(None, ["Train.loss=Softmax"])


def test_type_mismatch_names_key_type_value():
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "MobileFaceNet.yaml", ["Train.batch_size=abc"])
    msg = str(e.value)
    assert "Train.batch_size" in msg and "int" in msg and "abc" in msg
    with pytest.raises(ConfigError, match="Train.amp.*bool"):
        load_config(None, ["Train.amp=3"])
    with pytest.raises(ConfigError, match="Train.learning_rate.*float"):
        load_config(None, ["Train.learning_rate=fast"])
    with pytest.raises(ConfigError, match="Train.epochs_iters"):
        load_config(None, ["Train.epochs_iters=null"])  # not nullable
    with pytest.raises(ConfigError, match="Global.mode"):
        load_config(None, ["Global.mode=fly"])


def test_unknown_section_and_key_list_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["Trian.batch_size=1"])
    assert "Trian" in str(e.value) and "Train" in str(e.value) and "Global" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["Train.batchsize=1"])
    msg = str(e.value)
    assert "batchsize" in msg and "batch_size" in msg and "epochs_iters" in msg and "learning_rate" in msg


def test_bad_override_syntax():
    for bad in ["Train.batch_size", "batch_size=3", "=3", ".x=1"]:
        with pytest.raises(ConfigError, match="Section.key=value"):
            load_config(None, [bad])


def test_unknown_key_in_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("Global:\n  model: MobileFaceNet\nTrain:\n  epochs: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and "Train.epochs" in str(e.value) and "epochs_iters" in str(e.value)
    p.write_text("Train:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match="batch_size.*int.*many"):
        load_config(p)


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(missing)


def test_invalid_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("Global: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_partial_file_gets_model_defaults(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("Global:\n  model: ResNet50_face\n  dataset_dir: data/x\nTrain:\n  epochs_iters: 3\n")
    cfg = load_config(p)
    assert cfg.Train.batch_size == 64 and cfg.Train.epochs_iters == 3 and cfg.Global.dataset_dir == "data/x"
    # -o Global.model picks that model's defaults for keys the file does not set
    cfg = load_config(None, ["Global.model=ResNet50_face"])
    assert cfg.Train.learning_rate == 0.004


def test_model_name_instead_of_path():
    assert load_config("ResNet50_face") == default_config("ResNet50_face")


def test_paddlex_original_yaml_loads(tmp_path):
    """PaddleX's own MobileFaceNet.yaml (convert/split placeholders, kernel_option) is accepted."""
    text = """
Global:
  model: MobileFaceNet
  mode: check_dataset # check_dataset/train/evaluate/predict
  dataset_dir: "/paddle/dataset/paddlex/cls/face_rec_examples"
  device: gpu:0,1,2,3
  output: "output"
CheckDataset:
  convert:
    enable: False
    src_dataset_type: null
  split:
    enable: False
    train_percent: null
    val_percent: null
Train:
  num_classes: 995
  epochs_iters: 25
  batch_size: 128
  learning_rate: 0.002
  pretrain_weight_path: https://example.com/MobileFaceNet_pretrained.pdparams
  warmup_steps: 1
  resume_path: null
  log_interval: 1
  eval_interval: 1
  save_interval: 1
Evaluate:
  weight_path: "output/best_model/best_model.pdparams"
  log_interval: 1
Export:
  weight_path: https://example.com/MobileFaceNet_pretrained.pdparams
Predict:
  batch_size: 1
  model_dir: "output/best_model/inference"
  input: "https://example.com/face_recognition_001.jpg"
  kernel_option:
    run_mode: paddle
"""
    p = tmp_path / "pdx.yaml"
    p.write_text(text)
    cfg = load_config(p)
    assert cfg.Train.num_classes == 995 and cfg.Global.device == "gpu:0,1,2,3"
    with pytest.raises(ConfigError, match="convert"):
        load_config(p, ["CheckDataset.convert.enable=true"])


def test_save_roundtrip(tmp_path):
    cfg = load_config(CONFIGS / "SFace.yaml", ["Train.batch_size=32", "Predict.input=[x.jpg]"])
    out = save_config(cfg, tmp_path / "sub" / "cfg.yaml")
    assert out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left behind
    again = load_config(out)
    assert again == cfg
    assert yaml.safe_load(dump_config(cfg))["Train"]["batch_size"] == 32
