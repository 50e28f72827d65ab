"""A gallery of people: a view over a :class:`~facefeat.index.base.FaceIndex` whose labels are people
and whose entries are their samples.

* :meth:`People.search`: the top-k *people* per query, each with its best score over the person's
  samples and that sample's id (not k images of one person).
* :meth:`People.list`, :meth:`People.add`, :meth:`People.remove`, :meth:`People.rename`.
* Per-sample figures (the enrolment quality, how the face was found) are kept with each sample
  in the gallery's store (:class:`~facefeat.index.store.SampleRecord`), in the same transaction as
  its vector and label; :attr:`People.samples` reads them.

Labels are normalised (:func:`~facefeat.index.labels.normalize_label`: NFC, stripped) wherever a
person is named, so add, rename and remove agree on who is who.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index.base import FaceIndex, Hit, higher_is_better
from facefeat.index.labels import normalize_label
from facefeat.index.persist import load_index
from facefeat.index.store import SampleRecord


@dataclass(frozen=True)
class PersonHit:
    """One person in a search result: label, best score, the sample that gave it, samples matched."""

    label: str
    score: float
    sample_id: int
    path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class People:
    """People (labels) of a face index, with their samples (entries)."""

    def __init__(self, index: FaceIndex):
        self.index = index

    @property
    def samples(self) -> dict[int, dict]:
        """Per-sample figures by id (quality, enrolment policy); samples without figures are absent."""
        live = set(self.index.ids())
        out = {} if self.index.store is None else {i: f for i, f in self.index.store.figures().items() if i in live}
        out.update({i: r.figures for i, r in self.index._extras.items() if r.figures and i in live})
        return dict(sorted(out.items()))

    # -- reading ---------------------------------------------------------------------------------
    def sample_ids(self, label: str) -> list[int]:
        label = normalize_label(label)
        return [i for i, lab in self.index.labels().items() if lab == label]

    def _ids_of(self, label: str) -> list[int]:
        ids = self.sample_ids(label)
        if not ids:
            known = sorted(set(self.index.labels().values()))
            raise InputError(f"no person {label!r} in the gallery ({len(known)} people"
                             + (f", e.g. {', '.join(map(repr, known[:5]))}" if known else "") + ")")
        return ids

    def list(self) -> list[dict]:
        """``[{"label", "samples", "sample_ids"}]`` sorted by label."""
        by: dict[str, list[int]] = {}
        for i, lab in self.index.labels().items():
            by.setdefault(lab, []).append(i)
        return [{"label": lab, "samples": len(ids), "sample_ids": ids} for lab, ids in sorted(by.items())]

    def __len__(self) -> int:
        return len(set(self.index.labels().values()))

    def __contains__(self, label: object) -> bool:
        try:
            label = normalize_label(label)
        except InputError:
            return False
        return label in set(self.index.labels().values())

    def search(self, queries: Any, topk: int = 5) -> list[list[PersonHit]]:
        """Top-``topk`` people per query row, best first (best score over each person's samples).

        Searches the index for more hits until ``topk`` distinct people are found or the whole
        gallery has been seen."""
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
            raise InputError(f"search: topk must be a positive integer, got {topk!r}")
        q = np.asarray(queries, np.float32)
        if q.ndim == 1:
            q = q[None]
        n = len(self.index)
        out: list[list[PersonHit]] = [[] for _ in range(len(q))]
        todo = list(range(len(q)))
        k = min(n, max(4 * int(topk), 16))
        while todo and n:
            hits = self.index.search(q[todo], k)
            left = []
            for qi, row in zip(todo, hits):
                people = self._group(row)
                if len(people) >= topk or k >= n:
                    out[qi] = people[:topk]
                else:
                    left.append(qi)
            todo = left
            k = min(n, 4 * k)
        return out

    def _group(self, hits: Sequence[Hit]) -> list[PersonHit]:
        best: dict[str, PersonHit] = {}
        for h in hits:  # hits come best first
            if h.label not in best:
                best[h.label] = PersonHit(h.label, float(h.score), int(h.id), h.path)
        return list(best.values())

    def best_match(self, feature: Any, label: str) -> tuple[Hit, int]:
        """The best-scoring sample of person ``label`` for one query feature, and how many samples
        the person has."""
        ids = set(self._ids_of(label))
        n = len(self.index)
        q = np.asarray(feature, np.float32).reshape(1, -1)
        k = min(n, max(64, 4 * len(ids)))
        while True:
            row = self.index.search(q, k)[0]
            mine = [h for h in row if h.id in ids]
            if mine or k >= n:
                break
            k = min(n, 4 * k)
        if not mine:  # approximate indexes may miss; cannot happen on Flat
            raise FaceIndexError(f"the index returned none of {label!r}'s {len(ids)} samples for this query")
        reverse = higher_is_better(self.index.metric_type)
        return sorted(mine, key=lambda h: h.score, reverse=reverse)[0], len(ids)

    # -- changing --------------------------------------------------------------------------------
    def add(self, label: str, features: Any, paths: Sequence[str | None] | None = None,
            figures: Sequence[dict | None] | None = None) -> list[int]:
        """Add samples (``[N, D]`` features) to person ``label`` (new or existing); returns their ids."""
        x = np.asarray(features, np.float32)
        if x.ndim == 1:
            x = x[None]
        records = [SampleRecord(figures=dict(f)) if f else None for f in figures] if figures else None
        return self.index.add(x, [label] * len(x), paths, records)

    def remove(self, label: str) -> int:
        """Remove a person (every sample); returns how many samples were removed."""
        return self.index.remove(self._ids_of(label))

    def remove_samples(self, ids: Sequence[int]) -> int:
        return self.index.remove(ids)

    def rename(self, label: str, new_label: str) -> int:
        """Rename a person (merging into ``new_label`` if that person exists); returns samples renamed."""
        return self.index.relabel(self._ids_of(label), new_label)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path | str:
        """Store the gallery (samples with their figures and crops) - see :meth:`FaceIndex.save`."""
        return self.index.save(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, **kw: Any) -> "People":
        return cls(load_index(directory, **kw))


__all__ = ["People", "PersonHit"]
