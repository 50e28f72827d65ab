"""FeaturePredictor: images in, L2-normalised features out, batched, on any runner of facefeat.runtime."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from facefeat.errors import InputError, WeightsError
from facefeat.io import expand_inputs, read_image
from facefeat.io.image import iter_batches
from facefeat.predict.result import FeatureResult
from facefeat.registry import get_spec
from facefeat.runtime.compiled_cache import degenerate_reason
from facefeat.runtime.cpu import cpu_features
from facefeat.runtime.model_dir import ModelMeta, read_model_dir
from facefeat.runtime.runners import create_runner, resolve_runtime
from facefeat.runtime.torch_build import build_torch_model
from facefeat.runtime.torch_runner import TorchRunner  # noqa: F401 - moved to facefeat.runtime; kept importable
from facefeat.runtime.zoo import no_int8_build, zoo_model_dir
from facefeat.utils import l2_normalize
from facefeat.vision.photo import (
    FACE_CHECKS_WHEN_WARNING,
    PhotoAligner,
    check_align_mode,
    no_face_warning,
    not_aligned_warning,
)
from facefeat.weights import resolver  # one resolver, called through its module (tests spy on it)
from facefeat.weights.paddle_inference import resolve_model_name

log = logging.getLogger("facefeat")


def img_size(aligner: Any) -> str:
    h, w = aligner.input_size
    return f"{w}x{h}"


def preprocess_images(cfg: Any, imgs: Sequence[np.ndarray]) -> np.ndarray:
    """BGR uint8 images -> NCHW float32 for a model (``cfg``: a ModelSpec or ModelMeta, whose
    :class:`~facefeat.runtime.preprocess.Preprocess` does it); the predictor and the training data
    loader both prepare images here."""
    return cfg.preprocess(imgs)


class FeaturePredictor:
    """Embeds images with one model. Use :func:`create_model` to make one.

    ``predict`` yields one :class:`FeatureResult` per image; ``embed`` maps a list of BGR arrays
    (already aligned faces) to an ``[N, D]`` array of unit vectors.
    """

    def __init__(self, runner, meta: ModelMeta, batch_size: int = 1, flip: bool = False,
                 model_dir: Path | None = None):
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.runner = runner
        self.meta = meta
        self.batch_size = int(batch_size)
        self.flip = bool(flip)
        self.model_dir = model_dir
        self._calls = threading.local()

    @property
    def failures(self) -> list[InputError]:
        """Inputs this thread's last :meth:`predict` call skipped (a copy; threads never see each
        other's). Pass ``failures=[]`` to ``predict`` to collect them explicitly per call."""
        return list(getattr(self._calls, "failures", ()))

    @property
    def model_name(self) -> str:
        return self.meta.model_name

    @property
    def embedding_size(self) -> int:
        return int(self.meta.embedding_size)

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def precision(self) -> str:
        return getattr(self.runner, "precision", "fp32")

    def runtime_info(self) -> dict[str, Any]:
        """What actually runs: backend, precision, device, CPU features, model name and hash."""

        extra = self.meta.extra
        return {
            "model_name": self.model_name,
            "embedding_size": self.embedding_size,
            "model_sha256": (self.meta.onnx_sha256 or "")[:16] or None,
            "weights_sha256": extra.get("weights_sha256_16"),
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "backend": self.backend,
            "precision": self.precision,
            "device": str(getattr(self.runner, "device", "cpu")),
            "threads": getattr(self.runner, "num_threads", None),
            "cpu_features": list(cpu_features()),
        }

    def __repr__(self) -> str:
        return (f"FeaturePredictor(model={self.model_name!r}, dim={self.embedding_size}, "
                f"backend={self.backend!r}, precision={self.precision!r}, batch_size={self.batch_size}, "
                f"flip={self.flip})")

    # -- preprocessing -----------------------------------------------------------------------
    def preprocess(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 images -> NCHW float32 as the model expects (see :func:`preprocess_images`)."""
        return preprocess_images(self.meta, imgs)

    def raw_features(self, imgs: Sequence[np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """Un-normalised model output for BGR images, in chunks of ``batch_size``."""
        bs = batch_size or self.batch_size
        prep = self.meta.preprocess.pixels if getattr(self.runner, "takes_pixels", False) else self.preprocess
        outs = [self.runner(prep(chunk)) for chunk in iter_batches(imgs, bs)]
        feats = np.concatenate(outs) if outs else np.zeros((0, self.embedding_size), np.float32)
        reason = degenerate_reason(feats)
        if reason is not None:
            where = self.model_dir or self.model_name
            raise WeightsError(f"{where}: the model produced {reason} (corrupted weights?); "
                               "re-export or re-download the model")
        return feats

    def embed(self, imgs: Sequence[np.ndarray], flip: bool | None = None,
              batch_size: int | None = None) -> np.ndarray:
        """``[N, D]`` L2-normalised features of BGR images; ``flip`` adds the mirror's feature first."""
        imgs = list(imgs)
        if not imgs:
            return np.zeros((0, self.embedding_size), np.float32)
        feats = self.raw_features(imgs, batch_size)
        if self.flip if flip is None else flip:
            feats = feats + self.raw_features([np.ascontiguousarray(im[:, ::-1]) for im in imgs], batch_size)
        return l2_normalize(feats)

    # -- the module API --------------------------------------------------------------------------
    def predict(self, inputs: Any, batch_size: int | None = None, flip: bool | None = None,
                errors: str = "auto", progress: bool = False,
                failures: list | None = None, align: str = "warn") -> Iterator[FeatureResult]:
        """Yield a FeatureResult per image of ``inputs`` (path, dir, URL, array, PIL, or a list).

        ``errors``: ``"raise"`` stops at the first bad input; ``"warn"`` logs it, records it and
        goes on; ``"auto"`` raises for a single input and warns otherwise. Skipped inputs'
        InputErrors are appended to ``failures`` (a list the caller owns, and then reports: nothing
        is logged) and are this thread's ``self.failures`` after the call.

        The model embeds aligned face crops of its input size (112x112). ``align``: what to do with
        an input of another size (a photo): ``"warn"`` (default, as PaddleX: resize it, with a loud
        warning), ``"auto"``: detect and align its face as the pipeline does
        (:class:`~facefeat.vision.photo.PhotoAligner`; no face is an InputError for that input),
        ``"off"``: resize silently. An input of the model's size in which no face is found is
        warned about (``"auto"`` checks every input, ``"warn"`` the first few of a call).
        """

        check_align_mode(align)
        if errors not in ("auto", "raise", "warn"):
            raise InputError(f"errors must be 'auto', 'raise' or 'warn', got {errors!r}")
        bs = self.batch_size if batch_size is None else int(batch_size)
        if bs < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        items = expand_inputs(inputs)
        if errors == "auto":
            errors = "raise" if len(items) == 1 else "warn"
        failed: list[InputError] = [] if failures is None else failures
        self._calls.failures = failed  # the iterating thread's view of this call
        aligner = PhotoAligner(self.meta.input_size)
        not_aligned = face_checks = no_face = 0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), desc=f"{self.model_name}", unit="img")
        try:
            for chunk in iter_batches(items, bs):
                good, imgs = [], []
                for item in chunk:
                    try:
                        img = read_image(item.source, item.name)
                        if align == "auto" and not aligner.is_aligned(img):
                            face = aligner.face(img)
                            if face is None:
                                raise InputError(f"{item.name}: no face found to align (the model embeds aligned "
                                                 f"{img_size(aligner)} face crops)")
                            img = face
                        elif align == "warn" and not aligner.is_aligned(img):
                            not_aligned += 1
                            if not_aligned == 1:
                                log.warning("%s", not_aligned_warning(item.name or "an input", img, aligner.input_size))
                        elif align != "off" and (align == "auto" or face_checks < FACE_CHECKS_WHEN_WARNING):
                            face_checks += 1  # the input size, but is there a face where the template expects one?
                            if not aligner.has_face(img):
                                no_face += 1
                                if no_face == 1:  # once per call, counted at the end
                                    log.warning("%s", no_face_warning(item.name or "an input", aligner.input_size))
                        imgs.append(img)
                        good.append(item)
                    except InputError as exc:
                        if errors == "raise":
                            raise
                        failed.append(exc)
                        if failures is None:  # a caller's list: the caller reports them
                            log.warning("skipped: %s", exc)
                if good:
                    feats = self.embed(imgs, flip, bs)
                    for item, feat in zip(good, feats):
                        yield FeatureResult(input_path=item.name, page_index=None, feature=feat.tolist())
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
            if no_face > 1:
                log.warning("no face found in %d of the %d %s input(s) checked", no_face, face_checks,
                            img_size(aligner))
            if not_aligned > 1:
                log.warning("%d input(s) were not aligned %s face crops (resized, not aligned; align='auto' "
                            "aligns them)", not_aligned, img_size(aligner))

    __call__ = predict


def create_model(model_name: str | None = None, weights: str | os.PathLike | None = None, *,
                 model_dir: str | os.PathLike | None = None, backend: str = "auto",
                 precision: str = "auto", device: str = "cpu", batch_size: int = 1, flip: bool = False,
                 num_threads: int | None = None) -> FeaturePredictor:
    """Create a face feature predictor.

    - ``create_model("SFace")``: zoo model with its default weights (SFace works offline).
    - ``create_model("MobileFaceNet", weights="x.pdparams")``: zoo model with a local weights file
      (PaddleX ``.pdparams``, SFace ``.onnx``, or a facefeat ``.pt`` checkpoint).
    - ``create_model(model_dir="output/best_model/inference")``: an exported (or ``facefeat
      quantize``-d) model directory.
    - ``create_model("MobileFaceNet", model_dir="paddlex/inference")`` (or ``weights=``): PaddleX's
      exported inference model (inference.json + .pdiparams + .yml), converted once, no Paddle needed.

    ``backend``: ``"auto"`` (default), ``"openvino"``, ``"onnxruntime"`` or ``"torch"`` (needs
    ``facefeat[train]``; for debugging). ``precision``: ``"auto"`` (default), ``"fp32"``, ``"bf16"``
    (OpenVINO, CPUs with AMX/AVX512-BF16) or ``"int8"`` (a quantised model directory). ``auto``
    picks OpenVINO bf16 where the CPU has bf16 instructions, OpenVINO fp32 on other x86 CPUs and
    ONNX Runtime elsewhere and on CUDA (see :func:`facefeat.runtime.runners.resolve_runtime`).
    ``device``: ``cpu``, ``gpu``, ``gpu:N`` or ``cuda:N``; a GPU without a CUDA runtime is an error.
    """

    if model_dir is not None:
        ref = resolver.resolve_model_dir(model_dir)
    else:
        ref = resolver.resolve(weights, model_name or ("SFace" if weights is None else None), where="weights")
    if model_name is not None and ref.model_name is not None and get_spec(model_name).name != ref.model_name:
        what = "model_dir" if model_dir is not None else "weights"
        raise InputError(f"{what} {ref.given!r} holds {ref.model_name}, not {model_name}")
    if ref.format == "model_dir":
        if str(backend).lower() == "torch":
            raise InputError("backend='torch' needs a zoo model name and weights, not an exported model_dir")
        onnx_path, meta = read_model_dir(ref.path)
        be, prec, dev = resolve_runtime(backend, precision, device, meta.precision)
        runner = create_runner(onnx_path, be, prec, dev, num_threads, meta.onnx_sha256, meta.preprocess)
        return FeaturePredictor(runner, meta, batch_size, flip, ref.path)
    if ref.format == "paddle_inference":  # its inference.yml must name a zoo architecture

        model_name = resolve_model_name(model_name, ref.path)
    spec = get_spec(model_name or ref.model_name or "SFace")
    if str(precision).lower() == "int8":
        raise InputError(no_int8_build(spec))
    be, prec, dev = resolve_runtime(backend, precision, device)
    if be == "torch":
        if not spec.arch:
            raise InputError(f"backend='torch': {spec.name} has no PyTorch definition; use backend='openvino' or 'auto'")

        calibrated = ref.calibration(spec)
        return FeaturePredictor(TorchRunner(build_torch_model(spec, ref), dev, num_threads),
                                ModelMeta.from_spec(spec, **({"thresholds": calibrated} if calibrated else {})),
                                batch_size, flip)

    mdir, onnx_path, meta = zoo_model_dir(spec, ref)
    runner = create_runner(onnx_path, be, prec, dev, num_threads, meta.onnx_sha256, meta.preprocess)
    return FeaturePredictor(runner, meta, batch_size, flip, mdir)
