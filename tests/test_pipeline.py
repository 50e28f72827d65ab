"""The face recognition pipeline on real LFW photos: detect -> align -> embed -> search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_gallery
from facefeat import create_pipeline
from facefeat.errors import FaceIndexError, InputError
from facefeat.index import load_index

PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder"]



@pytest.fixture(scope="module")
def gallery(tmp_path_factory, lfw_dir) -> Path:
    return make_gallery(tmp_path_factory.mktemp("gallery"), lfw_dir, PEOPLE)


def probe(lfw_dir: Path, person: str, i: int = 5) -> str:
    return str(sorted((lfw_dir / person).glob("*.jpg"))[i])


def test_embed_gives_one_unit_feature_per_face(pipe, lfw_dir):
    faces = pipe.embed(probe(lfw_dir, "Tony_Blair"))
    assert len(faces) >= 1
    f = faces[0]
    assert set(f) >= {"coordinate", "det_score", "landmarks", "feature"}
    assert len(f["landmarks"]) == 5 and len(f["coordinate"]) == 4
    assert abs(np.linalg.norm(f["feature"]) - 1) < 1e-5
    # several inputs: one list per image
    many = pipe.embed([probe(lfw_dir, "Tony_Blair"), probe(lfw_dir, "Colin_Powell")])
    assert len(many) == 2 and np.allclose(many[0][0]["feature"], f["feature"], atol=1e-5)


def test_same_person_is_closer_than_another(pipe, lfw_dir):
    a = np.asarray(pipe.embed(probe(lfw_dir, "Tony_Blair", 1))[0]["feature"])
    b = np.asarray(pipe.embed(probe(lfw_dir, "Tony_Blair", 2))[0]["feature"])
    c = np.asarray(pipe.embed(probe(lfw_dir, "Colin_Powell", 1))[0]["feature"])
    assert a @ b > 0.4 > a @ c


def test_no_face_gives_empty_boxes_not_an_error(pipe):
    blank = np.full((200, 200, 3), 127, np.uint8)
    assert pipe.embed(blank) == []
    (res,) = list(pipe.predict(blank))
    assert res["boxes"] == []


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32", "IVF"])
def test_build_save_load_recognise(pipe, gallery, lfw_dir, tmp_path, index_type):
    index = pipe.build_index(str(gallery), str(gallery / "gallery.txt"), metric_type="IP", index_type=index_type)
    assert len(index) == 2 * len(PEOPLE) and pipe.last_rejected == []
    index.save(tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    for person in PEOPLE:
        (res,) = list(pipe.predict(probe(lfw_dir, person), index=index, rec_threshold=0.3, rec_topk=3))
        box = res["boxes"][0]
        assert box["labels"][0] == person, (person, box)
        assert len(box["labels"]) == 3 and box["rec_scores"] == sorted(box["rec_scores"], reverse=True)
    out = res.save_to_json(tmp_path / "out")
    assert json.loads(out.read_text())["boxes"][0]["labels"][0] == PEOPLE[-1]  # inner dict, as PaddleX
    img = res.save_to_img(tmp_path / "out")
    assert img.is_file() and img.stat().st_size > 1000


def test_unknown_when_below_threshold_and_topk_honoured(pipe, gallery, lfw_dir):
    index = pipe.build_index(str(gallery), str(gallery / "gallery.txt"), index_type="Flat")
    (res,) = list(pipe.predict(probe(lfw_dir, "George_W_Bush"), index=index, rec_threshold=0.99))
    assert res["boxes"][0]["labels"] is None and res["boxes"][0]["rec_scores"] is None
    (res,) = list(pipe.predict(probe(lfw_dir, "Tony_Blair"), index=index, rec_threshold=0.0, rec_topk=1))
    assert len(res["boxes"][0]["labels"]) == 1


def test_append_and_remove(pipe, gallery, lfw_dir, tmp_path):
    index = pipe.build_index(str(gallery), str(gallery / "gallery.txt"), index_type="HNSW32")
    assert pipe.append_index([probe(lfw_dir, "George_W_Bush", 0)], ["George_W_Bush"], index) is index
    new = pipe.last_added_ids  # PaddleX returns the index; the new ids are kept here
    assert len(new) == 1 and index.labels()[new[0]] == "George_W_Bush"
    (res,) = list(pipe.predict(probe(lfw_dir, "George_W_Bush", 3), index=index, rec_threshold=0.3))
    assert res["boxes"][0]["labels"][0] == "George_W_Bush"
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"{new[0]}\n")
    assert pipe.remove_index(str(ids_file), index) is index
    assert new[0] not in index.ids()
    with pytest.raises(InputError):
        pipe.remove_index([987654], index)
    assert len(index) == 2 * len(PEOPLE)


def test_gallery_without_a_face_is_reported(pipe, gallery, tmp_path):
    import cv2

    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 90, np.uint8))
    imgs = [str(p) for p in sorted(gallery.glob("*/*.jpg"))[:2]] + [str(blank)]
    index = pipe.build_index(imgs, ["a", "b", "c"], index_type="Flat")
    assert len(index) == 2
    from facefeat.pipeline.face_recognition import GalleryRejection

    assert pipe.last_rejected == [GalleryRejection(2, str(blank), "c", "no face detected")]
    g = pipe.gallery_features(imgs, ["a", "b", "c"])
    assert g.positions == [0, 1] and g.labels == ["a", "b"] and g.rejected == pipe.last_rejected
    with pytest.raises(InputError, match="blank.jpg: no face detected"):
        pipe.build_index(imgs, ["a", "b", "c"], strict=True)
    with pytest.raises(InputError, match="as long as gallery_imgs"):
        pipe.build_index(imgs, ["a"])


def test_index_of_another_model_is_refused(pipe, gallery, paddle_peers):
    from facefeat.pipeline import FaceRecognitionPipeline

    index = pipe.build_index(str(gallery), str(gallery / "gallery.txt"), index_type="Flat")
    other = FaceRecognitionPipeline(model="ResNet50_face",
                                    weights=str(paddle_peers / "ResNet50_face" / "model.pdparams"))
    with pytest.raises(FaceIndexError, match="SFace"):
        list(other.predict(np.full((64, 64, 3), 0, np.uint8), index=index))


def test_crop_mode_matches_paddlex_behaviour(lfw_dir):
    crop = create_pipeline("face_recognition", align="crop")
    faces = crop.embed(probe(lfw_dir, "Tony_Blair"))
    assert len(faces) == 1 and abs(np.linalg.norm(faces[0]["feature"]) - 1) < 1e-5


def test_cli_index_build_recognize_remove(gallery, lfw_dir, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "facefeat", *a], capture_output=True, text=True,
                                    timeout=300)
    idx = tmp_path / "idx"
    r = run("index", "build", "--gallery", str(gallery), "--out", str(idx), "--index-type", "Flat")
    assert r.returncode == 0, r.stderr
    r = run("index", "info", str(idx), "--json")
    assert json.loads(r.stdout)["count"] == 2 * len(PEOPLE)
    r = run("recognize", probe(lfw_dir, "Donald_Rumsfeld"), "--index", str(idx), "--save-dir", str(tmp_path / "o"))
    assert r.returncode == 0 and "Donald_Rumsfeld" in r.stdout, r.stderr
    assert list((tmp_path / "o").glob("*_res.jpg"))
    r = run("index", "remove", str(idx), "0", "1")
    assert r.returncode == 0 and json.loads(run("index", "info", str(idx), "--json").stdout)["count"] == 2 * len(PEOPLE) - 2
    r = run("index", "info", str(tmp_path / "nope"))
    assert r.returncode != 0 and "nope" in r.stderr
    r = run("embed", probe(lfw_dir, "Tony_Blair"), "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["faces"][0]["feature"]) == 128
