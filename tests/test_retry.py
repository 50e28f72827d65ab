"""Detection that does not give up early: rotated, padded and low-score retries on LFW photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefeat.vision import YuNetDetector
from facefeat.vision.retry import RetryDetector


@pytest.fixture(scope="module")
def retry():
    return RetryDetector(YuNetDetector())


@pytest.fixture(scope="module")
def photo(lfw_dir):
    return cv2.imread(str(lfw_dir / "Tony_Blair" / "Tony_Blair_0005.jpg"))


def test_upright_photo_takes_the_default_path(retry, photo):
    dets, path = retry.detect_with_path(photo)
    assert path["path"] == "default" and dets


@pytest.mark.parametrize("code,angle", [(cv2.ROTATE_90_CLOCKWISE, 90), (cv2.ROTATE_90_COUNTERCLOCKWISE, 270),
                                        (cv2.ROTATE_180, 180)])
@pytest.mark.parametrize("name", ["Tony_Blair/Tony_Blair_0005.jpg", "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"])
def test_rotated_photo_is_found_and_mapped_back(retry, lfw_dir, name, code, angle):
    photo = cv2.imread(str(lfw_dir / name))
    ref = YuNetDetector().detect(photo)[0]
    rot = cv2.rotate(photo, code)
    dets, path = retry.detect_with_path(rot)
    # a quarter turn, or (YuNet "finds" turned faces with misplaced landmarks) the orientation check
    assert angle in (path.get("angle"), path.get("orientation")), path  # the turn that undoes it
    # the landmarks agree with the upright photo's, rotated the same way
    h, w = photo.shape[:2]
    x, y = ref.landmarks[:, 0], ref.landmarks[:, 1]
    want = {90: np.c_[h - 1 - y, x], 270: np.c_[y, w - 1 - x], 180: np.c_[w - 1 - x, h - 1 - y]}[angle]
    eye = float(np.hypot(*(ref.landmarks[1] - ref.landmarks[0])))
    assert np.abs(dets[0].landmarks - want).max() < 0.2 * eye
    assert dets[0].box[0] <= want[:, 0].min() and dets[0].box[2] >= want[:, 0].max()


def test_nothing_found_on_a_blank_image(retry):
    dets, path = retry.detect_with_path(np.full((160, 160, 3), 127, np.uint8))
    assert dets == [] and path["path"] == "none"


def test_pipeline_embed_reports_the_path(photo):
    from facefeat import create_pipeline

    pipe = create_pipeline("face_recognition")
    rot = cv2.rotate(photo, cv2.ROTATE_90_CLOCKWISE)
    assert pipe.embed(rot) == []
    (face,) = pipe.embed(rot, retry=True)[:1]
    assert face["detected_by"]["path"] == "rotated"
    up = np.asarray(pipe.embed(photo)[0]["feature"])
    assert float(up @ np.asarray(face["feature"])) > 0.8  # aligned back upright: the same face


def test_exif_orientation_is_honoured_when_reading(lfw_dir, tmp_path):
    """A phone photo stored sideways with EXIF Orientation=6 (rotate 90° clockwise to view) reads upright."""
    import io

    from PIL import Image

    from facefeat.io import read_image

    src = Image.open(lfw_dir / "Tony_Blair" / "Tony_Blair_0005.jpg")
    stored = src.transpose(Image.Transpose.ROTATE_90)  # the sensor's sideways pixels
    exif = stored.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    (tmp_path / "phone.jpg").write_bytes(buf.getvalue())
    for source in (str(tmp_path / "phone.jpg"), buf.getvalue()):
        img = read_image(source)
        dets = YuNetDetector().detect(img)
        assert dets and not dets[0].too_small  # upright again: the plain detector finds the face
