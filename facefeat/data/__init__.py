"""Datasets: PaddleX face-format files, ``check_dataset``, and the LFW demo builder.

    from facefeat.data import check_dataset, read_pairs, read_label_file, build_lfw_demo
"""

from facefeat.data.check import check_dataset
from facefeat.data.formats import (
    Pair,
    PairSet,
    Problem,
    Sample,
    detect_pairs_format,
    parse_label_file,
    parse_pair_label_file,
    parse_pairs,
    read_label_file,
    read_pairs,
)
from facefeat.data.layout import DatasetLayout
from facefeat.data.lfw_demo import build_lfw_demo


__all__ = [
    "DatasetLayout",
    "Pair",
    "PairSet",
    "Problem",
    "Sample",
    "build_lfw_demo",
    "check_dataset",
    "detect_pairs_format",
    "parse_label_file",
    "parse_pair_label_file",
    "parse_pairs",
    "read_label_file",
    "read_pairs",
]
