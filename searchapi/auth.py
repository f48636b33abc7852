"""API key check for the write endpoints (SEARCH_API_KEYS; none set = writes disabled)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from flask import current_app, request

from searchapi.errors import ApiError

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def presented_key() -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("X-API-Key") or None


def key_matches(presented: str, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key."""
    encoded = presented.encode()
    return any(hmac.compare_digest(encoded, key.encode()) for key in keys)


def require_api_key(view: Callable) -> Callable:
    """403 when writes are disabled, 401 without a valid key."""

    @wraps(view)
    def guarded(*args, **kwargs):
        keys = current_app.extensions["imgsearch"].config.api_keys
        if not keys:
            raise ApiError(403, "writes_disabled", "write endpoints are disabled: set SEARCH_API_KEYS")
        presented = presented_key()
        if presented is None:
            raise ApiError(
                401, "api_key_required", "send the API key as `Authorization: Bearer <key>`", CHALLENGE
            )
        if not key_matches(presented, keys):
            raise ApiError(401, "invalid_api_key", "the API key is not valid", CHALLENGE)
        return view(*args, **kwargs)

    return guarded
