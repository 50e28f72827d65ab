"""SFace (OpenCV Zoo ``face_recognition_sface_2021dec``, 128-d, Apache-2.0) as a torch module.

The layout follows the ONNX graph node for node (see :mod:`facefeat.weights.onnx_import`, which
reads the weights with numpy + onnx only):

    (x - 127.5) * 0.0078125                         in-graph normalisation, input RGB 0..255
    -> 27 x [Conv (no bias) -> BN (eps 1e-3) -> PReLU (per channel)]   MobileNetV1 layout:
       conv_1 3x3 3->32, then conv_k_dw depthwise 3x3 + conv_k pointwise 1x1 for k = 2..14,
       stride 2 at conv_3_dw, conv_5_dw, conv_7_dw, conv_13_dw (112 -> 56 -> 28 -> 14 -> 7)
    -> bn1 BatchNorm2d(1024, eps 2e-5) -> Dropout(0.4) -> Flatten (50176)
    -> pre_fc1 Linear(50176, 128) -> fc1 BatchNorm1d(128, eps 2e-5)

Input [N, 3, 112, 112] float32 RGB in 0..255; output the raw embedding [N, embedding_size] (not
L2-normalised). Module names follow the ONNX names (``features.conv_2_dw.bn`` <-
``conv_2_dw_batchnorm_*``), so :func:`facefeat.weights.onnx_import.sface_state_dict_from_onnx`
is a rename.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from facefeat.models.sface_arch import (
    SFACE_CONV_BLOCKS,
    SFACE_CONV_BN_EPS,
    SFACE_DROPOUT,
    SFACE_FEATURE_SHAPE,
    SFACE_HEAD_BN_EPS,
    SFACE_MEAN,
    SFACE_SCALE,
)


class ConvBNPReLU(nn.Module):
    """Conv (no bias, 3x3 pad 1 or 1x1 pad 0; depthwise when ``dw``) -> BN -> PReLU."""

    def __init__(self, inp: int, oup: int, kernel: int, stride: int, dw: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            inp, oup, kernel, stride=stride, padding=kernel // 2, groups=inp if dw else 1, bias=False
        )
        self.bn = nn.BatchNorm2d(oup, eps=SFACE_CONV_BN_EPS)
        self.prelu = nn.PReLU(oup)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class SFace(nn.Module):
    """SFace recognizer: [N, 3, 112, 112] RGB 0..255 -> raw [N, embedding_size] embedding."""

    input_size = (112, 112)
    mean = SFACE_MEAN
    scale = SFACE_SCALE

    def __init__(self, embedding_size: int = 128) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        blocks = OrderedDict()
        for name, cin, cout, stride, dw in SFACE_CONV_BLOCKS:
            kernel = 3 if (dw or name == "conv_1") else 1
            blocks[name] = ConvBNPReLU(cin, cout, kernel, stride, dw)
        self.features = nn.Sequential(blocks)
        c = SFACE_FEATURE_SHAPE[0]
        self.bn1 = nn.BatchNorm2d(c, eps=SFACE_HEAD_BN_EPS)
        self.dropout = nn.Dropout(SFACE_DROPOUT)
        self.flatten = nn.Flatten(1)
        self.pre_fc1 = nn.Linear(int(np.prod(SFACE_FEATURE_SHAPE)), embedding_size)
        self.fc1 = nn.BatchNorm1d(embedding_size, eps=SFACE_HEAD_BN_EPS)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.scale
        x = self.features(x)
        x = self.flatten(self.dropout(self.bn1(x)))
        return self.fc1(self.pre_fc1(x))
