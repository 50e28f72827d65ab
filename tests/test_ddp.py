"""Data-parallel training: 2 CPU processes (gloo) under torchrun, launched by facefeat itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefeat.engine.distributed import DeviceSpec, NPROC_ENV, free_port, parse_device, torchrun_command
from facefeat.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _tiny_dataset(root: Path, ids: int = 4, per_id: int = 4) -> Path:
    rng = np.random.default_rng(0)
    rows, vals = [], []
    for i in range(ids):
        base = cv2.resize(rng.integers(0, 256, (7, 7, 3)).astype(np.float32), (112, 112))
        for j in range(per_id):
            rel = f"images/{i}/{j}.jpg"
            img = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
            for split in ("train", "val"):
                (root / split / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / split / rel), img)
            rows.append(f"{rel} {i}\n")
        vals.append([f"images/{i}/{j}.jpg" for j in range(per_id)])
    (root / "train" / "label.txt").write_text("".join(rows))
    pairs = [f"{v[0]} {v[1]} 1\n" for v in vals] + [f"{vals[i][0]} {vals[(i + 1) % ids][2]} 0\n" for i in range(ids)]
    (root / "val" / "pair_label.txt").write_text("".join(pairs))
    return root


def test_parse_device_and_launch_command(monkeypatch):
    assert parse_device("cpu") == DeviceSpec("cpu")
    assert parse_device("gpu") == DeviceSpec("gpu", (0,))
    assert parse_device("gpu:0,1").ids == (0, 1) and parse_device("gpu:0,1").nproc == 2
    assert parse_device("gpu:3").nproc == 1
    monkeypatch.setenv(NPROC_ENV, "2")
    assert parse_device("cpu").nproc == 2
    for bad in ("tpu", "gpu:a", "gpu:0,0"):
        with pytest.raises(ConfigError):
            parse_device(bad)
    cmd = torchrun_command(2, ["-c", "x.yaml"], port=free_port())
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node=2" in cmd
    assert cmd[-4:] == ["-m", "facefeat", "-c", "x.yaml"]
    assert any(a.startswith("--master_addr=127.0.0.1") for a in cmd)


@pytest.mark.slow  # two torchrun processes (DDP)
def test_two_cpu_processes_train_in_lockstep(tmp_path):
    ds = _tiny_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    env = dict(os.environ, **{NPROC_ENV: "2", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    cmd = [sys.executable, "-m", "facefeat", "-c", str(REPO / "configs" / "MobileFaceNet.yaml"), "--quiet",
           "-o", "Global.mode=train", "-o", f"Global.dataset_dir={ds}", "-o", f"Global.output={out}",
           "-o", "Global.device=cpu", "-o", "Train.epochs_iters=1", "-o", "Train.batch_size=4",
           "-o", "Train.pretrain_weight_path=null", "-o", "Train.num_workers=0", "-o", "Evaluate.batch_size=16"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stderr and "--nproc_per_node=2" in proc.stderr
    res = json.loads((out / "train_result.json").read_text())
    assert res["done_flag"] and res["world_size"] == 2
    ddp = res["ddp"]
    assert ddp["backend"] == "gloo" and len(ddp["param_hashes"]) == 2
    assert ddp["consistent"] and ddp["param_hashes"][0] == ddp["param_hashes"][1]
    # 16 images over 2 ranks, batch 4 per rank: 2 steps per epoch
    assert res["steps_per_epoch"] == 2 and res["global_step"] == 2
    # only rank 0 wrote: one header line in the log, per-rank RNG states in the checkpoint
    log = (out / "train.log").read_text()
    assert log.count("train MobileFaceNet on") == 1
    from facefeat.weights.checkpoint import load_checkpoint

    ck = load_checkpoint(out / "epoch_1" / "model.pt")
    assert len(ck["rng"]) == 2 and ck["step"] == 2
    assert (out / "best_model" / "inference" / "inference.onnx").is_file()
