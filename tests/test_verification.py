"""Verification metrics against cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facefeat.engine.verification import (
    accuracy_at,
    best_threshold,
    contiguous_folds,
    evaluate_pairs,
    kfold_accuracy,
    roc_metrics,
    save_roc_png,
)
from facefeat.errors import InputError


def _interleaved(pos: np.ndarray, neg: np.ndarray, folds: int = 10):
    """LFW-like order: each fold holds an equal share of positives then negatives."""
    s, y = [], []
    for p, n in zip(np.array_split(pos, folds), np.array_split(neg, folds)):
        s += [p, n]
        y += [np.ones(p.size), np.zeros(n.size)]
    return np.concatenate(s), np.concatenate(y).astype(int)


def test_separable_scores_accuracy_one_threshold_between_classes():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0.6, 0.9, 300)
    neg = rng.uniform(-0.2, 0.3, 300)
    s, y = _interleaved(pos, neg)
    r = kfold_accuracy(s, y)
    assert r["accuracy"] == 1.0 and r["std"] == 0.0
    assert len(r["fold_accuracies"]) == 10 and len(r["fold_thresholds"]) == 10
    for t in r["fold_thresholds"]:
        assert 0.3 <= t <= 0.6 or neg.max() < t < pos.min()
    # the chosen threshold is the midpoint of the gap (middle of the tied plateau)
    assert r["best_threshold"] == pytest.approx((neg.max() + pos.min()) / 2)
    assert r["best_threshold_accuracy"] == 1.0


def test_exactly_k_mistakes():
    # 10 folds x (5 pos + 5 neg); positives at 1.0, negatives at 0.0, except 3 negatives at 2.0
    # in three different folds: no threshold can fix those, so accuracy = 1 - 3/100 exactly.
    s, y = _interleaved(np.ones(50), np.zeros(50))
    neg_idx = np.flatnonzero(y == 0)
    bad = [neg_idx[0], neg_idx[12], neg_idx[27]]  # folds 0, 2, 5
    s[bad] = 2.0
    r = kfold_accuracy(s, y)
    assert r["accuracy"] == pytest.approx(0.97)
    assert sorted(r["fold_accuracies"]).count(0.9) == 3
    assert all(0.0 < t < 1.0 for t in r["fold_thresholds"])
    thr, acc = best_threshold(s, y)
    assert acc == pytest.approx(0.97) and 0.0 < thr < 1.0
    assert accuracy_at(s, y, 0.5) == pytest.approx(0.97)


def test_fold_ids_given():
    s = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4])
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    r = kfold_accuracy(s, y, fold_ids=[0, 0, 1, 1, 2, 2, 3, 3])
    assert r["folds"] == 4 and r["accuracy"] == 1.0
    assert contiguous_folds(10, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_threshold_search_on_a_large_set():
    """60k pairs (its speed: bench/verification.py)."""
    rng = np.random.default_rng(1)
    s, y = _interleaved(rng.normal(1, 1, 30000), rng.normal(-1, 1, 30000))
    r = kfold_accuracy(s, y)
    # Bayes accuracy for N(+1,1) vs N(-1,1) is Phi(1) = 0.8413
    assert r["accuracy"] == pytest.approx(0.8413, abs=0.01)
    assert abs(r["threshold_mean"]) < 0.05


def test_auc_of_known_ranking():
    # positives rank above all negatives but one: AUC = 1 - 1/(P*N)
    s = np.array([0.9, 0.8, 0.7, 0.75, 0.2, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0])
    r = roc_metrics(s, y)
    assert r["auc"] == pytest.approx(1 - 1 / 9)
    # perfect and inverted ranking
    assert roc_metrics([3, 2, 1, 0], [1, 1, 0, 0])["auc"] == 1.0
    assert roc_metrics([0, 1, 2, 3], [1, 1, 0, 0])["auc"] == 0.0
    # all scores tied: chance
    assert roc_metrics([0.5] * 4, [1, 0, 1, 0])["auc"] == pytest.approx(0.5)
    assert r["fpr"][0] == 0 and r["tpr"][0] == 0 and r["fpr"][-1] == 1 and r["tpr"][-1] == 1
    assert np.all(np.isfinite(r["thresholds"]))


def test_eer_of_symmetric_gaussians():
    # N(+d/2,1) vs N(-d/2,1): EER = Phi(-d/2); d = 2 -> 0.1587, threshold 0
    rng = np.random.default_rng(2)
    n = 40000
    s = np.r_[rng.normal(1, 1, n), rng.normal(-1, 1, n)]
    y = np.r_[np.ones(n), np.zeros(n)]
    r = roc_metrics(s, y)
    assert r["eer"] == pytest.approx(0.1587, abs=0.006)
    assert r["eer_threshold"] == pytest.approx(0.0, abs=0.03)
    # AUC = Phi(d / sqrt(2)) = Phi(1.4142) = 0.9214
    assert r["auc"] == pytest.approx(0.9214, abs=0.005)
    # TAR @ FAR: threshold = 1 + z, TAR = Phi(2 - z) with z = Phi^-1(1 - far)
    tar2 = r["tar_at_far"]["1e-02"]
    assert tar2["far"] <= 0.01
    z = 2.3263
    assert tar2["tar"] == pytest.approx(0.5 * (1 + math.erf((2 - z) / math.sqrt(2))), abs=0.02)
    assert tar2["threshold"] == pytest.approx(-1 + z, abs=0.05)
    assert r["tar_at_far"]["1e-03"]["far"] <= 0.001


def test_evaluate_pairs_combines(tmp_path):
    rng = np.random.default_rng(3)
    s, y = _interleaved(rng.normal(0.6, 0.15, 300), rng.normal(0.1, 0.15, 300))
    m = evaluate_pairs(s, y)
    for k in ("accuracy", "std", "auc", "eer", "tar_at_far", "recommended_threshold", "kfold", "roc"):
        assert k in m
    assert m["recommended_threshold"] == pytest.approx(np.mean(m["kfold"]["fold_thresholds"]))
    assert 0.1 < m["recommended_threshold"] < 0.6
    assert m["accuracy"] > 0.9 and m["auc"] > 0.95
    out = save_roc_png(m, tmp_path / "roc.png")
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (720, 560)
    # several curves on one plot
    save_roc_png({"a": m, "b": roc_metrics(s + rng.normal(0, 0.2, s.size), y)}, tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_small_inputs_and_errors():
    m = evaluate_pairs([0.9, 0.1, 0.8, 0.2], [1, 0, 1, 0])  # fewer pairs than 10 folds
    assert m["kfold"]["folds"] == 2  # label-balanced folds: 2 pairs per class -> 2 folds, each with both
    with pytest.raises(InputError, match="0 .*1"):
        kfold_accuracy([0.1, 0.2], [0, 2])
    with pytest.raises(InputError, match="lengths"):
        roc_metrics([0.1, 0.2], [0])
    with pytest.raises(InputError, match="empty"):
        roc_metrics([], [])
    with pytest.raises(InputError, match="finite"):
        roc_metrics([0.1, float("nan")], [0, 1])
    one_class = roc_metrics([0.1, 0.2], [1, 1])
    assert math.isnan(one_class["auc"])
