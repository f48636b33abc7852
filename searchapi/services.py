"""Long-lived objects of one API process: config, Elasticsearch client, model, index checks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from elasticsearch import Elasticsearch

from imgsearch.features import FeatureExtractor
from searchapi.config import SearchConfig
from searchapi.errors import ApiError
from searchapi.metrics import Metrics

MODEL_CHECK_TTL_SECONDS = 30.0


@dataclass
class Services:
    """Created once in create_app(); shared by all requests of the process."""

    config: SearchConfig
    es: Elasticsearch
    extractor: FeatureExtractor
    metrics: Metrics
    _checked_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def alias(self) -> str:
        return self.config.elastic.alias

    def index_model_mismatch(self) -> str | None:
        """Why the alias's vectors cannot be compared with this API's (another model), or None."""
        mappings = self.es.indices.get_mapping(index=self.alias).body
        ours = self.extractor.info
        for index, body in mappings.items():
            model = body.get("mappings", {}).get("_meta", {}).get("model", {})
            if model.get("fingerprint") != ours.fingerprint:
                return (
                    f"index {index} was built with model {model.get('id')} weights "
                    f"{model.get('weights')} ({model.get('fingerprint')}); this API runs "
                    f"{ours.weights} ({ours.fingerprint})"
                )
        return None

    def ensure_index_model_matches(self) -> None:
        """Refuse to query an index whose vectors come from another model (checked every 30 s)."""
        if time.monotonic() - self._checked_at < MODEL_CHECK_TTL_SECONDS:
            return
        with self._lock:
            mismatch = self.index_model_mismatch()
            if mismatch:
                raise ApiError(503, "model_mismatch", mismatch)
            self._checked_at = time.monotonic()
