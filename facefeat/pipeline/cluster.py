"""Group unlabeled faces into people: detect, align and embed every face, then cluster.

Flow: images stream through the pipeline in batches (``collect_faces``: features ``[N, dim]`` and
one small record per face; nothing else is held) -> a k-NN graph of cosine similarities from FAISS
(``knn_graph``: ``N x k`` entries) -> clustering by a library (``cluster_features``):

* ``agglomerative`` (default): scikit-learn ``AgglomerativeClustering``, average linkage on
  cosine distance over the k-NN edges above the threshold (``connectivity``; run per connected
  component), cut at ``1 - threshold``.
  Chosen on all of LFW by ``bench/cluster.py``: as good as the best of the others at its best
  threshold (pairwise / BCubed F1 0.980 / 0.978) and far less sensitive to the threshold.
* ``graph``: connected components of the thresholded k-NN graph (``scipy.sparse.csgraph``);
  single linkage, fastest, but chains people together on large sets.
* ``dbscan``: scikit-learn ``DBSCAN`` on the sparse distance graph (``eps = 1 - threshold``).
* ``hdbscan``: scikit-learn ``HDBSCAN`` on the sparse k-NN distance graph (no threshold;
  ``min_samples`` is its minimum cluster size).

``threshold`` is a cosine similarity (the same scale as ``rec_threshold``): faces closer than it
belong together. Its default is the model's calibrated 1:N operating point (FPIR 1%) where the
registry carries one (``ModelSpec.thresholds``), else :data:`FALLBACK_THRESHOLD`, measured for
SFace on LFW with ``bench/cluster.py``. Clusters of fewer than ``min_samples`` faces are
"unclustered" (cluster id 0).

A :class:`ClusterResult` saves to a directory (``save``): ``features.npy`` (row i = face i),
``clusters.json`` (written last: it is the commit point; cluster id -> name and faces with image
path, box, score, landmarks) and ``sheets/cluster_0001.png`` contact sheets of aligned faces.
``load`` + ``update`` assign new faces to existing clusters (k-NN vote) or make new ones without
re-clustering the old faces; ``merge``/``split``/``rename`` edit clusters by id; ``to_index``
turns clusters into a FAISS gallery labelled ``person_0001``... (or the names given).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from facefeat.errors import InputError
from facefeat.results import BaseResult
from facefeat.utils import atomic_path, atomic_write_json, l2_normalize

log = logging.getLogger("facefeat")

METHODS = ("agglomerative", "graph", "dbscan", "hdbscan")
DEFAULT_METHOD = "agglomerative"
#: cosine-similarity threshold used when the model's spec carries no calibrated one; measured for
#: SFace on all of LFW with ``python bench/cluster.py`` (agglomerative: best mean of pairwise and
#: BCubed F1, 0.980 / 0.978, 5,869 clusters for 5,749 people)
FALLBACK_THRESHOLD = 0.475
DEFAULT_MIN_SAMPLES = 1
DEFAULT_K = 32
#: above this many faces the k-NN graph comes from an HNSW index instead of an exact scan
EXACT_KNN_MAX = 200_000
FORMAT_NAME = "facefeat-clusters"
FORMAT_VERSION = 1
CLUSTERS_FILE = "clusters.json"
FEATURES_FILE = "features.npy"
SHEETS_DIR = "sheets"
THUMB = 96
SHEET_COLS = 8
SHEET_MAX_FACES = 64


# -- thresholds ---------------------------------------------------------------------------------
def default_threshold(thresholds: Mapping | None) -> tuple[float, str]:
    """``(threshold, source)``: the model's calibrated 1:N point (FPIR 1% at its largest calibrated
    gallery: telling a face from thousands of others is what grouping a library does; for SFace on
    LFW that is 0.477, beside the best clustering threshold measured, 0.475), else the fallback."""
    from facefeat.thresholds import resolve_threshold

    if thresholds and thresholds.get("identification"):
        thr, op = resolve_threshold(thresholds, "auto", fpir=0.01, task="identify", gallery_size=10**9)
        if op.get("source") == "calibrated":
            return thr, f"calibrated {op['operating_point']} at gallery size {op['measured']['gallery_size']}"
    return FALLBACK_THRESHOLD, "facefeat fallback (measured for SFace on LFW, bench/cluster.py)"


# -- collecting faces ---------------------------------------------------------------------------
def expand_cluster_inputs(inputs: Any) -> list[Any]:
    """Inputs for clustering: directories are walked recursively (photo libraries nest)."""
    from facefeat.io import IMAGE_EXTENSIONS

    seq = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not seq:
        raise InputError("cluster: no inputs given")
    out: list[Any] = []
    for x in seq:
        if isinstance(x, (str, os.PathLike)) and Path(x).is_dir():
            from facefeat.io.walk import list_image_files

            out += [str(p) for p in list_image_files(x, IMAGE_EXTENSIONS, recursive=True)]
        else:
            out.append(x)
    return out


def collect_faces(pipe, inputs: Any, det_threshold: float | None = None, batch_images: int = 32,
                  progress: bool = False) -> tuple[np.ndarray, list[dict], list[tuple[str, str]], dict[int, Any]]:
    """Detect, align and embed every face of every input, streaming ``batch_images`` at a time.

    Returns ``(features [N, dim], faces, failed, sources)``: one record per face (``path``,
    ``box``, ``det_score``, ``landmarks``); ``failed`` lists ``(input, reason)`` for unreadable
    images; ``sources`` maps face index -> the in-memory image for inputs that have no path.
    """
    from facefeat.io.image import iter_batches, iter_images

    items = expand_cluster_inputs(inputs)
    feats: list[np.ndarray] = []
    faces: list[dict] = []
    failed: list[tuple[str, str]] = []
    sources: dict[int, Any] = {}
    small = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="faces", unit="img")
    for chunk in iter_batches(items, batch_images):
        imgs, names, srcs = [], [], []
        for k, (item, img, err) in enumerate(iter_images(chunk)):
            name = item.name if item.name is not None else f"input[{len(faces)}+{k}]"
            if err is not None:
                log.warning("cluster: %s skipped: %s", name, err)
                failed.append((name, str(err)))
                continue
            imgs.append(img)
            names.append(name)
            srcs.append(None if item.name is not None else item.source)
        per_img = pipe.embed(imgs, det_threshold=det_threshold) if imgs else []
        for name, src, dets in zip(names, srcs, per_img):
            for d in dets:
                if d.get("feature") is None:
                    small += 1
                    continue
                if src is not None:
                    sources[len(faces)] = src
                faces.append({"path": name, "box": [round(v, 1) for v in d["coordinate"]],
                              "det_score": round(float(d["det_score"]), 4),
                              "landmarks": [[round(x, 1), round(y, 1)] for x, y in d["landmarks"]]})
                feats.append(np.asarray(d["feature"], np.float32))
        if bar is not None:
            bar.update(len(chunk))
            bar.set_postfix(faces=len(faces))
    if bar is not None:
        bar.close()
    if small:
        log.info("cluster: %d face(s) too small to align were left out", small)
    dim = pipe.predictor.embedding_size
    x = np.stack(feats) if feats else np.zeros((0, dim), np.float32)
    return l2_normalize(x), faces, failed, sources


# -- clustering ---------------------------------------------------------------------------------
def knn_graph(x: np.ndarray, k: int = DEFAULT_K, queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(sims [M, k], ids [M, k])``: each query's (default: each row of ``x``) k nearest rows of ``x``
    by inner product (cosine for L2-normalised features), from FAISS; missing neighbours are id -1."""
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    q = x if queries is None else np.ascontiguousarray(queries, np.float32)
    k = max(1, min(int(k), len(x)))
    if len(x) <= EXACT_KNN_MAX:
        index = faiss.IndexFlatIP(x.shape[1])
    else:
        index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = max(64, 2 * k)
    index.add(x)
    sims, ids = index.search(q, k)
    return sims, ids


def _sparse(sims: np.ndarray, ids: np.ndarray, n: int, threshold: float | None, distance: bool):
    from scipy.sparse import csr_matrix

    rows = np.repeat(np.arange(len(ids)), ids.shape[1])
    s, c = sims.ravel(), ids.ravel()
    keep = c >= 0
    if threshold is not None:
        from facefeat.thresholds import is_match

        keep &= is_match(s, threshold)
    rows, c, s = rows[keep], c[keep], s[keep]
    data = np.maximum(1.0 - s, 1e-6) if distance else np.ones_like(s)  # explicit tiny distances, not 0
    g = csr_matrix((data.astype(np.float64), (rows, c)), shape=(len(ids), n))
    return g.maximum(g.T) if distance else ((g + g.T) > 0).astype(np.float64)


def _check_params(method: str, threshold: float, min_samples: int) -> None:
    if method not in METHODS:
        raise InputError(f"cluster method {method!r} is not supported; use one of {', '.join(METHODS)}")
    if not (isinstance(threshold, (int, float)) and -1.0 < float(threshold) < 1.0):
        raise InputError(f"cluster threshold must be a cosine similarity in (-1, 1), got {threshold!r}")
    if not isinstance(min_samples, (int, np.integer)) or isinstance(min_samples, bool) or min_samples < 1:
        raise InputError(f"min_samples must be an integer >= 1, got {min_samples!r}")


def cluster_features(x: np.ndarray, threshold: float = FALLBACK_THRESHOLD, min_samples: int = DEFAULT_MIN_SAMPLES,
                     method: str = DEFAULT_METHOD, k: int = DEFAULT_K) -> np.ndarray:
    """Cluster L2-normalised features; labels ``0..K-1`` by size (largest first), ``-1`` unclustered."""
    _check_params(method, threshold, min_samples)
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64)
    if n == 1:
        return np.array([0 if min_samples <= 1 else -1])
    if method != "graph":
        from facefeat.errors import require

        require("sklearn", "cluster", f"Clustering faces with method {method!r}")
    sims, ids = knn_graph(x, k)
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        raw = HDBSCAN(min_cluster_size=max(2, min_samples), metric="precomputed",
                      copy=True).fit_predict(_sparse(sims, ids, n, None, distance=True))
    elif method == "graph":
        from scipy.sparse.csgraph import connected_components

        _, raw = connected_components(_sparse(sims, ids, n, threshold, distance=False), directed=False)
    elif method == "dbscan":
        from sklearn.cluster import DBSCAN

        raw = DBSCAN(eps=1.0 - threshold, min_samples=min_samples,
                     metric="precomputed").fit_predict(_sparse(sims, ids, n, threshold, distance=True))
    else:
        raw = _average_linkage(x, _sparse(sims, ids, n, threshold, distance=False),
                               _sparse(sims, ids, n, None, distance=False), threshold)
    return _relabel(np.asarray(raw), min_samples)


def _average_linkage(x: np.ndarray, graph, knn, threshold: float) -> np.ndarray:
    """Average-linkage clustering cut at ``1 - threshold``, run by scikit-learn on each connected
    component of the thresholded k-NN graph (``graph``), with the component's k-NN edges
    (``knn``, above and below the threshold: scikit-learn averages over these) as connectivity.
    Groups in different components have no k-NN pair above the threshold, so average linkage
    would not join them; splitting keeps scikit-learn's Python-level merge loop small (one call
    on all of LFW's graph takes many minutes)."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.cluster import AgglomerativeClustering

    _, comp = connected_components(graph, directed=False)
    raw = comp.copy()
    order = np.argsort(comp, kind="stable")
    bounds = np.flatnonzero(np.diff(comp[order])) + 1
    nxt = int(comp.max()) + 1
    for members in np.split(order, bounds):
        if len(members) < 3:  # one face, or two joined by an edge above the threshold
            continue
        labels = AgglomerativeClustering(n_clusters=None, distance_threshold=1.0 - threshold, metric="cosine",
                                         linkage="average", connectivity=knn[members][:, members]
                                         ).fit_predict(x[members])
        raw[members] = np.where(labels == 0, comp[members[0]], nxt + labels)
        nxt += int(labels.max()) + 1
    return raw


def _relabel(raw: np.ndarray, min_samples: int) -> np.ndarray:
    """Renumber clusters 0.. by size, largest first; clusters below ``min_samples`` become -1."""
    out = np.full(len(raw), -1, np.int64)
    ids, counts = np.unique(raw[raw >= 0], return_counts=True)
    order = np.lexsort((ids, -counts))
    new = 0
    for j in order:
        if counts[j] >= min_samples:
            out[raw == ids[j]] = new
            new += 1
    return out


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
                r, c = np.nonzero((nn >= 0) & (sims >= self.threshold))
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
        from facefeat.index import create_index

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


# -- contact sheets -----------------------------------------------------------------------------
def write_contact_sheet(res: ClusterResult, cid: int, target: Path) -> Path:
    """A grid of the cluster's aligned faces (best detection scores first, at most
    :data:`SHEET_MAX_FACES`), re-read from their images; unreadable ones are gray tiles."""
    import cv2

    from facefeat.io import read_image
    from facefeat.vision.align import align_face

    idx = sorted(res.members(cid), key=lambda i: -res.faces[i]["det_score"])[:SHEET_MAX_FACES]
    tiles: dict[int, np.ndarray] = {}
    by_src: dict[Any, list[int]] = {}
    for i in idx:
        by_src.setdefault(("mem", i) if i in res.sources else res.faces[i]["path"], []).append(i)
    for key, face_ids in by_src.items():
        try:
            img = read_image(res.sources[key[1]]) if isinstance(key, tuple) else read_image(key)
        except InputError:
            continue
        for i in face_ids:
            tiles[i] = cv2.resize(align_face(img, res.faces[i]["landmarks"]), (THUMB, THUMB))
    cols = min(SHEET_COLS, len(idx))
    rows = math.ceil(len(idx) / cols)
    head = 24
    sheet = np.full((head + rows * THUMB, cols * THUMB, 3), 40, np.uint8)
    for k, i in enumerate(idx):
        r, c = divmod(k, cols)
        sheet[head + r * THUMB: head + (r + 1) * THUMB, c * THUMB:(c + 1) * THUMB] = tiles.get(i, 128)
    text = f"{cid}: {res.name(cid)} ({len(res.members(cid))} faces)"
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    cv2.putText(sheet, text, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise OSError(f"{target}: cannot encode the contact sheet as PNG")
    with atomic_path(target, ".png") as tmp:
        tmp.write_bytes(buf.tobytes())
    return target


# -- entry points used by the pipeline ---------------------------------------------------------
def cluster_faces(pipe, inputs: Any, threshold: float | None = None, min_samples: int | None = None,
                  method: str | None = None, k: int = DEFAULT_K, det_threshold: float | None = None,
                  progress: bool = False) -> ClusterResult:
    """Detect, align and embed every face of ``inputs`` and group them into people."""
    thr, src = (float(threshold), "given") if threshold is not None else default_threshold(pipe.thresholds)
    ms = DEFAULT_MIN_SAMPLES if min_samples is None else min_samples
    meth = method or DEFAULT_METHOD
    _check_params(meth, thr, ms)
    feats, faces, failed, sources = collect_faces(pipe, inputs, det_threshold, progress=progress)
    raw = cluster_features(feats, thr, ms, meth, k)
    return ClusterResult(feats, faces, np.where(raw >= 0, raw + 1, 0), model_name=pipe.predictor.model_name, method=meth,
                         threshold=thr, min_samples=ms, k=k, failed=failed, sources=sources,
                         threshold_source=src)


def update_clusters(pipe, result: ClusterResult, inputs: Any, det_threshold: float | None = None,
                    progress: bool = False) -> dict[str, list[int]]:
    """Embed ``inputs`` and add their faces to ``result`` (see :meth:`ClusterResult.add_faces`);
    image paths already in ``result`` are skipped, so repeating an update adds nothing twice."""
    if result.model_name and result.model_name != pipe.predictor.model_name:
        raise InputError(f"update: the clusters were made with model {result.model_name!r}, "
                         f"this pipeline runs {pipe.predictor.model_name!r}")
    known = {f["path"] for f in result.faces}
    todo = [x for x in expand_cluster_inputs(inputs) if not (isinstance(x, (str, os.PathLike)) and str(x) in known)]
    if not todo:
        log.info("update: every input is already in the clusters")
        return result.add_faces(np.zeros((0, result.features.shape[1]), np.float32), [])
    feats, faces, failed, sources = collect_faces(pipe, todo, det_threshold, progress=progress)
    return result.add_faces(feats, faces, sources, failed)


__all__ = ["ClusterResult", "DEFAULT_METHOD", "FALLBACK_THRESHOLD", "METHODS", "cluster_faces", "cluster_features",
           "collect_faces", "default_threshold", "knn_graph", "update_clusters"]
