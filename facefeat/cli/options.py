"""Option groups shared by several commands (model, pipeline) and what they build; the choices
come from the library's own constants."""

from __future__ import annotations

import argparse
from typing import Any

from facefeat.cli.output import positive_int
from facefeat.runtime.runners import BACKENDS, PRECISIONS


def model_args(p: argparse.ArgumentParser) -> None:
    """``--model --weights --model-dir --backend --precision --device --threads``."""
    p.add_argument("--model", default=None, help="zoo model name (default SFace); see 'facefeat models'")
    p.add_argument("--weights", default=None,
                   help="weights: a file (.pdparams, .onnx, .pt), a URL, a checkpoint folder or a zoo name")
    p.add_argument("--model-dir", default=None, help="an exported model directory (inference.onnx + inference.yml)")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS))
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                   help="auto: OpenVINO bf16 on CPUs with AMX/AVX512-BF16, else fp32; int8 needs a quantised --model-dir")
    p.add_argument("--device", default="cpu", help="cpu, gpu, gpu:N or cuda:N")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for inference")


def pipeline_args(p: argparse.ArgumentParser, inputs: bool = True) -> None:
    """The face recognition pipeline's options (and ``inputs``, unless ``inputs=False``)."""
    from facefeat.vision.align import ALIGN_MODES

    if inputs:
        p.add_argument("inputs", nargs="+", help="images, directories or URLs")
    model_args(p)
    p.add_argument("--det-threshold", type=float, default=0.5)
    p.add_argument("--align", default="align", choices=list(ALIGN_MODES),
                   help="5-point similarity alignment (default) or PaddleX's box crop")
    p.add_argument("--flip", action="store_true")


def pipeline_of(args: argparse.Namespace) -> Any:
    """The face recognition pipeline :func:`pipeline_args`' options ask for."""
    from facefeat.pipeline import create_pipeline

    return create_pipeline("face_recognition", model=args.model or "SFace", weights=args.weights,
                           model_dir=args.model_dir, det_threshold=args.det_threshold, align=args.align,
                           flip=args.flip, device=args.device, num_threads=args.threads,
                           backend=args.backend, precision=args.precision)


def inputs_of(args: argparse.Namespace) -> Any:
    """``args.inputs``: one input as itself, several as the list."""
    return args.inputs if len(args.inputs) > 1 else args.inputs[0]


__all__ = ["inputs_of", "model_args", "pipeline_args", "pipeline_of"]
