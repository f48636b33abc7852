"""CORS for the shop's own origins (SEARCH_CORS_ORIGINS); other origins get no CORS headers."""

from __future__ import annotations

from flask import Flask, request

ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = "Content-Type, Authorization, X-API-Key"
EXPOSED_HEADERS = "Server-Timing"
PREFLIGHT_MAX_AGE_SECONDS = "600"


def allowed_origin(origin: str | None, origins: tuple[str, ...]) -> str | None:
    """The value for Access-Control-Allow-Origin, or None when the origin is not allowed."""
    if not origin or not origins:
        return None
    if "*" in origins:
        return "*"
    return origin if origin.rstrip("/") in origins else None


def init_cors(app: Flask, origins: tuple[str, ...]) -> None:
    """Answer preflights and tag responses for allowed origins (Flask answers OPTIONS itself)."""

    @app.after_request
    def add_cors_headers(response):
        response.vary.add("Origin")
        allow = allowed_origin(request.headers.get("Origin"), origins)
        if allow is None:
            return response
        response.headers["Access-Control-Allow-Origin"] = allow
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_SECONDS
        return response
