"""Where weights come from and what they are: the one resolver (:mod:`facefeat.weights.resolver`),
sources (package resource, local file, URL + cache), readers by format and
:func:`~facefeat.weights.loaders.load_into` (:mod:`facefeat.weights.loaders`)."""

from facefeat.weights.loaders import load_into
from facefeat.weights.ref import LoadedWeights, WeightsRef
from facefeat.weights.resolver import FORMATS, resolve
from facefeat.weights.sources import weights_cache_dir

__all__ = ["FORMATS", "LoadedWeights", "WeightsRef", "load_into", "resolve", "weights_cache_dir"]
