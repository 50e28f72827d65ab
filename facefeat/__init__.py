"""facefeat: face image -> discriminative, L2-normalised embedding; models, training, pipeline, serving.

The public surface::

    from facefeat import create_model, create_pipeline, list_models
    model = create_model("SFace")
    for res in model.predict("face.jpg"):
        res.print()

``create_model`` and ``create_pipeline`` are the real functions
(:func:`facefeat.predict.predictor.create_model`, :func:`facefeat.pipeline.create_pipeline`),
imported on first use so that ``import facefeat`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from facefeat.errors import FacefeatError
from facefeat.registry import get_spec, list_models
from facefeat.utils import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from facefeat.pipeline import create_pipeline
    from facefeat.predict.predictor import create_model

__version__ = "0.1.0"

__all__ = ["FacefeatError", "__version__", "create_model", "create_pipeline", "get_spec", "list_models"]

#: public name -> the module that defines it (imported lazily)
_LAZY = {"create_model": "facefeat.predict.predictor", "create_pipeline": "facefeat.pipeline"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

