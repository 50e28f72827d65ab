"""Backup, export and import of a gallery: one archive file holding everything the gallery keeps.

The archive is a POSIX tar file (format :data:`ARCHIVE_FORMAT`, version :data:`ARCHIVE_VERSION`)::

    people.json      [{"label", "created"}]                    every person, sorted by label
    samples.jsonl    one JSON object per sample, in id order: {"id", "label", "source", "created",
                     "weights_hash", "figures", "det", "content_hash", "crop", "crop_format"}
                     ("crop": the member holding its aligned face, or null)
    features.f32     the features, float32 little-endian, one row of ``dim`` values per sample line
    crops/<id>.<fmt> the aligned 112x112 faces (JPEG as enrolled)
    manifest.json    written last: {"format", "version", "created", "facefeat", "meta" (the gallery's
                     model, dim, metric, index type), "next_id", "people", "samples",
                     "files": {member: {"sha256", "size"}}}

Import (:func:`import_archive`) checks everything before it writes anything: the manifest, the
format version (an archive from a newer facefeat is refused), and every member against its
checksum (a damaged or edited member is refused, naming the archive and the member; so is a member
the manifest does not list). Into a target that holds no gallery it restores the gallery exactly
(same ids, labels, features, figures, crops) in one transaction; into an existing gallery it merges
by person, in one transaction, and reports what it added, what it skipped as duplicates and which
images are stored there under another name (conflicts, not added). A crash or kill at any moment
leaves the target as it was or fully imported, never in between. The checksums detect damage and
edits of members; they do not authenticate the archive (sign the file if that matters).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index import legacy
from facefeat.index.labels import normalize_label
from facefeat.index.persist import open_existing_store
from facefeat.index.store import Op, SampleRecord, is_store_url
from facefeat.index.store_factory import open_store
from facefeat.results import BaseResult
from facefeat.utils import json_safe

ARCHIVE_FORMAT = "facefeat-gallery"
ARCHIVE_VERSION = 1
MANIFEST = "manifest.json"
#: gallery metadata kept in the archive (the rest is the store's own bookkeeping)
_META_KEYS = ("backend", "dim", "metric_type", "index_type", "model_name", "params", "thresholds",
              "model_key", "migrated_from", "effective_index_type")
_CHUNK = 2000


class ArchiveReport(BaseResult):
    """What an export wrote or an import did."""

    default_stem = "archive"


def _snapshot(store: Any) -> tuple[dict, int, list[dict], list[dict], np.ndarray, dict]:
    """One consistent read of a store (retried when a writer changes it meanwhile)."""
    for _ in range(5):
        seq = store.counter()
        meta, next_id, people = store.meta(), store.next_id(), store.persons()
        rows: list[dict] = []
        feats: list[np.ndarray] = []
        crops: dict[int, tuple[bytes, str]] = {}
        for ids, labels, paths, f in store.load(chunk=_CHUNK):
            recs = store.records(ids.tolist(), with_crops=True)
            for i, lab, src in zip(ids.tolist(), labels, paths):
                r = recs.get(i)
                row = {"id": i, "label": lab, "source": src, "created": r.created if r else None,
                       "weights_hash": r.weights_hash if r else None, "figures": r.figures if r else None,
                       "det": r.det if r else None, "content_hash": r.content_hash if r else None,
                       "crop": None, "crop_format": r.crop_format if r else "jpeg"}
                if r is not None and r.crop is not None:
                    row["crop"] = f"crops/{i}.{'jpg' if r.crop_format == 'jpeg' else r.crop_format}"
                    crops[i] = (r.crop, r.crop_format)
                rows.append(row)
            feats.append(np.ascontiguousarray(f, "<f4"))
        if store.counter() == seq:
            x = np.concatenate(feats) if feats else np.zeros((0, int(meta["dim"])), "<f4")
            return meta, next_id, people, rows, x, crops
    raise FaceIndexError(f"{store.location}: the gallery kept changing during the export; retry when it is quieter")


def export_archive(location: str | os.PathLike, out: str | os.PathLike, gallery: str | None = None) -> ArchiveReport:
    """Write the gallery at ``location`` (directory or ``postgresql://`` URL) to the archive ``out``
    (written beside it and renamed into place: a crash never leaves a partial archive there)."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out}: is a directory; give the archive's file name (e.g. gallery.tar)")
    store = open_existing_store(location, gallery)
    try:
        meta, next_id, people, rows, x, crops = _snapshot(store)
        where = store.location
    finally:
        store.close()
    members: list[tuple[str, bytes]] = [
        ("people.json", json.dumps(people, ensure_ascii=False).encode()),
        ("samples.jsonl", "".join(json.dumps(json_safe(r), ensure_ascii=False) + "\n" for r in rows).encode()),
        ("features.f32", x.tobytes()),
    ]
    members += [(r["crop"], crops[r["id"]][0]) for r in rows if r["crop"]]
    manifest = {"format": ARCHIVE_FORMAT, "version": ARCHIVE_VERSION, "created": time.time(),
                "facefeat": _version(), "meta": {k: meta[k] for k in _META_KEYS if k in meta},
                "next_id": int(next_id), "people": len(people), "samples": len(rows),
                "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                          for name, data in members}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, data in members + [(MANIFEST, json.dumps(json_safe(manifest), ensure_ascii=False,
                                                                   indent=1).encode())]:
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = len(data), int(manifest["created"]), 0o644
                    tar.addfile(info, io.BytesIO(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ArchiveReport(gallery=where, archive=str(out), format=ARCHIVE_FORMAT, version=ARCHIVE_VERSION,
                         people=len(people), samples=len(rows), crops=len(crops), bytes=out.stat().st_size)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("facefeat")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "unknown"


class Archive:
    """A checked archive: :meth:`open` verifies the manifest, version and every checksum."""

    def __init__(self, path: Path, manifest: dict, people: list, rows: list, x: np.ndarray, blobs: dict[str, bytes]):
        self.path, self.manifest, self.people, self.rows, self.features = path, manifest, people, rows, x
        self.blobs = blobs

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Archive":
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: no such archive file")
        try:
            tar = tarfile.open(p, mode="r:")
        except (tarfile.TarError, OSError) as exc:
            raise InputError(f"{p}: not a facefeat gallery archive, or damaged ({exc})") from None
        try:
            blobs = _read_members(p, tar)
            tar.close()
            manifest = _manifest(p, blobs)
            files = manifest["files"]
            for name, data in blobs.items():
                if name == MANIFEST:
                    continue
                want = files.get(name)
                if want is None:
                    raise InputError(f"{p}: damaged or tampered: member {name!r} is not listed in the manifest")
                if len(data) != int(want["size"]) or hashlib.sha256(data).hexdigest() != want["sha256"]:
                    raise InputError(f"{p}: damaged or tampered: member {name!r} does not match its checksum")
            missing = sorted(set(files) - set(blobs))
            if missing:
                raise InputError(f"{p}: damaged or truncated: member(s) {', '.join(missing[:5])} missing")
            people = json.loads(blobs["people.json"])
            rows = [json.loads(line) for line in blobs["samples.jsonl"].decode().splitlines() if line.strip()]
            dim = int(manifest["meta"]["dim"])
            raw = blobs["features.f32"]
            if len(raw) != len(rows) * dim * 4 or len(rows) != int(manifest["samples"]):
                raise InputError(f"{p}: damaged: {len(rows)} samples but {len(raw) // 4} feature values (dim {dim})")
            x = np.frombuffer(raw, "<f4").reshape(len(rows), dim).astype(np.float32)
            return cls(p, manifest, people, rows, x, blobs)
        except (ValueError, KeyError, TypeError) as exc:
            tar.close()
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{p}: damaged or not a facefeat gallery archive ({exc!r})") from None

    def crop(self, row: dict) -> bytes | None:
        return self.blobs.get(row["crop"]) if row.get("crop") else None


def _read_members(p: Path, tar: tarfile.TarFile) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    try:
        for m in tar:
            if not m.isfile():
                raise InputError(f"{p}: damaged or tampered: member {m.name!r} is not a plain file")
            if m.name in out:
                raise InputError(f"{p}: damaged or tampered: member {m.name!r} appears twice")
            f = tar.extractfile(m)
            out[m.name] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{p}: damaged or truncated archive ({exc})") from None
    return out


def _manifest(p: Path, blobs: dict[str, bytes]) -> dict:
    if MANIFEST not in blobs:
        raise InputError(f"{p}: not a facefeat gallery archive, or truncated (no {MANIFEST})")
    try:
        m = json.loads(blobs[MANIFEST])
    except ValueError as exc:
        raise InputError(f"{p}: damaged: {MANIFEST} is not JSON ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != ARCHIVE_FORMAT:
        raise InputError(f"{p}: not a facefeat gallery archive (format {m.get('format') if isinstance(m, dict) else m!r})")
    v = m.get("version")
    if not isinstance(v, int) or v < 1:
        raise InputError(f"{p}: damaged: archive version {v!r}")
    if v > ARCHIVE_VERSION:
        raise InputError(f"{p}: written by a newer facefeat (archive format version {v}; this facefeat reads up to "
                         f"{ARCHIVE_VERSION}); upgrade facefeat to import it")
    if not isinstance(m.get("files"), dict) or not isinstance(m.get("meta"), dict):
        raise InputError(f"{p}: damaged: the manifest lacks 'files' or 'meta'")
    return m


def _records(arc: Archive, rows: list[dict]) -> list:
    return [SampleRecord(crop=arc.crop(r), crop_format=r.get("crop_format") or "jpeg",
                         figures=r.get("figures"), det=r.get("det"), content_hash=r.get("content_hash"),
                         weights_hash=r.get("weights_hash"), created=float(r.get("created") or time.time()))
            for r in rows]


def import_archive(path: str | os.PathLike, target: str | os.PathLike, gallery: str | None = None) -> ArchiveReport:
    """Restore (empty target) or merge (existing gallery) the archive ``path`` into ``target``, a
    gallery directory or ``postgresql://`` URL; see the module doc."""
    p = Path(path)
    arc = Archive.open(p)  # verifies manifest, version, checksums, before anything is written
    rows = arc.rows
    for r in rows:
        try:
            label = normalize_label(r.get("label"), f"archive sample {r.get('id')}'s label")
        except InputError as exc:
            raise InputError(f"{p}: {exc}") from None
        r["label"] = label
    meta = dict(arc.manifest["meta"])
    if not is_store_url(target):
        if legacy.is_legacy(Path(target)):
            legacy.migrate(Path(target))
    store = open_store(target, gallery)
    try:
        recs = _records(arc, rows)
        if not store.exists():
            return _restore(arc, store, meta, rows, recs)
        return _merge(arc, store, meta, rows, recs)
    finally:
        store.close()


def _restore(arc: Archive, store: Any, meta: dict, rows: list[dict], recs: list) -> ArchiveReport:
    x = arc.features

    def chunks() -> Iterator[tuple]:
        for s in range(0, len(rows), _CHUNK):
            part = rows[s:s + _CHUNK]
            yield ([int(r["id"]) for r in part], [r["label"] for r in part], [r.get("source") for r in part],
                   x[s:s + _CHUNK], recs[s:s + _CHUNK])

    store.replace(meta, int(arc.manifest["next_id"]), chunks())  # one transaction
    return ArchiveReport(archive=str(arc.path), target=store.location, mode="restored",
                         people=len({r["label"] for r in rows}), samples_added=len(rows), duplicates=[], conflicts=[])


def _merge(arc: Archive, store: Any, meta: dict, rows: list[dict], recs: list) -> ArchiveReport:
    have = store.meta()
    if (have.get("model_name"), int(have["dim"])) != (meta.get("model_name"), int(meta["dim"])):
        raise FaceIndexError(f"{arc.path}: holds {meta.get('model_name')} features ({meta['dim']}-d) but "
                             f"{store.location} holds {have.get('model_name')} ({have['dim']}-d); a gallery never "
                             "mixes models: migrate one of them first (facefeat index migrate)")
    stored = _labels_by_hash(store, sorted({r["content_hash"] for r in rows if r.get("content_hash")}))
    before = {p["label"] for p in store.persons()}
    keep, dups, conflicts, seen = [], [], [], {}
    for k, r in enumerate(rows):
        h = r.get("content_hash")
        if h and h in stored:
            same = [i for lab, i in stored[h] if lab == r["label"]]
            if same:
                dups.append({"archive_id": r["id"], "label": r["label"], "id": same[0]})
            else:
                lab, i = stored[h][0]
                conflicts.append({"archive_id": r["id"], "label": r["label"], "existing_label": lab, "existing_id": i,
                                  "why": "the same image is stored there under another name; not added"})
            continue
        if h and (r["label"], h) in seen:
            dups.append({"archive_id": r["id"], "label": r["label"], "archive_duplicate_of": seen[(r["label"], h)]})
            continue
        if h:
            seen[(r["label"], h)] = r["id"]
        keep.append(k)
    added: dict[str, int] = {}
    if keep:
        op = Op("add", None, arc.features[keep], [rows[k]["label"] for k in keep], [rows[k].get("source") for k in keep],
                [recs[k] for k in keep])
        store.write([op])  # one transaction
        for k in keep:
            added[rows[k]["label"]] = added.get(rows[k]["label"], 0) + 1
    return ArchiveReport(archive=str(arc.path), target=store.location, mode="merged", samples_added=len(keep),
                         people_added=sorted(set(added) - before), people_merged=sorted(set(added) & before),
                         added_per_person=added, duplicates=dups, conflicts=conflicts)


def _labels_by_hash(store: Any, hashes: list[str]) -> dict[str, list[tuple[str, int]]]:
    """Which labels (and sample ids) hold each content hash in ``store``."""
    out: dict[str, list[tuple[str, int]]] = {}
    for k in range(0, len(hashes), 500):
        part = hashes[k:k + 500]
        with store._read() as cur:
            got = store._ex(cur, "SELECT content_hash, label, MIN(id) FROM samples WHERE gallery = ? AND content_hash "
                            f"IN ({','.join('?' * len(part))}) GROUP BY content_hash, label",
                            (store.gallery, *part)).fetchall()
        for h, lab, i in got:
            out.setdefault(str(h), []).append((str(lab), int(i)))
    return out


__all__ = ["ARCHIVE_FORMAT", "ARCHIVE_VERSION", "Archive", "ArchiveReport", "export_archive", "import_archive"]
