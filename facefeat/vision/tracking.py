"""Track faces between detections: an IoU tracker with constant-velocity prediction, and a
per-track identity vote.

Each detection round, live tracks' boxes are predicted forward (last box + velocity x frames
since) and matched to the new detections with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``)
on IoU; a pair matches when its IoU reaches ``iou_threshold`` or, for faces moving fast between
detection rounds, when the centres are within ``max_center_shift`` face sizes. Unmatched
detections start tracks; a track missing for more than ``max_missed`` detection rounds ends.
Between rounds (detection every N frames) boxes are the predictions.

Identity: a track keeps its ``max_samples`` best-quality embedded frames (quality: detection score
x face size, see :func:`face_quality`), each with its top-1 gallery label and similarity (label
``None`` when below the recognition threshold). The track's identity is the label most of them vote
for (ties: higher mean similarity); ``confidence`` is the share of the samples voting for it and
``score`` their mean similarity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from facefeat.errors import InputError


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``[N, 4]`` and ``[M, 4]`` (``xmin, ymin, xmax, ymax``)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: np.clip(z[:, 2] - z[:, 0], 0, None) * np.clip(z[:, 3] - z[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def face_quality(det_score: float, box: Sequence[float], ref_size: float = 112.0) -> float:
    """A detection's usefulness for recognition: its score, scaled down for faces below ``ref_size`` px."""
    side = min(float(box[2]) - float(box[0]), float(box[3]) - float(box[1]))
    return float(det_score) * min(1.0, max(side, 0.0) / ref_size)


@dataclass(eq=False)
class Track:
    """One face followed over frames."""

    id: int
    box: np.ndarray
    first_frame: int
    last_frame: int
    det_score: float = 0.0
    landmarks: np.ndarray | None = None
    hits: int = 1
    missed: int = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    samples: list[tuple[float, str | None, float]] = field(default_factory=list)  # (quality, label, score)
    first_time: float = 0.0
    last_time: float = 0.0

    def predict(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * max(0, frame - self.last_frame)

    def wants_sample(self, quality: float, max_samples: int) -> bool:
        """True while the track has fewer than ``max_samples`` samples or this frame beats its worst."""
        return len(self.samples) < max_samples or quality > min(s[0] for s in self.samples)

    def add_sample(self, quality: float, label: str | None, score: float, max_samples: int) -> None:
        self.samples.append((float(quality), label, float(score)))
        self.samples.sort(key=lambda s: -s[0])
        del self.samples[max_samples:]

    def identity(self) -> dict[str, Any]:
        """``{"label", "score", "confidence", "votes"}`` from the samples (label None: unknown)."""
        if not self.samples:
            return {"label": None, "score": None, "confidence": 0.0, "votes": {}}
        tally: dict[str | None, list[float]] = {}
        for _, label, score in self.samples:
            tally.setdefault(label, []).append(score)
        label = max(tally, key=lambda k: (len(tally[k]), float(np.mean(tally[k]))))
        return {"label": label, "score": round(float(np.mean(tally[label])), 4),
                "confidence": round(len(tally[label]) / len(self.samples), 4),
                "votes": {("unknown" if k is None else k): len(v) for k, v in tally.items()}}


class IoUTracker:
    """Associate detections across frames by IoU (see the module doc)."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 2, max_center_shift: float = 0.75):
        if not 0.0 < float(iou_threshold) <= 1.0:
            raise InputError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
        if int(max_missed) < 0:
            raise InputError(f"max_missed must be >= 0, got {max_missed!r}")
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.max_center_shift = float(max_center_shift)
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: Sequence[Sequence[float]], scores: Sequence[float], frame: int, time_s: float = 0.0,
               landmarks: Sequence[Any] | None = None) -> tuple[list[tuple[Track, int]], list[Track]]:
        """Feed one detection round. Returns ``([(track, detection index)...], finished tracks)``."""
        from scipy.optimize import linear_sum_assignment

        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        pairs: list[tuple[Track, int]] = []
        if self.tracks and len(boxes):
            pred = np.stack([t.predict(frame) for t in self.tracks])
            iou = iou_matrix(pred, boxes)
            # second criterion for fast faces: centre distance in units of the predicted box's size
            size = np.maximum(np.minimum(pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]), 1.0)
            cp, cb = (pred[:, :2] + pred[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2
            near = np.linalg.norm(cp[:, None] - cb[None], axis=2) / size[:, None]
            ok = (iou >= self.iou_threshold) | (near <= self.max_center_shift)
            rows, cols = linear_sum_assignment(np.where(ok, -iou + 0.01 * near, 1e6))
            for r, c in zip(rows, cols):
                if ok[r, c]:
                    t = self.tracks[r]
                    dt = max(1, frame - t.last_frame)
                    t.velocity = 0.5 * t.velocity + 0.5 * (boxes[c] - t.box) / dt  # smoothed
                    t.box, t.last_frame, t.last_time = boxes[c], frame, time_s
                    t.hits, t.missed = t.hits + 1, 0
                    pairs.append((t, int(c)))
        matched = {id(t) for t, _ in pairs}
        finished = []
        for t in self.tracks:
            if id(t) not in matched:
                t.missed += 1
                if t.missed > self.max_missed:
                    finished.append(t)
        self.tracks = [t for t in self.tracks if t not in finished]
        taken = {c for _, c in pairs}
        for c in range(len(boxes)):
            if c not in taken:
                t = Track(self._next_id, boxes[c], frame, frame, first_time=time_s, last_time=time_s)
                self._next_id += 1
                self.tracks.append(t)
                pairs.append((t, c))
        for t, c in pairs:
            t.det_score = float(scores[c])
            if landmarks is not None:
                t.landmarks = np.asarray(landmarks[c], np.float64)
        return pairs, finished

    def active(self, frame: int) -> list[tuple[Track, np.ndarray]]:
        """Live tracks with their box at ``frame`` (the detection, or its prediction)."""
        return [(t, t.predict(frame)) for t in self.tracks if t.missed == 0]

    def flush(self) -> list[Track]:
        """End every track (the source is over)."""
        done, self.tracks = self.tracks, []
        return done


__all__ = ["IoUTracker", "Track", "face_quality", "iou_matrix"]
