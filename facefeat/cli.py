"""The ``facefeat`` command line: subcommands, and PaddleX's ``-c config.yaml -o Section.key=value``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from facefeat.cli_output import (Output, escape, positive_int, faces_line, feature_line, index_line, info_line,
                                  install_log_escaping, recognition_line, report_doc, stats_line, verify_line,
                                  video_line)
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
    p.add_argument("--weights", default=None,
                   help="weights: a file (.pdparams, .onnx, .pt), a URL, a checkpoint folder or a zoo name")
    p.add_argument("--model-dir", default=None, help="an exported model directory (inference.onnx + inference.yml)")
    p.add_argument("--backend", default="auto", choices=["auto", "openvino", "onnxruntime", "torch"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"],
                   help="auto: OpenVINO bf16 on CPUs with AMX/AVX512-BF16, else fp32; int8 needs a quantised --model-dir")
    p.add_argument("--device", default="cpu", help="cpu, gpu, gpu:N or cuda:N")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for inference")


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image files, directories or http(s) URLs")
    _model_args(p)
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--flip", action="store_true", help="add the mirror image's feature (flip test)")
    p.add_argument("--align", default="auto", choices=["auto", "warn", "off"],
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
    inputs = args.inputs if len(args.inputs) > 1 else args.inputs[0]
    progress = (len(args.inputs) > 1 or Path(args.inputs[0]).is_dir()) and not args.json
    out, failures = Output.of(args), []
    for res in model.predict(inputs, errors="warn", progress=progress, failures=failures, align=args.align):
        _drain(out, failures)
        out.record(res, feature_line(res))
        if args.save_dir:
            res.save_to_json(args.save_dir)
    _drain(out, failures)
    return out.finish()


def _drain(out: Output, failures: list) -> None:
    """Report the failures a streaming call appended since the last look (each once)."""
    while len(out.failed) < len(failures):
        out.fail(failures[len(out.failed)])


@command("models", "list the model zoo", lambda p: None)
def cmd_models(args: argparse.Namespace) -> int:
    from facefeat.registry import get_spec, list_models

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
    from facefeat.runtime.info import runtime_summary

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
    from facefeat.engine.import_model import PRESETS

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

    from facefeat.engine.import_model import import_model

    print(json.dumps(import_model(args.onnx, args.out, preset=args.preset, check=args.check, name=args.name,
                                  license=args.license), indent=2))
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
    from facefeat.errors import InputError
    from facefeat.io import expand_inputs
    from facefeat.utils import atomic_write_json

    pipe, out = _pipeline(args), Output.of(args)
    for item in expand_inputs(_inputs(args)):
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
    p.add_argument("input", help="a directory tree, a text file of paths/URLs, or a Parquet/CSV table with a path column")
    p.add_argument("--out", required=True, help="output directory (Parquet shards + manifest); re-run to resume")
    p.add_argument("--engine", default="local", choices=["local", "ray"])
    p.add_argument("--address", default=None, help="Ray cluster (ray://head:10001, auto); default RAY_ADDRESS or a local Ray")
    _pipeline_args(p, inputs=False)
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
        from facefeat.distributed.manifest import OutputDir

        for path, why in OutputDir.open(args.out).failed_inputs(limit=50):
            out.fail(*((why,) if str(why).startswith(path) else (path, why)))  # the reader's errors name it
        if report.errors > 50:
            out.note(f"... {report.errors - 50} more; the rows' 'error' column says why for each")
    out.document(report_doc(report), escape(report.summary()))
    return 1 if report.errors else 0


def _detect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="images, directories or URLs")
    p.add_argument("--det-threshold", type=float, default=0.5)
    p.add_argument("--nms-threshold", type=float, default=0.3)
    p.add_argument("--min-face-size", type=float, default=20)


@command("detect", "detect faces and 5 landmarks (YuNet)", _detect_args)
def cmd_detect(args: argparse.Namespace) -> int:
    from facefeat.io import iter_images
    from facefeat.vision.detector import YuNetDetector

    det = YuNetDetector(args.det_threshold, args.nms_threshold, min_face_size=args.min_face_size)
    out = Output.of(args)
    for item, img, err in iter_images(_inputs(args)):
        if err is not None:
            out.fail(err)
            continue
        faces = [{**d.to_dict(), **({"too_small": True} if d.too_small else {})} for d in det.detect(img)]
        out.record({"input_path": item.name, "faces": faces}, faces_line(item.name, faces))
    return out.finish()


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
    out = Output.of(args)
    for item, img, err in iter_images(_inputs(args)):
        if err is not None:
            out.fail(err)
            continue
        stem = Path(str(item.name or "image")).stem
        written, small = [], []
        for i, d in enumerate(det.detect(img)):
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


def _index_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="index_cmd", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build an index from a gallery (gallery.txt: 'relative/path.jpg label')")
    b.add_argument("--gallery", default=None, help="gallery root directory")
    b.add_argument("--from-parquet", default=None, metavar="DIR",
                   help="bulk-load 'facefeat embed-dataset' output instead of embedding a gallery")
    b.add_argument("--label-column", default="label",
                   help="--from-parquet: row column holding the label (default 'label': a folder input's "
                        "sub-folder names, a list's second field); 'path' labels each image by its path")
    b.add_argument("--skip-unlabelled", action="store_true",
                   help="--from-parquet: leave out images without a label instead of stopping")
    b.add_argument("--faces", default="gallery", choices=["gallery", "all"],
                   help="--from-parquet: one face per image, as the gallery rule picks (default), or every face")
    b.add_argument("--label-map", default=None, help="--from-parquet: file mapping paths to labels (gallery.txt, CSV)")
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
    r.add_argument("ids", nargs="*", help="ids, or one file with an id per line")
    r.add_argument("--label", default=None, help="remove this person (every sample) instead of ids")
    i = sub.add_parser("info", help="describe an index")
    i.add_argument("index_dir")
    pe = sub.add_parser("people", help="list the people of an index with their sample counts")
    pe.add_argument("index_dir")
    rn = sub.add_parser("rename", help="rename a person")
    rn.add_argument("index_dir")
    rn.add_argument("old")
    rn.add_argument("new")
    en = sub.add_parser("enroll", help="enrol people from a folder gallery/<name>/*.jpg (creates the index)")
    en.add_argument("index_dir")
    en.add_argument("--folder", required=True, help="a folder with one sub-folder of images per person")
    en.add_argument("--quality", default="standard", choices=["off", "standard", "strict"])
    _pipeline_args(en, inputs=False)
    from facefeat import cli_gallery

    cli_gallery.add_actions(sub)  # health, export, import, migrate, person


@command("index", "build, extend, shrink or describe a gallery index", _index_args)
def cmd_index(args: argparse.Namespace) -> int:
    from facefeat.index import check_model, edit_index, load_index, read_meta

    from facefeat import cli_gallery

    if args.index_cmd in cli_gallery.ACTIONS:
        return cli_gallery.run(args)

    out = Output.of(args)
    if args.index_cmd == "info":
        info = load_index(args.index_dir).info()
        out.document(info, escape(f"{args.index_dir}: {info.get('count')} sample(s) of {info.get('num_labels')} "
                                  f"people; {info.get('model_name')} {info.get('dim')}-d, {info.get('backend')} "
                                  f"{info.get('index_type')} {info.get('metric_type')}"))
        return 0
    if args.index_cmd in ("people", "rename", "enroll") or (args.index_cmd == "remove" and args.label):
        from facefeat.errors import InputError
        from facefeat.index.people import People

        if args.index_cmd == "enroll":
            from facefeat.index import create_index

            from facefeat.index.persist import gallery_exists, open_index

            exists = gallery_exists(args.index_dir)
            pipe = _pipeline(args)
            people = People(open_index(args.index_dir)) if exists else People(create_index(
                dim=pipe.predictor.embedding_size, metric_type="IP", index_type="Flat",
                model_name=pipe.predictor.model_name))
            rep = pipe.enroll(args.folder, people, quality=args.quality)
            people.save(args.index_dir)  # a new gallery; an existing one took each change as it came
            for r in rep["rejected"]:
                out.note(f"rejected {escape(r['path'])} ({escape(r['label'])}): {escape(r['reason'])}")
            out.document(rep, escape(f"enrolled {len(rep['added'])} image(s) of "
                                     f"{len({a['label'] for a in rep['added']})} people, rejected "
                                     f"{len(rep['rejected'])}, duplicates {len(rep['duplicates'])}; "
                                     f"{len(people)} people in {args.index_dir}"))
            return 0 if rep["added"] or not rep["rejected"] else 1
        from facefeat.index.persist import open_index

        people = People(open_index(args.index_dir))  # attached: each change is one transaction
        if args.index_cmd == "people":
            rows = people.list()
            out.document(rows, "\n".join(f"{escape(p['label'])}: {p['samples']} sample(s)" for p in rows)
                         or f"no people in {escape(args.index_dir)}")
            return 0
        if args.index_cmd == "remove" and args.ids:
            raise InputError("index remove: give ids or --label NAME, not both")
        n = people.remove(args.label) if args.index_cmd == "remove" else people.rename(args.old, args.new)
        verb = "removed" if args.index_cmd == "remove" else "renamed"
        out.document({verb: n, "people": len(people)},
                     escape(f"{verb} {n} sample(s); {len(people)} people in {args.index_dir}"))
        return 0
    if args.index_cmd == "remove":
        from facefeat.pipeline.face_recognition import FaceRecognitionPipeline

        if not args.ids:
            from facefeat.errors import InputError

            raise InputError("index remove: give ids (or a file of ids), or --label NAME")
        ids = args.ids[0] if len(args.ids) == 1 and not args.ids[0].lstrip("-").isdigit() else [int(i) for i in args.ids]
        with edit_index(args.index_dir) as index:  # one transaction: concurrent runs all land
            before = len(index)
            FaceRecognitionPipeline.remove_index(ids, index)
            n = before - len(index)
        out.document({"removed": n, "count": len(index)}, escape(f"removed {n}; {len(index)} left in {args.index_dir}"))
        return 0
    if args.index_cmd == "build" and (args.gallery is None) == (args.from_parquet is None):
        from facefeat.errors import InputError

        raise InputError("index build: pass exactly one of --gallery DIR or --from-parquet DIR")
    if args.index_cmd == "build" and args.from_parquet:
        from facefeat.distributed import build_index_from_parquet

        kw = {"uri": args.milvus_uri} if args.index_backend == "milvus" and args.milvus_uri else {}
        index, stats = build_index_from_parquet(args.from_parquet, backend=args.index_backend, metric_type=args.metric,
                                                index_type=args.index_type, label_column=args.label_column,
                                                label_map=args.label_map, skip_unlabelled=args.skip_unlabelled,
                                                faces=args.faces, flags=_PARQUET_FLAGS, **kw)
        index.save(args.out)
        out.document({"out": args.out, "index": index.info(), "stats": stats},
                     escape(f"built {index_line(index)} -> {args.out} ({stats_line(stats)})"))
        return 0
    labels = args.labels or str(Path(args.gallery) / "gallery.txt")
    if args.index_cmd == "add":
        pipe = _pipeline(args)
        check_model(read_meta(args.index_dir), *_model_of(pipe))  # fail fast, before embedding
        g = pipe.gallery_features(args.gallery, labels, progress=True)  # the slow part, outside the lock
        from facefeat.pipeline.enrol import add_gallery

        with edit_index(args.index_dir) as index:  # one transaction: concurrent runs all land
            res = add_gallery(index, g)
        ids = res.added
        out.document({"added": ids, "duplicates": res.duplicates, "count": len(index),
                      "rejected": [r.to_dict() for r in g.rejected]},
                     escape(f"added {len(ids)} (ids {ids[0] if ids else '-'}..{ids[-1] if ids else '-'}), "
                            f"duplicates {len(res.duplicates)}; {len(index)} in {args.index_dir}"))
        return _report_rejected(out, g.rejected, len(ids))
    pipe = _pipeline(args)
    kw = {"uri": args.milvus_uri} if args.index_backend == "milvus" and args.milvus_uri else {}
    index = pipe.build_index(args.gallery, labels, metric_type=args.metric, index_type=args.index_type,
                             backend=args.index_backend, progress=True, **kw)
    index.save(args.out)
    out.document({"out": args.out, "index": index.info(), "rejected": [r.to_dict() for r in pipe.last_rejected]},
                 escape(f"built {index_line(index)} -> {args.out}"))
    return _report_rejected(out, pipe.last_rejected, len(index))


#: how ``index build --from-parquet`` spells build_index_from_parquet's options (for its errors)
_PARQUET_FLAGS = {"label_column": "--label-column", "label_map": "--label-map", "skip_unlabelled": "--skip-unlabelled",
                  "faces": "--faces"}


def _model_of(pipe) -> tuple[str, int]:
    return pipe.predictor.model_name, pipe.predictor.embedding_size


def _report_rejected(out: Output, rejected: list, n_ok: int) -> int:
    """Gallery images left out (each was logged as it was skipped): the run fails when any was."""
    for r in rejected:
        out.count_failed(r.name, r.reason)
    return out.finish(n_ok)


def _recognize_args(p: argparse.ArgumentParser) -> None:
    _pipeline_args(p)
    p.add_argument("--index", required=True, help="index directory (facefeat index build)")
    p.add_argument("--rec-threshold", type=float, default=None,
                   help="fixed threshold (default: the model's calibrated 1:N point, see --fpir)")
    p.add_argument("--fpir", type=float, default=None, help="calibrated operating point, e.g. 0.01 (default) or 0.1")
    p.add_argument("--per-person", action="store_true", help="top-k people instead of top-k images")
    p.add_argument("--topk", type=positive_int, default=5)
    p.add_argument("--save-dir", default=None, help="write <image>_res.json and <image>_res.jpg here")
    p.add_argument("--every-n", type=positive_int, default=1, help="video: detect every N-th frame, track in between")
    p.add_argument("--video-out", default=None, help="video: write the annotated video here (.mp4/.avi)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="video: stop after N processed frames")
    from facefeat.events.cli import add_event_flags

    add_event_flags(p)


@command("recognize", "recognise the faces of photos, videos, streams (rtsp/http) or webcam:N against a gallery",
         _recognize_args)
def cmd_recognize(args: argparse.Namespace) -> int:
    from facefeat.events.cli import open_hub
    from facefeat.index import load_index
    from facefeat.io.video import is_video_source

    pipe = _pipeline(args)
    index = load_index(args.index)
    hub = open_hub(args, people=set(index.labels().values()))  # None without --mqtt/--webhook
    try:
        if any(is_video_source(x) for x in args.inputs):
            return _recognize_video(args, pipe, index, hub)
        out, failures = Output.of(args), []
        for res in pipe.predict(_inputs(args), index=index, rec_threshold=args.rec_threshold, rec_topk=args.topk,
                                fpir=args.fpir, per_person=args.per_person, failures=failures):
            _drain(out, failures)
            out.record(res, recognition_line(res))
            if args.save_dir:
                res.save_to_json(args.save_dir)
                res.save_to_img(args.save_dir)
            if hub is not None:
                from facefeat.events.feeds import recognitions, result_faces

                recognitions(hub, str(res["input_path"]), result_faces(res), res.get("_img"),
                             res.get("operating_point"), presence=False)
        _drain(out, failures)
        return out.finish()
    finally:
        if hub is not None:
            hub.close()


def _get_pipeline_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="pipeline name (face_recognition)")
    p.add_argument("--save_path", "--save-path", dest="save_path", default=".",
                   help="directory (gets <name>.yaml) or .yaml file to write (default: .)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")


@command("get-pipeline-config", "write a pipeline's config YAML to edit (PaddleX --get_pipeline_config)",
         _get_pipeline_config_args)
def cmd_get_pipeline_config(args: argparse.Namespace) -> int:
    from facefeat.config import pipeline_config_path
    from facefeat.errors import ConfigError, InputError
    from facefeat.utils import atomic_write_text

    src = pipeline_config_path(args.pipeline)
    if src is None:
        raise ConfigError(f"unknown pipeline {args.pipeline!r}; available: face_recognition")
    target = Path(args.save_path)
    if target.suffix.lower() not in (".yaml", ".yml"):
        target = target / src.name
    if target.exists() and not args.overwrite:
        raise InputError(f"{target} already exists; pass --overwrite to replace it")
    atomic_write_text(target, src.read_text(encoding="utf-8"))
    Output.of(args).document({"saved": str(target)}, f"The pipeline config has been saved to: {escape(target)}")
    return 0


def _paddlex_pipeline_parser() -> argparse.ArgumentParser:
    """PaddleX's pipeline CLI: ``facefeat --pipeline face_recognition --input img.jpg --index DIR ...``."""
    p = argparse.ArgumentParser(prog="facefeat", description="Run a pipeline, as PaddleX's CLI does.")
    p.add_argument("--pipeline", help="pipeline name (face_recognition) or config .yaml")
    p.add_argument("--input", help="image, directory or URL")
    p.add_argument("--save_path", default=None, help="directory for <image>_res.json and <image>_res.jpg")
    p.add_argument("--device", default=None, help="cpu, gpu:0, ...")
    p.add_argument("--index", default=None, help="saved index directory (facefeat index build)")
    p.add_argument("--det_threshold", type=float, default=None)
    p.add_argument("--rec_threshold", type=float, default=None)
    p.add_argument("--rec_topk", type=positive_int, default=None)
    p.add_argument("--get_pipeline_config", default=None, help="write this pipeline's config to --save_path")
    for name in ("--engine", "--hpi_config"):  # PaddleX options without meaning here
        p.add_argument(name, default=None, help="accepted for PaddleX compatibility; ignored")
    p.add_argument("--use_hpip", action="store_true", help="accepted for PaddleX compatibility; ignored")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _is_paddlex_pipeline_cli(argv: Sequence[str]) -> bool:
    for a in argv:
        if a in COMMANDS:
            return False
        if a.split("=", 1)[0] in ("--pipeline", "--get_pipeline_config"):
            return True
    return False


def paddlex_pipeline_main(argv: Sequence[str]) -> int:
    from facefeat.pipeline import create_pipeline

    args = _paddlex_pipeline_parser().parse_args(argv)
    if args.get_pipeline_config:
        return cmd_get_pipeline_config(argparse.Namespace(
            pipeline=args.get_pipeline_config, save_path=args.save_path or ".", overwrite=False))
    if not args.pipeline or not args.input:
        raise FacefeatError("--pipeline and --input are both needed (e.g. --pipeline face_recognition --input img.jpg)")
    pipe = create_pipeline(args.pipeline, device=args.device)
    out, failures = Output(json_mode=True), []
    for res in pipe.predict(args.input, index=args.index, det_threshold=args.det_threshold,
                            rec_threshold=args.rec_threshold, rec_topk=args.rec_topk, failures=failures):
        _drain(out, failures)
        out.record({"res": res.json["res"]})  # JSON lines, as PaddleX's res.print(json_format=True)
        if args.save_path:
            res.save_all(args.save_path)
    _drain(out, failures)
    return out.finish()


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("img1")
    p.add_argument("img2", nargs="?", default=None, help="second image (or use --person with --index)")
    _pipeline_args(p, inputs=False)
    p.add_argument("--person", default=None, help="verify img1 against this person of --index")
    p.add_argument("--index", default=None, help="index directory (for --person)")
    p.add_argument("--far", type=float, default=None, help="operating point: calibrated FAR (default 1e-3)")
    p.add_argument("--threshold", type=float, default=None, help="a fixed threshold instead")


@command("verify", "1:1 verification: are the faces of two photos the same person?", _verify_args)
def cmd_verify(args: argparse.Namespace) -> int:
    index = None
    if args.index:
        from facefeat.index import load_index

        index = load_index(args.index)
    res = _pipeline(args).verify(args.img1, args.img2, person=args.person, index=index,
                                 rec_threshold=args.threshold, far=args.far)
    Output.of(args).document(res, verify_line(res))
    return 0 if res["verified"] else 1  # 1: not the same person (2: an error, e.g. no face)


def _recognize_video(args: argparse.Namespace, pipe, index, hub=None) -> int:
    """JSON lines per frame and per finished track on stdout; achieved fps on stderr."""
    import time

    from facefeat.errors import InputError

    if len(args.inputs) != 1:
        raise InputError(f"recognize: give one video source at a time, got {len(args.inputs)} inputs")
    src = args.inputs[0]
    out = args.video_out or (str(Path(args.save_dir) / f"{Path(src.split('?')[0]).stem or 'video'}_res.mp4")
                             if args.save_dir else None)
    n, t0, summary = 0, time.perf_counter(), None
    events = pipe.predict_video(src, index=index, every_n=args.every_n, rec_threshold=args.rec_threshold,
                                save_path=out, max_frames=args.max_frames, events=hub)
    out = Output.of(args)
    try:
        for ev in events:
            n += ev["event"] == "frame"
            summary = ev if ev["event"] == "summary" else None
            out.record(ev, video_line(ev))
    except KeyboardInterrupt:  # live sources run until stopped
        pass
    finally:
        events.close()
    secs = time.perf_counter() - t0
    dropped = f", {summary['frames_dropped']} dropped, {summary['tracks']} tracks" if summary else " (stopped)"
    out.note(escape(f"{src}: {n} frames in {secs:.1f}s = {n / max(secs, 1e-9):.1f} fps{dropped}"))
    return 0


def _cluster_args(p: argparse.ArgumentParser) -> None:
    from facefeat.pipeline.cluster import METHODS

    p.add_argument("inputs", nargs="*", help="images or directories (walked recursively)")
    _pipeline_args(p, inputs=False)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="new cluster directory: clusters.json, features.npy, sheets/*.png")
    g.add_argument("--update", metavar="DIR", help="existing cluster directory: add INPUTS to it and/or edit it")
    p.add_argument("--threshold", type=float, default=None,
                   help="cosine similarity for one person (default: the model's calibrated one; with --split: stricter)")
    p.add_argument("--min-samples", type=positive_int, default=None, help="smaller clusters stay unclustered (default 1)")
    p.add_argument("--method", default=None, choices=METHODS, help="clustering method (default agglomerative)")
    p.add_argument("--merge", type=int, nargs="+", metavar="ID", help="merge these clusters into the first")
    p.add_argument("--split", type=int, metavar="ID", help="split this cluster (re-cluster, or move out --faces)")
    p.add_argument("--faces", type=int, nargs="+", metavar="FACE_ID", help="with --split: faces to move out")
    p.add_argument("--rename", nargs="+", metavar="ID=NAME", help="name clusters (default person_0001 ...)")
    p.add_argument("--to-index", metavar="DIR", help="also write a FAISS gallery labelled by cluster name")
    p.add_argument("--no-sheets", action="store_true", help="do not write contact-sheet PNGs")


@command("cluster", "group the faces of unlabeled photos into people (clusters.json, contact sheets)", _cluster_args)
def cmd_cluster(args: argparse.Namespace) -> int:
    from facefeat.errors import InputError
    from facefeat.pipeline.cluster import ClusterResult, update_clusters

    if args.out:
        if not args.inputs:
            raise InputError("cluster --out: give the images or directories to cluster")
        res = _pipeline(args).cluster(args.inputs, args.threshold, args.min_samples, args.method, progress=True)
    else:
        res = ClusterResult.load(args.update)
        known_failures = len(res.failed)  # reported by earlier runs
        if args.inputs:
            changed = update_clusters(_pipeline(args), res, args.inputs, progress=True)
            Output.of(args).line(f"joined clusters {changed['joined'] or '-'}; new clusters {changed['new'] or '-'}")
    if args.merge:
        Output.of(args).line(f"merged {args.merge} into {res.merge(args.merge)}")
    if args.split is not None:
        new = res.split(args.split, threshold=args.threshold if args.update else None, face_ids=args.faces)
        Output.of(args).line(f"split {args.split}: new clusters {new or '- (nothing to split at this threshold)'}")
    for r in args.rename or []:
        cid, eq, name = r.partition("=")
        if not eq or not cid.strip().isdigit():
            raise InputError(f"--rename {r!r}: expected ID=NAME, e.g. 3=Alice")
        res.rename(int(cid), name)
    out = res.save(args.out or args.update, sheets=not args.no_sheets)
    if args.to_index:
        res.to_index(args.to_index)
    report = Output.of(args)
    for name, why in res.failed[0 if args.out else known_failures:]:
        report.count_failed(name, why)  # each was logged as it was skipped
    report.document({"out": str(out), "num_faces": res["num_faces"], "num_clusters": res["num_clusters"],
                     "num_unclustered": res["num_unclustered"], "to_index": args.to_index,
                     "failed": [{"input": n, "reason": w} for n, w in res.failed]},
                    escape(f"{res['num_faces']} faces -> {res['num_clusters']} clusters ({res['num_unclustered']} "
                           f"unclustered) in {out}" + (f"; gallery -> {args.to_index}" if args.to_index else "")))
    return report.finish()


def _dataset_args(p: argparse.ArgumentParser) -> None:
    from facefeat.data.lfw_demo import configure_cli

    sub = p.add_subparsers(dest="dataset_cmd", metavar="ACTION", required=True)
    configure_cli(sub.add_parser("lfw-demo", help="build a PaddleX-format demo dataset from LFW"))


@command("dataset", "dataset tools (lfw-demo)", _dataset_args)
def cmd_dataset(args: argparse.Namespace) -> int:
    from facefeat.data.lfw_demo import build_from_cli

    s = build_from_cli(args)
    Output.of(args).document(s, escape(
        f"LFW demo dataset -> {s['out_dir']}: {s['num_train_images']} train images of {s['num_train_ids']} people, "
        f"{s['num_val_pairs']} val pairs ({s['align']}); next: facefeat train {s['out_dir']} --model MobileFaceNet "
        "--epochs 2 --pretrain none"))
    return 0


def _events_args(p: argparse.ArgumentParser) -> None:
    from facefeat.events.cli import configure_cli

    configure_cli(p)


@command("events", "events out (MQTT, webhooks): 'test' sends a test event to every target, 'status'", _events_args)
def cmd_events(args: argparse.Namespace) -> int:
    from facefeat.events.cli import run_cli

    return run_cli(args)


def _serve_args(p: argparse.ArgumentParser) -> None:
    from facefeat.serving.options import configure_cli

    configure_cli(p)


@command("serve", "run the HTTP service (FastAPI + uvicorn) with the web page", _serve_args)
def cmd_serve(args: argparse.Namespace) -> int:
    from facefeat.serving.app import run_cli

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
        if name not in _NO_JSON:
            _add_json_flag(p)
        p.set_defaults(func=fn)
    return parser


#: commands without a result to print (the service); "events" (merged from another branch) prints
#: its own report
_NO_JSON = {"serve", "events"}


def _add_json_flag(p: argparse.ArgumentParser) -> None:
    """``--json`` on every (leaf) command: one JSON document, or JSON lines for streams."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    for a in subs:
        for child in a.choices.values():
            _add_json_flag(child)
    if not subs and not any("--json" in a.option_strings for a in p._actions):
        p.add_argument("--json", action="store_true",
                       help="print JSON (one document, or one JSON object a line for streams) instead of a summary")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if "-v" in argv else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    install_log_escaping()
    rest = [a for a in argv if a not in ("-v", "--verbose")]
    subcommand = bool(rest) and rest[0] in COMMANDS  # facefeat train DIR -c my.yaml: the subcommand's -c
    if ("-c" in argv or "--config" in argv) and not subcommand:
        from facefeat.engine.runner import main_config

        return _guard(lambda: main_config(argv))
    if _is_paddlex_pipeline_cli(argv):
        return _guard(lambda: paddlex_pipeline_main(argv))
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
        print(f"facefeat: error: {escape(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
