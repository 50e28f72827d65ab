"""The margin losses facefeat trains with: names, default margins and scale, in one place.

Torch-free, so the config schema and the CLI read it without importing the heads
(:mod:`facefeat.models.heads` builds them).
"""

from __future__ import annotations

#: loss name -> default margin m (PaddleClas: ArcMargin 0.5, CosMargin 0.35)
MARGIN_DEFAULTS: dict[str, float] = {"ArcMargin": 0.5, "CosMargin": 0.35}
#: the losses, in the order the CLI and the schema list them
LOSSES: tuple[str, ...] = tuple(MARGIN_DEFAULTS)
#: default logit scale s
DEFAULT_SCALE = 64.0
