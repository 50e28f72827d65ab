"""Vision: YuNet detection, 5-point alignment, PaddleX crop, drawing."""

from __future__ import annotations

import sys
import threading

import cv2
import numpy as np
import pytest

from facefeat.errors import InputError
from facefeat.vision import (
    ARCFACE_TEMPLATE,
    Detection,
    YuNetDetector,
    align,
    align_face,
    crop_face,
    draw_faces,
    similarity_transform,
)

# frontal LFW faces (250x250) where YuNet's 5 points fit the ArcFace template well
FRONTAL = [
    "Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
    "Abdullah_Gul/Abdullah_Gul_0010.jpg",
    "Adrien_Brody/Adrien_Brody_0001.jpg",
    "Aidan_Quinn/Aidan_Quinn_0001.jpg",
    "George_W_Bush/George_W_Bush_0001.jpg",
]


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return YuNetDetector()


@pytest.fixture(scope="module")
def faces(lfw_dir):
    imgs = {}
    for rel in FRONTAL:
        img = cv2.imread(str(lfw_dir / rel))
        assert img is not None, f"cannot read {lfw_dir / rel}"
        imgs[rel] = img
    return imgs


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.c_[pts, np.ones(len(pts))] @ m.T


def test_module_is_torch_free():
    import subprocess

    code = "import sys, facefeat.vision; assert 'torch' not in sys.modules, 'facefeat.vision imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_yunet_finds_one_large_face(detector, faces):
    for rel, img in faces.items():
        assert img.shape == (250, 250, 3)
        dets = detector.detect(img)
        assert len(dets) == 1, f"{rel}: {len(dets)} faces"
        d = dets[0]
        assert isinstance(d, Detection) and d.box.shape == (4,) and d.landmarks.shape == (5, 2)
        assert d.score > 0.8 and not d.too_small
        w, h = d.box[2] - d.box[0], d.box[3] - d.box[1]
        assert w > 70 and h > 90, f"{rel}: face box {d.box} is not large"
        x0, y0, x1, y1 = d.box
        assert ((d.landmarks[:, 0] > x0) & (d.landmarks[:, 0] < x1)).all(), rel
        assert ((d.landmarks[:, 1] > y0) & (d.landmarks[:, 1] < y1)).all(), rel
        (rex, rey), (lex, ley), (nx, ny), (rmx, rmy), (lmx, lmy) = d.landmarks
        # YuNet order: subject's right eye (= image left) first, then left eye, nose, right/left mouth
        assert rex < nx < lex and rmx < lmx
        assert max(rey, ley) < ny < min(rmy, lmy)
        dd = d.to_dict()
        assert set(dd) == {"coordinate", "det_score", "landmarks"}
        assert len(dd["coordinate"]) == 4 and len(dd["landmarks"]) == 5 and len(dd["landmarks"][0]) == 2


def test_sorted_largest_first_and_too_small(detector, faces):
    img = faces[FRONTAL[0]]
    small = cv2.resize(img, (60, 60), interpolation=cv2.INTER_AREA)
    canvas = np.full((400, 400, 3), 127, np.uint8)
    canvas[20:80, 20:80] = small  # a ~25 px face
    canvas[120:370, 120:370] = img  # a ~90 px face
    dets = YuNetDetector(min_face_size=40).detect(canvas)
    assert len(dets) >= 2
    areas = [d.area for d in dets]
    assert areas == sorted(areas, reverse=True)
    assert not dets[0].too_small and dets[0].box[0] > 120
    assert any(d.too_small and d.box[2] < 100 for d in dets[1:])


def test_max_side_maps_back(faces):
    img = cv2.resize(faces[FRONTAL[0]], (1000, 1000), interpolation=cv2.INTER_LINEAR)
    full = YuNetDetector().detect(img)
    fast = YuNetDetector(max_side=320).detect(img)
    assert len(full) == len(fast) == 1
    a, b = full[0].box, fast[0].box  # same face, in original-image pixels
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    iou = inter / (full[0].area + fast[0].area - inter)
    assert iou > 0.85
    assert np.abs(full[0].landmarks - fast[0].landmarks).max() < 0.05 * full[0].width


def test_no_face_in_blank_image(detector):
    assert detector.detect(np.full((250, 250, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((100, 300), np.uint8)) == []  # gray input is accepted
    with pytest.raises(InputError):
        detector.detect(np.zeros((10, 10, 3), np.float32))


def test_detector_shared_between_threads(detector, faces):
    imgs = [faces[r] for r in FRONTAL] + [cv2.resize(faces[FRONTAL[0]], (500, 400))]
    expected = [detector.detect(im)[0].box for im in imgs]
    errors: list = []

    def work(k: int) -> None:
        try:
            for j in range(6):
                i = (k + j) % len(imgs)
                got = detector.detect(imgs[i])
                assert len(got) == 1 and np.allclose(got[0].box, expected[i], atol=1e-3)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    theta, s, t = np.deg2rad(17.0), 0.63, np.array([12.5, -30.0])
    r = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = src @ (s * r).T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], s * r, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-7)
    # noisy points: the least-squares answer agrees with OpenCV's estimator (LMEDS on 5 points)
    noisy = dst + rng.normal(0, 0.5, dst.shape)
    ours = similarity_transform(src, noisy)
    cv_m, _ = cv2.estimateAffinePartial2D(src, noisy, method=cv2.LMEDS)
    assert np.abs(_apply(ours, src) - _apply(cv_m, src)).max() < 2.0
    with pytest.raises(InputError):
        similarity_transform(np.zeros((5, 2)), dst)


def test_align_maps_eyes_onto_template(detector, faces):
    for rel, img in faces.items():
        d = detector.detect(img)[0]
        out = align(img, d, mode="align")
        assert out.shape == (112, 112, 3) and out.dtype == np.uint8
        m = similarity_transform(d.landmarks, ARCFACE_TEMPLATE)
        eyes = _apply(m, d.landmarks[:2])
        assert np.linalg.norm(eyes - ARCFACE_TEMPLATE[:2], axis=1).max() < 3.0, rel
        np.testing.assert_array_equal(out, align_face(img, d.landmarks))
        assert out.std() > 10  # a face, not a black square
        assert align(img, d.to_dict()).shape == (112, 112, 3)


def test_align_is_exact_on_synthetic_face():
    img = np.zeros((300, 300, 3), np.uint8)
    lms = ARCFACE_TEMPLATE * 2.0 + 40.0  # template scaled x2, shifted
    for x, y in lms:
        cv2.circle(img, (int(round(x)), int(round(y))), 2, (255, 255, 255), -1)
    out = align_face(img, lms)
    for x, y in ARCFACE_TEMPLATE:
        assert out[int(round(y)), int(round(x))].max() > 100


def test_crop_mode(detector, faces):
    img = faces[FRONTAL[0]]
    d = detector.detect(img)[0]
    out = align(img, d, mode="crop")
    assert out.shape == (112, 112, 3)
    x0, y0, x1, y1 = (int(v) for v in d.box)
    np.testing.assert_array_equal(out, cv2.resize(img[y0:y1, x0:x1], (112, 112), interpolation=cv2.INTER_LINEAR))
    # a box past the border is clipped, not padded
    assert crop_face(img, [-50, -50, 100, 100]).shape == (112, 112, 3)
    with pytest.raises(InputError):
        crop_face(img, [300, 300, 400, 400])
    with pytest.raises(InputError):
        align(img, d, mode="warp")


def test_draw_faces(detector, faces):
    img = faces[FRONTAL[0]]
    d = detector.detect(img)[0]
    before = img.copy()
    known = dict(d.to_dict(), labels=["Aaron Eckhart"], rec_scores=[0.81])
    unknown = {"coordinate": [5, 5, 60, 60], "labels": [], "rec_scores": []}
    out = draw_faces(img, [known, unknown])
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(img, before)  # input untouched
    changed = np.any(out != img, axis=2)
    assert changed.sum() > 500
    x0, y0, x1, y1 = (int(v) for v in d.box)
    assert changed[y0 - 1 : y0 + 2, x0:x1].any()  # the box's top edge
    assert draw_faces(img, []).shape == img.shape
