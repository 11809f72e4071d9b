"""TumorLens REST API: a thin FastAPI adapter over :mod:`utils` (see :func:`api.app.create_app`)."""
