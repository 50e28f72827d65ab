"""``facefeat serve`` options and limits; importable without FastAPI (the CLI builds its help)."""

from __future__ import annotations

import argparse
import logging

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000  # 5000 x 5000
DEFAULT_MAX_BUILD_IMAGES = 64


def configure_cli(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--storage", required=True, help="directory for the gallery indexes")
    p.add_argument("--model", default="SFace")
    p.add_argument("--index-backend", default="faiss", choices=["faiss", "milvus"])
    p.add_argument("--milvus-uri", default=None, help="Milvus server URI (default: milvus-lite files under --storage)")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    p.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS)
    p.add_argument("--max-build-images", type=int, default=DEFAULT_MAX_BUILD_IMAGES)
    p.add_argument("--infer-concurrency", type=int, default=0, help="max concurrent inferences (0: unlimited)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per model")
    p.add_argument("--no-url-images", action="store_true", help="refuse http(s) image URLs (base64 only)")
    p.add_argument("--log-level", default="info")


def run_cli(a: argparse.Namespace) -> int:
    from facefeat.serving.app import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    serve(host=a.host, port=a.port, workers=a.workers, log_level=a.log_level, storage_dir=a.storage,
          model=a.model, index_backend=a.index_backend, milvus_uri=a.milvus_uri, max_body_bytes=a.max_body_bytes,
          max_image_pixels=a.max_image_pixels, max_build_images=a.max_build_images,
          infer_concurrency=a.infer_concurrency, num_threads=a.threads, allow_url_images=not a.no_url_images)
    return 0
