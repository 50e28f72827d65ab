"""FeatureResult: one image's L2-normalised feature, in PaddleX's JSON layout."""

from __future__ import annotations

from facefeat.results import BaseResult


class FeatureResult(BaseResult):
    """``{"res": {"input_path": ..., "page_index": null, "feature": [...]}}``."""

    default_stem = "feature"

    @property
    def feature(self) -> list[float]:
        return self["feature"]
