"""Optional bearer-token authentication, enabled by setting ``API_TOKEN``."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

__all__ = ["require_token"]

# auto_error=False: without a token configured, a missing header is fine.
_bearer = HTTPBearer(auto_error=False, description="Needed only when API_TOKEN is set.")


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Reject the request with 401 unless auth is off or the bearer token matches.

    Raises:
        HTTPException: 401, with ``WWW-Authenticate: Bearer``.
    """
    settings = request.app.state.services.settings
    if not settings.auth_enabled:
        return
    expected = settings.token.get_secret_value().encode()
    given = b"" if credentials is None else credentials.credentials.encode()
    # compare_digest: the time taken does not reveal how much of the token matched.
    if credentials is None or not secrets.compare_digest(given, expected):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="A valid 'Authorization: Bearer <token>' header is required.",
            headers={"WWW-Authenticate": "Bearer"},
        )
