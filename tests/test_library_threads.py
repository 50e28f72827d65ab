"""The library under threads: one bounded detector serves every threshold and thread, detection of
large photos runs downscaled with coordinates mapped back, and per-call failures / rejections are
never another thread's."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from facefeat.vision import YuNetDetector

PEOPLE = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0010.jpg",
          "Adrien_Brody/Adrien_Brody_0001.jpg", "George_W_Bush/George_W_Bush_0001.jpg"]


def run_threads(fn, n: int) -> None:
    errors: list = []

    def wrap(k: int) -> None:
        try:
            fn(k)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.fixture(scope="module")
def group(lfw_dir) -> np.ndarray:
    """A 900x700 collage of 4 faces at several sizes, blurs and contrasts (scores ~0.79..0.93)."""
    canvas = np.full((700, 900, 3), 110, np.uint8)
    for i, rel in enumerate(PEOPLE):
        face = cv2.imread(str(lfw_dir / rel))[40:210, 50:200]
        s = [1.4, 1.0, 0.7, 0.5][i]
        face = cv2.resize(face, None, fx=s, fy=s)
        if i >= 1:
            face = cv2.GaussianBlur(face, (0, 0), [0, 2, 3.5, 2.5][i])
        if i == 2:
            face = (face * 0.35 + 110 * 0.65).astype(np.uint8)
        y, x = [(20, 20), (30, 400), (380, 150), (400, 600)][i]
        canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
    return canvas


def _boxes(dets) -> np.ndarray:
    return np.asarray([np.r_[d.box, d.score] for d in dets], np.float32).reshape(-1, 5)


def test_one_detector_with_per_call_thresholds_equals_one_detector_per_threshold(group):
    shared = YuNetDetector(pool_size=2)
    thresholds = [0.3, 0.8, 0.922, 0.927]
    expected = {t: _boxes(YuNetDetector(score_threshold=t).detect(group)) for t in thresholds}
    assert len({len(v) for v in expected.values()}) >= 3  # the thresholds matter on this image

    def work(k: int) -> None:
        for j in range(6):
            t = thresholds[(k + j) % len(thresholds)]
            assert np.allclose(_boxes(shared.detect(group, t)), expected[t], atol=1e-3)

    run_threads(work, 5)
    assert shared.instances <= shared.pool_size == 2


def test_large_photos_are_detected_downscaled_and_mapped_back(lfw_dir):
    face = cv2.imread(str(lfw_dir / PEOPLE[0]))
    big = np.full((3000, 4000, 3), 100, np.uint8)
    big[1200:2200, 2500:3500] = cv2.resize(face, (1000, 1000))
    det = YuNetDetector()
    assert det.max_side == 1920
    dets = det.detect(big)
    assert len(dets) == 1
    x0, y0, x1, y1 = dets[0].box
    assert 2500 <= x0 < x1 <= 3500 and 1200 <= y0 < y1 <= 2200 and dets[0].width > 300  # original pixels
    assert ((dets[0].landmarks >= [2500, 1200]) & (dets[0].landmarks <= [3500, 2200])).all()



def test_predictor_failures_are_per_call_and_per_thread(pipe, lfw_dir, tmp_path):
    model = pipe.predictor
    good = str(lfw_dir / PEOPLE[0])

    def work(k: int) -> None:
        bad = [str(tmp_path / f"missing_{k}_{i}.jpg") for i in range(k + 1)]
        for _ in range(4):
            mine: list = []
            results = list(model.predict([good] + bad, errors="warn", failures=mine))
            assert len(results) == 1
            assert len(mine) == k + 1 and all(f"missing_{k}_" in str(e) for e in mine)
            assert [str(e) for e in model.failures] == [str(e) for e in mine]  # this thread's copy

    run_threads(work, 4)


def test_gallery_rejections_are_per_call_and_per_thread(pipe, lfw_dir):
    face = cv2.imread(str(lfw_dir / PEOPLE[1]))
    blank = np.full((200, 200, 3), 90, np.uint8)

    def work(k: int) -> None:
        imgs = [blank] * k + [face] + [blank]
        labels = [f"t{k}_{i}" for i in range(len(imgs))]
        for _ in range(3):
            g = pipe.gallery_features(imgs, labels)
            assert g.positions == [k] and g.labels == [f"t{k}_{k}"] and len(g.features) == 1
            assert [(r.index, r.label, r.reason) for r in g.rejected] == \
                [(i, f"t{k}_{i}", "no face detected") for i in list(range(k)) + [k + 1]]
            assert pipe.last_rejected == g.rejected
            r = g.rejected[0]
            assert r.name == f"gallery[{r.index}]" and r.to_dict() == {"index": r.index, "name": r.name,
                                                                       "label": r.label, "reason": r.reason}

    run_threads(work, 4)


def test_pipeline_has_one_detector_for_every_threshold(pipe, lfw_dir):
    img = cv2.imread(str(lfw_dir / PEOPLE[2]))
    for t in (0.31, 0.52, 0.77, 0.95, 0.33, 0.61):
        list(pipe.predict(img, det_threshold=t))
    assert not hasattr(pipe, "_detectors") and pipe.detector.instances <= pipe.detector.pool_size
    with pytest.raises(Exception, match="score_threshold"):
        list(pipe.predict(img, det_threshold=float("nan")))
