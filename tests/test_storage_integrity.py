"""Saved data survives every writer and every crash: recoverable folder swaps (a crash injected at
each step of a save), folder locks and revision checks shared by the CLI and the library, checksums
of saved index files, FAISS files checked against meta.json, files and folders that follow the
user's umask, and backends from one lazily imported table."""

from __future__ import annotations

import json
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


# -- crash injection: a real process dies (os._exit) at each step of atomic_dir --------------------
STEPS = ["tmp-created", "meta-writing", "written", "old-moved", "committed", "done"]
COMMITTED = {"committed", "done"}


def _crash_at(step: str, d: Path, extra: int) -> int:
    """Fork a child that loads ``d`` (if saved), adds ``extra`` vectors and dies at ``step`` of the save."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            import facefeat.index.base as base

            idx = load_index(d) if d.exists() else create_index("faiss", DIM, model_name="m")
            idx.add(unit(extra, seed=7), ["new"] * extra)
            fu._checkpoint = lambda s: os._exit(137) if s == step else None
            real = base.write_json
            base.write_json = lambda p, o: os._exit(137) if (step == "meta-writing" and p.name == "meta.json") \
                else real(p, o)
            idx.save(d)
            os._exit(0)
        except BaseException:
            os._exit(3)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("first_save", [False, True], ids=["overwrite", "first-save"])
@pytest.mark.parametrize("step", STEPS)
def test_crash_at_every_step_of_a_save_is_recoverable(tmp_path, step, first_save):
    d = tmp_path / "idx"
    if not first_save:
        saved(d, 10)
    code = _crash_at(step, d, extra=5)
    reached = not (first_save and step == "old-moved")  # a first save has no old copy to move
    assert code == (137 if reached else 0)
    committed = step in COMMITTED or not reached
    if first_save and not committed:
        with pytest.raises(FaceIndexError, match="does not exist"):
            load_index(d)
    else:
        back = load_index(d)  # restores the last complete version and cleans the rest
        assert len(back) == (15 if committed else 10) - (10 if first_save else 0)
    assert leftovers(tmp_path) == []
    # and the index can be saved again on top of whatever the crash left
    idx = load_index(d) if d.exists() else create_index("faiss", DIM, model_name="m")
    idx.add(unit(1, seed=9), ["again"])
    idx.save(d)
    assert len(load_index(d)) == len(idx) and leftovers(tmp_path) == []


def test_recover_dirs_cleans_a_storage_root_at_start_up(tmp_path):
    saved(tmp_path / "a", 3)
    saved(tmp_path / "b", 3)
    os.replace(tmp_path / "a", tmp_path / ".a.abcd1234.old")  # crashed between the two renames
    (tmp_path / ".b.zz99yy88.tmp").mkdir()  # crashed while writing
    (tmp_path / ".b.zz99yy88.tmp" / "labels.json").write_text("{")
    done = fu.recover_dirs(tmp_path)
    assert sorted(p.name for p in done) == ["a", "b"]
    assert leftovers(tmp_path) == [] and len(load_index(tmp_path / "a")) == 3


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


# -- checksums and FAISS file checks --------------------------------------------------------------
def test_corrupted_vector_bytes_are_detected(tmp_path):
    d = tmp_path / "idx"
    saved(d, 20)
    meta = json.loads((d / "meta.json").read_text())
    assert set(meta["checksums"]) == {"labels.json", "vectors.faiss"} and meta["revision"] == 1
    raw = bytearray((d / "vectors.faiss").read_bytes())
    raw[-40] ^= 0x01  # one bit of one float: FAISS itself would load it silently
    (d / "vectors.faiss").write_bytes(bytes(raw))
    with pytest.raises(FaceIndexError, match=r"vectors\.faiss is corrupt \(its checksum"):
        load_index(d)


def test_faiss_metric_and_type_are_checked_against_meta(tmp_path):
    d = tmp_path / "idx"
    saved(d, 20)
    meta = json.loads((d / "meta.json").read_text())
    (d / "meta.json").write_text(json.dumps({**meta, "metric_type": "L2"}))
    with pytest.raises(FaceIndexError, match="inner-product metric but meta.json says L2"):
        load_index(d)
    h = tmp_path / "hnsw"
    idx = create_index("faiss", DIM, index_type="HNSW32")
    idx.add(unit(5), list("abcde"))
    idx.save(h)
    hmeta = json.loads((h / "meta.json").read_text())
    (h / "vectors.faiss").write_bytes((d / "vectors.faiss").read_bytes())  # a Flat file under HNSW meta
    (h / "meta.json").write_text(json.dumps({**hmeta, "checksums": {}, "count": 20, "next_id": 20}))
    (h / "labels.json").write_text((d / "labels.json").read_text())
    with pytest.raises(FaceIndexError, match="holds a IndexFlat.*index type HNSW32"):
        load_index(h)


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
    for f in (tmp_path / "res.json", tmp_path / "idx" / "meta.json", tmp_path / "idx" / "vectors.faiss",
              tmp_path / "model" / "x.onnx"):
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


def test_service_storage_recovers_an_interrupted_save_at_start_up(tmp_path):
    from facefeat.serving.storage import IndexStore

    store = IndexStore(tmp_path / "storage")
    key = store.new_key()
    saved(store.path(key), 3)
    os.replace(store.path(key), store.index_root / f".{key}.abcd1234.old")  # killed between the renames
    (store.index_root / f".{key}.zz99yy88.tmp").mkdir()
    store = IndexStore(tmp_path / "storage")  # a restart
    assert store.keys() == [key] and len(store.get(key)) == 3 and leftovers(store.index_root) == []


def test_a_writer_killed_while_holding_the_lock_does_not_block_the_next(tmp_path):
    d = tmp_path / "idx"
    saved(d, 2)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        with fu.dir_lock(d):
            os._exit(137)  # killed mid-edit: the OS drops its flock
    os.waitpid(pid, 0)
    with fu.dir_lock(d, timeout=5):
        pass
    with edit_index(d) as idx:
        idx.add(unit(1, 5), ["after"])
    assert len(load_index(d)) == 3


def test_atomic_dir_when_another_writer_creates_the_folder_meanwhile(tmp_path):
    d = tmp_path / "model"
    with fu.atomic_dir(d) as t:
        (t / "mine").write_text("b")
        with fu.atomic_dir(d) as other:  # another process's first save lands while ours is open
            (other / "theirs").write_text("a")
    assert sorted(p.name for p in d.iterdir()) == ["mine"] and leftovers(tmp_path) == []
