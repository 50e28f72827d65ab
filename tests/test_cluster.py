"""Clustering unlabeled faces into people: the methods on synthetic features, the pipeline on a
small nested photo library built from LFW, saving, incremental update, merge/split/rename,
clusters -> gallery, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefeat.errors import InputError
from facefeat.registry import get_spec
from facefeat.pipeline.cluster import (FALLBACK_THRESHOLD, METHODS, ClusterResult, cluster_features,
                                       default_threshold, update_clusters)

PEOPLE = ["George_W_Bush", "Colin_Powell", "Tony_Blair"]


def blobs(n_per=(6, 5, 4), dim=32, spread=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((dim, len(n_per))))[0].T  # orthogonal people
    x = np.concatenate([c + spread * rng.standard_normal((n, dim)) / np.sqrt(dim) for c, n in zip(centres, n_per)])
    truth = np.repeat(np.arange(len(n_per)), n_per)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), truth


@pytest.mark.parametrize("method", METHODS)
def test_methods_recover_people(method):
    x, truth = blobs()
    labels = cluster_features(x, 0.5, 2 if method == "hdbscan" else 1, method)
    assert labels.tolist() == truth.tolist()  # largest cluster first, numbered 0..


def test_min_samples_and_bad_parameters():
    x, _ = blobs((5, 1))
    assert cluster_features(x, 0.5, 2).tolist() == [0] * 5 + [-1]
    for kw in ({"threshold": 1.5}, {"min_samples": 0}, {"method": "kmeans"}):
        with pytest.raises(InputError):
            cluster_features(x, **{"threshold": 0.5, **kw})
    assert cluster_features(np.zeros((0, 8), np.float32)).shape == (0,)


def test_default_threshold_falls_back_without_calibration():
    thr, src = default_threshold(None)
    assert thr == FALLBACK_THRESHOLD and "fallback" in src
    thr, src = default_threshold(get_spec("SFace").thresholds)  # the calibrated 1:N point at LFW's gallery
    assert thr == get_spec("SFace").thresholds["identification"][0]["fpir=0.01"]["threshold"] and "calibrated" in src


@pytest.fixture(scope="module")
def library(lfw_dir, tmp_path_factory):
    """A nested photo library: three people x three photos over two folders, and one stranger."""
    root = tmp_path_factory.mktemp("photos")
    for i, p in enumerate(PEOPLE):
        for n in (1, 2, 3):
            d = root / ("2020" if n < 3 else "2021/trip")
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(lfw_dir / p / f"{p}_{n:04d}.jpg", d)
    shutil.copy(lfw_dir / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg", root / "2021")
    (root / "2021" / "broken.jpg").write_bytes(b"not a jpeg")
    return root



def person(face: dict) -> str:
    return Path(face["path"]).name.rsplit("_", 1)[0]


def test_cluster_library_save_update_edit(pipe, library, lfw_dir, tmp_path):
    res = pipe.cluster(library)
    groups = sorted(sorted({person(f) for f in c["faces"]}) for c in res["clusters"].values())
    assert groups == [["Aaron_Eckhart"], ["Colin_Powell"], ["George_W_Bush"], ["Tony_Blair"]]
    assert [c["size"] for c in res["clusters"].values()] == [3, 3, 3, 1]  # ids by size
    assert res["num_faces"] == 10 and len(res.failed) == 1 and "broken.jpg" in res.failed[0][0]
    face = res["clusters"]["1"]["faces"][0]
    assert set(face) >= {"face_id", "path", "box", "det_score", "landmarks"}

    out = res.save(tmp_path / "c")
    assert (out / "features.npy").is_file() and json.loads((out / "clusters.json").read_text())["num_clusters"] == 4
    sheet = cv2.imread(str(out / "sheets" / "cluster_0001.png"))
    assert sheet is not None and sheet.shape[1] == 3 * 96 and sheet[30:, :].std() > 10  # real faces drawn

    # incremental: a known person's new photo joins, a stranger makes a new cluster, repeats add nothing
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(lfw_dir / "Tony_Blair" / "Tony_Blair_0004.jpg", new)
    shutil.copy(lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg", new)
    loaded = ClusterResult.load(out)
    assert loaded.json == res.json
    blair = next(int(c) for c, v in res["clusters"].items() if person(v["faces"][0]) == "Tony_Blair")
    changed = update_clusters(pipe, loaded, new)
    assert changed == {"joined": [blair], "new": [5]}
    assert update_clusters(pipe, loaded, new) == {"joined": [], "new": []}
    loaded.save(out)
    again = ClusterResult.load(out)
    assert again["num_faces"] == 12 and again["clusters"]["5"]["size"] == 1

    # merge, split by faces, rename, then a gallery
    assert again.merge([4, 5]) == 4 and "5" not in again["clusters"]
    moved = [again["clusters"]["4"]["faces"][-1]["face_id"]]
    assert again.split(4, face_ids=moved) == [6]
    again.rename(blair, "Tony")
    again.save(out)
    assert not (out / "sheets" / "cluster_0005.png").exists() and (out / "sheets" / "cluster_0006.png").is_file()
    index = again.to_index(tmp_path / "idx")
    q = pipe.embed(str(lfw_dir / "Tony_Blair" / "Tony_Blair_0005.jpg"))[0]["feature"]
    assert index.search(np.asarray([q], np.float32), 1)[0][0].label == "Tony"
    assert sorted(set(index.labels().values())) == sorted(v["name"] for v in again["clusters"].values())
    for bad in (lambda: again.merge([1, 99]), lambda: again.split(1, face_ids=[999]), lambda: again.rename(1, " ")):
        with pytest.raises(InputError):
            bad()


def test_load_refuses_inconsistent_directory(tmp_path):
    x, truth = blobs()
    res = ClusterResult(x, [{"path": f"{i}.jpg", "box": [0, 0, 1, 1], "det_score": 1.0, "landmarks": []}
                            for i in range(len(x))], truth + 1, model_name="SFace", method="graph",
                        threshold=0.5, min_samples=1)
    res.save(tmp_path, sheets=False)
    np.save(tmp_path / "features.npy", x[:3])
    with pytest.raises(InputError, match="lists 15 faces"):
        ClusterResult.load(tmp_path)
    with pytest.raises(InputError, match="not a cluster directory"):
        ClusterResult.load(tmp_path / "nowhere")


def test_cli_cluster(library, tmp_path, capsys, caplog):
    from facefeat.cli import main

    out, idx = tmp_path / "c", tmp_path / "idx"
    # the library holds one broken.jpg: reported, the run goes on, and the exit status says so (1)
    assert main(["cluster", str(library), "--out", str(out), "--to-index", str(idx), "--no-sheets"]) == 1
    cap = capsys.readouterr()
    assert "10 faces -> 4 clusters" in cap.out and (idx / "gallery.db").is_file()
    assert "broken.jpg" in caplog.text and "1 input(s) failed" in cap.err  # reported as it was skipped
    assert main(["cluster", "--update", str(out), "--merge", "1", "2", "--rename", "1=Alice"]) == 0
    doc = json.loads((out / "clusters.json").read_text())
    assert doc["num_clusters"] == 3 and doc["clusters"]["1"]["name"] == "Alice"
    assert main(["cluster", "--update", str(out), "--rename", "1Alice"]) == 2
    assert "expected ID=NAME" in capsys.readouterr().err
