"""What recognisers hand the hub: :class:`VideoFeed` turns a video's frame and track records
(:func:`facefeat.pipeline.video.predict_video`) into debounced events; :func:`recognitions` does
it for single images (the service's infer endpoint, ``recognize`` on photos); :func:`gallery_changes`
for people added to or removed from a gallery."""

from __future__ import annotations

import time
from typing import Any, Iterable

import numpy as np

from facefeat.events.presence import TrackDebouncer, snapshot
from facefeat.events.types import Event


class VideoFeed:
    """Events of one video source. Presence uses the source's clock (the frame's ``time``), so a
    file processed faster than real time behaves as if watched."""

    def __init__(self, hub: Any, source: str, threshold: float | None = None, operating_point: dict | None = None):
        self.hub, self.source = hub, str(source)
        self.threshold = None if threshold is None else round(float(threshold), 6)
        self.op = operating_point
        self.tracks = TrackDebouncer()
        self.t = 0.0
        hub.announce(sources=[self.source])

    def frame(self, record: dict, image: np.ndarray | None = None) -> None:
        """One ``{"event": "frame", ...}`` record (and its image, for snapshots)."""
        t = float(record.get("time") or 0.0)
        self.t = t
        out: list[Event] = []
        for f in record.get("faces") or []:
            person = f.get("label")
            if not person:
                continue
            if self.tracks.first(f.get("track_id"), person):
                out.append(Event("face_recognized", self.source, {
                    "person": person, "score": f.get("score"), "confidence": f.get("confidence"),
                    "threshold": self.threshold, "operating_point": self.op, "box": f.get("box"),
                    "track_id": f.get("track_id"), "frame": record.get("frame"), "video_time": t,
                    "snapshot": snapshot(image, f.get("box"), self.hub.cfg.snapshot)}))
            out += self.hub.presence.seen(self.source, person, t, score=f.get("score"), video_time=t)
        out += self.hub.presence.tick(self.source, t)
        self.hub.emit(*out)

    def track(self, record: dict, image: np.ndarray | None = None) -> None:
        """One ``{"event": "track", ...}`` record: an unrecognised track gives ``face_unknown``."""
        tid = record.get("track_id")
        if not record.get("label") and not self.tracks.announced(tid) and self.hub.cfg.unknown:
            self.hub.emit(Event("face_unknown", self.source, {
                "track_id": tid, "score": record.get("score"), "threshold": self.threshold,
                "detections": record.get("detections"), "video_time": record.get("end"),
                "start": record.get("start"), "end": record.get("end")}))
        self.tracks.forget(tid)

    def end(self) -> None:
        """The source stopped: everyone there leaves."""
        self.hub.emit(*self.hub.presence.end(self.source))


def recognitions(hub: Any, source: str, faces: Iterable[dict], image: np.ndarray | None = None,
                 operating_point: dict | None = None, presence: bool = True, **extra: Any) -> None:
    """Events for the faces of one image: each ``{"box", "label" or None, "score"}`` gives a
    ``face_recognized`` (or ``face_unknown``); with ``presence``, arrivals on the wall clock (the
    hub's ticker sends the departures)."""
    now = time.time()
    op = operating_point or {}
    out: list[Event] = []
    for f in faces:
        person, box = f.get("label"), f.get("box")
        if person is None and not hub.cfg.unknown:
            continue
        data = {"person": person, "score": f.get("score"), "threshold": op.get("threshold"),
                "operating_point": op or None, "box": box,
                "snapshot": snapshot(image, box, hub.cfg.snapshot), **extra}
        out.append(Event("face_recognized" if person else "face_unknown", source, data))
        if person and presence:
            out += hub.presence.seen(source, person, now, score=f.get("score"))
    hub.emit(*out)


def result_faces(res: Any) -> list[dict]:
    """The faces of a :class:`~facefeat.pipeline.result.FaceRecResult` (or the service's infer
    answer, ``bbox``/``recResults``) as ``{"box", "label", "score"}`` (too-small faces left out)."""
    out = []
    for b in (res.get("boxes") if hasattr(res, "get") and "boxes" in res else res.get("faces")) or []:
        if b.get("too_small"):
            continue
        if "recResults" in b:
            top = (b.get("recResults") or [None])[0]
            out.append({"box": b.get("bbox"), "label": top and top["label"], "score": top and top["score"]})
        else:
            labels, scores = b.get("labels"), b.get("rec_scores")
            out.append({"box": [round(float(v), 1) for v in b.get("coordinate") or []] or None,
                        "label": labels[0] if labels else None,
                        "score": scores[0] if scores else None})
    return out


def gallery_changes(hub: Any, gallery: str, before: Iterable[str], after: Iterable[str]) -> None:
    """``person_added`` / ``person_removed`` for the labels that appeared in / left ``gallery``."""
    b, a = set(before), set(after)
    hub.emit(*([Event("person_added", "gallery", {"person": p, "gallery": gallery}) for p in sorted(a - b)]
               + [Event("person_removed", "gallery", {"person": p, "gallery": gallery}) for p in sorted(b - a)]))


__all__ = ["VideoFeed", "gallery_changes", "recognitions", "result_faces"]
