"""Training: a zoo backbone + a margin head (ArcMargin / CosMargin) on a PaddleX face dataset.

    facefeat -c configs/MobileFaceNet.yaml -o Global.mode=train -o Global.dataset_dir=./dataset/x

The loop is arcface_torch's, compact: AdamW (no weight decay on 1-D parameters: biases, BN,
PReLU), linear warm-up for ``Train.warmup_steps`` *epochs* (PaddleX's meaning) then cosine decay to
0 (both per iteration), random horizontal flips, AMP on CUDA only, optional gradient clipping,
fine-tuning from ``Train.pretrain_weight_path`` with the new head's class centres imprinted from
the pretrained features (:func:`imprint_head`), validation on ``val/pair_label.txt`` every
``eval_interval`` epochs (10-fold accuracy with at least
:data:`~facefeat.engine.evaluate.KFOLD_MIN_PAIRS` pairs, else best-threshold accuracy) keeping the
best model, and checkpoints every ``save_interval`` epochs. Under torchrun it trains with
DistributedDataParallel (see :mod:`facefeat.engine.distributed`); only rank 0 writes.

Output layout (``Global.output``)::

    config.yaml                     the config used
    train.log                       per-iteration and per-epoch log
    train_result.json               PaddleX-like summary: done_flag, best metric, paths, history
    epoch_<N>/model.pt              full checkpoint after epoch N (resumable)
    latest/model.pt                 the newest full checkpoint
    best_model/model.pt             the best epoch's weights (model + head, no optimizer)
    best_model/inference/           inference.onnx + inference.yml (create_model(model_dir=...))

A checkpoint is a ``torch.save``d dict loadable with ``weights_only=True``: ``format``,
``model_name``, ``embedding_size``, ``num_classes``, ``loss``, ``model`` (backbone state dict),
``head``, ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (epochs completed), ``step``
(optimizer steps), ``rng`` (per rank: python / numpy / torch / cuda states), ``best_metric``,
``best_epoch``, ``history``, ``config``. ``Train.resume_path`` continues exactly: a run of 2
epochs equals 1 epoch + resume for 1 (the sampler order and flips are functions of seed, epoch and
rank, and every epoch reseeds from them as well).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facefeat.data.formats import PairSet, Sample, read_label_file, read_pairs
from facefeat.engine.distributed import (
    DistContext,
    all_gather_object,
    barrier,
    parse_device,
    setup,
    teardown,
)
from facefeat.engine.evaluate import _read_bgr, embed_images, pair_scores, quick_verification
from facefeat.errors import ConfigError, DatasetError, WeightsError
from facefeat.models.heads import build_head
from facefeat.registry import ModelSpec, get_spec, list_models
from facefeat.runtime.model_dir import ModelMeta
from facefeat.runtime.torch_build import (
    CHECKPOINT_FORMAT,
    build_torch_model,
    export_onnx,
    load_checkpoint,
    load_weights_into,
)
from facefeat.utils import atomic_path, atomic_write_json

__all__ = [
    "CKPT_NAME",
    "FaceTrainDataset",
    "TrainNet",
    "WarmupCosine",
    "checkpoint_path",
    "imprint_head",
    "param_groups",
    "preprocess_for_spec",
    "resolve_pretrain",
    "run_train",
    "save_checkpoint",
]

log = logging.getLogger("facefeat.train")

CKPT_NAME = "model.pt"
RESULT_NAME = "train_result.json"
LOG_NAME = "train.log"


# ------------------------------------------------------------------------------------------------
# data


def preprocess_for_spec(spec: ModelSpec | ModelMeta, bgr: np.ndarray) -> np.ndarray:
    """One BGR uint8 image -> CHW float32, exactly as the predictor prepares it for this model."""
    from facefeat.predict.predictor import preprocess_images

    return preprocess_images(spec, [bgr])[0]


class FaceTrainDataset(torch.utils.data.Dataset):
    """``train/label.txt`` samples -> ``(CHW float32 tensor, label)``, preprocessed for ``spec``."""

    def __init__(self, samples: Sequence[Sample], spec: ModelSpec | ModelMeta):
        self.paths = [s.path for s in samples]
        self.labels = [int(s.label) for s in samples]
        self.spec = spec

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        x = preprocess_for_spec(self.spec, _read_bgr(self.paths[i]))
        return torch.from_numpy(x), self.labels[i]


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------
# model, optimizer, schedule


class TrainNet(nn.Module):
    """Backbone + margin head: ``forward(images, labels) -> logits`` (one module for DDP)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x), labels)


def param_groups(modules: Sequence[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on >= 2-D weights only; none on biases, BN and PReLU (1-D)."""
    decay, no_decay = [], []
    for m in modules:
        for _, p in m.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class WarmupCosine:
    """Per-iteration LR: linear warm-up over ``warmup_steps`` then cosine decay to 0 at ``total_steps``.

    ``factor(step)`` multiplies the base LR for optimizer step ``step`` (0-based): ``(step+1)/W``
    during warm-up, then ``0.5 * (1 + cos(pi * (step - W) / (T - W)))``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_steps: int, total_steps: int):
        self.optimizer = optimizer
        self.base_lr = float(base_lr)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, min(int(warmup_steps), self.total_steps))
        self.step_num = 0
        self._apply()

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    @property
    def lr(self) -> float:
        return self.base_lr * self.factor(self.step_num)

    def _apply(self) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr

    def step(self) -> None:
        self.step_num += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"name": "warmup_cosine", "base_lr": self.base_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "step": self.step_num}

    def load_state_dict(self, state: Mapping) -> None:
        # the schedule's shape comes from the current config (so a resumed run may train longer);
        # the position comes from the checkpoint
        self.step_num = int(state["step"])
        self._apply()


# ------------------------------------------------------------------------------------------------
# weights


def _is_url(s: str) -> bool:
    return s.lower().startswith(("http://", "https://"))


def resolve_pretrain(spec: ModelSpec, value: str | os.PathLike | None) -> tuple[Path, str] | None:
    """``Train.pretrain_weight_path`` -> ``(local file, format)``, or None (from scratch).

    Accepts a file (``.pdparams``, facefeat ``.pt``, SFace ``.onnx``), a folder holding
    ``model.pt`` (``output/best_model``), an http(s) URL (downloaded once into the cache), or a zoo
    model name meaning that model's default weights. When those cannot be downloaded (offline),
    the error says so and how to proceed.
    """
    from facefeat.weights.sources import download, resolve_weights, weights_cache_dir

    if value is None or str(value).strip().lower() in ("", "null", "none"):
        return None
    text = str(value).strip()
    if any(text.lower() == m.lower() for m in list_models()) and not Path(text).exists():
        named = get_spec(text)
        if named.name != spec.name:
            raise ConfigError(f"Train.pretrain_weight_path={text} names model {named.name}, but Global.model is "
                              f"{spec.name}; use {spec.name}, a weights file, or null (from scratch)")
        try:
            return resolve_weights(spec)
        except WeightsError as exc:
            raise WeightsError(
                f"Train.pretrain_weight_path={text} means the default pretrained weights of {spec.name}, "
                f"which cannot be obtained ({exc}). Offline, point Train.pretrain_weight_path at a local "
                f"file (.pdparams / .pt / .onnx) or set it to null to train from scratch."
            ) from exc
    if _is_url(text):
        name = text.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or "weights"
        dst = weights_cache_dir() / name
        if not dst.is_file():
            try:
                download(text, dst)
            except Exception as exc:
                raise WeightsError(
                    f"Train.pretrain_weight_path: download of {text} failed ({exc}); no network? Put the "
                    f"file at {dst}, pass a local path, or set it to null to train from scratch."
                ) from exc
        return resolve_weights(spec, dst)
    p = Path(text).expanduser()
    if p.is_dir():
        for cand in (p / CKPT_NAME, p / "best_model" / CKPT_NAME):
            if cand.is_file():
                return resolve_weights(spec, cand)
        raise WeightsError(f"Train.pretrain_weight_path {text!r} is a folder without {CKPT_NAME}")
    return resolve_weights(spec, p)


def load_pretrain(backbone: nn.Module, head: nn.Module, spec: ModelSpec, path: Path, fmt: str) -> dict:
    """Load pretrained backbone weights (and the head's, when a saved head has the same shape)."""
    if fmt == "onnx_int8bq" and spec.name != "SFace":
        raise WeightsError(f"{path}: an .onnx file can initialise SFace only, not {spec.name}")
    load_weights_into(backbone, spec, path, fmt)
    info = {"pretrain_weight_path": str(path), "format": fmt, "head_loaded": False}
    head_w = None
    if fmt == "facefeat":
        ck = load_checkpoint(path)
        hs = ck.get("head")
        if isinstance(hs, dict) and "weight" in hs:
            head_w = hs["weight"]
    elif fmt == "pdparams":
        from facefeat.weights.paddle import load_pdparams

        arr = load_pdparams(path).get("head.weight")
        if arr is not None:
            head_w = torch.from_numpy(np.array(arr, dtype=np.float32))
    if head_w is not None and tuple(head_w.shape) == tuple(head.weight.shape):
        with torch.no_grad():
            head.weight.copy_(head_w.to(head.weight.dtype))
        info["head_loaded"] = True
    return info


#: class centres of a fresh head are imprinted from at most this many images per class
IMPRINT_PER_CLASS = 5


@torch.no_grad()
def imprint_head(backbone: nn.Module, head: nn.Module, samples: Sequence[Sample], spec: ModelSpec,
                 device: torch.device, per_class: int = IMPRINT_PER_CLASS, batch_size: int = 64) -> int:
    """Set each class centre of ``head`` to the mean unit embedding of (up to ``per_class``) of its
    training images under the pretrained ``backbone`` ("weight imprinting").

    Fine-tuning from pretrained weights with a random head starts far from the optimum (every
    target cosine ~0, so the margin loss is at its plateau and its gradients scramble the
    backbone); imprinted centres start it where the features already are. Classes without images
    keep their random centre. Returns the number of classes imprinted.
    """
    from facefeat.predict.predictor import FeaturePredictor, TorchRunner

    chosen: dict[int, list[str]] = {}
    for s in samples:
        lst = chosen.setdefault(int(s.label), [])
        if len(lst) < per_class:
            lst.append(s.path)
    paths = [p for lab in sorted(chosen) for p in chosen[lab]]
    labels = np.array([lab for lab in sorted(chosen) for _ in chosen[lab]], np.int64)
    was_training = backbone.training
    try:
        pred = FeaturePredictor(TorchRunner(backbone, str(device)), ModelMeta.from_spec(spec), batch_size)
        feats = np.concatenate([pred.embed([_read_bgr(p) for p in paths[i: i + batch_size]])
                                for i in range(0, len(paths), batch_size)])
    finally:
        backbone.train(was_training)
    sums = np.zeros((head.num_classes, feats.shape[1]), np.float64)
    np.add.at(sums, labels, feats)
    cls = np.unique(labels)
    centres = sums[cls] / np.maximum(np.linalg.norm(sums[cls], axis=1, keepdims=True), 1e-12)
    w = head.weight  # [embedding_size, num_classes]
    scale = float(w.norm(dim=0).mean())  # keep the init's column norm (only the direction matters)
    w[:, torch.from_numpy(cls)] = torch.from_numpy(centres.T.astype(np.float32)).to(w) * scale
    return int(cls.size)


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a folder holding one (``epoch_3/``; a training output -> its latest)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for cand in (p / CKPT_NAME, p / "latest" / CKPT_NAME):
            if cand.is_file():
                return cand
        raise WeightsError(f"{path}: folder holds no {CKPT_NAME} (nor latest/{CKPT_NAME})")
    if not p.is_file():
        raise WeightsError(f"checkpoint {str(path)!r} does not exist")
    return p


def save_checkpoint(path: str | os.PathLike, obj: Mapping) -> Path:
    """``torch.save`` atomically (temp file + rename)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(dict(obj), str(tmp))
    return Path(path)


# ------------------------------------------------------------------------------------------------
# RNG (kept weights_only-loadable: tensors, lists, numbers, strings)


def _rng_state() -> dict:
    v, st, gauss = random.getstate()
    nps = np.random.get_state(legacy=False)
    out = {
        "python": {"version": int(v), "state": [int(x) for x in st], "gauss": gauss},
        "numpy": {"bit_generator": str(nps["bit_generator"]),
                  "key": torch.from_numpy(np.asarray(nps["state"]["key"], dtype=np.int64)),
                  "pos": int(nps["state"]["pos"]), "has_gauss": int(nps["has_gauss"]),
                  "gauss": float(nps["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return out


def _set_rng_state(st: Mapping) -> None:
    py = st.get("python")
    if py:
        random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss"]))
    npst = st.get("numpy")
    if npst:
        np.random.set_state({"bit_generator": npst["bit_generator"],
                             "state": {"key": np.asarray(npst["key"], dtype=np.uint32), "pos": int(npst["pos"])},
                             "has_gauss": int(npst["has_gauss"]), "gauss": float(npst["gauss"])})
    if st.get("torch") is not None:
        torch.set_rng_state(st["torch"])
    if st.get("cuda") is not None and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(list(st["cuda"]))
        except (RuntimeError, ValueError, IndexError):  # a different number of GPUs: keep fresh states
            log.debug("CUDA RNG states not restored (different GPU count)")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _derived_seed(*parts: int) -> int:
    h = hashlib.sha256(" ".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def param_hash(module: nn.Module) -> str:
    """sha256 of every parameter's bytes (names + values), to compare replicas."""
    h = hashlib.sha256()
    for name, p in module.named_parameters():
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# the run


def _cfg(cfg: Mapping, section: str, key: str, default: Any = None) -> Any:
    sec = cfg.get(section) or {}
    v = sec.get(key, default)
    return default if v is None else v


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _dataset_files(dataset_dir: str | os.PathLike) -> tuple[Path, Path]:
    d = Path(dataset_dir)
    if not d.is_dir():
        raise DatasetError(f"Global.dataset_dir {str(dataset_dir)!r} is not a directory")
    if not (d / "train").is_dir():  # PaddleX zips often unpack into one sub-folder
        subs = [p for p in d.iterdir() if p.is_dir() and (p / "train").is_dir()]
        if len(subs) == 1:
            d = subs[0]
    return d / "train" / "label.txt", d / "val" / "pair_label.txt"


class _Logger:
    """train.log (rank 0) + messages on stderr that do not break the tqdm bar."""

    def __init__(self, path: Path | None, quiet: bool):
        self.quiet = quiet
        self.handler = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.handler = logging.FileHandler(path, mode="a", encoding="utf-8")
            self.handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
            log.addHandler(self.handler)
            log.setLevel(logging.INFO)
            log.propagate = False

    def file(self, msg: str) -> None:
        if self.handler is not None:
            log.info(msg)

    def say(self, msg: str) -> None:
        self.file(msg)
        if not self.quiet and self.handler is not None:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def close(self) -> None:
        if self.handler is not None:
            log.removeHandler(self.handler)
            self.handler.close()
            self.handler = None


def _validate(backbone: nn.Module, spec: ModelSpec, pairs: PairSet, images: list[str], left: np.ndarray,
              right: np.ndarray, device: torch.device, batch_size: int, flip: bool) -> dict:
    from facefeat.predict.predictor import FeaturePredictor, TorchRunner

    was_training = backbone.training
    try:
        pred = FeaturePredictor(TorchRunner(backbone, str(device)), ModelMeta.from_spec(spec), batch_size)
        plain, mirrored = embed_images(pred, images, batch_size, progress=False)
    finally:
        backbone.train(was_training)
    feats = plain + mirrored if flip else plain
    out = quick_verification(pair_scores(feats, left, right), pairs.labels, pairs.fold_ids)
    out["flip_test"] = bool(flip)
    return out


def run_train(cfg: Mapping, quiet: bool = False) -> dict:
    """``Global.mode=train``: train ``Global.model`` on ``Global.dataset_dir``; returns train_result."""
    device = parse_device(str(_cfg(cfg, "Global", "device", "cpu")))
    ctx = setup(device)
    try:
        return _train(cfg, ctx, quiet)
    finally:
        teardown(ctx)


def _train(cfg: Mapping, ctx: DistContext, quiet: bool) -> dict:  # the loop, in one place
    from facefeat.config import save_config

    t_start = time.perf_counter()
    spec = get_spec(str(_cfg(cfg, "Global", "model", "MobileFaceNet")))
    ds_dir = _cfg(cfg, "Global", "dataset_dir")
    if not ds_dir:
        raise ConfigError("Global.dataset_dir is required for training (train/label.txt, val/pair_label.txt)")
    out_dir = Path(_cfg(cfg, "Global", "output", "./output"))
    T = cfg["Train"]
    epochs = int(T["epochs_iters"])
    if epochs < 1:
        raise ConfigError(f"Train.epochs_iters must be >= 1, got {epochs}")
    seed = int(_cfg(cfg, "Train", "seed", 0))
    lr = float(T["learning_rate"])
    eval_interval = max(1, int(_cfg(cfg, "Train", "eval_interval", 1)))
    save_interval = max(1, int(_cfg(cfg, "Train", "save_interval", 1)))
    log_interval = max(1, int(_cfg(cfg, "Train", "log_interval", 1)))
    eval_flip = bool(_cfg(cfg, "Evaluate", "flip", True))
    eval_bs = int(_cfg(cfg, "Evaluate", "batch_size", 64))

    # --- data
    train_file, val_file = _dataset_files(ds_dir)
    samples = read_label_file(train_file)
    missing = [s for s in samples if not os.path.isfile(s.path)]
    if missing:
        shown = "; ".join(f"line {s.line}: {s.rel}" for s in missing[:5])
        raise DatasetError(f"{train_file}: {len(missing)} image(s) not found ({shown}); run Global.mode=check_dataset")
    max_label = max(s.label for s in samples)
    num_classes = T.get("num_classes")
    num_classes = int(num_classes) if num_classes is not None else max_label + 1
    if num_classes <= max_label:
        raise DatasetError(f"Train.num_classes={num_classes} but {train_file} has label {max_label}; "
                           f"use num_classes >= {max_label + 1} or null")
    pairs = read_pairs(val_file) if val_file.is_file() else None
    if pairs is not None:
        images = pairs.images
        pos = {p: i for i, p in enumerate(images)}
        left = np.array([pos[p.left] for p in pairs.pairs], np.int64)
        right = np.array([pos[p.right] for p in pairs.pairs], np.int64)
        gone = [x for x in images if not os.path.isfile(x)]
        if gone:
            raise DatasetError(f"{val_file}: {len(gone)} image(s) not found (e.g. {gone[0]}); "
                               "run Global.mode=check_dataset")

    # weights to start from: resolved before anything is written, so a bad path fails cleanly
    resume = T.get("resume_path")
    resume_file = checkpoint_path(resume) if resume else None
    pre = None if resume else resolve_pretrain(spec, T.get("pretrain_weight_path"))

    dataset = FaceTrainDataset(samples, spec)
    per_rank = math.ceil(len(dataset) / ctx.world_size)
    batch_size = int(T["batch_size"])
    if per_rank < 2:
        raise DatasetError(f"{train_file}: {len(dataset)} image(s) are too few to train on {ctx.world_size} process(es)")
    batch_note = ""
    if batch_size > per_rank:
        batch_note = f" (Train.batch_size {batch_size} > {per_rank} images per process: using {per_rank})"
        batch_size = per_rank  # drop_last would leave no batch at all
    sampler = torch.utils.data.distributed.DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=False)
    workers = int(_cfg(cfg, "Train", "num_workers", 0))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
        pin_memory=ctx.device.type == "cuda", worker_init_fn=_worker_init if workers > 0 else None,
        persistent_workers=workers > 0,
        # spawn, not fork: a forked worker inherits the parent's OpenMP/ONNX Runtime/FAISS thread
        # pools mid-state and can deadlock on its first OpenMP call
        multiprocessing_context="spawn" if workers > 0 else None)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * epochs
    warmup_steps = int(round(float(_cfg(cfg, "Train", "warmup_steps", 0)) * steps_per_epoch))

    # --- logging (rank 0 writes)
    logger = _Logger(out_dir / LOG_NAME if ctx.is_main else None, quiet)
    try:
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out_dir / "config.yaml")

        # --- model + head (same init on every rank; DDP broadcasts rank 0's anyway)
        _seed_all(seed)
        backbone = build_torch_model(spec)
        head = build_head(str(_cfg(cfg, "Train", "loss", "ArcMargin")), spec.embedding_size, num_classes,
                          T.get("margin"), float(_cfg(cfg, "Train", "scale", 64.0)))
        ckpt = None
        pretrain_info = None
        if resume_file is not None:
            ck_path = resume_file
            ckpt = load_checkpoint(ck_path)
            for key in ("optimizer", "scheduler", "epoch", "step", "head"):
                if key not in ckpt:
                    raise WeightsError(f"{ck_path}: not a resumable checkpoint (no {key!r}); use it as "
                                       "Train.pretrain_weight_path to fine-tune from it instead")
            if ckpt.get("model_name") not in (None, spec.name):
                raise WeightsError(f"{ck_path}: checkpoint of {ckpt['model_name']}, not {spec.name}")
            backbone.load_state_dict(ckpt["model"])
            try:
                head.load_state_dict(ckpt["head"])
            except RuntimeError as exc:
                raise WeightsError(f"{ck_path}: its head does not fit this run (num_classes / loss changed?): {exc}") from exc
        elif pre is not None:
            pretrain_info = load_pretrain(backbone, head, spec, *pre)
            if not pretrain_info["head_loaded"] and ctx.is_main:  # DDP copies rank 0's head to the others
                t_imp = time.perf_counter()
                n_imp = imprint_head(backbone, head, samples, spec, ctx.device, batch_size=int(_cfg(cfg, "Evaluate", "batch_size", 64)))
                pretrain_info["head_imprinted_classes"] = n_imp
                pretrain_info["head_imprint_seconds"] = round(time.perf_counter() - t_imp, 2)

        net = TrainNet(backbone, head).to(ctx.device)
        net.train()
        optimizer = torch.optim.AdamW(param_groups([backbone, head], float(_cfg(cfg, "Train", "weight_decay", 0.05))),
                                      lr=lr, betas=(0.9, 0.999), eps=1e-8)
        scheduler = WarmupCosine(optimizer, lr, warmup_steps, total_steps)
        use_amp = bool(_cfg(cfg, "Train", "amp", False)) and ctx.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        start_epoch, step = 0, 0
        best_metric, best_epoch, history = None, None, []
        if ckpt is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
            best_metric, best_epoch = ckpt.get("best_metric"), ckpt.get("best_epoch")
            history = list(ckpt.get("history") or [])
            rng = ckpt.get("rng")
            if isinstance(rng, list) and rng:
                _set_rng_state(rng[ctx.rank] if len(rng) == ctx.world_size else rng[0])
            if start_epoch >= epochs:
                logger.say(f"checkpoint {resume} has already trained {start_epoch} epoch(s) >= Train.epochs_iters={epochs}")
        model = net
        if ctx.distributed:
            model = nn.parallel.DistributedDataParallel(
                net, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        grad_clip = T.get("grad_clip")
        params = [p for p in net.parameters() if p.requires_grad]

        logger.say(
            f"train {spec.name} on {ds_dir}: {len(dataset)} images, {num_classes} classes, "
            f"{len(pairs) if pairs is not None else 0} val pairs; epochs {epochs}, batch {batch_size}{batch_note} x "
            f"{ctx.world_size} process(es), {steps_per_epoch} steps/epoch, lr {lr} (warm-up {warmup_steps} steps, "
            f"cosine), {T.get('loss')} m={T.get('margin')} s={T.get('scale')}, device {ctx.device}"
            + (", AMP" if use_amp else "")
            + (f"; resumed from {resume} at epoch {start_epoch}" if ckpt is not None else "")
            + (f"; pretrained from {pretrain_info['pretrain_weight_path']}" if pretrain_info else "; from scratch" if ckpt is None else "")
            + (f" (head centres imprinted for {pretrain_info['head_imprinted_classes']} classes)"
               if pretrain_info and pretrain_info.get("head_imprinted_classes") else ""))
        if bool(_cfg(cfg, "Train", "amp", False)) and not use_amp:
            logger.say("Train.amp is set but AMP runs on CUDA only; training in float32")
        if pairs is None:
            logger.say(f"no {val_file}: no validation; best_model = the last epoch")

        def checkpoint(epoch: int, full: bool) -> dict:
            obj = {
                "format": CHECKPOINT_FORMAT,
                "model_name": spec.name,
                "embedding_size": int(spec.embedding_size),
                "num_classes": int(num_classes),
                "loss": str(T.get("loss")),
                "model": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
                "head": {k: v.detach().cpu() for k, v in head.state_dict().items()},
                "epoch": int(epoch),
                "step": int(step),
                "best_metric": best_metric,
                "best_epoch": best_epoch,
                "history": history,
                "config": _plain(cfg),
            }
            if full:
                obj["optimizer"] = optimizer.state_dict()
                obj["scheduler"] = scheduler.state_dict()
                obj["scaler"] = scaler.state_dict() if use_amp else {}
            return obj

        def write_result(done: bool, extra: Mapping | None = None) -> dict:
            last = history[-1] if history else {}
            best_rel = f"best_model/{CKPT_NAME}"
            res = {
                "model_name": spec.name,
                "done_flag": bool(done),
                "config": "config.yaml",
                "train_log": LOG_NAME,
                "dataset_dir": str(ds_dir),
                "num_classes": int(num_classes),
                "num_train_images": len(dataset),
                "num_val_pairs": len(pairs) if pairs is not None else 0,
                "epochs": epochs,
                "epochs_done": int(last.get("epoch", start_epoch)),
                "global_step": int(step),
                "steps_per_epoch": steps_per_epoch,
                "batch_size": batch_size,
                "world_size": ctx.world_size,
                "device": str(ctx.device),
                "pretrain": pretrain_info,
                "resumed_from": str(resume) if resume else None,
                "best_metric": {"val_accuracy": best_metric, "epoch": best_epoch},
                "models": {
                    "last_1": {"score": last.get("val", {}).get("accuracy") if last else None,
                               "epoch": last.get("epoch"), "checkpoint": "latest/" + CKPT_NAME},
                    "best": {"score": best_metric, "epoch": best_epoch, "checkpoint": best_rel,
                             "inference_dir": "best_model/inference"},
                },
                "history": history,
                "wall_time_s": round(time.perf_counter() - t_start, 2),
            }
            if extra:
                res.update(extra)
            atomic_write_json(out_dir / RESULT_NAME, res)
            return res

        if ctx.is_main:
            write_result(False)

        from tqdm import tqdm

        for epoch in range(start_epoch + 1, epochs + 1):
            # every epoch's randomness is a function of (seed, epoch, rank): exact resume
            _seed_all(_derived_seed(seed, epoch, ctx.rank))
            sampler.set_epoch(epoch)
            flip_gen = torch.Generator().manual_seed(_derived_seed(seed, epoch, ctx.rank, 1))
            do_flip = bool(_cfg(cfg, "Train", "flip", True))
            net.train()
            t_epoch = time.perf_counter()
            t_log, n_log = time.perf_counter(), 0
            loss_sum, n_sum = 0.0, 0
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}", unit="it", leave=False,
                       disable=quiet or not ctx.is_main, file=sys.stderr, dynamic_ncols=True)
            for it, (x, y) in enumerate(loader, 1):
                if do_flip:
                    mask = torch.rand(x.shape[0], generator=flip_gen) < 0.5
                    x = torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)
                x = x.to(ctx.device, non_blocking=True)
                y = torch.as_tensor(y).to(ctx.device, non_blocking=True)
                with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                    logits = model(x, y)
                loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, float(grad_clip))
                scaler.step(optimizer)
                scaler.update()
                cur_lr = scheduler.lr
                scheduler.step()
                step += 1
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise FloatingPointError(f"loss is {lv} at epoch {epoch} step {step}; lower Train.learning_rate "
                                             "or set Train.grad_clip")
                loss_sum += lv * x.shape[0]
                n_sum += x.shape[0]
                n_log += x.shape[0] * ctx.world_size
                if it % log_interval == 0 or it == steps_per_epoch:
                    dt = time.perf_counter() - t_log
                    ips = n_log / dt if dt > 0 else 0.0
                    bar.set_postfix(loss=f"{lv:.4f}", lr=f"{cur_lr:.2e}", ips=f"{ips:.1f}")
                    logger.file(f"epoch {epoch}/{epochs} iter {it}/{steps_per_epoch} step {step} "
                                f"loss {lv:.5f} lr {cur_lr:.6e} {ips:.1f} img/s")
                    t_log, n_log = time.perf_counter(), 0
                bar.update(1)
            bar.close()
            ep_time = time.perf_counter() - t_epoch
            # mean loss over all ranks' samples
            mean_loss = loss_sum / max(1, n_sum)
            if ctx.distributed:
                parts = all_gather_object(ctx, (loss_sum, n_sum))
                mean_loss = sum(p[0] for p in parts) / max(1, sum(p[1] for p in parts))
            rec: dict[str, Any] = {"epoch": epoch, "loss": round(mean_loss, 6), "lr": cur_lr,
                                   "step": step, "seconds": round(ep_time, 2),
                                   "images_per_s": round(n_sum * ctx.world_size / ep_time, 2) if ep_time > 0 else None}
            improved = False
            if ctx.is_main:
                if pairs is not None and (epoch % eval_interval == 0 or epoch == epochs):
                    t_val = time.perf_counter()
                    val = _validate(backbone, spec, pairs, images, left, right, ctx.device, eval_bs, eval_flip)
                    val["seconds"] = round(time.perf_counter() - t_val, 2)
                    rec["val"] = val
                    if best_metric is None or val["accuracy"] > best_metric:
                        best_metric, best_epoch, improved = float(val["accuracy"]), epoch, True
                elif pairs is None:
                    best_epoch, improved = epoch, True
                history.append(rec)
                msg = (f"epoch {epoch}/{epochs}: loss {mean_loss:.4f}, lr {scheduler.lr:.2e}, {ep_time:.1f}s, "
                       f"{rec['images_per_s']} img/s")
                if "val" in rec:
                    v = rec["val"]
                    msg += (f"; val accuracy {100 * v['accuracy']:.2f}% ({v['protocol']}, {v['num_pairs']} pairs, "
                            f"threshold {v['threshold']:.3f})" + (" *best*" if improved else ""))
                logger.say(msg)
                if improved:
                    save_checkpoint(out_dir / "best_model" / CKPT_NAME, checkpoint(epoch, full=False))
                if epoch % save_interval == 0 or epoch == epochs:
                    rng = all_gather_object(ctx, _rng_state())
                    full = checkpoint(epoch, full=True)
                    full["rng"] = rng
                    save_checkpoint(out_dir / f"epoch_{epoch}" / CKPT_NAME, full)
                    save_checkpoint(out_dir / "latest" / CKPT_NAME, full)
                write_result(False)
            else:
                history.append(rec)
                if epoch % save_interval == 0 or epoch == epochs:
                    all_gather_object(ctx, _rng_state())
            barrier(ctx)

        # --- the end: replicas' agreement, the inference model, the summary
        extra: dict[str, Any] = {}
        if ctx.distributed:
            hashes = all_gather_object(ctx, param_hash(net))
            extra["ddp"] = {"world_size": ctx.world_size, "backend": "nccl" if ctx.device.type == "cuda" else "gloo",
                            "param_hashes": hashes, "consistent": len(set(hashes)) == 1}
        result: dict = {}
        if ctx.is_main:
            if extra.get("ddp") and not extra["ddp"]["consistent"]:
                logger.say(f"WARNING: DDP replicas disagree: parameter hashes {extra['ddp']['param_hashes']}")
            best_ck = out_dir / "best_model" / CKPT_NAME
            if best_ck.is_file():
                ck = load_checkpoint(best_ck)
                export_model = build_torch_model(spec)
                export_model.load_state_dict(ck["model"])
                meta = ModelMeta.from_spec(spec, trained_epoch=int(ck.get("epoch") or 0),
                                           val_accuracy=ck.get("best_metric"), source="facefeat train")
                export_onnx(export_model.eval(), meta, out_dir / "best_model" / "inference")
                extra["inference_dir"] = str(out_dir / "best_model" / "inference")
                if pairs is not None:  # calibrated operating points of the best model, on the val pairs
                    from facefeat.predict.predictor import create_model
                    from facefeat.thresholds import calibrate_pairs, store_thresholds

                    pred = create_model(model_dir=extra["inference_dir"], batch_size=eval_bs)
                    plain, _ = embed_images(pred, images, eval_bs, progress=False)
                    store_thresholds(pred, calibrate_pairs(pair_scores(plain, left, right), pairs.labels,
                                                           source="facefeat train", data={"name": "val/pair_label.txt"}))
            result = write_result(True, extra)
            logger.say(f"done in {result['wall_time_s']:.1f}s: best val accuracy "
                       + (f"{100 * best_metric:.2f}% (epoch {best_epoch})" if best_metric is not None else "n/a")
                       + f"; outputs in {out_dir}")
        barrier(ctx)
        return result
    finally:
        logger.close()
