"""Service errors and the one mapping from an exception's type to its HTTP status."""

from __future__ import annotations

from facefeat.errors import (
    ConfigError,
    DependencyError,
    FacefeatError,
    FaceIndexError,
    InputError,
    StorageFull,
    StorageUnavailable,
    LimitError,
    ModelNotFoundError,
    WeightsError,
)


class ServingError(FacefeatError):
    """An error with its own HTTP status; the message goes to the client as ``errorMsg``."""

    status = 400


class Unauthorized(ServingError):
    status = 401


class Forbidden(ServingError):
    status = 403


class NotFound(ServingError, LookupError):
    status = 404


class PersonNotFound(NotFound):
    """No person with this label in the index."""


class NotReady(ServingError):
    status = 503


class ServiceBusy(ServingError):
    status = 503


#: most specific first; the first isinstance match decides
_STATUS: tuple[tuple[type, int], ...] = (
    (LimitError, 413),
    (InputError, 400),
    (ModelNotFoundError, 400),
    (ConfigError, 400),
    (StorageFull, 507),
    (StorageUnavailable, 503),
    (FaceIndexError, 409),
    (WeightsError, 500),
    (DependencyError, 500),
    (FacefeatError, 400),
)


def status_of(exc: BaseException) -> int:
    """HTTP status of an exception, by its type (never by its message)."""
    if isinstance(exc, ServingError):
        return exc.status
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500
