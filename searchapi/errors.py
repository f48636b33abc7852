"""JSON errors for every failure: a status, a machine code and a message; never a stack trace."""

from __future__ import annotations

import logging

from elastic_transport import ConnectionError as EsConnectionError
from elastic_transport import ConnectionTimeout, TlsError
from elasticsearch import ApiError as EsApiError
from flask import Flask, jsonify
from pydantic import BaseModel, Field
from werkzeug.exceptions import HTTPException

from imgsearch.config import ElasticConfig

log = logging.getLogger(__name__)

TRANSIENT_ES_STATUSES = (429, 502, 503, 504)
# What a client sees when Elasticsearch refuses the API's own credentials: the fault is the
# deployment's, not the request's, so a 503 with a fixed message (the details go to the log only).
ES_AUTH_ERRORS = {
    401: (
        "search_backend_unauthenticated",
        "the search service's credentials were rejected by Elasticsearch; the operator must fix them",
    ),
    403: (
        "search_backend_forbidden",
        "the search service is not permitted to do this in Elasticsearch (its role lacks the privilege)",
    ),
}


def es_auth_problem(exc: Exception) -> tuple[str, str] | None:
    """(code, message) when Elasticsearch answered 401/403 to the API's own credentials."""
    status = getattr(getattr(exc, "meta", None), "status", None)
    return ES_AUTH_ERRORS.get(status) if isinstance(exc, EsApiError) else None


class ApiError(Exception):
    """An error the client can act on, returned as JSON with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def es_readiness_problem(exc: Exception, config: ElasticConfig) -> tuple[str, str]:
    """(check value, reason) for /ready when a call to Elasticsearch failed: credentials and TLS
    problems are named with the variables to fix; Elasticsearch's own details go to the log only."""
    source = config.credentials_from or "no credentials configured (ES_API_KEY or ES_USERNAME/ES_PASSWORD)"
    status = exc.meta.status if isinstance(exc, EsApiError) else None
    if status == 401:
        check, reason = (
            "credentials rejected",
            f"Elasticsearch rejected the API's credentials (401): check {source}",
        )
    elif status == 403:
        check, reason = (
            "forbidden",
            f"Elasticsearch denied the API's credentials ({source}) a privilege (403)",
        )
    elif isinstance(exc, TlsError):
        check, reason = (
            "tls error",
            "TLS verification of Elasticsearch failed: check ES_CA_CERTS/ES_SSL_FINGERPRINT",
        )
    else:
        return "unreachable", f"Elasticsearch is unreachable: {type(exc).__name__}"
    log.error("not ready: %s (%s)", reason, exc)
    return check, reason


def not_found(image_id: str, answer) -> ApiError:
    """404 for an unknown id; a missing index (no alias yet) is the 503 every search gets too."""
    if "error" in answer:
        return ApiError(503, "index_missing", "the search index does not exist yet; run the indexer")
    return ApiError(404, "image_not_found", f"no image with id {image_id!r} in the index")


class ErrorDetail(BaseModel):
    status: int
    code: str = Field(description="Machine-readable, e.g. invalid_parameter, image_not_found")
    message: str = Field(description="For people; a bad parameter's message starts with its name")


class ErrorBody(BaseModel):
    """Every error: a status, a machine code and a message, never a stack trace."""

    error: ErrorDetail


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    body = ErrorBody(error=ErrorDetail(status=status, code=code, message=message))
    response = jsonify(body.model_dump())
    response.status_code = status
    response.headers.update(headers or {})
    return response


def http_error_response(exc: HTTPException, upload_limit: int | None):
    """Werkzeug's routing and request errors (404, 405, 413...) as our JSON errors."""
    if exc.code == 413:
        return error_response(
            413, "payload_too_large", f"request body exceeds the limit of {upload_limit} bytes"
        )
    code = (exc.name or "error").lower().replace(" ", "_")
    # Keep werkzeug's headers, e.g. the `Allow` of a 405 (RFC 9110); our JSON body replaces theirs.
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    return error_response(exc.code or 500, code, exc.description or exc.name, headers)


def register_error_handlers(app: Flask) -> None:
    """Map every exception to a JSON body; unknown ones become a logged, opaque 500."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return http_error_response(exc, app.config.get("MAX_CONTENT_LENGTH"))

    @app.errorhandler(EsConnectionError)
    @app.errorhandler(ConnectionTimeout)
    def es_unreachable(exc: Exception):
        log.warning("Elasticsearch unreachable: %s", exc)
        return error_response(503, "search_backend_unavailable", "Elasticsearch is unreachable; retry later")

    @app.errorhandler(EsApiError)
    def es_api_error(exc: EsApiError):
        log.error("Elasticsearch error: %s", exc)
        auth = es_auth_problem(exc)
        if auth:
            return error_response(503, *auth)
        if exc.meta.status == 404:
            return error_response(
                503, "index_missing", "the search index does not exist yet; run the indexer"
            )
        if exc.meta.status in TRANSIENT_ES_STATUSES:
            return error_response(
                503, "search_backend_unavailable", "Elasticsearch is busy or recovering; retry later"
            )
        return error_response(502, "search_backend_error", "Elasticsearch rejected the query")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; it has been logged")
