"""Multi-device training: device strings, torchrun launching, process-group helpers.

``Global.device`` is ``cpu``, ``gpu`` (= ``gpu:0``), ``gpu:0`` or ``gpu:0,1,...``. Several GPU ids
mean data-parallel training: the ``facefeat -c ... -o ...`` process re-launches itself under
``python -m torch.distributed.run --nproc_per_node=N`` with ``CUDA_VISIBLE_DEVICES`` set to those
ids, and every worker trains with DistributedDataParallel (NCCL). On CPU the same happens with
gloo when the environment variable ``FACEFEAT_NPROC=N`` (N > 1) is set, which is how the tests
exercise DDP without GPUs. Running the command under ``torchrun`` yourself works too: the workers
see ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` and do not launch again.

Only rank 0 writes files and logs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from facefeat.errors import ConfigError

# the one device parser lives in the runtime layer (re-exported here for the training code)
from facefeat.runtime.devices import NPROC_ENV, DeviceSpec, parse_device  # noqa: E402,F401


def single_device(device: str | None) -> str:
    """The one device an inference mode runs on: ``cpu`` or ``gpu:<first id>``."""
    dev = parse_device(device)
    return "cpu" if dev.kind == "cpu" else f"gpu:{dev.ids[0]}"


def in_torchrun() -> bool:
    """True inside a worker started by torchrun (or any launcher setting WORLD_SIZE and RANK)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def torchrun_command(nproc: int, module_args: Sequence[str], port: int | None = None,
                     python: str | None = None) -> list[str]:
    """``python -m torch.distributed.run --nproc_per_node=N ... -m facefeat <module_args>``."""
    return [
        python or sys.executable, "-m", "torch.distributed.run",
        "--nnodes=1", f"--nproc_per_node={int(nproc)}",
        "--master_addr=127.0.0.1", f"--master_port={port or free_port()}",
        "-m", "facefeat", *module_args,
    ]


def launch(device: DeviceSpec, module_args: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run ``facefeat <module_args>`` in ``device.nproc`` torchrun workers; return the exit code."""
    e = dict(os.environ if env is None else env)
    if device.kind == "gpu":
        e["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in device.ids)
    else:
        e.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // device.nproc)))
    e.pop(NPROC_ENV, None)  # the workers must not launch again
    cmd = torchrun_command(device.nproc, module_args)
    print("facefeat: launching " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.call(cmd, env=e)


@dataclass
class DistContext:
    """This process's place in the job: rank, world size, and its torch device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: Any = None  # torch.device
    initialized: bool = False  # this module initialised the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: DeviceSpec) -> DistContext:
    """Pick this process's device and, under torchrun, join the process group (NCCL/gloo)."""
    import torch

    if not in_torchrun() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if device.kind == "gpu":
            if not torch.cuda.is_available():
                raise ConfigError(f"Global.device is gpu:{device.ids[0]} but CUDA is not available; use cpu")
            dev = torch.device(f"cuda:{device.ids[0]}")
            torch.cuda.set_device(dev)
        else:
            dev = torch.device("cpu")
        return DistContext(0, 1, 0, dev, False)
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.kind == "gpu":
        if not torch.cuda.is_available():
            raise ConfigError("Global.device asks for GPUs but CUDA is not available in the worker")
        dev = torch.device(f"cuda:{local}")  # CUDA_VISIBLE_DEVICES maps local ranks onto the ids
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    initialized = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        initialized = True
    return DistContext(rank, world, local, dev, initialized)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_gather_object(ctx: DistContext, obj: Any) -> list[Any]:
    if not ctx.distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: Any, src: int = 0) -> Any:
    if not ctx.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def teardown(ctx: DistContext) -> None:
    if ctx.initialized:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
