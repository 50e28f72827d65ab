"""Training: margin heads, preprocessing, optimizer/schedule, the loop's outputs, exact resume,
fine-tuning sources, errors. Tiny datasets (synthetic, or a few LFW faces) keep it fast."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from facefeat.cli import main as cli_main
from facefeat.config import load_config
from facefeat.engine.train import (
    WarmupCosine,
    load_pretrain,
    param_groups,
    preprocess_for_spec,
    pretrain_weights,
    run_train,
)
from facefeat.errors import ConfigError, DatasetError, WeightsError
from facefeat.models.heads import ArcMargin, CosMargin, build_head
from facefeat.registry import get_spec, list_models
from facefeat.runtime.torch_build import build_torch_model
from facefeat.weights.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "MobileFaceNet.yaml")


# ------------------------------------------------------------------------------------------------
# tiny datasets


def make_synthetic_dataset(root: Path, ids: int = 8, per_id: int = 2, val_ids: int = 4, seed: int = 0) -> Path:
    """PaddleX layout with smooth random 'faces': one low-frequency pattern per identity + noise."""
    rng = np.random.default_rng(seed)

    def identity() -> np.ndarray:
        return cv2.resize(rng.integers(0, 256, (7, 7, 3)).astype(np.float32), (112, 112),
                          interpolation=cv2.INTER_CUBIC)

    def sample(base: np.ndarray) -> np.ndarray:
        return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)

    rows = []
    for i in range(ids):
        base = identity()
        for j in range(per_id):
            rel = f"images/id{i:03d}/{j}.jpg"
            (root / "train" / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "train" / rel), sample(base))
            rows.append(f"{rel} {i}\n")
    (root / "train" / "label.txt").write_text("".join(rows))
    val = []
    for i in range(val_ids):
        base = identity()
        names = []
        for j in range(3):
            rel = f"images/v{i:03d}/{j}.jpg"
            (root / "val" / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "val" / rel), sample(base))
            names.append(rel)
        val.append(names)
    pairs = []
    for i in range(val_ids):
        pairs += [f"{val[i][0]} {val[i][1]} 1\n", f"{val[i][1]} {val[i][2]} 1\n",
                  f"{val[i][0]} {val[(i + 1) % val_ids][0]} 0\n", f"{val[i][2]} {val[(i + 2) % val_ids][1]} 0\n"]
    (root / "val" / "pair_label.txt").write_text("".join(pairs))
    return root


def make_lfw_dataset(lfw_dir: Path, root: Path, ids: int = 8, per_id: int = 4, val_pairs: int = 20) -> Path:
    """8 LFW identities x 4 centre-cropped faces for train; ~20 val pairs from other people."""
    from facefeat.data.lfw_demo import center_crop

    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir())
    rich = [p for p in people if len(list(p.glob("*.jpg"))) >= per_id]
    train_people, val_people = rich[:ids], rich[ids: ids + val_pairs // 2]
    rows = []
    for label, person in enumerate(train_people):
        for src in sorted(person.glob("*.jpg"))[:per_id]:
            rel = f"images/{person.name}/{src.name}"
            (root / "train" / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "train" / rel), center_crop(cv2.imread(str(src))))
            rows.append(f"{rel} {label}\n")
    (root / "train" / "label.txt").write_text("".join(rows))
    firsts, pairs = [], []
    for person in val_people:
        rels = []
        for src in sorted(person.glob("*.jpg"))[:2]:
            rel = f"images/{person.name}/{src.name}"
            (root / "val" / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "val" / rel), center_crop(cv2.imread(str(src))))
            rels.append(rel)
        firsts.append(rels)
        pairs.append(f"{rels[0]} {rels[1]} 1\n")
    for k in range(len(firsts)):
        pairs.append(f"{firsts[k][0]} {firsts[(k + 1) % len(firsts)][1]} 0\n")
    (root / "val" / "pair_label.txt").write_text("".join(pairs))
    return root


def train_cfg(ds: Path, out: Path, *extra: str):
    return load_config(CONFIG, [
        "Global.mode=train", f"Global.dataset_dir={ds}", f"Global.output={out}",
        "Train.epochs_iters=2", "Train.batch_size=8", "Train.pretrain_weight_path=null",
        "Train.num_workers=0", "Train.warmup_steps=0.5", "Evaluate.batch_size=16", *extra,
    ])


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def run_a(synth, tmp_path_factory) -> Path:
    """One 2-epoch MobileFaceNet run (16 images, batch 8: 2 steps/epoch) through the CLI."""
    out = tmp_path_factory.mktemp("run_a")
    rc = cli_main(["-c", CONFIG, "--quiet", "-o", "Global.mode=train", "-o", f"Global.dataset_dir={synth}",
                   "-o", f"Global.output={out}", "-o", "Train.epochs_iters=2", "-o", "Train.batch_size=8",
                   "-o", "Train.pretrain_weight_path=null", "-o", "Train.num_workers=0",
                   "-o", "Train.warmup_steps=0.5", "-o", "Train.grad_clip=5.0", "-o", "Evaluate.batch_size=16"])
    assert rc == 0
    return out


# ------------------------------------------------------------------------------------------------
# heads


def test_arcmargin_target_logit_is_cos_theta_plus_m():
    torch.manual_seed(0)
    head = ArcMargin(16, 5, margin=0.5, scale=64.0)
    x = torch.randn(6, 16)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    logits = head(x, y)
    cos = torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(head.weight, dim=0)
    theta = torch.acos(cos.clamp(-1, 1))
    expect = cos.clone()
    for i, c in enumerate(y.tolist()):
        t = theta[i, c]
        expect[i, c] = torch.cos(t + 0.5) if t + 0.5 < math.pi else cos[i, c] - math.sin(math.pi - 0.5) * 0.5
    assert torch.allclose(logits, 64.0 * expect, atol=1e-4)
    assert torch.allclose(head(x), 64.0 * cos, atol=1e-4)  # no labels: no margin
    logits.sum().backward()
    assert head.weight.grad is not None and tuple(head.weight.shape) == (16, 5)  # Paddle layout


def test_arcmargin_fallback_when_theta_plus_m_passes_pi():
    head = ArcMargin(2, 2, margin=0.5, scale=1.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[-1.0, 0.0]])  # cos to class 0 = -1: theta = pi
    out = head(x, torch.tensor([0]))
    assert out[0, 0].item() == pytest.approx(-1.0 - math.sin(math.pi - 0.5) * 0.5, abs=1e-5)


def test_cosmargin_and_build_head_defaults():
    torch.manual_seed(0)
    head = CosMargin(8, 3, scale=30.0)
    assert head.margin == 0.35
    x, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 1])
    cos = head(x) / 30.0
    out = head(x, y) / 30.0
    onehot = torch.nn.functional.one_hot(y, 3).float()
    assert torch.allclose(out, cos - 0.35 * onehot, atol=1e-5)
    assert build_head("ArcMargin", 128, 10).margin == 0.5
    assert build_head("CosMargin", 128, 10, margin=0.2).margin == 0.2
    with pytest.raises(ValueError, match="unknown loss"):
        build_head("Softmax", 128, 10)


# ------------------------------------------------------------------------------------------------
# preprocessing, optimizer, schedule


@pytest.mark.parametrize("name", [m for m in list_models() if get_spec(m).arch])  # the trainable ones
def test_preprocess_matches_the_predictor(name):
    from facefeat.predict.predictor import FeaturePredictor
    from facefeat.runtime.model_dir import ModelMeta

    spec = get_spec(name)
    pred = FeaturePredictor(runner=None, meta=ModelMeta.from_spec(spec))
    rng = np.random.default_rng(0)
    for shape in [(112, 112, 3), (150, 130, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(preprocess_for_spec(spec, img), pred.preprocess([img])[0])
    if spec.preprocess.normalize_in_graph:  # the network normalises itself (SFace): 0..255 pixels in
        img = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        rgb = img[..., ::-1] if spec.channel_order == "RGB" else img
        np.testing.assert_array_equal(preprocess_for_spec(spec, img), rgb.transpose(2, 0, 1).astype(np.float32))


def test_no_weight_decay_on_1d_params_and_warmup_cosine():
    model = build_torch_model(get_spec("MobileFaceNet"))
    head = build_head("ArcMargin", 128, 4)
    decay, no_decay = param_groups([model, head], 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    prelus = [m.weight for m in model.modules() if isinstance(m, torch.nn.PReLU)]
    assert prelus and all(any(p is q for q in no_decay["params"]) for p in prelus)
    assert any(p is head.weight for p in decay["params"])
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters()) + head.weight.numel()

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sched = WarmupCosine(opt, 1.0, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == pytest.approx(1.0) and lrs[8] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 0.05
    state = sched.state_dict()
    other = WarmupCosine(opt, 1.0, 4, 12)
    other.load_state_dict(state)
    assert other.lr == sched.lr


# ------------------------------------------------------------------------------------------------
# the loop


def test_train_writes_paddlex_like_outputs(run_a):
    out = run_a
    for rel in ["config.yaml", "train.log", "train_result.json", "epoch_1/model.pt", "epoch_2/model.pt",
                "latest/model.pt", "best_model/model.pt", "best_model/inference/inference.onnx",
                "best_model/inference/inference.yml"]:
        assert (out / rel).is_file(), rel
    res = json.loads((out / "train_result.json").read_text())
    assert res["done_flag"] is True and res["model_name"] == "MobileFaceNet"
    assert res["num_classes"] == 8 and res["epochs_done"] == 2 and res["global_step"] == 4
    assert res["models"]["best"]["checkpoint"] == "best_model/model.pt"
    assert res["best_metric"]["val_accuracy"] is not None and 0.5 <= res["best_metric"]["val_accuracy"] <= 1.0
    assert [h["epoch"] for h in res["history"]] == [1, 2] and all("val" in h for h in res["history"])
    assert res["history"][0]["val"]["protocol"] == "best-threshold"  # 16 pairs: too few for 10-fold
    cfg = load_config(out / "config.yaml")
    assert cfg.Train.epochs_iters == 2 and cfg.Train.grad_clip == 5.0
    log = (out / "train.log").read_text()
    assert "epoch 1/2 iter 1/2" in log and "img/s" in log and "val accuracy" in log

    ck = load_checkpoint(out / "epoch_2" / "model.pt")  # weights_only=True
    assert ck["format"] == CHECKPOINT_FORMAT and ck["model_name"] == "MobileFaceNet"
    assert ck["embedding_size"] == 128 and ck["epoch"] == 2 and ck["step"] == 4
    assert {"model", "head", "optimizer", "scheduler", "rng", "best_metric", "config"} <= set(ck)
    assert tuple(ck["head"]["weight"].shape) == (128, 8)
    assert {"python", "numpy", "torch"} <= set(ck["rng"][0])
    assert ck["config"]["Train"]["epochs_iters"] == 2
    best = load_checkpoint(out / "best_model" / "model.pt")
    assert "optimizer" not in best and best["epoch"] == res["best_metric"]["epoch"]
    thr = yaml.safe_load((out / "best_model/inference/inference.yml").read_text())["facefeat"]["thresholds"]
    assert thr["source"] == "facefeat train" and thr["verification"]["best_accuracy"]["threshold"] is not None
    assert thr["verification"]["far=1e-3"] is None  # 16 val pairs cannot measure FAR 1e-3


def test_exported_best_model_matches_its_checkpoint(run_a, synth):
    from facefeat.predict.predictor import create_model

    onnx_model = create_model(model_dir=run_a / "best_model" / "inference", backend="onnxruntime", batch_size=4)
    torch_model = create_model("MobileFaceNet", weights=run_a / "best_model" / "model.pt", backend="torch")
    imgs = [cv2.imread(str(p)) for p in sorted(synth.glob("train/images/*/*.jpg"))[:5]]
    a, b = onnx_model.embed(imgs), torch_model.embed(imgs)
    assert a.shape == (len(imgs), 128)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert onnx_model.meta.extra.get("trained_epoch") is not None


def test_resume_continues_exactly(run_a, synth, tmp_path):
    """2 epochs in one go == 1 epoch + resume for 1: same weights, head and optimizer state."""
    out_b = tmp_path / "b"
    res = run_train(train_cfg(synth, out_b, f"Train.resume_path={run_a / 'epoch_1'}", "Train.grad_clip=5.0"), quiet=True)
    assert res["done_flag"] and res["resumed_from"] and res["global_step"] == 4
    a = load_checkpoint(run_a / "epoch_2" / "model.pt")
    b = load_checkpoint(out_b / "epoch_2" / "model.pt")
    for part in ("model", "head"):
        assert a[part].keys() == b[part].keys()
        diff = [k for k in a[part] if not torch.equal(a[part][k], b[part][k])]
        assert not diff, f"{part} differs after resume: {diff[:5]}"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)
    assert a["scheduler"] == b["scheduler"]
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


def test_resume_needs_a_full_checkpoint(run_a, synth, tmp_path):
    with pytest.raises(WeightsError, match="not a resumable checkpoint"):
        run_train(train_cfg(synth, tmp_path / "x", f"Train.resume_path={run_a / 'best_model' / 'model.pt'}"), quiet=True)


# ------------------------------------------------------------------------------------------------
# fine-tuning sources


def test_pretrain_from_our_checkpoint_loads_backbone_and_head(run_a, monkeypatch):
    spec = get_spec("MobileFaceNet")
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    ref = pretrain_weights(spec, str(run_a / "best_model"))  # a folder holding model.pt
    assert ref.format == "facefeat" and ref.model_name == "MobileFaceNet"
    model, head = build_torch_model(spec), build_head("ArcMargin", 128, 8)
    info = load_pretrain(model, head, spec, ref)
    assert len(loads) == 1  # resolved, checked and loaded (backbone + head) from one read
    ck = load_checkpoint(ref.path)
    assert info["head_loaded"]
    assert all(torch.equal(v, ck["model"][k]) for k, v in model.state_dict().items())
    other_head = build_head("ArcMargin", 128, 5)  # different classes: backbone only
    assert not load_pretrain(build_torch_model(spec), other_head, spec, ref)["head_loaded"]


def test_finetuning_reads_its_checkpoint_once(run_a, synth, tmp_path, monkeypatch):
    """run_train resolves, checks and loads Train.pretrain_weight_path (backbone and head) from one
    torch.load of the file."""
    src = run_a / "best_model" / "model.pt"
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: reads.append(str(f)) or real_load(f, *a, **k))
    res = run_train(train_cfg(synth, tmp_path / "ft", f"Train.pretrain_weight_path={src}", "Train.epochs_iters=1"),
                    quiet=True)
    assert res["done_flag"] and res["pretrain"]["head_loaded"] and res["pretrain"]["format"] == "facefeat"
    assert reads.count(str(src)) == 1, reads


def test_imprint_head_sets_class_centres(synth):
    from facefeat.data.formats import read_label_file
    from facefeat.engine.train import imprint_head

    spec = get_spec("MobileFaceNet")
    torch.manual_seed(0)
    model, head = build_torch_model(spec), build_head("ArcMargin", 128, 9)  # class 8 has no images
    before = head.weight.detach().clone()
    samples = read_label_file(synth / "train" / "label.txt")
    assert imprint_head(model, head, samples, spec, torch.device("cpu"), per_class=2) == 8
    feats = torch.nn.functional.normalize(model.eval()(torch.stack(
        [torch.from_numpy(preprocess_for_spec(spec, cv2.imread(s.path))) for s in samples])).detach(), dim=1)
    labels = torch.tensor([s.label for s in samples])
    w = torch.nn.functional.normalize(head.weight.detach(), dim=0)
    for c in range(8):
        centre = torch.nn.functional.normalize(feats[labels == c].mean(0), dim=0)
        assert torch.allclose(w[:, c], centre, atol=1e-4)
    assert torch.equal(head.weight[:, 8], before[:, 8])


def test_pretrain_from_paddlex_pdparams(paddle_peers):
    spec = get_spec("MobileFaceNet")
    pd = paddle_peers / "MobileFaceNet" / "model.pdparams"
    ref = pretrain_weights(spec, str(pd))
    assert ref.format == "pdparams"
    model, head = build_torch_model(spec), build_head("ArcMargin", 128, 10)
    info = load_pretrain(model, head, spec, ref)
    assert info["head_loaded"]  # PaddleX head.weight is [128, 10]: same layout
    ref = np.load(paddle_peers / "MobileFaceNet" / "reference_io.npz")
    with torch.no_grad():
        y = model.eval()(torch.from_numpy(ref["x"])).numpy()
    np.testing.assert_allclose(y, ref["y"], rtol=1e-3, atol=1e-3)


def test_pretrain_sface_onnx_and_name(tmp_path):
    from facefeat.weights.onnx_import import sface_package_path

    sface = get_spec("SFace")
    assert pretrain_weights(sface, "SFace").format == "onnx_int8bq"  # the packaged default
    assert pretrain_weights(sface, str(sface_package_path())).format == "onnx_int8bq"
    assert pretrain_weights(sface, None) is None and pretrain_weights(sface, "null") is None
    mfn = get_spec("MobileFaceNet")
    with pytest.raises(WeightsError, match="SFace only"):
        load_pretrain(build_torch_model(mfn), build_head("ArcMargin", 128, 2), mfn, pretrain_weights(mfn, str(sface_package_path())))
    with pytest.raises(ConfigError, match="names model SFace"):
        pretrain_weights(mfn, "SFace")
    with pytest.raises(WeightsError, match="does not exist"):
        pretrain_weights(mfn, str(tmp_path / "nope.pdparams"))


def test_pretrain_zoo_name_offline_says_so(monkeypatch):
    """MobileFaceNet's default weights are PaddleX's URL: unreachable offline, and the error says so."""
    import facefeat.weights.sources as sources

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(sources.urllib.request, "urlopen", no_network)
    with pytest.raises(WeightsError) as ei:
        pretrain_weights(get_spec("MobileFaceNet"), "MobileFaceNet")
    msg = str(ei.value)
    assert "cannot be obtained" in msg and "Offline" in msg and "null" in msg and "download" in msg


# ------------------------------------------------------------------------------------------------
# errors


def test_train_errors_name_the_problem(synth, tmp_path):
    cfg = train_cfg(synth, tmp_path / "o")
    cfg.Global.dataset_dir = None
    with pytest.raises(ConfigError, match="dataset_dir"):
        run_train(cfg, quiet=True)
    with pytest.raises(DatasetError, match="num_classes=4"):
        run_train(train_cfg(synth, tmp_path / "o", "Train.num_classes=4"), quiet=True)
    bad = tmp_path / "bad"
    (bad / "train").mkdir(parents=True)
    (bad / "train" / "label.txt").write_text("images/missing.jpg 0\nimages/missing2.jpg 1\n")
    with pytest.raises(DatasetError, match="not found"):
        run_train(train_cfg(bad, tmp_path / "o"), quiet=True)
    assert cli_main(["-c", CONFIG, "-o", "Global.mode=train", "-o", f"Global.dataset_dir={bad}",
                     "-o", f"Global.output={tmp_path / 'o'}", "-o", "Train.pretrain_weight_path=null"]) == 2


# ------------------------------------------------------------------------------------------------
# real faces: SFace fine-tuning with CosMargin and data-loader workers


@pytest.mark.slow  # fine-tunes SFace on LFW faces
def test_sface_finetune_on_lfw_faces(lfw_dir, tmp_path):
    ds = make_lfw_dataset(lfw_dir, tmp_path / "lfw_tiny", ids=4, per_id=4, val_pairs=20)
    out = tmp_path / "out"
    cfg = load_config(str(REPO / "configs" / "SFace.yaml"), [
        "Global.mode=train", f"Global.dataset_dir={ds}", f"Global.output={out}", "Train.epochs_iters=1",
        "Train.batch_size=8", "Train.num_workers=2", "Train.loss=CosMargin", "Train.learning_rate=1e-5",
        "Train.eval_interval=1", "Evaluate.batch_size=20",
    ])
    assert cfg.Train.pretrain_weight_path == "SFace" and cfg.Train.margin == 0.35
    res = run_train(cfg, quiet=True)
    assert res["done_flag"] and res["pretrain"]["format"] == "onnx_int8bq"
    assert res["pretrain"]["head_imprinted_classes"] == 4  # the new head starts at the class means
    assert res["num_classes"] == 4 and res["global_step"] == 2
    acc = res["history"][0]["val"]["accuracy"]
    assert acc >= 0.8, f"SFace after a tiny fine-tune should still verify LFW faces, got {acc}"
    ck = load_checkpoint(out / "best_model" / "model.pt")
    assert ck["loss"] == "CosMargin" and ck["model_name"] == "SFace"


def test_eta_of_the_remaining_epochs():
    from facefeat.engine.progress import eta_note

    assert eta_note(120.0, 2, 3) == "; ETA 3m00s for 3 more epoch(s)"
    assert eta_note(7200.0, 1, 2) == "; ETA 4h00m for 2 more epoch(s)" and eta_note(5.0, 1, 0) == ""


@pytest.mark.slow
def test_ctrl_c_prints_the_resume_command_and_it_resumes(synth, tmp_path, capsys):
    """A real SIGINT mid-run: exit 130, and stderr says how to resume; that command resumes."""
    import os
    import shlex
    import signal
    import threading
    import time

    out = tmp_path / "run"
    latest = out / "latest" / "model.pt"
    stop = threading.Event()

    def interrupt_after_first_checkpoint():
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            if latest.is_file():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    t = threading.Thread(target=interrupt_after_first_checkpoint, daemon=True)
    t.start()
    try:
        rc = cli_main(["-c", CONFIG, "--quiet", "-o", "Global.mode=train", "-o", f"Global.dataset_dir={synth}",
                       "-o", f"Global.output={out}", "-o", "Train.epochs_iters=200", "-o", "Train.batch_size=8",
                       "-o", "Train.pretrain_weight_path=null", "-o", "Train.num_workers=0",
                       "-o", "Train.eval_interval=100", "-o", "Evaluate.batch_size=16"])
    finally:
        stop.set()
        t.join(10)
    err = capsys.readouterr().err
    assert rc == 130, err
    hint = next(line for line in err.splitlines() if "to resume" in line)
    cmd = shlex.split(hint.split(": ", 2)[-1])
    assert cmd[:3] == ["facefeat", "-c", str(out / "config.yaml")] and f"Train.resume_path={out / 'latest'}" in cmd
    done = int(torch.load(latest, map_location="cpu", weights_only=False)["epoch"])
    assert cli_main(cmd[1:] + ["--quiet", "-o", f"Train.epochs_iters={done + 1}"]) == 0
    res = json.loads((out / "train_result.json").read_text())
    assert res["done_flag"] and res["epochs_done"] == done + 1 and res["resumed_from"]
