"""Past one machine: embed photo archives on Ray Data into Parquet, resumably; bulk-load galleries.

::

    from facefeat.distributed import embed_dataset, build_index_from_parquet
    report = embed_dataset("photos/", "emb/", engine="ray")       # or engine="local"
    index, stats = build_index_from_parquet("emb/", backend="faiss", index_type="HNSW32")
    index.save("gallery_index/")

Needs ``pip install 'facefeat[distributed]'`` (``ray[data]``, ``pyarrow``); nothing here imports
Ray until the Ray engine runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EmbedReport", "OutputDir", "build_index_from_parquet", "embed_dataset", "iter_parquet_features",
           "list_inputs", "read_embeddings"]


def __getattr__(name: str) -> Any:  # lazy: pyarrow / ray are imported when used
    if name in ("EmbedReport", "embed_dataset", "read_embeddings"):
        from facefeat.distributed import embed

        return getattr(embed, name)
    if name in ("build_index_from_parquet", "iter_parquet_features"):
        from facefeat.distributed import bulk

        return getattr(bulk, name)
    if name == "OutputDir":
        from facefeat.distributed.manifest import OutputDir

        return OutputDir
    if name == "list_inputs":
        from facefeat.distributed.inputs import list_inputs

        return list_inputs
    raise AttributeError(f"module 'facefeat.distributed' has no attribute {name!r}")
