"""One error family for facefeat: every message names the input and, where possible, the fix."""

from __future__ import annotations


class FacefeatError(Exception):
    """Base class of every error facefeat raises on purpose."""


class InputError(FacefeatError, ValueError):
    """An input (image, file, directory, array, request field) is missing or malformed."""


class LimitError(InputError):
    """An input is over a size limit (bytes, pixels, count)."""


class WeightsError(FacefeatError):
    """Weights cannot be found, downloaded, or loaded."""


class ModelNotFoundError(FacefeatError, KeyError):
    """A model name is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ConfigError(FacefeatError, ValueError):
    """A config file or `-o` override is invalid."""


class DeviceError(InputError, ConfigError):
    """A device string (``device=``, ``Global.device``) is malformed or names no usable device."""


class DatasetError(FacefeatError, ValueError):
    """A dataset directory or label file is malformed."""


class FaceIndexError(FacefeatError):
    """A gallery index is missing, corrupt, or does not match the model."""


class StorageError(FaceIndexError):
    """The gallery's database failed (not the input's fault): see the subclasses."""


class StorageFull(StorageError):
    """The disk (or database quota) holding the gallery is full; nothing of the change was saved."""


class StorageUnavailable(StorageError):
    """The gallery's database cannot be reached right now (server down, locked too long); retry."""


class DependencyError(FacefeatError, ImportError):
    """An optional dependency (torch, faiss, pymilvus, ...) is needed but not installed."""


class MissingPackageError(WeightsError, DependencyError):
    """A model's weights ship in a Python package that is not installed."""


class QuantizationError(FacefeatError):
    """An int8 model disagrees with the model it was quantised from beyond the documented bar."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise a DependencyError that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise DependencyError(
            f"{purpose} needs the Python package '{module}', which is not installed; "
            f"install it with: pip install 'facefeat[{extra}]'"
        ) from exc
