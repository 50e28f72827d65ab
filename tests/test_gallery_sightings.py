"""Sightings and unknown faces (issue 18, items 2 and 3): opt-in recording in the recognition path,
search by person, time and probe face (faces unknown when seen included), unknown groups named into
a person, dismissal, retention sweep, forgetting; bad input (retention 0 or negative)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from facefeat.cli import main as cli_main
from facefeat.errors import InputError
from facefeat.index import sightings as S
from facefeat.pipeline.unknown import unknown_groups
from facefeat.index.persist import open_index



@pytest.fixture
def setup(tmp_path, lfw_dir, pipe):
    from serving_fixtures import lfw_images

    from facefeat.index import create_index
    from facefeat.index.people import People

    photos = {n: [str(p) for p in lfw_images(lfw_dir, n, 4)] for n in ("George_W_Bush", "Colin_Powell", "Tony_Blair")}
    people = People(create_index(dim=128, model_name="SFace", index_type="Flat"))
    pipe.enroll([(p, n) for n in ("George_W_Bush", "Colin_Powell") for p in photos[n][:2]], people, quality="off")
    people.save(tmp_path / "g")
    return tmp_path / "g", open_index(tmp_path / "g"), photos


def test_nothing_is_recorded_until_turned_on(setup, pipe):
    g, index, photos = setup
    list(pipe.predict(photos["Tony_Blair"][0], index=index))
    assert S.settings(index.store) == {"record": False, "keep_unknown": False, "retention_days": 30.0}
    assert S.search(index) == [] and unknown_groups(index) == []
    for bad in (0, -3, float("nan"), "week"):
        with pytest.raises(InputError, match="retention_days"):
            S.configure(index, record=True, retention_days=bad)
    assert S.settings(index.store)["record"] is False


def test_sightings_search_groups_naming_and_retention(setup, pipe, capsys):
    g, index, photos = setup
    assert cli_main(["index", "sightings", str(g), "--record", "on", "--keep-unknown", "on",
                     "--retention-days", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"record": True, "keep_unknown": True, "retention_days": 7.0}
    t0 = time.time()
    for p in [photos["George_W_Bush"][2], *photos["Tony_Blair"][:3]]:
        (res,) = list(pipe.predict(p, index=index))
    bush = S.search(index, label="George_W_Bush")
    assert [r["source"] for r in bush] == [photos["George_W_Bush"][2]] and bush[0]["score"] > 0
    unknown = S.search(index, unknown=True)
    assert len(unknown) == 3 and all(r["label"] is None for r in unknown)
    assert S.search(index, since=t0 + 3600) == []
    # "where has this face been seen?" - a new photo of Blair finds the sightings of when he was unknown
    probe = pipe.gallery_features([photos["Tony_Blair"][3]], ["probe"], strict=True, quality="off").features[0]
    found = S.search(index, probe=probe)
    assert {r["id"] for r in found} == {r["id"] for r in unknown}
    groups = unknown_groups(index)
    assert [sorted(gr["ids"]) for gr in groups] == [sorted(r["id"] for r in unknown)]
    assert cli_main(["index", "sightings", str(g), "--name", ",".join(map(str, groups[0]["ids"])),
                     "--as", "Tony_Blair", "--json"]) == 0
    named = json.loads(capsys.readouterr().out)
    assert named["label"] == "Tony_Blair" and len(named["sample_ids"]) == 3
    index.refresh()
    (res,) = list(pipe.predict(photos["Tony_Blair"][3], index=index))
    assert res["boxes"][0]["labels"][0] == "Tony_Blair"  # the group became a person
    assert len(S.search(index, label="Tony_Blair")) == 4  # the past sightings took the name
    with pytest.raises(InputError, match="no sighting"):
        S.name_sightings(index, [999], "X")
    from facefeat.index import load_index
    with pytest.raises(InputError, match="open_index"):
        S.name_sightings(load_index(g), [bush[0]["id"]], "X")
    assert S.dismiss(index, [bush[0]["id"]]) == 1
    # the sweep deletes what is past the retention period, crops included
    assert S.sweep(index, now=time.time() + 8 * 86400) == 4
    assert S.search(index) == []
    db = b"".join(p.read_bytes() for p in g.iterdir() if p.name.startswith("gallery.db"))
    assert db.count(b"JFIF") == len(index)  # the crops left are the samples' own


def test_forgetting_a_person_deletes_their_sightings(setup, pipe):
    from facefeat.index.privacy import forget_person, person_report

    g, index, photos = setup
    S.configure(index, record=True)
    list(pipe.predict(photos["Colin_Powell"][2], index=index))
    assert len(person_report(g, "Colin_Powell")["sightings"]) == 1
    forget_person(g, "Colin_Powell")
    assert S.search(index) == []
    with pytest.raises(InputError):
        S.search(index, limit=0)
    assert np.isfinite(S.settings(index.store)["retention_days"])
