"""Gallery storage: the folder format of earlier versions vs the database, in the same run.

For each gallery size (128-d random unit features, ``--sizes 10000 100000 1000000``) it measures

* add one face (with a 6 KB crop), remove one face, rename one person: time per change and bytes
  written (``wchar`` of /proc/self/io: every byte handed to write()), median of ``--changes``;
  old = what every change cost before (the whole folder rewritten: vectors.faiss, labels.json,
  people.json, meta.json with checksums, fsync, atomic rename), new = one SQLite transaction
  (attached index, WAL, synchronous=FULL) plus the in-memory FAISS update;
* open the gallery ready to search (old: read + verify the folder; new: the first open builds the
  graph from gallery.db and writes its snapshot, the second opens from the snapshot);
* search p50 (one query) and recall@1 against exact search, for ``--index-type`` (default HNSW32).

Prints the machine's load average first and last. Run: ``python bench/gallery.py --sizes 10000``
(the lead runs ``--sizes 10000 100000 1000000`` on a quiet machine; 1 M needs ~8 GB of disk: 6 KB crops).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facefeat.index import SampleRecord, create_index, load_index, open_index  # noqa: E402

DIM = 128
CROP = os.urandom(6000)


def wchar() -> int:
    try:
        for line in open("/proc/self/io"):
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fsync_file(p: Path) -> None:
    with open(p, "rb+") as f:
        os.fsync(f.fileno())


def old_save(index, d: Path, figures: dict) -> None:
    """The earlier versions' save: every file of the folder rewritten into a temp dir, fsynced, swapped in."""
    import faiss

    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.", suffix=".tmp", dir=d.parent))
    faiss.write_index(index._index, str(tmp / "vectors.faiss"))
    (tmp / "labels.json").write_text(json.dumps({str(i): {"label": lab, "path": p} for i, (lab, p)
                                                 in sorted(index._entries.items())}, indent=2))
    (tmp / "people.json").write_text(json.dumps({str(k): v for k, v in figures.items()}))
    sums = {}
    for name in ("vectors.faiss", "labels.json", "people.json"):
        fsync_file(tmp / name)
        sums[name] = "sha256:" + hashlib.sha256((tmp / name).read_bytes()).hexdigest()
    (tmp / "meta.json").write_text(json.dumps({"format": "facefeat-index", "format_version": 1, "backend": "faiss",
                                               "dim": DIM, "metric_type": "IP", "index_type": index.index_type,
                                               "next_id": index.next_id, "count": len(index), "checksums": sums}))
    fsync_file(tmp / "meta.json")
    old = None
    if d.exists():
        old = d.with_name(f".{d.name}.old")
        os.replace(d, old)
    os.replace(tmp, d)
    if old is not None:
        shutil.rmtree(old)


def old_open(d: Path):
    import faiss

    meta = json.loads((d / "meta.json").read_text())
    for name, want in meta["checksums"].items():
        assert "sha256:" + hashlib.sha256((d / name).read_bytes()).hexdigest() == want
    labels = json.loads((d / "labels.json").read_text())
    idx = faiss.read_index(str(d / "vectors.faiss"))
    return idx, labels


def measure(fn, n: int) -> tuple[float, float]:
    times, written = [], []
    for k in range(n):
        w0, t0 = wchar(), time.perf_counter()
        fn(k)
        times.append(time.perf_counter() - t0)
        written.append(wchar() - w0)
    return statistics.median(times) * 1000, statistics.median(written)


def run(n: int, root: Path, index_type: str, changes: int, queries: int) -> list[list[str]]:
    rows = []
    x = unit(n, 0)
    labels = [f"p{i // 4}" for i in range(n)]
    base = create_index(dim=DIM, index_type=index_type, model_name="bench")
    t0 = time.perf_counter()
    base.add(x, labels)
    build_s = time.perf_counter() - t0
    figures = {i: {"quality": {"sharpness": 50.0}} for i in range(n)}

    # -- old: every change rewrites the folder
    od = root / f"old_{n}"
    old_save(base, od, figures)
    t0 = time.perf_counter()
    old_open(od)
    old_open_s = time.perf_counter() - t0

    def old_add(k):
        base.add(unit(1, 10_000 + k), ["new"])
        old_save(base, od, figures)

    def old_remove(k):
        base.remove([k])
        old_save(base, od, figures)

    def old_rename(k):
        base.relabel([i for i in range(4 * (k + 100), 4 * (k + 101))], f"renamed{k}")
        old_save(base, od, figures)

    o_add, o_rm, o_rn = measure(old_add, changes), measure(old_remove, changes), measure(old_rename, changes)
    shutil.rmtree(od)

    # -- new: the database
    nd = root / f"new_{n}"
    fresh = create_index(dim=DIM, index_type=index_type, model_name="bench")
    fresh.add(x, labels, records=[SampleRecord(crop=CROP, figures=figures[i]) for i in range(n)])
    fresh.save(nd)
    del fresh
    t0 = time.perf_counter()
    ix = open_index(nd)
    new_open_s = time.perf_counter() - t0

    def new_add(k):
        ix.add(unit(1, 10_000 + k), ["new"], records=[SampleRecord(crop=CROP)])

    def new_remove(k):
        ix.remove([k])

    def new_rename(k):
        ix.relabel([i for i in range(4 * (k + 100), 4 * (k + 101))], f"renamed{k}")

    n_add, n_rm, n_rn = measure(new_add, changes), measure(new_remove, changes), measure(new_rename, changes)
    ix.store.close()
    t0 = time.perf_counter()
    ix = load_index(nd)  # the second open: from the HNSW snapshot, reconciled with the database
    reopen_s = time.perf_counter() - t0

    # -- search: p50 of one query, recall@1 against exact search
    q = unit(queries, 99) * 0.8 + x[np.random.default_rng(5).integers(0, n, queries)] * 0.6
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    exact = create_index(dim=DIM, index_type="Flat")
    exact.add(x, labels)
    truth = [r[0].id for r in exact.search(q, 1)]
    lat, hits = [], 0
    for i in range(queries):
        t0 = time.perf_counter()
        r = ix.search(q[i], 1)[0]
        lat.append(time.perf_counter() - t0)
        hits += bool(r) and r[0].id == truth[i]
    db_mb = sum(p.stat().st_size for p in nd.iterdir()) / 1e6
    ix.store.close()
    shutil.rmtree(nd)
    rows.append([f"{n:,}", "old folder", f"{o_add[0]:.1f} ms / {o_add[1] / 1e6:.2f} MB",
                 f"{o_rm[0]:.1f} ms / {o_rm[1] / 1e6:.2f} MB", f"{o_rn[0]:.1f} ms / {o_rn[1] / 1e6:.2f} MB",
                 f"{old_open_s:.2f} s", "", ""])
    rows.append([f"{n:,}", "database", f"{n_add[0]:.1f} ms / {n_add[1] / 1e3:.1f} KB",
                 f"{n_rm[0]:.1f} ms / {n_rm[1] / 1e3:.1f} KB", f"{n_rn[0]:.1f} ms / {n_rn[1] / 1e3:.1f} KB",
                 f"{new_open_s:.2f} s, again {reopen_s:.2f} s ({db_mb:.0f} MB db)", f"{statistics.median(lat) * 1000:.2f} ms",
                 f"{hits / queries:.3f}"])
    print(f"  [{n:,}: in-memory build {build_s:.1f} s]", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000])
    ap.add_argument("--index-type", default="HNSW32")
    ap.add_argument("--changes", type=int, default=10, help="changes measured per kind (median)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dir", default=None, help="where to write the galleries (default: a temp dir)")
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()}  (cpus: {os.cpu_count()})")
    root = Path(a.dir or tempfile.mkdtemp(prefix="facefeat-bench-gallery-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = [["faces", "format", "add one (time / written)", "remove one", "rename one person", "open",
             f"search p50 ({a.index_type})", "recall@1"]]
    try:
        for n in a.sizes:
            rows += run(n, root, a.index_type, a.changes, a.queries)
    finally:
        if not a.dir:
            shutil.rmtree(root, ignore_errors=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
