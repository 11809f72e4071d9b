"""Every error answers JSON ``{"error": type, "detail": message}``, never an HTML page.

:class:`~utils.errors.TumorLensError` subclasses carry their HTTP status; validation
errors list the fields at fault but never the values sent (which may be image bytes).
Unexpected exceptions answer 500 and are logged by type and traceback only.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from utils.errors import TumorLensError

__all__ = ["error_response", "install_error_handlers"]

logger = logging.getLogger(__name__)


def error_response(
    status: int, error: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The JSON error body every failing request gets."""
    return JSONResponse({"error": error, "detail": detail, **extra}, status, headers=headers)


async def _tumorlens_error(request: Request, error: Exception) -> JSONResponse:
    status = getattr(error, "http_status", 400)
    return error_response(status, type(error).__name__, str(error))


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        {"loc": [str(part) for part in issue.get("loc", ())], "msg": str(issue.get("msg", ""))}
        for issue in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems)
    return error_response(422, "ValidationError", f"Invalid request: {summary}", errors=problems)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    name = HTTPStatus(error.status_code).phrase.replace(" ", "")
    return error_response(error.status_code, name, str(error.detail), headers=error.headers)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    # The message may quote input values; the type and stack are enough to debug.
    logger.error(
        "Unexpected %s in %s %s",
        type(error).__name__,
        request.method,
        request.url.path,
        exc_info=(type(error), None, error.__traceback__),
    )
    return error_response(500, "InternalError", "An unexpected error occurred; it was logged.")


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(TumorLensError, _tumorlens_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
