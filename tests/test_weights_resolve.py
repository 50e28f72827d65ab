"""The one weights resolver: every form a user may name, every error, and every entry point using it."""

from __future__ import annotations

import functools
import http.server
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from facefeat.errors import InputError, WeightsError
from facefeat.weights import FORMATS, WeightsRef, load_into, resolve
from facefeat.weights.resolver import WeightsNotFoundError, resolve_model_dir


def _ckpt(path: Path, model_name: str = "MobileFaceNet", full: bool = False) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": "facefeat-checkpoint-v1", "model_name": model_name, "model": {"w": torch.zeros(2)}}
    if full:
        obj.update(optimizer={}, scheduler={}, epoch=1, step=2, head={})
    torch.save(obj, str(path))
    return path


def _model_dir(d: Path, model_name: str = "SFace") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "inference.onnx").write_bytes(b"onnx")
    (d / "inference.yml").write_text(yaml.safe_dump({"facefeat": {"model_name": model_name}}))
    return d


def _paddle_inference_dir(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "inference.json").write_text("{}")
    (d / "inference.pdiparams").write_bytes(b"\0")
    (d / "inference.yml").write_text(yaml.safe_dump({"Global": {"model_name": "MobileFaceNet"}}))
    return d


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Every accepted form on disk."""
    t = tmp_path_factory.mktemp("weights")
    (t / "w.pdparams").write_bytes(pickle.dumps({"x": np.zeros(2, np.float32)}))
    _ckpt(t / "file.pt")
    _ckpt(t / "ck_dir" / "model.pt")
    _ckpt(t / "run" / "latest" / "model.pt", full=True)
    _ckpt(t / "run" / "best_model" / "model.pt")
    _model_dir(t / "export" / "inference")
    _model_dir(t / "only_export" / "best_model" / "inference", "MobileFaceNet")
    _paddle_inference_dir(t / "paddlex")
    (t / "empty").mkdir()
    (t / "w.bin").write_bytes(b"?")
    (t / "junk.pt").write_bytes(b"not a checkpoint")
    return t


@pytest.fixture(scope="module")
def http_root(tree):
    """A loopback HTTP server serving ``tree`` (for the URL form)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tree))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


# (what, model, purpose) -> (kind, format, path relative to the tree or None, model_name)
ACCEPTED = [
    ("SFace", None, "weights", "zoo", "onnx_int8bq", None, "SFace"),
    ("sface", None, "weights", "zoo", "onnx_int8bq", None, "SFace"),  # case-insensitive
    (None, "SFace", "weights", "zoo", "onnx_int8bq", None, "SFace"),  # null: the model's default
    ("null", "SFace", "weights", "zoo", "onnx_int8bq", None, "SFace"),
    ("w.pdparams", None, "weights", "file", "pdparams", "w.pdparams", None),
    ("file.pt", None, "weights", "file", "facefeat", "file.pt", "MobileFaceNet"),  # the checkpoint names it
    ("ck_dir", None, "weights", "checkpoint_dir", "facefeat", "ck_dir/model.pt", "MobileFaceNet"),
    ("run", None, "weights", "checkpoint_dir", "facefeat", "run/best_model/model.pt", "MobileFaceNet"),
    ("run", None, "resume", "checkpoint_dir", "facefeat", "run/latest/model.pt", "MobileFaceNet"),
    ("export/inference", None, "weights", "model_dir", "model_dir", "export/inference", "SFace"),
    ("export/inference/inference.onnx", None, "weights", "model_dir", "model_dir", "export/inference", "SFace"),
    ("export", None, "weights", "model_dir", "model_dir", "export/inference", "SFace"),  # a training output
    ("only_export", None, "weights", "model_dir", "model_dir", "only_export/best_model/inference", "MobileFaceNet"),
    ("paddlex", None, "weights", "model_dir", "paddle_inference", "paddlex", "MobileFaceNet"),
    ("paddlex/inference.pdiparams", None, "weights", "model_dir", "paddle_inference", "paddlex", "MobileFaceNet"),
    ("ck_dir/best_model.pdparams", None, "weights", "file", "facefeat", "ck_dir/model.pt", "MobileFaceNet"),  # PaddleX's name
]


@pytest.mark.parametrize("what,model,purpose,kind,fmt,rel,name", ACCEPTED)
def test_accepted_forms(tree, what, model, purpose, kind, fmt, rel, name):
    given = what if what in (None, "null") or not (tree / what.split("/")[0]).exists() and what.lower() == "sface" \
        else str(tree / what)
    ref = resolve(given, model, purpose=purpose)
    assert isinstance(ref, WeightsRef)
    assert (ref.kind, ref.format, ref.model_name) == (kind, fmt, name)
    assert ref.format in FORMATS
    if rel is not None:
        assert ref.path == tree / rel
    else:
        assert ref.path.is_file()  # the packaged SFace file
    assert resolve(ref) is ref  # a ref passes through


def test_url_is_downloaded_once(tree, http_root, monkeypatch, tmp_path):
    monkeypatch.setenv("FACEFEAT_HOME", str(tmp_path / "home"))
    ref = resolve(f"{http_root}/w.pdparams")
    assert (ref.kind, ref.format) == ("url", "pdparams")
    assert ref.path == tmp_path / "home" / "weights" / "w.pdparams" and ref.path.read_bytes() == (tree / "w.pdparams").read_bytes()
    ref.path.write_bytes(b"cached")
    assert resolve(f"{http_root}/w.pdparams").path.read_bytes() == b"cached"  # not fetched again


def test_download_once_checks_the_sha256(tree, http_root, monkeypatch, tmp_path):
    import hashlib

    from facefeat.weights.sources import download_once

    monkeypatch.setenv("FACEFEAT_HOME", str(tmp_path / "home"))
    url = f"{http_root}/w.pdparams"
    with pytest.raises(WeightsError, match="wrong sha256"):
        download_once(url, "0" * 64)
    assert not list((tmp_path / "home" / "weights").iterdir())  # nothing half-kept
    good = hashlib.sha256((tree / "w.pdparams").read_bytes()).hexdigest()
    path = download_once(url, good, filename="renamed.pdparams")
    assert path.name == "renamed.pdparams" and path.read_bytes() == (tree / "w.pdparams").read_bytes()


def test_a_checkpoint_is_read_once_and_travels_on_the_ref(tree, monkeypatch):
    import facefeat.weights.checkpoint as ck

    reads = []
    real = ck.load_checkpoint
    monkeypatch.setattr(ck, "load_checkpoint", lambda p: reads.append(p) or real(p))
    import facefeat.weights.resolver as r

    monkeypatch.setattr(r, "load_checkpoint", ck.load_checkpoint)
    ref = resolve(str(tree / "file.pt"))
    assert ref.checkpoint is not None and ref.model_name == "MobileFaceNet"
    loaded = ck.read_facefeat_checkpoint(ref)
    assert len(reads) == 1 and set(loaded.state) == set(ref.checkpoint["model"])
    assert loaded.header["model_name"] == "MobileFaceNet" and "model" not in loaded.header


def test_pretrain_purpose(tree):
    from facefeat.errors import ConfigError

    with pytest.raises(WeightsError, match="exported model directory"):
        resolve(str(tree / "export"), "SFace", purpose="pretrain", where="Train.pretrain_weight_path")
    with pytest.raises(ConfigError, match="names model SFace, but the model is MobileFaceNet"):
        resolve("SFace", "MobileFaceNet", purpose="pretrain", where="Train.pretrain_weight_path")
    assert resolve("SFace", "SFace", purpose="pretrain").is_default


def test_model_dir_argument(tree):
    assert resolve_model_dir(tree / "paddlex").format == "paddle_inference"
    ref = resolve_model_dir(tree / "export" / "inference")
    assert (ref.format, ref.model_name) == ("model_dir", "SFace")


# (what, purpose, model, error type, message fragment)
ERRORS = [
    ("nowhere.pdparams", "weights", None, WeightsNotFoundError, "does not exist"),
    ("nowhere.pdparams", "weights", None, InputError, "neither a file"),  # also an InputError
    ("w.bin", "weights", None, WeightsError, "unknown weights format '.bin'"),
    ("empty", "weights", None, WeightsError, "folder without a model"),
    ("export", "resume", None, WeightsError, "nor latest/model.pt"),
    ("junk.pt", "weights", None, WeightsError, "not a readable facefeat/torch checkpoint"),
    (None, "weights", None, WeightsError, "no weights and no model"),
    ("NoSuchNet", "weights", None, WeightsNotFoundError, "SFace"),  # the message lists the zoo
]


@pytest.mark.parametrize("what,purpose,model,exc,fragment", ERRORS)
def test_errors(tree, what, purpose, model, exc, fragment):
    given = None if what is None else (str(tree / what) if what != "NoSuchNet" else what)
    with pytest.raises(exc, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        resolve(given, model, purpose=purpose, where="--weights")


def test_error_names_the_setting(tree):
    with pytest.raises(WeightsError, match="Train.pretrain_weight_path"):
        resolve(str(tree / "nope.pt"), where="Train.pretrain_weight_path")


def test_download_failure_and_offline_default(monkeypatch, tmp_path):
    import facefeat.weights.sources as sources

    monkeypatch.setenv("FACEFEAT_HOME", str(tmp_path / "home"))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
    with pytest.raises(WeightsError, match="download of http://127.0.0.1:9/x.pdparams failed"):
        resolve("http://127.0.0.1:9/x.pdparams")
    with pytest.raises(WeightsError, match=str(tmp_path / "home" / "weights")):
        resolve("MobileFaceNet")  # the default weights are PaddleX's URL: the error says where to put them


def test_loaders_by_format(tree):
    from facefeat.registry import get_spec

    spec = get_spec("MobileFaceNet")
    with pytest.raises(WeightsError, match="unknown weights format 'nope'"):
        load_into(object(), spec, WeightsRef("file", "nope", tree / "w.pdparams"))
    with pytest.raises(WeightsError, match="cannot be loaded into a PyTorch module"):
        load_into(object(), spec, resolve(str(tree / "export")))
    assert {f.name for f in FORMATS.values()} >= {"pdparams", "onnx_int8bq", "facefeat", "model_dir", "paddle_inference"}
    suffixes = [s for f in FORMATS.values() for s in f.suffixes]
    assert len(suffixes) == len(set(suffixes))  # one suffix -> format map


def test_create_model_mismatch_and_missing(tree):
    from facefeat import create_model

    with pytest.raises(InputError, match="holds SFace, not MobileFaceNet"):
        create_model("MobileFaceNet", model_dir=tree / "export" / "inference")
    with pytest.raises(WeightsError, match="nope.onnx"):
        create_model("SFace", weights=tree / "nope.onnx")


class _Called(Exception):
    pass


def _spy(*a, **k):
    raise _Called(k.get("where") or (a[0] if a else None))


def test_every_entry_point_calls_the_resolver(monkeypatch, tree):
    """create_model / create_pipeline, Train.pretrain_weight_path and resume_path,
    Evaluate.weight_path, Export.weight_path: all go through facefeat.weights.resolver."""
    import facefeat.weights.resolver as r
    from facefeat import create_model, create_pipeline
    from facefeat.engine.checkpoint import resume_weights
    from facefeat.engine.evaluate import load_eval_predictor
    from facefeat.engine.export import resolve_export_weights
    from facefeat.engine.pretrain import pretrain_weights
    from facefeat.registry import get_spec

    monkeypatch.setattr(r, "resolve", _spy)
    monkeypatch.setattr(r, "resolve_model_dir", _spy)
    monkeypatch.setattr(r, "model_kwargs", _spy)
    spec = get_spec("MobileFaceNet")
    calls = [
        lambda: create_model("MobileFaceNet", weights="x.pdparams"),
        lambda: create_model(model_dir=tree / "export" / "inference"),
        lambda: create_pipeline("face_recognition", model="SFace", weights="x.onnx"),
        lambda: pretrain_weights(spec, str(tree / "file.pt")),
        lambda: resume_weights(tree / "run"),
        lambda: load_eval_predictor("MobileFaceNet", str(tree / "file.pt")),
        lambda: resolve_export_weights(spec, str(tree / "file.pt")),
    ]
    for call in calls:
        with pytest.raises(_Called):
            call()


def test_model_kwargs_for_create_model(tree):
    """What ``serve --model`` / ``Evaluate.weight_path`` hand to create_model for each form."""
    from facefeat.weights.resolver import model_kwargs

    assert model_kwargs(str(tree / "export")) == {"model_dir": tree / "export" / "inference"}
    kw = model_kwargs(str(tree / "file.pt"))
    assert kw["model_name"] == "MobileFaceNet" and kw["weights"].format == "facefeat"
    kw = model_kwargs("SFace")
    assert kw["model_name"] == "SFace" and kw["weights"].kind == "zoo"
    assert model_kwargs(str(tree / "w.pdparams"), "MobileFaceNet")["model_name"] == "MobileFaceNet"
