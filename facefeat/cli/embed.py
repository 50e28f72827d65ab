"""``facefeat predict | embed | embed-dataset | detect | align``: features of face crops and photos,
faces and landmarks, aligned crops."""

from __future__ import annotations

import argparse
from pathlib import Path

from facefeat.cli.options import inputs_of, model_args, pipeline_args, pipeline_of
from facefeat.cli.output import Output, drain, escape, faces_line, feature_line, positive_int, report_doc
from facefeat.cli.table import command
from facefeat.distributed.manifest import OutputDir
from facefeat.errors import InputError
from facefeat.utils import atomic_path, atomic_write_json


def _predict_args(p: argparse.ArgumentParser) -> None:
    from facefeat.vision.photo import ALIGN_MODES as PHOTO_ALIGN_MODES

    p.add_argument("inputs", nargs="+", help="image files, directories or http(s) URLs")
    model_args(p)
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--flip", action="store_true", help="add the mirror image's feature (flip test)")
    p.add_argument("--align", default="auto", choices=list(PHOTO_ALIGN_MODES),
                   help="inputs that are not aligned face crops of the model's size (photos): detect and align "
                        "the face (auto, default), or resize them with a warning (warn) or silently (off)")
    p.add_argument("--save-dir", default=None, help="write <image>_res.json per image here")
    p.add_argument("--quiet", action="store_true", help="do not print results")


@command("predict", "embed aligned face images (the face feature module)", _predict_args)
def cmd_predict(args: argparse.Namespace) -> int:
    from facefeat.predict.predictor import create_model

    model = create_model(args.model, args.weights, model_dir=args.model_dir, backend=args.backend,
                         precision=args.precision, device=args.device, batch_size=args.batch_size,
                         flip=args.flip, num_threads=args.threads)
    progress = (len(args.inputs) > 1 or Path(args.inputs[0]).is_dir()) and not args.json
    out, failures = Output.of(args), []
    for res in model.predict(inputs_of(args), errors="warn", progress=progress, failures=failures, align=args.align):
        drain(out, failures)
        out.record(res, feature_line(res))
        if args.save_dir:
            res.save_to_json(args.save_dir)
    drain(out, failures)
    return out.finish()


def _embed_args(p: argparse.ArgumentParser) -> None:
    pipeline_args(p)
    p.add_argument("--save-dir", default=None, help="write <image>_faces.json per image here")


@command("embed", "detect, align and embed every face of raw photos (JSON out)", _embed_args)
def cmd_embed(args: argparse.Namespace) -> int:
    from facefeat.io import expand_inputs

    pipe, out = pipeline_of(args), Output.of(args)
    for item in expand_inputs(inputs_of(args)):
        try:
            faces = pipe.embed(item.source)
        except InputError as exc:
            out.fail(exc)
            continue
        doc = {"input_path": item.name, "faces": faces}
        if args.save_dir:
            atomic_write_json(Path(args.save_dir) / f"{Path(str(item.name)).stem}_faces.json", doc)
        dim = next((len(f["feature"]) for f in faces if f.get("feature")), None)
        out.record(doc, faces_line(item.name, faces) + (f" -> {dim}-d features" if dim else ""))
    return out.finish()


def _embed_dataset_args(p: argparse.ArgumentParser) -> None:
    from facefeat.distributed.embed import ENGINES

    p.add_argument("input", help="a directory tree, a text file of paths/URLs, or a Parquet/CSV table with a path column")
    p.add_argument("--out", required=True, help="output directory (Parquet shards + manifest); re-run to resume")
    p.add_argument("--engine", default="local", choices=list(ENGINES))
    p.add_argument("--address", default=None, help="Ray cluster (ray://head:10001, auto); default RAY_ADDRESS or a local Ray")
    pipeline_args(p, inputs=False)
    p.add_argument("--nms-threshold", type=float, default=0.3)
    p.add_argument("--min-face-size", type=float, default=20)
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per batch")
    p.add_argument("--workers", type=positive_int, default=None, help="Ray actors (default: CPUs // --num-cpus, or GPUs // --num-gpus)")
    p.add_argument("--num-cpus", type=float, default=1, help="CPUs per Ray actor")
    p.add_argument("--num-gpus", type=float, default=0, help="GPUs per Ray actor (e.g. 1, or 0.5 to share one)")
    p.add_argument("--shard-size", type=positive_int, default=None, help="images per Parquet shard (default 1000; fixed at the first run)")
    p.add_argument("--path-column", default="path", help="path column of a table INPUT")
    p.add_argument("--label-column", default="label", help="label column of a table INPUT (carried to the rows)")
    p.add_argument("--no-progress", action="store_true")


@command("embed-dataset", "embed every face of a photo archive into Parquet shards (local or Ray; resumable)",
         _embed_dataset_args)
def cmd_embed_dataset(args: argparse.Namespace) -> int:
    from facefeat.distributed import embed_dataset

    report = embed_dataset(
        args.input, args.out, engine=args.engine, address=args.address, model=args.model or "SFace",
        weights=args.weights, model_dir=args.model_dir, backend=args.backend, precision=args.precision,
        device=args.device, det_threshold=args.det_threshold, nms_threshold=args.nms_threshold, min_face_size=args.min_face_size,
        align=args.align, flip=args.flip, batch_size=args.batch_size, workers=args.workers,
        num_cpus=args.num_cpus, num_gpus=args.num_gpus, num_threads=args.threads, shard_size=args.shard_size,
        path_column=args.path_column, label_column=args.label_column, progress=not args.no_progress and not args.json)
    out = Output.of(args)
    if report.errors:
        for path, why in OutputDir.open(args.out).failed_inputs(limit=50):
            out.fail(*((why,) if str(why).startswith(path) else (path, why)))  # the reader's errors name it
        if report.errors > 50:
            out.note(f"... {report.errors - 50} more; the rows' 'error' column says why for each")
    out.document(report_doc(report), escape(report.summary()))
    return 1 if report.errors else 0


def _detect_args(p: argparse.ArgumentParser) -> None:
    from facefeat.vision.refine import LANDMARK_MODES

    p.add_argument("inputs", nargs="+", help="images, directories or URLs")
    p.add_argument("--det-threshold", type=float, default=0.5)
    p.add_argument("--nms-threshold", type=float, default=0.3)
    p.add_argument("--min-face-size", type=float, default=20)
    p.add_argument("--landmarks", default="mirror", choices=list(LANDMARK_MODES),
                   help="landmark placement, as the pipeline's (facefeat.vision.refine)")


def _detections(args: argparse.Namespace, out: Output):
    """``(item, img, faces)`` of every readable input, detected and refined as the pipeline does;
    unreadable ones are reported to ``out``."""
    from facefeat.io import iter_images
    from facefeat.vision.detector import YuNetDetector
    from facefeat.vision.refine import LandmarkRefiner

    det = YuNetDetector(args.det_threshold, args.nms_threshold, min_face_size=args.min_face_size)
    refiner = LandmarkRefiner(det, args.landmarks)
    for item, img, err in iter_images(inputs_of(args)):
        if err is not None:
            out.fail(err)
            continue
        yield item, img, refiner.refine(img, det.detect(img))


@command("detect", "detect faces and 5 landmarks (YuNet)", _detect_args)
def cmd_detect(args: argparse.Namespace) -> int:
    out = Output.of(args)
    for item, _, dets in _detections(args, out):
        faces = [{**d.to_dict(), **({"too_small": True} if d.too_small else {})} for d in dets]
        out.record({"input_path": item.name, "faces": faces}, faces_line(item.name, faces))
    return out.finish()


def _align_args(p: argparse.ArgumentParser) -> None:
    from facefeat.vision.align import ALIGN_MODES

    _detect_args(p)
    p.add_argument("--out", required=True, help="directory for the 112x112 faces")
    p.add_argument("--mode", default="align", choices=list(ALIGN_MODES))


@command("align", "detect and align faces to 112x112 (ArcFace template)", _align_args)
def cmd_align(args: argparse.Namespace) -> int:
    import cv2

    from facefeat.vision.align import align

    out = Output.of(args)
    for item, img, dets in _detections(args, out):
        stem = Path(str(item.name or "image")).stem
        written, small = [], []
        for i, d in enumerate(dets):
            if d.too_small:
                small.append({"face": i, "width": round(float(d.width)), "height": round(float(d.height))})
                continue
            target = Path(args.out) / f"{stem}_face{i}.png"
            with atomic_path(target, ".png") as tmp:
                ok, buf = cv2.imencode(".png", align(img, d, mode=args.mode))
                tmp.write_bytes(buf.tobytes())
            written.append(str(target))
        text = f"{escape(item.name)}: {len(written)} face(s) -> {', '.join(map(escape, written)) or '-'}"
        out.record({"input_path": item.name, "aligned": written, "too_small": small},
                   text + (f"; {len(small)} too small to align" if small else ""))
    return out.finish()


__all__ = ["cmd_align", "cmd_detect", "cmd_embed", "cmd_embed_dataset", "cmd_predict"]
