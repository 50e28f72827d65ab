"""Runtime: the CPU graph rewrite keeps outputs identical; model directories validate."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from facefeat import create_model, list_models
from facefeat.errors import InputError
from facefeat.registry import get_spec
from facefeat.runtime import read_model_dir
from facefeat.runtime.graph_opt import optimized_model_bytes, rewrite_prelu
from conftest import zoo_params


def _session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", zoo_params(list_models()))
def test_prelu_rewrite_is_exact_and_removes_prelu(name):
    spec = get_spec(name)
    offline = spec.weights.kind == "package"  # the zoo's own weights ship in a package (SFace)
    path = create_model(name).runner.path if offline else None
    if path is not None and path.suffix != ".onnx":
        pytest.skip(f"{name} runs as OpenVINO IR ({path.name}): no ONNX graph to rewrite")
    if path is None:  # a random-init export: no weights needed
        pytest.importorskip("torch")
        from facefeat.runtime.model_dir import ModelMeta
        from facefeat.runtime.torch_build import build_torch_model, export_onnx
        from facefeat.utils import cache_dir

        out = export_onnx(build_torch_model(spec), ModelMeta.from_spec(spec), cache_dir() / f"test-{name}-random")
        path = out / "inference.onnx"
    model = onnx.load(str(path))
    n_prelu = sum(n.op_type == "PRelu" for n in model.graph.node)
    assert rewrite_prelu(model) == n_prelu  # SFace, MobileFaceNet: > 20; a no-op on graphs without PReLU
    assert not [n for n in model.graph.node if n.op_type == "PRelu"]
    onnx.checker.check_model(model)
    h, w = spec.input_size
    pixels = spec.preprocess.normalize_in_graph  # 0..255 in, else normalised -1..1
    x = np.random.RandomState(0).rand(3, 3, h, w).astype(np.float32) * (255 if pixels else 2) - (0 if pixels else 1)
    optimized = optimized_model_bytes(path)
    assert (optimized is None) == (n_prelu == 0)  # None: nothing to rewrite, the model runs as it is
    ref, new = _session(str(path)), _session(optimized if optimized is not None else str(path))
    inp = ref.get_inputs()[0].name
    a, b = ref.run(None, {inp: x})[0], new.run(None, {inp: x})[0]
    assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(a).max())


def test_model_dir_errors_name_the_directory(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        read_model_dir(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    with pytest.raises(InputError, match="no inference.onnx"):
        read_model_dir(tmp_path / "m")
    (tmp_path / "m" / "inference.onnx").write_bytes(b"x")
    (tmp_path / "m" / "inference.yml").write_text("Global: {}\n")
    with pytest.raises(InputError, match="not a valid facefeat inference.yml"):
        read_model_dir(tmp_path / "m")
