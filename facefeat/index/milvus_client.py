"""Reaching Milvus: pymilvus imported on first use (with gRPC's noise about milvus-lite's missing
RPCs filtered), local milvus-lite paths, and stopping milvus-lite's in-process server so that a
private database's files can be moved or removed. Used by the Milvus engine
(:mod:`facefeat.index.milvus_index`) and by the reader of an earlier facefeat's ``milvus.db``
folders (:mod:`facefeat.index.legacy`)."""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

from facefeat.errors import require

#: the embedded milvus-lite database of a gallery folder written by an earlier facefeat
DB_NAME = "milvus.db"
DEFAULT_COLLECTION = "facefeat_gallery"


def pymilvus_module() -> Any:
    """The ``pymilvus`` module (a clear error naming the extra to install when it is missing)."""
    _quiet_unimplemented_rpcs()
    return require("pymilvus", "milvus", "The Milvus gallery index")


class _UnimplementedRpcFilter(logging.Filter):
    """Drops gRPC's "Exception calling application" records whose exception is NotImplementedError:
    pymilvus probes methods (AllocTimestamp) that milvus-lite's in-process server does not have,
    and falls back by itself - a traceback per probe is noise, not an error. Other errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, NotImplementedError)


def _quiet_unimplemented_rpcs() -> None:
    grpc_log = logging.getLogger("grpc._server")
    if not any(isinstance(f, _UnimplementedRpcFilter) for f in grpc_log.filters):
        grpc_log.addFilter(_UnimplementedRpcFilter())


def is_local_uri(uri: str) -> bool:
    return "://" not in str(uri) and not str(uri).startswith("unix:")


def release_lite(db_path: str | os.PathLike) -> None:
    """Stop milvus-lite's in-process server for a local db so its files may be moved or removed."""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # pragma: no cover - milvus-lite absent or another layout
        return
    try:
        server_manager_instance.release_server(str(db_path))
    except Exception:  # pragma: no cover - best effort
        pass


def cleanup_owned(client_box: list, db_path: str, tmpdir: str) -> None:
    client = client_box[0] if client_box else None
    if client is not None:
        try:
            client.close()
        except Exception:
            pass
    release_lite(db_path)
    shutil.rmtree(tmpdir, ignore_errors=True)


__all__ = ["DB_NAME", "DEFAULT_COLLECTION", "cleanup_owned", "is_local_uri", "pymilvus_module", "release_lite"]
