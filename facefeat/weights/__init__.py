"""Where weights come from and what they are: the one resolver (:mod:`facefeat.weights.resolver`),
sources (package resource, local file, URL + cache) and loaders by format."""

from facefeat.weights.resolver import FORMATS, WeightsRef, load_into, resolve, resolve_weights
from facefeat.weights.sources import weights_cache_dir

__all__ = ["FORMATS", "WeightsRef", "load_into", "resolve", "resolve_weights", "weights_cache_dir"]
