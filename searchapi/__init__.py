"""Search API: Flask app factory for image similarity search over the indexer's alias."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from elasticsearch import Elasticsearch
from flask import Flask

from imgsearch.features import FeatureExtractor
from imgsearch.settings import environ
from searchapi import queries
from searchapi.config import SearchConfig, load_search_config
from searchapi.search import find_similar

# Its public surface, what bench/ and demo/ use: the app, its client, and the very kNN request it sends
# (find_similar, and the pure builders in queries) so that benches measure what the API asks.
__all__ = ["create_app", "find_similar", "make_search_client", "queries"]

log = logging.getLogger(__name__)


def make_search_client(config: SearchConfig) -> Elasticsearch:
    """A client whose every call ends within SEARCH_ES_TIMEOUT: one quick retry for a dropped
    connection, none for a timeout (a slow cluster must become a 503, not a longer wait).
    Credentials and TLS come from the ES_* variables, as for the indexer."""
    from imgsearch.esclient import make_client

    return make_client(
        config.elastic, request_timeout=config.es_timeout, max_retries=1, retry_on_timeout=False
    )


def create_app(
    test_config: Mapping[str, str] | None = None,
    *,
    es: Elasticsearch | None = None,
    extractor: FeatureExtractor | None = None,
) -> Flask:
    """Build the app; `test_config` overrides environment variables, `es`/`extractor` are reusable."""
    from searchapi import images, ops, routes
    from searchapi.cors import init_cors
    from searchapi.errors import register_error_handlers
    from searchapi.metrics import init_metrics
    from searchapi.services import Services

    config = load_search_config({**environ(), **(test_config or {})})
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    app.json.sort_keys = False
    if extractor is None:
        extractor = FeatureExtractor.from_config(config.model)
    extractor.warm_up()
    services = Services(
        config=config,
        es=es or make_search_client(config),
        extractor=extractor,
        metrics=init_metrics(app),
    )
    app.extensions["imgsearch"] = services
    for blueprint in (routes.bp, images.bp, ops.bp):
        app.register_blueprint(blueprint)
    init_cors(app, config.cors_origins)
    register_error_handlers(app)
    log.info(
        "search API ready on alias %s (model %s in %s, %s; writes %s, CORS origins %s)",
        config.elastic.alias,
        extractor.info.weights,
        extractor.compute.precision,
        extractor.compute.compile,
        "enabled" if config.writes_enabled else "disabled",
        ", ".join(config.cors_origins) or "none",
    )
    return app
