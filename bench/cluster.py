"""Clustering on all of LFW: which method and threshold group 13,233 photos into 5,749 people best.

Every face of every LFW image goes through the pipeline (detect -> align -> embed, the same
``collect_faces`` that ``facefeat cluster`` runs); all faces are clustered (background faces
included, as in a real photo library) and the image's subject - its central face, as LFW is
cropped around it - is scored against the identity in its folder name. Images without a detected
face count as missing (reported). Metrics: pairwise precision / recall / F1 (pairs of faces
put together), BCubed precision / recall / F1, number of clusters (vs 5,749 identities), time.

The features are cached to ``/tmp/facefeat_bench/lfw_cluster_<model>_<shard>.npz`` so that the clustering
part re-runs in seconds (``--refresh`` re-embeds).

    python bench/cluster.py                        # all methods, a threshold sweep each
    python bench/cluster.py --limit 2000           # first 2,000 images (quick)
    python bench/cluster.py --methods graph agglomerative --thresholds 0.35 0.4 0.45
    python bench/cluster.py --scale 200000         # time/memory of the default method on random features
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LFW_DIR, need, print_table  # noqa: E402

from facefeat.pipeline import create_pipeline  # noqa: E402
from facefeat.pipeline.cluster import (DEFAULT_METHOD, FALLBACK_THRESHOLD, METHODS, cluster_features,  # noqa: E402
                                       collect_faces)

CACHE = Path(os.environ.get("FACEFEAT_BENCH_CACHE", "/tmp/facefeat_bench"))


def lfw_images(root: Path, limit: int | None) -> list[str]:
    paths = sorted(str(p) for p in root.glob("*/*.jpg"))
    return paths[:limit] if limit else paths


def embed_lfw(model: str, limit: int | None, refresh: bool, shard: int = 1000,
              reverse: bool = False) -> tuple[np.ndarray, list[dict], list[str], float]:
    """All faces of the images, cached per shard of ``shard`` images (an interrupted run resumes;
    a second ``--embed-only --reverse`` process can fill the cache from the other end)."""
    paths = lfw_images(need(LFW_DIR, "LFW"), limit)
    CACHE.mkdir(parents=True, exist_ok=True)
    pipe = None
    feats, faces, secs = [], [], 0.0
    starts = list(range(0, len(paths), shard))
    for start in (starts[::-1] if reverse else starts):
        part = paths[start:start + shard]
        cache = CACHE / f"lfw_cluster_{model}_{start}_{len(part)}.npz"
        if not cache.is_file() or refresh:
            pipe = pipe or create_pipeline("face_recognition", model=model)
            t0 = time.perf_counter()
            f, fc, failed, _ = collect_faces(pipe, part, progress=True)
            if failed:
                raise SystemExit(f"{len(failed)} unreadable images (first: {failed[0]})")
            tmp = cache.with_suffix(".tmp.npz")
            np.savez(tmp, features=f, faces=json.dumps(fc), seconds=time.perf_counter() - t0)
            os.replace(tmp, cache)
        z = np.load(cache, allow_pickle=False)
        feats.append(z["features"])
        faces += json.loads(str(z["faces"]))
        secs += float(z["seconds"])
    return np.concatenate(feats), faces, paths, secs


def subjects(faces: list[dict], paths: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per image, the index of its central face (box holding the centre, largest) and the identity."""
    best: dict[str, tuple[float, int]] = {}
    for i, f in enumerate(faces):
        x0, y0, x1, y1 = f["box"]
        area = (x1 - x0) * (y1 - y0)
        central = x0 <= 125 <= x1 and y0 <= 125 <= y1  # LFW images are 250x250, centred on the subject
        key = (1 if central else 0, area)
        if f["path"] not in best or key > best[f["path"]][0]:
            best[f["path"]] = (key, i)
    idx = np.array([best[p][1] for p in paths if p in best], np.int64)
    ids = np.array([Path(p).parent.name for p in paths if p in best])
    return idx, ids, len(paths) - len(idx)


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Pairwise and BCubed precision/recall/F1; unclustered faces (-1) count as singletons."""
    from sklearn.metrics.cluster import contingency_matrix

    pred = pred.copy()
    noise = pred < 0
    pred[noise] = pred.max(initial=0) + 1 + np.arange(noise.sum())
    c = contingency_matrix(truth, pred, sparse=True).tocsr().astype(np.float64)  # rows: identities
    n = c.sum()
    nij = c.data
    a = np.asarray(c.sum(axis=0)).ravel()  # cluster sizes
    b = np.asarray(c.sum(axis=1)).ravel()  # identity sizes
    tp = (nij * (nij - 1) / 2).sum()
    pp = (a * (a - 1) / 2).sum()
    tt = (b * (b - 1) / 2).sum()
    p = tp / pp if pp else 1.0
    r = tp / tt if tt else 1.0
    coo = c.tocoo()
    bp = (coo.data ** 2 / a[coo.col]).sum() / n
    br = (coo.data ** 2 / b[coo.row]).sum() / n
    f1 = lambda x, y: 2 * x * y / (x + y) if x + y else 0.0  # noqa: E731
    return {"pair_p": p, "pair_r": r, "pair_f1": f1(p, r), "bcubed_p": bp, "bcubed_r": br, "bcubed_f1": f1(bp, br),
            "clusters": int(len(np.unique(pred))), "unclustered": int(noise.sum())}


def run(feats, faces, paths, methods, thresholds, min_samples, k) -> list[dict]:
    idx, truth, missing = subjects(faces, paths)
    print(f"{len(paths)} images, {len(faces)} faces, {len(idx)} scored subjects ({missing} images without a face), "
          f"{len(set(truth.tolist()))} identities among them")
    rows = []
    for method in methods:
        for thr in ([None] if method == "hdbscan" else thresholds):
            for ms in ([max(2, min_samples)] if method == "hdbscan" else [min_samples]):
                t0 = time.perf_counter()
                labels = cluster_features(feats, thr if thr is not None else 0.0, ms, method, k)
                secs = time.perf_counter() - t0
                s = scores(labels[idx], truth)
                rows.append({"method": method, "threshold": thr, "min_samples": ms, "seconds": secs,
                             "all_clusters": int(labels.max() + 1), **s})
                print(f"  {method:13s} thr={thr} -> pair F1 {s['pair_f1']:.4f}, BCubed F1 {s['bcubed_f1']:.4f}, "
                      f"{s['clusters']} clusters, {secs:.1f}s", flush=True)
    return rows


def scale(n: int, dim: int, method: str, threshold: float, k: int) -> None:
    """Clustering time and peak memory on ``n`` random unit features (no real structure)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    labels = cluster_features(x, threshold, 1, method, k)
    secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"scale: {n:,} x {dim} random features, {method}: {secs:.1f}s, {labels.max() + 1:,} clusters, "
          f"peak RSS {rss:.0f} MiB (features {x.nbytes / 2**20:.0f} MiB; before clustering {rss0:.0f} MiB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="SFace")
    ap.add_argument("--limit", type=int, default=None, help="first N images (sorted by path)")
    ap.add_argument("--refresh", action="store_true", help="re-embed even if the feature cache exists")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--thresholds", nargs="+", type=float, default=[0.3, 0.35, 0.4, 0.45, 0.5, 0.55])
    ap.add_argument("--min-samples", type=int, default=1)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--scale", type=int, default=None, help="also time N random features with the default method")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--embed-only", action="store_true", help="fill the feature cache and stop")
    ap.add_argument("--reverse", action="store_true", help="embed shards last to first (a second worker)")
    args = ap.parse_args()
    if args.scale:
        scale(args.scale, 128, DEFAULT_METHOD, FALLBACK_THRESHOLD, args.k)
        return 0
    feats, faces, paths, secs = embed_lfw(args.model, args.limit, args.refresh, reverse=args.reverse)
    if args.embed_only:
        return 0
    print(f"embedding (detect + align + {args.model}, all faces): {secs:.0f}s for {len(paths)} images "
          f"({secs / max(1, len(paths)) * 1e3:.1f} ms/img; cached runs report the first run's time)")
    rows = run(feats, faces, paths, args.methods, args.thresholds, args.min_samples, args.k)
    table = [["method", "thr", "pair P", "pair R", "pair F1", "BCubed P", "BCubed R", "BCubed F1", "clusters", "time s"]]
    for r in rows:
        table.append([r["method"], "-" if r["threshold"] is None else f"{r['threshold']:.3f}",
                      f"{r['pair_p']:.4f}", f"{r['pair_r']:.4f}", f"{r['pair_f1']:.4f}", f"{r['bcubed_p']:.4f}",
                      f"{r['bcubed_r']:.4f}", f"{r['bcubed_f1']:.4f}", str(r["clusters"]), f"{r['seconds']:.1f}"])
    print()
    print_table(table)
    best = max(rows, key=lambda r: r["pair_f1"])
    print(f"\nbest pairwise F1: {best['method']} at threshold {best['threshold']} ({best['pair_f1']:.4f}); "
          f"ground truth: {len(set(Path(p).parent.name for p in paths))} identities; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
