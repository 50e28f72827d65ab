"""Optimizer and schedule of training: AdamW parameter groups and per-iteration warm-up + cosine."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

__all__ = ["WarmupCosine", "build_optimizer", "param_groups"]


def param_groups(modules: Sequence[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on >= 2-D weights only; none on biases, BN and PReLU (1-D)."""
    decay, no_decay = [], []
    for m in modules:
        for _, p in m.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class WarmupCosine:
    """Per-iteration LR: linear warm-up over ``warmup_steps`` then cosine decay to 0 at ``total_steps``.

    ``factor(step)`` multiplies the base LR for optimizer step ``step`` (0-based): ``(step+1)/W``
    during warm-up, then ``0.5 * (1 + cos(pi * (step - W) / (T - W)))``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_steps: int, total_steps: int):
        self.optimizer = optimizer
        self.base_lr = float(base_lr)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, min(int(warmup_steps), self.total_steps))
        self.step_num = 0
        self._apply()

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    @property
    def lr(self) -> float:
        return self.base_lr * self.factor(self.step_num)

    def _apply(self) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr

    def step(self) -> None:
        self.step_num += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"name": "warmup_cosine", "base_lr": self.base_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "step": self.step_num}

    def load_state_dict(self, state: Mapping) -> None:
        # the schedule's shape comes from the current config (so a resumed run may train longer);
        # the position comes from the checkpoint
        self.step_num = int(state["step"])
        self._apply()


def build_optimizer(modules: Sequence[nn.Module], lr: float, weight_decay: float, warmup_steps: int,
                    total_steps: int) -> tuple[torch.optim.AdamW, WarmupCosine]:
    """AdamW over :func:`param_groups` and its :class:`WarmupCosine` schedule."""
    optimizer = torch.optim.AdamW(param_groups(modules, weight_decay), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    return optimizer, WarmupCosine(optimizer, lr, warmup_steps, total_steps)
