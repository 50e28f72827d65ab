"""Training data: ``train/label.txt`` samples preprocessed for the model, the loader, the val pairs."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from facefeat.config import Config
from facefeat.data.formats import PairSet, Sample, read_label_file, read_pairs
from facefeat.data.layout import DatasetLayout
from facefeat.engine.distributed import DistContext
from facefeat.io.image import read_image
from facefeat.errors import ConfigError, DatasetError
from facefeat.predict.predictor import FeaturePredictor, preprocess_images
from facefeat.registry import ModelSpec
from facefeat.runtime.model_dir import ModelMeta
from facefeat.runtime.torch_runner import TorchRunner

__all__ = ["FaceTrainDataset", "TrainData", "backbone_predictor", "preprocess_for_spec"]


def preprocess_for_spec(spec: ModelSpec | ModelMeta, bgr: np.ndarray) -> np.ndarray:
    """One BGR uint8 image -> CHW float32, exactly as the predictor prepares it for this model."""
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


def backbone_predictor(backbone: nn.Module, spec: ModelSpec, device: torch.device, batch_size: int) -> FeaturePredictor:
    """A FeaturePredictor over a training backbone (as it is now), preprocessing as for ``spec``."""
    return FeaturePredictor(TorchRunner(backbone, str(device)), ModelMeta.from_spec(spec), batch_size)
