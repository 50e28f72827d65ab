"""Training checkpoints: the format, atomic save/load, RNG state, and the exact-resume guarantee.

A checkpoint is a ``torch.save``d dict loadable with ``weights_only=True``: ``format``,
``model_name``, ``embedding_size``, ``num_classes``, ``loss``, ``model`` (backbone state dict),
``head``, ``epoch`` (epochs completed), ``step`` (optimizer steps), ``best_metric``,
``best_epoch``, ``history``, ``config``; a *full* (resumable) one adds ``optimizer``,
``scheduler``, ``scaler`` and ``rng`` (per rank: python / numpy / torch / cuda states).

Exact resume: a run of 2 epochs equals 1 epoch + resume for 1, because every epoch's randomness
(sampler order, flips, any other draw) is a function of (seed, epoch, rank) (:func:`derived_seed`),
and the optimizer, schedule, scaler and RNG states are restored from the full checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from facefeat.errors import WeightsError
from facefeat.registry import ModelSpec
from facefeat.utils import atomic_path
from facefeat.weights import resolver
from facefeat.weights.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from facefeat.weights.ref import WeightsRef

__all__ = [
    "CKPT_NAME",
    "Checkpointer",
    "TrainState",
    "derived_seed",
    "param_hash",
    "resume_weights",
    "rng_state",
    "save_checkpoint",
    "seed_all",
    "set_rng_state",
]

log = logging.getLogger("facefeat.train")

CKPT_NAME = "model.pt"
#: keys a checkpoint needs to resume from
RESUME_KEYS = ("optimizer", "scheduler", "epoch", "step", "head")


def resume_weights(path: str | os.PathLike) -> WeightsRef:
    """``Train.resume_path``: a resumable checkpoint file, or a folder holding one (``epoch_3/``; a
    training output -> its ``latest/``), through the weights resolver (which reads it, once)."""
    ref = resolver.resolve(path, purpose="resume", where="Train.resume_path")
    if ref.format != "facefeat":
        raise WeightsError(f"Train.resume_path {str(path)!r} is not a facefeat checkpoint ({ref.format})")
    return ref


def save_checkpoint(path: str | os.PathLike, obj: Mapping) -> Path:
    """``torch.save`` atomically (temp file + rename)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(dict(obj), str(tmp))
    return Path(path)


# ------------------------------------------------------------------------------------------------
# RNG (kept weights_only-loadable: tensors, lists, numbers, strings)


def rng_state() -> dict:
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


def set_rng_state(st: Mapping) -> None:
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


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
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
# the checkpointer


@dataclass
class TrainState:
    """Where a run is: epochs completed, optimizer steps, the best validation so far, the history."""

    epoch: int = 0
    step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict] = field(default_factory=list)


class Checkpointer:
    """Saves ``best_model/``, ``epoch_<N>/`` and ``latest/`` checkpoints of one run, and resumes one.

    ``parts``: the backbone and head; ``train_objs``: optimizer, scheduler and AMP scaler (saved
    in full checkpoints only).
    """

    def __init__(self, out_dir: Path, spec: ModelSpec, num_classes: int, loss: str, config: Mapping,
                 backbone: nn.Module, head: nn.Module, optimizer, scheduler, scaler, use_amp: bool):
        self.out_dir = Path(out_dir)
        self.spec, self.num_classes, self.loss, self.config = spec, int(num_classes), str(loss), config
        self.backbone, self.head = backbone, head
        self.optimizer, self.scheduler, self.scaler, self.use_amp = optimizer, scheduler, scaler, use_amp

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best_model" / CKPT_NAME

    def state(self, st: TrainState, epoch: int, full: bool) -> dict:
        obj: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "model_name": self.spec.name,
            "embedding_size": int(self.spec.embedding_size),
            "num_classes": self.num_classes,
            "loss": self.loss,
            "model": {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()},
            "head": {k: v.detach().cpu() for k, v in self.head.state_dict().items()},
            "epoch": int(epoch),
            "step": int(st.step),
            "best_metric": st.best_metric,
            "best_epoch": st.best_epoch,
            "history": st.history,
            "config": self.config,
        }
        if full:
            obj["optimizer"] = self.optimizer.state_dict()
            obj["scheduler"] = self.scheduler.state_dict()
            obj["scaler"] = self.scaler.state_dict() if self.use_amp else {}
        return obj

    def save_best(self, st: TrainState, epoch: int) -> Path:
        return save_checkpoint(self.best_path, self.state(st, epoch, full=False))

    def save_epoch(self, st: TrainState, epoch: int, rng: list) -> None:
        """``epoch_<N>/`` and ``latest/``: full checkpoints with every rank's RNG state."""
        full = self.state(st, epoch, full=True)
        full["rng"] = rng
        save_checkpoint(self.out_dir / f"epoch_{epoch}" / CKPT_NAME, full)
        save_checkpoint(self.out_dir / "latest" / CKPT_NAME, full)

    @staticmethod
    def load_resumable(ref: WeightsRef, spec: ModelSpec) -> dict:
        """A full checkpoint of ``spec`` (as the resolver read it); WeightsError when it cannot be
        resumed from."""
        path = ref.path
        ckpt = ref.checkpoint if ref.checkpoint is not None else load_checkpoint(path)
        for key in RESUME_KEYS:
            if key not in ckpt:
                raise WeightsError(f"{path}: not a resumable checkpoint (no {key!r}); use it as "
                                   "Train.pretrain_weight_path to fine-tune from it instead")
        if ckpt.get("model_name") not in (None, spec.name):
            raise WeightsError(f"{path}: checkpoint of {ckpt['model_name']}, not {spec.name}")
        return ckpt

    @staticmethod
    def load_weights(ckpt: Mapping, path: Path, backbone: nn.Module, head: nn.Module) -> None:
        backbone.load_state_dict(ckpt["model"])
        try:
            head.load_state_dict(ckpt["head"])
        except RuntimeError as exc:
            raise WeightsError(f"{path}: its head does not fit this run (num_classes / loss changed?): {exc}") from exc

    def restore(self, ckpt: Mapping, rank: int, world_size: int) -> TrainState:
        """Optimizer, schedule, scaler and this rank's RNG from ``ckpt``; returns the run's state."""
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt.get("rng")
        if isinstance(rng, list) and rng:
            set_rng_state(rng[rank] if len(rng) == world_size else rng[0])
        return TrainState(int(ckpt["epoch"]), int(ckpt["step"]), ckpt.get("best_metric"), ckpt.get("best_epoch"),
                          list(ckpt.get("history") or []))
