"""The gallery in a real database: SQLite in the gallery directory (and PostgreSQL, see
test_gallery_shared.py); legacy folders migrated with identical search results; one transaction per
change (crops, figures, vectors and labels together); duplicates; labels in one normal form; a full
disk and a corrupted file as clear errors; the index type parsed once; one match rule."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from facefeat.errors import FaceIndexError, InputError, StorageError, StorageFull
from facefeat.index import SampleRecord, create_index, edit_index, load_index, open_index, read_meta

DIM = 16
ROOT = Path(__file__).resolve().parents[1]


def unit(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rec(tag: str, h: str | None = None) -> SampleRecord:
    return SampleRecord(crop=f"crop-{tag}".encode(), figures={"quality": {"tag": tag}}, content_hash=h,
                        det={"score": 0.9, "box": [0, 0, 10, 10], "landmarks": [[1, 2]] * 5})


# -- migration of an earlier version's folder ---------------------------------------------------------
@pytest.mark.parametrize("metric", ["IP", "L2"])
def test_a_legacy_folder_is_migrated_with_identical_results(tmp_path, metric):
    import faiss
    from legacy_gallery import write_old_gallery

    x = unit(200)
    ids = [i for i in range(240) if i % 7][:200]  # gaps: removed samples of the old gallery
    labels = [f"p{i % 31}" for i in range(200)]
    paths = [f"img/{i}.jpg" for i in range(200)]
    d = write_old_gallery(tmp_path / "old", x, labels, paths, metric=metric, ids=ids, next_id=240,
                          figures={ids[5]: {"quality": {"sharpness": 55.0}}})
    old = faiss.read_index(str(d / "vectors.faiss"))
    q = unit(25, seed=9)
    want_scores, want_ids = old.search(q, 10)

    index = load_index(d)  # migrates on first open
    assert (d / "gallery.db").is_file() and not (d / "meta.json").exists()
    assert {p.name for p in (d / "legacy-v1").iterdir()} == {"meta.json", "labels.json", "vectors.faiss", "people.json"}
    assert index.ids() == ids and index.next_id == 240 and index.paths()[ids[3]] == paths[3]
    got = index.search(q, 10)
    assert [[h.id for h in r] for r in got] == want_ids.tolist()
    np.testing.assert_allclose([[h.score for h in r] for r in got], want_scores, rtol=0, atol=0)
    assert index.record(ids[5]).figures == {"quality": {"sharpness": 55.0}}
    assert index.add(unit(1, 5), ["new"]) == [240]  # ids are never reused
    again = load_index(d)  # the second open reads the database only
    assert len(again) == 200


def test_a_half_finished_migration_is_finished_on_the_next_open(tmp_path):
    from legacy_gallery import write_old_gallery

    from facefeat.index import legacy

    d = write_old_gallery(tmp_path / "old", unit(5), list("abcde"))
    legacy.migrate(d)
    for name in ("meta.json", "labels.json"):  # as if killed after the database was renamed in
        os.replace(d / "legacy-v1" / name, d / name)
    assert len(load_index(d)) == 5 and not (d / "meta.json").exists()


# -- one transaction per change; durable; seen by other writers -----------------------------------
def test_attached_changes_are_durable_and_seen_by_another_reader(tmp_path):
    d = tmp_path / "g"
    create_index(dim=DIM, model_name="m").save(d)
    a, b = open_index(d), open_index(d)
    ids = a.add(unit(3), ["ann", "bob", "cy"], records=[rec("0"), rec("1"), None])
    assert ids == [0, 1, 2]
    # another process sees it at once (no save call)
    code = f"from facefeat.index import load_index; i = load_index({str(d)!r}); print(sorted(i.labels().values()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "['ann', 'bob', 'cy']"
    assert b.refresh() and b.labels() == a.labels()
    assert b.add(unit(1, 3), ["dee"]) == [3]  # ids come from the database: never two writers with one id
    a.relabel([1], "bobby")
    a.remove([0])
    assert b.refresh() and b.labels() == {1: "bobby", 2: "cy", 3: "dee"}
    assert a.labels() == b.labels()  # a's own writes replayed b's add first
    assert a.store.crop(0) is None and a.store.crop(1) == (b"crop-1", "jpeg")  # removed: its crop is gone
    assert [p["label"] for p in a.store.persons()] == ["bobby", "cy", "dee"]
    assert not b.refresh()  # nothing new


def test_edit_index_in_processes_all_land(tmp_path):
    d = tmp_path / "g"
    create_index(dim=DIM, model_name="m").save(d)
    code = ("import sys, numpy as np; from facefeat.index import edit_index\n"
            "k = int(sys.argv[1])\n"
            "for j in range(5):\n"
            "    with edit_index(sys.argv[2]) as ix:\n"
            "        ix.add(np.random.default_rng(k * 10 + j).standard_normal((2, 16)), [f'w{k}'] * 2)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(k), str(d)], env=env) for k in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    back = load_index(d)
    assert back.ids() == list(range(30)) and sorted(set(back.labels().values())) == ["w0", "w1", "w2"]


def test_removed_samples_crops_are_erased_from_the_file(tmp_path):
    d = tmp_path / "g"
    with edit_index(d if False else _new(d)) as ix:
        secret = b"SECRET-FACE-CROP-" + b"x" * 64
        ix.add(unit(2), ["a", "b"], records=[SampleRecord(crop=secret), None])
        ix.remove([0])
        ix.store.close()
    blob = b"".join(p.read_bytes() for p in d.iterdir() if p.name.startswith("gallery.db"))
    assert secret not in blob  # secure_delete: not just unlinked from the b-tree


def _new(d: Path) -> Path:
    create_index(dim=DIM, model_name="m").save(d)
    return d


# -- duplicates -------------------------------------------------------------------------------------
def test_the_same_image_for_the_same_person_is_a_duplicate(tmp_path):
    idx = create_index(dim=DIM)
    x = unit(3)
    r = idx.add_samples(x, ["a", "a", "b"], records=[rec("0", "h0"), rec("1", "h0"), rec("2", "h0")])
    assert r.ids == [0, 0, 1] and r.duplicates == [1] and len(idx) == 2  # same hash, other person: not a duplicate
    idx.save(tmp_path / "g")
    copy = load_index(tmp_path / "g")
    assert copy.add_samples(x[:1], ["a"], records=[rec("x", "h0")]).duplicates == [0]
    with edit_index(tmp_path / "g") as ix:
        assert ix.add_samples(x[:2], ["b", "c"], records=[rec("y", "h0"), rec("z", "h0")]).ids == [1, 2]
        ix.remove([0])
        assert ix.add_samples(x[:1], ["a"], records=[rec("x", "h0")]).ids == [3]  # removed: may come back


# -- labels: one normal form (issue 20, item 13) -------------------------------------------------------
def test_labels_are_nfc_and_stripped_everywhere(tmp_path):
    from facefeat.index.people import People

    nfc, nfd = unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José")
    assert nfc != nfd
    people = People(create_index(dim=DIM))
    people.add(nfc, unit(1))
    people.add(nfd, unit(1, 1))
    people.add("  padded  ", unit(1, 2))
    assert [p["label"] for p in people.list()] == ["José", "padded"] and people.list()[0]["samples"] == 2
    assert nfd in people and "padded" in people
    assert people.rename(nfd, "  Jose  ") == 2 and "Jose" in people
    assert people.remove("  padded  ") == 1
    for bad in ("a\x00b", "line\nbreak", "evil\u202epiz.exe", "\u2066isolate", "tab\there"):
        with pytest.raises(InputError, match="control character"):
            people.add(bad, unit(1, 3))
    with pytest.raises(InputError, match="blank"):
        people.rename("Jose", "   ")


# -- a full disk and a corrupted file --------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    m = tmp_path / "tiny"
    m.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(m)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); see the RLIMIT_FSIZE test")
    try:
        yield m
    finally:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def test_a_full_disk_is_a_clear_error_and_the_gallery_is_unchanged(tiny_disk):
    d = tiny_disk / "g"
    ix = open_index(_new(d))
    ix.add(unit(4), list("abcd"))
    big = [SampleRecord(crop=os.urandom(200_000)) for _ in range(4)]
    with pytest.raises(StorageFull, match=r"g/gallery\.db: the disk is full"):
        for k in range(100):
            ix.add(unit(4, k + 10), [f"p{k}"] * 4, records=big)
    n, before = len(ix), ix.labels()
    with pytest.raises(StorageFull):
        ix.add(unit(4), ["one more"] * 4, records=big)
    assert len(ix) == n and ix.labels() == before  # nothing half-applied in memory either
    back = load_index(d)
    assert back.labels() == before and len(back.store.records(back.ids())) == n


def test_a_file_size_limit_is_a_clear_storage_error(tmp_path):
    """Where no tmpfs can be mounted: the same through RLIMIT_FSIZE in a child process."""
    d = _new(tmp_path / "g")
    code = ("import os, resource, signal, numpy as np\n"
            "from facefeat.index import open_index, SampleRecord\n"
            "from facefeat.errors import StorageError\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "ix = open_index(os.environ['G'])\n"
            "ix.add(np.eye(4, 16), list('abcd'))\n"
            "size = os.path.getsize(os.environ['G'] + '/gallery.db') + os.path.getsize(os.environ['G'] + '/gallery.db-wal')\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300_000, size + 300_000))\n"
            "try:\n"
            "    for k in range(50):\n"
            "        ix.add(np.eye(4, 16), [f'p{k}'] * 4, records=[SampleRecord(crop=os.urandom(100_000))] * 4)\n"
            "except StorageError as e:\n"
            "    print('REFUSED', type(e).__name__, len(ix), e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "G": str(d)})
    assert "REFUSED" in out.stdout, out.stderr[-2000:]
    n = int(out.stdout.split()[2])
    assert "gallery.db" in out.stdout and "Traceback" not in out.stdout
    assert len(load_index(d)) == n  # exactly what was acknowledged


def test_a_storage_error_maps_to_507_and_503():
    from facefeat.errors import StorageUnavailable
    from facefeat.serving.errors import status_of

    assert status_of(StorageFull("x")) == 507 and status_of(StorageUnavailable("x")) == 503
    assert status_of(StorageError("x")) == 409 and status_of(FaceIndexError("x")) == 409


# -- one parser, one rule --------------------------------------------------------------------------
def test_the_index_type_is_parsed_once():
    from facefeat.index.faiss_index import parse_index_type as faiss_parse
    from facefeat.index.milvus_index import parse_milvus_index_type
    from facefeat.index.types import parse_index_type
    from facefeat.serving.schemas import BuildIndexRequest

    for s, kind, milvus in [("Flat", "Flat", "FLAT"), ("ivf_flat", "IVF", "IVF_FLAT"), ("IVF64,Flat", "IVF", "IVF_FLAT"),
                            ("hnsw", "HNSW", "HNSW"), ("HNSW16", "HNSW", "HNSW"), (" idmap,flat ", "Flat", "FLAT")]:
        t = parse_index_type(s)
        assert t.kind == kind and faiss_parse(s)[0] == kind and parse_milvus_index_type(s)[0] == milvus == t.milvus
        BuildIndexRequest(imageLabelPairs=[{"image": "x", "label": "a"}], indexType=s)
    for bad in ("IVF0", "HNSW1", "PQ16", "Flat2", "", "IVF99999999999"):
        with pytest.raises(InputError):
            parse_index_type(bad)
        with pytest.raises(Exception):
            BuildIndexRequest(imageLabelPairs=[{"image": "x", "label": "a"}], indexType=bad)


def test_one_match_rule():
    from facefeat.pipeline import face_recognition
    from facefeat.thresholds import OperatingPoint, is_match

    op = OperatingPoint(0.5)
    assert op.matches(0.51) and not op.matches(0.5) and not op.matches(0.49)
    assert OperatingPoint(0.8, "L2").matches(0.79) and not OperatingPoint(0.8, "L2").matches(0.8)
    assert list(is_match(np.array([0.4, 0.5, 0.6]), 0.5)) == [False, False, True]
    assert face_recognition.is_match is is_match  # the pipeline decides with the one rule, no wrapper of its own


def test_read_meta_and_info_describe_the_store(tmp_path):
    d = _new(tmp_path / "g")
    with edit_index(d) as ix:
        ix.add(unit(3), list("abc"))
    meta = read_meta(d)
    assert meta["count"] == 3 and meta["next_id"] == 3 and meta["change"] == 2 and meta["model_name"] == "m"
    info = load_index(d).info()
    assert info["store"] == os.path.realpath(d) and info["change"] == 2


def test_a_large_hnsw_opens_from_its_snapshot_reconciled_with_the_database(tmp_path, monkeypatch):
    from facefeat.index import snapshot

    monkeypatch.setattr(snapshot, "SNAPSHOT_MIN", 100)
    d = tmp_path / "g"
    x = unit(300)
    idx = create_index(dim=DIM, index_type="HNSW32", model_name="m")
    idx.add(x, [f"p{i % 9}" for i in range(300)])
    idx.save(d)
    first = open_index(d)  # built from the database: writes the snapshot
    assert (d / "gallery.hnsw").is_file() and (d / "gallery.hnsw.json").is_file()
    first.add(unit(5, 1), ["late"] * 5)
    first.remove([0, 1, 2])
    first.relabel([3], "renamed")
    builds = []
    real = type(first)._backend_add
    monkeypatch.setattr(type(first), "_backend_add", lambda self, ids, *a: (builds.append(len(ids)), real(self, ids, *a)))
    again = load_index(d)
    assert builds == [5]  # only what the snapshot lacked was added: the graph was not rebuilt
    assert again.labels() == first.labels() and again.next_id == first.next_id
    q = unit(20, 7)
    assert [[h.id for h in r] for r in again.search(q, 5)] == [[h.id for h in r] for r in first.search(q, 5)]
    assert not {0, 1, 2} & {h.id for r in again.search(x[:3], 5) for h in r}
    # a damaged snapshot is ignored (rebuilt), never trusted
    raw = bytearray((d / "gallery.hnsw").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "gallery.hnsw").write_bytes(bytes(raw))
    builds.clear()
    third = load_index(d)
    assert sum(builds) == len(third) == 302 and third.labels() == first.labels()


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32"])
def test_removes_leave_searches_and_compact_later(monkeypatch, index_type):
    from facefeat.index import faiss_index

    monkeypatch.setattr(faiss_index, "COMPACT_MIN", 10)
    x = unit(200)
    idx = create_index(dim=DIM, index_type=index_type)
    idx.add(x, [f"p{i}" for i in range(200)])
    ref = create_index(dim=DIM, index_type="Flat")
    gone: list[int] = []
    for step in range(8):  # 8 x 6 removes: kept out of searches, compacted past 10 and a fifth
        batch = list(range(step * 6, step * 6 + 6))
        idx.remove(batch)
        gone += batch
        assert len(idx._dead) <= max(10, idx._index.ntotal // 5)
        hits = idx.search(x[:60], 5)
        assert not {h.id for r in hits for h in r} & set(gone)
    keep = [i for i in range(200) if i not in gone]
    ref.add(x[keep], [f"p{i}" for i in keep])
    q = unit(30, 4)
    want = [[keep[h.id] for h in r] for r in ref.search(q, 3)]
    got = [[h.id for h in r] for r in idx.search(q, 3)]
    if index_type == "Flat":
        assert got == want  # exact, removes or not
    else:
        assert sum(g[0] == w[0] for g, w in zip(got, want)) >= 28
