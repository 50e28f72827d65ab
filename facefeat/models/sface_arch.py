"""SFace's architecture constants (torch-free): read by :mod:`facefeat.models.sface` (the module)
and :mod:`facefeat.weights.onnx_import` (the ONNX reader), described there."""

from __future__ import annotations

SFACE_MEAN = 127.5  # scalar_op1
SFACE_SCALE = 0.0078125  # scalar_op2 (1 / 128)

# (name, in channels, out channels, stride, depthwise) of the 27 Conv -> BN -> PReLU units, in order
SFACE_CONV_BLOCKS: tuple[tuple[str, int, int, int, bool], ...] = (
    ("conv_1", 3, 32, 1, False),
    ("conv_2_dw", 32, 32, 1, True),
    ("conv_2", 32, 64, 1, False),
    ("conv_3_dw", 64, 64, 2, True),
    ("conv_3", 64, 128, 1, False),
    ("conv_4_dw", 128, 128, 1, True),
    ("conv_4", 128, 128, 1, False),
    ("conv_5_dw", 128, 128, 2, True),
    ("conv_5", 128, 256, 1, False),
    ("conv_6_dw", 256, 256, 1, True),
    ("conv_6", 256, 256, 1, False),
    ("conv_7_dw", 256, 256, 2, True),
    ("conv_7", 256, 512, 1, False),
    ("conv_8_dw", 512, 512, 1, True),
    ("conv_8", 512, 512, 1, False),
    ("conv_9_dw", 512, 512, 1, True),
    ("conv_9", 512, 512, 1, False),
    ("conv_10_dw", 512, 512, 1, True),
    ("conv_10", 512, 512, 1, False),
    ("conv_11_dw", 512, 512, 1, True),
    ("conv_11", 512, 512, 1, False),
    ("conv_12_dw", 512, 512, 1, True),
    ("conv_12", 512, 512, 1, False),
    ("conv_13_dw", 512, 512, 2, True),
    ("conv_13", 512, 1024, 1, False),
    ("conv_14_dw", 1024, 1024, 1, True),
    ("conv_14", 1024, 1024, 1, False),
)
SFACE_CONV_BN_EPS = 1e-3
SFACE_HEAD_BN_EPS = 2e-5
SFACE_DROPOUT = 0.4
SFACE_FEATURE_SHAPE = (1024, 7, 7)
