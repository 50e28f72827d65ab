"""``facefeat index ACTION``: one handler per action in :data:`~facefeat.cli.table.INDEX_ACTIONS`.

This module holds the group and the actions that build and edit a gallery (build, add, remove,
info, people, rename, enroll); :mod:`facefeat.cli.gallery_life` adds the ones for living with it
(health, export, import, migrate, person, correct, corrections, sightings).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facefeat.cli.options import pipeline_args, pipeline_of
from facefeat.cli.output import Output, escape, index_line, stats_line
from facefeat.cli.table import INDEX_ACTIONS, command, index_action
from facefeat.distributed import build_index_from_parquet
from facefeat.distributed.bulk import FACE_MODES
from facefeat.errors import InputError
from facefeat.index import BACKENDS as INDEX_BACKENDS
from facefeat.index import check_model, create_index, edit_index, load_index, read_meta
from facefeat.index.common import METRIC_TYPES
from facefeat.index.people import People
from facefeat.index.persist import gallery_exists, open_index


def _index_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="index_cmd", metavar="ACTION", required=True)
    INDEX_ACTIONS.add_parsers(sub, describe=False)


@command("index", "build, extend, shrink or describe a gallery index", _index_args)
def cmd_index(args: argparse.Namespace) -> int:
    return INDEX_ACTIONS.run(args.index_cmd, args)


# -- build -------------------------------------------------------------------------------------------
def _build_args(b: argparse.ArgumentParser) -> None:
    b.add_argument("--gallery", default=None, help="gallery root directory")
    b.add_argument("--from-parquet", default=None, metavar="DIR",
                   help="bulk-load 'facefeat embed-dataset' output instead of embedding a gallery")
    b.add_argument("--label-column", default="label",
                   help="--from-parquet: row column holding the label (default 'label': a folder input's "
                        "sub-folder names, a list's second field); 'path' labels each image by its path")
    b.add_argument("--skip-unlabelled", action="store_true",
                   help="--from-parquet: leave out images without a label instead of stopping")
    b.add_argument("--faces", default="gallery", choices=list(FACE_MODES),
                   help="--from-parquet: one face per image, as the gallery rule picks (default), or every face")
    b.add_argument("--label-map", default=None, help="--from-parquet: file mapping paths to labels (gallery.txt, CSV)")
    b.add_argument("--labels", default=None, help="label file (default: <gallery>/gallery.txt)")
    b.add_argument("--out", required=True, help="index directory to write")
    b.add_argument("--index-type", default="HNSW32", help="Flat | IVF | HNSW32 (Milvus: FLAT | IVF_FLAT | HNSW)")
    b.add_argument("--metric", default="IP", choices=list(METRIC_TYPES))
    b.add_argument("--index-backend", default="faiss", choices=list(INDEX_BACKENDS))
    b.add_argument("--milvus-uri", default=None, help="Milvus URI (default: milvus-lite file inside --out)")
    pipeline_args(b, inputs=False)


#: how ``index build --from-parquet`` spells build_index_from_parquet's options (for its errors)
_PARQUET_FLAGS = {"label_column": "--label-column", "label_map": "--label-map", "skip_unlabelled": "--skip-unlabelled",
                  "faces": "--faces"}


@index_action("build", "build an index from a gallery (gallery.txt: 'relative/path.jpg label')", _build_args)
def _build(args: argparse.Namespace) -> int:
    if (args.gallery is None) == (args.from_parquet is None):
        raise InputError("index build: pass exactly one of --gallery DIR or --from-parquet DIR")
    out = Output.of(args)
    kw = {"uri": args.milvus_uri} if args.index_backend == "milvus" and args.milvus_uri else {}
    if args.from_parquet:
        index, stats = build_index_from_parquet(args.from_parquet, backend=args.index_backend, metric_type=args.metric,
                                                index_type=args.index_type, label_column=args.label_column,
                                                label_map=args.label_map, skip_unlabelled=args.skip_unlabelled,
                                                faces=args.faces, flags=_PARQUET_FLAGS, **kw)
        index.save(args.out)
        out.document({"out": args.out, "index": index.info(), "stats": stats},
                     escape(f"built {index_line(index)} -> {args.out} ({stats_line(stats)})"))
        return 0
    pipe = pipeline_of(args)
    index = pipe.build_index(args.gallery, _labels(args), metric_type=args.metric, index_type=args.index_type,
                             backend=args.index_backend, progress=True, **kw)
    index.save(args.out)
    out.document({"out": args.out, "index": index.info(), "rejected": [r.to_dict() for r in pipe.last_rejected]},
                 escape(f"built {index_line(index)} -> {args.out}"))
    return _report_rejected(out, pipe.last_rejected, len(index))


def _labels(args: argparse.Namespace) -> str:
    return args.labels or str(Path(args.gallery) / "gallery.txt")


def _report_rejected(out: Output, rejected: list, n_ok: int) -> int:
    """Gallery images left out (each was logged as it was skipped): the run fails when any was."""
    for r in rejected:
        out.count_failed(r.name, r.reason)
    return out.finish(n_ok)


# -- add, remove -------------------------------------------------------------------------------------
def _add_args(a: argparse.ArgumentParser) -> None:
    a.add_argument("index_dir")
    a.add_argument("--gallery", required=True)
    a.add_argument("--labels", default=None)
    pipeline_args(a, inputs=False)


@index_action("add", "add gallery images to an index", _add_args)
def _add(args: argparse.Namespace) -> int:
    from facefeat.pipeline.enrol import add_gallery

    out, pipe = Output.of(args), pipeline_of(args)
    check_model(read_meta(args.index_dir), pipe.predictor.model_name, pipe.predictor.embedding_size)  # fail fast
    g = pipe.gallery_features(args.gallery, _labels(args), progress=True)  # the slow part, outside the lock
    with edit_index(args.index_dir) as index:  # one transaction: concurrent runs all land
        res = add_gallery(index, g)
    ids = res.added
    out.document({"added": ids, "duplicates": res.duplicates, "count": len(index),
                  "rejected": [r.to_dict() for r in g.rejected]},
                 escape(f"added {len(ids)} (ids {ids[0] if ids else '-'}..{ids[-1] if ids else '-'}), "
                        f"duplicates {len(res.duplicates)}; {len(index)} in {args.index_dir}"))
    return _report_rejected(out, g.rejected, len(ids))


def _remove_args(r: argparse.ArgumentParser) -> None:
    r.add_argument("index_dir")
    r.add_argument("ids", nargs="*", help="ids, or one file with an id per line")
    r.add_argument("--label", default=None, help="remove this person (every sample) instead of ids")


@index_action("remove", "remove ids (numbers, or a file of ids) from an index", _remove_args)
def _remove(args: argparse.Namespace) -> int:
    if args.label:
        if args.ids:
            raise InputError("index remove: give ids or --label NAME, not both")
        return _people_change(args, "removed", lambda people: people.remove(args.label))
    from facefeat.pipeline.face_recognition import FaceRecognitionPipeline

    if not args.ids:
        raise InputError("index remove: give ids (or a file of ids), or --label NAME")
    ids = args.ids[0] if len(args.ids) == 1 and not args.ids[0].lstrip("-").isdigit() else [int(i) for i in args.ids]
    with edit_index(args.index_dir) as index:  # one transaction: concurrent runs all land
        before = len(index)
        FaceRecognitionPipeline.remove_index(ids, index)
        n = before - len(index)
    Output.of(args).document({"removed": n, "count": len(index)},
                             escape(f"removed {n}; {len(index)} left in {args.index_dir}"))
    return 0


# -- info, people, rename, enroll --------------------------------------------------------------------
def _index_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("index_dir")


@index_action("info", "describe an index", _index_dir_arg)
def _info(args: argparse.Namespace) -> int:
    info = load_index(args.index_dir).info()
    Output.of(args).document(info, escape(
        f"{args.index_dir}: {info.get('count')} sample(s) of {info.get('num_labels')} people; "
        f"{info.get('model_name')} {info.get('dim')}-d, {info.get('backend')} {info.get('index_type')} "
        f"{info.get('metric_type')}"))
    return 0


def _open_people(args: argparse.Namespace):
    return People(open_index(args.index_dir))  # attached: each change is one transaction


@index_action("people", "list the people of an index with their sample counts", _index_dir_arg)
def _people(args: argparse.Namespace) -> int:
    rows = _open_people(args).list()
    Output.of(args).document(rows, "\n".join(f"{escape(p['label'])}: {p['samples']} sample(s)" for p in rows)
                             or f"no people in {escape(args.index_dir)}")
    return 0


def _people_change(args: argparse.Namespace, verb: str, change) -> int:
    people = _open_people(args)
    n = change(people)
    Output.of(args).document({verb: n, "people": len(people)},
                             escape(f"{verb} {n} sample(s); {len(people)} people in {args.index_dir}"))
    return 0


def _rename_args(rn: argparse.ArgumentParser) -> None:
    rn.add_argument("index_dir")
    rn.add_argument("old")
    rn.add_argument("new")


@index_action("rename", "rename a person", _rename_args)
def _rename(args: argparse.Namespace) -> int:
    return _people_change(args, "renamed", lambda people: people.rename(args.old, args.new))


def _enroll_args(en: argparse.ArgumentParser) -> None:
    from facefeat.vision.quality import POLICIES

    en.add_argument("index_dir")
    en.add_argument("--folder", required=True, help="a folder with one sub-folder of images per person")
    en.add_argument("--quality", default="standard", choices=list(POLICIES))
    pipeline_args(en, inputs=False)


@index_action("enroll", "enrol people from a folder gallery/<name>/*.jpg (creates the index)", _enroll_args)
def _enroll(args: argparse.Namespace) -> int:
    out = Output.of(args)
    exists = gallery_exists(args.index_dir)
    pipe = pipeline_of(args)
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


__all__ = ["cmd_index"]
