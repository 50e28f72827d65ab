"""ResNet face backbones as PaddleX's ``ResNet50_face`` builds them (PaddleClas 2.6.0).

PaddleX's ResNet50_face is PaddleClas' ``legendary_models.resnet.ResNet50`` (version "vb")
with ``stride_list=[1, 2, 2, 2, 2]``, ``max_pool=False`` and ``class_num=512``: the "fc"
classifier becomes the 2048 -> 512 embedding layer.

With ``max_pool=False`` PaddleClas does not drop the max pool's stride: it moves
``stride_list[1]`` onto the first block of stage 1 (its 3x3 conv and shortcut). A 112x112
face therefore gives stem 112 -> stages 56 -> 28 -> 14 -> 7. (Checked against Paddle's
output: leaving stage 1 at stride 1 gives a max error of ~0.44 instead of ~3e-5.)

PaddleClas' "vb" ResNet details reproduced here:

* stem: conv 7x7 (padding 3) -> BN -> ReLU, one ``ConvBNLayer`` inside ``stem`` (key ``stem.0``);
* bottleneck: 1x1 -> 3x3 (carries the stride) -> 1x1 x4, BN after each, ReLU after the first
  two and after the residual add;
* the first block of *every* stage, including stage 1 where stride is 1, has a projection
  shortcut ``short`` (1x1 conv with the block's stride, then BN, no avg-pool since "vb");
* global average pool -> flatten -> ``fc`` (Linear, with bias).

Attribute names match PaddleClas (``stem.0.conv``, ``blocks.<i>.conv0.bn``, ``blocks.<i>.short``,
``fc``), so Paddle state-dict keys map 1:1 (see :mod:`facefeat.weights.paddle`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# depth -> (block type, blocks per stage)
_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class ConvBNLayer(nn.Module):
    """Conv (no bias, 'same' padding for odd kernels) -> BN (eps 1e-5) -> optional ReLU."""

    def __init__(self, inp: int, oup: int, k: int, stride: int = 1, act: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inp, oup, k, stride, (k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(oup, eps=1e-5)
        self.relu: nn.Module = nn.ReLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4 channels) with identity or projection (``short``) shortcut."""

    expansion = 4

    def __init__(self, inp: int, filters: int, stride: int, shortcut: bool) -> None:
        super().__init__()
        self.conv0 = ConvBNLayer(inp, filters, 1, act=True)
        self.conv1 = ConvBNLayer(filters, filters, 3, stride=stride, act=True)
        self.conv2 = ConvBNLayer(filters, filters * 4, 1)
        self.short: nn.Module = (
            nn.Identity() if shortcut else ConvBNLayer(inp, filters * 4, 1, stride=stride)
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(self.conv0(x)))
        return self.relu(y + self.short(x))


class BasicBlock(nn.Module):
    """3x3 (stride) -> 3x3 with identity or projection (``short``) shortcut."""

    expansion = 1

    def __init__(self, inp: int, filters: int, stride: int, shortcut: bool) -> None:
        super().__init__()
        self.conv0 = ConvBNLayer(inp, filters, 3, stride=stride, act=True)
        self.conv1 = ConvBNLayer(filters, filters, 3)
        self.short: nn.Module = (
            nn.Identity() if shortcut else ConvBNLayer(inp, filters, 1, stride=stride)
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.conv0(x))
        return self.relu(y + self.short(x))


class ResNetFace(nn.Module):
    """PaddleClas "vb" ResNet used as a face-embedding backbone.

    Args:
        depth: 18, 34, 50, 101 or 152.
        embedding_size: output size of ``fc`` (PaddleClas ``class_num``).
        stride_list: strides of (stem, max pool, stage 2, stage 3, stage 4); stage 1 has stride 1.
        max_pool: apply the 3x3/``stride_list[1]`` max pool after the stem; when False (PaddleX's
            face config) that stride is applied by the first block of stage 1 instead.
    """

    input_size: tuple[int, int] = (112, 112)

    def __init__(
        self,
        depth: int = 50,
        embedding_size: int = 512,
        stride_list: Sequence[int] = (1, 2, 2, 2, 2),
        max_pool: bool = False,
    ) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"ResNetFace depth must be one of {sorted(_DEPTHS)}, got {depth}")
        if len(stride_list) != 5:
            raise ValueError(f"stride_list needs 5 strides, got {list(stride_list)}")
        kind, depths = _DEPTHS[depth]
        block_cls = BottleneckBlock if kind == "bottleneck" else BasicBlock
        self.depth = depth
        self.embedding_size = embedding_size

        self.stem = nn.Sequential(ConvBNLayer(3, 64, 7, stride=stride_list[0], act=True))
        self.max_pool: nn.Module = (
            nn.MaxPool2d(3, stride_list[1], 1) if max_pool else nn.Identity()
        )

        blocks: list[nn.Module] = []
        channels = 64
        for stage, n in enumerate(depths):
            filters = 64 * 2**stage
            for i in range(n):
                if i != 0:
                    stride = 1
                elif stage == 0:  # the max pool's stride moves here when there is no max pool
                    stride = 1 if max_pool else stride_list[1]
                else:
                    stride = stride_list[stage + 1]
                # PaddleClas: the first block of every stage gets a projection shortcut
                blocks.append(block_cls(channels, filters, stride, shortcut=i != 0))
                channels = filters * block_cls.expansion
        self.blocks = nn.Sequential(*blocks)

        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(channels, embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.max_pool(x)
        x = self.blocks(x)
        x = self.flatten(self.avg_pool(x))
        return self.fc(x)


class ResNet50Face(ResNetFace):
    """PaddleX ``ResNet50_face``: [N, 3, 112, 112] in [-1, 1] -> raw embedding [N, embedding_size]."""

    def __init__(self, embedding_size: int = 512) -> None:
        super().__init__(depth=50, embedding_size=embedding_size)
