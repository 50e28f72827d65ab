"""Issue #20 item 4: the OpenVINO compiled-model cache is verified - a checksum sidecar written
after compiling, a reference feature for a fixed input checked at every load (recompiling once
when it differs) - and degenerate features (all zero, constant) are an error like NaN."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from facefeat.errors import WeightsError
from facefeat.runtime.compiled_cache import SIDECAR, degenerate_reason, probe_input, verified_compile

pytest.importorskip("openvino")


def test_degenerate_features_are_named():
    good = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    assert degenerate_reason(good) is None
    for bad, word in [(np.zeros((2, 8)), "all-zero"), (np.full((1, 8), 0.25), "constant"),
                      (np.array([[1.0, np.nan]]), "NaN")]:
        assert word in degenerate_reason(np.vstack([good[:1], bad]) if bad.shape[1] == 8 else bad)


def test_the_predictor_refuses_degenerate_features():
    from facefeat import create_model

    m = create_model("SFace", backend="onnxruntime")
    m.runner = lambda batch: np.zeros((len(batch), 128), np.float32)
    with pytest.raises(WeightsError, match="all-zero features"):
        m.embed([np.zeros((112, 112, 3), np.uint8)])


@pytest.fixture()
def onnx_path():
    from facefeat import create_model

    m = create_model("SFace", backend="onnxruntime")
    return m.runner.path if hasattr(m.runner, "path") else None


def _runner(path):
    from facefeat.runtime.openvino_runner import OpenVINORunner

    return OpenVINORunner(path, precision="fp32", num_threads=1)


def _folder(path):
    from facefeat.runtime.model_dir import onnx_sha256
    from facefeat.runtime.openvino_runner import openvino_cache_dir

    return openvino_cache_dir(onnx_sha256(path)[:16])


def _blob(folder):
    blobs = [p for p in folder.iterdir() if p.is_file() and p.name != SIDECAR and not p.name.startswith(".")]
    return max(blobs, key=lambda p: p.stat().st_size)


def _features(r):
    return r(probe_input((1, 3, 112, 112)))


@pytest.mark.parametrize("damage", ["flip-256-bytes", "truncate", "flip-and-update-checksums"])
def test_a_damaged_cache_is_detected_and_recompiled(onnx_path, damage, caplog):
    if onnx_path is None:
        pytest.skip("this ONNX Runtime runner does not expose its file")
    ref = _features(_runner(onnx_path))
    folder = _folder(onnx_path)
    side = json.loads((folder / SIDECAR).read_text())
    assert side["files"] and len(side["reference"]) == ref.size
    blob = _blob(folder)
    data = bytearray(blob.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        mid = len(data) // 2
        data[mid:mid + 256] = np.random.default_rng(1).integers(0, 256, 256, dtype=np.uint8).tobytes()
    blob.write_bytes(bytes(data))
    if damage == "flip-and-update-checksums":  # damage the checksum cannot see: the reference check must
        from facefeat.io.files import file_sha256

        side["files"][blob.name] = file_sha256(blob)
        (folder / SIDECAR).write_text(json.dumps(side))
    with caplog.at_level(logging.WARNING, logger="facefeat"):
        again = _features(_runner(onnx_path))
    assert degenerate_reason(again) is None
    cos = float(np.ravel(again) @ np.ravel(ref) / (np.linalg.norm(again) * np.linalg.norm(ref)))
    assert cos > 0.999
    if damage != "flip-and-update-checksums":  # the checksums catch it before OpenVINO reads the blob
        assert "do not match their recorded checksums" in caplog.text
    # (flipped bytes the checksum cannot see are caught by the reference check, or were harmless)


def test_a_fresh_compile_with_degenerate_features_is_an_error(tmp_path):
    calls = []

    def compile_fn():
        calls.append(1)
        return object()

    with pytest.raises(WeightsError, match="all-zero features"):
        verified_compile(tmp_path / "cache", compile_fn, lambda c: np.zeros((1, 16), np.float32), "m.onnx")
    assert calls == [1]
    assert not (tmp_path / "cache" / SIDECAR).exists()


def test_a_cached_model_that_disagrees_with_its_reference_is_compiled_once_more(tmp_path):
    folder = tmp_path / "cache"
    good = np.arange(1, 17, dtype=np.float32)[None]
    outputs = iter([good, -good, good])  # fresh compile, then a bad cached load, then the recompile
    compiles = []

    def compile_fn():
        compiles.append(1)
        return "compiled"

    verified_compile(folder, compile_fn, lambda c: next(outputs), "m.onnx")
    assert verified_compile(folder, compile_fn, lambda c: next(outputs), "m.onnx") == "compiled"
    assert len(compiles) == 3 and next(outputs, None) is None
    (folder / "blob.bin").write_bytes(b"x")  # a file the sidecar does not list: the cache is wiped
    verified_compile(folder, compile_fn, lambda c: good, "m.onnx")
    assert not (folder / "blob.bin").exists()
