"""Landmark refinement (facefeat.vision.refine): the mirrored pass's landmarks mapped back with the
right swap, averaged with the plain pass's, and the pipeline option that turns it on or off."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefeat.errors import InputError
from facefeat.vision.detector import Detection, YuNetDetector
from facefeat.vision.refine import (LANDMARK_MODES, MIRROR_ORDER, ZOOM, ZOOM_BELOW, LandmarkRefiner,
                                    average_with_mirror, check_landmark_mode, mirror_box, mirror_points,
                                    mirrored_pass, refine_landmarks)

# a frontal face in YuNet's order: subject's right eye (image left), left eye, nose, right mouth
# corner (image left), left mouth corner
FACE = np.array([[40, 50], [70, 52], [55, 68], [43, 85], [68, 86]], np.float32)


def test_mirror_swaps_sides_and_maps_columns():
    w = 120
    # what a detector reports on img[:, ::-1]: each point at column w-1-x, and the face's sides
    # change: the point it calls "right eye" (image left) is the original left eye
    seen = FACE[list(MIRROR_ORDER)].copy()
    seen[:, 0] = w - 1 - seen[:, 0]
    assert MIRROR_ORDER == (1, 0, 2, 4, 3)
    back = mirror_points(seen, w)
    np.testing.assert_allclose(back, FACE)
    # right eye stays on the image's left, mouth corners likewise
    assert back[0, 0] < back[1, 0] and back[3, 0] < back[4, 0]
    np.testing.assert_allclose(mirror_points(mirror_points(FACE, w), w), FACE)
    np.testing.assert_allclose(mirror_box([10, 20, 50, 80], w), [69, 20, 109, 80])
    with pytest.raises(InputError, match="expected \\[5, 2\\]"):
        mirror_points(FACE[:4], w)


def _det(lms, box=(30, 35, 80, 100), small=False) -> Detection:
    return Detection(np.array(box, np.float32), 0.9, np.asarray(lms, np.float32), small)


def test_average_with_matching_mirrored_face_only():
    d = _det(FACE)
    other = _det(FACE + 200, box=(230, 235, 280, 300))
    shifted = FACE + np.float32([2.0, -1.0])
    out = average_with_mirror([d, other], [(np.array([31, 35, 81, 100], np.float32), shifted)])
    np.testing.assert_allclose(out[0].landmarks, FACE + np.float32([1.0, -0.5]))
    assert out[0].box is d.box and out[0].score == d.score  # only the landmarks change
    assert out[1] is other  # no mirrored face overlaps it: unchanged
    # faces to keep, and faces too small to align, are left alone
    assert average_with_mirror([d], [(d.box, shifted)], keep=[d])[0] is d
    small = _det(FACE, small=True)
    assert average_with_mirror([small], [(small.box, shifted)])[0] is small


def test_mode_is_checked():
    assert LANDMARK_MODES == ("plain", "mirror", "zoom")
    assert check_landmark_mode("mirror") == "mirror"
    with pytest.raises(InputError, match="landmarks must be one of plain, mirror, zoom, got 'flip'"):
        check_landmark_mode("flip")


@pytest.fixture(scope="module")
def face_img(lfw_dir) -> np.ndarray:
    return cv2.imread(str(lfw_dir / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"))


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return YuNetDetector(score_threshold=0.5)


def test_mirror_mode_averages_the_plain_and_mirrored_passes(face_img, detector):
    dets = detector.detect(face_img)
    assert dets
    # the whole mirrored photo (LFW's face crops cover most of it), mapped back by hand
    w = face_img.shape[1]
    (m,) = [x for x in detector.detect(np.ascontiguousarray(face_img[:, ::-1]))
            if x.box[0] < w / 2 < x.box[2]][:1] or [None]
    main = next(d for d in dets if d.box[0] < w / 2 < d.box[2])
    want = main.landmarks.copy()
    back = m.landmarks[[1, 0, 2, 4, 3]].copy()
    back[:, 0] = w - 1 - back[:, 0]
    want = (want + back) / 2
    out = refine_landmarks(detector, face_img, dets, "mirror")
    got = out[dets.index(main)]
    np.testing.assert_allclose(got.landmarks, want, atol=1e-4)
    assert not np.allclose(got.landmarks, main.landmarks)  # the passes disagree a little
    np.testing.assert_array_equal(got.box, main.box)
    assert refine_landmarks(detector, face_img, dets, "plain") == dets


def test_mirrored_pass_on_crops_of_a_large_photo(face_img, detector):
    # the face small in a large canvas: the mirrored pass looks at a crop around it, and finds the
    # same face as the whole mirrored canvas does, at the same place
    big = np.zeros((900, 1200, 3), np.uint8)
    big[500:750, 700:950] = face_img
    dets = [d for d in detector.detect(big) if not d.too_small]
    assert dets
    crops = mirrored_pass(detector, big, dets[:1])
    whole = [(mirror_box(x.box, 1200), mirror_points(x.landmarks, 1200))
             for x in detector.detect(np.ascontiguousarray(big[:, ::-1]))]
    near = lambda pts, ref: np.abs(pts - ref).max()  # noqa: E731
    best = min(crops, key=lambda c: near(c[1], dets[0].landmarks))
    ref = min(whole, key=lambda c: near(c[1], dets[0].landmarks))
    assert near(best[1], ref[1]) < 3.0  # pixels, on a face ~100 px wide


def test_pipeline_option_and_config(face_img, tmp_path):
    from facefeat import create_pipeline

    mirror = create_pipeline("face_recognition")
    assert mirror.landmarks == "mirror"  # the default
    plain = create_pipeline("face_recognition", landmarks="plain")
    raw = plain.detector.detect(face_img)
    np.testing.assert_array_equal(plain.detect(face_img)[0].landmarks, raw[0].landmarks)
    want = refine_landmarks(plain.detector, face_img, raw, "mirror")[0].landmarks
    np.testing.assert_allclose(mirror.detect(face_img)[0].landmarks, want, atol=1e-4)
    # embed reports (and aligns with) the averaged landmarks
    face = mirror.embed(face_img)[0]
    np.testing.assert_allclose(face["landmarks"], want, atol=1e-4)
    # so does the retrying path of verify and enrolment, for a face its plain pass found
    dets, path = mirror.detect_retry(face_img)
    assert path["path"] == "default" and not {"orientation", "deroll"} & path.keys()
    np.testing.assert_allclose(dets[0].landmarks, want, atol=1e-4)
    cfg = tmp_path / "p.yaml"
    cfg.write_text("pipeline_name: face_recognition\nlandmarks: plain\n")
    assert create_pipeline(str(cfg)).landmarks == "plain"
    with pytest.raises(InputError, match="landmarks must be one of plain, mirror, zoom"):
        create_pipeline("face_recognition", landmarks="average")


def test_zoom_mode_redetects_small_faces_enlarged(face_img, detector):
    dets = [d for d in detector.detect(face_img) if not d.too_small]
    main = dets[0]
    assert max(main.width, main.height) < ZOOM_BELOW
    # by hand: LFW's face crop covers most of the photo, so the whole photo, enlarged ZOOM times,
    # detected as it is and mirrored, both mapped back and averaged
    h, w = face_img.shape[:2]
    big = cv2.resize(face_img, (round(w * ZOOM), round(h * ZOOM)), interpolation=cv2.INTER_LINEAR)
    sx = w / big.shape[1]

    def at(found, mirrored):
        best = max(found, key=lambda d: d.area)
        pts = best.landmarks * np.float32([sx, h / big.shape[0]])
        return mirror_points(pts, w) if mirrored else pts

    plain = at(detector.detect(big), False)
    mirrored = at(detector.detect(np.ascontiguousarray(cv2.resize(
        np.ascontiguousarray(face_img[:, ::-1]), big.shape[1::-1], interpolation=cv2.INTER_LINEAR))), True)
    refiner = LandmarkRefiner(detector, "zoom")
    got = refiner.refine(face_img, dets)
    np.testing.assert_allclose(got[0].landmarks, (plain + mirrored) / 2, atol=1e-3)
    np.testing.assert_array_equal(got[0].box, main.box)
    # faces to keep stay as found
    assert refiner.refine(face_img, dets, keep=dets[:1])[0] is main


def test_detect_command_places_landmarks_as_the_pipeline(lfw_dir, capsys):
    """``facefeat detect``/``align`` use the same landmark rule as the pipeline (``--landmarks``)."""
    import json

    from facefeat import create_pipeline
    from facefeat.cli import main

    path = str(lfw_dir / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    for mode in ("mirror", "plain"):
        capsys.readouterr()
        assert main(["detect", path, "--json", "--landmarks", mode]) == 0
        got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["faces"][0]["landmarks"]
        want = create_pipeline("face_recognition", landmarks=mode).detect(path)[0].landmarks
        np.testing.assert_allclose(got, want, atol=1e-4)
