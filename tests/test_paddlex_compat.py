"""PaddleX 3.7's documented face_recognition usage, written as a PaddleX user would, against facefeat.

The calls follow PaddleX's pipeline docs (create_pipeline by name / YAML / config dict,
build_index -> save -> append_index(index=dir) -> remove_index(index=index_data) -> predict,
the result methods, the CLI); the code is ours.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_gallery
from facefeat import create_pipeline
from facefeat.cli import main as cli_main
from facefeat.config import load_pipeline_config
from facefeat.errors import ConfigError, InputError

PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld"]


def paddlex_style_config(model_dir: Path | None = None) -> dict:
    """A config with PaddleX's face_recognition.yaml keys (its detector, ``index: None`` as text)."""
    return {
        "pipeline_name": "face_recognition",
        "index": "None",
        "det_threshold": 0.6,
        "rec_threshold": 0.4,
        "rec_topk": 5,
        "SubModules": {
            "Detection": {"module_name": "face_detection", "model_name": "PP-YOLOE_plus-S_face",
                          "model_dir": None, "batch_size": 1},
            "Recognition": {"module_name": "face_feature",
                            "model_name": "MobileFaceNet" if model_dir else "SFace",
                            "model_dir": str(model_dir) if model_dir else None, "batch_size": 1},
        },
    }


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, lfw_dir) -> Path:
    return make_gallery(tmp_path_factory.mktemp("pdx_gallery"), lfw_dir, PEOPLE)


@pytest.fixture(scope="module")
def pipeline():
    return create_pipeline(pipeline="face_recognition")


def probe(lfw_dir: Path, person: str, i: int = 5) -> str:
    return str(sorted((lfw_dir / person).glob("*.jpg"))[i])


def test_shipped_config_is_the_default(pipeline):
    cfg = load_pipeline_config("face_recognition")
    assert cfg["SubModules"]["Recognition"]["model_name"] == "SFace" and cfg["index"] is None
    assert pipeline.predictor.model_name == "SFace"
    assert (pipeline.det_threshold, pipeline.rec_threshold, pipeline.rec_topk) == (0.5, "auto", 5)  # auto: the calibrated 1:N point


def test_paddlex_yaml_with_paddlex_inference_model(tmp_path, paddle_peers, caplog):
    """PaddleX's YAML schema + PaddleX's exported model: the detector is mapped with a logged note."""
    path = tmp_path / "my_face_recognition.yaml"
    path.write_text(yaml.safe_dump(paddlex_style_config(paddle_peers / "MobileFaceNet" / "inference")))
    with caplog.at_level(logging.WARNING, logger="facefeat"):
        pipe = create_pipeline(pipeline=str(path), device="cpu")
    assert "PP-YOLOE_plus-S_face" in caplog.text and "YuNet" in caplog.text
    assert pipe.predictor.model_name == "MobileFaceNet" and pipe.index is None
    assert pipe.det_threshold == 0.6 and pipe.predictor.batch_size == 1


def test_config_dict_and_overrides():
    pipe = create_pipeline(config=paddlex_style_config(), device="cpu", rec_topk=2)
    assert pipe.predictor.model_name == "SFace" and pipe.rec_topk == 2 and pipe.det_threshold == 0.6


@pytest.mark.parametrize("change, match", [
    ({"rec_topk": "five"}, "rec_topk expects int"),
    ({"det_treshold": 0.5}, "did you mean 'det_threshold'"),
    ({"pipeline_name": "OCR"}, "not supported"),
    ({"SubModules": {"Detection": {"model_name": "RetinaFace"}}}, "RetinaFace"),
    ({"SubModules": {"Recognition": {"model_nmae": "SFace"}}}, "SubModules.Recognition.model_nmae"),
])
def test_bad_configs_are_named(change, match):
    cfg = {**paddlex_style_config(), **change}
    with pytest.raises(ConfigError, match=match):
        load_pipeline_config(config=cfg)


def test_unknown_pipeline_and_missing_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown pipeline 'face_recognize'"):
        create_pipeline(pipeline="face_recognize")
    with pytest.raises(ConfigError, match="does not exist"):
        create_pipeline(pipeline=str(tmp_path / "nope.yaml"))


def test_documented_index_chain(pipeline, gallery, lfw_dir, tmp_path, capsys):
    """build_index -> save -> append_index(index=dir) -> remove_index(index=index_data) -> save -> predict(index=dir)."""
    index_dir = tmp_path / "face_index"
    index_data = pipeline.build_index(gallery_imgs=str(gallery), gallery_label=str(gallery / "gallery.txt"),
                                      metric_type="IP", index_type="Flat")
    index_data.save(str(index_dir))
    n = len(index_data)

    index_data = pipeline.append_index(gallery_imgs=[probe(lfw_dir, "George_W_Bush", 0)],
                                       gallery_label=["George_W_Bush"], index=str(index_dir))
    added = pipeline.last_added_ids
    assert len(index_data) == n + 1 and index_data.labels()[added[0]] == "George_W_Bush"
    assert len(load_pipeline_index(index_dir)) == n  # a directory changes only when saved

    index_data = pipeline.remove_index(remove_ids=[added[0]], index=index_data)
    assert len(index_data) == n
    index_data = pipeline.append_index(gallery_imgs=[probe(lfw_dir, "George_W_Bush", 0)],
                                       gallery_label=["George_W_Bush"], index=index_data)
    index_data.save(str(index_dir))

    out = tmp_path / "output"
    for res in pipeline.predict(probe(lfw_dir, "George_W_Bush", 3), index=str(index_dir), hamming_radius=None):  # PaddleX keyword, accepted
        res.print()
        res.save_to_img(str(out))
        res.save_to_json(str(out))
    printed = capsys.readouterr().out
    assert printed.startswith("{'res': {") and "'boxes'" in printed  # print(): PaddleX's dict form
    stem = Path(probe(lfw_dir, "George_W_Bush", 3)).stem
    doc = json.loads((out / f"{stem}_res.json").read_text())
    assert set(doc) >= {"input_path", "boxes"} and doc["boxes"][0]["labels"][0] == "George_W_Bush"
    assert (out / f"{stem}_res.jpg").is_file()
    img = res.img
    assert list(img) == ["res"] and img["res"].mode == "RGB" and img["res"].size[0] > 0
    assert np.asarray(img["res"]).shape == res["_img"].shape
    with pytest.raises(InputError, match="unknown ids"):
        pipeline.remove_index(remove_ids=[10 ** 6], index=str(index_dir))


def load_pipeline_index(d: Path):
    from facefeat.index import load_index

    return load_index(d)


def test_index_in_config_is_a_directory(pipeline, gallery, tmp_path):
    index = pipeline.build_index(str(gallery), str(gallery / "gallery.txt"), index_type="Flat")
    index.save(tmp_path / "idx")
    cfg = {**paddlex_style_config(), "index": str(tmp_path / "idx")}
    pipe = create_pipeline(config=cfg, predictor=pipeline.predictor)
    assert len(pipe.index) == len(index)
    pipe = create_pipeline(config={**cfg, "index": index}, predictor=pipeline.predictor)  # an index object
    assert pipe.index is index
    with pytest.raises(ConfigError, match="index expects"):
        load_pipeline_config(config={**cfg, "index": 3})


def test_paddlex_cli_and_get_pipeline_config(pipeline, gallery, lfw_dir, tmp_path, capsys):
    index = pipeline.build_index(str(gallery), str(gallery / "gallery.txt"), index_type="Flat")
    index.save(tmp_path / "idx")
    img = probe(lfw_dir, "Tony_Blair")
    out = tmp_path / "out"
    assert cli_main(["--pipeline", "face_recognition", "--input", img, "--index", str(tmp_path / "idx"),
                     "--save_path", str(out), "--device", "cpu"]) == 0
    (line,) = capsys.readouterr().out.splitlines()  # JSON lines, never a Python dict repr
    assert json.loads(line)["res"]["boxes"][0]["labels"][0] == "Tony_Blair"
    doc = json.loads((out / f"{Path(img).stem}_res.json").read_text())
    assert doc["boxes"][0]["labels"][0] == "Tony_Blair"
    assert (out / f"{Path(img).stem}_res.jpg").is_file()

    assert cli_main(["get-pipeline-config", "face_recognition", "--save_path", str(tmp_path / "cfg")]) == 0
    written = tmp_path / "cfg" / "face_recognition.yaml"
    assert load_pipeline_config(str(written)) == load_pipeline_config("face_recognition")
    assert cli_main(["get-pipeline-config", "face_recognition", "--save_path", str(written)]) == 2  # no overwrite
    assert cli_main(["--get_pipeline_config", "face_recognition", "--save_path", str(tmp_path / "p.yaml")]) == 0
    assert (tmp_path / "p.yaml").read_text() == written.read_text()


def test_paddlex_index_directory_is_refused_clearly(tmp_path):
    from facefeat.errors import FaceIndexError
    from facefeat.pipeline.face_recognition import resolve_index

    (tmp_path / "vector.index").write_bytes(b"\0" * 16)
    (tmp_path / "id_map.yaml").write_text("id_map: {0: a}\nmetric_type: IP\nindex_type: Flat\n")
    with pytest.raises(FaceIndexError, match="PaddleX index.*rebuild"):
        resolve_index(str(tmp_path))
    assert resolve_index("None") is None and resolve_index(None) is None


def test_paddlex_only_options_are_accepted():
    pipe = create_pipeline(pipeline="face_recognition", device="cpu", use_hpip=False, engine=None, hpi_config=None)
    assert pipe.predictor.model_name == "SFace"


def test_inference_dir_without_model_name(tmp_path, paddle_peers):
    import shutil

    from facefeat import create_model

    d = tmp_path / "inference"
    shutil.copytree(paddle_peers / "MobileFaceNet" / "inference", d)
    d.chmod(0o755)  # ../shared is read-only; copytree copies its modes
    (d / "inference.yml").unlink()
    with pytest.raises(InputError, match="names no model"):
        create_model(model_dir=d)
