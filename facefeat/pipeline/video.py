"""Recognise faces in videos, streams and webcams: detect every N frames, track in between, one
identity per track.

``predict_video(pipe, source, index=...)`` yields JSON-ready events:

* ``{"event": "frame", "frame", "time", "faces": [{"track_id", "box", "label", "score", "confidence"}]}``
  for every processed frame (``label`` None: unknown; the track's identity so far);
* ``{"event": "track", "track_id", "label", "score", "confidence", "votes", "first_frame",
  "last_frame", "start", "end", "detections"}`` when a track ends (and for all at the end);
* one last ``{"event": "summary", "source", "frames_read", "frames_processed", "frames_dropped",
  "reconnects", "seconds", "fps", "tracks"}``.

Reading (and dropping frames of live sources to keep latency bounded) is
:class:`facefeat.io.video.VideoReader`; tracking and the vote are
:mod:`facefeat.vision.tracking`; detection, alignment and embedding are the pipeline's own.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Iterator

import numpy as np

from facefeat.errors import InputError
from facefeat.events.feeds import VideoFeed
from facefeat.index.corrections import veto_search
from facefeat.index.resolve import resolve_index
from facefeat.io.video import VideoReader, VideoWriter, parse_source
from facefeat.thresholds import is_match
from facefeat.vision.draw import draw_faces
from facefeat.vision.tracking import IoUTracker, face_quality


def _box(b: np.ndarray) -> list[float]:
    return [round(float(v), 1) for v in b]


def _track_event(t) -> dict:
    ident = t.identity()
    return {"event": "track", "track_id": t.id, "label": ident["label"], "score": ident["score"],
            "confidence": ident["confidence"], "votes": ident["votes"], "first_frame": t.first_frame,
            "last_frame": t.last_frame, "start": round(t.first_time, 3), "end": round(t.last_time, 3),
            "detections": t.hits}


def predict_video(pipe, source: Any, index: Any = None, every_n: int = 1, rec_threshold: float | None = None,
                  det_threshold: float | None = None, save_path: str | os.PathLike | None = None,
                  live: bool | None = None, max_retries: int = 3, retry_delay: float = 1.0,
                  iou_threshold: float = 0.3, max_missed: int | None = None, max_samples: int = 5,
                  queue_size: int = 2, max_frames: int | None = None, events: Any = None) -> Iterator[dict]:
    """Yield frame, track and summary events for ``source`` (see the module doc).

    Args:
        every_n: run the detector on every N-th processed frame; boxes in between are predicted.
        max_missed: detection rounds a track may go unmatched before it ends
            (default ``ceil(6 / every_n)``, about six frames).
        max_samples: best-quality frames embedded and kept per track for its identity vote.
        save_path: also write the annotated video here (.mp4/.avi/.mkv/.mov).
        live / max_retries / retry_delay / queue_size: see :class:`facefeat.io.video.VideoReader`.
        max_frames: stop after this many processed frames (live sources run until stopped).
        events: a :class:`facefeat.events.EventHub`; recognitions, unknown faces and presence go to it.
    """
    if isinstance(every_n, bool) or not isinstance(every_n, (int, np.integer)) or every_n < 1:
        raise InputError(f"every_n must be an integer >= 1, got {every_n!r}")
    if int(max_samples) < 1:
        raise InputError(f"max_samples must be >= 1, got {max_samples!r}")
    parse_source(source)  # a missing file fails here, at the call; a bad video at the first frame
    index = pipe.index if index is None else resolve_index(index)  # a directory, as predict takes
    if index is not None:
        index.check_model(pipe.predictor.model_name, pipe.predictor.embedding_size)
    return _events(pipe, source, index, every_n, rec_threshold, det_threshold, save_path, live, max_retries,
                   retry_delay, iou_threshold, max_missed, max_samples, queue_size, max_frames, events)


def _events(pipe, source, index, every_n, rec_threshold, det_threshold, save_path, live, max_retries, retry_delay,
            iou_threshold, max_missed, max_samples, queue_size, max_frames, hub=None) -> Iterator[dict]:
    thr, op = pipe.operating_point("identify", rec_threshold, index=index)  # calibrated unless given
    tracker = IoUTracker(iou_threshold, math.ceil(6 / every_n) if max_missed is None else max_missed)
    reader = VideoReader(source, live=live, queue_size=queue_size, max_retries=max_retries, retry_delay=retry_delay)
    writer = VideoWriter(save_path, reader.fps, reader.frame_size) if save_path is not None else None
    feed = None
    if hub is not None:
        feed = VideoFeed(hub, reader.name, thr, op)
    ok = False
    n_proc, t0 = 0, time.perf_counter()
    n_tracks = 0
    try:
        for frame_idx, t, frame in reader:
            finished = []
            if n_proc % every_n == 0:
                dets = pipe.detect(frame, det_threshold)
                pairs, finished = tracker.update([d.box for d in dets], [d.score for d in dets], frame_idx, t,
                                                 [d.landmarks for d in dets])
                todo = []
                for track, c in pairs:
                    d = dets[c]
                    q = face_quality(d.score, d.box)
                    if not d.too_small and track.wants_sample(q, max_samples):
                        todo.append((track, q, pipe.align(frame, d)))
                if todo:
                    feats = pipe.predictor.embed([f for _, _, f in todo], pipe.flip)
                    # "not X" corrections apply here too
                    hits = veto_search(index, index.search, feats, 1) if index is not None and len(index) \
                        else [[] for _ in todo]
                    for (track, q, _), h in zip(todo, hits):
                        best = h[0] if h else None
                        known = best is not None and bool(is_match(best.score, thr, index.metric_type))
                        track.add_sample(q, best.label if known else None,
                                         float(best.score) if best is not None else 0.0, max_samples)
            n_proc += 1
            faces = []
            for track, box in tracker.active(frame_idx):
                ident = track.identity()
                faces.append({"track_id": track.id, "box": _box(box), "label": ident["label"],
                              "score": ident["score"], "confidence": ident["confidence"]})
            record = {"event": "frame", "frame": frame_idx, "time": round(t, 3), "faces": faces}
            if feed is not None:
                feed.frame(record, frame)
                for track in finished:
                    feed.track(_track_event(track))
            yield record
            for track in finished:
                n_tracks += 1
                yield _track_event(track)
            if writer is not None:
                writer.write(draw_faces(frame, [
                    {"coordinate": f["box"], "score": f["score"],
                     "label": f"#{f['track_id']} {f['label']}" if f["label"] else None} for f in faces]))
            if max_frames is not None and n_proc >= max_frames:
                break
        for track in tracker.flush():
            n_tracks += 1
            if feed is not None:
                feed.track(_track_event(track))
            yield _track_event(track)
        ok = True
        secs = time.perf_counter() - t0
        yield {"event": "summary", "source": reader.name, "frames_read": reader.read, "frames_processed": n_proc,
               "frames_dropped": reader.dropped, "reconnects": reader.reconnects, "seconds": round(secs, 3),
               "fps": round(n_proc / secs, 2) if secs > 0 else None, "tracks": n_tracks}
    except (GeneratorExit, KeyboardInterrupt):
        ok = True  # the consumer stopped (live sources run until stopped): keep the annotated video
        raise
    finally:
        if feed is not None:
            feed.end()
        reader.close()
        if writer is not None:
            writer.close(ok=ok)


__all__ = ["predict_video"]
