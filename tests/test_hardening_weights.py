"""Issue #20 item 14: the restricted .pdparams loader accepts protocol-5 pickles of plain numpy
arrays (and still refuses anything else); PaddleX inference programs whose dimensions overflow
are a WeightsError, never a raw ValueError/OverflowError."""

from __future__ import annotations

import collections
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from facefeat.errors import WeightsError
from facefeat.weights.paddle import load_pdparams


def _dump(tmp_path: Path, obj, protocol: int) -> Path:
    p = tmp_path / f"w{protocol}.pdparams"
    p.write_bytes(pickle.dumps(obj, protocol=protocol))
    return p


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_of_plain_arrays_loads(tmp_path, protocol):
    state = collections.OrderedDict(
        conv=np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        fortran=np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        half=np.ones(5, np.float16), empty=np.zeros((0, 3), np.float32))
    state["StructuredToParameterName@@"] = {"conv": "conv_0.w_0"}
    out = load_pdparams(_dump(tmp_path, state, protocol))
    assert set(out) == {"conv", "fortran", "half", "empty"}
    for k, v in out.items():
        assert v.dtype == state[k].dtype and np.array_equal(v, state[k])


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("obj", [{"a": Evil()}, {"a": np.array([Evil()], dtype=object)}],
                         ids=["os.system", "object-array"])
def test_protocol_5_still_refuses_anything_but_arrays(tmp_path, obj):
    with pytest.raises(WeightsError, match="refusing|object array|not a valid"):
        load_pdparams(_dump(tmp_path, obj, 5))


def test_out_of_band_buffers_are_refused(tmp_path):
    buffers = []
    data = pickle.dumps({"a": np.arange(4.0)}, protocol=5, buffer_callback=buffers.append)
    p = tmp_path / "oob.pdparams"
    p.write_bytes(data)
    with pytest.raises(WeightsError, match="oob.pdparams"):
        load_pdparams(p)


@pytest.mark.parametrize("shape", [[2 ** 70], [2 ** 32, 2 ** 32], [2 ** 62, 2 ** 62, 4]])
def test_inference_dims_that_overflow_are_a_weights_error(paddle_peers, tmp_path, shape):
    pytest.importorskip("yaml")
    from facefeat.weights.paddle_inference import read_paddle_inference

    d = tmp_path / "inference"
    shutil.copytree(paddle_peers / "MobileFaceNet" / "inference", d)
    d.chmod(0o755)
    for p in d.iterdir():
        p.chmod(0o644)
    doc = json.loads((d / "inference.json").read_text())
    for op in doc["program"]["regions"][0]["blocks"][0]["ops"]:
        if op["#"] == "p" and op["A"][3] == "batch_norm2d_0.w_1":
            op["O"]["TT"]["D"][1] = shape
    (d / "inference.json").write_text(json.dumps(doc))
    with pytest.raises(WeightsError, match="batch_norm2d_0.w_1"):
        read_paddle_inference(d)
