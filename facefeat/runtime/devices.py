"""The one device parser: ``cpu``, ``gpu`` (= ``gpu:0``), ``gpu:N``, ``cuda:N`` and, for
multi-device training, ``gpu:0,1,...``. Anything else is a :class:`DeviceError` naming the value."""

from __future__ import annotations

import os
from dataclasses import dataclass

from facefeat.errors import ConfigError, DeviceError

#: CPU processes for data-parallel training on CPU (gloo); see facefeat.engine.distributed
NPROC_ENV = "FACEFEAT_NPROC"


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device: ``kind`` is ``"cpu"`` or ``"gpu"`` (CUDA); ``ids`` the GPU ids."""

    kind: str
    ids: tuple[int, ...] = ()

    @property
    def nproc(self) -> int:
        if self.kind == "gpu":
            return max(1, len(self.ids))
        try:
            n = int(os.environ.get(NPROC_ENV, "1") or 1)
        except ValueError:
            raise ConfigError(f"{NPROC_ENV} must be an integer number of CPU processes, got "
                              f"{os.environ.get(NPROC_ENV)!r}") from None
        return max(1, n)

    @property
    def index(self) -> int:
        """The one CUDA device id of an inference device (``gpu:0,1`` is refused here)."""
        if self.kind != "gpu":
            raise DeviceError("the CPU has no device index")
        if len(self.ids) != 1:
            raise DeviceError(f"inference runs on one device; got gpu:{','.join(map(str, self.ids))} "
                              "(use one id, e.g. gpu:0)")
        return self.ids[0]

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else "gpu:" + ",".join(map(str, self.ids))


def parse_device(device: "str | DeviceSpec | None") -> DeviceSpec:
    """``"cpu"`` | ``"gpu"`` | ``"gpu:0"`` | ``"cuda:1"`` | ``"gpu:0,1"`` -> :class:`DeviceSpec`."""
    if isinstance(device, DeviceSpec):
        return device
    text = (str(device) if device is not None else "cpu").strip().lower()
    if text == "cpu":
        return DeviceSpec("cpu")
    kind, _, rest = text.partition(":")
    if kind not in ("gpu", "cuda"):
        raise DeviceError(f"device must be cpu, gpu, gpu:N, cuda:N (or gpu:0,1,... for training); got {device!r}")
    if not rest:
        return DeviceSpec("gpu", (0,))
    try:
        ids = tuple(int(t) for t in rest.split(",") if t.strip() != "")
    except ValueError:
        raise DeviceError(f"device {device!r}: GPU ids must be integers, e.g. gpu:0 or gpu:0,1") from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise DeviceError(f"device {device!r}: give distinct non-negative GPU ids, e.g. gpu:0,1")
    return DeviceSpec("gpu", ids)
