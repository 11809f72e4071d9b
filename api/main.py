"""``uvicorn api.main:app``: the API configured from the ``API_*`` environment variables."""

from __future__ import annotations

import logging

from api.app import create_app

# uvicorn configures only its own loggers; give the API's (access log, model loading)
# a handler too. They never carry image or patient data (see api.middleware).
_api_logger = logging.getLogger("api")
if not _api_logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _api_logger.addHandler(_handler)
    _api_logger.setLevel(logging.INFO)

app = create_app()
