"""OpenVINO leaves the thread's signal stack as it found it (facefeat.runtime.sigstack)."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

from facefeat import create_model
from facefeat.runtime import sigstack


@pytest.mark.slow  # compiles several OpenVINO models
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack is read through libc on Linux")
def test_openvino_runners_keep_the_signal_stack():
    before = sigstack.current()
    assert before is not None
    for precision in ("fp32", "bf16", "fp32"):  # compile, infer and drop several models, out of order
        a = create_model("SFace", backend="openvino", precision=precision)
        b = create_model("SFace", backend="openvino", precision="fp32")
        a.embed([np.full((112, 112, 3), 100, np.uint8)])
        b.embed([np.full((112, 112, 3), 50, np.uint8)])
        del a
        gc.collect()
        assert sigstack.current() == before
        del b
        gc.collect()
        assert sigstack.current() == before
