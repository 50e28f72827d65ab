"""Image input: one reader for every kind of input facefeat accepts."""

from facefeat.io.image import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    ImageItem,
    decode_image_bytes,
    expand_inputs,
    iter_images,
    read_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "ImageItem",
    "decode_image_bytes",
    "expand_inputs",
    "iter_images",
    "read_image",
]
