"""Corrections (issue 18, item 1): "not X" negatives veto a name in the match path (falling to the
next person or to unknown), "this is X" enrols through the quality policy, both undoable; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gallery_samples import cluster_features, make_stored_gallery

from facefeat.cli import main as cli_main
from facefeat.errors import InputError
from facefeat.index import corrections as C
from facefeat.index.persist import open_index
from facefeat.index.privacy import UnknownPerson, forget_person, person_report


def _top(index, q, topk=2):
    from facefeat.index.people import People

    return [h.label for h in C.veto_search(index, People(index).search, q[None], topk)[0]]


def test_not_x_vetoes_the_name_and_undo_restores_it(tmp_path):
    rng = np.random.default_rng(21)
    x, labels, centres = cluster_features(rng, 3, 3)
    make_stored_gallery(tmp_path / "g", x, labels)
    index = open_index(tmp_path / "g")
    q = centres[0] + 0.9 * centres[1]  # closest to person_000, then person_001
    q /= np.linalg.norm(q)
    assert _top(index, q) == ["person_000", "person_001"]
    cid = C.reject_match(index, "person_000", q, source="frame-17")
    assert _top(index, q) == ["person_001", "person_002"]  # falls to the next person
    near = q + 0.05 * rng.normal(size=q.size).astype(np.float32) / np.sqrt(q.size)
    assert _top(index, near / np.linalg.norm(near))[0] == "person_001"  # the same face again: vetoed too
    assert _top(index, centres[0])[0] == "person_000"  # person_000's own face still is person_000
    assert [(c["id"], c["kind"], c["label"]) for c in C.list_corrections(index)] == [(cid, "not", "person_000")]
    assert C.undo(index, cid)["kind"] == "not"
    assert _top(index, q)[0] == "person_000"
    with pytest.raises(InputError, match="already undone"):
        C.undo(index, cid)
    with pytest.raises(InputError, match="no correction 99"):
        C.undo(index, 99)
    with pytest.raises(UnknownPerson, match="nobody"):
        C.reject_match(index, "nobody", q)
    with pytest.raises(InputError):
        C.reject_match(index, "person_000", q[:10])


def test_forgetting_a_person_deletes_their_corrections(tmp_path):
    rng = np.random.default_rng(22)
    x, labels, centres = cluster_features(rng, 2, 2)
    make_stored_gallery(tmp_path / "g", x, labels)
    index = open_index(tmp_path / "g")
    C.reject_match(index, "person_001", centres[0])
    assert len(person_report(tmp_path / "g", "person_001")["corrections"]) == 1
    forget_person(tmp_path / "g", "person_001")
    assert C.list_corrections(index) == []



def test_corrections_in_the_pipeline_and_cli(tmp_path, lfw_dir, pipe, capsys):
    from serving_fixtures import lfw_images

    bush, powell, blair = (lfw_images(lfw_dir, n, 4) for n in ("George_W_Bush", "Colin_Powell", "Tony_Blair"))
    g = tmp_path / "g"
    from facefeat.index import create_index
    from facefeat.index.people import People

    people = People(create_index(dim=128, model_name="SFace", index_type="Flat"))
    pipe.enroll([(str(p), "George_W_Bush") for p in bush[:2]] + [(str(p), "Colin_Powell") for p in powell[:2]],
                people, quality="off")
    people.save(g)
    index = open_index(g)
    (res,) = list(pipe.predict(str(blair[0]), index=index, rec_threshold=-1.0, rec_topk=2))
    first = res["boxes"][0]["labels"][0]
    other = ({"George_W_Bush", "Colin_Powell"} - {first}).pop()
    # the operator says "this is not <first>" through the CLI
    assert cli_main(["index", "correct", str(g), str(blair[0]), "--not", first, "--json"]) == 0
    cid = json.loads(capsys.readouterr().out)["correction"]
    (res,) = list(pipe.predict(str(blair[0]), index=index, rec_threshold=-1.0, rec_topk=2))
    assert res["boxes"][0]["labels"][0] == other
    (res,) = list(pipe.predict(str(blair[0]), index=index))  # at the calibrated threshold: unknown
    assert res["boxes"][0]["labels"] is None
    assert cli_main(["index", "corrections", str(g), "--undo", str(cid), "--json"]) == 0
    capsys.readouterr()
    (res,) = list(pipe.predict(str(blair[0]), index=index, rec_threshold=-1.0, rec_topk=2))
    assert res["boxes"][0]["labels"][0] == first
    # "this is George_W_Bush": enrolled through the quality policy, undoable
    out = C.confirm_match(pipe, index, str(bush[2]), "George_W_Bush", quality="off")
    assert out["sample_id"] in index.labels() and not out["duplicate"]
    assert C.undo(index, out["correction"])["removed_sample"] == out["sample_id"]
    assert out["sample_id"] not in index.labels()
    with pytest.raises(UnknownPerson):
        C.confirm_match(pipe, index, str(bush[3]), "Tony_Blair")
    dark = np.zeros((200, 200, 3), np.uint8)
    with pytest.raises(InputError, match="no face"):
        C.confirm_match(pipe, index, dark, "George_W_Bush")
    assert cli_main(["index", "correct", str(g), str(blair[1]), "--not", "Nobody"]) == 2
    assert "no person 'Nobody'" in capsys.readouterr().err
