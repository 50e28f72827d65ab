"""The torch ports of PaddleClas' MobileFaceNet / ResNet50_face and the safe .pdparams importer.

Reference outputs come from Paddle itself (../shared/peers/paddlex/<Model>/reference_io.npz).
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facefeat.errors import WeightsError  # noqa: E402
from facefeat.models.mobilefacenet import MobileFaceNet  # noqa: E402
from facefeat.models.resnet_face import ResNet50Face  # noqa: E402
from facefeat.registry import get_spec, list_models  # noqa: E402
from facefeat.weights import load_into, resolve  # noqa: E402
from facefeat.weights.paddle import load_pdparams, paddle_to_torch_state_dict  # noqa: E402

MODELS = {
    "MobileFaceNet": (MobileFaceNet, 128),
    "ResNet50_face": (ResNet50Face, 512),
}
TOL = 1e-4


def _spec_of(model):
    """The zoo spec whose architecture ``model`` is."""
    return next(get_spec(n) for n in list_models() if get_spec(n).arch.endswith(":" + type(model).__name__))


def load_paddle_weights(model, path):
    """``path`` into ``model`` through the one loader table (the .pdparams reader)."""
    load_into(model, _spec_of(model), resolve(path))
    return model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_matches_paddle_reference(paddle_peers: Path, name: str) -> None:
    cls, dim = MODELS[name]
    model = load_paddle_weights(cls(), paddle_peers / name / "model.pdparams")
    assert not model.training
    ref = np.load(paddle_peers / name / "reference_io.npz")
    with torch.no_grad():
        y = model(torch.from_numpy(ref["x"])).numpy()
    assert y.shape == ref["y"].shape == (2, dim)
    err = float(np.abs(y - ref["y"]).max())
    print(f"{name}: max abs error vs Paddle = {err:.3g} (|y| max {np.abs(ref['y']).max():.3g})")
    assert err <= TOL, f"{name}: max abs error {err:.3g} > {TOL}"


def test_load_pdparams_drops_bookkeeping(paddle_peers: Path) -> None:
    params = load_pdparams(paddle_peers / "MobileFaceNet" / "model.pdparams")
    assert "StructuredToParameterName@@" not in params
    assert all(isinstance(v, np.ndarray) for v in params.values())
    assert params["backbone.conv1.conv.weight"].shape == (64, 3, 3, 3)
    assert params["head.weight"].shape[0] == 128


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo hi > pwned.txt",))


def test_refuses_pickled_code(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "model.pdparams"
    bad.write_bytes(pickle.dumps({"backbone.x": np.zeros(2, np.float32), "evil": _Evil()}))
    with pytest.raises(WeightsError) as info:
        load_pdparams(bad)
    msg = str(info.value)
    assert "model.pdparams" in msg and "system" in msg and "refusing" in msg
    assert not (tmp_path / "pwned.txt").exists()


def test_missing_file_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.pdparams"
    with pytest.raises(WeightsError, match="nowhere"):
        load_pdparams(missing)
    with pytest.raises(WeightsError, match="nowhere"):
        load_paddle_weights(MobileFaceNet(), missing)


def test_not_a_pickle_or_not_a_dict(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pdparams"
    junk.write_bytes(b"this is not a pickle")
    with pytest.raises(WeightsError, match="junk.pdparams"):
        load_pdparams(junk)
    lst = tmp_path / "list.pdparams"
    lst.write_bytes(pickle.dumps([np.zeros(2, np.float32)]))
    with pytest.raises(WeightsError, match="list.pdparams"):
        load_pdparams(lst)


def test_mismatched_state_dict(paddle_peers: Path) -> None:
    path = paddle_peers / "MobileFaceNet" / "model.pdparams"
    with pytest.raises(WeightsError, match="missing") as info:
        load_paddle_weights(ResNet50Face(), path)
    assert "unexpected" in str(info.value)

    params = load_pdparams(path)
    params["backbone.linear1.conv.weight"] = np.zeros((64, 512, 1, 1), np.float32)
    with pytest.raises(WeightsError, match="linear1.conv.weight"):
        paddle_to_torch_state_dict(params, MobileFaceNet())


def test_linear_weight_is_transposed(paddle_peers: Path) -> None:
    params = load_pdparams(paddle_peers / "ResNet50_face" / "model.pdparams")
    state = paddle_to_torch_state_dict(params, ResNet50Face())
    assert tuple(state["fc.weight"].shape) == (512, 2048)
    np.testing.assert_array_equal(state["fc.weight"].numpy(), params["backbone.fc.weight"].T)
    assert "stem.0.bn.running_var" in state


def test_onnx_export_dynamic_batch(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = MobileFaceNet().eval()
    out = tmp_path / "mobilefacenet.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 3, 112, 112),),
            str(out),
            input_names=["input"],
            output_names=["embedding"],
            opset_version=18,
            dynamo=True,
            verbose=False,
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}},
        )
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, 112, 112)
        with torch.no_grad():
            want = model(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        assert got.shape == (batch, 128)
        assert float(np.abs(got - want).max()) <= TOL


def test_numpy1_era_pickle(tmp_path: Path) -> None:
    """Files written under numpy 1.x name numpy.core.multiarray; both spellings load."""
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = pickle.dumps({"backbone.w": arr, "StructuredToParameterName@@": {"w": "w_0"}}, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    path = tmp_path / "old.pdparams"
    path.write_bytes(raw)
    params = load_pdparams(path)
    assert list(params) == ["backbone.w"]
    np.testing.assert_array_equal(params["backbone.w"], arr)
