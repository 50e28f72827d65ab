"""What a training run reports: validation on the val pairs (:class:`Validator`), and
train.log / stderr / train_result.json (:class:`TrainReport`)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from facefeat.data.formats import PairSet
from facefeat.engine.calibration import calibrate_pairs
from facefeat.engine.checkpoint import CKPT_NAME, TrainState
from facefeat.engine.evaluate import embed_images, pair_scores, quick_verification
from facefeat.engine.train_data import backbone_predictor
from facefeat.predict.predictor import create_model
from facefeat.registry import ModelSpec
from facefeat.thresholds import store_thresholds
from facefeat.utils import atomic_write_json

__all__ = ["LOG_NAME", "RESULT_NAME", "TrainReport", "Validator"]

log = logging.getLogger("facefeat.train")

RESULT_NAME = "train_result.json"
LOG_NAME = "train.log"


class Validator:
    """Pair verification of the backbone on ``val/pair_label.txt`` (pairs indexed once)."""

    def __init__(self, pairs: PairSet, spec: ModelSpec, device: torch.device, batch_size: int, flip: bool,
                 progress: bool = False):
        self.pairs, self.spec, self.device, self.batch_size, self.flip = pairs, spec, device, batch_size, flip
        self.progress = progress  # a bar with an ETA while the val images are embedded
        self.images, self.left, self.right = pairs.index_arrays()

    def __call__(self, backbone: nn.Module) -> dict:
        t0 = time.perf_counter()
        was_training = backbone.training
        try:
            pred = backbone_predictor(backbone, self.spec, self.device, self.batch_size)
            plain, mirrored = embed_images(pred, self.images, self.batch_size, progress=self.progress,
                                           desc="validation")
        finally:
            backbone.train(was_training)
        feats = plain + mirrored if self.flip else plain
        out = quick_verification(pair_scores(feats, self.left, self.right), self.pairs.labels, self.pairs.fold_ids)
        out["flip_test"] = bool(self.flip)
        out["seconds"] = round(time.perf_counter() - t0, 2)
        return out

    def calibrate(self, model_dir: str | Path) -> None:
        """Write the exported model's calibrated operating points (no flip) into its inference.yml."""
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
