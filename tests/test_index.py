"""Gallery indexes: FAISS (Flat / IVF / HNSW32 x IP / L2), Milvus (milvus-lite), gallery files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from facefeat.errors import FaceIndexError, InputError
from facefeat.index import Hit, create_index, load_gallery, load_index, read_meta
from facefeat.index.faiss_index import IVF_MIN_TRAIN, FaissFaceIndex

DIM = 64
N = 300


def unit(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def gallery():
    x = unit(N)
    labels = [f"person_{i % 60}" for i in range(N)]
    paths = [f"imgs/{i:04d}.jpg" for i in range(N)]
    return x, labels, paths


FAISS_TYPES = ["Flat", "IVF", "HNSW32"]
METRICS = ["IP", "L2"]


def test_index_package_is_torch_free():
    code = (
        "import sys, facefeat.index, facefeat.index.faiss_index, facefeat.index.milvus_index; "
        "assert 'torch' not in sys.modules, 'facefeat.index imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------- FAISS
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("index_type", FAISS_TYPES)
def test_faiss_add_search_remove_roundtrip(tmp_path, gallery, index_type, metric):
    x, labels, paths = gallery
    idx = create_index("faiss", DIM, metric_type=metric, index_type=index_type, model_name="MobileFaceNet")
    ids = idx.add(x, labels, paths)
    assert ids == list(range(N)) and len(idx) == N
    info = idx.info()
    assert info["count"] == N and info["backend"] == "faiss"
    if index_type == "IVF":
        assert info["effective_index_type"] == f"IVF{N // 8},Flat" and info["fallback"] is None

    # exact top-1 for vectors in the index; hits sorted best first
    res = idx.search(x[:20], topk=5)
    assert len(res) == 20
    for i, hits in enumerate(res):
        assert hits[0].id == i and hits[0].label == labels[i] and hits[0].path == paths[i]
        scores = [h.score for h in hits]
        if metric == "L2":
            assert hits[0].score == pytest.approx(0.0, abs=1e-4) and scores == sorted(scores)
        else:
            assert hits[0].score == pytest.approx(1.0, abs=1e-4) and scores == sorted(scores, reverse=True)

    # remove (HNSW rebuilds its graph): removed ids never come back, the others are still found
    gone = [0, 3, 7, 150]
    assert idx.remove(gone) == 4 and len(idx) == N - 4
    res = idx.search(x[:10], topk=10)
    for i, hits in enumerate(res):
        assert not {h.id for h in hits} & set(gone)
        if i not in gone:
            assert hits[0].id == i
    with pytest.raises(InputError, match="unknown ids 3, 999"):
        idx.remove([1, 3, 999])
    assert len(idx) == N - 4 and 1 in idx.labels()  # nothing removed

    # save / load round trip
    d = tmp_path / "idx"
    idx.save(d)
    assert {p.name for p in d.iterdir()} <= {"gallery.db", "gallery.db-wal", "gallery.db-shm"}
    meta = read_meta(d)
    assert meta["backend"] == "faiss" and meta["dim"] == DIM and meta["count"] == N - 4
    assert meta["next_id"] == N and meta["metric_type"] == metric and meta["model_name"] == "MobileFaceNet"
    back = load_index(d)
    assert isinstance(back, FaissFaceIndex)
    assert back.ids() == idx.ids() and back.labels() == idx.labels() and back.index_type == idx.index_type
    q = x[10:30]
    assert [[h.id for h in r] for r in back.search(q, 5)] == [[h.id for h in r] for r in idx.search(q, 5)]

    # ids are never reused, also after load
    new = back.add(x[:2], ["a", "b"])
    assert new == [N, N + 1]
    assert back.search(x[0], 1)[0][0].id == N


def test_topk_larger_than_count_and_empty():
    idx = create_index("faiss", DIM)
    assert idx.search(unit(2), topk=5) == [[], []]
    idx.add(unit(3), ["a", "b", "c"])
    res = idx.search(unit(2, seed=1), topk=10)
    assert [len(r) for r in res] == [3, 3]
    assert all(isinstance(h, Hit) for h in res[0])
    with pytest.raises(InputError):
        idx.search(unit(1), topk=0)


def test_cosine_normalises():
    idx = create_index("faiss", DIM, metric_type="COSINE")
    x = unit(5)
    idx.add(x * 7.0, list("abcde"))
    hits = idx.search(x[2] * 0.1, 1)[0]
    assert hits[0].label == "c" and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_ids_never_reused():
    idx = create_index("faiss", DIM)
    assert idx.add(unit(3), ["a", "b", "c"]) == [0, 1, 2]
    idx.remove([2])
    assert idx.add(unit(1, seed=3), ["d"]) == [3]
    idx.remove([0, 1, 3])
    assert len(idx) == 0
    assert idx.add(unit(1, seed=4), ["e"]) == [4]


def test_validation_errors():
    idx = create_index("faiss", DIM, model_name="MobileFaceNet")
    with pytest.raises(InputError, match=r"expects dim 64, got 32"):
        idx.add(unit(2, dim=32), ["a", "b"])
    with pytest.raises(InputError, match=r"expects dim 64, got 128"):
        idx.search(unit(1, dim=128), 1)
    bad = unit(3)
    bad[1, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        idx.add(bad, ["a", "b", "c"])
    with pytest.raises(InputError, match="3 features but 2 labels"):
        idx.add(unit(3), ["a", "b"])
    with pytest.raises(InputError, match="paths"):
        idx.add(unit(2), ["a", "b"], ["p"])
    with pytest.raises(InputError, match="label"):
        idx.add(unit(1), [""])
    assert len(idx) == 0
    with pytest.raises(InputError):
        create_index("faiss", DIM, index_type="PQ16")
    with pytest.raises(InputError):
        create_index("faiss", DIM, metric_type="HAMMING")
    with pytest.raises(InputError):
        create_index("nosuch", DIM)
    # an index built with another model / dimension is refused
    idx.check_model("MobileFaceNet", DIM)
    with pytest.raises(FaceIndexError, match="ResNet50_face"):
        idx.check_model("ResNet50_face", DIM)
    with pytest.raises(FaceIndexError, match="512"):
        idx.check_model("MobileFaceNet", 512)


def test_ivf_falls_back_to_flat_until_enough_vectors():
    idx = create_index("faiss", DIM, index_type="IVF")
    idx.add(unit(20), [f"p{i}" for i in range(20)])
    info = idx.info()
    assert info["index_type"] == "IVF" and info["effective_index_type"] == "Flat"
    assert "too few" in info["fallback"]
    assert idx.search(unit(20)[5], 1)[0][0].id == 5
    idx.add(unit(IVF_MIN_TRAIN, seed=1), ["q"] * IVF_MIN_TRAIN)  # now enough: trained as IVF on all
    info = idx.info()
    assert info["effective_index_type"] == f"IVF{(20 + IVF_MIN_TRAIN) // 8},Flat" and info["fallback"] is None
    assert idx.search(unit(20)[5], 1)[0][0].id == 5
    # build() = create + train + add in one go
    built = FaissFaceIndex.build(unit(400), ["x"] * 400, index_type="IVF")
    assert built.info()["effective_index_type"] == "IVF50,Flat"


def test_a_failed_save_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    from facefeat.index.sql_store import SqlStore

    d = tmp_path / "gallery_index"
    idx = create_index("faiss", DIM, index_type="HNSW32")
    idx.add(unit(10), [f"p{i}" for i in range(10)])
    idx.save(d)
    idx.add(unit(5, seed=2), ["new"] * 5)
    real = SqlStore._add

    def boom(self, cur, op, next_id, meta):
        real(self, cur, op, next_id, meta)  # rows written inside the transaction, then the disk fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SqlStore, "_add", boom)
    with pytest.raises(OSError):
        idx.save(d)
    with pytest.raises(OSError):
        idx.save(tmp_path / "copy")
    monkeypatch.undo()
    back = load_index(d)  # the previous save is intact
    assert len(back) == 10 and back.ids() == list(range(10))
    with pytest.raises(FaceIndexError, match="not a gallery"):  # the failed copy created no gallery
        load_index(tmp_path / "copy")
    idx.save(d)
    assert len(load_index(d)) == 15


def test_load_errors_name_the_directory_and_problem(tmp_path):
    from legacy_gallery import write_old_gallery

    with pytest.raises(FaceIndexError, match="does not exist"):
        load_index(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceIndexError, match=r"empty: not a gallery: it holds no gallery\.db"):
        load_index(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FaceIndexError, match="file: is not a directory"):
        load_index(tmp_path / "file")

    d = tmp_path / "garbage"
    d.mkdir()
    (d / "gallery.db").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(FaceIndexError, match=r"garbage/gallery\.db: is corrupt or not a facefeat gallery database"):
        load_index(d)

    # folders of an earlier facefeat are checked as they are migrated
    x = unit(6)

    def old(name):
        return write_old_gallery(tmp_path / name, x, list("abcdef"))

    d = old("bad_json")
    (d / "meta.json").write_text("{not json")
    with pytest.raises(FaceIndexError, match=r"bad_json.*meta\.json is corrupt"):
        load_index(d)
    d = old("no_vectors")
    (d / "vectors.faiss").unlink()
    with pytest.raises(FaceIndexError, match=r"no_vectors.*vectors\.faiss is missing"):
        load_index(d)
    d = old("tampered")
    (d / "vectors.faiss").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(FaceIndexError, match=r"tampered.*vectors\.faiss is corrupt"):
        load_index(d)
    d = old("count")
    meta = json.loads((d / "meta.json").read_text())
    meta["count"] = 7
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FaceIndexError, match=r"count.*count mismatch"):
        load_index(d)
    d = old("no_labels")
    (d / "labels.json").unlink()
    with pytest.raises(FaceIndexError, match=r"no_labels.*labels\.json is missing"):
        load_index(d)
    for name in ("bad_json", "no_vectors", "count"):
        assert not (tmp_path / name / "gallery.db").exists()  # nothing half-migrated

    d = _saved(tmp_path, "ok")
    assert read_meta(d)["count"] == 6


def _saved(tmp_path, name="ix") -> Path:
    d = tmp_path / name
    idx = create_index("faiss", DIM)
    idx.add(unit(6), list("abcdef"))
    idx.save(d)
    return d


def test_concurrent_searches_and_writes():
    idx = create_index("faiss", DIM, index_type="HNSW32")
    x = unit(200)
    idx.add(x, [f"p{i}" for i in range(200)])
    errors: list = []

    def reader():
        try:
            for _ in range(30):
                for hits in idx.search(x[:50], 3):
                    assert hits and hits[0].id < 10_000
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    def writer():
        try:
            for k in range(10):
                new = idx.add(unit(5, seed=100 + k), ["w"] * 5)
                idx.remove(new[:3])
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(idx) == 200 + 10 * 2


# ---------------------------------------------------------------------------------------- gallery files
def _gallery_tree(tmp_path: Path) -> Path:
    root = tmp_path / "gallery"
    for rel in ("a/1.jpg", "a/2.jpg", "b c/1.jpg"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"jpg")
    return root


def test_load_gallery_root_and_label_file(tmp_path):
    root = _gallery_tree(tmp_path)
    (root / "gallery.txt").write_text("a/1.jpg Alice\n\na/2.jpg\t Mary  Ann \n", encoding="utf-8-sig")
    items = load_gallery(str(root), str(root / "gallery.txt"))
    assert items == [(str(root / "a/1.jpg"), "Alice"), (str(root / "a/2.jpg"), "Mary  Ann")]
    assert load_gallery(root, "gallery.txt") == items  # label file relative to the root
    assert load_gallery(root) == items  # default <root>/gallery.txt

    (root / "bad.txt").write_text("a/1.jpg Alice\nlonely.jpg\na/9.jpg Bob\n")
    with pytest.raises(InputError) as err:
        load_gallery(root, root / "bad.txt")
    msg = str(err.value)
    assert "bad.txt:2" in msg and "lonely.jpg" in msg
    assert "bad.txt:3" in msg and "a/9.jpg" in msg and "not found" in msg
    with pytest.raises(InputError, match="not found"):
        load_gallery(root, root / "nosuch.txt")


def test_load_gallery_lists(tmp_path):
    root = _gallery_tree(tmp_path)
    imgs = [str(root / "a/1.jpg"), root / "b c/1.jpg", np.zeros((4, 4, 3), np.uint8)]
    items = load_gallery(imgs, ["Alice", "Bob", "Carol"])
    assert [lab for _, lab in items] == ["Alice", "Bob", "Carol"]
    assert items[1][0] == str(root / "b c/1.jpg") and isinstance(items[2][0], np.ndarray)
    with pytest.raises(InputError, match="2 images but 1 labels"):
        load_gallery(imgs[:2], ["Alice"])
    with pytest.raises(InputError, match="item 0"):
        load_gallery([str(root / "missing.jpg")], ["x"])


# ---------------------------------------------------------------------------------------- Milvus
def _need_milvus():
    pytest.importorskip("pymilvus", reason="the Milvus backend needs: pip install 'facefeat[milvus]'")
    pytest.importorskip("milvus_lite", reason="milvus-lite is needed for local Milvus: pip install milvus-lite")


@pytest.mark.slow  # a milvus-lite server per case; the fast lane keeps test_milvus_private_db_cleanup_and_load_errors
@pytest.mark.timeout(60)
@pytest.mark.parametrize("index_type", ["FLAT", "IVF_FLAT", "HNSW"])
def test_milvus_add_search_remove_save_load(tmp_path, gallery, index_type):
    _need_milvus()
    from facefeat.index.milvus_index import MilvusFaceIndex

    x, labels, paths = gallery
    uri = str(tmp_path / "work" / "milvus.db")
    idx = create_index("milvus", DIM, index_type=index_type, uri=uri, collection="faces", model_name="m")
    try:
        assert isinstance(idx, MilvusFaceIndex)
        assert idx.add(x, labels, paths) == list(range(N))
        res = idx.search(x[:10], 5)
        for i, hits in enumerate(res):
            assert hits[0].id == i and hits[0].label == labels[i] and hits[0].path == paths[i]
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert [len(r) for r in idx.search(x[:2], N + 50)] == [N, N]

        assert idx.remove([0, 1, 2]) == 3 and len(idx) == N - 3
        assert idx.count_in_collection() == N - 3
        assert not {h.id for h in idx.search(x[0], 10)[0]} & {0, 1, 2}
        with pytest.raises(InputError, match="unknown ids 1"):
            idx.remove([1, 5])
        assert idx.count_in_collection() == N - 3
        with pytest.raises(InputError, match="expects dim 64, got 16"):
            idx.add(unit(1, dim=16), ["x"])

        d = tmp_path / "saved"
        idx.save(d)
        assert {p.name for p in d.iterdir()} <= {"gallery.db", "gallery.db-wal", "gallery.db-shm"}
        meta = read_meta(d)
        assert meta["backend"] == "milvus" and meta["collection"] == "faces" and meta["index_type"] == index_type
    finally:
        idx.close()

    back = load_index(d)
    try:
        assert isinstance(back, MilvusFaceIndex) and len(back) == N - 3 and back.next_id == N
        assert back.search(x[5], 1)[0][0].id == 5
        assert back.add(x[0], ["again"]) == [N]  # ids never reused
        assert back.search(x[0], 1)[0][0].label == "again"
    finally:
        back.close()
    assert len(load_index(d)) == N - 3  # the saved directory is a snapshot: unchanged by `back.add`


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_milvus_and_faiss_flat_agree(gallery):
    _need_milvus()
    x, labels, _ = gallery
    labels = [f"id{i}" for i in range(N)]
    q = unit(20, seed=7)
    for metric in ("IP", "L2", "COSINE"):
        f = create_index("faiss", DIM, metric_type=metric, index_type="Flat")
        m = create_index("milvus", DIM, metric_type=metric, index_type="FLAT")
        try:
            f.add(x, labels)
            m.add(x, labels)
            fr, mr = f.search(q, 5), m.search(q, 5)
            assert [[h.label for h in r] for r in fr] == [[h.label for h in r] for r in mr], metric
            np.testing.assert_allclose([[h.score for h in r] for r in fr], [[h.score for h in r] for r in mr], atol=1e-4)
        finally:
            m.close()


@pytest.mark.timeout(60)
def test_milvus_private_db_cleanup_and_load_errors(tmp_path):
    _need_milvus()
    idx = create_index("milvus", DIM)  # no uri: a private milvus-lite db in a temp dir
    work = Path(idx.uri).parent
    assert work.is_dir()
    idx.add(unit(4), list("abcd"))
    d = tmp_path / "snap"
    idx.save(d)
    idx.close()
    assert not work.exists()

    back = load_index(d)  # the collection is derived from the gallery's store
    try:
        assert back.labels() == {0: "a", 1: "b", 2: "c", 3: "d"} and back.search(unit(4)[2], 1)[0][0].id == 2
    finally:
        back.close()

    with pytest.raises(FaceIndexError, match="not a 'faiss'"):
        FaissFaceIndex.load(d)


@pytest.mark.timeout(60)
def test_milvus_in_place_db_and_attach(tmp_path):
    _need_milvus()
    uri = str(tmp_path / "shared.db")
    a = create_index("milvus", DIM, uri=uri, collection="people", embed=False, metric_type="COSINE")
    a.add(unit(5), list("abcde"), [f"{c}.jpg" for c in "abcde"])
    d = tmp_path / "ref"
    a.save(d)
    assert not (d / "milvus.db").exists() and read_meta(d)["uri"] == os.path.abspath(uri)
    with pytest.raises(FaceIndexError, match="already exists"):
        create_index("milvus", DIM, uri=uri, collection="people")
    b = create_index("milvus", DIM, uri=uri, collection="people", exists_ok=True, metric_type="COSINE")
    assert b.labels() == a.labels() and b.paths()[2] == "c.jpg" and b.next_id == 5
    c = load_index(d)  # reconnects to the same database in place
    assert c.search(unit(5)[3], 1)[0][0].label == "d"
    a.close()
