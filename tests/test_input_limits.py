"""Image reading with bounded memory and clear errors: the size of every format OpenCV decodes is
read from the header and checked before decoding (bombs made at test time), Pillow's own bomb
error is kept, arrays of every common kind are converted or refused by name, and directory runs
read GIFs and report broken links."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

import facefeat.io.image as fio
from facefeat.errors import InputError, LimitError
from facefeat.io import decode_image_bytes, iter_images, read_image
from facefeat.io.image import image_size, sniff_format

SMALL = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
ENCODED = [".bmp", ".jpg", ".png", ".webp", ".tif", ".ppm", ".pgm", ".pfm", ".sr", ".hdr", ".jp2", ".gif", ".avif"]


def _encode(ext: str) -> bytes:
    img = SMALL.astype(np.float32) / 255 if ext in (".pfm", ".hdr") else SMALL
    ok, buf = cv2.imencode(ext, img[:, :, 0] if ext == ".pgm" else img)
    assert ok, ext
    return buf.tobytes()


@pytest.mark.parametrize("ext", ENCODED)
def test_every_opencv_format_has_its_size_read_from_the_header(ext):
    data = _encode(ext)
    assert image_size(data, ext) == (60, 40)
    assert decode_image_bytes(data, ext).shape == (40, 60, 3)


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def png_bomb(w: int, h: int) -> bytes:
    """A valid-looking gray PNG of w x h whose pixel data is one compressed row (a few hundred bytes)."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\x00" * (w + 1))) + _chunk(b"IEND", b""))


BOMBS = {
    "png": png_bomb(30000, 30000),
    "png-under-pil-limit": png_bomb(9000, 9000),
    "hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 10000 +X 10000\n" + bytes(64),
    "hdr-x-first": b"#?RADIANCE\n\n+X 20000 -Y 5000\n" + bytes(64),
    "ppm": b"P6\n# comment\n50000 50000\n255\n" + bytes(64),
    "pfm": b"PF\n50000 50000\n-1\n" + bytes(64),
    "pam": b"P7\nWIDTH 40000\nHEIGHT 40000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + bytes(64),
    "sun": b"\x59\xa6\x6a\x95" + struct.pack(">IIIIIII", 40000, 40000, 24, 0, 1, 0, 0) + bytes(64),
    "bmp": b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 40000, 40000, 1, 24, 0, 0,
                                                                   0, 0, 0, 0) + bytes(64),
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
            + b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 60000, 60000) + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
            + bytes(64),
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_bombs_are_refused_from_the_header_before_any_decoding(kind, monkeypatch):
    def no_decode(*a, **k):
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(fio.cv2, "imdecode", no_decode)
    with pytest.raises(LimitError, match=r"bomb\.|pixel"):
        decode_image_bytes(BOMBS[kind], f"bomb.{kind}")
    with pytest.raises(LimitError):
        read_image(BOMBS[kind], "bomb")


def test_pillows_own_bomb_error_is_not_swallowed(monkeypatch):
    monkeypatch.setattr(fio.cv2, "imdecode", lambda *a, **k: pytest.fail("decoded"))
    # above Pillow's 2x MAX_IMAGE_PIXELS even when facefeat's limit is raised far above it
    with pytest.raises(LimitError, match="decompression bomb"):
        decode_image_bytes(png_bomb(30000, 30000), "big.png", max_pixels=10**12)


@pytest.mark.parametrize("data,what", [
    (b"hello, not an image", "unknown format"),
    (b"\x89PNG\r\n\x1a\n", "PNG header is corrupt"),
    (b"#?RADIANCE\nno blank line", "HDR header is corrupt"),
    (b"P6\nwide tall\n255\n", "PXM header is corrupt"),
    (b"BM\x00", "BMP header is corrupt"),
    (bytes([0x00, 0x00, 0x00, 0x0c]) + b"jP  \r\n\x87\n" + bytes(8), "JPEG2000 header is corrupt"),
])
def test_unknown_or_unreadable_headers_are_refused(data, what):
    with pytest.raises(InputError, match=f"img: cannot decode as an image: .*{what}"):
        decode_image_bytes(data, "img")


def test_sniffing_follows_opencv_not_the_extension():
    assert sniff_format(_encode(".png")) == "PNG" and sniff_format(_encode(".gif")) == "GIF"
    assert sniff_format(b"\x76\x2f\x31\x01") is None  # OpenEXR: not decoded by this OpenCV, so refused


def test_arrays_are_converted_or_refused_by_name():
    f01 = np.full((8, 8, 3), 0.5, np.float32)
    assert read_image(f01)[0, 0, 0] == 128  # floats in 0..1 are scaled, not truncated to black
    assert read_image(np.full((8, 8), 200.4, np.float64))[0, 0, 0] == 200  # floats above 1: 0..255
    assert read_image(np.full((8, 8, 4), 0.25, np.float32)).shape == (8, 8, 3)  # BGRA float
    assert read_image(np.full((8, 8, 4), 7, np.uint8)[:, ::-1]).shape == (8, 8, 3)  # non-contiguous BGRA
    assert read_image(np.full((8, 8, 1), 9, np.int64))[0, 0, 1] == 9
    for arr, msg in [
        (np.zeros((0, 0, 4), np.uint8), "empty side"),
        (np.zeros((0, 10)), "empty side"),
        (np.zeros((10, 10, 2), np.uint8), "not an image"),
        (np.full((4, 4, 3), 300.0), "holds values 300..300"),
        (np.full((4, 4, 3), -1, np.int16), "dtype int16 holds values -1"),
        (np.full((4, 4), np.nan, np.float32), "nan"),
        (np.zeros((4, 4), bool), "dtype bool is not supported"),
    ]:
        with pytest.raises(InputError, match=msg):
            read_image(arr, "arr")
    with pytest.raises(LimitError, match="above the limit"):
        read_image(np.zeros((100, 100), np.uint8), "arr", max_pixels=5000)


def test_pil_images_are_size_checked():
    from PIL import Image

    im = Image.new("RGBA", (100, 100))
    assert read_image(im).shape == (100, 100, 3)
    with pytest.raises(LimitError):
        read_image(im, max_pixels=100)


def test_directory_runs_read_gifs_and_report_broken_links(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "a.gif").write_bytes(_encode(".gif"))
    (d / "b.png").write_bytes(_encode(".png"))
    (d / "c.jpg").symlink_to(tmp_path / "gone.jpg")
    (d / "notes.txt").write_text("not an image")
    got = {item.name.rsplit("/", 1)[-1]: (img, err) for item, img, err in iter_images(str(d))}
    assert sorted(got) == ["a.gif", "b.png", "c.jpg"]
    assert got["a.gif"][0].shape == (40, 60, 3) and got["b.png"][0].shape == (40, 60, 3)
    assert got["c.jpg"][0] is None and "broken symbolic link" in str(got["c.jpg"][1])


def test_bounded_adversarial_inputs_only_ever_raise_input_errors():
    """Every bomb, every truncation of every format and random bytes: InputError or an image,
    nothing else, and never a decode of more than the limit."""
    rng = np.random.default_rng(1)
    cases = list(BOMBS.values()) + [bytes(rng.integers(0, 256, 200, dtype=np.uint8)) for _ in range(20)]
    for ext in ENCODED:
        data = _encode(ext)
        cases += [data[:n] for n in (1, 4, 8, 12, 16, 30, len(data) // 2)]
    for data in cases:
        try:
            img = decode_image_bytes(data, "x", max_pixels=100_000)
        except InputError:
            continue
        assert img.dtype == np.uint8 and img.shape[0] * img.shape[1] <= 100_000


def test_oversized_files_are_refused_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "huge.png"
    p.write_bytes(_encode(".png") + bytes(5000))
    monkeypatch.setattr(fio, "MAX_IMAGE_FILE_BYTES", 4096)
    with pytest.raises(LimitError, match="huge.png: file is .* bytes, above the limit of 4,096"):
        read_image(str(p))
