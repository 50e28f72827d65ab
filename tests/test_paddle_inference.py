"""PaddleX exported inference models (inference.json + .pdiparams + .yml) loaded without Paddle.

The reference folder ../shared/peers/paddlex/MobileFaceNet/inference/ was written by
``paddle.jit.save``; Paddle's own output for ``reference_io.npz``'s ``x`` is its ``y``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facefeat import create_model  # noqa: E402
from facefeat.errors import InputError, WeightsError  # noqa: E402
from facefeat.models.mobilefacenet import MobileFaceNet  # noqa: E402
from facefeat.models.resnet_face import ResNet50Face  # noqa: E402
from facefeat.registry import get_spec, list_models  # noqa: E402
from facefeat.weights import load_into, resolve  # noqa: E402
from facefeat.weights.paddle_inference import is_paddle_inference_dir, read_paddle_inference  # noqa: E402

TOL = 1e-4


def _spec_of(model):
    """The zoo spec whose architecture ``model`` is."""
    return next(get_spec(n) for n in list_models() if get_spec(n).arch.endswith(":" + type(model).__name__))


def load_paddle_inference(model, path):
    """A PaddleX inference dir into ``model`` through the one loader table."""
    load_into(model, _spec_of(model), resolve(path))
    return model


@pytest.fixture(scope="module")
def inference_dir(paddle_peers: Path) -> Path:
    return paddle_peers / "MobileFaceNet" / "inference"


@pytest.fixture(scope="module")
def reference(paddle_peers: Path):
    return np.load(paddle_peers / "MobileFaceNet" / "reference_io.npz")


@pytest.fixture()
def copy_dir(inference_dir: Path, tmp_path: Path) -> Path:
    d = tmp_path / "inference"
    shutil.copytree(inference_dir, d)
    d.chmod(0o755)  # ../shared is read-only; copytree copies its modes
    for p in d.iterdir():
        p.chmod(0o644)
    return d


def test_read_without_paddle(inference_dir: Path) -> None:
    assert is_paddle_inference_dir(inference_dir)
    assert is_paddle_inference_dir(inference_dir / "inference.pdiparams")
    assert not is_paddle_inference_dir(inference_dir.parent)
    inf = read_paddle_inference(inference_dir)
    assert inf.model_name == "MobileFaceNet"
    assert len(inf.params) == 283 and inf.input_shape == [-1, 3, 112, 112]
    assert all(a.dtype == np.float32 for a in inf.params.values())


def test_torch_port_matches_paddle(inference_dir: Path, reference) -> None:
    model = load_paddle_inference(MobileFaceNet(), inference_dir)
    with torch.no_grad():
        y = model(torch.from_numpy(reference["x"])).numpy()
    err = float(np.abs(y - reference["y"]).max())
    assert err <= TOL, f"max abs error {err:.3g} > {TOL}"


@pytest.mark.parametrize("how", ["model_dir", "weights"])
def test_create_model_runtime_matches_paddle(inference_dir: Path, reference, how: str) -> None:
    """create_model("MobileFaceNet", model_dir=...) converts once to the ONNX runtime; raw output == Paddle's."""
    kw = {how: str(inference_dir)}
    model = create_model("MobileFaceNet", precision="fp32", **kw)  # parity is an fp32 check
    assert model.model_name == "MobileFaceNet" and model.embedding_size == 128
    y = model.runner(reference["x"])
    err = float(np.abs(y - reference["y"]).max())
    assert err <= TOL, f"max abs error {err:.3g} > {TOL}"
    # the model name comes from inference.yml when not given; features are unit vectors
    feats = create_model(model_dir=inference_dir).embed([np.full((112, 112, 3), 128, np.uint8)])
    assert feats.shape == (1, 128) and abs(float(np.linalg.norm(feats[0])) - 1) < 1e-5


def test_wrong_model_name_refused(inference_dir: Path) -> None:
    with pytest.raises(InputError, match="holds MobileFaceNet, not ResNet50_face"):
        create_model("ResNet50_face", model_dir=inference_dir)


def test_other_architecture_refused(inference_dir: Path) -> None:
    with pytest.raises(WeightsError, match=r"inference.*ResNet50Face"):
        load_paddle_inference(ResNet50Face(), inference_dir)


def test_truncated_params_named(copy_dir: Path) -> None:
    p = copy_dir / "inference.pdiparams"
    p.write_bytes(p.read_bytes()[:-1000])
    with pytest.raises(WeightsError, match=r"inference\.pdiparams.*(early|truncated)"):
        read_paddle_inference(copy_dir)


def test_params_file_that_is_not_one(copy_dir: Path) -> None:
    import pickle

    (copy_dir / "inference.pdiparams").write_bytes(pickle.dumps({"a": np.zeros(3)}))
    with pytest.raises(WeightsError, match=r"inference\.pdiparams"):
        read_paddle_inference(copy_dir)


def test_program_that_is_not_one(copy_dir: Path) -> None:
    (copy_dir / "inference.json").write_text("exec('import os')  # not JSON")
    with pytest.raises(WeightsError, match=r"inference\.json.*not a PaddlePaddle PIR program"):
        read_paddle_inference(copy_dir)
    (copy_dir / "inference.json").write_text(json.dumps({"program": {}}))
    with pytest.raises(WeightsError, match=r"inference\.json.*magic"):
        read_paddle_inference(copy_dir)


def test_program_and_params_disagree(copy_dir: Path) -> None:
    doc = json.loads((copy_dir / "inference.json").read_text())
    for op in doc["program"]["regions"][0]["blocks"][0]["ops"]:
        if op["#"] == "p" and op["A"][3] == "batch_norm2d_0.w_1":
            op["O"]["TT"]["D"][1] = [65]
    (copy_dir / "inference.json").write_text(json.dumps(doc))
    with pytest.raises(WeightsError, match=r"batch_norm2d_0\.w_1.*do not belong together"):
        read_paddle_inference(copy_dir)


def test_bad_yml_named(copy_dir: Path) -> None:
    (copy_dir / "inference.yml").write_text("Global: [unclosed")
    with pytest.raises(WeightsError, match=r"inference\.yml"):
        create_model(model_dir=copy_dir)


def test_resnet50_face_inference_model_if_made() -> None:
    """ResNet50_face's inference model (95 MB) is not stored in ../shared; make_models.py writes one."""
    import os

    root = Path(os.environ.get("PDX_MODELS", "/tmp/pdx-models")) / "ResNet50_face"
    if not is_paddle_inference_dir(root / "inference") or not (root / "reference_io.npz").is_file():
        pytest.skip(f"no ResNet50_face inference model under {root}; make one with "
                    "../shared/peers/paddlex/setup.sh and make_models.py (PDX_MODELS sets the folder)")
    ref = np.load(root / "reference_io.npz")
    model = load_paddle_inference(ResNet50Face(), root / "inference")  # Linear: matmul + add
    with torch.no_grad():
        y = model(torch.from_numpy(ref["x"])).numpy()
    assert float(np.abs(y - ref["y"]).max()) <= TOL
