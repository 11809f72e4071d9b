"""ASGI middleware: a request body limit, and an access log without request data."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

__all__ = ["AccessLogMiddleware", "BodyLimitMiddleware"]

access_logger = logging.getLogger("api.access")

#: Room for the multipart boundaries, headers and small form fields beside the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class _BodyTooLargeError(Exception):
    """Raised into the app when the body passes the limit, to stop it reading."""


class BodyLimitMiddleware:
    """Answer 413 as soon as a request body exceeds ``max_body_bytes``.

    A declared ``Content-Length`` is checked before anything is read; a chunked body is
    counted as it arrives, so an oversized upload is never spooled to disk in full.
    Whatever the app answers once the limit is passed (FastAPI turns the error raised
    into its body parsing into a 400) is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _too_large(self) -> Any:
        return error_response(
            413,
            "RequestTooLarge",
            f"The request body exceeds the limit of {self.max_body_bytes} bytes "
            "(the upload limit plus room for the form); send a smaller image.",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a counting ``receive``; answer 413 past the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0
        exceeded = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            if not exceeded:  # past the limit the 413 below answers instead
                await send(message)

        with contextlib.suppress(_BodyTooLargeError):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded:
            await self._too_large()(scope, receive, send)


class AccessLogMiddleware:
    """Log method, path, status and duration of each request: never bodies or file names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app and log one line when it has answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            access_logger.info(
                "%s %s %d %.1f ms",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - start) * 1000,
            )
