"""The output directory of ``embed_dataset``: plan, manifest, finished-shard journal, shards.

Layout (everything but the journal written atomically: temp file + fsync + rename)::

    part-000000.parquet          one shard: the rows of ``shard_size`` consecutive planned inputs
    _manifest.json               format, model, model_hash, dim, settings, shard_size, plan segments
    _inputs/inputs-000.parquet   a plan segment: the sorted inputs (index, shard, path, label)
    _shards.jsonl                journal: one JSON line per finished shard (appended + fsynced after
                                 the shard file is in place; a torn last line from a crash is ignored)

Only data files sit under the dataset path; metadata is ``_``-prefixed (and locks and temp files
``.``-prefixed), which Spark, pyarrow.dataset, pandas and DuckDB (``'emb/*.parquet'``) skip, so
``pandas.read_parquet("emb/")`` and ``pyarrow.dataset.dataset("emb/")`` read exactly the rows.
Directories of format version 1 (``manifest.json``, ``shards.jsonl``, ``inputs-000.parquet`` at
the top) are still read and resumed under their own names.

Why resume is exact: the first run sorts the inputs and cuts them into fixed shards (plan
segment 0). A shard becomes *finished* only when its file is complete and renamed into place and
its journal line is on disk; a re-run embeds exactly the shards not in the journal, with the same
inputs in the same order, and overwrites any half-done file. Inputs that appear later (a grown
directory) form a new segment with new shard numbers; planned inputs are never planned twice.
A different model or setting is refused: one output directory holds one model's features.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from facefeat.distributed.stages import STATUS_ERROR, plan_schema
from facefeat.errors import InputError
from facefeat.utils import atomic_path, atomic_write_json

log = logging.getLogger("facefeat")

FORMAT_NAME = "facefeat-embeddings"
FORMAT_VERSION = 2
MANIFEST_FILE = "_manifest.json"
JOURNAL_FILE = "_shards.jsonl"
PLAN_DIR = "_inputs"
LOCK_FILE = ".lock"
#: format version 1's names (metadata beside the shards), read and resumed as they are
LEGACY_MANIFEST_FILE, LEGACY_JOURNAL_FILE = "manifest.json", "shards.jsonl"


def manifest_path(root: str | os.PathLike) -> Path | None:
    """The manifest of an output directory (either layout), or None when there is none."""
    for name in (MANIFEST_FILE, LEGACY_MANIFEST_FILE):
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None


def shard_file(shard: int) -> str:
    return f"part-{shard:06d}.parquet"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_table_atomic(table, dst: Path) -> int:
    """Write a Parquet file atomically (temp + fsync + rename); returns its size in bytes."""
    import pyarrow.parquet as pq

    with atomic_path(dst, ".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")
        _fsync_file(tmp)
    return dst.stat().st_size


@dataclass
class OutputDir:
    """An embeddings output directory, opened for reading (``open``) or for a run (``lock``)."""

    root: Path
    manifest: dict = field(default_factory=dict)
    finished: dict[int, dict] = field(default_factory=dict)
    _lock_fd: int | None = None
    legacy: bool = False  # format version 1's names

    @property
    def manifest_file(self) -> Path:
        return self.root / (LEGACY_MANIFEST_FILE if self.legacy else MANIFEST_FILE)

    @property
    def journal_file(self) -> Path:
        return self.root / (LEGACY_JOURNAL_FILE if self.legacy else JOURNAL_FILE)

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike) -> "OutputDir":
        """Open an existing output directory (InputError when it is not one)."""
        d = Path(root)
        path = manifest_path(d)
        if path is None:
            raise InputError(f"{d}: not an embed_dataset output directory ({MANIFEST_FILE} is missing)")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: manifest is unreadable ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise InputError(f"{path}: not a {FORMAT_NAME} manifest")
        if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
            raise InputError(f"{path}: format_version {manifest.get('format_version')} is newer than this "
                             f"facefeat reads ({FORMAT_VERSION}); upgrade facefeat")
        out = cls(d, manifest, legacy=path.name == LEGACY_MANIFEST_FILE)
        out.finished = out._read_journal()
        return out

    def lock(self) -> "OutputDir":
        """Take the directory's run lock (one run at a time); InputError if another run holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InputError(f"{self.root}: another embed_dataset run is writing this directory; "
                             "wait for it or use another --out") from None
        self._lock_fd = fd
        for tmp in self.root.glob(".part-*.tmp"):  # half-written shards of a killed run
            tmp.unlink(missing_ok=True)
        self._repair_journal()
        return self

    def _repair_journal(self) -> None:
        """Cut a torn last line (a crash mid-append) so the next record starts on a line of its own."""
        path = self.journal_file
        if not path.is_file():
            return
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
                f.flush()
                os.fsync(f.fileno())

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- journal --------------------------------------------------------------------------------
    def _read_journal(self) -> dict[int, dict]:
        path = self.journal_file
        done: dict[int, dict] = {}
        if not path.is_file():
            return done
        lines = path.read_bytes().split(b"\n")
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                shard = int(rec["shard"])
            except (ValueError, KeyError, TypeError):
                if n == len(lines):  # torn last line (a crash mid-append): the shard is redone
                    log.warning("%s: ignoring a torn last line", path)
                    continue
                raise InputError(f"{path}:{n}: corrupt journal line {raw[:80]!r}") from None
            done[shard] = rec
        return done

    def record(self, rec: dict) -> None:
        """Append a finished shard to the journal (after its file is in place) and fsync it."""
        with open(self.journal_file, "ab") as f:
            f.write(json.dumps(rec, sort_keys=True).encode("utf-8") + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self.finished[int(rec["shard"])] = rec

    def verified_finished(self) -> set[int]:
        """Finished shards whose file is present with the recorded size (others get redone)."""
        ok = set()
        for shard, rec in self.finished.items():
            p = self.root / rec["file"]
            if p.is_file() and p.stat().st_size == rec.get("bytes"):
                ok.add(shard)
            else:
                log.warning("%s: shard %d is recorded as finished but its file is missing or changed; "
                            "it will be embedded again", self.root, shard)
        return ok

    # -- manifest -------------------------------------------------------------------------------
    def write_manifest(self) -> None:
        atomic_write_json(self.manifest_file, self.manifest, indent=2)

    def check_settings(self, settings: dict) -> None:
        """Refuse to mix: ``settings`` must equal the manifest's (model, weights hash, thresholds ...)."""
        old = self.manifest.get("settings", {})
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if diff:
            desc = "; ".join(f"{k}: {old.get(k)!r} here, {settings.get(k)!r} now" for k in diff)
            raise InputError(f"{self.root}: holds features made with other settings ({desc}); one output "
                             "directory holds one model's features - use another --out, or delete it to start over")

    @property
    def shard_size(self) -> int:
        return int(self.manifest["shard_size"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def num_shards(self) -> int:
        return sum(int(s["num_shards"]) for s in self.manifest.get("segments", []))

    def segments(self) -> list[dict]:
        return list(self.manifest.get("segments", []))

    def read_plan(self) -> Iterator[Any]:
        """The planned inputs, segment by segment, as Arrow tables (index, shard, path, label)."""
        import pyarrow.parquet as pq

        for seg in self.segments():
            path = self.root / seg["file"]
            if not path.is_file():
                raise InputError(f"{path}: plan segment listed in {self.manifest_file.name} is missing")
            yield pq.read_table(path)

    def add_segment(self, items: list[tuple[str, str | None]]) -> dict:
        """Plan new inputs (already sorted, none planned before) as new shards; returns the segment."""
        import pyarrow as pa

        segs = self.manifest.setdefault("segments", [])
        first_index = sum(int(s["count"]) for s in segs)
        first_shard = self.num_shards
        size = self.shard_size
        n = len(items)
        num_shards = (n + size - 1) // size
        table = pa.table({
            "index": pa.array(range(first_index, first_index + n), pa.int64()),
            "shard": pa.array([first_shard + i // size for i in range(n)], pa.int64()),
            "path": pa.array([p for p, _ in items], pa.string()),
            "label": pa.array([lab for _, lab in items], pa.string()),
        }, schema=plan_schema())
        name = f"inputs-{len(segs):03d}.parquet" if self.legacy else f"{PLAN_DIR}/inputs-{len(segs):03d}.parquet"
        write_table_atomic(table, self.root / name)
        seg = {"file": name, "first_index": first_index, "count": n, "first_shard": first_shard,
               "num_shards": num_shards}
        segs.append(seg)
        self.write_manifest()  # the segment counts only once the manifest names it
        return seg

    def failed_inputs(self, limit: int = 100) -> list[tuple[str, str]]:
        """``(path, error)`` of the first ``limit`` images that could not be read, over the finished shards."""
        import pyarrow.parquet as pq

        out: list[tuple[str, str]] = []
        for f in self.shard_files():
            t = pq.read_table(f, columns=["path", "status", "error"], filters=[("status", "=", STATUS_ERROR)])
            out += zip(t.column("path").to_pylist(), t.column("error").to_pylist())
            if len(out) >= limit:
                break
        return out[:limit]

    def shard_files(self) -> list[Path]:
        """Files of the finished shards, in shard order (what readers and the bulk loader use)."""
        return [self.root / self.finished[s]["file"] for s in sorted(self.finished)]
