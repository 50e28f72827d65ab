"""The gallery's one store interface: the truth about people and their samples, in a real database.

A gallery holds *people* (label, created) and their *samples*: the feature (with the model name and
the weights hash it came from), the aligned 112x112 crop it was embedded from (JPEG bytes), the
source name, quality figures, the detection (score, box, landmarks), the content hash of the image
and the time it was added. Every change is one transaction, recorded with a *change counter* (a
``changes`` row per operation), so that every reader - another thread, another process, a replica
on another machine - brings its in-memory vector index up to date by replaying what changed since
the counter it has seen (:meth:`GalleryStore.changes_since`).

Stores: :class:`~facefeat.index.sqlite_store.SqliteStore` (``<dir>/gallery.db``, embedded, the
default) and :class:`~facefeat.index.pg_store.PgStore` (``postgresql://...``, shared by servers).
:func:`facefeat.index.store_factory.open_store` picks one from what the user named.
"""

from __future__ import annotations

import abc
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

#: the SQLite file inside a gallery directory
DB_FILE = "gallery.db"
#: the gallery name used when a store holds one gallery (a SQLite file; a PostgreSQL URL without ?gallery=)
DEFAULT_GALLERY = "default"
STORE_FORMAT_VERSION = 2


@dataclass
class SampleRecord:
    """What is kept per sample beside its feature, label and source (all optional)."""

    crop: bytes | None = None  # the aligned face, encoded (``crop_format``)
    crop_format: str = "jpeg"
    figures: dict | None = None  # quality figures, enrolment policy, detection path
    det: dict | None = None  # {"score", "box", "landmarks"}
    content_hash: str | None = None  # of the decoded image: the same image twice is a duplicate
    weights_hash: str | None = None
    created: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Change:
    """One recorded change: ``kind`` add | remove | relabel | reset (the whole gallery replaced)."""

    seq: int
    kind: str
    ids: tuple[int, ...]
    label: str | None = None


@dataclass
class Op:
    """A change to write: ``add`` (features, labels, paths, records; ``ids`` None = assign the next
    ones), ``remove`` (ids) or ``relabel`` (ids, label)."""

    kind: str
    ids: list[int] | None = None
    features: np.ndarray | None = None
    labels: list[str] | None = None
    paths: list[str | None] | None = None
    records: list[SampleRecord | None] | None = None
    label: str | None = None


class GalleryStore(abc.ABC):
    """One gallery in a database. Every method is one transaction; all are thread-safe."""

    #: names the gallery (a real path, or a URL without credentials + gallery name)
    location: str = ""

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the gallery has been created."""

    @abc.abstractmethod
    def create(self, meta: dict) -> None:
        """Create the gallery with ``meta`` (backend, dim, metric_type, index_type, model_name, params)."""

    @abc.abstractmethod
    def meta(self) -> dict: ...

    @abc.abstractmethod
    def counter(self) -> int:
        """The change counter: it grows by one with every operation written."""

    @abc.abstractmethod
    def next_id(self) -> int: ...

    @abc.abstractmethod
    def write(self, ops: Sequence[Op], expect: int | None = None) -> tuple[int, list[list[int]]]:
        """Apply ``ops`` in one transaction; returns the new counter and each op's ids. With
        ``expect``, raise IndexConflict (writing nothing) unless the counter is ``expect``."""

    @abc.abstractmethod
    def replace(self, meta: dict, next_id: int, rows: Iterator[tuple], expect: int | None = None) -> int:
        """Replace the whole gallery (meta, every sample) in one transaction; ``rows`` yields
        ``(ids, labels, paths, features, records)`` chunks. Returns the new counter."""

    @abc.abstractmethod
    def changes_since(self, seq: int) -> list[Change]: ...

    @abc.abstractmethod
    def load(self, ids: Sequence[int] | None = None, chunk: int = 20000) -> Iterator[tuple]:
        """``(ids, labels, paths, features)`` chunks in id order (all samples, or those ``ids``)."""

    @abc.abstractmethod
    def records(self, ids: Sequence[int], with_crops: bool = True) -> dict[int, SampleRecord]: ...

    @abc.abstractmethod
    def crop(self, sample_id: int) -> tuple[bytes, str] | None:
        """The stored crop of a sample and its format, or None (removed, or never stored)."""

    @abc.abstractmethod
    def figures(self) -> dict[int, dict]:
        """Every sample's figures (samples without any are absent)."""

    @abc.abstractmethod
    def find(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Which ``(label, content_hash)`` pairs are already stored, and the sample id of each."""

    @abc.abstractmethod
    def persons(self) -> list[dict]:
        """``[{"label", "created", "samples"}]`` sorted by label."""

    @abc.abstractmethod
    def drop(self) -> None:
        """Delete the gallery and everything in it."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the connection."""

    def __enter__(self) -> "GalleryStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def is_store_url(x: Any) -> bool:
    return isinstance(x, str) and x.strip().lower().startswith(("postgresql://", "postgres://"))


def content_hash(img: Any) -> str:
    """sha256 of a decoded image (shape, dtype and pixels): the same photo gives the same hash
    whichever way it was sent (file, base64, array)."""
    a = np.ascontiguousarray(img)
    h = hashlib.sha256(f"{a.shape}|{a.dtype}|".encode())
    h.update(memoryview(a).cast("B"))
    return "sha256:" + h.hexdigest()


def encode_ids(ids: Sequence[int]) -> str:
    """Sorted ids as ranges: ``[1, 2, 3, 7]`` -> ``"1-3,7"`` (a change row stays small for a big add)."""
    out: list[str] = []
    s = sorted(int(i) for i in ids)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ",".join(out)


def decode_ids(text: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return tuple(out)


__all__ = ["Change", "DB_FILE", "DEFAULT_GALLERY", "GalleryStore", "Op", "SampleRecord", "content_hash",
           "decode_ids", "encode_ids", "is_store_url"]
