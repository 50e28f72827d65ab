"""1:1 verification on real LFW photos: two images, a feature pair, a face against a gallery person."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from facefeat.errors import InputError
from facefeat.index import create_index



def img(lfw_dir, person, i):
    return str(sorted((lfw_dir / person).glob("*.jpg"))[i])


def test_same_and_different_people(pipe, lfw_dir):
    same = pipe.verify(img(lfw_dir, "Tony_Blair", 0), img(lfw_dir, "Tony_Blair", 3))
    diff = pipe.verify(img(lfw_dir, "Tony_Blair", 0), img(lfw_dir, "Colin_Powell", 3))
    assert same["verified"] and not diff["verified"]
    assert same["score"] > same["threshold"] > diff["score"]
    op = same["operating_point"]
    assert op["source"] == "calibrated" and op["operating_point"] == "far=1e-3" and same["far"] <= 1e-3
    assert len(same["faces"]) == 2 and same["faces"][0]["other_faces"] == []
    assert same["faces"][1]["quality"]["face_size"] > 50
    assert set(same.json["res"]) >= {"verified", "score", "threshold", "far", "faces", "operating_point"}
    loose = pipe.verify(img(lfw_dir, "Tony_Blair", 0), img(lfw_dir, "Colin_Powell", 3), far=1e-2)
    assert loose["threshold"] < same["threshold"]
    fixed = pipe.verify(img(lfw_dir, "Tony_Blair", 0), img(lfw_dir, "Colin_Powell", 3), rec_threshold=-1)
    assert fixed["verified"] and fixed["operating_point"]["source"] == "fixed"


def test_feature_pair_and_largest_face(pipe, lfw_dir):
    a = pipe.embed(img(lfw_dir, "Tony_Blair", 0))[0]["feature"]
    b = np.asarray(pipe.embed(img(lfw_dir, "Tony_Blair", 3))[0]["feature"]) * 3.0  # not normalised
    r = pipe.verify(a, b)
    assert r["verified"] and r["faces"][0] == {"input": "feature"}
    # two faces side by side, one larger: the larger is used, the other reported
    big = cv2.imread(img(lfw_dir, "Tony_Blair", 3))
    small = cv2.resize(cv2.imread(img(lfw_dir, "Colin_Powell", 3)), (150, 150))
    canvas = np.zeros((250, 420, 3), np.uint8)
    canvas[:, :250], canvas[50:200, 260:410] = big, small
    r = pipe.verify(img(lfw_dir, "Tony_Blair", 0), canvas)
    assert r["verified"] and len(r["faces"][1]["other_faces"]) == 1
    with pytest.raises(InputError, match="img2.*no face"):
        pipe.verify(a, np.full((120, 120, 3), 127, np.uint8))
    with pytest.raises(InputError, match="128"):
        pipe.verify(a, [0.0] * 128)


def test_face_against_a_gallery_person(pipe, lfw_dir):
    index = create_index(dim=128, metric_type="IP", index_type="Flat", model_name="SFace")
    for person in ("Tony_Blair", "Colin_Powell"):
        feats = [pipe.embed(img(lfw_dir, person, i))[0]["feature"] for i in (0, 1)]
        index.add(np.asarray(feats, np.float32), [person, person])
    r = pipe.verify(img(lfw_dir, "Tony_Blair", 5), person="Tony_Blair", index=index)
    assert r["verified"] and r["faces"][1]["samples"] == 2 and r["faces"][1]["sample_id"] in (0, 1)
    r = pipe.verify(img(lfw_dir, "Tony_Blair", 5), person="Colin_Powell", index=index)
    assert not r["verified"]
    with pytest.raises(InputError, match="Nobody"):
        pipe.verify(img(lfw_dir, "Tony_Blair", 5), person="Nobody", index=index)


def test_gallery_person_on_an_l2_index(pipe, lfw_dir):
    """An L2 gallery scores squared distances: the threshold is the calibrated one in that unit
    (resolve_threshold's conversion, the same as predict's), and the decision agrees with IP."""
    feats = {p: [pipe.embed(img(lfw_dir, p, i))[0]["feature"] for i in (0, 1)] for p in ("Tony_Blair", "Colin_Powell")}
    by_metric = {}
    for metric in ("IP", "L2"):
        index = create_index(dim=128, metric_type=metric, index_type="Flat", model_name="SFace")
        for person, f in feats.items():
            index.add(np.asarray(f, np.float32), [person, person])
        by_metric[metric] = [pipe.verify(img(lfw_dir, "Tony_Blair", 5), person=p, index=index) for p in feats]
    for ip, l2 in zip(by_metric["IP"], by_metric["L2"]):
        assert ip["verified"] == l2["verified"]
        assert l2["threshold"] == pytest.approx(2.0 - 2.0 * ip["threshold"], abs=1e-5)
        assert l2["operating_point"]["threshold"] == pytest.approx(l2["threshold"], abs=1e-5)
        assert l2["score"] == pytest.approx(2.0 - 2.0 * ip["score"], abs=1e-4)
    assert [r["verified"] for r in by_metric["L2"]] == [True, False]


def test_verify_takes_an_index_directory(pipe, lfw_dir, tmp_path):
    """index= is whatever predict takes (an index directory too), not only an index object."""
    index = create_index(dim=128, metric_type="IP", index_type="Flat", model_name="SFace")
    feats = [pipe.embed(img(lfw_dir, "Tony_Blair", i))[0]["feature"] for i in (0, 1)]
    index.add(np.asarray(feats, np.float32), ["Tony_Blair"] * 2)
    index.save(tmp_path / "idx")
    for where in (str(tmp_path / "idx") + "/", tmp_path / "idx"):
        r = pipe.verify(img(lfw_dir, "Tony_Blair", 5), person="Tony_Blair", index=where)
        assert r["verified"] and r["faces"][1]["samples"] == 2


def test_cli_verify(lfw_dir):
    r = subprocess.run([sys.executable, "-m", "facefeat", "verify", img(lfw_dir, "Tony_Blair", 0),
                        img(lfw_dir, "Tony_Blair", 3), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verified"] is True
