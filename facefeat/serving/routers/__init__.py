"""The service's endpoints: one FastAPI :class:`~fastapi.APIRouter` per OpenAPI tag, in the order
the tags are listed (``service``, ``face feature``, ``index``, ``recognition``, ``people``,
``sightings``), and the pages (``/``, ``/docs``; not in the OpenAPI document).

Each module holds its router, its request bodies that are not PaddleX's (:mod:`facefeat.serving.schemas`
holds those) and ``ADMIN_PATHS``, the endpoints that need an admin key. A route body checks readiness
and unknown fields and hands the parsed request to :mod:`facefeat.serving.operations`, which does the
work and shapes the ``result``; the route wraps it in the envelope.
"""

from __future__ import annotations

from facefeat.serving.routers import feature, index, pages, people, recognition, service, sightings

#: the API's routers, one per tag, in the order of the OpenAPI document's tags
ROUTERS = (service.router, feature.router, index.router, recognition.router, people.router, sightings.router)
#: every endpoint that needs an admin key
ADMIN_PATHS: tuple[str, ...] = (service.ADMIN_PATHS + feature.ADMIN_PATHS + index.ADMIN_PATHS
                                + recognition.ADMIN_PATHS + people.ADMIN_PATHS + sightings.ADMIN_PATHS)

__all__ = ["ADMIN_PATHS", "ROUTERS", "pages"]
