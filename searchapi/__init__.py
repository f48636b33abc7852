"""Search API: Flask app factory for image similarity search over the indexer's alias."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from elasticsearch import Elasticsearch
from flask import Flask

from indexer.features import FeatureExtractor
from indexer.settings import environ
from searchapi.config import load_search_config
from searchapi.errors import register_error_handlers
from searchapi.routes import bp
from searchapi.services import Services

log = logging.getLogger(__name__)


def create_app(
    test_config: Mapping[str, str] | None = None,
    *,
    es: Elasticsearch | None = None,
    extractor: FeatureExtractor | None = None,
) -> Flask:
    """Build the app; `test_config` overrides environment variables, `es`/`extractor` are reusable."""
    from indexer.sink import make_client

    config = load_search_config({**environ(), **(test_config or {})})
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    app.json.sort_keys = False
    if extractor is None:
        extractor = FeatureExtractor(config.model.weights, config.model.seed)
        extractor.warm_up()
    if es is None:
        es = make_client(config.elastic, max_retries=1).options(request_timeout=config.es_timeout)
    app.extensions["imgsearch"] = Services(config=config, es=es, extractor=extractor)
    app.register_blueprint(bp)
    register_error_handlers(app)
    log.info("search API ready on alias %s (model %s)", config.elastic.alias, extractor.info.weights)
    return app
