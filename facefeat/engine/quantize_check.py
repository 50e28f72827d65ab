"""Does an int8 model agree with the model it came from, on a gallery's own faces?

The gallery's model is the one its samples record (name and weights hash); its stored aligned
crops are the calibration faces, spread over its people; its same-person and different-person
pairs (sampled, bounded) are scored by both models and compared:
* ``cosine``: min and mean cosine between each crop's fp32 and int8 features;
* ``fp32`` / ``int8``: AUC, TAR at FAR 1e-2 and 1e-3 and accuracy at the gallery's threshold, each model on the same pairs;
* ``flips``: pairs whose match decision (the one match rule, at the gallery's 1:1 threshold)
  differs between the two models.

:data:`AGREEMENT_BAR`: the int8 model passes when its min cosine is >= 0.95, its AUC is at most
0.005 below the fp32 model's, and at most 1 % of the pair decisions flip (one flip is always
tolerated, so a small gallery is not refused for a single borderline pair).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from facefeat.engine.verification import roc_metrics
from facefeat.errors import FaceIndexError, InputError
from facefeat.index.lifecycle_common import decode_crop
from facefeat.registry import get_spec, list_models

AGREEMENT_BAR = {"min_cosine": 0.95, "max_auc_drop": 0.005, "max_flip_rate": 0.01}


def gallery_model(store: Any, model_name: str | None, weights: Any, model_dir: Any) -> tuple:
    """``(fp32 predictor, model dir, model file, meta, thresholds)`` of the model the gallery in
    ``store`` was embedded with; naming another model (or weights) is an :class:`InputError`."""
    from facefeat.pipeline.enrol import weights_hash
    from facefeat.predict.predictor import create_model
    from facefeat.runtime.quantize import source_model
    from facefeat.thresholds import model_thresholds

    meta, where = store.meta(), store.location
    name = meta.get("model_name")
    if not name:
        raise InputError(f"gallery {where!r} records no model name; quantise with --model NAME --calib PHOTOS")
    if model_dir is not None:
        src_dir, src_file, src = source_model(model_dir=model_dir)
        if src.model_name != name:
            raise InputError(f"--model-dir {str(model_dir)!r} holds {src.model_name}, but gallery {where!r} was "
                             f"embedded with {name}; give the gallery's model")
        fp32 = create_model(model_dir=model_dir, precision="fp32")
    else:
        if model_name is not None and get_spec(model_name).name != name:
            raise InputError(f"--model {model_name} does not match gallery {where!r}, which was embedded with {name}; "
                             f"leave --model out (the gallery's model is used) or give --model {name}")
        if name not in list_models():
            raise InputError(f"gallery {where!r} was embedded with {name!r}, which is not a zoo model; give its fp32 "
                             "model directory with --model-dir")
        src_dir, src_file, src = source_model(name, weights)
        fp32 = create_model(name, weights, precision="fp32")
    if int(meta.get("dim") or fp32.embedding_size) != fp32.embedding_size:
        raise InputError(f"gallery {where!r} holds {meta.get('dim')}-d features, {name} gives {fp32.embedding_size}-d")
    ids = [int(i) for chunk, *_ in store.load() for i in chunk]
    recorded = {r.weights_hash for r in store.records(ids, with_crops=False).values() if r.weights_hash}
    have = weights_hash(fp32)
    if recorded and have not in recorded:
        raise InputError(f"gallery {where!r} was embedded with {name} weights {sorted(recorded)[:3]}, but the model "
                         f"resolved here has weights {have}; give the gallery's weights (--weights / --model-dir)")
    thresholds = meta.get("thresholds") or model_thresholds(fp32)
    return fp32, src_dir, src_file, src, thresholds


def spread(ids: Sequence[int], labels: Sequence[str], limit: int) -> list[int]:
    """Up to ``limit`` sample ids taken round-robin over the people (sorted by label), so that a
    person with many samples does not crowd out the others."""
    by: dict[str, list[int]] = {}
    for i, lab in zip(ids, labels):
        by.setdefault(lab, []).append(int(i))
    queues = [by[k] for k in sorted(by)]
    out: list[int] = []
    depth = 0
    while len(out) < limit and any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)][:limit - len(out)]
        depth += 1
    return out


def check_pairs(ids: Sequence[int], label_of: dict[int, str], max_pairs: int,
                seed: int = 0) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Same-person and different-person pairs of ``ids`` (at most ``max_pairs`` of each, sampled
    with ``seed``)."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = {}
    for i in ids:
        by.setdefault(label_of[i], []).append(i)
    same = [(a[x], a[y]) for a in by.values() for x in range(len(a)) for y in range(x + 1, len(a))]
    if len(same) > max_pairs:
        same = [same[k] for k in sorted(rng.choice(len(same), max_pairs, replace=False))]
    diff: set[tuple[int, int]] = set()
    n = len(ids)
    n_diff = n * (n - 1) // 2 - len(same)  # an upper bound of the different-person pairs there are
    want = min(max_pairs, max(0, n_diff))
    for _ in range(20 * max(1, want)):  # bounded: random draws, duplicates and same-person pairs rejected
        if len(diff) >= want:
            break
        a, b = (int(v) for v in rng.choice(n, 2, replace=False))
        if label_of[ids[a]] != label_of[ids[b]]:
            diff.add((min(ids[a], ids[b]), max(ids[a], ids[b])))
    return same, sorted(diff)


def read_crops(store: Any, ids: Sequence[int], size: tuple[int, int], model_name: str) -> dict[int, np.ndarray]:
    """The stored crops of ``ids`` decoded (BGR); each must be the model's input size ``(h, w)``."""
    out: dict[int, np.ndarray] = {}
    for s in range(0, len(ids), 256):
        part = list(ids[s:s + 256])
        recs = store.records(part, with_crops=True)
        for i in part:
            r = recs.get(i)
            img = None if r is None else decode_crop(r.crop)
            if img is None:
                raise FaceIndexError(f"{store.location}: sample {i} has no stored face crop (or it is not an image); "
                                     "re-enrol or remove it, or quantise with --calib PHOTOS")
            if tuple(img.shape[:2]) != tuple(size):
                raise InputError(f"gallery {store.location!r} stores {img.shape[1]}x{img.shape[0]} crops, but "
                                 f"{model_name} takes {size[1]}x{size[0]} faces (its own crop is not kept in the "
                                 "gallery); quantise it with --calib PHOTOS instead")
            out[i] = img
    return out


def agreement(fp32: Any, int8: Any, faces: dict[int, np.ndarray], check_ids: Sequence[int],
              same: Sequence[tuple[int, int]], diff: Sequence[tuple[int, int]], thresholds: Any) -> dict:
    """The agreement report of ``int8`` against ``fp32`` (see the module doc)."""
    from facefeat.thresholds import is_match, resolve_threshold

    imgs = [faces[i] for i in check_ids]
    a = np.asarray(fp32.embed(imgs, False), np.float64)
    b = np.asarray(int8.embed(imgs, False), np.float64)
    cos = np.sum(a * b, axis=1)
    row = {i: k for k, i in enumerate(check_ids)}
    pairs = list(same) + list(diff)
    p, q = np.array([row[x] for x, _ in pairs]), np.array([row[y] for _, y in pairs])
    y = np.array([1] * len(same) + [0] * len(diff))
    t, op = resolve_threshold(thresholds, "auto", task="verify")
    out: dict[str, Any] = {"faces": len(check_ids), "pairs": {"same": len(same), "different": len(diff)},
                           "cosine": {"min": float(cos.min()), "mean": float(cos.mean())},
                           "threshold": float(t), "operating_point": op.get("operating_point"),
                           "threshold_source": op.get("source"), "bar": dict(AGREEMENT_BAR)}
    decisions = []
    for key, f in (("fp32", a), ("int8", b)):
        s = np.sum(f[p] * f[q], axis=1)
        m = is_match(s, t)
        roc = roc_metrics(s, y, fars=(1e-2, 1e-3))
        out[key] = {"auc": float(roc["auc"]), "accuracy": float(np.mean(m == (y == 1))),
                    "tar_at_far": {k: v.get("tar") for k, v in roc.get("tar_at_far", {}).items()}}
        decisions.append(m)
    out["flips"] = int(np.sum(decisions[0] != decisions[1]))
    return out


def passes(report: dict) -> bool:
    """Whether an agreement report meets :data:`AGREEMENT_BAR`."""
    bar, n = report["bar"], report["pairs"]["same"] + report["pairs"]["different"]
    return bool(report["cosine"]["min"] >= bar["min_cosine"]
                and report["fp32"]["auc"] - report["int8"]["auc"] <= bar["max_auc_drop"]
                and report["flips"] <= max(1, int(bar["max_flip_rate"] * n)))


__all__ = ["AGREEMENT_BAR", "agreement", "check_pairs", "gallery_model", "passes", "read_crops", "spread"]
