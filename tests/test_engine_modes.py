"""The PaddleX-style modes besides train: export (ONNX Runtime == PyTorch), evaluate (both pair
formats, flip on/off, ROC), predict, check_dataset; the subcommands; config-level errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from facefeat.cli import engine as cli_engine
from facefeat.cli import main as cli_main
from facefeat.cli.table import COMMANDS
from facefeat.engine import runner
from facefeat.engine.evaluate import evaluate_pairs_file, find_pairs_file, pair_scores, stratified_folds
from facefeat.engine.train import preprocess_for_spec, save_checkpoint
from facefeat.engine.verification import evaluate_pairs
from facefeat.errors import ConfigError, InputError
from facefeat.predict.predictor import create_model
from facefeat.registry import get_spec
from facefeat.runtime.model_dir import read_model_dir
from facefeat.runtime.onnx_runner import OrtRunner
from facefeat.runtime.torch_build import build_torch_model
from facefeat.weights.checkpoint import CHECKPOINT_FORMAT

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def _faces(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [cv2.resize(rng.integers(0, 256, (14, 14, 3)).astype(np.uint8), (112, 112)) for _ in range(n)]


@pytest.fixture(scope="module")
def pairs_ds(tmp_path_factory) -> Path:
    """PaddleX val/pair_label.txt with 12 images of 6 'people' (two noisy views each), 12 pairs."""
    root = tmp_path_factory.mktemp("pairs_ds")
    rng = np.random.default_rng(3)
    rels = []
    for i, base in enumerate(_faces(6, 7)):
        for j in range(2):
            rel = f"images/p{i}/{j}.png"
            (root / "val" / rel).parent.mkdir(parents=True, exist_ok=True)
            img = np.clip(base.astype(np.float32) + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / "val" / rel), img)
            rels.append(rel)
    lines = [f"{rels[2 * i]} {rels[2 * i + 1]} 1" for i in range(6)]
    lines += [f"{rels[2 * i]} {rels[(2 * i + 3) % 12]} 0" for i in range(6)]
    (root / "val" / "pair_label.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def sface_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sface_export")
    rc = cli_main(["-c", str(CONFIGS / "SFace.yaml"), "-o", "Global.mode=export", "-o", f"Global.output={out}"])
    assert rc == 0
    return out


# ------------------------------------------------------------------------------------------------
# export


def _ort_vs_torch(model, onnx_path: Path, spec) -> float:
    runner_ = OrtRunner(onnx_path, num_threads=2)
    worst = 0.0
    for n in (1, 7, 32):
        rng = np.random.default_rng(n)
        x = np.stack([preprocess_for_spec(spec, rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for _ in range(n)])
        with torch.inference_mode():
            ref = model.eval()(torch.from_numpy(x)).numpy()
        got = runner_(x)
        assert got.shape == (n, spec.embedding_size)
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def test_export_mobilefacenet_random_init_matches_torch(tmp_path):
    spec = get_spec("MobileFaceNet")
    torch.manual_seed(0)
    model = build_torch_model(spec)
    ckpt = save_checkpoint(tmp_path / "rand" / "model.pt", {
        "format": CHECKPOINT_FORMAT, "model_name": spec.name, "embedding_size": 128, "model": model.state_dict()})
    out = tmp_path / "exp"
    rc = cli_main(["-c", str(CONFIGS / "MobileFaceNet.yaml"), "--quiet", "-o", "Global.mode=export",
                   "-o", f"Global.output={out}", "-o", f"Export.weight_path={ckpt}"])
    assert rc == 0
    onnx_path, meta = read_model_dir(out / "inference")
    assert meta.model_name == "MobileFaceNet" and meta.embedding_size == 128
    assert tuple(meta.mean) == (127.5, 127.5, 127.5) and meta.channel_order == "RGB"
    assert _ort_vs_torch(model, onnx_path, spec) <= 1e-4
    res = json.loads((out / "export_result.json").read_text())
    assert res["verify_ok"] and res["weights_format"] == "facefeat"
    assert (out / "config_export.yaml").is_file()


def test_export_sface_matches_torch(sface_export):
    spec = get_spec("SFace")
    onnx_path, meta = read_model_dir(sface_export / "inference")
    assert meta.model_name == "SFace" and tuple(meta.std) == (1.0, 1.0, 1.0)
    assert meta.extra["thresholds"] == spec.thresholds  # the default weights carry their calibration
    from facefeat.weights import resolve

    model = build_torch_model(spec, resolve(None, spec))
    assert _ort_vs_torch(model, onnx_path, spec) <= 1e-4
    # and the exported dir embeds like the zoo model
    imgs = _faces(3, 1)
    np.testing.assert_allclose(create_model(model_dir=sface_export / "inference", precision="fp32").embed(imgs),
                               create_model("SFace", precision="fp32").embed(imgs), atol=1e-4)


# ------------------------------------------------------------------------------------------------
# evaluate


def test_evaluate_pairs_file_scores_are_cosines(pairs_ds):
    sface = create_model("SFace", batch_size=8)
    res = evaluate_pairs_file(sface, pairs_ds / "val" / "pair_label.txt", flip=False, batch_size=5)
    from facefeat.data.formats import read_pairs

    ps = read_pairs(pairs_ds / "val" / "pair_label.txt")
    left = sface.embed([cv2.imread(p.left) for p in ps])
    right = sface.embed([cv2.imread(p.right) for p in ps])
    manual = evaluate_pairs((left * right).sum(1), ps.labels, fold_ids=stratified_folds(ps.labels))
    assert res["accuracy"] == pytest.approx(manual["accuracy"])
    assert res["auc"] == pytest.approx(manual["auc"], abs=1e-9)
    assert res["flip_test"] is False and res["num_pairs"] == 12 and res["num_images"] == 12
    for k in ("flip", "no_flip"):
        v = res[k]
        assert {"accuracy", "std", "auc", "eer", "tar_at_far", "recommended_threshold", "kfold"} <= set(v)
        assert "roc" not in v
    assert res["no_flip"]["accuracy"] == res["accuracy"]
    # the same with flip via a torch module
    from facefeat.weights import resolve

    spec = get_spec("SFace")
    torch_res = evaluate_pairs_file(build_torch_model(spec, resolve(None, spec)), pairs_ds / "val" / "pair_label.txt",
                                    flip=True, batch_size=12)
    assert torch_res["model_name"] == "SFace"
    assert torch_res["flip"]["auc"] == pytest.approx(res["flip"]["auc"], abs=1e-3)


def test_stratified_folds_balance_and_match_lfw_order():
    # LFW pairs.txt order: per fold 300 matched then 300 mismatched -> the standard folds
    labels = np.tile(np.r_[np.ones(300), np.zeros(300)], 10).astype(int)
    np.testing.assert_array_equal(stratified_folds(labels), np.repeat(np.arange(10), 600))
    # a subsample (5 folds x 60 + 60): contiguous blocks would be single-class, these are balanced
    sub = np.tile(np.r_[np.ones(60), np.zeros(60)], 5).astype(int)
    ids = stratified_folds(sub)
    for k in range(10):
        assert (sub[ids == k] == 1).sum() == 30 and (sub[ids == k] == 0).sum() == 30
    assert stratified_folds([1]) is None


def test_pair_scores_normalise():
    f = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
    s = pair_scores(f, np.array([0, 0, 2]), np.array([1, 2, 2]))
    np.testing.assert_allclose(s, [0.0, np.sqrt(0.5), 1.0], atol=1e-6)


def test_evaluate_mode_paddlex_dataset(pairs_ds, sface_export, tmp_path):
    out = tmp_path / "eval"
    rc = cli_main(["-c", str(CONFIGS / "SFace.yaml"), "--quiet", "-o", "Global.mode=evaluate",
                   "-o", f"Global.dataset_dir={pairs_ds}", "-o", f"Global.output={out}",
                   "-o", f"Evaluate.weight_path={sface_export / 'inference'}", "-o", "Evaluate.batch_size=4"])
    assert rc == 0
    doc = json.loads((out / "evaluate_result.json").read_text())
    assert doc["done_flag"] and doc["model_name"] == "SFace" and doc["backend"] in ("onnxruntime", "openvino")
    m = doc["metrics"]
    assert {"accuracy", "std", "auc", "eer", "tar_at_far_1e-02", "tar_at_far_1e-03", "recommended_threshold"} <= set(m)
    assert m["accuracy"] == doc["flip"]["accuracy"] and doc["flip_test"] is True
    assert doc["pairs_format"] == "paddlex" and doc["num_pairs"] == 12
    # the calibrated operating points, in the result and in the evaluated model directory
    assert doc["thresholds"]["verification"]["best_accuracy"]["threshold"] is not None
    meta = yaml.safe_load((sface_export / "inference" / "inference.yml").read_text())["facefeat"]
    assert meta["thresholds"]["source"] == "facefeat evaluate" and meta["thresholds"]["data"]["genuine_pairs"] == 6
    png = (out / "roc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "config_evaluate.yaml").is_file() and not (out / "config.yaml").exists()


def test_evaluate_lfw_pairs_txt_directly(lfw_dir, tmp_path):
    """LFW's own pairs.txt format (2 folds x 3 matched + 3 mismatched), images read from ../shared."""
    people = sorted(p.name for p in lfw_dir.iterdir() if len(list(p.glob("*.jpg"))) >= 2)[:12]
    lines = ["2 3"]
    for fold in range(2):
        names = people[fold * 6: fold * 6 + 6]
        lines += [f"{n} 1 2" for n in names[:3]]
        lines += [f"{names[i]} 1 {names[i + 3]} 1" for i in range(3)]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    # the subcommand (SFace by default); LFW paths resolve under the pair file's folder: lfw/<name>/...
    (tmp_path / "lfw").symlink_to(lfw_dir)
    args = _parse("evaluate", [str(pairs), "--output", str(out), "--quiet", "--batch-size", "8"])
    assert cli_engine.cmd_evaluate(args) == 0
    doc = json.loads((out / "evaluate_result.json").read_text())
    assert doc["pairs_format"] == "lfw" and doc["num_pairs"] == 12 and doc["model_name"] == "SFace"
    assert doc["flip"]["kfold"]["folds"] == 2 and doc["flip"]["kfold"]["fold_sizes"] == [6, 6]
    assert doc["no_flip"]["accuracy"] is not None
    # LFW's 250x250 photos are aligned as the pipeline does (raw resized photos: 85.9% instead of 99.5%)
    assert doc["photos_aligned"] == doc["num_images"] and doc["photos_without_face"] == 0
    from facefeat import create_model
    from facefeat.engine.evaluate import evaluate_pairs_file

    off = evaluate_pairs_file(create_model("SFace"), pairs, batch_size=8, align="off")
    assert off["photos_aligned"] == 0 and off["num_images"] == doc["num_images"]


def test_find_pairs_file(pairs_ds, tmp_path):
    assert find_pairs_file(pairs_ds)[0] == pairs_ds / "val" / "pair_label.txt"
    f = pairs_ds / "val" / "pair_label.txt"
    assert find_pairs_file(f) == (f, None)
    from facefeat.errors import DatasetError

    with pytest.raises(DatasetError, match="no pair list"):
        find_pairs_file(tmp_path)


def test_evaluate_weight_path_forms(pairs_ds, tmp_path):
    from facefeat.engine.evaluate import load_eval_predictor

    spec = get_spec("MobileFaceNet")
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "best_model" / "model.pt", {
        "format": CHECKPOINT_FORMAT, "model_name": spec.name, "model": build_torch_model(spec).state_dict()})
    p = load_eval_predictor("SFace", str(ck))  # the checkpoint names its model
    assert p.model_name == "MobileFaceNet" and p.backend == "torch"
    # PaddleX's default path falls back to facefeat's model.pt beside it
    p2 = load_eval_predictor("MobileFaceNet", str(tmp_path / "best_model" / "best_model.pdparams"))
    assert p2.model_name == "MobileFaceNet"
    assert load_eval_predictor("MobileFaceNet", "SFace").model_name == "SFace"
    with pytest.raises(InputError, match="neither a file"):
        load_eval_predictor("MobileFaceNet", str(tmp_path / "nothing.pt"))


# ------------------------------------------------------------------------------------------------
# predict, check_dataset


def test_predict_mode_prints_and_saves(sface_export, tmp_path, capsys):
    img = tmp_path / "face.jpg"
    cv2.imwrite(str(img), _faces(1, 5)[0])
    out = tmp_path / "pred"
    rc = cli_main(["-c", str(CONFIGS / "SFace.yaml"), "-o", "Global.mode=predict", "-o", f"Global.output={out}",
                   "-o", f"Predict.model_dir={sface_export / 'inference'}", "-o", f"Predict.input={img}"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "128-d feature [" in printed and str(img) in printed  # one human line per image, no dict repr
    doc = json.loads((out / "face_res.json").read_text())
    feat = np.asarray(doc["feature"])  # PaddleX writes the inner result dict
    assert feat.shape == (128,) and abs(np.linalg.norm(feat) - 1) < 1e-5
    ref = create_model(model_dir=sface_export / "inference").embed([cv2.imread(str(img))])[0]
    np.testing.assert_allclose(feat, ref, atol=1e-4)
    assert cli_main(["-c", str(CONFIGS / "SFace.yaml"), "-o", "Global.mode=predict",
                     "-o", f"Global.output={out}"]) == 2  # no input


def test_predict_mode_finds_what_export_wrote(sface_export, tmp_path, monkeypatch, capsys):
    """export writes <Global.output>/inference; predict's default model_dir (PaddleX's
    output/best_model/inference, written by train) falls back to it: the two commands connect."""
    img = tmp_path / "face.jpg"
    cv2.imwrite(str(img), _faces(1, 7)[0])
    monkeypatch.chdir(tmp_path)  # no ./output/best_model/inference here
    rc = cli_main(["-c", str(CONFIGS / "SFace.yaml"), "-o", "Global.mode=predict", "-o", f"Global.output={sface_export}",
                   "-o", f"Predict.input={img}"])
    cap = capsys.readouterr()
    assert rc == 0 and f"using {sface_export / 'inference'}" in cap.err and "128-d feature" in cap.out
    assert cli_main(["-c", str(CONFIGS / "SFace.yaml"), "-o", "Global.mode=predict", "-o", "Global.output=nowhere",
                     "-o", f"Predict.input={img}"]) == 2
    assert "run export (or train) first" in capsys.readouterr().err


def test_check_dataset_mode_and_subcommand(pairs_ds, tmp_path):
    ds = tmp_path / "ds"
    (ds / "train" / "images").mkdir(parents=True)
    for i, img in enumerate(_faces(4, 2)):
        cv2.imwrite(str(ds / "train" / "images" / f"{i}.jpg"), img)
    (ds / "train" / "label.txt").write_text("".join(f"images/{i}.jpg {i // 2}\n" for i in range(4)))
    (ds / "val").symlink_to(pairs_ds / "val")
    out = tmp_path / "out"
    rc = cli_main(["-c", str(CONFIGS / "MobileFaceNet.yaml"), "--quiet", "-o", "Global.mode=check_dataset",
                   "-o", f"Global.dataset_dir={ds}", "-o", f"Global.output={out}"])
    assert rc == 0
    doc = json.loads((out / "check_dataset_result.json").read_text())
    assert doc["check_pass"] and doc["attributes"]["train_num_classes"] == 2
    assert (out / "config.yaml").is_file()
    (ds / "train" / "label.txt").write_text("images/0.jpg 0\nimages/9.jpg 1\n")
    args = _parse("check-dataset", [str(ds), "--output", str(tmp_path / "out2"), "--quiet"])
    assert cli_engine.cmd_check_dataset(args) == 1
    assert not json.loads((tmp_path / "out2" / "check_dataset_result.json").read_text())["check_pass"]


# ------------------------------------------------------------------------------------------------
# subcommands, wiring, errors


def _parse(name: str, argv: list[str]) -> argparse.Namespace:
    _, configure, fn = COMMANDS[name]
    p = argparse.ArgumentParser(prog=f"facefeat {name}")
    configure(p)
    args = p.parse_args(argv)
    args.func = fn
    return args


def test_engine_commands_are_in_the_one_command_table():
    """check-dataset, train, evaluate and export register with the CLI's @command like every command."""
    assert {"check-dataset", "train", "evaluate", "export"} <= set(COMMANDS)
    assert COMMANDS["train"][2] is cli_engine.cmd_train and COMMANDS["export"][1] is cli_engine.configure_export
    assert not hasattr(runner, "COMMANDS") and not hasattr(runner, "register_commands")


def test_export_subcommand(tmp_path):
    assert cli_main(["export", "--model", "SFace", "--output", str(tmp_path), "--quiet"]) == 0
    assert read_model_dir(tmp_path / "inference")[1].model_name == "SFace"


def test_train_subcommand_builds_the_config(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(runner, "run_config", lambda cfg, quiet=False: seen.setdefault("cfg", cfg) and 0)
    args = _parse("train", [str(tmp_path), "--epochs", "3", "--pretrain", "none", "--batch-size", "16",
                            "--loss", "CosMargin", "--output", str(tmp_path / "o"), "-o", "Train.seed=7"])
    cli_engine.cmd_train(args)
    cfg = seen["cfg"]
    assert cfg.Global.mode == "train" and cfg.Global.dataset_dir == str(tmp_path)
    assert cfg.Train.epochs_iters == 3 and cfg.Train.pretrain_weight_path is None
    assert cfg.Train.batch_size == 16 and cfg.Train.loss == "CosMargin" and cfg.Train.margin == 0.35
    assert cfg.Train.seed == 7 and cfg.Global.output == str(tmp_path / "o")
    # through the CLI, with -c (which the CLI first routes to the config runner)
    seen.clear()
    assert cli_main(["train", str(tmp_path), "-c", str(CONFIGS / "SFace.yaml"), "--epochs", "2"]) == 0
    cfg = seen["cfg"]
    assert cfg.Global.model == "SFace" and cfg.Train.epochs_iters == 2 and cfg.Train.pretrain_weight_path == "SFace"


def test_config_mode_errors_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["-c", str(CONFIGS / "MobileFaceNet.yaml"), "-o", "Global.mode=evaluate",
                     "-o", f"Global.output={out}"]) == 2
    assert "dataset_dir" in capsys.readouterr().err
    assert not out.exists()  # nothing written for a run that could not start
    assert cli_main(["-c", str(CONFIGS / "MobileFaceNet.yaml"), "-o", "Global.mode=fly"]) == 2
    with pytest.raises(ConfigError):
        runner.run_config({"Global": {"mode": "fly"}})
