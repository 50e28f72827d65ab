"""The built wheel ships the configs (facefeat/configs/*.yaml) and an installed facefeat uses them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from facefeat.config import config_dir, default_config, load_config
from facefeat.registry import list_models

REPO = Path(__file__).resolve().parents[1]


def test_configs_live_in_the_package():
    assert config_dir() == REPO / "facefeat" / "configs"
    for name in list_models():
        assert (config_dir() / f"{name}.yaml").is_file(), name
        assert load_config(name) == default_config(name)  # a bare model name reads the packaged file
    # the repo-root path of the README's commands keeps working
    assert (REPO / "configs" / "MobileFaceNet.yaml").resolve() == (config_dir() / "MobileFaceNet.yaml").resolve()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel --no-deps`` of a clean copy of the tracked tree (nothing written into the repo)."""
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        p = REPO / rel
        if p.is_file() and not p.is_symlink():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(p.read_bytes())
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("facefeat-*.whl")
    return whl


def test_wheel_contains_and_uses_the_configs(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in list_models():
            assert f"facefeat/configs/{name}.yaml" in names, sorted(n for n in names if "config" in n)
        assert "facefeat/serving/static/index.html" in names
        z.extractall(tmp_path / "site")
    # the installed package reads its own file: change it there and see the change
    cfg_file = tmp_path / "site" / "facefeat" / "configs" / "SFace.yaml"
    cfg_file.write_text(cfg_file.read_text().replace("epochs_iters: 10", "epochs_iters: 3"))
    code = ("from facefeat.config import config_dir, load_config; "
            "print(config_dir()); print(load_config('SFace').Train.epochs_iters)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    env.pop("FACEFEAT_CONFIG_DIR", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    where, epochs = r.stdout.split()
    assert Path(where) == tmp_path / "site" / "facefeat" / "configs" and epochs == "3"
