"""Unknown faces grouped into candidate people with the existing clustering (the review grid)."""

from __future__ import annotations

from typing import Any

import numpy as np

from facefeat.index.health import gallery_thresholds
from facefeat.index.sightings import _rows, _store
from facefeat.pipeline.cluster import cluster_features, default_threshold


def unknown_groups(index_or_store: Any, threshold: float | None = None, min_samples: int = 2) -> list[dict]:
    """The unknown sightings grouped into candidate people, largest first: ``[{"group", "ids",
    "size"}]`` (faces in no group are left out)."""
    store = _store(index_or_store)
    rows = _rows(store, "SELECT id, feature FROM sightings WHERE gallery = ? AND label IS NULL ORDER BY id",
                 (store.gallery,))
    if not rows:
        return []
    x = np.stack([np.frombuffer(bytes(f), np.float32) for _, f in rows])
    thr = default_threshold(gallery_thresholds(store.meta()))[0] if threshold is None else float(threshold)
    lab = cluster_features(x, threshold=thr,
                           min_samples=min_samples)
    groups: dict[int, list[int]] = {}
    for (i, _), g in zip(rows, lab.tolist()):
        if g >= 0:
            groups.setdefault(g, []).append(int(i))
    return [{"group": g, "ids": ids, "size": len(ids)} for g, ids in sorted(groups.items(), key=lambda kv: -len(kv[1]))]


__all__ = ["unknown_groups"]
