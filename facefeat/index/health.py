"""Gallery health: which stored samples and people will cause wrong answers, and what to do about it.

:func:`gallery_health` reads a stored gallery (features, figures, content hashes) and reports, at the
gallery's operating point (the model's calibrated 1:N threshold for the gallery's number of people,
resolved by :func:`facefeat.thresholds.resolve_threshold`, compared with the one match rule
:func:`facefeat.thresholds.is_match`):

(A model calibrated only for 1:1 gives its ``far=1e-3`` point.)

* **outliers**: a sample of a person with three or more samples that does not match the mean of the
  person's other samples, or matches another person's mean better than its own (a mislabelled photo:
  it lets that other person be recognised under this name); of a person with two samples that do
  not match each other, both (which one is wrong cannot be told);
* **close pairs**: two people whose means match each other (their faces will be confused);
* **quality**: samples whose stored quality figures fail the current policy
  (:mod:`facefeat.vision.quality`);
* **duplicates**: the same image (content hash) stored twice, for one person or under two names.

Each person gets a score (100 = nothing found) and the report ends with a short list of fixes,
the most harmful first.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from facefeat.registry import get_spec
from facefeat.results import BaseResult
from facefeat.thresholds import is_match, resolve_threshold

#: fixes listed by default (the report's counts cover all of them)
MAX_FIXES = 20
_CHUNK = 2048


class HealthReport(BaseResult):
    """``{"gallery", "model_name", "threshold", "operating_point", "policy", "people", "samples",
    "score", "counts", "persons", "close_pairs", "duplicates", "fixes"}``."""

    default_stem = "health"


def gallery_thresholds(meta: Mapping, thresholds: Mapping | None = None) -> dict | None:
    """The calibration a gallery is judged by: ``thresholds`` if given, else the record stored in the
    gallery's metadata (a migration writes the new model's), else the zoo's record of its model."""
    if thresholds is not None:
        return dict(thresholds)
    if isinstance(meta.get("thresholds"), Mapping):
        return dict(meta["thresholds"])
    try:
        rec = get_spec(str(meta.get("model_name"))).thresholds
        return dict(rec) if rec else None
    except Exception:  # noqa: BLE001 - not a zoo model: uncalibrated
        return None


def read_gallery(store: Any) -> tuple[np.ndarray, list[str], np.ndarray, dict]:
    """``(ids, labels, features, records)`` of every sample of a store (records without crops)."""
    ids, labels, feats = [], [], []
    for i, lab, _, f in store.load():
        ids.append(i)
        labels += lab
        feats.append(f)
    dim = int(store.meta()["dim"])
    idv = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    x = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
    return idv, labels, x, store.records(idv.tolist(), with_crops=False)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def gallery_health(store: Any, thresholds: Mapping | None = None, policy: Any = "standard",
                   rec_threshold: Any = "auto", max_fixes: int = MAX_FIXES) -> HealthReport:
    """The health report of the gallery in ``store`` (a :class:`~facefeat.index.store.GalleryStore`);
    see the module doc. ``rec_threshold`` a number overrides the calibrated operating point."""
    from facefeat.vision.quality import get_policy

    pol = get_policy(policy)
    meta = store.meta()
    ids, labels, x, recs = read_gallery(store)
    x = _unit(x)  # scores are cosines (an L2 gallery holds unit vectors: the same order)
    people = sorted(set(labels))
    rec = gallery_thresholds(meta, thresholds)
    t, op = resolve_threshold(rec, rec_threshold, task="identify", gallery_size=len(people), metric_type="IP")
    if op["source"] == "uncalibrated default" and (rec or {}).get("verification"):
        t, op = resolve_threshold(rec, rec_threshold, task="verify", metric_type="IP")  # only 1:1 calibrated
    by: dict[str, list[int]] = {}
    for p, lab in enumerate(labels):
        by.setdefault(lab, []).append(p)
    persons: dict[str, dict] = {lab: {"label": lab, "samples": len(by[lab]), "outliers": [], "quality": [],
                                      "duplicates": [], "too_close": []} for lab in people}
    # -- outliers: each sample against the mean of its person's other samples --------------------
    flagged: set[int] = set()
    sums = {lab: x[by[lab]].sum(0) for lab in people}
    for lab in people:
        pos = by[lab]
        if len(pos) == 2 and not is_match(float(x[pos[0]] @ x[pos[1]]), t):
            s = round(float(x[pos[0]] @ x[pos[1]]), 4)
            for p in pos:
                persons[lab]["outliers"].append({"id": int(ids[p]), "score": s, "why": "the person's two samples "
                                                 "do not match each other"})
                flagged.add(p)
        elif len(pos) >= 3:
            loo = _unit(sums[lab][None, :] - x[pos])  # the mean of the others, per sample
            own = np.einsum("ij,ij->i", x[pos], loo)
            for k, p in enumerate(pos):
                if not is_match(float(own[k]), t):
                    persons[lab]["outliers"].append({"id": int(ids[p]), "score": round(float(own[k]), 4),
                                                     "why": "does not match the person's other samples"})
                    flagged.add(p)
    # person means without their outliers; then each sample against the other people's means
    keep = {lab: [p for p in by[lab] if p not in flagged] or by[lab] for lab in people}
    cent = _unit(np.stack([x[keep[lab]].mean(0) for lab in people])) if people else np.zeros((0, x.shape[1]), np.float32)
    col = {lab: j for j, lab in enumerate(people)}
    for s in range(0, len(x), _CHUNK):
        sc = x[s:s + _CHUNK] @ cent.T
        own_col = np.asarray([col[labels[p]] for p in range(s, min(s + _CHUNK, len(x)))])
        mine = sc[np.arange(len(sc)), own_col].copy()
        sc[np.arange(len(sc)), own_col] = -np.inf
        best = sc.argmax(1) if len(people) > 1 else np.zeros(len(sc), int)
        for k in range(len(sc)):
            p = s + k
            other = float(sc[k, best[k]]) if len(people) > 1 else -1.0
            if p not in flagged and len(by[labels[p]]) >= 2 and other > mine[k] and is_match(other, t):
                persons[labels[p]]["outliers"].append({
                    "id": int(ids[p]), "score": round(float(mine[k]), 4), "closer_to": people[best[k]],
                    "closer_score": round(other, 4), "why": f"looks more like {people[best[k]]!r} than this person"})
                flagged.add(p)
    # -- people too close to each other -------------------------------------------------------------
    close: list[dict] = []
    for s in range(0, len(people), _CHUNK):
        sc = cent[s:s + _CHUNK] @ cent.T
        for k in range(len(sc)):
            sc[k, : s + k + 1] = -np.inf  # each pair once
        for a, b in zip(*np.nonzero(is_match(sc, t))):
            close.append({"labels": [people[s + a], people[b]], "score": round(float(sc[a, b]), 4)})
    close.sort(key=lambda c: -c["score"])
    for c in close:
        a, b = c["labels"]
        persons[a]["too_close"].append({"label": b, "score": c["score"]})
        persons[b]["too_close"].append({"label": a, "score": c["score"]})
    # -- quality under the current policy, and duplicates -------------------------------------------
    hashes: dict[str, list[int]] = {}
    no_figures = 0
    for p, i in enumerate(ids.tolist()):
        r = recs.get(i)
        fig = (r.figures if r is not None else None) or {}
        try:  # enrolment stores {"quality": {...figures}, "detected_by": ...}
            why = pol.reasons(fig.get("quality", fig))
        except (KeyError, TypeError):
            why, no_figures = [], no_figures + 1
        if why:
            persons[labels[p]]["quality"].append({"id": i, "reasons": why})
        if r is not None and r.content_hash:
            hashes.setdefault(r.content_hash, []).append(p)
    dups = []
    for h, ps in hashes.items():
        if len(ps) > 1:
            names = sorted({labels[p] for p in ps})
            dups.append({"content_hash": h, "ids": [int(ids[p]) for p in ps], "labels": names})
            for lab in names:
                persons[lab]["duplicates"].append([int(ids[p]) for p in ps])
    # -- scores and fixes ---------------------------------------------------------------------------
    for lab, row in persons.items():
        n = row["samples"]
        extra = sum(len(d) - 1 for d in row["duplicates"])
        score = (1 - len(row["outliers"]) / n) * (1 - 0.5 * len(row["quality"]) / n) * (1 - 0.5 * min(1, extra / n))
        score *= 0.6 if row["too_close"] else 1.0
        score *= 0.8 if n == 1 else 1.0
        row["score"] = round(100 * score, 1)
    fixes = _fixes(persons, close, dups)
    rows = sorted(persons.values(), key=lambda r: (r["score"], r["label"]))
    return HealthReport(
        gallery=getattr(store, "location", ""), model_name=meta.get("model_name"), threshold=round(t, 6),
        operating_point=op, policy=pol.name, people=len(people), samples=int(len(ids)),
        score=round(float(np.mean([r["score"] for r in rows])), 1) if rows else 100.0,
        counts={"outliers": sum(len(r["outliers"]) for r in rows), "close_pairs": len(close),
                "quality": sum(len(r["quality"]) for r in rows), "duplicates": len(dups),
                "single_sample_people": sum(r["samples"] == 1 for r in rows), "without_figures": no_figures,
                "fixes": len(fixes)},
        persons=rows, close_pairs=close, duplicates=dups, fixes=fixes[:max(0, int(max_fixes))])


def _fixes(persons: dict, close: list, dups: list) -> list[dict]:
    """Fixes, the most harmful first: mislabelled samples, disagreeing samples, confusable people,
    duplicates under two names, duplicates, poor samples, people with a single sample."""
    out: list[tuple[int, float, dict]] = []
    for lab, row in persons.items():
        for o in row["outliers"]:
            rank = 0 if "closer_to" in o else 1
            out.append((rank, o["score"], {"action": "remove_sample", "id": o["id"], "label": lab, "why": o["why"]}))
        for q in row["quality"]:
            out.append((5, 0.0, {"action": "replace_sample", "id": q["id"], "label": lab,
                                 "why": "; ".join(q["reasons"])}))
        if row["samples"] == 1:
            out.append((6, 0.0, {"action": "add_samples", "label": lab, "why": "one sample only: a bad photo "
                                 "cannot be told from a good one"}))
    for c in close:
        out.append((2, -c["score"], {"action": "review_people", "labels": c["labels"], "score": c["score"],
                                     "why": "their faces match each other at the gallery's threshold (the same "
                                            "person under two names, or look-alikes needing more samples)"}))
    for d in dups:
        if len(d["labels"]) > 1:
            out.append((3, 0.0, {"action": "review_samples", "ids": d["ids"], "labels": d["labels"],
                                 "why": "the same image is stored under different names"}))
        else:
            out.append((4, 0.0, {"action": "remove_sample", "id": d["ids"][-1], "label": d["labels"][0],
                                 "why": f"the same image as sample {d['ids'][0]}"}))
    out.sort(key=lambda r: (r[0], r[1]))
    return [f for _, _, f in out]


__all__ = ["HealthReport", "gallery_health", "gallery_thresholds", "read_gallery"]
