"""MobileFaceNet (128-d) as defined by PaddleClas 2.6.0 (``ppcls.arch.backbone.model_zoo.mobilefacenet``).

Attribute names follow PaddleClas, so a Paddle state-dict key maps onto this module by
dropping the ``backbone.`` prefix and renaming BN ``_mean``/``_variance`` and PReLU ``_weight``
(see :mod:`facefeat.weights.paddle`). The architecture (after Face_Pytorch by wujiyang):

    conv 3x3/2 64 (BN, PReLU) -> depthwise 3x3 64 (BN, PReLU)
    -> 15 inverted-residual bottlenecks, (t, c, n, s) = (2,64,5,2) (4,128,1,2) (2,128,6,1)
       (4,128,1,2) (2,128,2,1)
    -> conv 1x1 512 (BN, PReLU) -> depthwise 7x7 "linear7" (BN, no activation)
    -> conv 1x1 embedding "linear1" (BN, no activation) -> flatten

Input is [N, 3, 112, 112] float32 already scaled to [-1, 1]; output is the raw embedding
[N, embedding_size] (not L2-normalised).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# (expansion t, out channels c, repeats n, stride of the first repeat s)
BOTTLENECK_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class ConvBlock(nn.Module):
    """Conv (no bias) -> BN -> PReLU, or Conv -> BN when ``linear``; ``dw`` makes it depthwise."""

    def __init__(
        self,
        inp: int,
        oup: int,
        k: int,
        s: int,
        p: int,
        dw: bool = False,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inp, oup, k, s, p, groups=inp if dw else 1, bias=False)
        self.bn = nn.BatchNorm2d(oup, eps=1e-5)
        # PaddleClas only creates the PReLU for non-linear blocks (so no `prelu` key otherwise)
        self.prelu: nn.Module = nn.Identity() if linear else nn.PReLU(oup)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class BottleNeck(nn.Module):
    """Inverted residual: 1x1 expand (BN, PReLU) -> 3x3 depthwise (BN, PReLU) -> 1x1 project (BN).

    The identity shortcut is used only when ``stride == 1`` and ``inp == oup``. ``conv`` is a
    Sequential with the same indices as PaddleClas (0 conv, 1 BN, 2 PReLU, 3 dw conv, 4 BN,
    5 PReLU, 6 conv, 7 BN).
    """

    def __init__(self, inp: int, oup: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inp * expansion
        self.connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden, eps=1e-5),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden, eps=1e-5),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup, eps=1e-5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.connect else out


class MobileFaceNet(nn.Module):
    """PaddleClas MobileFaceNet: [N, 3, 112, 112] in [-1, 1] -> raw embedding [N, embedding_size]."""

    input_size: tuple[int, int] = (112, 112)

    def __init__(
        self,
        embedding_size: int = 128,
        bottleneck_setting: Sequence[Sequence[int]] = BOTTLENECK_SETTING,
    ) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.conv1 = ConvBlock(3, 64, 3, 2, 1)
        self.dw_conv1 = ConvBlock(64, 64, 3, 1, 1, dw=True)

        blocks: list[nn.Module] = []
        channels = 64
        for t, c, n, s in bottleneck_setting:
            for i in range(n):
                blocks.append(BottleNeck(channels, c, s if i == 0 else 1, t))
                channels = c
        self.blocks = nn.Sequential(*blocks)

        self.conv2 = ConvBlock(channels, 512, 1, 1, 0)
        # 7x7 depthwise over the whole 7x7 map (a learned global pooling), no activation
        self.linear7 = ConvBlock(512, 512, 7, 1, 0, dw=True, linear=True)
        self.linear1 = ConvBlock(512, embedding_size, 1, 1, 0, linear=True)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.dw_conv1(x)
        x = self.blocks(x)
        x = self.conv2(x)
        x = self.linear7(x)
        x = self.linear1(x)
        return self.flatten(x)
