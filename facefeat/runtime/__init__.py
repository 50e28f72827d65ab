"""Runtimes that turn a preprocessed batch into raw features: ONNX Runtime (default) or torch."""

from facefeat.runtime.model_dir import MODEL_FILE, META_FILE, ModelMeta, read_model_dir, write_model_meta
from facefeat.runtime.onnx_runner import OrtRunner

__all__ = ["MODEL_FILE", "META_FILE", "ModelMeta", "OrtRunner", "read_model_dir", "write_model_meta"]
