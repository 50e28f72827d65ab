"""Torch runner: a torch module on preprocessed batches (training-time evaluation, parity checks)."""

from __future__ import annotations

import numpy as np

from facefeat.errors import DependencyError
from facefeat.runtime.devices import DeviceSpec, parse_device


class TorchRunner:
    """Runs a torch module in fp32 on the CPU or one CUDA device."""

    backend = "torch"
    precision = "fp32"

    def __init__(self, model, device: "str | DeviceSpec" = "cpu", num_threads: int | None = None):
        import torch

        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = parse_device(device)
        if self.device.kind == "gpu":
            if not torch.cuda.is_available():
                raise DependencyError(
                    f"device {str(self.device)!r}: this torch build has no usable CUDA "
                    f"(torch {torch.__version__}); install a CUDA build of torch, or use device='cpu'"
                )
            self.torch_device = torch.device(f"cuda:{self.device.index}")
        else:
            self.torch_device = torch.device("cpu")
        self.model = model.to(self.torch_device).eval()
        self._torch = torch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            x = self._torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.torch_device)
            out = self.model(x)
        return out.float().cpu().numpy().reshape(batch.shape[0], -1)
