"""Every zoo model, from the registry: a new model is tested by registering it (timm's matrix).

Spec against module (input size, embedding size, output shape), the preprocessing round trip
(spec -> inference.yml -> predictor), and export -> runtime parity (random weights: no download).
"""

from __future__ import annotations

import numpy as np
import pytest

from facefeat.registry import get_spec, list_models
from conftest import zoo_params

torch = pytest.importorskip("torch")

MODELS = [m for m in list_models() if get_spec(m).arch]  # the zoo models with a PyTorch definition


@pytest.fixture(scope="module", params=zoo_params(MODELS))
def built(request):
    from facefeat.runtime.torch_build import build_torch_model

    spec = get_spec(request.param)
    torch.manual_seed(0)
    model = build_torch_model(spec)
    # non-trivial BN statistics, so that export parity is not checked on an identity-like net
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return spec, model.eval()


def _images(spec, n: int, seed: int = 0) -> list[np.ndarray]:
    h, w = spec.input_size
    return list(np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8))


def test_registry_is_consistent():
    assert MODELS == sorted(MODELS) and len(MODELS) >= 3
    for name in MODELS:
        spec = get_spec(name)
        assert get_spec(name.lower()) is spec
        assert spec.embedding_size > 0 and len(spec.input_size) == 2
        assert spec.channel_order in ("RGB", "BGR") and len(spec.mean) == len(spec.std) == 3
        assert spec.license and spec.weights.format and spec.weights.license
        assert {"epochs_iters", "batch_size", "learning_rate"} <= set(spec.train_defaults)


def test_spec_matches_module(built):
    spec, model = built
    assert getattr(model, "embedding_size", spec.embedding_size) == spec.embedding_size
    if hasattr(model, "input_size"):
        assert tuple(model.input_size) == tuple(spec.input_size)
    h, w = spec.input_size
    with torch.inference_mode():
        out = model(torch.zeros(3, 3, h, w))
    assert tuple(out.shape) == (3, spec.embedding_size) and out.dtype == torch.float32


def test_preprocessing_round_trip(built, tmp_path):
    """spec -> predictor preprocessing -> back to the BGR pixels; spec -> inference.yml -> same."""
    from facefeat.predict.predictor import preprocess_images
    from facefeat.runtime.model_dir import ModelMeta, read_model_dir, write_model_meta

    spec, _ = built
    imgs = _images(spec, 2)
    x = preprocess_images(spec, imgs)
    h, w = spec.input_size
    assert x.shape == (2, 3, h, w) and x.dtype == np.float32
    back = x.transpose(0, 2, 3, 1) * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)
    if spec.channel_order == "RGB":
        back = back[..., ::-1]
    np.testing.assert_allclose(back, np.stack(imgs), atol=1e-3)
    (tmp_path / "inference.onnx").write_bytes(b"")
    write_model_meta(tmp_path, ModelMeta.from_spec(spec))
    meta = read_model_dir(tmp_path)[1]
    assert meta.model_name == spec.name and meta.embedding_size == spec.embedding_size
    np.testing.assert_array_equal(preprocess_images(meta, imgs), x)


def test_export_runtime_parity(built, tmp_path):
    from facefeat import create_model
    from facefeat.predict.predictor import preprocess_images
    from facefeat.runtime.model_dir import ModelMeta
    from facefeat.runtime.torch_build import export_onnx

    spec, model = built
    export_onnx(model, ModelMeta.from_spec(spec), tmp_path / "inference")
    pred = create_model(model_dir=tmp_path / "inference", batch_size=3, precision="fp32")  # parity: fp32, not the bf16 auto
    assert pred.model_name == spec.name and pred.embedding_size == spec.embedding_size
    imgs = _images(spec, 5, seed=1)
    with torch.inference_mode():
        ref = model(torch.from_numpy(preprocess_images(spec, imgs))).numpy()
    got = pred.raw_features(imgs)
    assert got.shape == ref.shape == (5, spec.embedding_size)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    feats = pred.embed(imgs)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
