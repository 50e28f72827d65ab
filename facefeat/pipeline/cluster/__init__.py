"""Group unlabeled faces into people: detect, align and embed every face, then cluster.

The package holds the clustering algorithms (:mod:`.algorithms`), the result and its directory
(:mod:`.result`), the contact sheets (:mod:`.sheets`) and the pipeline's entry points, from
images to clusters (:mod:`.collect`).

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

from facefeat.pipeline.cluster.algorithms import (DEFAULT_K, DEFAULT_METHOD, DEFAULT_MIN_SAMPLES, FALLBACK_THRESHOLD,
                                                  METHODS, cluster_features, default_threshold, knn_graph)
from facefeat.pipeline.cluster.collect import cluster_faces, collect_faces, expand_cluster_inputs, update_clusters
from facefeat.pipeline.cluster.result import ClusterResult
from facefeat.pipeline.cluster.sheets import write_contact_sheet

__all__ = ["ClusterResult", "DEFAULT_K", "DEFAULT_METHOD", "DEFAULT_MIN_SAMPLES", "FALLBACK_THRESHOLD", "METHODS",
           "cluster_faces", "cluster_features", "collect_faces", "default_threshold", "expand_cluster_inputs",
           "knn_graph", "update_clusters", "write_contact_sheet"]
