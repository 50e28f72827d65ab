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

from facefeat.distributed.bulk import build_index_from_parquet, iter_parquet_features
from facefeat.distributed.manifest import OutputDir
from facefeat.utils import lazy_exports

__all__ = ["EmbedReport", "OutputDir", "build_index_from_parquet", "embed_dataset", "iter_parquet_features",
           "list_inputs", "read_embeddings"]

#: public name -> the module that defines it (imported lazily: embedding and reading inputs import
#: OpenCV, through facefeat.io)
_LAZY = {"EmbedReport": "facefeat.distributed.embed", "embed_dataset": "facefeat.distributed.embed",
         "read_embeddings": "facefeat.distributed.embed", "list_inputs": "facefeat.distributed.inputs"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
