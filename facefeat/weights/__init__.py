"""Where weights come from (package resource, local file, URL + cache) and how they become ours."""

from facefeat.weights.sources import resolve_weights, weights_cache_dir

__all__ = ["resolve_weights", "weights_cache_dir"]
