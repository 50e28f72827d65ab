"""Bulk-load ``embed_dataset`` output into a FAISS or Milvus gallery without re-embedding.

Shards are read one at a time (memory: one shard plus ``chunk_rows`` features) and added to the
index in chunks through its public ``add``. Which faces become gallery entries (``faces``):

* ``"gallery"`` (default): the face-recognition pipeline's gallery rule - one face per image,
  the largest usable one, provided it is at least ``GALLERY_DOMINANCE`` times the area of the
  next; images without a usable face or with ambiguous faces are counted and skipped (exactly
  what ``pipeline.build_index`` does with the same images).
* ``"all"``: every embedded face (an archive to search: "every photo this person is in").

Labels come from a column of the rows (``label_column``: ``"label"`` - the input table's label,
a text list's second field or the image's folder - or ``"path"``, or any other column) or from a
mapping file (``label_map``: a ``path label`` text file as PaddleX's gallery.txt, a Parquet/CSV
table with ``path`` and ``label`` columns, or a directory tree whose folders name the people).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterator, Mapping

import numpy as np

from facefeat.distributed.manifest import OutputDir
from facefeat.distributed.stages import STATUS_ERROR, STATUS_NO_FACE, STATUS_OK, STATUS_SMALL
from facefeat.errors import InputError
from facefeat.index import create_index

log = logging.getLogger("facefeat")

FACE_MODES = ("gallery", "all")


def _option(flags: Mapping[str, str] | None, name: str, value: Any = ...) -> str:
    """How the caller spells option ``name`` (with ``value``) in messages: a command line's flag
    (``--skip-unlabelled``, ``--label-column path``) when ``flags`` maps it, else the keyword."""
    flag = (flags or {}).get(name)
    if flag:
        return flag if value is ... or value is True else f"{flag} {value}"
    return f"{name}=" if value is ... else f"{name}={value!r}"


def _counts(stats: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items())


def _features(col, dim: int) -> np.ndarray:
    """``[n, dim]`` float32 view of a fixed-size list column (null rows come out as zeros)."""
    arr = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    vals = arr.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    return vals[arr.offset:arr.offset + len(arr)]


def _label_lookup(label_map: str | os.PathLike) -> dict[str, str]:
    from facefeat.distributed.inputs import list_inputs

    return {p: lab for p, lab in list_inputs(label_map) if lab is not None}


def iter_parquet_features(out: str | os.PathLike, *, faces: str = "gallery", label_column: str = "label",
                          label_map: str | os.PathLike | None = None, skip_unlabelled: bool = False,
                          chunk_rows: int = 50_000, stats: dict | None = None,
                          flags: Mapping[str, str] | None = None
                          ) -> Iterator[tuple[np.ndarray, list[str], list[str]]]:
    """Yield ``(features [n, D], labels, paths)`` chunks of at most ``chunk_rows`` from an output
    directory, shard by shard; ``stats`` (a dict) receives the counts of what was used and skipped.
    ``flags``: the command-line flag of each option (``{"label_column": "--label-column"}``), for
    error messages that name what the user typed."""
    import pyarrow.parquet as pq

    from facefeat.vision.choice import is_dominant

    if faces not in FACE_MODES:
        raise InputError(f"{_option(flags, 'faces')} must be one of {', '.join(FACE_MODES)}, got {faces!r}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InputError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    od = OutputDir.open(out)
    dim = od.dim
    lookup = _label_lookup(label_map) if label_map is not None else None
    st = stats if stats is not None else {}
    for k in ("images", "entries", "no_face", "too_small", "ambiguous", "errors", "unlabelled"):
        st.setdefault(k, 0)
    if od.num_shards and len(od.finished) < od.num_shards:
        log.warning("%s: %d of %d shards are finished; loading those (re-run embed-dataset to finish)",
                    od.root, len(od.finished), od.num_shards)
    st["incomplete"] = len(od.finished) < od.num_shards
    feats: list[np.ndarray] = []
    labels: list[str] = []
    paths: list[str] = []
    n_buf = 0
    for file in od.shard_files():
        schema = pq.read_schema(file)
        if lookup is None and label_column not in schema.names:
            raise InputError(f"{file}: no column {label_column!r} to take labels from "
                             f"(columns: {', '.join(schema.names)}); pass {_option(flags, 'label_column')} "
                             f"or {_option(flags, 'label_map')}")
        cols = ["index", "path", "face_index", "status", "box", "feature"]
        cols += [label_column] if lookup is None and label_column not in cols else []
        t = pq.read_table(file, columns=cols)
        index = t.column("index").to_pylist()
        path_col = t.column("path").to_pylist()
        status = t.column("status").to_pylist()
        boxes = t.column("box").to_pylist()
        lab_col = t.column(label_column).to_pylist() if lookup is None else None
        vecs = _features(t.column("feature"), dim)
        picked: list[int] = []
        r, n = 0, len(t)
        while r < n:  # one image's rows are consecutive (sorted by index, face_index)
            e = r
            while e < n and index[e] == index[r]:
                e += 1
            st["images"] += 1
            usable = [i for i in range(r, e) if status[i] == STATUS_OK]
            if faces == "all":
                picked += usable
                st["too_small"] += sum(status[i] == STATUS_SMALL for i in range(r, e))
            elif not usable:
                s = status[r]
                st["errors" if s == STATUS_ERROR else "no_face" if s == STATUS_NO_FACE else "too_small"] += 1
            elif not is_dominant([boxes[i] for i in usable]):
                st["ambiguous"] += 1
            else:
                picked.append(usable[0])
            if faces == "all" and not usable and status[r] in (STATUS_ERROR, STATUS_NO_FACE):
                st["errors" if status[r] == STATUS_ERROR else "no_face"] += 1
            r = e
        for i in picked:
            lab = lookup.get(path_col[i]) if lookup is not None else lab_col[i]
            lab = None if lab is None else str(lab).strip() or None
            if lab is None:
                if not skip_unlabelled:
                    src = f"label map {label_map}" if lookup is not None else f"column {label_column!r}"
                    raise InputError(
                        f"{path_col[i]}: has no label ({src}; from a folder, labels are the names of the "
                        f"sub-folders the images sit in); give every image a label ({_option(flags, 'label_map')}), "
                        f"take {_option(flags, 'label_column', 'path')}, or pass {_option(flags, 'skip_unlabelled', True)}")
                st["unlabelled"] += 1
                continue
            labels.append(lab)
            paths.append(path_col[i])
            feats.append(vecs[i])
            n_buf += 1
            if n_buf == chunk_rows:
                st["entries"] += n_buf
                yield np.stack(feats), labels, paths
                feats, labels, paths, n_buf = [], [], [], 0
    if n_buf:
        st["entries"] += n_buf
        yield np.stack(feats), labels, paths


def build_index_from_parquet(out: str | os.PathLike, *, backend: str = "faiss", metric_type: str = "IP",
                             index_type: str | None = None, index: Any = None, faces: str = "gallery",
                             label_column: str = "label", label_map: str | os.PathLike | None = None,
                             skip_unlabelled: bool = False, chunk_rows: int = 50_000,
                             flags: Mapping[str, str] | None = None, **backend_kwargs: Any) -> tuple[Any, dict]:
    """Build a gallery index (or extend ``index``) from an ``embed_dataset`` output directory.

    Returns ``(index, stats)``; ``stats`` counts images, entries added and what was skipped
    (no face, too small, ambiguous, failed, unlabelled). The index carries the manifest's model,
    so a query with another model is refused. Save it with ``index.save(dir)``. ``flags``: see
    :func:`iter_parquet_features`.
    """
    od = OutputDir.open(out)
    model, dim = od.manifest["model"], od.dim
    if index is None:
        index = create_index(backend=backend, dim=dim, metric_type=metric_type, index_type=index_type,
                             model_name=model, **backend_kwargs)
    else:
        index.check_model(model, dim)
    stats: dict = {}
    for feats, labels, paths in iter_parquet_features(out, faces=faces, label_column=label_column,
                                                      label_map=label_map, skip_unlabelled=skip_unlabelled,
                                                      chunk_rows=chunk_rows, stats=stats, flags=flags):
        index.add(feats, labels, paths)
    if not stats.get("entries") and not len(index):
        raise InputError(f"{out}: no usable face to load ({_counts(stats)})")
    return index, stats
