"""Every zoo model on every backend x precision this machine has, against torch fp32 on real
aligned LFW faces; ``auto`` resolution; device errors; model-cache integrity; the OpenVINO cache.

MobileFaceNet / ResNet50_face use the PaddleX peers' random-weight ``.pdparams`` (official weights
are offline). Quantising a random-weight net to int8 loses more than quantising a trained one
(its activations are not the well-behaved distributions training produces), so int8 is held to the
issue's 0.99 on trained weights (SFace) and to :data:`INT8_COS_RANDOM` on random ones.
"""

from __future__ import annotations

import logging
import re
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from facefeat import create_model, list_models
from facefeat.errors import DependencyError, DeviceError, InputError, WeightsError
from facefeat.registry import get_spec
from facefeat.runtime import cpu as cpu_mod
from facefeat.runtime import runners
from facefeat.runtime.devices import DeviceSpec, parse_device
from facefeat.runtime.runners import openvino_available, resolve_runtime
from conftest import zoo_params

N_FACES = 24
CALIB_FACES = 24
COS_FP32 = 0.9999
COS_LOW = 0.99
INT8_COS_RANDOM = 0.90
PADDLE_TOL = 1e-4


def _combos() -> list:
    """Backend/precision cases; int8 ones (an NNCF calibration each) run in the slow lane."""
    int8 = pytest.mark.slow
    out = [("onnxruntime", "fp32"), pytest.param("onnxruntime", "int8", marks=int8, id="onnxruntime-int8")]
    if openvino_available():
        out += [("openvino", "fp32"), pytest.param("openvino", "int8", marks=int8, id="openvino-int8")]
        if cpu_mod.has_bf16():
            out.append(("openvino", "bf16"))
    return out


@pytest.fixture(scope="module")
def faces(lfw_dir) -> list[np.ndarray]:
    """N_FACES + CALIB_FACES aligned 112x112 BGR faces: the first image of each person, in order."""
    import cv2

    from facefeat.vision.align import align_face
    from facefeat.vision.detector import YuNetDetector, central_face

    det, out = YuNetDetector(), []
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir()):
        img = cv2.imread(str(sorted(person.glob("*.jpg"))[0]))
        d = central_face(det.detect(img), img.shape[1], img.shape[0])
        if d is not None:
            out.append(align_face(img, d.landmarks))
        if len(out) == N_FACES + CALIB_FACES:
            return out
    raise AssertionError(f"too few LFW faces under {lfw_dir}")


def _weights(name: str) -> str | None:
    if get_spec(name).weights.kind == "package":
        return None  # ships offline
    from conftest import need_shared

    return str(need_shared("peers", "paddlex", name, "model.pdparams"))  # skips (or fails under CI) if absent


@lru_cache(maxsize=None)
def _int8_dir(name: str, calib: str, out: str) -> str:
    from facefeat.engine.quantize import quantize_model

    quantize_model(name, _weights(name), calib=calib, out_dir=out)
    return out


@pytest.fixture(scope="module")
def calib_dir(faces, tmp_path_factory) -> str:
    import cv2

    d = tmp_path_factory.mktemp("calib")
    for i, f in enumerate(faces[N_FACES:]):
        cv2.imwrite(str(d / f"{i:02d}.png"), f)
    return str(d)


@pytest.fixture(scope="module")
def torch_ref():
    pytest.importorskip("torch")
    cache: dict[str, np.ndarray] = {}

    def ref(name: str, imgs: list[np.ndarray]) -> np.ndarray:
        if name not in cache:
            cache[name] = create_model(name, _weights(name), backend="torch", batch_size=8).embed(imgs)
        return cache[name]

    return ref


@pytest.mark.parametrize("backend,precision", _combos())
@pytest.mark.parametrize("name", zoo_params([m for m in list_models() if get_spec(m).arch]))  # torch reference needed
def test_backend_matches_torch_fp32(name, backend, precision, faces, torch_ref, calib_dir, tmp_path_factory):
    test = faces[:N_FACES]
    ref = torch_ref(name, test)
    if precision == "int8":
        pytest.importorskip("nncf")
        root = tmp_path_factory.getbasetemp() / "int8"
        model = create_model(model_dir=_int8_dir(name, calib_dir, str(root / name)), backend=backend, batch_size=8)
    else:
        model = create_model(name, _weights(name), backend=backend, precision=precision, batch_size=8)
    assert (model.backend, model.precision) == (backend, precision)
    info = model.runtime_info()
    assert info["backend"] == backend and info["precision"] == precision and info["model_name"] == name
    got = model.embed(test)
    cos = np.sum(got.astype(np.float64) * ref, axis=1)
    bound = COS_FP32 if precision == "fp32" else COS_LOW
    if precision == "int8" and get_spec(name).weights.kind != "package":
        bound = INT8_COS_RANDOM
    print(f"{name} {backend} {precision}: cos min {cos.min():.6f}")
    assert cos.min() >= bound, f"{name} {backend}/{precision}: min cosine to torch fp32 {cos.min():.6f} < {bound}"
    if precision == "fp32" and get_spec(name).weights.format == "pdparams":  # PaddleX's reference output
        ref_io = np.load(Path(_weights(name)).parent / "reference_io.npz")
        err = float(np.abs(model.runner(ref_io["x"]) - ref_io["y"]).max())
        assert err <= PADDLE_TOL, f"{name} {backend}: max abs error vs Paddle {err:.3g}"


# -- auto, devices -----------------------------------------------------------------------------------------
def test_auto_resolution(monkeypatch):
    monkeypatch.setattr(runners, "openvino_available", lambda: True)
    monkeypatch.setattr(runners, "is_x86", lambda: True)
    monkeypatch.setattr(runners, "has_bf16", lambda: True)
    assert resolve_runtime()[:2] == ("openvino", "bf16")
    assert resolve_runtime(precision="fp32")[:2] == ("openvino", "fp32")
    assert resolve_runtime(device="gpu")[:2] == ("onnxruntime", "fp32")
    assert resolve_runtime(device="cuda:1")[2] == DeviceSpec("gpu", (1,))
    assert resolve_runtime(model_precision="int8")[:2] == ("openvino", "int8")
    monkeypatch.setattr(runners, "has_bf16", lambda: False)  # x86 without bf16 instructions
    assert resolve_runtime()[:2] == ("openvino", "fp32")
    with pytest.raises(InputError, match="AMX-BF16 or AVX512-BF16"):
        resolve_runtime(precision="bf16")
    monkeypatch.setattr(runners, "is_x86", lambda: False)  # e.g. ARM: the portable path
    assert resolve_runtime()[:2] == ("onnxruntime", "fp32")
    monkeypatch.setattr(runners, "openvino_available", lambda: False)
    assert resolve_runtime(model_precision="int8")[:2] == ("onnxruntime", "int8")
    with pytest.raises(DependencyError, match="pip install openvino"):
        resolve_runtime(backend="openvino")


def test_bad_backend_precision_combinations():
    with pytest.raises(InputError, match="backend must be one of"):
        resolve_runtime(backend="tensorflow")
    with pytest.raises(InputError, match="precision must be one of"):
        resolve_runtime(precision="fp8")
    with pytest.raises(InputError, match="facefeat quantize"):
        resolve_runtime(precision="int8")
    with pytest.raises(InputError, match="int8"):
        resolve_runtime(precision="fp32", model_precision="int8")
    with pytest.raises(InputError, match="openvino"):
        resolve_runtime(backend="onnxruntime", precision="bf16")
    with pytest.raises(InputError, match="fp32 only"):
        resolve_runtime(backend="torch", precision="bf16")


def test_device_strings():
    assert parse_device("cpu") == DeviceSpec("cpu") and parse_device(None) == DeviceSpec("cpu")
    assert parse_device("gpu") == parse_device("cuda") == parse_device("GPU:0") == DeviceSpec("gpu", (0,))
    assert parse_device("cuda:3").index == 3 and str(parse_device("gpu:2")) == "gpu:2"
    for bad in ("tpu", "gpu:x", "cuda:-1", "gpu:0,0", "", "npu:0"):
        with pytest.raises(DeviceError) as err:
            parse_device(bad)
        assert repr(bad) in str(err.value) or "ids" in str(err.value)
    with pytest.raises(DeviceError, match="one device"):
        resolve_runtime(device="gpu:0,1")


def test_gpu_never_falls_back_to_cpu():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has ONNX Runtime's CUDA provider; the error path is for machines without")
    with pytest.raises(DependencyError, match="onnxruntime-gpu"):
        create_model("SFace", device="gpu")
    with pytest.raises(DependencyError, match="CUDA"):
        create_model("SFace", backend="onnxruntime", device="cuda:0")
    if openvino_available():
        with pytest.raises(DeviceError, match="onnxruntime"):
            create_model("SFace", backend="openvino", device="gpu:0")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(DependencyError, match="CUDA"):
            create_model("SFace", backend="torch", device="gpu")


# -- model cache integrity, OpenVINO compiled-model cache -------------------------------------------------
def test_corrupted_cache_is_rebuilt(faces, caplog):
    model = create_model("SFace", backend="onnxruntime")
    onnx_path = model.model_dir / "inference.onnx"
    good = onnx_path.read_bytes()
    ref = model.embed(faces[:4])
    for damage in ("truncate", "flip"):
        data = bytearray(good)
        if damage == "truncate":
            data = data[: len(data) // 3]
        else:
            data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)  # same size, zeroed weights
        onnx_path.write_bytes(bytes(data))
        with caplog.at_level(logging.WARNING, logger="facefeat"):
            again = create_model("SFace", backend="onnxruntime")
        assert str(model.model_dir) in caplog.text and "rebuilding" in caplog.text
        assert onnx_path.read_bytes() == good
        assert np.abs(again.embed(faces[:4]) - ref).max() < 1e-5
        caplog.clear()


def test_corrupted_model_dir_is_reported(tmp_path):
    src = create_model("SFace", backend="onnxruntime").model_dir
    mdir = tmp_path / "exported"
    shutil.copytree(src, mdir)
    onnx_path = mdir / "inference.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:1000])
    with pytest.raises(WeightsError) as err:
        create_model(model_dir=mdir)
    assert str(onnx_path) in str(err.value) and "corrupted or truncated" in str(err.value)
    # without a recorded checksum, the runtime's failure is still a WeightsError naming the file
    meta = mdir / "inference.yml"
    meta.write_text("\n".join(ln for ln in meta.read_text().splitlines() if "onnx_sha256" not in ln) + "\n")
    for backend in ["onnxruntime"] + (["openvino"] if openvino_available() else []):
        with pytest.raises(WeightsError, match=re.escape(str(onnx_path))):
            create_model(model_dir=mdir, backend=backend)


@pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed")
def test_openvino_compiled_model_cache(faces):
    from facefeat.utils import cache_dir

    model = create_model("SFace", backend="openvino", precision="fp32")
    key = model.meta.onnx_sha256[:16]
    blobs = list((cache_dir() / "openvino" / key).glob("*.blob"))
    assert blobs, f"no compiled blob under {cache_dir() / 'openvino' / key}"
    again = create_model("SFace", backend="openvino", precision="fp32")  # loads the blob
    assert np.abs(again.embed(faces[:2]) - model.embed(faces[:2])).max() < 1e-6


@pytest.mark.slow  # runs NNCF quantisation in a subprocess
def test_cli_info_and_quantize_errors(tmp_path):
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "facefeat", "info", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["resolved"]["backend"] in ("openvino", "onnxruntime") and "cpu_features" in doc
    r = subprocess.run([sys.executable, "-m", "facefeat", "quantize", "--model", "SFace", "--calib",
                        str(tmp_path / "nowhere"), "--out", str(tmp_path / "q")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "nowhere" in r.stderr and "not a directory" in r.stderr
