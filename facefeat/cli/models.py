"""``facefeat models | info | quantize | import-model``: the model zoo, the runtime, int8 models and
bring-your-own ONNX models."""

from __future__ import annotations

import argparse

from facefeat.cli.options import model_args
from facefeat.cli.output import Output, escape, info_line, positive_int
from facefeat.cli.table import command
from facefeat.engine.import_model import PRESETS, import_model
from facefeat.registry import get_spec, list_models
from facefeat.runtime.cpu import cpu_features
from facefeat.runtime.info import runtime_summary
from facefeat.runtime.runners import resolve_runtime


@command("models", "list the model zoo", lambda p: None)
def cmd_models(args: argparse.Namespace) -> int:
    specs = [get_spec(n) for n in list_models()]
    if args.json:
        Output(True).document([s.to_dict() for s in specs], "")
        return 0
    rows = [("model", "dim", "input", "weights", "licence", "training data", "reported accuracy")]
    for s in specs:
        acc = ", ".join(f"{k} {v}" for k, v in s.accuracy.items() if k != "source")
        src = s.weights.kind + ":" + s.weights.filename
        rows.append((s.name, str(s.embedding_size), "x".join(map(str, s.input_size)), src, s.license,
                     s.training_data or "-", acc))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))

    be, prec, _ = resolve_runtime()
    print(f"\nruntime (auto, cpu): {be} {prec}; CPU features: {', '.join(cpu_features()) or '-'}")
    return 0


def _info_args(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--load", action="store_true", help="also load the model and report what it runs on")


@command("info", "show the runtime: backends, precision chosen by auto, CPU features (and a model's)", _info_args)
def cmd_info(args: argparse.Namespace) -> int:
    doc = runtime_summary(args.backend, args.precision, args.device)
    if args.load or args.model or args.model_dir:
        from facefeat.predict.predictor import create_model

        doc["model"] = create_model(args.model, args.weights, model_dir=args.model_dir, backend=args.backend,
                                    precision=args.precision, device=args.device,
                                    num_threads=args.threads).runtime_info()
    Output.of(args).document(doc, info_line(doc))
    return 0


def _quantize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="zoo model name (default SFace; with --from-index: the gallery's)")
    p.add_argument("--weights", default=None, help="local weights file of the zoo model")
    p.add_argument("--model-dir", default=None, help="quantise this fp32 model directory instead")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--calib", default=None, help="calibration images (folder, searched recursively) or PaddleX dataset")
    src.add_argument("--from-index", default=None, metavar="DIR_OR_URL",
                     help="calibrate on this gallery's own faces and check agreement on its pairs")
    p.add_argument("--gallery", default=None, help="with --from-index: the gallery's name in a shared database")
    p.add_argument("--out", required=True, help="int8 model directory to write")
    p.add_argument("--max-images", type=positive_int, default=300, help="calibration images used (spread over the set)")
    p.add_argument("--max-pairs", type=positive_int, default=2000,
                   help="with --from-index: same- and different-person pairs checked (each)")
    p.add_argument("--force", action="store_true", help="with --from-index: write even below the agreement bar")


@command("quantize", "int8 post-training quantisation with NNCF (facefeat[quantize])", _quantize_args)
def cmd_quantize(args: argparse.Namespace) -> int:
    from facefeat.engine.quantize import quantize_model, summary_line

    doc = quantize_model(args.model, args.weights, model_dir=args.model_dir, calib=args.calib,
                         from_index=args.from_index, gallery=args.gallery, out_dir=args.out,
                         max_images=args.max_images, max_pairs=args.max_pairs, force=args.force)
    Output.of(args).document(doc, escape(summary_line(doc)))
    return 0


def _import_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("onnx", help="the ONNX face-embedding model to import")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS), help="colour order and normalisation")
    p.add_argument("--check", default=None, metavar="DIR",
                   help="face photos: without --preset, the normalisation is found by a check on them")
    p.add_argument("--name", default=None, help="model name (default: the file's stem)")
    p.add_argument("--license", default=None, help="the weights' licence, recorded in the directory")


@command("import-model", "bring your own ONNX model: write a model directory (facefeat.engine.import_model)",
         _import_model_args)
def cmd_import_model(args: argparse.Namespace) -> int:
    import json


    print(json.dumps(import_model(args.onnx, args.out, preset=args.preset, check=args.check, name=args.name,
                                  license=args.license), indent=2))
    return 0


__all__ = ["cmd_import_model", "cmd_info", "cmd_models", "cmd_quantize"]
