"""embed_dataset (local and Ray engines), resume after a kill, and the Parquet bulk loader.

One local Ray instance (2 CPUs, small object store) serves the module and is shut down after.
The images: 200 LFW photos listed in a text file with their person as label, plus a file that is
not an image, a photo without a face and a path that does not exist.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from facefeat.errors import FacefeatError, InputError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_LFW = 200
SHARD = 25


@pytest.fixture(scope="module")
def images(lfw_dir, tmp_path_factory) -> dict:
    import cv2

    root = tmp_path_factory.mktemp("dataset")
    lfw = []
    for person in sorted(os.listdir(lfw_dir)):
        for f in sorted(os.listdir(lfw_dir / person)):
            lfw.append((str(lfw_dir / person / f), person))
        if len(lfw) >= N_LFW:
            break
    lfw = lfw[:N_LFW]
    (root / "broken.jpg").write_bytes(b"this is not a JPEG")
    blank = np.full((180, 160, 3), 120, np.uint8)
    cv2.circle(blank, (80, 90), 30, (200, 180, 160), -1)
    cv2.imwrite(str(root / "no_face.png"), blank)
    extra = [(str(root / "broken.jpg"), "x"), (str(root / "no_face.png"), "y"), (str(root / "missing.jpg"), "z")]
    listing = root / "images.txt"
    listing.write_text("".join(f"{p} {lab}\n" for p, lab in lfw + extra))
    return {"list": listing, "lfw": lfw, "root": root, "n": len(lfw) + len(extra)}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray instance for the module; its workers see the tests' facefeat cache and code."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEFEAT_HOME", str(tmp_path_factory.getbasetemp() / "facefeat-cache"))
    mp.setenv("PYTHONPATH", os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    ray.init(num_cpus=2, object_store_memory=300 * 1024 ** 2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"FACEFEAT_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        mp.undo()


@pytest.fixture(scope="module")
def local_out(images, tmp_path_factory) -> Path:
    from facefeat.distributed import embed_dataset

    out = tmp_path_factory.mktemp("emb") / "local"
    report = embed_dataset(images["list"], out, shard_size=SHARD, batch_size=16, progress=False)
    assert report.images == images["n"] and report.shards_written == report.shards_total
    return out


def _rows(out: Path):
    from facefeat.distributed import read_embeddings

    return read_embeddings(out)


def _assert_same_output(a, b) -> None:
    """Same rows (every column but the feature exactly), features equal to float rounding."""
    assert a.num_rows == b.num_rows
    assert a.drop_columns(["feature"]).equals(b.drop_columns(["feature"]))
    fa, fb = a.column("feature").to_pylist(), b.column("feature").to_pylist()
    assert [x is None for x in fa] == [x is None for x in fb]
    x = np.array([v for v in fa if v is not None], np.float32)
    y = np.array([v for v in fb if v is not None], np.float32)
    np.testing.assert_allclose(x, y, atol=1e-5)


def _keys(table) -> list[tuple]:
    return list(zip(table.column("index").to_pylist(), table.column("face_index").to_pylist()))


def test_every_input_is_a_row(local_out, images):
    t = _rows(local_out)
    rows = t.to_pylist()
    assert len(set(_keys(t))) == len(rows)  # no duplicates
    assert len({r["path"] for r in rows}) == images["n"]  # nothing dropped
    by_path = {r["path"]: r for r in rows}
    root = images["root"]
    broken, missing, blank = by_path[str(root / "broken.jpg")], by_path[str(root / "missing.jpg")], by_path[str(root / "no_face.png")]
    assert broken["status"] == "error" and "cannot decode" in broken["error"] and broken["feature"] is None
    assert missing["status"] == "error" and "no such file" in missing["error"]
    assert blank["status"] == "no_face" and blank["num_faces"] == 0 and blank["error"] is None
    faces = [r for r in rows if r["status"] == "ok"]
    assert len(faces) >= 0.95 * N_LFW
    f = np.array([r["feature"] for r in faces], np.float32)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    assert t.schema.field("feature").type == pa.list_(pa.float32(), 128)
    r = faces[0]
    assert r["model"] == "SFace" and len(r["model_hash"]) == 16 and len(r["box"]) == 4 and len(r["landmarks"]) == 10
    assert all(q["quality"] is not None and q["quality"]["sharpness"] > 0 and q["quality"]["face_size"] > 0
               for q in faces)  # every embedded face carries its quality figures
    assert by_path[images["lfw"][0][0]]["label"] == images["lfw"][0][1]
    manifest = json.loads((local_out / "_manifest.json").read_text())
    assert manifest["model"] == "SFace" and manifest["complete"] and manifest["settings"]["det_threshold"] == 0.5
    assert manifest["finished_shards"] == -(-images["n"] // SHARD)


def _kill_a_ray_worker_after_first_shard(out: Path, killed: list, stop: threading.Event) -> None:
    journal = out / "_shards.jsonl"
    while not stop.is_set() and not (journal.is_file() and journal.read_bytes().count(b"\n") >= 1):
        time.sleep(0.05)
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                os.kill(int(d.name), signal.SIGKILL)
                killed.append(int(d.name))
                return
        except OSError:
            continue


@pytest.mark.slow  # a Ray cluster
def test_ray_equals_local(ray_cluster, local_out, images, tmp_path):
    """The Ray engine gives the local engine's rows, even when one of its actors is SIGKILLed
    mid-run (Ray restarts it and retries its batch; the driver drops re-delivered rows)."""
    from facefeat.distributed import embed_dataset

    out = tmp_path / "ray"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_ray_worker_after_first_shard, args=(out, killed, stop), daemon=True)
    killer.start()
    try:
        report = embed_dataset(images["list"], out, engine="ray", workers=2, batch_size=8, shard_size=SHARD,
                               progress=False)
    finally:
        stop.set()
        killer.join(10)
    assert killed, "no Ray worker process was found to kill"
    assert report.images == images["n"] and report.errors == 2 and report.no_face == 1
    _assert_same_output(_rows(local_out), _rows(out))
    again = embed_dataset(images["list"], out, engine="ray", progress=False)  # resume of a finished run
    assert again.images == 0 and again.shards_skipped == again.shards_total


@pytest.mark.slow  # a Ray cluster and a killed CLI process
def test_kill_driver_and_resume(ray_cluster, local_out, images, tmp_path):
    """SIGKILL a real `facefeat embed-dataset --engine ray` process mid-way, re-run: same output."""
    from facefeat.distributed import embed_dataset

    out = tmp_path / "killed"
    journal = out / "_shards.jsonl"
    cmd = [sys.executable, "-m", "facefeat", "embed-dataset", str(images["list"]), "--out", str(out),
           "--engine", "ray", "--address", ray_cluster, "--shard-size", "10", "--batch-size", "5",
           "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.is_file() and journal.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    done = journal.read_bytes().count(b"\n")
    total = -(-images["n"] // 10)
    assert 2 <= done < total
    with open(journal, "ab") as f:  # and a torn journal line, as a crash mid-append leaves
        f.write(b'{"shard": 99, "fi')
    report = embed_dataset(images["list"], out, batch_size=16, progress=False)  # resume (here: locally)
    assert report.shards_skipped == done and report.shards_written == total - done
    t = _rows(out)
    assert len(set(_keys(t))) == t.num_rows
    _assert_same_output(_rows(local_out), t)


def test_mixed_model_or_settings_refused(local_out, images, tmp_path):
    from facefeat.distributed import embed_dataset

    journal = (local_out / "_shards.jsonl").read_bytes()
    with pytest.raises(InputError, match="det_threshold: 0.5 here, 0.7 now"):
        embed_dataset(images["list"], local_out, det_threshold=0.7, progress=False)
    with pytest.raises(InputError, match="shard_size"):
        embed_dataset(images["list"], local_out, shard_size=7, progress=False)
    assert (local_out / "_shards.jsonl").read_bytes() == journal
    # an output directory written by another model (its manifest says so) refuses SFace's rows
    other = tmp_path / "other"
    other.mkdir()
    m = json.loads((local_out / "_manifest.json").read_text())
    m["model"] = m["settings"]["model"] = "MobileFaceNet"
    m["model_hash"] = m["settings"]["model_hash"] = "0123456789abcdef"
    (other / "_manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="model: 'MobileFaceNet' here, 'SFace' now") as err:
        embed_dataset(images["list"], other, progress=False)
    assert "model_hash" in str(err.value) and isinstance(err.value, FacefeatError)
    assert {p.name for p in other.iterdir()} == {"_manifest.json"}  # nothing written
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an embed_dataset output directory"):
        embed_dataset(images["list"], tmp_path / "junk", progress=False)


def test_new_inputs_are_appended(images, tmp_path):
    """A grown input list embeds only the new images, as new shards; nothing is duplicated."""
    from facefeat.distributed import embed_dataset, read_embeddings

    few = tmp_path / "few.txt"
    few.write_text("".join(f"{p}\n" for p, _ in images["lfw"][:6]))
    more = tmp_path / "more.txt"
    more.write_text("".join(f"{p}\n" for p, _ in images["lfw"][:9]))
    out = tmp_path / "grow"
    assert embed_dataset(few, out, shard_size=4, progress=False).images == 6
    r = embed_dataset(more, out, progress=False)
    assert (r.images, r.shards_skipped, r.shards_total) == (3, 2, 3)
    t = read_embeddings(out, columns=["path", "index", "face_index"])
    assert sorted(set(t.column("path").to_pylist())) == sorted(p for p, _ in images["lfw"][:9])
    assert len(set(_keys(t))) == t.num_rows


def test_list_inputs_forms(tmp_path):
    from facefeat.distributed import list_inputs

    (tmp_path / "tree" / "alice").mkdir(parents=True)
    for name in ("tree/alice/1.jpg", "tree/alice/2.png", "tree/top.jpg", "tree/alice/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    tree = list_inputs(tmp_path / "tree")
    assert tree == [(str(tmp_path / "tree/alice/1.jpg"), "alice"), (str(tmp_path / "tree/alice/2.png"), "alice"),
                    (str(tmp_path / "tree/top.jpg"), None)]
    pq.write_table(pa.table({"file": ["tree/top.jpg", "https://example.com/a.jpg", "tree/top.jpg"],
                             "label": ["t", "u", "t"]}), tmp_path / "t.parquet")
    assert list_inputs(tmp_path / "t.parquet", path_column="file") == [
        (str(tmp_path / "tree/top.jpg"), "t"), ("https://example.com/a.jpg", "u")]
    (tmp_path / "t.csv").write_text("path\ntree/top.jpg\n")
    assert list_inputs(tmp_path / "t.csv") == [(str(tmp_path / "tree/top.jpg"), None)]
    with pytest.raises(InputError, match="no column 'path'"):
        list_inputs(tmp_path / "t.parquet")
    with pytest.raises(InputError, match="no such directory or file"):
        list_inputs(tmp_path / "nope")


N_DIRECT = 60


@pytest.fixture(scope="module")
def direct(images, tmp_path_factory):
    """The first images as a gallery (gallery.txt) embedded directly by the face-recognition
    pipeline (no Parquet): ``(features, labels, paths, gallery.txt)``."""
    from facefeat.pipeline import create_pipeline

    pipe = create_pipeline("face_recognition")
    entries = sorted(images["lfw"][:N_DIRECT]) + [(str(images["root"] / "no_face.png"), "y")]  # the rows' order
    gallery = tmp_path_factory.mktemp("direct") / "gallery.txt"
    gallery.write_text("".join(f"{p} {lab}\n" for p, lab in entries))
    g = pipe.gallery_features([p for p, _ in entries], [lab for _, lab in entries])
    feats, labs, names = g.features, g.labels, g.names
    assert (entries[-1][0], "no face detected") in [(r.name, r.reason) for r in g.rejected]
    assert any("faces of similar size" in r.reason for r in g.rejected)  # the rule is exercised
    return feats, labs, names, gallery


@pytest.mark.parametrize("backend", ["faiss", "milvus"])
def test_bulk_load_equals_direct_build(backend, local_out, direct, tmp_path):
    from facefeat.distributed import build_index_from_parquet
    from facefeat.index import create_index, load_index

    feats, labels, names, gallery = direct
    kw = {"uri": str(tmp_path / "bulk.db")} if backend == "milvus" else {}
    bulk, stats = build_index_from_parquet(local_out, backend=backend, index_type="Flat" if backend == "faiss" else "FLAT",
                                           label_map=gallery, skip_unlabelled=True, chunk_rows=16, **kw)
    assert stats["entries"] == len(labels) and stats["errors"] == 2 and stats["no_face"] == 1 and stats["ambiguous"]
    want = create_index(backend=backend, dim=128, index_type="Flat" if backend == "faiss" else "FLAT",
                        model_name="SFace", **({"uri": str(tmp_path / "direct.db")} if kw else {}))
    want.add(feats, labels, names)
    assert bulk.labels() == want.labels() and bulk.paths() == want.paths() and bulk.model_name == "SFace"
    q = feats[::7]
    got, ref = bulk.search(q, 3), want.search(q, 3)
    assert [[h.id for h in hs] for hs in got] == [[h.id for h in hs] for hs in ref]
    np.testing.assert_allclose([[h.score for h in hs] for hs in got], [[h.score for h in hs] for hs in ref], atol=1e-4)
    if backend == "faiss":  # and the CLI: facefeat index build --from-parquet
        from facefeat.cli import main

        assert main(["index", "build", "--from-parquet", str(local_out), "--out", str(tmp_path / "ix"),
                     "--index-type", "Flat"]) == 0
        full = load_index(tmp_path / "ix")  # every image, labelled by its folder (the list's labels)
        assert len(full) >= 0.95 * N_LFW and full.labels()[0] == images_first_label(local_out)
    for ix in (bulk, want):
        getattr(ix, "close", lambda: None)()


def images_first_label(out: Path) -> str:
    return next(r["label"] for r in _rows(out).to_pylist() if r["status"] == "ok")


def test_bulk_load_labels(local_out, images, tmp_path):
    from facefeat.distributed import build_index_from_parquet

    mapping = tmp_path / "people.txt"
    mapping.write_text("".join(f"{p} person-{i}\n" for i, (p, _) in enumerate(images["lfw"][:10])))
    with pytest.raises(InputError, match="has no label"):
        build_index_from_parquet(local_out, label_map=mapping)
    ix, stats = build_index_from_parquet(local_out, label_map=mapping, skip_unlabelled=True)
    assert set(ix.labels().values()) <= {f"person-{i}" for i in range(10)} and len(ix) == stats["entries"] <= 10
    ix, stats = build_index_from_parquet(local_out, faces="all", label_column="path")
    assert len(ix) == sum(1 for r in _rows(local_out).to_pylist() if r["status"] == "ok")
    with pytest.raises(InputError, match="no column 'who'"):
        build_index_from_parquet(local_out, label_column="who")


def test_cli_bulk_load_errors_name_cli_flags(local_out, images, tmp_path, capsys):
    """`index build --from-parquet` errors name the command's flags, never Python keywords; and
    --skip-unlabelled exists."""
    from facefeat.cli import main

    mapping = tmp_path / "people.txt"
    mapping.write_text("".join(f"{p} person-{i}\n" for i, (p, _) in enumerate(images["lfw"][:10])))
    base = ["index", "build", "--from-parquet", str(local_out), "--index-type", "Flat"]
    assert main(base + ["--out", str(tmp_path / "a"), "--label-map", str(mapping)]) == 2
    err = capsys.readouterr().err
    assert "has no label" in err and "--skip-unlabelled" in err and "--label-column path" in err, err
    assert "skip_unlabelled" not in err and "label_column" not in err and "label_map" not in err
    assert main(base + ["--out", str(tmp_path / "b"), "--label-column", "who"]) == 2
    err = capsys.readouterr().err
    assert "--label-column or --label-map" in err and "label_column=" not in err
    assert main(base + ["--out", str(tmp_path / "c"), "--label-map", str(mapping), "--skip-unlabelled"]) == 0
    assert "built faiss Flat IP index of" in capsys.readouterr().out


def test_output_folder_reads_as_a_dataset(local_out, images, tmp_path):
    """pandas.read_parquet("emb/"), pyarrow.dataset.dataset("emb/") and DuckDB read exactly the rows
    (metadata is _-prefixed), and a version-1 folder (metadata beside the shards) still resumes."""
    import shutil

    import pyarrow.dataset as ds

    pd = pytest.importorskip("pandas", reason="pip install 'facefeat[test]' (pandas)")
    duckdb = pytest.importorskip("duckdb", reason="pip install 'facefeat[test]' (duckdb)")
    from facefeat.distributed import embed_dataset
    from facefeat.distributed.manifest import OutputDir

    want = _rows(local_out)
    assert sorted(p.name for p in local_out.iterdir() if not p.name.startswith(("_", "."))) == \
        sorted(p.name for p in OutputDir.open(local_out).shard_files())  # only data files are visible
    assert len(pd.read_parquet(local_out)) == want.num_rows
    table = ds.dataset(local_out, format="parquet").to_table()
    assert table.num_rows == want.num_rows and set(table.column_names) == set(want.column_names)
    ((n, faces),) = duckdb.sql(f"SELECT count(*), count(feature) FROM read_parquet('{local_out}/*.parquet')").fetchall()
    assert n == want.num_rows and faces == sum(1 for f in want.column("feature").to_pylist() if f is not None)
    # a format-1 folder: manifest.json, shards.jsonl and inputs-000.parquet beside the shards
    old = tmp_path / "v1"
    shutil.copytree(local_out, old, ignore=shutil.ignore_patterns(".lock"))
    m = json.loads((old / "_manifest.json").read_text())
    for seg in m["segments"]:
        (old / seg["file"]).rename(old / Path(seg["file"]).name)
        seg["file"] = Path(seg["file"]).name
    (old / "manifest.json").write_text(json.dumps(m))
    (old / "_manifest.json").unlink()
    (old / "_shards.jsonl").rename(old / "shards.jsonl")
    assert OutputDir.open(old).legacy
    again = embed_dataset(images["list"], old, progress=False)  # resume: nothing left to do
    assert again.images == 0 and again.shards_skipped == again.shards_total
    assert not (old / "_manifest.json").exists()
