"""The stages both engines run: decode (CPU) and detect + align + embed (one pipeline per worker).

Batches are ``pyarrow.Table``\\ s. A planned input batch has ``index`` (its place in the sorted
input list), ``shard``, ``path`` and ``label``; :func:`decode_batch` adds the decoded pixels (or
the read error); :class:`FaceEmbedder` turns that into output rows (:func:`output_schema`):

* one row per detected face (``status="ok"``, or ``"too_small"`` with a null ``feature`` for a
  face below ``min_face_size``), faces largest first (``face_index`` 0, 1, ...);
* one row per image without a face (``status="no_face"``) and one per image that failed to read
  or process (``status="error"``, ``error`` says why) - nothing is dropped silently.

``num_faces`` (on every row: the image's face count, 0 for no-face and failed images) tells a
reader how many rows an image has, which is how the driver knows a shard is complete.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from facefeat.errors import FacefeatError, require

PLAN_COLUMNS = ("index", "shard", "path", "label")
STATUS_OK, STATUS_SMALL, STATUS_NO_FACE, STATUS_ERROR = "ok", "too_small", "no_face", "error"


def _pa():
    return require("pyarrow", "distributed", "embed_dataset's Parquet output")


def plan_schema():
    pa = _pa()
    return pa.schema([("index", pa.int64()), ("shard", pa.int64()), ("path", pa.string()), ("label", pa.string())])


#: the per-face quality figures (facefeat.vision.quality.face_quality), one struct column
QUALITY_FIELDS = ("face_size", "det_score", "sharpness", "brightness", "contrast", "yaw", "roll")


def output_schema(dim: int):
    """Arrow schema of the output rows (``feature``: fixed-size float32 list of the model's dim)."""
    pa = _pa()
    return pa.schema([
        ("path", pa.string()),
        ("index", pa.int64()),
        ("face_index", pa.int32()),
        ("num_faces", pa.int32()),
        ("status", pa.string()),
        ("box", pa.list_(pa.float32(), 4)),
        ("landmarks", pa.list_(pa.float32(), 10)),
        ("det_score", pa.float32()),
        ("quality", pa.struct([(k, pa.float32()) for k in QUALITY_FIELDS])),
        ("feature", pa.list_(pa.float32(), int(dim))),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("label", pa.string()),
        ("error", pa.string()),
        ("model", pa.string()),
        ("model_hash", pa.string()),
    ])


def decode_batch(batch) -> Any:
    """Read and decode every image of a plan batch: adds ``pixels`` (BGR bytes), ``height``,
    ``width`` and ``error`` (the reader's message when the image cannot be read)."""
    from facefeat.io import read_image

    pa = _pa()
    pixels, heights, widths, errors = [], [], [], []
    for path in batch.column("path").to_pylist():
        try:
            img = read_image(path, path)
            pixels.append(img.tobytes())
            heights.append(img.shape[0])
            widths.append(img.shape[1])
            errors.append(None)
        except (FacefeatError, OSError) as exc:
            pixels.append(None)
            heights.append(None)
            widths.append(None)
            errors.append(str(exc))
    cols = {c: batch.column(c) for c in PLAN_COLUMNS}
    return pa.table({**cols, "pixels": pa.array(pixels, pa.binary()), "height": pa.array(heights, pa.int32()),
                     "width": pa.array(widths, pa.int32()), "error": pa.array(errors, pa.string())})


class FaceEmbedder:
    """Holds one face-recognition pipeline (models loaded once) and embeds decoded batches.

    ``settings`` are :func:`facefeat.distributed.embed.pipeline_settings`; ``num_threads`` caps
    ONNX Runtime's and OpenCV's threads in this worker (one worker per ``num_cpus`` slot).
    """

    def __init__(self, settings: dict, model_hash: str, dim: int, device: str = "cpu",
                 num_threads: int | None = None, batch_size: int = 32):
        import cv2

        from facefeat.pipeline.face_recognition import FaceRecognitionPipeline
        from facefeat.predict.predictor import create_model

        threads = num_threads or int(os.environ.get("FACEFEAT_NUM_THREADS", 0)) or None
        if threads:
            cv2.setNumThreads(int(threads))
        predictor = create_model(settings["model"], settings.get("weights"), model_dir=settings.get("model_dir"),
                                 backend=settings["backend"], precision=settings["precision"], device=device,
                                 batch_size=batch_size, num_threads=threads)
        self.pipe = FaceRecognitionPipeline(
            predictor=predictor, det_threshold=settings["det_threshold"], nms_threshold=settings["nms_threshold"],
            min_face_size=settings["min_face_size"], align=settings["align"], flip=settings["flip"],
            landmarks=settings.get("landmarks", "plain"))
        self.model = predictor.model_name
        self.model_hash = model_hash
        self.schema = output_schema(dim)

    def _faces(self, img: np.ndarray) -> tuple[list, list]:
        dets = self.pipe.detect(img)
        return dets, [None if d.too_small else self.pipe.align(img, d) for d in dets]

    def __call__(self, batch) -> Any:
        from facefeat.vision.quality import face_quality

        rows: list[dict] = []
        todo: list[tuple[int, np.ndarray]] = []  # (row number, aligned face) to embed in one go
        cols = batch.to_pydict()
        for i, path in enumerate(cols["path"]):
            base = {"path": path, "index": cols["index"][i], "label": cols["label"][i],
                    "width": cols["width"][i], "height": cols["height"][i]}
            err = cols["error"][i]
            if err is None:
                try:
                    h, w = cols["height"][i], cols["width"][i]
                    img = np.frombuffer(cols["pixels"][i], np.uint8).reshape(h, w, 3)
                    dets, faces = self._faces(img)
                except (FacefeatError, ValueError, ArithmeticError) as exc:
                    err = f"{path}: cannot detect/align faces ({exc})"
                except Exception as exc:  # e.g. cv2.error on an odd image: a row, not a dead job
                    err = f"{path}: cannot detect/align faces ({type(exc).__name__}: {exc})"
            if err is not None:
                rows.append({**base, "num_faces": 0, "status": STATUS_ERROR, "error": err})
                continue
            if not dets:
                rows.append({**base, "num_faces": 0, "status": STATUS_NO_FACE})
                continue
            for k, (d, face) in enumerate(zip(dets, faces)):
                rows.append({**base, "face_index": k, "num_faces": len(dets),
                             "status": STATUS_SMALL if face is None else STATUS_OK,
                             "box": [float(v) for v in d.box], "landmarks": [float(v) for v in d.landmarks.ravel()],
                             "det_score": float(d.score)})
                if face is not None:
                    rows[-1]["quality"] = face_quality(face, d)
                    todo.append((len(rows) - 1, face))
        if todo:
            feats = self.pipe.predictor.embed([f for _, f in todo], self.pipe.flip)
            for (r, _), feat in zip(todo, feats):
                rows[r]["feature"] = feat
        return self.to_table(rows)

    def to_table(self, rows: list[dict]):
        pa = _pa()
        cols: dict[str, list] = {name: [] for name in self.schema.names}
        for r in rows:
            for name in ("path", "index", "face_index", "num_faces", "status", "box", "landmarks", "det_score",
                         "width", "height", "label", "error"):
                cols[name].append(r.get(name))
            cols["quality"].append(r.get("quality"))
            cols["feature"].append(r.get("feature"))
            cols["model"].append(self.model)
            cols["model_hash"].append(self.model_hash)
        arrays = []
        for field in self.schema:
            if field.name == "feature":
                arrays.append(_feature_array(cols["feature"], field.type))
            else:
                arrays.append(pa.array(cols[field.name], field.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _feature_array(feats: list, typ) -> Any:
    """Fixed-size float32 list column from rows of ``np.ndarray | None`` (no per-float Python)."""
    pa = _pa()
    dim = typ.list_size
    mask = np.array([f is None for f in feats], bool)
    flat = np.zeros((len(feats), dim), np.float32)
    for i, f in enumerate(feats):
        if f is not None:
            flat[i] = f
    values = pa.array(flat.ravel(), pa.float32())
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(mask) if mask.any() else None)
