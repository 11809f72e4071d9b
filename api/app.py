"""The FastAPI application factory: :func:`create_app`.

``uvicorn api.main:app`` serves the app built from the environment (``make api``);
tests call :func:`create_app` with their own settings and models folder.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from api.errors import install_error_handlers
from api.middleware import MULTIPART_OVERHEAD_BYTES, AccessLogMiddleware, BodyLimitMiddleware
from api.routes import router
from api.services import ModelServices
from api.settings import ApiSettings
from utils.model_card import INTENDED_USE

__all__ = ["API_VERSION", "create_app"]

API_VERSION = "1.0.0"

logger = logging.getLogger(__name__)

_DESCRIPTION = f"""
Breast-ultrasound lesion classification, segmentation with measurements, and class
activation maps, over HTTP.

**Intended use.** {INTENDED_USE}

Upload an image as the multipart field `file` (PNG, JPEG, BMP, TIFF or single-frame
DICOM; the format is detected from the bytes). Errors answer JSON
`{{"error": type, "detail": message}}`. When the server sets `API_TOKEN`, send
`Authorization: Bearer <token>`. No image or patient data is logged.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the API.

    Args:
        settings: Limits, token and models; default: :meth:`ApiSettings.from_env`.

    Returns:
        The app. Its models load once at startup (the lifespan), or on the first
        request when it is served without a lifespan (e.g. some test clients).
    """
    settings = settings or ApiSettings.from_env()
    services = ModelServices(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(services.load)
        yield

    app = FastAPI(
        title="TumorLens API",
        version=API_VERSION,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(router)
    if not settings.auth_enabled:
        _drop_security_from_schema(app)
    # Added last = outermost: oversized bodies are refused before anything else runs.
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(
        BodyLimitMiddleware, max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    )
    return app


def _drop_security_from_schema(app: FastAPI) -> None:
    """Without a token no request needs one, so the schema must not claim otherwise."""
    build_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_schema()
            schema.get("components", {}).pop("securitySchemes", None)
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    operation.pop("security", None)
                    operation.get("responses", {}).pop("401", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
