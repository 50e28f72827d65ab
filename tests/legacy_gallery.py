"""Write gallery folders in the format earlier facefeat versions saved (meta.json, labels.json,
vectors.faiss, people.json, with checksums), to test their migration."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


def _sha(p: Path) -> str:
    return "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()


def write_old_gallery(d: Path, x: np.ndarray, labels: list[str], paths: list | None = None, metric: str = "IP",
                      index_type: str = "Flat", model_name: str | None = "m", ids: list[int] | None = None,
                      figures: dict | None = None, next_id: int | None = None) -> Path:
    import faiss

    d.mkdir(parents=True, exist_ok=True)
    ids = list(range(len(x))) if ids is None else ids
    paths = paths or [None] * len(x)
    m = faiss.METRIC_L2 if metric == "L2" else faiss.METRIC_INNER_PRODUCT
    spec = "IDMap2,Flat" if index_type == "Flat" else f"IDMap2,{index_type}"
    idx = faiss.index_factory(x.shape[1], spec, m)
    idx.add_with_ids(np.ascontiguousarray(x, np.float32), np.asarray(ids, np.int64))
    faiss.write_index(idx, str(d / "vectors.faiss"))
    (d / "labels.json").write_text(json.dumps({str(i): {"label": lab, "path": p}
                                               for i, lab, p in zip(ids, labels, paths)}))
    if figures:
        (d / "people.json").write_text(json.dumps({str(k): v for k, v in figures.items()}))
    meta = {"format": "facefeat-index", "format_version": 1, "backend": "faiss", "model_name": model_name,
            "dim": int(x.shape[1]), "metric_type": metric, "index_type": index_type,
            "next_id": max(ids) + 1 if next_id is None else next_id, "count": len(ids), "revision": 3,
            "revision_id": "abc", "effective_index_type": index_type,
            "params": {"nlist": None, "nprobe": None, "ef_search": 128, "ef_construction": 200, "M": 32
                       if index_type.startswith("HNSW") else None, "fallback": None},
            "checksums": {n: _sha(d / n) for n in ("labels.json", "vectors.faiss")}}
    (d / "meta.json").write_text(json.dumps(meta))
    return d
