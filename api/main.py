"""``uvicorn api.main:app``: the API configured from the ``API_*`` environment variables."""

from __future__ import annotations

from api.app import create_app

app = create_app()
