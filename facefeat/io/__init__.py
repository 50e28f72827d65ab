"""Image input: one reader for every kind of input facefeat accepts."""

from facefeat.io.image import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    MAX_JPEG_SCANS,
    ImageItem,
    as_bgr,
    decode_image_bytes,
    expand_inputs,
    image_size,
    iter_images,
    read_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "MAX_JPEG_SCANS",
    "ImageItem",
    "as_bgr",
    "decode_image_bytes",
    "expand_inputs",
    "image_size",
    "iter_images",
    "read_image",
]
