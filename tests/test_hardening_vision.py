"""Issue #20 item 3 (vision part): the retrying detector works on a downscaled copy of a large
image (never on padded/rotated full-size copies), with boxes mapped back to the original."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefeat.vision.detector import YuNetDetector
from facefeat.vision.retry import RetryDetector


@pytest.fixture(scope="module")
def sideways_in_a_large_image(lfw_dir):
    face = cv2.imread(str(sorted((lfw_dir / "Tony_Blair").iterdir())[0]))
    face = cv2.rotate(cv2.resize(face, (400, 400)), cv2.ROTATE_90_CLOCKWISE)  # the first pass misses it
    canvas = np.full((3000, 4000, 3), 90, np.uint8)
    canvas[1000:1400, 2000:2400] = face
    return canvas


def test_retries_of_a_large_image_run_downscaled_and_map_back(sideways_in_a_large_image):
    det = YuNetDetector(max_side=1024)
    seen: list[tuple[int, int]] = []
    real = det.detect

    def spy(img, thr=None):
        seen.append(img.shape[:2])
        return real(img, thr)

    det.detect = spy
    dets, path = RetryDetector(det, 0.5).detect_with_path(sideways_in_a_large_image)
    assert path["path"] == "rotated" and path["downscaled_to"] == 1024
    assert seen[0] == (3000, 4000) and all(max(s) <= 1024 * 1.5 for s in seen[1:]), seen
    main = next(d for d in dets if not d.too_small)
    cx, cy = (main.box[0] + main.box[2]) / 2, (main.box[1] + main.box[3]) / 2
    assert 2000 < cx < 2400 and 1000 < cy < 1400, main.box
    assert main.width > 120  # original-image pixels, not the copy's


def test_a_faceless_large_image_is_retried_on_the_small_copy_only():
    det = YuNetDetector(max_side=1024)
    seen: list[tuple[int, int]] = []
    real = det.detect
    det.detect = lambda img, thr=None: seen.append(img.shape[:2]) or real(img, thr)
    dets, path = RetryDetector(det, 0.5).detect_with_path(np.full((5000, 5000, 3), 128, np.uint8))
    assert path["path"] == "none" and dets == []
    assert len(seen) > 3 and all(max(s) <= 1024 * 1.5 for s in seen[1:]), seen
