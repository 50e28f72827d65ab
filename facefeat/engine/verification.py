"""Face-verification metrics on pair scores (numpy only).

Scores are similarities (higher = more alike, e.g. cosine of L2-normalised features); labels are
1 for "same person" and 0 for "different people". A pair is predicted "same" when
``score > threshold``.

* :func:`kfold_accuracy` - the standard LFW protocol: in each of 10 folds the threshold that
  maximises accuracy on the other 9 folds is applied to the held-out fold.
* :func:`roc_metrics` - ROC curve, AUC, EER, TAR at FAR 1e-2 / 1e-3.
* :func:`evaluate_pairs` - both together, with a recommended threshold.
* :func:`save_roc_png` - a ROC plot with a logarithmic FAR axis (matplotlib).

Threshold candidates are the midpoints between consecutive distinct scores, plus one point below
the lowest and one above the highest score (so "everything same" / "everything different" are
candidates too). When several candidates reach the same best accuracy, the middle one of them is
taken (the centre of the widest plateau is the most stable choice; for separable scores it is the
midpoint of the gap between the classes).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from facefeat.errors import InputError
from facefeat.plots import save_roc_png as _plot

__all__ = [
    "accuracy_at",
    "best_threshold",
    "evaluate_pairs",
    "kfold_accuracy",
    "roc_metrics",
    "save_roc_png",
    "contiguous_folds",
]

FARS = (1e-2, 1e-3)


def _prep(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise InputError(f"scores ({s.size}) and labels ({y.size}) have different lengths")
    if s.size == 0:
        raise InputError("no pairs to evaluate (empty scores)")
    if not np.all(np.isfinite(s)):
        bad = int(np.flatnonzero(~np.isfinite(s))[0])
        raise InputError(f"scores must be finite; pair {bad} has score {s[bad]}")
    uy = np.unique(y)
    if not np.all(np.isin(uy, (0, 1))):
        raise InputError(f"labels must be 0 (different) or 1 (same); got values {uy[:10].tolist()}")
    return s, y.astype(np.int8)


def _candidates(s: np.ndarray) -> np.ndarray:
    u = np.unique(s)
    mids = (u[:-1] + u[1:]) / 2.0
    lo = u[0] - max(1e-6, 1e-6 * abs(u[0]))
    hi = u[-1] + max(1e-6, 1e-6 * abs(u[-1]))
    return np.concatenate(([lo], mids, [hi]))


def _correct_counts(s: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of correct decisions (score > t means same) for every threshold t, vectorised."""
    pos = np.sort(s[y == 1])
    neg = np.sort(s[y == 0])
    tp = pos.size - np.searchsorted(pos, thresholds, side="right")  # positives above t
    tn = np.searchsorted(neg, thresholds, side="right")  # negatives at or below t
    return tp + tn


def _pick(thresholds: np.ndarray, correct: np.ndarray) -> tuple[float, int]:
    best = correct.max()
    ties = np.flatnonzero(correct == best)
    i = int(ties[len(ties) // 2])
    return float(thresholds[i]), int(best)


def best_threshold(scores: Any, labels: Any) -> tuple[float, float]:
    """The accuracy-maximising threshold on these pairs and the accuracy it reaches."""
    s, y = _prep(scores, labels)
    cand = _candidates(s)
    thr, correct = _pick(cand, _correct_counts(s, y, cand))
    return thr, correct / s.size


def accuracy_at(scores: Any, labels: Any, threshold: float) -> float:
    """Accuracy when pairs with ``score > threshold`` are called "same"."""
    s, y = _prep(scores, labels)
    return float(np.mean((s > threshold) == (y == 1)))


def contiguous_folds(n: int, folds: int) -> np.ndarray:
    """Fold id per pair for ``n`` pairs cut into ``folds`` contiguous, near-equal blocks (LFW order)."""
    if folds < 2:
        raise InputError(f"folds must be >= 2, got {folds}")
    if n < folds:
        raise InputError(f"{n} pairs cannot be split into {folds} folds; use fewer folds")
    ids = np.empty(n, dtype=np.int64)
    for k, block in enumerate(np.array_split(np.arange(n), folds)):
        ids[block] = k
    return ids


def stratified_folds(labels: Any, folds: int = 10) -> np.ndarray | None:
    """Fold id per pair: the i-th matched pair goes to fold ``i * folds // n_matched``, likewise
    for mismatched pairs, so every fold is balanced and keeps file order.

    On LFW's full pairs.txt order (each fold: 300 matched, then 300 mismatched) this is exactly the
    standard 10 folds. Plain contiguous blocks are not, once pairs are subsampled or dropped: a
    block may hold one class only, and then the threshold fitted on the other blocks is biased
    against the held-out class (accuracy can fall below 50% for a model with AUC 0.7). Returns
    None when fewer than 2 folds would result.
    """
    y = np.asarray(labels).reshape(-1)
    ids = np.zeros(y.size, dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        if idx.size:
            ids[idx] = (np.arange(idx.size) * int(folds)) // idx.size
    return ids if np.unique(ids).size >= 2 else None


def kfold_accuracy(scores: Any, labels: Any, folds: int = 10, fold_ids: Any = None) -> dict:
    """K-fold verification accuracy (the LFW protocol).

    For each fold k the threshold is chosen on the pairs outside k (accuracy-maximising, see the
    module doc) and accuracy is measured on fold k. ``fold_ids`` gives each pair's fold; when None
    the folds are :func:`stratified_folds` (on LFW's full pairs.txt: exactly the standard folds).

    Returns ``accuracy`` (mean over folds), ``std``, ``fold_accuracies``, ``fold_thresholds``,
    ``threshold_mean`` (mean of the fold thresholds: the protocol's threshold estimate),
    ``best_threshold`` / ``best_threshold_accuracy`` (maximising accuracy on all pairs; optimistic),
    ``folds``, ``num_pairs``, ``num_positive``, ``num_negative``.
    """
    s, y = _prep(scores, labels)
    if fold_ids is None:
        fid = stratified_folds(y, int(folds))
        if fid is None:
            fid = contiguous_folds(s.size, int(folds))
    else:
        fid = np.asarray(fold_ids).reshape(-1)
        if fid.shape != s.shape:
            raise InputError(f"fold_ids ({fid.size}) and scores ({s.size}) have different lengths")
    uniq = np.unique(fid)
    if uniq.size < 2:
        raise InputError(f"need at least 2 folds, fold_ids has {uniq.size}")
    accs, thrs, sizes = [], [], []
    for k in uniq:
        test = fid == k
        train = ~test
        cand = _candidates(s[train])
        thr, _ = _pick(cand, _correct_counts(s[train], y[train], cand))
        accs.append(float(np.mean((s[test] > thr) == (y[test] == 1))))
        thrs.append(thr)
        sizes.append(int(test.sum()))
    all_thr, all_acc = best_threshold(s, y)
    accs_a = np.asarray(accs)
    return {
        "accuracy": float(accs_a.mean()),
        "std": float(accs_a.std()),
        "fold_accuracies": accs,
        "fold_thresholds": thrs,
        "fold_sizes": sizes,
        "threshold_mean": float(np.mean(thrs)),
        "best_threshold": all_thr,
        "best_threshold_accuracy": all_acc,
        "folds": int(uniq.size),
        "num_pairs": int(s.size),
        "num_positive": int((y == 1).sum()),
        "num_negative": int((y == 0).sum()),
    }


def roc_metrics(scores: Any, labels: Any, fars: Sequence[float] = FARS) -> dict:
    """ROC curve, AUC, EER and TAR at the given FARs.

    * ``fpr``, ``tpr``, ``thresholds`` (numpy arrays): one point per distinct score, from the
      strictest threshold (``max score + 1``: nothing accepted, kept finite for JSON) down to the
      lowest score (everything accepted). A pair is accepted when ``score >= threshold``.
    * ``auc``: trapezoidal area under the ROC (ties count half, as the Mann-Whitney statistic).
    * ``eer``: where FAR = FRR (= 1 - TPR), linearly interpolated between ROC points;
      ``eer_threshold`` interpolated the same way.
    * ``tar_at_far``: ``{"1e-02": {"tar", "far", "threshold"}, ...}``: the highest TAR whose FAR
      does not exceed the target. With few negative pairs the achievable FAR steps are
      ``1/num_negative``; ``far_resolution`` reports that step.
    * ``recommended_threshold``: the accuracy-maximising threshold over all pairs (as in
      :func:`best_threshold`), with ``recommended_accuracy``. :func:`evaluate_pairs` recommends the
      10-fold mean threshold instead, which is not fitted to the pairs it is scored on.
    """
    s, y = _prep(scores, labels)
    n_pos = int((y == 1).sum())
    n_neg = int((y == 0).sum())
    order = np.argsort(-s, kind="mergesort")
    ss, yy = s[order], y[order]
    # last index of each group of equal scores (descending)
    distinct = np.flatnonzero(np.diff(ss) != 0)
    ends = np.concatenate((distinct, [ss.size - 1]))
    tps = np.cumsum(yy == 1)[ends]
    fps = np.cumsum(yy == 0)[ends]
    tpr = np.concatenate(([0.0], tps / n_pos if n_pos else np.zeros(ends.size)))
    fpr = np.concatenate(([0.0], fps / n_neg if n_neg else np.zeros(ends.size)))
    thresholds = np.concatenate(([ss[0] + 1.0], ss[ends]))
    out: dict[str, Any] = {
        "fpr": fpr,
        "tpr": tpr,
        "thresholds": thresholds,
        "num_positive": n_pos,
        "num_negative": n_neg,
        "far_resolution": (1.0 / n_neg) if n_neg else None,
    }
    if n_pos and n_neg:
        out["auc"] = float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))
        fnr = 1.0 - tpr
        i = int(np.argmax(fnr <= fpr))  # first point where FRR has dropped to FAR (exists: last point)
        if i == 0:
            eer, eer_thr = 0.0, float(thresholds[0])
        else:
            d0 = fnr[i - 1] - fpr[i - 1]  # > 0
            d1 = fnr[i] - fpr[i]  # <= 0
            a = d0 / (d0 - d1) if d0 != d1 else 0.0
            eer = float(fpr[i - 1] + a * (fpr[i] - fpr[i - 1]))
            eer_thr = float(thresholds[i - 1] + a * (thresholds[i] - thresholds[i - 1]))
        out["eer"] = eer
        out["eer_threshold"] = eer_thr
        tar: dict[str, dict] = {}
        for far in fars:
            ok = np.flatnonzero(fpr <= far + 1e-12)
            j = int(ok[-1])  # fpr and tpr are non-decreasing: the last allowed point has the best TAR
            tar[f"{far:.0e}"] = {"tar": float(tpr[j]), "far": float(fpr[j]), "threshold": float(thresholds[j])}
        out["tar_at_far"] = tar
    else:
        out["auc"] = float("nan")
        out["eer"] = float("nan")
        out["eer_threshold"] = float("nan")
        out["tar_at_far"] = {f"{far:.0e}": {"tar": float("nan"), "far": float("nan"), "threshold": float("nan")} for far in fars}
    thr, acc = best_threshold(s, y)
    out["recommended_threshold"] = thr
    out["recommended_accuracy"] = acc
    return out


def evaluate_pairs(scores: Any, labels: Any, fold_ids: Any = None, folds: int = 10, fars: Sequence[float] = FARS) -> dict:
    """10-fold accuracy + ROC metrics for verification pairs.

    Top-level keys: ``accuracy``, ``std`` (10-fold), ``auc``, ``eer``, ``eer_threshold``,
    ``tar_at_far``, ``recommended_threshold`` (the mean of the 10 fold thresholds: each was chosen
    without seeing its own fold, so it is the honest estimate to deploy), ``best_threshold``
    (fitted on all pairs), ``num_pairs``/``num_positive``/``num_negative``, and the full
    ``kfold`` and ``roc`` dicts. With fewer pairs than folds the k-fold part uses as many folds as
    there are pairs (at least 2).
    """
    s, y = _prep(scores, labels)
    if fold_ids is None:
        folds = max(2, min(int(folds), s.size))
    kf = kfold_accuracy(s, y, folds=folds, fold_ids=fold_ids)
    roc = roc_metrics(s, y, fars=fars)
    return {
        "accuracy": kf["accuracy"],
        "std": kf["std"],
        "auc": roc["auc"],
        "eer": roc["eer"],
        "eer_threshold": roc["eer_threshold"],
        "tar_at_far": roc["tar_at_far"],
        "recommended_threshold": kf["threshold_mean"],
        "best_threshold": kf["best_threshold"],
        "best_threshold_accuracy": kf["best_threshold_accuracy"],
        "num_pairs": kf["num_pairs"],
        "num_positive": kf["num_positive"],
        "num_negative": kf["num_negative"],
        "kfold": kf,
        "roc": roc,
    }


# ---------------------------------------------------------------------------------------------
# ROC plot (matplotlib: facefeat.plots)


def _curves(metrics: Mapping) -> list[tuple[str, Mapping]]:
    def roc_of(m: Mapping) -> Mapping | None:
        if "fpr" in m and "tpr" in m:
            return m
        if isinstance(m.get("roc"), Mapping) and "fpr" in m["roc"]:
            return m["roc"]
        return None

    single = roc_of(metrics)
    if single is not None:
        return [("", single)]
    out = []
    for name, m in metrics.items():
        r = roc_of(m) if isinstance(m, Mapping) else None
        if r is None:
            raise InputError(f"save_roc_png: entry {name!r} has no ROC (fpr/tpr); pass roc_metrics()/evaluate_pairs() output")
        out.append((str(name), r))
    if not out:
        raise InputError("save_roc_png: no ROC curve given")
    return out


def save_roc_png(metrics: Mapping, path: str | os.PathLike, title: str = "ROC", size: tuple[int, int] = (720, 560)) -> str:
    """Draw the ROC (TAR vs FAR, FAR on a log axis) to a PNG, written atomically.

    ``metrics`` is the output of :func:`roc_metrics` or :func:`evaluate_pairs`, or a mapping
    ``{curve name: that output}`` to compare several models on one plot. The legend shows AUC,
    EER and TAR@FAR=1e-3 of each curve; the EER and the TAR at FAR 1e-3 / 1e-2 are marked
    (:func:`facefeat.plots.save_roc_png`).
    """
    return _plot(_curves(metrics), path, title=title, size=size)
