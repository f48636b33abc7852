"""The one place Elasticsearch clients are built (TLS, credentials) and their auth failures explained."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from elastic_transport import TlsError
from elasticsearch import ApiError, AuthenticationException, AuthorizationException, Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from imgsearch.config import ElasticConfig

log = logging.getLogger(__name__)

ROLES_HINT = "deploy/elasticsearch/README.md"


def make_client(
    config: ElasticConfig,
    *,
    request_timeout: float | None = None,
    max_retries: int = 3,
    retry_on_timeout: bool = True,
) -> Elasticsearch:
    """The one Elasticsearch client factory: every node of ES_URL with its credentials and TLS settings.

    With several nodes a request that cannot connect to one is sent to the next (within max_retries),
    and the transport leaves a dead node aside for a while, so a cluster that loses a node keeps serving.

    Batch work (indexer, admin, tools) takes the defaults: ES_REQUEST_TIMEOUT and retries on timeouts.
    The API passes its own short timeout and no retry on timeout, so a slow cluster becomes a 503.
    Created on demand, never at import time.
    """
    return Elasticsearch(
        config.urls,
        request_timeout=config.request_timeout if request_timeout is None else request_timeout,
        max_retries=max_retries,
        retry_on_timeout=retry_on_timeout,
        serializer=OrjsonSerializer(),  # several times json's speed on vectors (bench.ingest)
        **connection_options(config),
    )


def connection_options(config: ElasticConfig) -> dict[str, Any]:
    """Keyword arguments of `Elasticsearch(...)` for authentication and TLS."""
    options: dict[str, Any] = {}
    if config.api_key:
        options["api_key"] = config.api_key
    elif config.username:
        options["basic_auth"] = (config.username, config.password or "")
    if not config.uses_tls:
        if config.credentials_from:
            log.warning(
                "sending Elasticsearch credentials (%s) over plain http to %s; use https in production",
                config.credentials_from,
                config.url,
            )
        return options
    if config.ssl_fingerprint:
        options["ssl_assert_fingerprint"] = config.ssl_fingerprint
    elif config.ca_certs:
        options["ca_certs"] = config.ca_certs
    elif not config.verify_certs:
        log.warning(
            "!!! ES_VERIFY_CERTS=false: the certificate of %s is NOT verified; anyone on the path can "
            "read the credentials and the data. Set ES_CA_CERTS or ES_SSL_FINGERPRINT instead. !!!",
            config.url,
        )
        options["verify_certs"] = False
        options["ssl_show_warn"] = False
    else:
        # The operating system's trust store (SSL_CERT_FILE/SSL_CERT_DIR honoured), for a cluster whose
        # certificate comes from a public or company CA installed on the host.
        options["ssl_context"] = ssl.create_default_context()
    return options


def failure_message(exc: BaseException, config: ElasticConfig) -> str | None:
    """An operator-facing explanation of a credentials, privilege or TLS failure; None for others."""
    if isinstance(exc, AuthenticationException):
        if not config.credentials_from:
            return (
                "Elasticsearch requires authentication (401) and no credentials are configured: "
                "set ES_API_KEY, or ES_USERNAME and ES_PASSWORD"
            )
        return f"Elasticsearch rejected the credentials (401): check {config.credentials_from}"
    if isinstance(exc, AuthorizationException):
        return (
            f"Elasticsearch denied the request (403) to the credentials in "
            f"{config.credentials_from or '(none)'}: {error_reason(exc)}; give them the role from "
            f"{ROLES_HINT} (python -m deploy.elasticsearch.security)"
        )
    if isinstance(exc, TlsError):
        how = (
            "ES_SSL_FINGERPRINT"
            if config.ssl_fingerprint
            else "ES_CA_CERTS"
            if config.ca_certs
            else "the system trust store (or set ES_CA_CERTS / ES_SSL_FINGERPRINT)"
        )
        return f"TLS connection to {config.url} failed ({tls_detail(exc)}): check {how}"
    return None


def error_reason(exc: ApiError) -> str:
    """The `reason` Elasticsearch gave (which action, which user or key, which indices)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    if isinstance(error, dict) and error.get("reason"):
        return str(error["reason"])
    # HEAD requests (exists checks) carry no body, hence no reason.
    return (
        exc.message
        if exc.message and exc.message != "None"
        else "no details in the response (an exists check)"
    )


def tls_detail(exc: TlsError) -> str:
    cause = exc.errors[0] if getattr(exc, "errors", None) else None
    return str(cause or exc.message or exc)


def is_auth_failure(exc: BaseException) -> bool:
    """A 401 or 403 from Elasticsearch: retrying cannot help, the configuration must change."""
    return isinstance(exc, (AuthenticationException, AuthorizationException))
