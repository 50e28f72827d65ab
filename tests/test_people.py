"""A gallery of people: per-person results, list/add/remove/rename, folder enrolment with reasons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefeat.errors import InputError
from facefeat.index import create_index
from facefeat.index.people import People

PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld"]



@pytest.fixture(scope="module")
def folder(tmp_path_factory, lfw_dir) -> Path:
    """gallery/<person>/*.jpg with 3 good images each, plus a blank, a blurred and a broken file."""
    root = tmp_path_factory.mktemp("people")
    for person in PEOPLE:
        (root / person).mkdir()
        for src in sorted((lfw_dir / person).glob("*.jpg"))[:3]:
            (root / person / src.name).write_bytes(src.read_bytes())
    cv2.imwrite(str(root / "Tony_Blair" / "blank.jpg"), np.full((200, 200, 3), 127, np.uint8))
    blurred = cv2.GaussianBlur(cv2.imread(str(sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[4])), (0, 0), 6)
    cv2.imwrite(str(root / "Tony_Blair" / "blurred.jpg"), blurred)
    (root / "Colin_Powell" / "broken.jpg").write_bytes(b"not an image")
    return root


def test_enrol_folder_partial_success(pipe, folder):
    people = People(create_index(dim=128, index_type="Flat", model_name="SFace"))
    rep = pipe.enroll(str(folder), people, quality="standard")
    assert len(rep["added"]) == 9
    why = {Path(r["path"]).name: r["reason"] for r in rep["rejected"]}
    assert set(why) == {"blank.jpg", "blurred.jpg", "broken.jpg"}
    assert "no face" in why["blank.jpg"] and "blurred" in why["blurred.jpg"] and "broken.jpg" in why["broken.jpg"]
    assert all({"sharpness", "yaw", "face_size"} <= set(a["quality"]) for a in rep["added"])
    assert people.list() == [{"label": p, "samples": 3, "sample_ids": people.sample_ids(p)} for p in sorted(PEOPLE)]
    off = pipe.enroll([(str(folder / "Tony_Blair" / "blurred.jpg"), "Tony_Blair")],
                      People(create_index(dim=128, index_type="Flat", model_name="SFace")), quality="off")
    assert len(off["added"]) == 1


def test_people_view(pipe, folder, lfw_dir, tmp_path):
    people = People(create_index(dim=128, index_type="Flat", model_name="SFace"))
    pipe.enroll(str(folder), people)
    q = np.asarray(pipe.embed(str(sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[6]))[0]["feature"])
    (hits,) = people.search(q, topk=3)
    assert [h.label for h in hits][0] == "Tony_Blair" and len({h.label for h in hits}) == 3
    assert hits[0].sample_id in people.sample_ids("Tony_Blair")
    (res,) = list(pipe.predict(str(sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[6]), index=people.index,
                               per_person=True, rec_threshold=0.0, rec_topk=3))
    box = res["boxes"][0]
    assert box["labels"] == [h.label for h in hits] and len(box["sample_ids"]) == 3
    # add / rename / remove, and the figures survive save + load
    new = people.add("Tony_Blair", q)
    assert len(people.sample_ids("Tony_Blair")) == 4 and new[0] in people.sample_ids("Tony_Blair")
    assert people.rename("Tony_Blair", "Anthony_Blair") == 4 and "Tony_Blair" not in people
    assert people.search(q, 1)[0][0].label == "Anthony_Blair"
    people.save(tmp_path / "idx")
    again = People.load(tmp_path / "idx")
    assert again.list() == people.list() and again.samples == people.samples and again.samples
    assert again.remove("Colin_Powell") == 3 and len(again) == 2
    with pytest.raises(InputError, match="Colin_Powell"):
        again.remove("Colin_Powell")


def test_cli_enroll_people_remove(folder, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "facefeat", "index", *a], capture_output=True,
                                    text=True, timeout=300)
    idx = tmp_path / "idx"
    r = run("enroll", str(idx), "--folder", str(folder))
    assert r.returncode == 0 and "rejected 3" in r.stdout and "blurred" in r.stderr, r.stderr
    r = run("people", str(idx), "--json")
    assert r.returncode == 0 and [p["samples"] for p in json.loads(r.stdout)] == [3, 3, 3]
    r = run("rename", str(idx), "Colin_Powell", "Colin")
    assert r.returncode == 0
    r = run("remove", str(idx), "--label", "Colin")
    assert r.returncode == 0 and "removed 3" in r.stdout
    assert [p["label"] for p in json.loads(run("people", str(idx), "--json").stdout)] == ["Donald_Rumsfeld", "Tony_Blair"]
    r = run("remove", str(idx), "--label", "Nobody")
    assert r.returncode != 0 and "Nobody" in r.stderr


def test_rename_on_milvus(tmp_path):
    pytest.importorskip("pymilvus", reason="the Milvus backend needs: pip install 'facefeat[milvus]'")
    pytest.importorskip("milvus_lite", reason="milvus-lite is needed for local Milvus: pip install milvus-lite")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = create_index("milvus", 8, index_type="FLAT", uri=str(tmp_path / "m.db"), collection="faces")
    people = People(index)
    people.add("a", x[:2])
    people.add("b", x[2:])
    assert people.rename("a", "c") == 2
    assert {h.label for h in people.search(x[0], 2)[0]} == {"c", "b"}
    assert people.search(x[0], 1)[0][0].label == "c"  # the label stored in the collection changed too
    index.close()


def test_enrolment_keeps_the_crop_and_reports_duplicates(pipe, folder, tmp_path):
    """One enrolment path: every sample keeps its aligned crop, detection, content hash and the
    weights hash; enrolling the same folder again adds nothing and reports each image."""
    people = People(create_index(dim=128, index_type="Flat", model_name="SFace"))
    first = pipe.enroll(str(folder), people, quality="standard")
    people.save(tmp_path / "g")
    from facefeat.index import open_index

    again = People(open_index(tmp_path / "g"))
    second = pipe.enroll(str(folder), again, quality="standard")
    assert second["added"] == [] and len(second["duplicates"]) == len(first["added"]) == 9
    assert sorted(d["id"] for d in second["duplicates"]) == sorted(a["id"] for a in first["added"])
    assert len(again.index) == 9
    rec = again.index.record(first["added"][0]["id"])
    crop = cv2.imdecode(np.frombuffer(rec.crop, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (112, 112, 3) and rec.crop_format == "jpeg"
    assert rec.content_hash.startswith("sha256:") and len(rec.det["landmarks"]) == 5 and rec.det["det_score"] > 0.5
    assert rec.weights_hash and "sharpness" in rec.figures["quality"]
