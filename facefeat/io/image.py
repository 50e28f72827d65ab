"""Read images from paths, directories, lists, numpy arrays, PIL images and http(s) URLs.

Everything comes out as a uint8 BGR ``HxWx3`` numpy array (OpenCV's and PaddleX's convention), with
a name for results (``input_path``). Errors are :class:`~facefeat.errors.InputError` and name the
input that failed and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from facefeat.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
#: decompression-bomb guard: images above this many pixels are refused (override by env var)
MAX_IMAGE_PIXELS = int(os.environ.get("FACEFEAT_MAX_IMAGE_PIXELS", 64_000_000))
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
        raise InputError(f"{name}: image is {w}x{h} = {w * h:,} pixels, above the limit of {limit:,}")


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Width/height from the header alone (PNG, JPEG, ...), before decoding - bomb guard."""
    try:
        from PIL import Image
        import io

        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:
        return None


def decode_image_bytes(data: bytes, name: str = "<bytes>", max_pixels: int | None = None) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to BGR uint8, refusing non-images and bombs."""
    if not data:
        raise InputError(f"{name}: empty data, not an image")
    size = _header_size(data)
    if size is not None:
        _check_pixels(size[1], size[0], name, max_pixels)
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{name}: cannot decode as an image (not an image file, or corrupt)")
    _check_pixels(img.shape[0], img.shape[1], name, max_pixels)
    return img


def _from_array(arr: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and arr.size and np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 255:
            arr = arr.astype(np.uint8)
        else:
            raise InputError(
                f"{name}: array dtype {arr.dtype} is not supported; pass uint8 BGR (or float in 0..255)"
            )
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2BGR)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    if arr.ndim == 3 and arr.shape[2] == 3:
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise InputError(f"{name}: array has an empty side, shape {arr.shape}")
        return np.ascontiguousarray(arr)
    raise InputError(f"{name}: array shape {arr.shape} is not an image; expected HxW, HxWx1, HxWx3 (BGR) or HxWx4")


def _from_pil(img: Any, name: str) -> np.ndarray:
    rgb = np.asarray(img.convert("RGB"))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def read_image(x: Any, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Read one image (path, URL, bytes, ndarray or PIL image) as a BGR uint8 array."""
    if isinstance(x, np.ndarray):
        arr = _from_array(x, name or "<ndarray>")
        _check_pixels(arr.shape[0], arr.shape[1], name or "<ndarray>", max_pixels)
        return arr
    if isinstance(x, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(x), name or "<bytes>", max_pixels)
    if _is_url(x):
        from facefeat.io.fetch import fetch_url

        data = fetch_url(x, timeout=URL_TIMEOUT_S, max_bytes=MAX_URL_BYTES, allow_private=True, what=name or x)
        return decode_image_bytes(data, name or x, max_pixels)
    if isinstance(x, (str, os.PathLike)):
        path = Path(x)
        label = name or str(x)
        if not path.exists():
            raise InputError(f"{label}: no such file")
        if path.is_dir():
            raise InputError(f"{label}: is a directory; pass it to predict() to read every image in it")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from exc
        return decode_image_bytes(data, label, max_pixels)
    if type(x).__module__.startswith("PIL."):
        return _from_pil(x, name or "<PIL.Image>")
    raise InputError(
        f"{name or repr(x)[:60]}: unsupported input type {type(x).__name__}; pass a path, directory, "
        "URL, numpy array (BGR), PIL image, bytes, or a list of these"
    )


def _list_dir(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"{path}: directory holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


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
