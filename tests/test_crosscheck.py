"""facefeat's hand-written maths against independent implementations: verification metrics vs
scikit-learn on real LFW scores, the 10-fold protocol vs a threshold-grid implementation on LFW's
own folds, and the 5-point similarity transform vs scikit-image's and OpenCV's estimators."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefeat.engine.verification import evaluate_pairs, roc_metrics
from facefeat.vision.align import similarity_transform, template

PER_FOLD = 15  # positive and negative pairs taken from each of LFW's 10 folds (300 pairs)


@pytest.fixture(scope="module")
def lfw_scores(lfw_dir, lfw_pairs):
    """Real scores: SFace cosines of LFW pairs (centre crops), with LFW's fold of each pair."""
    from facefeat import create_model
    from facefeat.data.formats import read_pairs
    from facefeat.data.lfw_demo import center_crop
    from facefeat.engine.evaluate import pair_scores

    ps = read_pairs(lfw_pairs, lfw_dir.parent)
    keep = []
    for f in range(10):
        idx = np.flatnonzero(ps.fold_ids == f)
        pos = [i for i in idx if ps[i].label == 1][:PER_FOLD]
        neg = [i for i in idx if ps[i].label == 0][:PER_FOLD]
        keep += pos + neg
    pairs = [ps[i] for i in keep]
    images = list(dict.fromkeys(x for p in pairs for x in (p.left, p.right)))
    pos = {p: i for i, p in enumerate(images)}
    model = create_model("SFace", batch_size=32)
    feats = model.raw_features([center_crop(cv2.imread(p)) for p in images])
    left = np.array([pos[p.left] for p in pairs])
    right = np.array([pos[p.right] for p in pairs])
    scores = pair_scores(feats, left, right)
    labels = np.array([p.label for p in pairs])
    return scores, labels, ps.fold_ids[keep]


def test_roc_metrics_match_scikit_learn(lfw_scores):
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve

    s, y, _ = lfw_scores
    ours = roc_metrics(s, y, fars=(1e-2, 1e-1))
    assert ours["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(ours["fpr"], fpr, atol=1e-12)
    np.testing.assert_allclose(ours["tpr"], tpr, atol=1e-12)
    np.testing.assert_allclose(ours["thresholds"][1:], thr[1:])
    for far in (1e-2, 1e-1):
        assert ours["tar_at_far"][f"{far:.0e}"]["tar"] == pytest.approx(tpr[fpr <= far + 1e-12].max())
    # EER as facenet computes it: where TPR(FPR) = 1 - FPR on the linearly interpolated ROC
    fx = np.unique(fpr)
    fy = np.array([tpr[fpr == v].max() for v in fx])
    curve = interp1d(fx, fy)
    eer = brentq(lambda x: 1.0 - x - curve(x), 0.0, 1.0)
    assert ours["eer"] == pytest.approx(eer, abs=2.0 / (y == 0).sum())
    thr_best = ours["recommended_threshold"]
    assert ours["recommended_accuracy"] == pytest.approx(accuracy_score(y, s > thr_best))
    # no threshold does better
    grid = np.unique(s)
    assert ours["recommended_accuracy"] >= max(accuracy_score(y, s > t) for t in np.r_[grid, grid - 1e-9])


def _kfold_grid(s: np.ndarray, y: np.ndarray, folds: np.ndarray, step: float = 1e-3) -> list[float]:
    """The classic LFW protocol as facenet/insightface write it: a fixed threshold grid, the best
    one on the nine training folds applied to the held-out fold (sklearn's PredefinedSplit)."""
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import PredefinedSplit

    grid = np.arange(-1.0, 1.0 + step, step)
    accs = []
    for train, test in PredefinedSplit(folds).split():
        train_acc = ((s[train, None] > grid) == (y[train, None] == 1)).mean(axis=0)
        best = grid[int(np.argmax(train_acc))]
        accs.append(accuracy_score(y[test], s[test] > best))
    return accs


def test_lfw_10fold_matches_an_independent_implementation(lfw_scores):
    s, y, folds = lfw_scores
    ours = evaluate_pairs(s, y, fold_ids=folds)
    ref = _kfold_grid(s, y, folds)
    assert ours["kfold"]["folds"] == 10
    # the two pick thresholds from different candidates (midpoints vs a 1e-3 grid): a fold may
    # differ by a pair; the means agree to well under one pair per fold
    per_pair = 1.0 / (2 * PER_FOLD)
    diffs = np.abs(np.asarray(ours["kfold"]["fold_accuracies"]) - np.asarray(ref))
    assert diffs.max() <= per_pair + 1e-12
    assert abs(ours["accuracy"] - float(np.mean(ref))) <= 0.5 * per_pair
    assert ours["accuracy"] > 0.9  # SFace on LFW centre crops


@pytest.mark.parametrize("seed", range(5))
def test_similarity_transform_matches_skimage_and_opencv(seed):
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(seed)
    dst = template()
    # 5 landmarks of a face somewhere in a photo: scaled, rotated, moved, and noisy
    ang, sc = rng.uniform(-0.6, 0.6), rng.uniform(0.5, 3.0)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    src = (dst - 56) @ rot.T * sc + rng.uniform(50, 400, 2) + rng.normal(0, 2.0, dst.shape)
    ours = similarity_transform(src, dst)
    sk = SimilarityTransform.from_estimate(src, dst) if hasattr(SimilarityTransform, "from_estimate") else None
    if sk is None:
        sk = SimilarityTransform()
        assert sk.estimate(src, dst)
    np.testing.assert_allclose(ours, sk.params[:2], rtol=1e-6, atol=1e-5)
    # OpenCV's estimator: every point an inlier (huge RANSAC threshold), then its Levenberg-Marquardt
    # refinement of the least-squares fit
    cvm, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1e4,
                                               refineIters=100)
    assert inliers.all()
    warped = np.c_[src, np.ones(5)] @ ours.T
    warped_cv = np.c_[src, np.ones(5)] @ cvm.T
    assert np.abs(warped - warped_cv).max() < 1e-3  # pixels, on a 112x112 face
    # and ours is the least-squares optimum: no worse than OpenCV's
    assert ((warped - dst) ** 2).sum() <= ((warped_cv - dst) ** 2).sum() + 1e-6
