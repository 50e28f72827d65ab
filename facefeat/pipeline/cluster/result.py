"""The result of clustering: :class:`ClusterResult`, its edits (merge, split, rename, incremental
update), its directory (``features.npy``, ``clusters.json``, contact sheets) and its gallery."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from facefeat.errors import InputError
from facefeat.index import create_index
from facefeat.pipeline.cluster.algorithms import DEFAULT_K, cluster_features, knn_graph
from facefeat.pipeline.cluster.sheets import write_contact_sheet
from facefeat.results import BaseResult
from facefeat.thresholds import is_match
from facefeat.utils import atomic_path, atomic_write_json, l2_normalize

FORMAT_NAME = "facefeat-clusters"
FORMAT_VERSION = 1
CLUSTERS_FILE = "clusters.json"
FEATURES_FILE = "features.npy"
SHEETS_DIR = "sheets"


# -- the result: clusters of faces, saved, updated, edited -------------------------------------
class ClusterResult(BaseResult):
    """Faces grouped into people. ``result["clusters"]`` maps cluster id -> ``{"name", "size",
    "faces"}``; ``result["unclustered"]`` lists faces in no cluster. Features stay in
    ``result.features`` (row i is face i; not part of the JSON)."""

    default_stem = "clusters"

    def __init__(self, features: np.ndarray, faces: list[dict], labels: np.ndarray, *, model_name: str | None,
                 method: str, threshold: float, min_samples: int, k: int = DEFAULT_K,
                 names: dict[int, str] | None = None, next_id: int | None = None,
                 failed: Sequence[tuple[str, str]] = (), sources: dict[int, Any] | None = None,
                 threshold_source: str = ""):
        super().__init__()
        self.features = np.ascontiguousarray(features, np.float32)
        self.faces = faces
        self.labels = np.asarray(labels, np.int64)  # cluster id per face, 0 = unclustered
        self.model_name = model_name
        self.method, self.threshold, self.min_samples, self.k = method, float(threshold), int(min_samples), int(k)
        self.names = dict(names or {})
        self.next_id = int(next_id if next_id is not None else (self.labels.max(initial=0) + 1))
        self.failed = list(failed)
        self.sources = dict(sources or {})
        self.threshold_source = threshold_source
        self._dirty: set[int] = set(self.cluster_ids())
        self._removed: set[int] = set()
        self._sync()

    # -- views
    def cluster_ids(self) -> list[int]:
        return sorted(int(c) for c in np.unique(self.labels) if c > 0)

    def name(self, cid: int) -> str:
        return self.names.get(int(cid), f"person_{int(cid):04d}")

    def members(self, cid: int) -> np.ndarray:
        return np.flatnonzero(self.labels == int(cid))

    def _face(self, i: int) -> dict:
        return {"face_id": int(i), **self.faces[i]}

    def _sync(self) -> None:
        clusters = {str(c): {"name": self.name(c), "size": int(len(m)), "faces": [self._face(i) for i in m]}
                    for c in self.cluster_ids() for m in [self.members(c)]}
        self.clear()
        self.update({
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "model_name": self.model_name,
            "dim": int(self.features.shape[1]) if self.features.ndim == 2 else None,
            "method": self.method, "threshold": self.threshold, "threshold_source": self.threshold_source,
            "min_samples": self.min_samples, "k": self.k, "num_faces": len(self.faces),
            "num_clusters": len(clusters), "num_unclustered": int((self.labels == 0).sum()),
            "next_cluster_id": self.next_id, "clusters": clusters,
            "unclustered": [self._face(i) for i in np.flatnonzero(self.labels == 0)],
            "failed": [{"input": n, "reason": r} for n, r in self.failed],
        })

    def _check_id(self, cid: int) -> int:
        if int(cid) not in set(self.cluster_ids()):
            raise InputError(f"cluster id {cid} does not exist (ids: {', '.join(map(str, self.cluster_ids()[:20]))}"
                             f"{', ...' if len(self.cluster_ids()) > 20 else ''})")
        return int(cid)

    def _add_clusters(self, idx: np.ndarray, raw: np.ndarray) -> list[int]:
        """Give faces ``idx`` new cluster ids per their local labels ``raw`` (``-1``: unclustered)."""
        new = []
        for lab in sorted(set(raw.tolist()) - {-1}):
            cid = self.next_id
            self.next_id += 1
            self.labels[idx[raw == lab]] = cid
            self._dirty.add(cid)
            new.append(cid)
        self.labels[idx[raw == -1]] = 0
        return new

    # -- editing
    def merge(self, ids: Iterable[int]) -> int:
        """Merge clusters into the first id given; returns it."""
        ids = [self._check_id(c) for c in ids]
        if len(ids) < 2:
            raise InputError(f"merge needs at least two cluster ids, got {ids}")
        target = ids[0]
        for c in ids[1:]:
            if c != target:
                self.labels[self.labels == c] = target
                self.names.pop(c, None)
                self._removed.add(c)
        self._dirty.add(target)
        self._sync()
        return target

    def split(self, cid: int, threshold: float | None = None, face_ids: Iterable[int] | None = None) -> list[int]:
        """Split a cluster: move ``face_ids`` out into a new cluster, or re-cluster its faces at a
        stricter ``threshold`` (default: this result's threshold + 0.1; the largest part keeps
        ``cid``). Returns the ids of the new clusters (empty when nothing splits off)."""
        cid = self._check_id(cid)
        idx = self.members(cid)
        if face_ids is not None:
            move = np.asarray(sorted({int(f) for f in face_ids}), np.int64)
            stray = sorted(set(move.tolist()) - set(idx.tolist()))
            if stray:
                raise InputError(f"split: face id(s) {stray[:10]} are not in cluster {cid}")
            if len(move) == len(idx) or len(move) == 0:
                raise InputError(f"split: give some but not all of cluster {cid}'s {len(idx)} faces")
            rest, parts = move, np.zeros(len(move), np.int64)
        else:
            thr = min(0.99, self.threshold + 0.1) if threshold is None else float(threshold)
            raw = cluster_features(self.features[idx], thr, 1, self.method, self.k)  # 0 = the largest part
            rest, parts = idx[raw > 0], raw[raw > 0]
        new = self._add_clusters(rest, parts)
        self._dirty.add(cid)
        self._sync()
        return new

    def rename(self, cid: int, name: str) -> None:
        cid = self._check_id(cid)
        if not str(name).strip():
            raise InputError(f"rename: the new name of cluster {cid} is empty")
        self.names[cid] = str(name).strip()
        self._dirty.add(cid)
        self._sync()

    def add_faces(self, features: np.ndarray, faces: list[dict], sources: dict[int, Any] | None = None,
                  failed: Sequence[tuple[str, str]] = ()) -> dict[str, list[int]]:
        """Incremental update: assign new faces to existing clusters, or make new clusters.

        The new faces (with the old unclustered ones) are clustered among themselves; each group
        joins the existing cluster its members' k nearest clustered faces above ``threshold`` vote
        for (similarities summed per cluster), or becomes a new cluster when it has at least
        ``min_samples`` faces. Existing clusters are never re-clustered, renumbered or merged
        (``merge`` does that on request). Returns ``{"joined": [ids], "new": [ids]}``.
        """
        features = l2_normalize(features)
        if len(features) and features.shape[1] != self.features.shape[1]:
            raise InputError(f"update: new features have dim {features.shape[1]}, the clusters {self.features.shape[1]}"
                             " (another model?)")
        if len(features) != len(faces):
            raise InputError(f"update: {len(features)} features for {len(faces)} faces")
        base = len(self.faces)
        self.features = np.concatenate([self.features, features]) if len(features) else self.features
        self.faces += faces
        self.labels = np.concatenate([self.labels, np.zeros(len(faces), np.int64)])
        self.sources.update({base + k: v for k, v in (sources or {}).items()})
        self.failed += [f for f in failed if f[0] not in {n for n, _ in self.failed}]
        joined: set[int] = set()
        new_ids: list[int] = []
        if len(faces):
            pool = np.flatnonzero(self.labels == 0)  # new faces + old unclustered ones
            old = np.flatnonzero(self.labels > 0)
            raw = cluster_features(self.features[pool], self.threshold, 1, self.method, self.k)  # no -1
            tally: dict[tuple[int, int], float] = {}
            if len(old):
                sims, nn = knn_graph(self.features[old], self.k, self.features[pool])
                r, c = np.nonzero((nn >= 0) & is_match(sims, self.threshold))
                for g, cl, sim in zip(raw[r], self.labels[old][nn[r, c]], sims[r, c]):
                    tally[(int(g), int(cl))] = tally.get((int(g), int(cl)), 0.0) + float(sim)
            best: dict[int, tuple[float, int]] = {}
            for (g, cl), v in tally.items():
                if g not in best or (v, -cl) > (best[g][0], -best[g][1]):  # most votes, then lowest id
                    best[g] = (v, cl)
            order = np.argsort(raw, kind="stable")
            groups = np.split(pool[order], np.flatnonzero(np.diff(raw[order])) + 1)
            for g, m in zip(np.unique(raw), groups):
                if int(g) in best:
                    cl = best[int(g)][1]
                    self.labels[m] = cl
                    self._dirty.add(cl)
                    joined.add(cl)
                elif len(m) >= self.min_samples:
                    new_ids += self._add_clusters(m, np.zeros(len(m), np.int64))
        self._sync()
        return {"joined": sorted(joined), "new": new_ids}

    # -- outputs
    def save(self, out_dir: str | os.PathLike, sheets: bool = True) -> Path:
        """Write ``features.npy``, contact sheets (changed clusters only), then ``clusters.json``."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: exists and is not a directory")
        with atomic_path(out / FEATURES_FILE, ".npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, self.features)
        if sheets:
            sdir = out / SHEETS_DIR
            for c in sorted(self._removed):
                (sdir / f"cluster_{c:04d}.png").unlink(missing_ok=True)
            live = set(self.cluster_ids())
            for c in sorted(self._dirty & live):
                write_contact_sheet(self, c, sdir / f"cluster_{c:04d}.png")
            self._dirty.clear()
            self._removed.clear()
        atomic_write_json(out / CLUSTERS_FILE, self.json["res"], indent=1)
        return out

    def to_index(self, index_dir: str | os.PathLike | None = None, index_type: str = "Flat"):
        """A FAISS gallery of the clustered faces, labelled by cluster name (saved if ``index_dir``)."""
        idx = np.flatnonzero(self.labels > 0)
        if not len(idx):
            raise InputError("to_index: there are no clusters to turn into a gallery")
        index = create_index(backend="faiss", dim=int(self.features.shape[1]), metric_type="IP",
                             index_type=index_type, model_name=self.model_name)
        index.add(self.features[idx], [self.name(c) for c in self.labels[idx]], [self.faces[i]["path"] for i in idx])
        if index_dir is not None:
            index.save(index_dir)
        return index

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "ClusterResult":
        """Open a directory written by :meth:`save`."""
        d = Path(out_dir)
        path = d / CLUSTERS_FILE
        if not path.is_file():
            raise InputError(f"{d}: not a cluster directory ({CLUSTERS_FILE} is missing; run 'facefeat cluster ... --out {d}')")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != FORMAT_NAME or int(doc.get("version", 0)) > FORMAT_VERSION:
                raise InputError(f"{path}: not a {FORMAT_NAME} v{FORMAT_VERSION} file")
            n = int(doc["num_faces"])
            faces: list[dict | None] = [None] * n
            labels = np.zeros(n, np.int64)
            names = {}
            for cid, c in doc["clusters"].items():
                names[int(cid)] = c["name"]
                for f in c["faces"]:
                    faces[f["face_id"]], labels[f["face_id"]] = f, int(cid)
            for f in doc["unclustered"]:
                faces[f["face_id"]] = f
            if any(f is None for f in faces):
                raise InputError(f"{path}: face ids are not 0..{n - 1}")
            faces = [{k: v for k, v in f.items() if k != "face_id"} for f in faces]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise InputError(f"{path}: corrupt cluster file ({exc!r})") from exc
        try:
            feats = np.load(d / FEATURES_FILE, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{d / FEATURES_FILE}: cannot read the cluster features ({exc})") from exc
        if feats.ndim != 2 or len(feats) < n:  # more rows: a save interrupted before clusters.json
            raise InputError(f"{d / FEATURES_FILE}: holds {feats.shape} features but {CLUSTERS_FILE} lists {n} faces")
        res = cls(feats[:n], faces, labels, model_name=doc.get("model_name"), method=doc["method"],
                  threshold=doc["threshold"], min_samples=doc["min_samples"], k=doc.get("k", DEFAULT_K),
                  names={c: nm for c, nm in names.items() if nm != f"person_{c:04d}"},
                  next_id=doc.get("next_cluster_id"), threshold_source=doc.get("threshold_source", ""),
                  failed=[(f["input"], f["reason"]) for f in doc.get("failed", [])])
        res._dirty.clear()
        return res
