"""Galleries from images: embed gallery images one face each, and build, append to or remove from
a gallery index (PaddleX's ``build_index`` / ``append_index`` / ``remove_index``).

Gallery rule (build/append): an image with no detected face is rejected; an image with several
faces uses its subject (:mod:`facefeat.vision.choice`) when its box area is at least
``GALLERY_DOMINANCE`` times the largest other one (a portrait with faces in the background:
:func:`facefeat.vision.choice.is_dominant`), and is rejected as ambiguous otherwise.
Rejections are logged and returned with the features (:class:`GalleryFeatures`'s ``rejected``,
one :class:`GalleryRejection` each, with the image's position in the input), never silently
dropped; ``strict=True`` turns them into an error. ``pipeline.last_rejected`` is a per-thread copy
of the calling thread's last call's rejections (threads never see each other's).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Optional

import numpy as np

from facefeat.errors import InputError
from facefeat.index import create_index
from facefeat.index.gallery import load_gallery
from facefeat.index.labels import normalize_label
from facefeat.index.resolve import resolve_index
from facefeat.io import read_image
from facefeat.io.image import iter_batches
from facefeat.pipeline.enrol import add_gallery, sample_record, weights_hash
from facefeat.vision.choice import is_dominant
from facefeat.vision.quality import face_quality, get_policy

log = logging.getLogger("facefeat")


@dataclass(frozen=True)
class GalleryRejection:
    """A gallery image that was not added: its position in the input (``index``), its name (path,
    or ``gallery[i]`` for in-memory images), its label, and why."""

    index: int
    name: str
    label: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


class GalleryFeatures(NamedTuple):
    """What :meth:`FaceRecognitionPipeline.gallery_features` returns: one row of ``features`` per
    accepted image with its label, name and input position, and the rejected images."""

    features: np.ndarray
    labels: list[str]
    names: list[str]
    positions: list[int]
    rejected: list[GalleryRejection]
    #: with ``quality=``: each accepted image's quality figures and aligned 112x112 face
    figures: Optional[list[dict]] = None
    faces: Optional[list[np.ndarray]] = None
    #: what the gallery keeps of each accepted image (crop, detection, content hash, figures):
    #: :class:`facefeat.index.store.SampleRecord`, one per row of ``features``
    records: Optional[list] = None


class GalleryIndexing:
    """Gallery images -> features -> index (a mixin of
    :class:`~facefeat.pipeline.face_recognition.FaceRecognitionPipeline`, whose stages it uses)."""

    @property
    def last_rejected(self) -> list[GalleryRejection]:
        """Rejections of this thread's last gallery call (a copy; see :class:`GalleryFeatures`)."""
        return list(getattr(self._calls, "rejected", ()))

    @property
    def last_added_ids(self) -> list[int]:
        """Ids this thread's last :meth:`append_index` added (a copy)."""
        return list(getattr(self._calls, "added_ids", ()))

    def _gallery_items(self, gallery_imgs: Any, gallery_label: Any) -> list[tuple[Any, str, str]]:
        """``(source, label, name)`` for a root dir + label file, or parallel lists."""
        if isinstance(gallery_imgs, (list, tuple)):
            labels = list(gallery_label) if isinstance(gallery_label, (list, tuple)) else None
            if labels is None or len(labels) != len(gallery_imgs):
                raise InputError(
                    f"gallery_label must be a list as long as gallery_imgs ({len(gallery_imgs)} images), "
                    f"got {type(gallery_label).__name__}"
                    + (f" of length {len(labels)}" if labels is not None else ""))
            return [(img, str(lab), img if isinstance(img, str) else f"gallery[{i}]")
                    for i, (img, lab) in enumerate(zip(gallery_imgs, labels))]
        return [(str(p), str(lab), str(p)) for p, lab in load_gallery(gallery_imgs, gallery_label)]

    def gallery_features(self, gallery_imgs: Any, gallery_label: Any, strict: bool = False,
                         progress: bool = False, quality: Any = None) -> GalleryFeatures:
        """Embed a gallery (one face per image, see the module docstring for the rule).

        ``quality``: a policy (:func:`facefeat.vision.quality.get_policy`); images that fail it are
        rejected with the reason, and the result carries each accepted face's figures and aligned crop."""
        policy = None
        if quality is not None:
            policy = get_policy(quality)
        weights = weights_hash(self.predictor)
        figures: list[dict] = []
        crops: list[np.ndarray] = []
        records: list = []
        items = self._gallery_items(gallery_imgs, gallery_label)
        rejected: list[GalleryRejection] = []
        self._calls.rejected = rejected  # this thread's view, filled as the call goes

        def reject(pos: int, name: str, label: str, reason: str) -> None:
            if strict:
                raise InputError(f"gallery image {name}: {reason}")
            log.warning("gallery image %s skipped: %s", name, reason)
            rejected.append(GalleryRejection(pos, str(name), label, reason))

        feats, labels, names, positions = [], [], [], []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), desc="gallery", unit="img")
        for chunk in iter_batches(list(enumerate(items)), 16):
            faces, keep = [], []
            for pos, (src, label, name) in chunk:
                try:
                    label = normalize_label(label, f"gallery label of {name}")  # one form, everywhere
                    img = read_image(src, name)
                except InputError as exc:
                    reject(pos, name, label, str(exc))
                    continue
                dets, path = self.detect_retry(img)
                usable = [d for d in dets if not d.too_small]
                if not usable:
                    reject(pos, name, label, "no face detected" if not dets else "face too small to align")
                    continue
                if not is_dominant([d.box for d in usable]):
                    reject(pos, name, label, f"{len(usable)} faces of similar size; cannot tell which is {label!r}")
                    continue
                face = self.align(img, usable[0])
                fig: dict = {}
                if policy is not None:
                    q = face_quality(self.face_view(face), usable[0])
                    why = policy.reasons(q)
                    if why:
                        reject(pos, name, label, "quality: " + "; ".join(why))
                        continue
                    fig = {"quality": q}
                    figures.append(fig)
                    crops.append(self.face_view(face))
                # the stored crop is the 5-point aligned face (thumbnails, health, re-embedding)
                records.append(sample_record(img, self.face_view(face), usable[0], fig, path, weights))
                faces.append(face)
                keep.append((pos, label, name))
            if faces:
                feats.append(self.predictor.embed(faces, self.flip))
                positions += [p for p, _, _ in keep]
                labels += [lab for _, lab, _ in keep]
                names += [n for _, _, n in keep]
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        dim = self.predictor.embedding_size
        x = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
        if policy is None:
            return GalleryFeatures(x, labels, names, positions, list(rejected), records=records)
        return GalleryFeatures(x, labels, names, positions, list(rejected), figures, crops, records)

    def build_index(self, gallery_imgs: Any, gallery_label: Any, metric_type: str = "IP",
                    index_type: str = "HNSW32", backend: str = "faiss", strict: bool = False,
                    progress: bool = False, **backend_kwargs: Any):
        """Embed a gallery and build a new index (FAISS by default, or Milvus)."""
        g = self.gallery_features(gallery_imgs, gallery_label, strict, progress)
        if len(g.labels) == 0:
            first = f"{g.rejected[0].name}: {g.rejected[0].reason}" if g.rejected else "none given"
            raise InputError(f"gallery has no usable face: {len(g.rejected)} image(s) rejected (first: {first})")
        index = create_index(backend=backend, dim=self.predictor.embedding_size, metric_type=metric_type,
                             index_type=index_type, model_name=self.predictor.model_name, **backend_kwargs)
        add_gallery(index, g)
        return index

    def append_index(self, gallery_imgs: Any, gallery_label: Any, index, strict: bool = False,
                     progress: bool = False):
        """Embed more gallery images and add them to ``index`` (an index or a saved index directory).

        Returns the index, as PaddleX does (``index_data = pipeline.append_index(...)``; a directory
        is loaded and changes only when you ``index_data.save(dir)``); the new ids are in
        ``self.last_added_ids``.
        """
        index = resolve_index(index)
        if index is None:
            raise InputError("append_index: index is None; pass an index, or a saved index directory")
        index.check_model(self.predictor.model_name, self.predictor.embedding_size)
        g = self.gallery_features(gallery_imgs, gallery_label, strict, progress)
        self._calls.added_ids = add_gallery(index, g).ids
        return index

    @staticmethod
    def remove_index(remove_ids: int | Iterable[int] | str | os.PathLike, index):
        """Remove ids (an int, a list, or a text file of ids one per line) from ``index``.

        ``index`` is an index or a saved index directory; the index is returned, as PaddleX does.
        Unknown ids raise InputError and nothing is removed.
        """
        index = resolve_index(index)
        if index is None:
            raise InputError("remove_index: index is None; pass an index, or a saved index directory")
        if isinstance(remove_ids, (str, os.PathLike)):
            path = Path(remove_ids)
            if not path.is_file():
                raise InputError(f"remove_ids file {str(remove_ids)!r} does not exist")
            ids = []
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    try:
                        ids.append(int(line.split()[0]))
                    except ValueError:
                        raise InputError(f"{path}:{n}: {line.strip()!r} is not an integer id") from None
        elif isinstance(remove_ids, (int, np.integer)):
            ids = [int(remove_ids)]
        else:
            ids = [int(i) for i in remove_ids]
        index.remove(ids)
        return index
