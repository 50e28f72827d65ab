"""The clustering algorithms: a k-NN graph of cosine similarities from FAISS, clustered by
scikit-learn or SciPy (see :mod:`facefeat.pipeline.cluster` for the methods and how the default
threshold was chosen)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from facefeat.errors import InputError, require
from facefeat.thresholds import is_match, resolve_threshold

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

# -- thresholds ---------------------------------------------------------------------------------
def default_threshold(thresholds: Mapping | None) -> tuple[float, str]:
    """``(threshold, source)``: the model's calibrated 1:N point (FPIR 1% at its largest calibrated
    gallery: telling a face from thousands of others is what grouping a library does; for SFace on
    LFW that is 0.477, beside the best clustering threshold measured, 0.475), else the fallback."""
    if thresholds and thresholds.get("identification"):
        thr, op = resolve_threshold(thresholds, "auto", fpir=0.01, task="identify", gallery_size=10**9)
        if op.get("source") == "calibrated":
            return thr, f"calibrated {op['operating_point']} at gallery size {op['measured']['gallery_size']}"
    return FALLBACK_THRESHOLD, "facefeat fallback (measured for SFace on LFW, bench/cluster.py)"


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
        keep &= is_match(s, threshold)
    rows, c, s = rows[keep], c[keep], s[keep]
    data = np.maximum(1.0 - s, 1e-6) if distance else np.ones_like(s)  # explicit tiny distances, not 0
    g = csr_matrix((data.astype(np.float64), (rows, c)), shape=(len(ids), n))
    return g.maximum(g.T) if distance else ((g + g.T) > 0).astype(np.float64)


def check_params(method: str, threshold: float, min_samples: int) -> None:
    if method not in METHODS:
        raise InputError(f"cluster method {method!r} is not supported; use one of {', '.join(METHODS)}")
    if not (isinstance(threshold, (int, float)) and -1.0 < float(threshold) < 1.0):
        raise InputError(f"cluster threshold must be a cosine similarity in (-1, 1), got {threshold!r}")
    if not isinstance(min_samples, (int, np.integer)) or isinstance(min_samples, bool) or min_samples < 1:
        raise InputError(f"min_samples must be an integer >= 1, got {min_samples!r}")


def cluster_features(x: np.ndarray, threshold: float = FALLBACK_THRESHOLD, min_samples: int = DEFAULT_MIN_SAMPLES,
                     method: str = DEFAULT_METHOD, k: int = DEFAULT_K) -> np.ndarray:
    """Cluster L2-normalised features; labels ``0..K-1`` by size (largest first), ``-1`` unclustered."""
    check_params(method, threshold, min_samples)
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64)
    if n == 1:
        return np.array([0 if min_samples <= 1 else -1])
    if method != "graph":
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
