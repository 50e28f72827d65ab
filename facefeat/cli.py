"""The ``facefeat`` command line: subcommands, and PaddleX's ``-c config.yaml -o Section.key=value``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from facefeat.errors import FacefeatError

log = logging.getLogger("facefeat")

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register ``facefeat NAME``: ``configure`` adds arguments, the decorated function runs it."""

    def deco(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, configure, fn)
        return fn

    return deco


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="zoo model name (default SFace); see 'facefeat models'")
    p.add_argument("--weights", default=None, help="local weights file (.pdparams, .onnx, .pt)")
    p.add_argument("--model-dir", default=None, help="an exported model directory (inference.onnx + inference.yml)")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    p.add_argument("--device", default="cpu", help="cpu, gpu:0, ...")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference")


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image files, directories or http(s) URLs")
    _model_args(p)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--flip", action="store_true", help="add the mirror image's feature (flip test)")
    p.add_argument("--save-dir", default=None, help="write <image>_res.json per image here")
    p.add_argument("--quiet", action="store_true", help="do not print results")


@command("predict", "embed aligned face images (the face feature module)", _predict_args)
def cmd_predict(args: argparse.Namespace) -> int:
    from facefeat.predict.predictor import create_model

    model = create_model(args.model, args.weights, model_dir=args.model_dir, backend=args.backend,
                         device=args.device, batch_size=args.batch_size, flip=args.flip,
                         num_threads=args.threads)
    inputs = args.inputs if len(args.inputs) > 1 else args.inputs[0]
    progress = len(args.inputs) > 1 or Path(args.inputs[0]).is_dir()
    n = 0
    for res in model.predict(inputs, errors="warn" if progress else "raise", progress=progress):
        n += 1
        if not args.quiet:
            res.print(json_format=False)
        if args.save_dir:
            res.save_to_json(args.save_dir)
    return _report_failures(model.failures, n)


def _report_failures(failures: list, n_ok: int) -> int:
    if failures:
        print(f"facefeat: {len(failures)} input(s) failed, {n_ok} succeeded:", file=sys.stderr)
        for exc in failures:
            print(f"  - {exc}", file=sys.stderr)
        return 1
    return 0


@command("models", "list the model zoo", lambda p: p.add_argument("--json", action="store_true"))
def cmd_models(args: argparse.Namespace) -> int:
    import json

    from facefeat.registry import get_spec, list_models

    specs = [get_spec(n) for n in list_models()]
    if args.json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))
        return 0
    rows = [("model", "dim", "input", "weights", "licence", "reported accuracy")]
    for s in specs:
        acc = ", ".join(f"{k} {v}" for k, v in s.accuracy.items() if k != "source")
        src = s.weights.kind + ":" + s.weights.filename
        rows.append((s.name, str(s.embedding_size), "x".join(map(str, s.input_size)), src, s.license, acc))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facefeat",
        description="Face features: embeddings, training, evaluation, export, recognition, serving.",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, configure, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        configure(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if "-v" in argv else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if "-c" in argv or "--config" in argv:
        from facefeat.engine.runner import main_config

        return _guard(lambda: main_config(argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return _guard(lambda: args.func(args))


def _guard(fn: Callable[[], int]) -> int:
    try:
        return int(fn() or 0)
    except FacefeatError as exc:
        print(f"facefeat: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
