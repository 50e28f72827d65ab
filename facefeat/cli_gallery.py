"""``facefeat index health | export | import | migrate | person``: living with a gallery.

Wired into ``facefeat index`` by :func:`add_actions` (the parsers) and :func:`run` (the actions);
the work is done in :mod:`facefeat.index.health`, :mod:`~facefeat.index.archive`,
:mod:`~facefeat.index.migrate` and :mod:`~facefeat.index.privacy`. Each prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

ACTIONS = ("health", "export", "import", "migrate", "person")


def add_actions(sub: argparse._SubParsersAction) -> None:
    """Add the gallery-life actions to the ``facefeat index`` sub-parsers."""
    h = sub.add_parser("health", help="per-person health of a gallery: outliers, confusable people, poor and "
                                      "duplicate samples, a score per person and a short list of fixes (JSON)")
    h.add_argument("index_dir", help="gallery directory or postgresql:// URL")
    h.add_argument("--quality", default="standard", choices=["off", "standard", "strict"],
                   help="quality policy the stored figures are judged by (default standard)")
    h.add_argument("--rec-threshold", default="auto",
                   help="operating point: 'auto' (the model's calibrated 1:N threshold) or a number")
    h.add_argument("--max-fixes", type=int, default=20, help="fixes listed (default 20)")
    h.add_argument("--people", action="store_true", help="list every person (default: only those with findings)")
    e = sub.add_parser("export", help="write a gallery to one archive file (people, samples, crops, features, "
                                      "model info, checksums)")
    e.add_argument("index_dir", help="gallery directory or postgresql:// URL")
    e.add_argument("--out", required=True, help="archive file to write (e.g. gallery.tar)")
    i = sub.add_parser("import", help="restore an archive into a new gallery, or merge it by person into an "
                                      "existing one")
    i.add_argument("archive", help="archive file written by 'facefeat index export'")
    i.add_argument("--out", required=True, help="gallery directory or postgresql:// URL")
    i.add_argument("--gallery", default=None, help="PostgreSQL: the gallery's name (default 'default')")
    m = sub.add_parser("migrate", help="re-embed every stored face with another model, keeping people and ids "
                                       "(resumable)")
    m.add_argument("index_dir", help="gallery directory or postgresql:// URL")
    m.add_argument("--model", required=True, help="zoo model name, weights file or model directory")
    m.add_argument("--device", default="cpu")
    m.add_argument("--batch", type=int, default=64, help="faces embedded (and saved) per step (default 64)")
    p = sub.add_parser("person", help="list everything the gallery stores about one person (--forget: delete it)")
    p.add_argument("index_dir", help="gallery directory or postgresql:// URL")
    p.add_argument("name", help="the person's label")
    p.add_argument("--forget", action="store_true",
                   help="delete the person's samples, crops, vectors and figures everywhere the gallery keeps them")


def _print(obj: dict) -> None:
    from facefeat.results import _jsonable

    print(json.dumps(_jsonable(dict(obj)), indent=2, ensure_ascii=False))


def run(args: argparse.Namespace) -> int:
    """Run one of :data:`ACTIONS`."""
    from facefeat.errors import InputError

    if args.index_cmd == "health":
        from facefeat.index.health import gallery_health
        from facefeat.index.persist import open_existing_store

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
        _print(rep)
        return 0
    if args.index_cmd == "export":
        from facefeat.index.archive import export_archive

        _print(export_archive(args.index_dir, args.out))
        return 0
    if args.index_cmd == "import":
        from facefeat.index.archive import import_archive

        rep = import_archive(args.archive, args.out, gallery=args.gallery)
        _print(rep)
        return 1 if rep.get("conflicts") else 0
    if args.index_cmd == "migrate":
        from facefeat.index.migrate import migrate_gallery, resolve_predictor

        pred = resolve_predictor(args.model, device=args.device, batch_size=max(1, args.batch))

        def progress(done: int, total: int) -> None:
            print(f"\rre-embedded {done}/{total}", end="", file=sys.stderr, flush=True)

        rep = migrate_gallery(args.index_dir, pred, batch=args.batch, progress=progress)
        print(file=sys.stderr)
        _print(rep)
        return 0
    if args.index_cmd == "person":
        from facefeat.index.privacy import forget_person, person_report

        _print(forget_person(args.index_dir, args.name) if args.forget else person_report(args.index_dir, args.name))
        return 0
    raise InputError(f"unknown index action {args.index_cmd!r}")  # pragma: no cover - argparse guards it


__all__ = ["ACTIONS", "add_actions", "run"]
