"""Inference must work where torch is not installed: a venv whose site-packages lack torch."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TORCH_DISTS = ("torch", "functorch", "torchgen", "nvidia", "triton", "onnxscript")


def _torch_free_venv(root: Path) -> Path:
    """A venv seeing every installed package except torch (symlinks to the real site-packages)."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    py = root / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    real = Path(sysconfig.get_paths()["purelib"])
    for entry in real.iterdir():
        name = entry.name.lower()
        if name.startswith(TORCH_DISTS) or name.endswith(".pth") or name.startswith("__editable__"):
            continue
        (site / entry.name).symlink_to(entry)
    (site / "facefeat-src.pth").write_text(str(REPO) + "\n")
    return py


def test_sface_predicts_without_torch(tmp_path, lfw_dir):
    py = _torch_free_venv(tmp_path / "venv")
    img = sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[0]
    code = f"""
import sys
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("torch is importable in the torch-free venv")
import importlib.util
from facefeat import create_model
backends = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
for backend in ["auto"] + backends:
    model = create_model("SFace", backend=backend)
    res = next(model.predict({str(img)!r}))
    assert len(res["feature"]) == 128
    assert backend == "auto" or model.backend == backend
assert "torch" not in sys.modules, "facefeat imported torch"
print("ok", sum(v * v for v in res["feature"]), backends)
"""
    env = dict(os.environ, FACEFEAT_HOME=str(tmp_path / "cache"))
    env.pop("PYTHONPATH", None)
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok")
