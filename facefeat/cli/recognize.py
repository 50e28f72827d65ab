"""``facefeat recognize | verify | cluster``: who is in photos and videos, 1:1 verification, and
grouping unlabeled faces into people."""

from __future__ import annotations

import argparse
from pathlib import Path

from facefeat.cli.options import inputs_of, pipeline_args, pipeline_of
from facefeat.cli.output import Output, drain, escape, positive_int, recognition_line, verify_line, video_line
from facefeat.cli.table import command
from facefeat.errors import InputError
from facefeat.events.cli import add_event_flags, open_hub
from facefeat.events.feeds import recognitions, result_faces
from facefeat.index import load_index


def _recognize_args(p: argparse.ArgumentParser) -> None:
    pipeline_args(p)
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
    add_event_flags(p)


@command("recognize", "recognise the faces of photos, videos, streams (rtsp/http) or webcam:N against a gallery",
         _recognize_args)
def cmd_recognize(args: argparse.Namespace) -> int:
    from facefeat.io.video import is_video_source

    pipe = pipeline_of(args)
    index = load_index(args.index)
    hub = open_hub(args, people=set(index.labels().values()))  # None without --mqtt/--webhook
    try:
        if any(is_video_source(x) for x in args.inputs):
            return _recognize_video(args, pipe, index, hub)
        out, failures = Output.of(args), []
        for res in pipe.predict(inputs_of(args), index=index, rec_threshold=args.rec_threshold, rec_topk=args.topk,
                                fpir=args.fpir, per_person=args.per_person, failures=failures):
            drain(out, failures)
            out.record(res, recognition_line(res))
            if args.save_dir:
                res.save_to_json(args.save_dir)
                res.save_to_img(args.save_dir)
            if hub is not None:
                recognitions(hub, str(res["input_path"]), result_faces(res), res.get("_img"),
                             res.get("operating_point"), presence=False)
        drain(out, failures)
        return out.finish()
    finally:
        if hub is not None:
            hub.close()


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("img1")
    p.add_argument("img2", nargs="?", default=None, help="second image (or use --person with --index)")
    pipeline_args(p, inputs=False)
    p.add_argument("--person", default=None, help="verify img1 against this person of --index")
    p.add_argument("--index", default=None, help="index directory (for --person)")
    p.add_argument("--far", type=float, default=None, help="operating point: calibrated FAR (default 1e-3)")
    p.add_argument("--threshold", type=float, default=None, help="a fixed threshold instead")


@command("verify", "1:1 verification: are the faces of two photos the same person?", _verify_args)
def cmd_verify(args: argparse.Namespace) -> int:
    index = None
    if args.index:
        index = load_index(args.index)
    res = pipeline_of(args).verify(args.img1, args.img2, person=args.person, index=index,
                                 rec_threshold=args.threshold, far=args.far)
    Output.of(args).document(res, verify_line(res))
    return 0 if res["verified"] else 1  # 1: not the same person (2: an error, e.g. no face)


def _recognize_video(args: argparse.Namespace, pipe, index, hub=None) -> int:
    """JSON lines per frame and per finished track on stdout; achieved fps on stderr."""
    import time

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
    pipeline_args(p, inputs=False)
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
    from facefeat.pipeline.cluster import ClusterResult, update_clusters

    if args.out:
        if not args.inputs:
            raise InputError("cluster --out: give the images or directories to cluster")
        res = pipeline_of(args).cluster(args.inputs, args.threshold, args.min_samples, args.method, progress=True)
    else:
        res = ClusterResult.load(args.update)
        known_failures = len(res.failed)  # reported by earlier runs
        if args.inputs:
            changed = update_clusters(pipeline_of(args), res, args.inputs, progress=True)
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


__all__ = ["cmd_cluster", "cmd_recognize", "cmd_verify"]
