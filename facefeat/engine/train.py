"""Training: a zoo backbone + a margin head (ArcMargin / CosMargin) on a PaddleX face dataset.

    facefeat -c configs/MobileFaceNet.yaml -o Global.mode=train -o Global.dataset_dir=./dataset/x

The loop is arcface_torch's, compact: AdamW with warm-up + cosine (:mod:`facefeat.engine.optim`),
random horizontal flips, AMP on CUDA only, optional gradient clipping, fine-tuning from
``Train.pretrain_weight_path`` with the new head's class centres imprinted from the pretrained
features (:func:`imprint_head`), validation on ``val/pair_label.txt`` every ``eval_interval``
epochs (:class:`Validator`) keeping the best model, and checkpoints every ``save_interval``
epochs that resume exactly (:mod:`facefeat.engine.checkpoint`). Under torchrun it trains with
DistributedDataParallel (see :mod:`facefeat.engine.distributed`); only rank 0 writes.

Output layout (``Global.output``)::

    config.yaml                     the config used (written by the mode runner)
    train.log                       per-iteration and per-epoch log
    train_result.json               PaddleX-like summary: done_flag, best metric, paths, history
    epoch_<N>/model.pt              full checkpoint after epoch N (resumable)
    latest/model.pt                 the newest full checkpoint
    best_model/model.pt             the best epoch's weights (model + head, no optimizer)
    best_model/inference/           inference.onnx + inference.yml (create_model(model_dir=...))
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facefeat.config import Config, as_config
from facefeat.data.formats import PairSet, Sample, read_label_file, read_pairs
from facefeat.data.layout import DatasetLayout
from facefeat.engine.checkpoint import (
    CKPT_NAME,
    Checkpointer,
    TrainState,
    checkpoint_path,
    derived_seed,
    param_hash,
    rng_state,
    save_checkpoint,
    seed_all,
)
from facefeat.engine.distributed import DistContext, all_gather_object, barrier, parse_device, setup, teardown
from facefeat.engine.evaluate import embed_images, pair_scores, quick_verification
from facefeat.engine.optim import WarmupCosine, build_optimizer, param_groups
from facefeat.errors import ConfigError, DatasetError, WeightsError
from facefeat.io.image import read_image
from facefeat.models.heads import build_head
from facefeat.registry import ModelSpec, get_spec
from facefeat.runtime.model_dir import ModelMeta
from facefeat.runtime.torch_build import build_torch_model, export_onnx, load_checkpoint, load_weights_into
from facefeat.utils import atomic_write_json

__all__ = [
    "CKPT_NAME",
    "FaceTrainDataset",
    "TrainData",
    "TrainNet",
    "TrainReport",
    "Validator",
    "WarmupCosine",
    "checkpoint_path",
    "imprint_head",
    "param_groups",
    "preprocess_for_spec",
    "resolve_pretrain",
    "run_train",
    "save_checkpoint",
    "train_one_epoch",
]

log = logging.getLogger("facefeat.train")

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
        x = preprocess_for_spec(self.spec, read_image(self.paths[i]))
        return torch.from_numpy(x), self.labels[i]


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


@dataclass
class TrainData:
    """The training samples and their loader, and the validation pairs (None without a val file)."""

    layout: DatasetLayout
    samples: list[Sample]
    num_classes: int
    pairs: PairSet | None

    @classmethod
    def read(cls, cfg: Config) -> "TrainData":
        """Read and check ``Global.dataset_dir``'s label files; every image must exist."""
        if not cfg.Global.dataset_dir:
            raise ConfigError("Global.dataset_dir is required for training (train/label.txt, val/pair_label.txt)")
        layout = DatasetLayout.find(cfg.Global.dataset_dir)
        samples = read_label_file(layout.train_file)
        missing = [s for s in samples if not os.path.isfile(s.path)]
        if missing:
            shown = "; ".join(f"line {s.line}: {s.rel}" for s in missing[:5])
            raise DatasetError(f"{layout.train_file}: {len(missing)} image(s) not found ({shown}); "
                               "run Global.mode=check_dataset")
        max_label = max(s.label for s in samples)
        n = cfg.Train.num_classes
        num_classes = int(n) if n is not None else max_label + 1
        if num_classes <= max_label:
            raise DatasetError(f"Train.num_classes={num_classes} but {layout.train_file} has label {max_label}; "
                               f"use num_classes >= {max_label + 1} or null")
        pairs = read_pairs(layout.val_file) if layout.val_file.is_file() else None
        if pairs is not None:
            gone = [x for x in pairs.images if not os.path.isfile(x)]
            if gone:
                raise DatasetError(f"{layout.val_file}: {len(gone)} image(s) not found (e.g. {gone[0]}); "
                                   "run Global.mode=check_dataset")
        return cls(layout, samples, num_classes, pairs)

    def loader(self, spec: ModelSpec, ctx: DistContext, batch_size: int, workers: int, seed: int):
        """``(loader, sampler, batch size, note)``; the batch shrinks to the images per process."""
        dataset = FaceTrainDataset(self.samples, spec)
        per_rank = math.ceil(len(dataset) / ctx.world_size)
        if per_rank < 2:
            raise DatasetError(f"{self.layout.train_file}: {len(dataset)} image(s) are too few to train on "
                               f"{ctx.world_size} process(es)")
        note = ""
        if batch_size > per_rank:
            note = f" (Train.batch_size {batch_size} > {per_rank} images per process: using {per_rank})"
            batch_size = per_rank  # drop_last would leave no batch at all
        sampler = torch.utils.data.distributed.DistributedSampler(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=False)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
            pin_memory=ctx.device.type == "cuda", worker_init_fn=_worker_init if workers > 0 else None,
            persistent_workers=workers > 0,
            # spawn, not fork: a forked worker inherits the parent's OpenMP/ONNX Runtime/FAISS thread
            # pools mid-state and can deadlock on its first OpenMP call
            multiprocessing_context="spawn" if workers > 0 else None)
        return loader, sampler, batch_size, note


# ------------------------------------------------------------------------------------------------
# model and weights


class TrainNet(nn.Module):
    """Backbone + margin head: ``forward(images, labels) -> logits`` (one module for DDP)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x), labels)


def resolve_pretrain(spec: ModelSpec, value: str | os.PathLike | None) -> tuple[Path, str] | None:
    """``Train.pretrain_weight_path`` -> ``(local file, format)``, or None (from scratch).

    Any form :func:`facefeat.weights.resolver.resolve` accepts: a file (``.pdparams``, facefeat
    ``.pt``, SFace ``.onnx``), a folder holding ``model.pt`` (``output/best_model``), an http(s)
    URL, or a zoo model name meaning that model's default weights (it must be ``spec``'s). When
    those cannot be obtained (offline), the error says so and how to proceed.
    """
    from facefeat.weights.resolver import _zoo_name, is_null, resolve

    if is_null(value):
        return None
    text = str(value).strip()
    zoo = _zoo_name(text) if not Path(text).exists() else None
    if zoo is not None:
        if zoo != spec.name:
            raise ConfigError(f"Train.pretrain_weight_path={text} names model {zoo}, but Global.model is "
                              f"{spec.name}; use {spec.name}, a weights file, or null (from scratch)")
        try:
            ref = resolve(None, spec)
        except WeightsError as exc:
            raise WeightsError(
                f"Train.pretrain_weight_path={text} means the default pretrained weights of {spec.name}, "
                f"which cannot be obtained ({exc}). Offline, point Train.pretrain_weight_path at a local "
                f"file (.pdparams / .pt / .onnx) or set it to null to train from scratch."
            ) from exc
    else:
        ref = resolve(text, spec, where="Train.pretrain_weight_path")
    if ref.is_dir:
        raise WeightsError(f"Train.pretrain_weight_path {text!r} is an exported model directory; fine-tune from "
                           f"its weights instead ({CKPT_NAME}, .pdparams or .onnx)")
    return ref.path, ref.format


def load_pretrain(backbone: nn.Module, head: nn.Module, spec: ModelSpec, path: Path, fmt: str) -> dict:
    """Load pretrained backbone weights (and the head's, when a saved head has the same shape)."""
    if fmt == "onnx_int8bq" and spec.name != "SFace":
        raise WeightsError(f"{path}: an .onnx file can initialise SFace only, not {spec.name}")
    load_weights_into(backbone, spec, path, fmt)
    info = {"pretrain_weight_path": str(path), "format": fmt, "head_loaded": False}
    head_w = None
    if fmt == "facefeat":
        hs = load_checkpoint(path).get("head")
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


def _predictor(backbone: nn.Module, spec: ModelSpec, device: torch.device, batch_size: int):
    from facefeat.predict.predictor import FeaturePredictor, TorchRunner

    return FeaturePredictor(TorchRunner(backbone, str(device)), ModelMeta.from_spec(spec), batch_size)


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
    chosen: dict[int, list[str]] = {}
    for s in samples:
        lst = chosen.setdefault(int(s.label), [])
        if len(lst) < per_class:
            lst.append(s.path)
    paths = [p for lab in sorted(chosen) for p in chosen[lab]]
    labels = np.array([lab for lab in sorted(chosen) for _ in chosen[lab]], np.int64)
    was_training = backbone.training
    try:
        pred = _predictor(backbone, spec, device, batch_size)
        feats = np.concatenate([pred.embed([read_image(p) for p in paths[i: i + batch_size]])
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


# ------------------------------------------------------------------------------------------------
# validation, reporting


class Validator:
    """Pair verification of the backbone on ``val/pair_label.txt`` (pairs indexed once)."""

    def __init__(self, pairs: PairSet, spec: ModelSpec, device: torch.device, batch_size: int, flip: bool):
        self.pairs, self.spec, self.device, self.batch_size, self.flip = pairs, spec, device, batch_size, flip
        self.images, self.left, self.right = pairs.index_arrays()

    def __call__(self, backbone: nn.Module) -> dict:
        t0 = time.perf_counter()
        was_training = backbone.training
        try:
            pred = _predictor(backbone, self.spec, self.device, self.batch_size)
            plain, mirrored = embed_images(pred, self.images, self.batch_size, progress=False)
        finally:
            backbone.train(was_training)
        feats = plain + mirrored if self.flip else plain
        out = quick_verification(pair_scores(feats, self.left, self.right), self.pairs.labels, self.pairs.fold_ids)
        out["flip_test"] = bool(self.flip)
        out["seconds"] = round(time.perf_counter() - t0, 2)
        return out

    def calibrate(self, model_dir: str | Path) -> None:
        """Write the exported model's calibrated operating points (no flip) into its inference.yml."""
        from facefeat.predict.predictor import create_model
        from facefeat.thresholds import calibrate_pairs, store_thresholds

        pred = create_model(model_dir=model_dir, batch_size=self.batch_size)
        plain, _ = embed_images(pred, self.images, self.batch_size, progress=False)
        store_thresholds(pred, calibrate_pairs(pair_scores(plain, self.left, self.right), self.pairs.labels,
                                               source="facefeat train", data={"name": "val/pair_label.txt"}))


class TrainReport:
    """train.log (rank 0), messages on stderr that do not break the tqdm bar, and train_result.json."""

    def __init__(self, out_dir: Path, quiet: bool, is_main: bool, summary: Mapping[str, Any]):
        self.out_dir, self.quiet, self.summary = Path(out_dir), quiet, dict(summary)
        self.t_start = time.perf_counter()
        self.handler = None
        if is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.handler = logging.FileHandler(self.out_dir / LOG_NAME, mode="a", encoding="utf-8")
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

    def write(self, done: bool, st: TrainState, extra: Mapping | None = None) -> dict:
        """Write ``train_result.json`` (PaddleX-like) for the run so far; returns it."""
        last = st.history[-1] if st.history else {}
        res = {**self.summary, "done_flag": bool(done)}
        res["epochs_done"] = int(last.get("epoch", self.summary.get("start_epoch", 0)))
        res["global_step"] = int(st.step)
        res.pop("start_epoch", None)
        res["best_metric"] = {"val_accuracy": st.best_metric, "epoch": st.best_epoch}
        res["models"] = {
            "last_1": {"score": last.get("val", {}).get("accuracy") if last else None,
                       "epoch": last.get("epoch"), "checkpoint": "latest/" + CKPT_NAME},
            "best": {"score": st.best_metric, "epoch": st.best_epoch, "checkpoint": f"best_model/{CKPT_NAME}",
                     "inference_dir": "best_model/inference"},
        }
        res["history"] = st.history
        res["wall_time_s"] = round(time.perf_counter() - self.t_start, 2)
        res.update(extra or {})
        atomic_write_json(self.out_dir / RESULT_NAME, res)
        return res

    def close(self) -> None:
        if self.handler is not None:
            log.removeHandler(self.handler)
            self.handler.close()
            self.handler = None


# ------------------------------------------------------------------------------------------------
# the loop


def train_one_epoch(model: nn.Module, loader, optimizer, scheduler: WarmupCosine, scaler, st: TrainState,
                    epoch: int, cfg: Config, ctx: DistContext, report: TrainReport, use_amp: bool) -> dict:
    """One pass over ``loader``; advances ``st.step``; returns the epoch's history record."""
    from tqdm import tqdm

    T = cfg.Train
    epochs, log_interval, steps = T.epochs_iters, max(1, T.log_interval), len(loader)
    flip_gen = torch.Generator().manual_seed(derived_seed(T.seed, epoch, ctx.rank, 1))
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    t_epoch = t_log = time.perf_counter()
    n_log, loss_sum, n_sum, cur_lr = 0, 0.0, 0, scheduler.lr
    bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="it", leave=False,
               disable=report.quiet or not ctx.is_main, file=sys.stderr, dynamic_ncols=True)
    for it, (x, y) in enumerate(loader, 1):
        if T.flip:
            mask = torch.rand(x.shape[0], generator=flip_gen) < 0.5
            x = torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)
        x = x.to(ctx.device, non_blocking=True)
        y = torch.as_tensor(y).to(ctx.device, non_blocking=True)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
            logits = model(x, y)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if T.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, float(T.grad_clip))
        scaler.step(optimizer)
        scaler.update()
        cur_lr = scheduler.lr
        scheduler.step()
        st.step += 1
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise FloatingPointError(f"loss is {lv} at epoch {epoch} step {st.step}; lower Train.learning_rate "
                                     "or set Train.grad_clip")
        loss_sum += lv * x.shape[0]
        n_sum += x.shape[0]
        n_log += x.shape[0] * ctx.world_size
        if it % log_interval == 0 or it == steps:
            dt = time.perf_counter() - t_log
            ips = n_log / dt if dt > 0 else 0.0
            bar.set_postfix(loss=f"{lv:.4f}", lr=f"{cur_lr:.2e}", ips=f"{ips:.1f}")
            report.file(f"epoch {epoch}/{epochs} iter {it}/{steps} step {st.step} "
                        f"loss {lv:.5f} lr {cur_lr:.6e} {ips:.1f} img/s")
            t_log, n_log = time.perf_counter(), 0
        bar.update(1)
    bar.close()
    ep_time = time.perf_counter() - t_epoch
    mean_loss = loss_sum / max(1, n_sum)
    if ctx.distributed:  # mean loss over all ranks' samples
        parts = all_gather_object(ctx, (loss_sum, n_sum))
        mean_loss = sum(p[0] for p in parts) / max(1, sum(p[1] for p in parts))
    return {"epoch": epoch, "loss": round(mean_loss, 6), "lr": cur_lr, "step": st.step, "seconds": round(ep_time, 2),
            "images_per_s": round(n_sum * ctx.world_size / ep_time, 2) if ep_time > 0 else None}


def _epoch_message(rec: Mapping, epochs: int, lr: float, improved: bool) -> str:
    msg = (f"epoch {rec['epoch']}/{epochs}: loss {rec['loss']:.4f}, lr {lr:.2e}, {rec['seconds']:.1f}s, "
           f"{rec['images_per_s']} img/s")
    if "val" in rec:
        v = rec["val"]
        msg += (f"; val accuracy {100 * v['accuracy']:.2f}% ({v['protocol']}, {v['num_pairs']} pairs, "
                f"threshold {v['threshold']:.3f})" + (" *best*" if improved else ""))
    return msg


def _export_best(spec: ModelSpec, best: Path, out: Path) -> Path:
    ck = load_checkpoint(best)
    model = build_torch_model(spec)
    model.load_state_dict(ck["model"])
    meta = ModelMeta.from_spec(spec, trained_epoch=int(ck.get("epoch") or 0), val_accuracy=ck.get("best_metric"),
                               source="facefeat train")
    return export_onnx(model.eval(), meta, out)


def _initial_weights(backbone: nn.Module, head: nn.Module, spec: ModelSpec, data: TrainData, ctx: DistContext,
                     cfg: Config, resume: Path | None, pre: tuple[Path, str] | None) -> tuple[dict | None, dict | None]:
    """The resumed checkpoint's weights, or the pretrained ones (a fresh head imprinted on rank 0:
    DDP copies rank 0's to the others); returns ``(checkpoint, pretrain info)``."""
    if resume is not None:
        ckpt = Checkpointer.load_resumable(resume, spec)
        Checkpointer.load_weights(ckpt, resume, backbone, head)
        return ckpt, None
    if pre is None:
        return None, None
    info = load_pretrain(backbone, head, spec, *pre)
    if not info["head_loaded"] and ctx.is_main:
        t0 = time.perf_counter()
        info["head_imprinted_classes"] = imprint_head(backbone, head, data.samples, spec, ctx.device,
                                                      batch_size=cfg.Evaluate.batch_size)
        info["head_imprint_seconds"] = round(time.perf_counter() - t0, 2)
    return None, info


def _header(cfg: Config, spec: ModelSpec, data: TrainData, ctx: DistContext, batch_size: int, batch_note: str,
            steps: int, warmup: int, use_amp: bool, st: TrainState, ckpt: dict | None, pretrain: dict | None) -> str:
    G, T = cfg.Global, cfg.Train
    n_pairs = len(data.pairs) if data.pairs is not None else 0
    return (f"train {spec.name} on {G.dataset_dir}: {len(data.samples)} images, {data.num_classes} classes, "
            f"{n_pairs} val pairs; epochs {T.epochs_iters}, batch {batch_size}{batch_note} x {ctx.world_size} "
            f"process(es), {steps} steps/epoch, lr {T.learning_rate} (warm-up {warmup} steps, cosine), {T.loss} "
            f"m={T.margin} s={T.scale}, device {ctx.device}" + (", AMP" if use_amp else "")
            + (f"; resumed from {T.resume_path} at epoch {st.epoch}" if ckpt is not None else "")
            + (f"; pretrained from {pretrain['pretrain_weight_path']}" if pretrain else "; from scratch" if ckpt is None else "")
            + (f" (head centres imprinted for {pretrain['head_imprinted_classes']} classes)"
               if pretrain and pretrain.get("head_imprinted_classes") else ""))


def _finish(net: nn.Module, spec: ModelSpec, ckpts: Checkpointer, report: TrainReport, st: TrainState,
            ctx: DistContext, out: Path, validator: Validator | None = None) -> dict:
    """The end: the replicas' agreement, the best model's inference directory (with its operating
    points calibrated on the val pairs), the summary (rank 0)."""
    extra: dict[str, Any] = {}
    if ctx.distributed:
        hashes = all_gather_object(ctx, param_hash(net))
        extra["ddp"] = {"world_size": ctx.world_size, "backend": "nccl" if ctx.device.type == "cuda" else "gloo",
                        "param_hashes": hashes, "consistent": len(set(hashes)) == 1}
    if not ctx.is_main:
        return {}
    if extra.get("ddp") and not extra["ddp"]["consistent"]:
        report.say(f"WARNING: DDP replicas disagree: parameter hashes {extra['ddp']['param_hashes']}")
    if ckpts.best_path.is_file():
        extra["inference_dir"] = str(_export_best(spec, ckpts.best_path, out / "best_model" / "inference"))
        if validator is not None:
            validator.calibrate(extra["inference_dir"])
    result = report.write(True, st, extra)
    report.say(f"done in {result['wall_time_s']:.1f}s: best val accuracy "
               + (f"{100 * st.best_metric:.2f}% (epoch {st.best_epoch})" if st.best_metric is not None else "n/a")
               + f"; outputs in {out}")
    return result


def run_train(cfg: Mapping, quiet: bool = False, on_start: Callable[[], Any] | None = None) -> dict:
    """``Global.mode=train``: train ``Global.model`` on ``Global.dataset_dir``; returns train_result.

    ``on_start`` is called (on rank 0) once the data and weights have been checked, before
    anything is written: the mode runner saves the config there.
    """
    cfg = as_config(cfg)
    G, T = cfg.Global, cfg.Train
    spec, epochs = get_spec(G.model), int(T.epochs_iters)
    if epochs < 1:
        raise ConfigError(f"Train.epochs_iters must be >= 1, got {epochs}")
    data = TrainData.read(cfg)
    # weights to start from: resolved before anything is written, so a bad path fails cleanly
    resume = checkpoint_path(T.resume_path) if T.resume_path else None
    pre = None if resume else resolve_pretrain(spec, T.pretrain_weight_path)
    ctx = setup(parse_device(G.device))
    report = None
    try:
        loader, sampler, batch_size, batch_note = data.loader(spec, ctx, T.batch_size, T.num_workers, T.seed)
        steps = len(loader)
        warmup = int(round(float(T.warmup_steps) * steps))
        seed_all(T.seed)  # same init on every rank (DDP broadcasts rank 0's anyway)
        backbone = build_torch_model(spec)
        head = build_head(T.loss, spec.embedding_size, data.num_classes, T.margin, T.scale)
        ckpt, pretrain = _initial_weights(backbone, head, spec, data, ctx, cfg, resume, pre)
        net = TrainNet(backbone, head).to(ctx.device).train()
        optimizer, scheduler = build_optimizer([backbone, head], T.learning_rate, T.weight_decay, warmup, steps * epochs)
        use_amp = bool(T.amp) and ctx.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        ckpts = Checkpointer(Path(G.output), spec, data.num_classes, T.loss, cfg.to_dict(), backbone, head,
                             optimizer, scheduler, scaler, use_amp)
        st = ckpts.restore(ckpt, ctx.rank, ctx.world_size) if ckpt is not None else TrainState()
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None) if ctx.distributed else net
        validator = Validator(data.pairs, spec, ctx.device, cfg.Evaluate.batch_size, cfg.Evaluate.flip) \
            if data.pairs is not None else None
        n_pairs = len(data.pairs) if data.pairs is not None else 0
        if ctx.is_main and on_start is not None:
            on_start()
        report = TrainReport(Path(G.output), quiet, ctx.is_main, {
            "model_name": spec.name, "config": "config.yaml", "train_log": LOG_NAME,
            "dataset_dir": str(G.dataset_dir), "num_classes": data.num_classes,
            "num_train_images": len(data.samples), "num_val_pairs": n_pairs, "epochs": epochs,
            "start_epoch": st.epoch, "steps_per_epoch": steps, "batch_size": batch_size,
            "world_size": ctx.world_size, "device": str(ctx.device), "pretrain": pretrain,
            "resumed_from": str(T.resume_path) if T.resume_path else None})
        if ckpt is not None and st.epoch >= epochs:
            report.say(f"checkpoint {T.resume_path} has already trained {st.epoch} epoch(s) >= Train.epochs_iters={epochs}")
        report.say(_header(cfg, spec, data, ctx, batch_size, batch_note, steps, warmup, use_amp, st, ckpt, pretrain))
        if T.amp and not use_amp:
            report.say("Train.amp is set but AMP runs on CUDA only; training in float32")
        if validator is None:
            report.say(f"no {data.layout.val_file}: no validation; best_model = the last epoch")
        if ctx.is_main:
            report.write(False, st)

        for epoch in range(st.epoch + 1, epochs + 1):
            seed_all(derived_seed(T.seed, epoch, ctx.rank))  # every epoch's randomness: (seed, epoch, rank)
            sampler.set_epoch(epoch)
            rec = train_one_epoch(model, loader, optimizer, scheduler, scaler, st, epoch, cfg, ctx, report, use_amp)
            improved = False
            if ctx.is_main:
                if validator is not None and (epoch % max(1, T.eval_interval) == 0 or epoch == epochs):
                    rec["val"] = validator(backbone)
                    if st.best_metric is None or rec["val"]["accuracy"] > st.best_metric:
                        st.best_metric, st.best_epoch, improved = float(rec["val"]["accuracy"]), epoch, True
                elif validator is None:
                    st.best_epoch, improved = epoch, True
            st.history.append(rec)
            if ctx.is_main:
                report.say(_epoch_message(rec, epochs, scheduler.lr, improved))
                if improved:
                    ckpts.save_best(st, epoch)
            if epoch % max(1, T.save_interval) == 0 or epoch == epochs:
                rng = all_gather_object(ctx, rng_state())
                if ctx.is_main:
                    ckpts.save_epoch(st, epoch, rng)
            if ctx.is_main:
                report.write(False, st)
            barrier(ctx)

        result = _finish(net, spec, ckpts, report, st, ctx, Path(G.output), validator)
        barrier(ctx)
        return result
    finally:
        if report is not None:
            report.close()
        teardown(ctx)
