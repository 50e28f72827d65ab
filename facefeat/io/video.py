"""Read frames from video files, streams (rtsp/http/...) and webcams with OpenCV's VideoCapture.

Sources: a file path, ``rtsp://`` / ``rtmp://`` / ``udp://`` / ``tcp://`` / ``http(s)://`` URLs,
``webcam:N`` (or an int N) for a local camera. Bad sources raise :class:`~facefeat.errors.InputError`
naming the source: a missing file, something OpenCV cannot open (not a video, unreachable stream,
no camera), or a source that opens but yields no frame.

Live sources (streams and cameras; ``live=True`` forces it for a file, which is then paced at its
own frame rate like a camera) are read by a background thread into a queue of at most
``queue_size`` frames; when the consumer is slower than the source the *oldest* frames are dropped
(counted in ``dropped``), so latency stays bounded and memory never grows. A live source that
stops delivering frames is reopened up to ``max_retries`` times (``retry_delay`` seconds apart,
growing); after that the iterator raises an InputError. Files are read in order, every frame.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from facefeat.errors import InputError

log = logging.getLogger("facefeat")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                    ".3gp", ".mjpeg", ".mjpg", ".y4m")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "srt://")
_WEBCAM = re.compile(r"^(?:webcam|camera|cam):(\d+)$", re.IGNORECASE)
OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 5000


def parse_source(source: Any) -> tuple[str | int, bool, str]:
    """``(what VideoCapture opens, is it live, a name for messages)``; checks that files exist."""
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return int(source), True, f"webcam:{int(source)}"
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"video source must be a path, a URL or 'webcam:N', got {type(source).__name__}")
    s = str(source)
    m = _WEBCAM.match(s.strip())
    if m:
        return int(m.group(1)), True, s
    if s.lower().startswith(STREAM_SCHEMES + ("http://", "https://")):
        return s, True, s
    path = Path(s)
    if not path.exists():
        raise InputError(f"{s}: no such video file")
    if not path.is_file():
        raise InputError(f"{s}: is not a file (a video source is a file, a stream URL or 'webcam:N')")
    return str(path), False, s


def is_video_source(source: Any) -> bool:
    """True for ``webcam:N``, stream URLs and paths / URLs with a video extension (not images)."""
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return True
    if not isinstance(source, (str, os.PathLike)):
        return False
    s = str(source).strip()
    if _WEBCAM.match(s) or s.lower().startswith(STREAM_SCHEMES):
        return True
    return Path(s.split("?")[0]).suffix.lower() in VIDEO_EXTENSIONS


class VideoReader:
    """Iterate ``(frame_index, time_s, frame_bgr)`` over a video source (see the module doc).

    ``frame_index`` counts every frame the source delivered (dropped ones included); ``time_s`` is
    the frame's position (``index / fps``) for files and wall-clock seconds since opening for
    live sources. ``read``/``dropped``/``reconnects`` count what happened.
    """

    def __init__(self, source: Any, live: bool | None = None, queue_size: int = 2, max_retries: int = 3,
                 retry_delay: float = 1.0, open_timeout_ms: int = OPEN_TIMEOUT_MS):
        self.target, auto_live, self.name = parse_source(source)
        self.is_file = isinstance(self.target, str) and not auto_live
        self.live = auto_live if live is None else bool(live)
        if int(queue_size) < 1:
            raise InputError(f"queue_size must be >= 1, got {queue_size!r}")
        if int(max_retries) < 0:
            raise InputError(f"max_retries must be >= 0, got {max_retries!r}")
        self.queue_size, self.max_retries, self.retry_delay = int(queue_size), int(max_retries), float(retry_delay)
        self.open_timeout_ms = int(open_timeout_ms)
        self.read = self.dropped = self.reconnects = 0
        self._cap = self._open()
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise InputError(f"{self.name}: opened but yields no frames (not a video, or empty)")
        self._first: np.ndarray | None = first
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.5 <= fps <= 1000 else 25.0
        self.frame_size = (int(first.shape[1]), int(first.shape[0]))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()

    def __repr__(self) -> str:
        return f"VideoReader({self.name!r}, live={self.live}, fps={self.fps:.1f}, size={self.frame_size})"

    def _open(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.open_timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        try:
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY, params)
        except cv2.error as exc:
            raise InputError(f"{self.name}: OpenCV cannot open this video source ({exc})") from exc
        if not cap.isOpened():
            cap.release()
            what = ("not a video OpenCV can decode" if self.is_file else
                    "camera not available" if isinstance(self.target, int) else "stream unreachable")
            raise InputError(f"{self.name}: cannot open video source ({what})")
        return cap

    # -- iteration
    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        return self._iter_live() if self.live else self._iter_file()

    def _iter_file(self) -> Iterator[tuple[int, float, np.ndarray]]:
        i = 0
        frame = self._take_first()
        while frame is not None:
            self.read += 1
            yield i, i / self.fps, frame
            i += 1
            ok, frame = self._cap.read()
            if not ok:
                frame = None

    def _take_first(self) -> np.ndarray | None:
        f, self._first = self._first, None
        return f

    def _iter_live(self) -> Iterator[tuple[int, float, np.ndarray]]:
        q: queue.Queue = queue.Queue(maxsize=self.queue_size)
        self._thread = threading.Thread(target=self._pump, args=(q,), name=f"facefeat-video-{self.name}", daemon=True)
        self._thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()

    def _put(self, q: queue.Queue, item: Any) -> None:
        """Put, dropping the oldest queued frame when the consumer lags (never blocks, never grows)."""
        while not self._stop.is_set():
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = q.get_nowait()
                    if isinstance(old, tuple):
                        self.dropped += 1
                except queue.Empty:
                    pass

    def _pump(self, q: queue.Queue) -> None:
        i, frame, pace = 0, self._take_first(), 1.0 / self.fps if self.is_file else 0.0
        t_next = time.monotonic()
        try:
            while not self._stop.is_set():
                if frame is None:
                    if self.is_file:  # a file played live simply ends
                        break
                    frame = self._reconnect()
                    if frame is None:
                        if not self._stop.is_set():
                            self._put(q, InputError(f"{self.name}: stream dropped and did not come back after "
                                                    f"{self.max_retries} retries ({i} frames read)"))
                        return
                self.read += 1
                self._put(q, (i, time.monotonic() - self._t0, frame))
                i += 1
                if pace:  # a file played as a live source: deliver at its own frame rate
                    t_next += pace
                    time.sleep(max(0.0, t_next - time.monotonic()))
                ok, frame = self._cap.read()
                if not ok:
                    frame = None
        except Exception as exc:  # pragma: no cover - OpenCV failures inside the thread
            self._put(q, InputError(f"{self.name}: reading failed ({exc})"))
            return
        self._put(q, None)

    def _reconnect(self) -> np.ndarray | None:
        for attempt in range(1, self.max_retries + 1):
            log.warning("%s: stream dropped; reconnecting (%d/%d)", self.name, attempt, self.max_retries)
            self._cap.release()
            if self._stop.wait(self.retry_delay * attempt):
                return None
            try:
                self._cap = self._open()
            except InputError:
                continue
            ok, frame = self._cap.read()
            if ok and frame is not None:
                self.reconnects += 1
                return frame
        return None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class VideoWriter:
    """An annotated video written beside its target and renamed into place on ``close(ok=True)``."""

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in (".mp4", ".avi", ".mkv", ".mov"):
            raise InputError(f"{path}: annotated video must be .mp4, .avi, .mkv or .mov")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.part{ext}")
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if ext in (".mp4", ".mov") else "MJPG"))
        self._w = cv2.VideoWriter(str(self._tmp), fourcc, float(fps), tuple(int(v) for v in size))
        if not self._w.isOpened():
            raise InputError(f"{path}: OpenCV cannot write a video here (codec or permissions)")

    def write(self, frame: np.ndarray) -> None:
        self._w.write(frame)

    def close(self, ok: bool = True) -> None:
        self._w.release()
        if ok:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


__all__ = ["VIDEO_EXTENSIONS", "VideoReader", "VideoWriter", "is_video_source", "parse_source"]
