"""Presence per person and source (arrived on first sight, left after ``away_s`` unseen), the
per-track debouncer (one ``face_recognized`` per person per track, not one per frame), and the
optional JPEG snapshot of a face or frame."""

from __future__ import annotations

import base64
import threading
from typing import Any, Sequence

import numpy as np

from facefeat.events.types import Event

SNAPSHOT_MAX_SIDE = 640
SNAPSHOT_QUALITY = 80


class Presence:
    """Who is where. Times are the source's own clock (a video's position, or wall-clock seconds),
    compared only with times of the same source. Thread-safe."""

    def __init__(self, away_s: float):
        self.away_s = float(away_s)
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _state(self, person: str, source: str) -> dict:
        return {"person": person, "present_in": sorted(s for s, p in self._last if p == person),
                "source_people": sorted(p for s, p in self._last if s == source)}

    def seen(self, source: str, person: str, t: float, **data: Any) -> list[Event]:
        """``person`` seen at ``source`` at time ``t``: a ``person_arrived`` when they were not there."""
        with self._lock:
            new = (source, person) not in self._last
            self._last[(source, person)] = max(t, self._last.get((source, person), t))
            if not new:
                return []
            return [Event("person_arrived", source, {**self._state(person, source), **data})]

    def tick(self, source: str | None, t: float) -> list[Event]:
        """``person_left`` for everyone unseen at ``source`` (None: every source) for over ``away_s``."""
        with self._lock:
            gone = [k for k, last in self._last.items() if (source is None or k[0] == source)
                    and t - last > self.away_s]
            return self._leave(gone, "away")

    def end(self, source: str) -> list[Event]:
        """The source stopped: everyone there leaves."""
        with self._lock:
            return self._leave([k for k in self._last if k[0] == source], "source ended")

    def _leave(self, keys: list, why: str) -> list[Event]:
        out = []
        for source, person in sorted(keys, key=lambda k: self._last[k]):
            last = self._last.pop((source, person))
            out.append(Event("person_left", source, {**self._state(person, source), "last_seen": round(last, 3),
                                                      "reason": why}))
        return out

    def present(self, source: str | None = None) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(k for k in self._last if source is None or k[0] == source)


class TrackDebouncer:
    """Remembers which (track, person) pairs were announced; forgets a track when it ends."""

    def __init__(self) -> None:
        self._sent: dict[Any, set] = {}

    def first(self, track_id: Any, person: str) -> bool:
        """True the first time ``person`` is seen on ``track_id``."""
        seen = self._sent.setdefault(track_id, set())
        if person in seen:
            return False
        seen.add(person)
        return True

    def announced(self, track_id: Any) -> bool:
        return bool(self._sent.get(track_id))

    def forget(self, track_id: Any) -> None:
        self._sent.pop(track_id, None)


def snapshot(image: np.ndarray | None, box: Sequence[float] | None, mode: str) -> str | None:
    """A base64 JPEG of the face (``mode="face"``: its box with a margin) or the whole frame
    (``"frame"``), at most :data:`SNAPSHOT_MAX_SIDE` pixels a side; None when off or impossible."""
    if mode == "off" or image is None:
        return None
    import cv2

    img = image
    if mode == "face" and box is not None:
        h, w = image.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        mx, my = 0.25 * (x2 - x1), 0.25 * (y2 - y1)
        xa, ya, xb, yb = int(max(0, x1 - mx)), int(max(0, y1 - my)), int(min(w, x2 + mx)), int(min(h, y2 + my))
        if xb <= xa or yb <= ya:
            return None
        img = image[ya:yb, xa:xb]
    s = SNAPSHOT_MAX_SIDE / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))),
                         interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])
    return base64.b64encode(buf.tobytes()).decode("ascii") if ok else None


__all__ = ["Presence", "TrackDebouncer", "snapshot"]
