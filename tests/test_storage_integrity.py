"""Saved data survives every writer: change counters shared by the CLI and the library (a stale copy
cannot overwrite another writer's save), concurrent editors all land, a corrupted database is a clear
error, files and folders follow the user's umask, and backends come from one lazily imported table."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import facefeat.utils as fu
from facefeat.errors import FaceIndexError
from facefeat.index import IndexConflict, create_index, edit_index, load_index

DIM = 8
ROOT = Path(__file__).resolve().parents[1]


def unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def saved(d: Path, n: int, seed: int = 0):
    idx = create_index("faiss", DIM, model_name="m")
    idx.add(unit(n, seed), [f"p{i}" for i in range(n)])
    idx.save(d)
    return idx


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.endswith((".tmp", ".old")))


# -- every writer serialises ---------------------------------------------------------------------
def test_a_stale_copy_cannot_overwrite_another_writers_save(tmp_path):
    d = tmp_path / "idx"
    saved(d, 4)
    a, b = load_index(d), load_index(d)
    a.add(unit(2, 1), ["a", "a"])
    a.save(d)
    b.add(unit(3, 2), ["b"] * 3)
    with pytest.raises(IndexConflict, match="changed by another writer"):
        b.save(d)
    assert load_index(d).labels() == {**{i: f"p{i}" for i in range(4)}, 4: "a", 5: "a"}
    a.add(unit(1, 3), ["a2"])  # the copy that saved last may keep saving
    a.save(d)
    b.save(tmp_path / "elsewhere")  # and a stale copy may still be saved somewhere else
    assert len(load_index(tmp_path / "elsewhere")) == 7


def test_edit_index_threads_all_land(tmp_path):
    d = tmp_path / "idx"
    saved(d, 1)

    def add(k: int) -> None:
        for j in range(3):
            with edit_index(d) as idx:
                idx.add(unit(1, 100 * k + j), [f"t{k}"])

    threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    back = load_index(d)
    assert len(back) == 1 + 4 * 3 and back.ids() == list(range(13))


def test_concurrent_cli_index_add_runs_both_land(tmp_path, lfw_dir):
    """Two real `facefeat index add` processes on one index: both print "added", nothing vanishes."""
    from facefeat.predict.predictor import create_model

    create_model("SFace")  # prepare the shared model cache once, before the two processes start
    d = tmp_path / "idx"
    idx = create_index("faiss", 128, model_name="SFace")
    idx.add(unit(1, 0).repeat(16, axis=1), ["seed"])
    idx.save(d)
    procs = []
    for k, person in enumerate(["Tony_Blair", "Colin_Powell"]):
        g = tmp_path / f"g{k}"
        (g / person).mkdir(parents=True)
        lines = []
        for src in sorted((lfw_dir / person).glob("*.jpg"))[:2]:
            (g / person / src.name).write_bytes(src.read_bytes())
            lines.append(f"{person}/{src.name} {person}")
        (g / "gallery.txt").write_text("\n".join(lines) + "\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, "-m", "facefeat", "index", "add", str(d), "--gallery", str(g)],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "added 2" in out
    back = load_index(d)
    labels = sorted(back.labels().values())
    assert labels == ["Colin_Powell"] * 2 + ["Tony_Blair"] * 2 + ["seed"] and back.ids() == list(range(5))


# -- corruption is a clear error, never a wrong answer ---------------------------------------------
def test_a_corrupted_database_file_is_a_clear_error_naming_it(tmp_path):
    d = tmp_path / "idx"
    saved(d, 200).store.close()  # the writer is gone (its WAL checkpointed into the file)
    raw = bytearray((d / "gallery.db").read_bytes())
    raw[:16] = b"not a database!!"  # the header
    (d / "gallery.db").write_bytes(bytes(raw))
    with pytest.raises(FaceIndexError, match=r"idx/gallery\.db: is corrupt or not a facefeat gallery database"):
        load_index(d)


def test_a_truncated_feature_is_detected(tmp_path):
    import sqlite3

    d = tmp_path / "idx"
    saved(d, 5).store.close()
    with sqlite3.connect(d / "gallery.db") as db:
        db.execute("UPDATE samples SET feature = substr(feature, 1, 12) WHERE id = 3")
    with pytest.raises(FaceIndexError, match="sample 3's feature is corrupt"):
        load_index(d)


# -- umask -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_saved_files_and_folders_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        saved(tmp_path / "idx", 3)
        fu.atomic_write_json(tmp_path / "res.json", {"a": 1})
        with fu.atomic_dir(tmp_path / "model") as t:
            (t / "x.onnx").write_bytes(b"x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)
    for folder in (tmp_path / "idx", tmp_path / "model"):
        assert mode(folder) == 0o777 & ~mask
    for f in (tmp_path / "res.json", tmp_path / "idx" / "gallery.db", tmp_path / "model" / "x.onnx"):
        assert mode(f) == 0o666 & ~mask, f


# -- one backend table, imported lazily --------------------------------------------------------------
def test_index_backends_come_from_one_lazy_table():
    code = ("import sys, facefeat.index as fi, facefeat.index.base as b; "
            "assert not {'faiss', 'pymilvus', 'facefeat.index.faiss_index', 'facefeat.index.milvus_index'} & set(sys.modules); "
            "assert set(b.BACKENDS) == {'faiss', 'milvus'}; "
            "assert fi.FaissFaceIndex is b.backend_class('faiss') and 'facefeat.index.faiss_index' in sys.modules; "
            "src = open(b.__file__).read(); "
            "assert 'import facefeat.index.faiss_index' not in src and 'from facefeat.index.faiss_index' not in src")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_service_storage_migrates_a_gallery_of_an_earlier_version(tmp_path):
    from legacy_gallery import write_old_gallery

    from facefeat.serving.storage import IndexStore

    store = IndexStore(tmp_path / "storage")
    key = store.new_key()
    write_old_gallery(store.path(key), unit(3), ["a", "b", "c"], figures={"1": {"quality": {"sharpness": 9.0}}})
    (store.thumb_root / key).mkdir(parents=True)
    (store.thumb_root / key / "1.jpg").write_bytes(b"jpeg-of-1")
    store = IndexStore(tmp_path / "storage")  # a restart
    assert store.keys() == [key] and len(store.get(key)) == 3
    assert store.crop(key, 1) == (b"jpeg-of-1", "jpeg") and store.samples(key) == {1: {"quality": {"sharpness": 9.0}}}
    assert not (store.thumb_root / key).exists() and (store.path(key) / "legacy-v1" / "meta.json").is_file()


def test_atomic_dir_when_another_writer_creates_the_folder_meanwhile(tmp_path):
    d = tmp_path / "model"
    with fu.atomic_dir(d) as t:
        (t / "mine").write_text("b")
        with fu.atomic_dir(d) as other:  # another process's first save lands while ours is open
            (other / "theirs").write_text("a")
    assert sorted(p.name for p in d.iterdir()) == ["mine"] and leftovers(tmp_path) == []
