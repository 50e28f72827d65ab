"""Enrolment quality: figures of real LFW faces, pose from landmarks, and the policies' reasons."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefeat.errors import InputError
from facefeat.vision import YuNetDetector, align
from facefeat.vision.quality import POLICIES, face_quality, get_policy, pose_from_landmarks


@pytest.fixture(scope="module")
def face(lfw_dir):
    img = cv2.imread(str(lfw_dir / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"))
    (d,) = [d for d in YuNetDetector().detect(img) if not d.too_small][:1]
    return img, d


def test_figures_of_a_good_face(face):
    img, d = face
    q = face_quality(align(img, d), d)
    assert set(q) == {"face_size", "det_score", "sharpness", "brightness", "contrast", "yaw", "roll"}
    assert q["face_size"] > 60 and q["det_score"] > 0.8 and abs(q["yaw"]) < 20 and abs(q["roll"]) < 10
    assert POLICIES["standard"].reasons(q) == [] and POLICIES["off"].reasons(q) == []


def test_blur_dark_and_pose_are_caught(face):
    img, d = face
    aligned = align(img, d)
    q = face_quality(cv2.GaussianBlur(aligned, (0, 0), 4), d)
    assert q["sharpness"] < face_quality(aligned, d)["sharpness"] / 5
    assert any("blurred" in r for r in POLICIES["standard"].reasons(q))
    dark = face_quality((aligned * 0.1).astype(np.uint8), d)
    assert any("too dark" in r for r in POLICIES["standard"].reasons(dark))
    # a frontal layout, then the nose moved towards one eye: yaw grows, roll stays
    pts = np.array([[40, 50], [72, 50], [56, 70], [44, 90], [68, 90]], float)
    assert pose_from_landmarks(pts) == pytest.approx((0.0, 0.0), abs=1e-6)
    turned = pts.copy()
    turned[2, 0] = 70
    yaw, roll = pose_from_landmarks(turned)
    assert yaw > 30 and abs(roll) < 1e-6
    rot = cv2.getRotationMatrix2D((56, 70), -20, 1.0)  # tilt the head 20 degrees
    assert pose_from_landmarks(np.c_[pts, np.ones(5)] @ rot.T)[1] == pytest.approx(20, abs=0.5)


def test_policies_are_configurable():
    strict = get_policy("strict")
    assert strict.min_face_size > get_policy("standard").min_face_size
    mine = get_policy("standard", max_abs_yaw=10)
    assert mine.max_abs_yaw == 10 and mine.min_sharpness == POLICIES["standard"].min_sharpness
    assert get_policy({"min_face_size": 200}).min_face_size == 200
    with pytest.raises(InputError, match="lenient"):
        get_policy("lenient")
    with pytest.raises(InputError, match="max_yaw"):
        get_policy("standard", max_yaw=3)
