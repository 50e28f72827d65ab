"""Result objects in PaddleX's style: ``print``, ``.json``, ``save_to_json``, ``save_to_img``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.utils import atomic_write_json


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


class BaseResult(dict):
    """A dict of result fields with PaddleX's output methods. Subclasses set ``default_stem``."""

    default_stem = "res"

    @property
    def json(self) -> dict:
        """``{"res": {...}}``, as PaddleX results serialise."""
        return {"res": _jsonable({k: v for k, v in self.items() if not k.startswith("_")})}

    def _str(self, json_format: bool, indent: int, ensure_ascii: bool) -> str:
        if json_format:
            return json.dumps(self.json, indent=indent, ensure_ascii=ensure_ascii)
        return str(self.json)

    def print(self, json_format: bool = False, indent: int = 4, ensure_ascii: bool = False) -> None:
        """Print ``{"res": {...}}`` (as a dict, or as JSON text with ``json_format=True``), as PaddleX."""
        print(self._str(json_format, indent, ensure_ascii))

    def _stem(self) -> str:
        path = self.get("input_path")
        if isinstance(path, str) and path and not path.startswith(("http://", "https://")):
            return Path(path).stem
        if isinstance(path, str) and path:
            return Path(path.split("?")[0]).stem or self.default_stem
        return self.default_stem

    def _target(self, save_path: str | os.PathLike, suffix: str) -> Path:
        """A directory (or a path without the suffix) gets ``<input stem>_res<suffix>`` inside it."""
        p = Path(save_path)
        if p.suffix.lower() == suffix:
            return p
        return p / f"{self._stem()}_res{suffix}"

    def save_to_json(self, save_path: str | os.PathLike, indent: int = 4, ensure_ascii: bool = False) -> Path:
        """Write the result dict (``.json["res"]``, as PaddleX writes it) atomically; ``save_path`` is a
        ``.json`` file or a directory (then ``<input stem>_res.json`` inside it)."""
        return atomic_write_json(self._target(save_path, ".json"), self.json["res"], indent, ensure_ascii)

    def save_all(self, save_path: str | os.PathLike) -> None:
        """Every output this result has (JSON, and the visualisation where there is one) into a directory."""
        self.save_to_json(save_path)
        if type(self).save_to_img is not BaseResult.save_to_img:
            self.save_to_img(save_path)

    def save_to_img(self, save_path: str | os.PathLike) -> Path:  # pragma: no cover - overridden
        raise NotImplementedError(f"{type(self).__name__} has no image visualisation")
