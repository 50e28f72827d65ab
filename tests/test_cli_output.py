"""The command line's output convention (one human line, or --json) and its bad-file policy
(report each bad file, go on, exit 1 at the end), with hostile file names escaped."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from facefeat.cli import main
from facefeat.cli.output import Output, dumps, escape, format_far, verify_line
from facefeat.errors import InputError
from facefeat.io import IMAGE_EXTENSIONS, read_image
from facefeat.io.walk import file_problem, list_image_files

HOSTILE = "evil\x1b[31mRED\nforged line\u202e.jpg"


def _img(lfw_dir, person: str, i: int = 0) -> str:
    return str(sorted((lfw_dir / person).glob("*.jpg"))[i])


@pytest.fixture
def bad_folder(tmp_path, lfw_dir):
    """A folder with two good photos (one with a hostile name), a FIFO, a link loop and a broken link."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    shutil.copy(_img(lfw_dir, "Tony_Blair"), d / "good.jpg")
    shutil.copy(_img(lfw_dir, "Colin_Powell"), d / HOSTILE)
    os.mkfifo(d / "pipe.jpg")
    os.symlink("loop.jpg", d / "loop.jpg")
    os.symlink("nowhere.jpg", d / "broken.jpg")
    shutil.copy(_img(lfw_dir, "Tony_Blair", 1), d / "sub" / "deep.jpg")
    os.mkfifo(d / "sub" / "pipe2.png")
    return d


def test_escape_keeps_text_and_neutralises_controls():
    assert escape("Zoë Ångström 王.jpg") == "Zoë Ångström 王.jpg"
    assert escape("a\x1b[2Jb\nc\rd\x9b\u202e\u2028") == "a\\x1b[2Jb\\nc\\rd\\x9b\\u202e\\u2028"
    text = dumps({"name": HOSTILE + "\x9b"})
    assert "\x1b" not in text and "\n" not in text and "\u202e" not in text and "\x9b" not in text
    assert json.loads(text)["name"] == HOSTILE + "\x9b"  # still exact JSON
    assert format_far(1e-3) == "1e-3" and format_far(0.01) == "1e-2" and format_far(5e-4) == "5e-4"


def test_file_problem_names_what_is_wrong(tmp_path):
    os.mkfifo(tmp_path / "p.jpg")
    os.symlink("l.jpg", tmp_path / "l.jpg")
    os.symlink("gone.jpg", tmp_path / "b.jpg")
    (tmp_path / "ok.jpg").write_bytes(b"x")
    assert file_problem(tmp_path / "ok.jpg") is None
    assert "FIFO" in file_problem(tmp_path / "p.jpg")
    assert "loop" in file_problem(tmp_path / "l.jpg")
    assert "broken symbolic link" in file_problem(tmp_path / "b.jpg")
    assert file_problem(tmp_path / "none.jpg") == "no such file"
    with pytest.raises(InputError, match="p.jpg: is a FIFO"):
        read_image(tmp_path / "p.jpg")  # refused before opening: no hang
    with pytest.raises(InputError, match="l.jpg: symbolic link loop"):
        read_image(tmp_path / "l.jpg")
    from facefeat.io.walk import read_regular_file

    with pytest.raises(InputError, match="p.jpg: is a FIFO"):  # past the check too (a swapped path): no hang
        read_regular_file(tmp_path / "p.jpg", 1000)
    assert read_regular_file(tmp_path / "ok.jpg", 1000) == b"x"


def test_listing_keeps_bad_entries_for_reporting(bad_folder):
    flat = [p.name for p in list_image_files(bad_folder, IMAGE_EXTENSIONS)]
    assert sorted(flat) == sorted(["good.jpg", HOSTILE, "pipe.jpg", "loop.jpg", "broken.jpg"])
    deep = [p.name for p in list_image_files(bad_folder, IMAGE_EXTENSIONS, recursive=True)]
    assert "deep.jpg" in deep and "pipe2.png" in deep and "loop.jpg" in deep
    from facefeat.distributed.inputs import list_inputs
    from facefeat.pipeline.cluster import expand_cluster_inputs

    assert any(p.endswith("pipe2.png") for p, _ in list_inputs(bad_folder))  # embed-dataset reports it
    assert any(str(p).endswith("pipe.jpg") for p in expand_cluster_inputs(str(bad_folder)))  # cluster too


def _check_bad_file_report(err: str) -> None:
    assert "pipe.jpg: is a FIFO (named pipe), not a regular file" in err
    assert "loop.jpg: symbolic link loop" in err
    assert "broken.jpg: broken symbolic link" in err
    assert re.search(r"3 input\(s\) failed, 2 succeeded", err)


@pytest.mark.parametrize("cmd", ["detect", "predict", "embed"])
def test_every_command_reports_each_bad_file_and_goes_on(cmd, bad_folder, capsys):
    rc = main([cmd, str(bad_folder)])
    cap = capsys.readouterr()
    assert rc == 1, cap.err
    _check_bad_file_report(cap.err)
    lines = cap.out.splitlines()
    assert len(lines) == 2 and any("good.jpg" in x for x in lines)  # both good photos, one line each
    assert "\x1b" not in cap.out and "\u202e" not in cap.out and "evil\\x1b[31mRED\\nforged line\\u202e.jpg" in cap.out
    assert "{'" not in cap.out  # never a Python dict repr
    rc = main([cmd, str(bad_folder), "--json"])
    docs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 1 and {os.path.basename(d["input_path"]) for d in docs} == {"good.jpg", HOSTILE}


def test_recognize_goes_on_after_a_bad_file(bad_folder, lfw_dir, tmp_path, capsys):
    from facefeat.pipeline import create_pipeline

    pipe = create_pipeline("face_recognition")
    (g := tmp_path / "g" / "Tony_Blair").mkdir(parents=True)
    shutil.copy(_img(lfw_dir, "Tony_Blair", 2), g / "a.jpg")
    index = pipe.build_index([str(g / "a.jpg")], ["Tony_Blair"], index_type="Flat")
    index.save(tmp_path / "idx")
    rc = main(["recognize", str(bad_folder), "--index", str(tmp_path / "idx")])
    cap = capsys.readouterr()
    assert rc == 1
    _check_bad_file_report(cap.err)
    assert re.search(r"good\.jpg: 1 face: Tony_Blair 0\.\d{3}", cap.out), cap.out


def test_verify_prints_one_line_and_exits_1_when_different(lfw_dir, capsys):
    a, b, c = _img(lfw_dir, "Tony_Blair", 0), _img(lfw_dir, "Tony_Blair", 3), _img(lfw_dir, "Colin_Powell")
    assert main(["verify", a, b]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"same person: score 0\.\d{3} > threshold 0\.\d{3} \(FAR 1e-3\)\n", out), out
    assert main(["verify", a, c, "--far", "1e-2"]) == 1
    out = capsys.readouterr().out
    assert re.fullmatch(r"different people: score -?0\.\d{3} <= threshold 0\.\d{3} \(FAR 1e-2\)\n", out), out
    assert main(["verify", a, c, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] is False and set(doc) >= {"score", "threshold", "far", "faces"}
    assert main(["verify", a, c, "--threshold", "-1"]) == 0
    assert "(fixed threshold)" in capsys.readouterr().out


def test_verify_line_of_a_result():
    res = {"verified": True, "score": 0.6741, "threshold": 0.3652, "far": 0.001,
           "operating_point": {"source": "calibrated"}}
    assert verify_line(res) == "same person: score 0.674 > threshold 0.365 (FAR 1e-3)"


def test_fifo_never_hangs_predict_or_embed_dataset(tmp_path, lfw_dir):
    """A FIFO named *.jpg hung `predict` and `embed-dataset` forever (issue #20, item 6)."""
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(_img(lfw_dir, "Tony_Blair"), d / "a.jpg")
    os.mkfifo(d / "b.jpg")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "facefeat", "predict", str(d)], capture_output=True, text=True,
                       timeout=240, env=env)
    assert r.returncode == 1 and "b.jpg: is a FIFO" in r.stderr and "a.jpg: 128-d feature" in r.stdout
    pytest.importorskip("pyarrow", reason="embed-dataset needs pyarrow: pip install 'facefeat[distributed]'")
    r = subprocess.run([sys.executable, "-m", "facefeat", "embed-dataset", str(d), "--out", str(tmp_path / "emb"),
                        "--no-progress"], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 1 and "1 failed" in r.stdout and "b.jpg: is a FIFO" in r.stderr, r.stderr


def test_output_json_mode_and_failures(capsys):
    out = Output(json_mode=True)
    out.record({"a": 1}, "a line")
    out.line("not printed with --json")
    out.fail("x\x1b.jpg", "bad")
    assert out.finish() == 1
    cap = capsys.readouterr()
    assert cap.out == '{"a": 1}\n' and "x\\x1b.jpg: bad" in cap.err and "1 input(s) failed, 1 succeeded" in cap.err


@pytest.mark.slow  # starts milvus-lite
def test_milvus_lite_build_prints_no_traceback(tmp_path, lfw_dir):
    """milvus-lite answers pymilvus's AllocTimestamp probe with NotImplementedError: gRPC logged two
    tracebacks on every successful build; they are not errors and are silenced (others are not)."""
    pytest.importorskip("pymilvus", reason="the Milvus backend needs: pip install 'facefeat[milvus]'")
    pytest.importorskip("milvus_lite", reason="milvus-lite is needed for local Milvus: pip install milvus-lite")
    import logging

    from conftest import make_gallery

    gallery = make_gallery(tmp_path / "g", lfw_dir, ["Tony_Blair", "Colin_Powell"], per_person=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "facefeat", "index", "build", "--gallery", str(gallery), "--out",
                        str(tmp_path / "idx"), "--index-backend", "milvus", "--index-type", "FLAT"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0 and "built milvus FLAT IP index of 2 sample(s)" in r.stdout, r.stderr
    assert "Traceback" not in r.stderr and "NotImplementedError" not in r.stderr, r.stderr
    from facefeat.index.milvus_client import _UnimplementedRpcFilter

    def rec(exc):
        return logging.LogRecord("grpc._server", logging.ERROR, __file__, 1, "Exception calling application", (),
                                 (type(exc), exc, None))

    assert not _UnimplementedRpcFilter().filter(rec(NotImplementedError("Method not implemented!")))
    assert _UnimplementedRpcFilter().filter(rec(RuntimeError("a real failure")))


def _largest(path: str):
    from facefeat.io import read_image
    from facefeat.vision.detector import YuNetDetector

    img = read_image(path)
    return img, YuNetDetector().detect(img)[0]


def test_predict_aligns_photos_or_warns_loudly(lfw_dir, tmp_path, caplog, capsys):
    """The module embeds aligned crops: a photo is aligned as the pipeline does (align='auto', the
    CLI's default) or embedded resized with a loud warning (the library's default, as PaddleX)."""
    import logging

    import numpy as np

    from facefeat import create_model
    from facefeat.pipeline import create_pipeline

    photo = _img(lfw_dir, "Tony_Blair")
    model = create_model("SFace")
    ref = np.asarray(create_pipeline("face_recognition").embed(photo)[0]["feature"])
    (aligned,) = model.predict(photo, align="auto")
    assert float(np.dot(aligned["feature"], ref)) > 0.999
    with caplog.at_level(logging.WARNING, logger="facefeat"):
        (resized,) = model.predict(photo)
    assert "not an aligned 112x112 face crop" in caplog.text and "align='auto'" in caplog.text
    assert float(np.dot(resized["feature"], ref)) < 0.99
    caplog.clear()
    crop = create_pipeline("face_recognition").align(*_largest(photo))  # an aligned 112x112 crop: no warning
    with caplog.at_level(logging.WARNING, logger="facefeat"):
        list(model.predict(crop))
        assert not caplog.text
        list(model.predict(np.full((112, 112, 3), 90, np.uint8)))  # the right size, but no face in it
    assert "no face found in this 112x112 input" in caplog.text
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    assert main(["predict", photo, str(blank), "--json"]) == 1  # CLI default: --align auto
    cap = capsys.readouterr()
    (doc,) = [json.loads(x) for x in cap.out.splitlines()]
    assert float(np.dot(doc["feature"], ref)) > 0.999 and "blank.png: no face found to align" in cap.err


def test_every_command_takes_json():
    import argparse

    from facefeat.cli import build_parser

    def leaves(p, name):
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield name, p
        for a in subs:
            for n, child in a.choices.items():
                yield from leaves(child, f"{name} {n}".strip())

    found = dict(leaves(build_parser(), ""))
    assert {"predict", "verify", "index build", "index people", "embed-dataset", "evaluate", "dataset lfw-demo"} <= set(found)
    from facefeat.cli import _NO_JSON

    missing = [n for n, p in found.items()
               if n.split()[0] not in _NO_JSON and not any("--json" in a.option_strings for a in p._actions)]
    assert not missing, missing


def test_engine_command_json_is_its_result_file(tmp_path, capsys):
    assert main(["export", "--model", "SFace", "--output", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # one JSON document, nothing else on stdout
    assert doc == json.loads((tmp_path / "export_result.json").read_text()) and doc["model_name"] == "SFace"


def test_cli_errors_name_flags_not_keywords(capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", "x.jpg", "--batch-size", "0"])
    assert e.value.code == 2 and "argument --batch-size: must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["recognize", "x.jpg", "--index", "i", "--topk", "many"])
    assert "argument --topk: expected a whole number >= 1, got 'many'" in capsys.readouterr().err
