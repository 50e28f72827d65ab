"""Model migration keeping names (issue 18, item 5): SFace -> a MobileFaceNet model directory made
here, every name, id, figure and crop kept, thresholds follow the new model, a kill -9 mid-way
leaves the gallery on the old model and the next run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from gallery_samples import cluster_features, make_stored_gallery
from pg_server import pg_server, pg_url  # noqa: F401

from facefeat.cli import main as cli_main
from facefeat.errors import FaceIndexError
from facefeat.index.migrate import migrate_gallery, pending_migration, resolve_predictor
from facefeat.index.store_factory import open_store


@pytest.fixture(scope="module")
def mfn_dir(tmp_path_factory) -> Path:
    """A MobileFaceNet model directory (random init, exported here) with its own calibration."""
    torch = pytest.importorskip("torch")
    from facefeat.registry import get_spec
    from facefeat.runtime.model_dir import ModelMeta
    from facefeat.runtime.torch_build import build_torch_model, export_onnx
    from facefeat.engine.calibration import calibrate_pairs
    from facefeat.thresholds import store_thresholds

    spec = get_spec("MobileFaceNet")
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("mfn") / "inference"
    export_onnx(build_torch_model(spec).eval(), ModelMeta.from_spec(spec), out)
    rec = calibrate_pairs(np.r_[np.full(50, 0.9), np.linspace(-0.2, 0.5, 2000)], [1] * 50 + [0] * 2000, source="migration test")
    assert store_thresholds(resolve_predictor(str(out)), rec)
    return out


def _state(path) -> dict:
    with open_store(path) as s:
        meta = s.meta()
        rows = {}
        for ids, labels, paths, feats in s.load():
            recs = s.records(ids.tolist())
            for i, lab, p, f in zip(ids.tolist(), labels, paths, feats):
                rows[i] = {"label": lab, "source": p, "feature": f.copy(), "crop": recs[i].crop,
                           "figures": recs[i].figures, "det": recs[i].det, "hash": recs[i].content_hash}
        return {"meta": meta, "rows": rows, "next_id": s.next_id()}


def _gallery(path: Path, n_people: int = 6, per: int = 3) -> None:
    x, labels, _ = cluster_features(np.random.default_rng(7), n_people, per)
    make_stored_gallery(path, x, labels)


def test_migrate_keeps_every_name_and_follows_the_new_calibration(tmp_path, mfn_dir, capsys):
    g = tmp_path / "g"
    _gallery(g)
    before = _state(g)
    from facefeat.index import corrections as C
    from facefeat.index.persist import open_index
    idx = open_index(g)
    neg_crop = before["rows"][0]["crop"]
    with_crop = C.reject_match(idx, "person_001", before["rows"][0]["feature"], crop=neg_crop)
    without = C.reject_match(idx, "person_002", before["rows"][1]["feature"])
    idx.store.close()
    assert cli_main(["index", "migrate", str(g), "--model", str(mfn_dir), "--batch", "5", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["from"] == "SFace" and rep["to"] == "MobileFaceNet" and rep["embedded"] == 18
    assert rep["negatives_reembedded"] == 1 and rep["negatives_dropped"] == 1
    with open_store(g) as s:
        neg = C.negatives(s)
        assert list(neg) == ["person_001"]
        assert [c["undone"] is not None for c in C.list_corrections(s)] == [False, True]
        assert (with_crop, without) == (0, 1)
    after = _state(g)
    assert after["meta"]["model_name"] == "MobileFaceNet" and after["meta"]["migrated_from"]["model_name"] == "SFace"
    assert after["meta"]["thresholds"]["source"] == "migration test"
    assert after["next_id"] == before["next_id"] and set(after["rows"]) == set(before["rows"])
    pred = resolve_predictor(str(mfn_dir))
    for i, b in before["rows"].items():
        a = after["rows"][i]
        assert {k: a[k] for k in ("label", "source", "crop", "figures", "det", "hash")} == \
               {k: b[k] for k in ("label", "source", "crop", "figures", "det", "hash")}
        face = cv2.imdecode(np.frombuffer(a["crop"], np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_allclose(a["feature"], pred.embed([face], False)[0], atol=1e-5)
    face0 = cv2.imdecode(np.frombuffer(neg_crop, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_allclose(neg["person_001"][0], pred.embed([face0], False)[0], atol=1e-5)
    # the gallery now answers for the new model only: an SFace enrolment is refused
    from facefeat.index import load_index
    with pytest.raises(FaceIndexError):
        load_index(g).check_model("SFace", 128)
    load_index(g).check_model("MobileFaceNet", 128)
    # the health check uses the new calibration
    from facefeat.index.health import gallery_health
    with open_store(g) as s:
        assert gallery_health(s)["operating_point"]["source"] == "calibrated"
    # again with the same model: nothing to do
    assert migrate_gallery(g, pred)["embedded"] == 0


def test_migrate_refuses_samples_without_crops(tmp_path, mfn_dir):
    from facefeat.index import create_index

    index = create_index(dim=128, model_name="SFace", index_type="Flat")
    index.add(np.eye(2, 128, dtype=np.float32), ["a", "b"])
    index.save(tmp_path / "old")
    with pytest.raises(FaceIndexError, match="sample.* 0, 1 have no stored face crop"):
        migrate_gallery(tmp_path / "old", resolve_predictor(str(mfn_dir)))
    assert _state(tmp_path / "old")["meta"]["model_name"] == "SFace"


_MIGRATE = ("import sys; from facefeat.index.migrate import migrate_gallery, resolve_predictor; "
            "migrate_gallery(sys.argv[1], resolve_predictor(sys.argv[2]), batch=4)")


def test_kill9_during_migration_resumes(tmp_path, mfn_dir):
    g = tmp_path / "g"
    _gallery(g, n_people=40, per=5)
    before = _state(g)
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[1]))}
    p = subprocess.Popen([sys.executable, "-c", _MIGRATE, str(g), str(mfn_dir)], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:  # wait for a few batches to be saved
            with open_store(g) as s:
                if pending_migration(s).get("samples", 0) >= 12:
                    break
            time.sleep(0.05)
        assert p.poll() is None, "the migration finished before it could be interrupted"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    mid = _state(g)
    assert mid["meta"]["model_name"] == "SFace"  # never half-migrated: the old model answers
    for i, b in before["rows"].items():
        np.testing.assert_array_equal(mid["rows"][i]["feature"], b["feature"])
    with open_store(g) as s:
        done = pending_migration(s)["samples"]
    assert 12 <= done < 200
    rep = migrate_gallery(g, resolve_predictor(str(mfn_dir)), batch=16)
    assert rep["resumed"] == done and rep["embedded"] == 200 - done
    after = _state(g)
    assert after["meta"]["model_name"] == "MobileFaceNet"
    assert {i: r["label"] for i, r in after["rows"].items()} == {i: r["label"] for i, r in before["rows"].items()}
    with open_store(g) as s:
        assert pending_migration(s) == {}


def test_postgresql_migration_corrections_and_sightings(tmp_path, mfn_dir, pg_url):  # noqa: F811
    """The side tables (migrations, corrections, sightings) on a real PostgreSQL server."""
    from facefeat.index import corrections as C
    from facefeat.index import sightings as SG
    from facefeat.index.archive import export_archive, import_archive
    from facefeat.index.persist import open_index

    _gallery(tmp_path / "g")
    export_archive(tmp_path / "g", tmp_path / "g.tar")
    import_archive(tmp_path / "g.tar", pg_url, gallery="pg")
    url = pg_url + "?gallery=pg"
    index = open_index(url)
    feat = next(iter(index.store.load([0])))[3][0]
    cid = C.reject_match(index, "person_001", feat, crop=_state(tmp_path / "g")["rows"][0]["crop"])
    SG.configure(index, keep_unknown=True, retention_days=1)
    face = {"feature": feat.tolist(), "landmarks": [[38, 51], [73, 51], [56, 71], [41, 92], [70, 92]],
            "coordinate": [0, 0, 112, 112]}
    assert SG.record(index, "cam1", np.zeros((112, 112, 3), np.uint8), [face], [{"labels": None}]) == 1
    assert [r["source"] for r in SG.search(index, probe=feat)] == ["cam1"]
    rep = migrate_gallery(url, resolve_predictor(str(mfn_dir)), batch=7)
    assert rep["embedded"] == 18 and rep["negatives_reembedded"] == 1
    with open_store(pg_url, "pg") as s:
        assert s.meta()["model_name"] == "MobileFaceNet" and pending_migration(s) == {}
        assert {p["label"] for p in s.persons()} == {f"person_{i:03d}" for i in range(6)}
    assert C.undo(open_index(url), cid)["kind"] == "not"
