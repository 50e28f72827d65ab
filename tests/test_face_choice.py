"""The one face-choice rule (facefeat.vision.choice) in embed, verify and enrolment; and the retrying
detector leaving a profile's landmarks as the plain pass found them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefeat.vision.choice import choose_face, order_faces
from facefeat.vision.detector import Detection
from facefeat.vision.retry import RetryDetector, is_profile


def _det(x0, y0, x1, y1, score=0.9, lms=None, small=False) -> Detection:
    if lms is None:  # a frontal face's landmarks inside the box
        w, h = x1 - x0, y1 - y0
        lms = [[x0 + .3 * w, y0 + .4 * h], [x0 + .7 * w, y0 + .4 * h], [x0 + .5 * w, y0 + .6 * h],
               [x0 + .35 * w, y0 + .8 * h], [x0 + .65 * w, y0 + .8 * h]]
    return Detection(np.array([x0, y0, x1, y1], np.float32), score, np.array(lms, np.float32), small)


def test_subject_is_the_largest_face_holding_the_centre():
    edge_big = _det(0, 0, 150, 150)
    centre = _det(220, 120, 300, 200)
    other = _det(400, 10, 460, 70)
    ordered = order_faces([edge_big, other, centre], 500, 300)
    assert ordered[0] is centre and ordered[1:] == [edge_big, other]
    # a group photo: no face holds the centre -> the largest
    assert choose_face([other, edge_big], 500, 300) is edge_big
    # a face too small to align is never the subject while a usable one exists
    assert choose_face([_det(240, 140, 260, 160, small=True), other], 500, 300) is other
    assert choose_face([], 10, 10) is None


def _face(lfw_dir, person: str, size: int) -> np.ndarray:
    img = cv2.imread(str(sorted((lfw_dir / person).glob("*.jpg"))[0]))
    return cv2.resize(img[40:210, 40:210], (size, size))


@pytest.fixture(scope="module")
def group(lfw_dir):
    """A 520x320 'group photo': a large face at the left edge, a smaller one at the centre."""
    canvas = np.full((320, 520, 3), 90, np.uint8)
    canvas[60:260, 0:200] = _face(lfw_dir, "George_W_Bush", 200)
    canvas[95:225, 195:325] = _face(lfw_dir, "Colin_Powell", 130)
    return canvas


def test_embed_verify_and_enrolment_choose_the_same_face(group, lfw_dir, tmp_path):
    from facefeat import create_pipeline

    pipe = create_pipeline("face_recognition")
    faces = pipe.embed(group)
    assert len(faces) >= 2
    x0, y0, x1, y1 = faces[0]["coordinate"]
    assert x0 <= 260 <= x1 and y0 <= 160 <= y1  # the central face comes first, though smaller
    powell = str(sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[1])
    v = pipe.verify(group, powell)
    res = v.json["res"]
    assert res["verified"], res
    assert res["faces"][0]["coordinate"] == faces[0]["coordinate"]  # verify took the same face
    # enrolment: the subject must dominate; a larger face elsewhere makes the photo ambiguous
    path = tmp_path / "group.png"
    cv2.imwrite(str(path), group)
    report = pipe.enroll([(str(path), "Colin")])
    rep = report.json["res"]
    assert not rep["added"] and "cannot tell" in rep["rejected"][0]["reason"]


def test_is_profile_on_frontal_and_profile_landmarks(lfw_dir):
    from facefeat.vision.detector import YuNetDetector

    img = cv2.imread(str(sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[0]))
    (d, *_) = YuNetDetector().detect(img)
    assert not is_profile(d)
    # seen from the side: both eyes on one side of the nose
    prof = _det(100, 100, 200, 200, lms=[[150, 140], [165, 141], [190, 160], [150, 180], [160, 181]])
    assert is_profile(prof)


class _Counting:
    """A detector that finds one face with fixed landmarks and counts its calls."""

    def __init__(self, det: Detection):
        self.det, self.calls = det, 0
        self.min_face_size = 20

    def detect(self, img, score_threshold=None):
        self.calls += 1
        return [self.det]


def test_retry_detector_leaves_a_profile_alone_and_checks_a_frontal_face():
    img = np.zeros((300, 300, 3), np.uint8)
    prof = _det(100, 100, 200, 200, lms=[[150, 140], [165, 141], [190, 160], [150, 180], [160, 181]])
    inner = _Counting(prof)
    dets, path = RetryDetector(inner, 0.5).detect_with_path(img)
    assert inner.calls == 1 and path["path"] == "default"
    np.testing.assert_array_equal(dets[0].landmarks, prof.landmarks)
    frontal = _Counting(_det(100, 100, 200, 200))
    RetryDetector(frontal, 0.5).detect_with_path(img)
    assert frontal.calls > 1  # the orientation check ran


def test_verify_uses_the_flip_test_between_two_images(lfw_dir):
    from facefeat import create_pipeline

    pipe = create_pipeline("face_recognition")
    a, b = (str(p) for p in sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[:2])
    flipped = [np.asarray(pipe.embed(x, flip=True, retry=True)[0]["feature"]) for x in (a, b)]
    plain = [np.asarray(pipe.embed(x, flip=False, retry=True)[0]["feature"]) for x in (a, b)]
    assert pipe.verify(a, b).json["res"]["score"] == pytest.approx(float(flipped[0] @ flipped[1]), abs=1e-5)
    assert pipe.verify(a, b, flip=False).json["res"]["score"] == pytest.approx(float(plain[0] @ plain[1]), abs=1e-5)


def test_model_crops_and_their_checks():
    from facefeat.errors import InputError
    from facefeat.registry import get_spec
    from facefeat.vision.crops import box_crop, check_face_crop, face_view, model_crop

    fc = check_face_crop(get_spec("SFace+FaceNet").face_crop)
    img = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    det = _det(150, 100, 250, 220)
    canvas = model_crop(img, det, fc)
    assert canvas.shape == (272, 160, 3)
    np.testing.assert_array_equal(canvas[112:], box_crop(img, det.box, (160, 160), fc["regions"][1]["grow"]))
    assert face_view(canvas, fc).shape == (112, 112, 3) and face_view(canvas, None) is canvas
    # the canvas is mirror-safe: each region is centred on its vertical axis
    for r in fc["regions"]:
        assert r["at"][1] * 2 + r["size"][1] == fc["size"][1]
    # a box grown by 1.0 is the box itself, stretched
    crop = box_crop(img, [100, 50, 200, 150], (100, 100), 1.0)
    assert np.abs(crop[5:-5, 5:-5].astype(int) - img[55:145, 105:195].astype(int)).max() <= 1
    for bad in ({"size": [100, 100], "regions": [{"kind": "align", "size": 112, "at": [0, 0]}]},
                {"size": [112, 112], "regions": [{"kind": "warp", "size": 112}]},
                {"size": [112, 112], "regions": [{"kind": "box", "size": 112, "grow": 9}]}, "x"):
        with pytest.raises(InputError):
            check_face_crop(bad)
