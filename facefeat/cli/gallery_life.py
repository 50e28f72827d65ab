"""``facefeat index health | export | import | migrate | person | correct | corrections | sightings``:
living with a gallery.

Each action registers its parser and handler in :data:`~facefeat.cli.table.INDEX_ACTIONS`; the work
is done in :mod:`facefeat.index.health`, :mod:`~facefeat.index.archive`, :mod:`~facefeat.index.migrate`,
:mod:`~facefeat.index.privacy`, :mod:`~facefeat.index.corrections` and :mod:`~facefeat.index.sightings`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from facefeat.cli.output import Output, escape
from facefeat.cli.table import index_action
from facefeat.errors import InputError
from facefeat.index import corrections
from facefeat.index.archive import export_archive, import_archive
from facefeat.index.persist import open_existing_store, open_index
from facefeat.results import _jsonable

_GALLERY_HELP = "gallery directory or postgresql:// URL"


def _print(args: argparse.Namespace, obj: Any) -> None:
    """The CLI's one output convention (:mod:`facefeat.cli.output`): a one-line summary of ``obj``'s
    top-level figures by default, the whole document with ``--json``."""
    doc = _jsonable(dict(obj) if isinstance(obj, dict) else obj)
    if isinstance(doc, dict):
        parts = [f"{k} {v}" if not isinstance(v, (list, dict)) else f"{k} {len(v)}" for k, v in doc.items()
                 if v is not None and not (isinstance(v, dict) and len(v) > 3)]
        text = f"index {args.index_cmd}: " + ", ".join(parts)
    else:
        text = f"index {args.index_cmd}: {len(doc)} item(s)"
    Output.of(args).document(doc, escape(text) + " (--json for everything)")


def _health_args(h: argparse.ArgumentParser) -> None:
    from facefeat.vision.quality import POLICIES

    h.add_argument("index_dir", help=_GALLERY_HELP)
    h.add_argument("--quality", default="standard", choices=list(POLICIES),
                   help="quality policy the stored figures are judged by (default standard)")
    h.add_argument("--rec-threshold", default="auto",
                   help="operating point: 'auto' (the model's calibrated 1:N threshold) or a number")
    h.add_argument("--max-fixes", type=int, default=20, help="fixes listed (default 20)")
    h.add_argument("--people", action="store_true", help="list every person (default: only those with findings)")


@index_action("health", "per-person health of a gallery: outliers, confusable people, poor and duplicate samples, "
                        "a score per person and a short list of fixes (JSON)", _health_args)
def _health(args: argparse.Namespace) -> int:
    from facefeat.index.health import gallery_health

    thr = args.rec_threshold
    if thr not in ("auto", "best_accuracy"):
        try:
            thr = float(thr)
        except ValueError:
            raise InputError(f"--rec-threshold must be 'auto' or a number, got {thr!r}") from None
    store = open_existing_store(args.index_dir)
    try:
        rep = gallery_health(store, policy=args.quality, rec_threshold=thr, max_fixes=args.max_fixes)
    finally:
        store.close()
    if not args.people:
        rep["persons"] = [r for r in rep["persons"] if r["score"] < 100]
    _print(args, rep)
    return 0


def _export_args(e: argparse.ArgumentParser) -> None:
    e.add_argument("index_dir", help=_GALLERY_HELP)
    e.add_argument("--out", required=True, help="archive file to write (e.g. gallery.tar)")


@index_action("export", "write a gallery to one archive file (people, samples, crops, features, model info, "
                        "checksums)", _export_args)
def _export(args: argparse.Namespace) -> int:
    _print(args, export_archive(args.index_dir, args.out))
    return 0


def _import_args(i: argparse.ArgumentParser) -> None:
    i.add_argument("archive", help="archive file written by 'facefeat index export'")
    i.add_argument("--out", required=True, help=_GALLERY_HELP)
    i.add_argument("--gallery", default=None, help="PostgreSQL: the gallery's name (default 'default')")


@index_action("import", "restore an archive into a new gallery, or merge it by person into an existing one",
              _import_args)
def _import(args: argparse.Namespace) -> int:
    rep = import_archive(args.archive, args.out, gallery=args.gallery)
    _print(args, rep)
    return 1 if rep.get("conflicts") else 0


def _migrate_args(m: argparse.ArgumentParser) -> None:
    m.add_argument("index_dir", help=_GALLERY_HELP)
    m.add_argument("--model", required=True, help="zoo model name, weights file or model directory")
    m.add_argument("--device", default="cpu")
    m.add_argument("--batch", type=int, default=64, help="faces embedded (and saved) per step (default 64)")


@index_action("migrate", "re-embed every stored face with another model, keeping people and ids (resumable)",
              _migrate_args)
def _migrate(args: argparse.Namespace) -> int:
    from facefeat.index.migrate import migrate_gallery, resolve_predictor

    pred = resolve_predictor(args.model, device=args.device, batch_size=max(1, args.batch))

    def progress(done: int, total: int) -> None:
        print(f"\rre-embedded {done}/{total}", end="", file=sys.stderr, flush=True)

    rep = migrate_gallery(args.index_dir, pred, batch=args.batch, progress=progress)
    print(file=sys.stderr)
    _print(args, rep)
    return 0


def _person_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("index_dir", help=_GALLERY_HELP)
    p.add_argument("name", help="the person's label")
    p.add_argument("--forget", action="store_true",
                   help="delete the person's samples, crops, vectors and figures everywhere the gallery keeps them")


@index_action("person", "list everything the gallery stores about one person (--forget: delete it)", _person_args)
def _person(args: argparse.Namespace) -> int:
    from facefeat.index.privacy import forget_person, person_report

    _print(args, forget_person(args.index_dir, args.name) if args.forget else person_report(args.index_dir, args.name))
    return 0


def _correct_args(c: argparse.ArgumentParser) -> None:
    from facefeat.vision.quality import POLICIES

    c.add_argument("index_dir", help=_GALLERY_HELP)
    c.add_argument("image", help="an image holding the face (one face, or one clearly the largest)")
    who = c.add_mutually_exclusive_group(required=True)
    who.add_argument("--not", dest="not_label", metavar="NAME", help="the face is not this person")
    who.add_argument("--is", dest="is_label", metavar="NAME", help="the face is this person: add it as a sample")
    c.add_argument("--quality", default="standard", choices=list(POLICIES),
                   help="--is: the enrolment quality policy (default standard)")
    c.add_argument("--model", default=None, help="the gallery's model (default: the one it was built with)")
    c.add_argument("--model-dir", default=None, help="the gallery's model directory")
    c.add_argument("--device", default="cpu")


@index_action("correct", "'this is not NAME' (--not: a negative sample) or 'this is NAME' (--is: enrolled through "
                         "the quality policy); undo with 'corrections --undo ID'", _correct_args)
def _correct(args: argparse.Namespace) -> int:
    from facefeat.pipeline import create_pipeline

    index = open_index(args.index_dir)  # attached: each change is one transaction
    pipe = create_pipeline("face_recognition", model=None if args.model_dir else (args.model or index.model_name),
                           model_dir=args.model_dir, device=args.device)
    index.check_model(pipe.predictor.model_name, pipe.predictor.embedding_size)
    if args.is_label is not None:
        _print(args, corrections.confirm_match(pipe, index, args.image, args.is_label, quality=args.quality,
                                               source=args.image))
        return 0
    g = pipe.gallery_features([args.image], [args.not_label], strict=True, quality="off")
    cid = corrections.reject_match(index, args.not_label, g.features[0], crop=g.records[0].crop, source=args.image)
    _print(args, {"correction": cid, "kind": "not", "label": args.not_label})
    return 0


def _corrections_args(cs: argparse.ArgumentParser) -> None:
    cs.add_argument("index_dir", help=_GALLERY_HELP)
    cs.add_argument("--label", default=None, help="only this person's")
    cs.add_argument("--undo", type=int, default=None, metavar="ID", help="take correction ID back")


@index_action("corrections", "list a gallery's corrections, or undo one (--undo ID)", _corrections_args)
def _corrections(args: argparse.Namespace) -> int:
    index = open_index(args.index_dir)  # attached: each change is one transaction
    _print(args, corrections.undo(index, args.undo) if args.undo is not None
           else corrections.list_corrections(index, args.label))
    return 0


def _sightings_args(si: argparse.ArgumentParser) -> None:
    si.add_argument("index_dir", help=_GALLERY_HELP)
    si.add_argument("--record", choices=["on", "off"], help="record recognised faces")
    si.add_argument("--keep-unknown", choices=["on", "off"], help="keep faces that were not named")
    si.add_argument("--retention-days", type=float, default=None, help="how long sightings are kept (> 0)")
    si.add_argument("--person", default=None, help="sightings of this person")
    si.add_argument("--unknown", action="store_true", help="unknown faces only")
    si.add_argument("--since", type=float, default=None, help="from this Unix time")
    si.add_argument("--until", type=float, default=None, help="up to this Unix time")
    si.add_argument("--probe", default=None, metavar="IMAGE", help="sightings of the face in this image")
    si.add_argument("--limit", type=int, default=100)
    si.add_argument("--groups", action="store_true", help="the unknown faces grouped into candidate people")
    si.add_argument("--name", default=None, metavar="IDS", help="comma-separated sighting ids to name (with --as)")
    si.add_argument("--as", dest="as_label", default=None, metavar="NAME", help="the name for --name")
    si.add_argument("--dismiss", default=None, metavar="IDS", help="comma-separated sighting ids to delete")
    si.add_argument("--sweep", action="store_true", help="delete the sightings past the retention period now")


def _ids(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what}: give comma-separated sighting ids, got {text!r}") from None


@index_action("sightings", "where faces were seen (opt-in: --record/--keep-unknown): search by person, time or "
                           "probe face; group, name or dismiss unknown faces; sweep", _sightings_args)
def _sightings(args: argparse.Namespace) -> int:
    from facefeat.index import sightings as S

    index = open_index(args.index_dir)
    if args.record or args.keep_unknown or args.retention_days is not None:
        _print(args, S.configure(index, record=None if args.record is None else args.record == "on",
                           keep_unknown=None if args.keep_unknown is None else args.keep_unknown == "on",
                           retention_days=args.retention_days))
        return 0
    if args.sweep:
        _print(args, {"deleted": S.sweep(index)})
        return 0
    if args.dismiss:
        _print(args, {"deleted": S.dismiss(index, _ids(args.dismiss, "--dismiss"))})
        return 0
    if args.name or args.as_label:
        if not (args.name and args.as_label):
            raise InputError("--name IDS and --as NAME go together")
        _print(args, S.name_sightings(index, _ids(args.name, "--name"), args.as_label))
        return 0
    if args.groups:
        from facefeat.pipeline.unknown import unknown_groups

        _print(args, unknown_groups(index))
        return 0
    probe = None
    if args.probe:
        from facefeat.pipeline import create_pipeline

        pipe = create_pipeline("face_recognition", model=index.model_name)
        g = pipe.gallery_features([args.probe], ["probe"], strict=True, quality="off")
        probe = g.features[0]
    rows = S.search(index, label=args.person, since=args.since, until=args.until, probe=probe, unknown=args.unknown,
                    limit=args.limit)
    _print(args, rows)
    return 0


__all__: list[str] = []  # the actions are reached through INDEX_ACTIONS
