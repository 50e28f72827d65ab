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
    p.add_argument("--backend", default="auto", choices=["auto", "openvino", "onnxruntime", "torch"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"],
                   help="auto: OpenVINO bf16 on CPUs with AMX/AVX512-BF16, else fp32; int8 needs a quantised --model-dir")
    p.add_argument("--device", default="cpu", help="cpu, gpu, gpu:N or cuda:N")
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
                         precision=args.precision, device=args.device, batch_size=args.batch_size,
                         flip=args.flip, num_threads=args.threads)
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
    from facefeat.runtime.cpu import cpu_features
    from facefeat.runtime.runners import resolve_runtime

    be, prec, _ = resolve_runtime()
    print(f"\nruntime (auto, cpu): {be} {prec}; CPU features: {', '.join(cpu_features()) or '-'}")
    return 0


def _info_args(p: argparse.ArgumentParser) -> None:
    _model_args(p)
    p.add_argument("--load", action="store_true", help="also load the model and report what it runs on")


@command("info", "show the runtime: backends, precision chosen by auto, CPU features (and a model's)", _info_args)
def cmd_info(args: argparse.Namespace) -> int:
    import json

    from facefeat.runtime.info import runtime_summary

    doc = runtime_summary(args.backend, args.precision, args.device)
    if args.load or args.model or args.model_dir:
        from facefeat.predict.predictor import create_model

        doc["model"] = create_model(args.model, args.weights, model_dir=args.model_dir, backend=args.backend,
                                    precision=args.precision, device=args.device,
                                    num_threads=args.threads).runtime_info()
    print(json.dumps(doc, indent=2))
    return 0


def _quantize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="zoo model name (default SFace)")
    p.add_argument("--weights", default=None, help="local weights file of the zoo model")
    p.add_argument("--model-dir", default=None, help="quantise this fp32 model directory instead")
    p.add_argument("--calib", required=True, help="calibration images (folder, searched recursively) or PaddleX dataset")
    p.add_argument("--out", required=True, help="int8 model directory to write")
    p.add_argument("--max-images", type=int, default=300, help="calibration images used (spread over the set)")


@command("quantize", "int8 post-training quantisation with NNCF (facefeat[quantize])", _quantize_args)
def cmd_quantize(args: argparse.Namespace) -> int:
    import json

    from facefeat.runtime.quantize import quantize_model

    print(json.dumps(quantize_model(args.model, args.weights, model_dir=args.model_dir, calib=args.calib,
                                    out_dir=args.out, max_images=args.max_images), indent=2))
    return 0


# -- pipeline: detect, align, embed, index, recognize ------------------------------------------------
def _pipeline_args(p: argparse.ArgumentParser, inputs: bool = True) -> None:
    if inputs:
        p.add_argument("inputs", nargs="+", help="images, directories or URLs")
    _model_args(p)
    p.add_argument("--det-threshold", type=float, default=0.5)
    p.add_argument("--align", default="align", choices=["align", "crop"],
                   help="5-point similarity alignment (default) or PaddleX's box crop")
    p.add_argument("--flip", action="store_true")


def _pipeline(args: argparse.Namespace):
    from facefeat.pipeline import create_pipeline

    return create_pipeline("face_recognition", model=args.model or "SFace", weights=args.weights,
                           model_dir=args.model_dir, det_threshold=args.det_threshold, align=args.align,
                           flip=args.flip, device=args.device, num_threads=args.threads,
                           backend=args.backend, precision=args.precision)


def _inputs(args: argparse.Namespace):
    return args.inputs if len(args.inputs) > 1 else args.inputs[0]


def _embed_args(p: argparse.ArgumentParser) -> None:
    _pipeline_args(p)
    p.add_argument("--save-dir", default=None, help="write <image>_faces.json per image here")


@command("embed", "detect, align and embed every face of raw photos (JSON out)", _embed_args)
def cmd_embed(args: argparse.Namespace) -> int:
    import json

    from facefeat.io import expand_inputs
    from facefeat.utils import atomic_write_json

    pipe = _pipeline(args)
    items = expand_inputs(_inputs(args))
    for item in items:
        faces = pipe.embed(item.source)
        doc = {"input_path": item.name, "faces": faces}
        if args.save_dir:
            atomic_write_json(Path(args.save_dir) / f"{Path(str(item.name)).stem}_faces.json", doc)
        print(json.dumps(doc))
    return 0


def _detect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="images, directories or URLs")
    p.add_argument("--det-threshold", type=float, default=0.5)
    p.add_argument("--nms-threshold", type=float, default=0.3)
    p.add_argument("--min-face-size", type=float, default=20)


@command("detect", "detect faces and 5 landmarks (YuNet)", _detect_args)
def cmd_detect(args: argparse.Namespace) -> int:
    import json

    from facefeat.io import iter_images
    from facefeat.vision.detector import YuNetDetector

    det = YuNetDetector(args.det_threshold, args.nms_threshold, min_face_size=args.min_face_size)
    failures = []
    for item, img, err in iter_images(_inputs(args)):
        if err is not None:
            failures.append(err)
            continue
        print(json.dumps({"input_path": item.name, "faces": [
            {**d.to_dict(), **({"too_small": True} if d.too_small else {})} for d in det.detect(img)]}))
    return _report_failures(failures, 0)


def _align_args(p: argparse.ArgumentParser) -> None:
    _detect_args(p)
    p.add_argument("--out", required=True, help="directory for the 112x112 faces")
    p.add_argument("--mode", default="align", choices=["align", "crop"])


@command("align", "detect and align faces to 112x112 (ArcFace template)", _align_args)
def cmd_align(args: argparse.Namespace) -> int:
    import cv2

    from facefeat.io import iter_images
    from facefeat.utils import atomic_path
    from facefeat.vision.align import align
    from facefeat.vision.detector import YuNetDetector

    det = YuNetDetector(args.det_threshold, args.nms_threshold, min_face_size=args.min_face_size)
    failures, n = [], 0
    for item, img, err in iter_images(_inputs(args)):
        if err is not None:
            failures.append(err)
            continue
        stem = Path(str(item.name or "image")).stem
        for i, d in enumerate(det.detect(img)):
            if d.too_small:
                print(f"{item.name}: face {i} too small to align ({d.width:.0f}x{d.height:.0f} px), skipped")
                continue
            target = Path(args.out) / f"{stem}_face{i}.png"
            with atomic_path(target, ".png") as tmp:
                ok, buf = cv2.imencode(".png", align(img, d, mode=args.mode))
                tmp.write_bytes(buf.tobytes())
            print(target)
            n += 1
    return _report_failures(failures, n)


def _index_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="index_cmd", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build an index from a gallery (gallery.txt: 'relative/path.jpg label')")
    b.add_argument("--gallery", required=True, help="gallery root directory")
    b.add_argument("--labels", default=None, help="label file (default: <gallery>/gallery.txt)")
    b.add_argument("--out", required=True, help="index directory to write")
    b.add_argument("--index-type", default="HNSW32", help="Flat | IVF | HNSW32 (Milvus: FLAT | IVF_FLAT | HNSW)")
    b.add_argument("--metric", default="IP", choices=["IP", "L2", "COSINE"])
    b.add_argument("--index-backend", default="faiss", choices=["faiss", "milvus"])
    b.add_argument("--milvus-uri", default=None, help="Milvus URI (default: milvus-lite file inside --out)")
    _pipeline_args(b, inputs=False)
    a = sub.add_parser("add", help="add gallery images to an index")
    a.add_argument("index_dir")
    a.add_argument("--gallery", required=True)
    a.add_argument("--labels", default=None)
    _pipeline_args(a, inputs=False)
    r = sub.add_parser("remove", help="remove ids (numbers, or a file of ids) from an index")
    r.add_argument("index_dir")
    r.add_argument("ids", nargs="+", help="ids, or one file with an id per line")
    i = sub.add_parser("info", help="describe an index")
    i.add_argument("index_dir")


@command("index", "build, extend, shrink or describe a gallery index", _index_args)
def cmd_index(args: argparse.Namespace) -> int:
    import json

    from facefeat.index import load_index

    if args.index_cmd == "info":
        print(json.dumps(load_index(args.index_dir).info(), indent=2))
        return 0
    if args.index_cmd == "remove":
        from facefeat.pipeline.face_recognition import FaceRecognitionPipeline

        index = load_index(args.index_dir)
        ids = args.ids[0] if len(args.ids) == 1 and not args.ids[0].lstrip("-").isdigit() else [int(i) for i in args.ids]
        n = FaceRecognitionPipeline.remove_index(ids, index)
        index.save(args.index_dir)
        print(f"removed {n}; {len(index)} left in {args.index_dir}")
        return 0
    labels = args.labels or str(Path(args.gallery) / "gallery.txt")
    if args.index_cmd == "add":
        index = load_index(args.index_dir)
        pipe = _pipeline(args)
        ids = pipe.append_index(args.gallery, labels, index, progress=True)
        index.save(args.index_dir)
        print(f"added {len(ids)} (ids {ids[0] if ids else '-'}..{ids[-1] if ids else '-'}); {len(index)} in {args.index_dir}")
        return _report_rejected(pipe)
    pipe = _pipeline(args)
    kw = {"uri": args.milvus_uri} if args.index_backend == "milvus" and args.milvus_uri else {}
    index = pipe.build_index(args.gallery, labels, metric_type=args.metric, index_type=args.index_type,
                             backend=args.index_backend, progress=True, **kw)
    index.save(args.out)
    print(f"built {index!r} -> {args.out}")
    return _report_rejected(pipe)


def _report_rejected(pipe) -> int:
    for name, why in pipe.last_rejected:
        print(f"  skipped {name}: {why}", file=sys.stderr)
    return 0


def _recognize_args(p: argparse.ArgumentParser) -> None:
    _pipeline_args(p)
    p.add_argument("--index", required=True, help="index directory (facefeat index build)")
    p.add_argument("--rec-threshold", type=float, default=0.4)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--save-dir", default=None, help="write <image>_res.json and <image>_res.jpg here")


@command("recognize", "recognise the faces of photos against a gallery index", _recognize_args)
def cmd_recognize(args: argparse.Namespace) -> int:
    from facefeat.index import load_index

    pipe = _pipeline(args)
    index = load_index(args.index)
    for res in pipe.predict(_inputs(args), index=index, rec_threshold=args.rec_threshold, rec_topk=args.topk):
        res.print(json_format=False)
        if args.save_dir:
            res.save_to_json(args.save_dir)
            res.save_to_img(args.save_dir)
    return 0


def _dataset_args(p: argparse.ArgumentParser) -> None:
    from facefeat.data.lfw_demo import configure_cli

    sub = p.add_subparsers(dest="dataset_cmd", metavar="ACTION", required=True)
    configure_cli(sub.add_parser("lfw-demo", help="build a PaddleX-format demo dataset from LFW"))


@command("dataset", "dataset tools (lfw-demo)", _dataset_args)
def cmd_dataset(args: argparse.Namespace) -> int:
    from facefeat.data.lfw_demo import run_cli

    return run_cli(args)


def _serve_args(p: argparse.ArgumentParser) -> None:
    from facefeat.serving.options import configure_cli

    configure_cli(p)


@command("serve", "run the HTTP service (FastAPI + uvicorn) with the web page", _serve_args)
def cmd_serve(args: argparse.Namespace) -> int:
    from facefeat.serving.options import run_cli

    return run_cli(args)


def _register_engine_commands() -> None:
    """check-dataset, train, evaluate, export (facefeat.engine.runner; torch is imported per mode)."""
    from facefeat.engine.runner import register_commands

    register_commands(command)


_register_engine_commands()


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
