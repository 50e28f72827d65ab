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

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facefeat.config import Config, as_config
from facefeat.engine.checkpoint import (
    CKPT_NAME,
    Checkpointer,
    TrainState,
    resume_weights,
    derived_seed,
    param_hash,
    rng_state,
    save_checkpoint,
    seed_all,
)
from facefeat.engine.distributed import DistContext, all_gather_object, barrier, parse_device, setup, teardown
from facefeat.engine.optim import WarmupCosine, build_optimizer, param_groups
from facefeat.engine.progress import eta_note, resume_hint
from facefeat.engine.pretrain import imprint_head, load_pretrain, pretrain_weights
from facefeat.engine.train_data import FaceTrainDataset, TrainData, preprocess_for_spec
from facefeat.engine.train_report import LOG_NAME, RESULT_NAME, TrainReport, Validator
from facefeat.errors import ConfigError
from facefeat.models.heads import build_head
from facefeat.registry import ModelSpec, get_spec
from facefeat.runtime.model_dir import ModelMeta
from facefeat.runtime.torch_build import build_torch_model, export_onnx
from facefeat.weights.checkpoint import load_checkpoint
from facefeat.weights.ref import WeightsRef

__all__ = [
    "CKPT_NAME",
    "FaceTrainDataset",
    "LOG_NAME",
    "RESULT_NAME",
    "TrainData",
    "TrainNet",
    "TrainReport",
    "Validator",
    "WarmupCosine",
    "resume_weights",
    "imprint_head",
    "load_pretrain",
    "param_groups",
    "preprocess_for_spec",
    "pretrain_weights",
    "run_train",
    "save_checkpoint",
    "train_one_epoch",
]


class TrainNet(nn.Module):
    """Backbone + margin head: ``forward(images, labels) -> logits`` (one module for DDP)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x), labels)


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
                     cfg: Config, resume: WeightsRef | None, pre: WeightsRef | None) -> tuple[dict | None, dict | None]:
    """The resumed checkpoint's weights, or the pretrained ones (a fresh head imprinted on rank 0:
    DDP copies rank 0's to the others); returns ``(checkpoint, pretrain info)``."""
    if resume is not None:
        ckpt = Checkpointer.load_resumable(resume, spec)
        Checkpointer.load_weights(ckpt, resume.path, backbone, head)
        return ckpt, None
    if pre is None:
        return None, None
    info = load_pretrain(backbone, head, spec, pre)
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
    resume = resume_weights(T.resume_path) if T.resume_path else None
    pre = None if resume else pretrain_weights(spec, T.pretrain_weight_path)
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
        validator = Validator(data.pairs, spec, ctx.device, cfg.Evaluate.batch_size, cfg.Evaluate.flip,
                              progress=not quiet and ctx.is_main) if data.pairs is not None else None
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

        t_loop, first = time.perf_counter(), st.epoch + 1
        try:
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
                    report.say(_epoch_message(rec, epochs, scheduler.lr, improved)
                               + eta_note(time.perf_counter() - t_loop, epoch - first + 1, epochs - epoch))
                    if improved:
                        ckpts.save_best(st, epoch)
                if epoch % max(1, T.save_interval) == 0 or epoch == epochs:
                    rng = all_gather_object(ctx, rng_state())
                    if ctx.is_main:
                        ckpts.save_epoch(st, epoch, rng)
                if ctx.is_main:
                    report.write(False, st)
                barrier(ctx)
        except KeyboardInterrupt:
            if ctx.is_main:  # printed even with --quiet: the one thing to know now
                hint = resume_hint(Path(G.output))
                report.file(hint)
                print(f"facefeat: {hint}", file=sys.stderr, flush=True)
            raise

        result = _finish(net, spec, ckpts, report, st, ctx, Path(G.output), validator)
        barrier(ctx)
        return result
    finally:
        if report is not None:
            report.close()
        teardown(ctx)
