"""``embed_dataset``: embed every face of a photo archive into Parquet shards, resumably.

Two engines run the same stages (:mod:`facefeat.distributed.stages`):

* ``engine="local"``: one process, shard after shard (the reference; tqdm progress).
* ``engine="ray"``: a Ray Data pipeline - planned inputs (one block per shard) -> ``decode_batch``
  (CPU tasks) -> ``FaceEmbedder`` in an actor pool (each actor loads the models once; ``workers``
  actors of ``num_cpus`` / ``num_gpus`` each) -> rows streamed back to the driver, which writes a
  shard the moment all its rows are in. On one machine Ray fuses decode into the actors (same
  resources); with GPU actors decode stays in separate CPU tasks. ``address`` (or ``RAY_ADDRESS``)
  joins a cluster; without either a local Ray instance is started (and stopped afterwards).

The output directory, its manifest and why a killed run resumes exactly are described in
:mod:`facefeat.distributed.manifest`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from facefeat.distributed.inputs import list_inputs
from facefeat.distributed.manifest import (FORMAT_NAME, FORMAT_VERSION, OutputDir, manifest_path, shard_file,
                                          write_table_atomic)
from facefeat.distributed.stages import (STATUS_ERROR, STATUS_NO_FACE, STATUS_OK, FaceEmbedder, decode_batch,
                                        output_schema)
from facefeat.errors import InputError, require
from facefeat.io.files import file_sha256
from facefeat.weights.resolver import resolve

log = logging.getLogger("facefeat")

ENGINES = ("local", "ray")
DEFAULT_SHARD_SIZE = 1000


@dataclass
class EmbedReport:
    """What one ``embed_dataset`` call did (this run only) and how fast."""

    out: str
    engine: str
    images: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    shards_total: int = 0
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def faces_per_s(self) -> float:
        return self.faces / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "images_per_s": round(self.images_per_s, 2), "faces_per_s": round(self.faces_per_s, 2)}

    def summary(self) -> str:
        return (f"{self.engine}: {self.images} images, {self.faces} faces, {self.no_face} without a face, "
                f"{self.errors} failed in {self.seconds:.1f} s ({self.images_per_s:.1f} images/s, "
                f"{self.faces_per_s:.1f} faces/s); shards {self.shards_written} written, "
                f"{self.shards_skipped} already done, {self.shards_total} in all -> {self.out}")


def _model_identity(model: str | None, weights: Any, model_dir: Any, backend: str, precision: str | None):
    """Load the model once in the driver (CPU): canonical name, dim and a hash of its weights.
    This also fills the model cache before workers start, so they do not convert it concurrently."""
    from facefeat.predict.predictor import create_model

    pred = create_model(model if model_dir is None else None, weights, model_dir=model_dir, backend=backend,
                        precision=precision or "auto", device="cpu", num_threads=1)
    h = pred.meta.extra.get("weights_sha256_16")
    if not h:
        src = getattr(pred.runner, "path", None)
        if src is None:  # the torch backend: hash the weights file it was built from

            src = resolve(weights, pred.model_name).path
        h = file_sha256(src)[:16]
    rt = pred.runtime_info()  # what "auto" chose here: recorded, so every worker and resume runs the same
    return pred.model_name, int(pred.embedding_size), str(h), rt["backend"], rt["precision"]


def pipeline_settings(model: str, model_hash: str, dim: int, backend: str, precision: str | None,
                      det_threshold: float, nms_threshold: float, min_face_size: float, align: str,
                      flip: bool, landmarks: str = "mirror") -> dict:
    """Everything that changes the output rows; an output directory refuses other values
    (``landmarks``: the pipeline's landmark placement, facefeat.vision.refine)."""
    return {"model": model, "model_hash": model_hash, "dim": int(dim), "backend": backend,
            "precision": precision or "fp32", "det_threshold": float(det_threshold),
            "nms_threshold": float(nms_threshold), "min_face_size": float(min_face_size), "align": align,
            "flip": bool(flip), "landmarks": landmarks}


def _open_output(out: Path, settings: dict, shard_size: int | None) -> OutputDir:
    if manifest_path(out) is not None:
        od = OutputDir.open(out)
        od.check_settings(settings)
        if shard_size is not None and int(shard_size) != od.shard_size:
            raise InputError(f"{out}: was planned with shard_size {od.shard_size}, not {shard_size}; "
                             "leave shard_size unset to resume")
        return od.lock()
    if out.exists() and (not out.is_dir() or any(p.name != ".lock" for p in out.iterdir())):
        raise InputError(f"{out}: exists and is not an embed_dataset output directory; pick an empty or new --out")
    od = OutputDir(out, {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": settings["model"],
                         "model_hash": settings["model_hash"], "dim": settings["dim"], "settings": settings,
                         "shard_size": int(shard_size or DEFAULT_SHARD_SIZE), "segments": [],
                         "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    od.lock()
    od.write_manifest()
    return od


def _plan(od: OutputDir, items: list[tuple[str, str | None]]):
    """Add a segment for inputs never planned before; return the pending shards' plan tables."""
    import pyarrow as pa
    import pyarrow.compute as pc

    planned: set[str] = set()
    for t in od.read_plan():
        planned.update(t.column("path").to_pylist())
    new = [it for it in items if it[0] not in planned]
    gone = len(planned) - (len(items) - len(new))
    if gone:
        log.warning("%s: %d planned input(s) are no longer listed; they stay planned (a missing file becomes "
                    "an error row)", od.root, gone)
    if new:
        od.add_segment(new)
    done = od.verified_finished()
    od.finished = {s: r for s, r in od.finished.items() if s in done}
    pending = []
    for t in od.read_plan():
        t = t.filter(pc.invert(pc.is_in(t.column("shard"), value_set=pa.array(sorted(done), pa.int64()))))
        if len(t):
            shards = t.column("shard").to_numpy()
            cuts = [0] + [i for i in range(1, len(shards)) if shards[i] != shards[i - 1]] + [len(shards)]
            pending += [t.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:])]
    return pending, len(done)


class _ShardWriter:
    """Collects rows per shard (dropping any re-delivered duplicate) and writes a shard once every
    input of it has all its rows, then records it in the journal."""

    def __init__(self, od: OutputDir, plan: Sequence[Any], report: EmbedReport, bar=None):
        self.od, self.report, self.bar = od, report, bar
        self.expected = {int(t.column("shard")[0].as_py()): len(t) for t in plan}
        self.parts: dict[int, list] = {}
        self.seen: dict[int, set] = {}
        self.need: dict[int, dict[int, int]] = {}
        self.written: set[int] = set()

    def add(self, table) -> None:
        import pyarrow as pa

        if not len(table):
            return
        idx = table.column("index").to_pylist()
        fi = table.column("face_index").to_pylist()
        nf = table.column("num_faces").to_pylist()
        shard_of = self.od.shard_size
        by_shard: dict[int, list[int]] = {}
        for r, (i, f, n) in enumerate(zip(idx, fi, nf)):
            s = self._shard(i, shard_of)
            if s in self.written or s not in self.expected:  # a late re-delivery (a retried batch)
                continue
            key = (i, -1 if f is None else f)
            seen = self.seen.setdefault(s, set())
            if key in seen:
                continue
            seen.add(key)
            self.need.setdefault(s, {})[i] = max(1, n)
            by_shard.setdefault(s, []).append(r)
        for s, rows in by_shard.items():
            self.parts.setdefault(s, []).append(table.take(pa.array(rows, pa.int64())))
            need = self.need[s]
            if len(need) == self.expected[s] and len(self.seen[s]) == sum(need.values()):
                self._write(s)

    def _shard(self, index: int, size: int) -> int:
        for seg in self.od.segments():
            if seg["first_index"] <= index < seg["first_index"] + seg["count"]:
                return seg["first_shard"] + (index - seg["first_index"]) // size
        raise InputError(f"row index {index} is outside the plan of {self.od.root}")  # pragma: no cover

    def _write(self, shard: int) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = pa.concat_tables(self.parts.pop(shard)).sort_by([("index", "ascending"), ("face_index", "ascending")])
        self.seen.pop(shard)
        need = self.need.pop(shard)
        self.written.add(shard)
        name = shard_file(shard)
        size = write_table_atomic(table, self.od.root / name)
        status = table.column("status")
        counts = {k: int(pc.sum(pc.equal(status, k)).as_py() or 0) for k in (STATUS_OK, STATUS_NO_FACE, STATUS_ERROR)}
        self.od.record({"shard": shard, "file": name, "bytes": size, "rows": len(table), "images": len(need),
                        "faces": counts[STATUS_OK], "no_face": counts[STATUS_NO_FACE], "errors": counts[STATUS_ERROR],
                        "finished_at": round(time.time(), 3)})
        r = self.report
        r.images += len(need)
        r.faces += counts[STATUS_OK]
        r.no_face += counts[STATUS_NO_FACE]
        r.errors += counts[STATUS_ERROR]
        r.shards_written += 1
        if self.bar is not None:
            self.bar.update(len(need))

    @property
    def open_shards(self) -> list[int]:
        return sorted(self.parts)


def _run_local(plan, embedder_kw: dict, batch_size: int, writer: _ShardWriter) -> None:
    embedder = FaceEmbedder(**embedder_kw)
    for shard in plan:
        for start in range(0, len(shard), batch_size):
            writer.add(embedder(decode_batch(shard.slice(start, batch_size))))


def _run_ray(plan, embedder_kw: dict, batch_size: int, writer: _ShardWriter, address: str | None,
             workers: int | tuple[int, int] | None, num_cpus: float, num_gpus: float, progress: bool,
             ray_init: dict | None) -> None:
    ray = require("ray", "distributed", "The Ray engine of embed_dataset")
    require("ray.data", "distributed", "The Ray engine of embed_dataset")
    import ray.data

    started = False
    if not ray.is_initialized():
        ray.init(address=address, **(ray_init or {}))
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = bool(progress)
        if workers is None:
            cpus = float(ray.cluster_resources().get("CPU", 1))
            workers = max(1, int(cpus // max(num_cpus, 1e-9))) if not num_gpus else \
                max(1, int(float(ray.cluster_resources().get("GPU", 1)) // num_gpus))
        size = workers if isinstance(workers, tuple) else (int(workers), int(workers))
        ds = ray.data.from_arrow(list(plan))
        ds = ds.map_batches(decode_batch, batch_format="pyarrow", batch_size=batch_size,
                            num_cpus=num_cpus if not num_gpus else 1)
        ds = ds.map_batches(FaceEmbedder, fn_constructor_kwargs=embedder_kw, batch_format="pyarrow",
                            batch_size=batch_size, compute=ray.data.ActorPoolStrategy(min_size=size[0], max_size=size[1]),
                            num_cpus=num_cpus, num_gpus=num_gpus or None)
        for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            writer.add(block)
    finally:
        if started:
            ray.shutdown()


def embed_dataset(inputs: str | os.PathLike, out: str | os.PathLike, *, engine: str = "local",
                  address: str | None = None, model: str | None = "SFace", weights: str | os.PathLike | None = None,
                  model_dir: str | os.PathLike | None = None, backend: str = "auto",
                  precision: str | None = None, device: str = "cpu", det_threshold: float = 0.5, nms_threshold: float = 0.3,
                  min_face_size: float = 20, align: str = "align", flip: bool = False, batch_size: int = 32,
                  workers: int | tuple[int, int] | None = None, num_cpus: float = 1, num_gpus: float = 0,
                  num_threads: int | None = None, shard_size: int | None = None, path_column: str = "path",
                  label_column: str | None = "label", progress: bool = True,
                  ray_init: dict | None = None) -> EmbedReport:
    """Embed every face of ``inputs`` (a directory tree, a text list or a Parquet/CSV table of
    paths/URLs; see :mod:`facefeat.distributed.inputs`) into Parquet shards under ``out``.

    Re-running the same call resumes: finished shards are skipped, nothing is duplicated, and a
    different model or setting is refused (InputError). ``engine="ray"`` runs on Ray Data
    (``address``: a cluster, e.g. ``ray://head:10001``; ``workers`` actors, each with ``num_cpus``
    and ``num_gpus``; ``ray_init``: extra ``ray.init`` arguments when facefeat starts Ray).
    ``num_threads``: inference threads per worker (default: ``num_cpus`` on Ray, all cores locally).
    ``device``: the local engine's device (``cpu``, ``gpu:0``); Ray actors use the GPU Ray gives
    them when ``num_gpus`` > 0, else the CPU.
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, got {engine!r}")
    for name, v in (("batch_size", batch_size), ("shard_size", shard_size or 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    if num_cpus <= 0 or num_gpus < 0:
        raise InputError(f"num_cpus must be > 0 and num_gpus >= 0, got {num_cpus} and {num_gpus}")
    require("pyarrow", "distributed", "embed_dataset's Parquet output")
    t0 = time.perf_counter()
    items = list_inputs(inputs, path_column, label_column)
    name, dim, model_hash, cpu_backend, cpu_precision = _model_identity(model, weights, model_dir, backend, precision)
    if str(device).lower() == "cpu" and num_gpus == 0:
        backend, precision = cpu_backend, cpu_precision
    settings = pipeline_settings(name, model_hash, dim, backend, precision, det_threshold, nms_threshold,
                                 min_face_size, align, flip)
    od = _open_output(Path(out), settings, shard_size)
    try:
        plan, n_done = _plan(od, items)
        report = EmbedReport(out=str(out), engine=engine, shards_skipped=n_done, shards_total=od.num_shards)
        load = {**settings, "model": model if model_dir is None else None,
                "weights": None if weights is None else os.path.abspath(weights),
                "model_dir": None if model_dir is None else os.path.abspath(model_dir)}
        threads = num_threads or (max(1, int(num_cpus)) if engine == "ray" else None)
        embedder_kw = {"settings": load, "model_hash": model_hash, "dim": dim, "num_threads": threads,
                       "batch_size": batch_size, "device": "gpu:0" if num_gpus else "cpu"}
        bar = None
        if progress and engine == "local":
            from tqdm import tqdm

            bar = tqdm(total=sum(len(t) for t in plan), desc="embed-dataset", unit="img")
        writer = _ShardWriter(od, plan, report, bar)
        try:
            if plan and engine == "local":
                _run_local(plan, {**embedder_kw, "device": device}, batch_size, writer)
            elif plan:
                _run_ray(plan, embedder_kw, batch_size, writer, address, workers, num_cpus, num_gpus, progress,
                         ray_init)
        finally:
            if bar is not None:
                bar.close()
        if writer.open_shards:  # pragma: no cover - a bug, never silently tolerated
            raise InputError(f"{out}: shards {writer.open_shards[:10]} did not receive all their rows")
        od.manifest["finished_shards"] = len(od.finished)
        od.manifest["complete"] = len(od.finished) == od.num_shards
        od.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        od.write_manifest()
    finally:
        od.unlock()
    report.seconds = time.perf_counter() - t0
    log.info("%s", report.summary())
    return report


def read_embeddings(out: str | os.PathLike, columns: Iterable[str] | None = None):
    """All finished rows of an output directory as one Arrow table (small outputs; the bulk
    loader streams shard by shard instead)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    od = OutputDir.open(out)
    files = od.shard_files()
    cols = list(columns) if columns is not None else None
    if not files:
        schema = output_schema(od.dim)
        return schema.empty_table() if cols is None else pa.schema([schema.field(c) for c in cols]).empty_table()
    return pa.concat_tables(pq.read_table(f, columns=cols) for f in files)
