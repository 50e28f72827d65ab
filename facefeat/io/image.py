"""Read images from paths, directories, lists, numpy arrays, PIL images and http(s) URLs.

Everything comes out as a uint8 BGR ``HxWx3`` numpy array (OpenCV's and PaddleX's convention), with
a name for results (``input_path``). Errors are :class:`~facefeat.errors.InputError` and name the
input that failed and why. Memory is bounded before anything is decoded: the format is sniffed as
OpenCV will pick it and the size read from its header (:func:`image_size`); an unknown format, a
header without a size, or a size over ``max_pixels`` is refused (:class:`~facefeat.errors.LimitError`
for limits), as are files over :data:`MAX_IMAGE_FILE_BYTES` and JPEGs with more than
:data:`MAX_JPEG_SCANS` scans (a "scan bomb": a small progressive JPEG whose scans repeat costs
seconds per repeat to decode). Every decoder failure is an InputError naming the input.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from facefeat.errors import InputError, LimitError
from facefeat.io import fetch  # called through its module: the one fetcher, patchable in tests
from facefeat.io.walk import file_problem, list_image_files, read_regular_file

log = logging.getLogger("facefeat")

#: every file type OpenCV decodes (and whose size facefeat reads from the header); a directory run
#: reads these and reports the files it cannot read
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".gif",
                    ".pbm", ".pgm", ".ppm", ".pnm", ".pam", ".pfm", ".hdr", ".pic", ".sr", ".ras", ".jp2",
                    ".avif")
#: decompression-bomb guard: images above this many pixels are refused (override by env var)
MAX_IMAGE_PIXELS = int(os.environ.get("FACEFEAT_MAX_IMAGE_PIXELS", 64_000_000))
#: image files larger than this many bytes are refused before being read (override by env var)
MAX_IMAGE_FILE_BYTES = int(os.environ.get("FACEFEAT_MAX_IMAGE_FILE_BYTES", 512 * 1024 * 1024))
#: a JPEG with more scans (SOS markers) than this is refused before decoding; a progressive JPEG
#: has about 10, a baseline one 1 (override by env var)
MAX_JPEG_SCANS = int(os.environ.get("FACEFEAT_MAX_JPEG_SCANS", 64))
URL_TIMEOUT_S = 20.0
MAX_URL_BYTES = 50 * 1024 * 1024


@dataclass
class ImageItem:
    """One input after expansion: what to read (``source``) and the name results carry."""

    source: Any
    name: str | None


def _is_url(x: Any) -> bool:
    return isinstance(x, str) and x.lower().startswith(("http://", "https://"))


def _check_pixels(h: int, w: int, name: str, max_pixels: int | None) -> None:
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if h * w > limit:
        raise LimitError(f"{name}: image is {w}x{h} = {w * h:,} pixels, above the limit of {limit:,}")


def sniff_format(data: bytes) -> str | None:
    """The image format OpenCV will pick for these bytes (checked in OpenCV's decoder order), or None."""
    if data[:2] == b"BM":
        return "BMP"
    if data[:10] == b"#?RADIANCE" or data[:6] == b"#?RGBE":
        return "HDR"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:1] == b"P" and data[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6"):
        return "PXM"
    if data[:2] == b"P7":
        return "PAM"
    if data[:2] in (b"PF", b"Pf"):
        return "PFM"
    if data[:4] == b"\x59\xa6\x6a\x95":
        return "SUN"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or data[:4] == b"\xff\x4f\xff\x51":
        return "JPEG2000"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    return None


#: the Pillow plugin that reads each sniffed format's header (the others are parsed here)
_PIL_FORMATS = {"BMP": ["BMP", "DIB"], "JPEG": ["JPEG"], "WEBP": ["WEBP"], "PNG": ["PNG"], "PXM": ["PPM"],
                "SUN": ["SUN"], "TIFF": ["TIFF"], "JPEG2000": ["JPEG2000"], "GIF": ["GIF"], "AVIF": ["AVIF"]}


def _netpbm_size(data: bytes) -> tuple[int, int] | None:
    """``P1``..``P6`` / ``PF`` / ``Pf`` headers: magic, then width and height (``#`` comments allowed)."""
    text = re.sub(rb"#[^\n]*", b" ", data[:4096])
    tok = text[2:].split()
    return (int(tok[0]), int(tok[1])) if len(tok) >= 2 and tok[0].isdigit() and tok[1].isdigit() else None


def _pam_size(data: bytes) -> tuple[int, int] | None:
    """``P7`` header: ``WIDTH``/``HEIGHT`` lines up to ``ENDHDR`` (``#`` comments are not read)."""
    head = re.sub(rb"#[^\n]*", b" ", data[:4096].split(b"ENDHDR")[0])
    w = re.search(rb"\bWIDTH\s+(\d+)", head)
    h = re.search(rb"\bHEIGHT\s+(\d+)", head)
    return (int(w.group(1)), int(h.group(1))) if w and h else None


def _hdr_size(data: bytes) -> tuple[int, int] | None:
    """Radiance: header lines, a blank line, then e.g. ``-Y 480 +X 640``."""
    head, sep, rest = data[:65536].partition(b"\n\n")
    m = re.match(rb"\s*([-+])([XY])\s+(\d+)\s+([-+])([XY])\s+(\d+)", rest) if sep else None
    if not m or m.group(2) == m.group(5):
        return None
    a, b = int(m.group(3)), int(m.group(6))
    return (b, a) if m.group(2) == b"Y" else (a, b)


#: a JPEG marker inside entropy-coded data: 0xFF then neither a stuffed 0x00, a fill 0xFF nor RSTn
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_scan_count(data: bytes, stop_after: int | None = None) -> int:
    """Number of scans (SOS segments) in a JPEG stream, walking its segments as a decoder does
    (an EXIF thumbnail inside APP1 is not counted). Stops counting at ``stop_after``."""
    pos, n, size = 2, 0, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            m = _JPEG_MARKER.search(data, pos)
            if m is None:
                break
            pos = m.start()
        marker = data[pos + 1]
        if marker == 0xFF:  # fill bytes before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        pos += 2 + length
        if marker == 0xDA:  # SOS: header, then entropy-coded data up to the next marker
            n += 1
            if stop_after is not None and n >= stop_after:
                break
            m = _JPEG_MARKER.search(data, pos)
            if m is None:
                break
            pos = m.start()
    return n


def _check_jpeg_scans(data: bytes, name: str) -> None:
    n = jpeg_scan_count(data, stop_after=MAX_JPEG_SCANS + 1)
    if n > MAX_JPEG_SCANS:
        raise LimitError(f"{name}: JPEG has more than {MAX_JPEG_SCANS} scans (a normal progressive JPEG has "
                         "about 10); refused as a decoding-cost bomb (FACEFEAT_MAX_JPEG_SCANS)")


def image_header(data: bytes, name: str = "<bytes>") -> tuple[int, int, str | None]:
    """``(width, height, mode)`` from the header alone, for every format OpenCV decodes (bomb
    guard); ``mode`` is Pillow's (``"RGB"``, ``"L"``, ...) where Pillow reads the header, else None.

    Raises InputError when the bytes are no known image format or the header does not give the
    size, and LimitError when Pillow's own decompression-bomb check trips.
    """
    from PIL import Image

    fmt = sniff_format(data)
    if fmt is None:
        raise InputError(f"{name}: cannot decode as an image: unknown format, not an image (not JPEG, PNG, BMP, WebP, TIFF, GIF, ...)")
    size, mode = None, None
    if fmt in _PIL_FORMATS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # bomb warnings (we check the size), corrupt-EXIF notes
                with Image.open(io.BytesIO(data), formats=_PIL_FORMATS[fmt]) as im:
                    size, mode = tuple(im.size), im.mode
        except Image.DecompressionBombError as exc:
            raise LimitError(f"{name}: image is far above the pixel limit ({exc})") from None
        except Exception:  # Pillow cannot parse this variant: fall back to the simple headers below
            size = None
    if size is None:
        try:
            if fmt == "BMP" and len(data) >= 26:
                size = (abs(int.from_bytes(data[18:22], "little", signed=True)),
                        abs(int.from_bytes(data[22:26], "little", signed=True)))
            elif fmt in ("PXM", "PFM"):
                size = _netpbm_size(data)
            elif fmt == "PAM":
                size = _pam_size(data)
            elif fmt == "HDR":
                size = _hdr_size(data)
            elif fmt == "SUN" and len(data) >= 12:
                size = (int.from_bytes(data[4:8], "big"), int.from_bytes(data[8:12], "big"))
        except (ValueError, IndexError):
            size = None
    if size is None:
        raise InputError(f"{name}: cannot decode as an image: its {fmt} header is corrupt or truncated (no image size)")
    return int(size[0]), int(size[1]), mode


def image_size(data: bytes, name: str = "<bytes>") -> tuple[int, int]:
    """``(width, height)`` from the header alone (see :func:`image_header`)."""
    w, h, _mode = image_header(data, name)
    return w, h


def decode_image_bytes(data: bytes, name: str = "<bytes>", max_pixels: int | None = None) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to BGR uint8, refusing non-images and bombs:
    the size is read from the header and checked (and a JPEG's scans counted) before anything is
    decoded; a decoder failure is an InputError naming ``name``."""
    if not data:
        raise InputError(f"{name}: empty data, not an image")
    w, h = image_size(data, name)
    _check_pixels(h, w, name, max_pixels)
    if data[:3] == b"\xff\xd8\xff":
        _check_jpeg_scans(data, name)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a truncated PFM, a netpbm comment OpenCV cannot parse
        msg = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{name}: cannot decode as an image: the decoder failed ({msg})") from None
    if img is None:
        raise InputError(f"{name}: cannot decode as an image (not an image file, or corrupt)")
    _check_pixels(img.shape[0], img.shape[1], name, max_pixels)
    return img


def as_bgr(arr: np.ndarray, name: str = "<ndarray>", max_pixels: int | None = None) -> np.ndarray:
    """Any image-like array -> contiguous uint8 BGR (the one array check of every reader). Floats in 0..1 are scaled to 0..255 (floats
    above 1 are taken as 0..255); integers must lie in 0..255. Gray and BGRA are converted."""
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(arr).__name__}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))):
        raise InputError(f"{name}: array shape {arr.shape} is not an image; expected HxW, HxWx1, HxWx3 (BGR) or HxWx4")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name}: array has an empty side, shape {arr.shape}")
    _check_pixels(arr.shape[0], arr.shape[1], name, max_pixels)
    if arr.dtype != np.uint8:
        kind = arr.dtype.kind
        if kind not in "fiu" or arr.dtype.itemsize > 8:
            raise InputError(f"{name}: array dtype {arr.dtype} is not supported; pass uint8 BGR (or float in 0..1)")
        lo, hi = (float(arr.min()), float(arr.max())) if kind != "f" or np.isfinite(arr).all() else (np.nan, np.nan)
        if not (lo >= 0 and hi <= 255):
            raise InputError(
                f"{name}: array of dtype {arr.dtype} holds values {lo:g}..{hi:g}; pass uint8 BGR (0..255), "
                "integers in 0..255, or floats in 0..1 (or 0..255)")
        if kind == "f":
            arr = np.rint(arr * 255.0 if hi <= 1.0 else arr)
        arr = arr.astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    arr = np.ascontiguousarray(arr)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    if arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    return arr


def _from_pil(img: Any, name: str, max_pixels: int | None = None) -> np.ndarray:
    w, h = img.size
    if w == 0 or h == 0:
        raise InputError(f"{name}: PIL image has an empty side, size {img.size}")
    _check_pixels(h, w, name, max_pixels)
    try:
        rgb = np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{name}: cannot convert the PIL image (mode {img.mode}) to RGB ({exc})") from exc
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def read_image_file(path: str | os.PathLike, name: str | None = None) -> bytes:
    """The bytes of an image file: a regular file (a FIFO, socket or device is refused without
    blocking, a symlink loop named as one), at most :data:`MAX_IMAGE_FILE_BYTES` (checked before
    reading)."""
    label = name or str(path)
    problem = file_problem(Path(path))  # before opening: a FIFO would block forever
    if problem:
        raise InputError(f"{label}: {problem}")
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    if size > MAX_IMAGE_FILE_BYTES:
        raise LimitError(f"{label}: file is {size:,} bytes, above the limit of {MAX_IMAGE_FILE_BYTES:,} "
                         "for an image file (FACEFEAT_MAX_IMAGE_FILE_BYTES)")
    return read_regular_file(path, MAX_IMAGE_FILE_BYTES, label)  # non-blocking: a swapped-in FIFO cannot hang


def read_image(x: Any, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Read one image (path, URL, bytes, ndarray or PIL image) as a BGR uint8 array."""
    if isinstance(x, np.ndarray):
        return as_bgr(x, name or "<ndarray>", max_pixels)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(x), name or "<bytes>", max_pixels)
    if _is_url(x):
        data = fetch.fetch_url(x, timeout=URL_TIMEOUT_S, max_bytes=MAX_URL_BYTES, allow_private=True, what=name or x)
        return decode_image_bytes(data, name or x, max_pixels)
    if isinstance(x, (str, os.PathLike)):
        path = Path(x)
        label = name or str(x)
        if file_problem(path) == "is a directory":
            raise InputError(f"{label}: is a directory; pass it to predict() to read every image in it")
        return decode_image_bytes(read_image_file(path, label), label, max_pixels)
    if type(x).__module__.startswith("PIL."):
        return _from_pil(x, name or "<PIL.Image>", max_pixels)
    raise InputError(
        f"{name or repr(x)[:60]}: unsupported input type {type(x).__name__}; pass a path, directory, "
        "URL, numpy array (BGR), PIL image, bytes, or a list of these"
    )


def _list_dir(path: Path) -> list[Path]:
    """Image files of a directory by name (see :func:`facefeat.io.walk.list_image_files`: entries
    that are not regular files are kept, and reading reports them)."""
    return list_image_files(path, IMAGE_EXTENSIONS)


def expand_inputs(inputs: Any) -> list[ImageItem]:
    """Flatten a path / directory / URL / array / PIL image / list of these into ImageItems.

    Directories expand to their image files, sorted by name (not recursive). Missing paths are
    kept so that reading reports them per item.
    """
    if isinstance(inputs, (list, tuple)):
        if len(inputs) == 0:
            raise InputError("input list is empty")
        items: list[ImageItem] = []
        for x in inputs:
            items.extend(expand_inputs(x))
        return items
    if isinstance(inputs, (str, os.PathLike)) and not _is_url(inputs):
        path = Path(inputs)
        if path.is_dir():
            return [ImageItem(str(p), str(p)) for p in _list_dir(path)]
        return [ImageItem(str(inputs), str(inputs))]
    if _is_url(inputs):
        return [ImageItem(inputs, inputs)]
    return [ImageItem(inputs, None)]


def iter_images(
    inputs: Any, max_pixels: int | None = None
) -> Iterator[tuple[ImageItem, np.ndarray | None, InputError | None]]:
    """Yield ``(item, image, error)`` for every input; exactly one of image/error is None."""
    for item in expand_inputs(inputs):
        try:
            yield item, read_image(item.source, item.name, max_pixels), None
        except InputError as exc:
            yield item, None, exc


def iter_batches(seq: Iterable, size: int) -> Iterator[list]:
    """Group an iterable into lists of at most ``size`` items."""
    batch: list = []
    for x in seq:
        batch.append(x)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
