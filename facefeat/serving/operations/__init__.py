"""The service's work behind each endpoint, one module per OpenAPI tag (as :mod:`facefeat.serving.routers`):
plain functions of the :class:`~facefeat.serving.service.Service` and the parsed request that return the
response's ``result`` (shaped as the schemas document it) and raise the typed errors; no HTTP here."""
