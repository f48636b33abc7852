"""The read side of the image index: definition, versions behind the alias, _meta, summaries, runs."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from imgsearch.config import ElasticConfig

MAPPING_FILE = Path(__file__).resolve().parent.parent / "mappings" / "images.json"


def server_version(es: Elasticsearch) -> str:
    """The server version; also a reachability check (`GET /` is absent from minimal distributions)."""
    nodes = es.nodes.info(node_id="_local", metric="_none", filter_path="nodes.*.version").body
    return next(iter(nodes["nodes"].values()))["version"]


# Quantized vectors are searched approximately, then the best k x oversample are rescored with the
# float vectors (index_options.rescore_vector, Elasticsearch 8.18+). bench/recall.py: int8_hnsw with
# x2 and num_candidates 8k is the only variant with recall@10 >= 0.95 at 100k; bbq needs x3 or more.
RESCORE_OVERSAMPLE = {"int8": 2.0, "int4": 2.0, "bbq": 3.0}


def load_index_definition(config: ElasticConfig, meta: dict[str, object]) -> dict[str, object]:
    """Settings and mappings from mappings/images.json with configured shards, vector type and _meta."""
    definition = json.loads(MAPPING_FILE.read_text())
    body = copy.deepcopy(definition)
    index_settings = body["settings"]["index"]
    index_settings["number_of_shards"] = config.shards
    index_settings["number_of_replicas"] = config.replicas
    options = body["mappings"]["properties"]["feature"]["index_options"]
    options["type"] = config.vector_index_type
    options.pop("rescore_vector", None)
    if config.vector_index_type.endswith("flat"):  # no graph: Elasticsearch refuses m / ef_construction
        options.pop("m", None)
        options.pop("ef_construction", None)
    oversample = RESCORE_OVERSAMPLE.get(config.vector_index_type.split("_")[0])
    if oversample:
        options["rescore_vector"] = {"oversample": oversample}
    body["mappings"]["_meta"] = {**body["mappings"]["_meta"], **meta}
    return body


def version_name(alias: str, now: datetime) -> str:
    """A sortable physical index name such as images-20261121t030405123z (UTC, milliseconds)."""
    stamp = now.astimezone(UTC)
    return f"{alias}-{stamp:%Y%m%d}t{stamp:%H%M%S}{stamp.microsecond // 1000:03d}z"


def version_pattern(alias: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(alias)}-\d{{8}}t\d{{9}}z$")


def index_meta(es: Elasticsearch, index: str) -> dict[str, object]:
    """The `_meta` of one physical index (model, creation time, run id)."""
    return es.indices.get_mapping(index=index).body[index]["mappings"].get("_meta", {})


def aliased_indices(es: Elasticsearch, alias: str) -> list[str]:
    """Physical indices the alias points to now (empty when the alias does not exist)."""
    try:
        return sorted(es.indices.get_alias(name=alias).body.keys())
    except NotFoundError:
        return []


def list_versions(es: Elasticsearch, alias: str) -> list[str]:
    """All physical versions of this alias, newest first."""
    pattern = version_pattern(alias)
    names = es.indices.get(index=f"{alias}-*", expand_wildcards="open,closed").body.keys()
    return sorted((name for name in names if pattern.match(name)), reverse=True)


def version_summary(es: Elasticsearch, index: str) -> dict[str, object]:
    """Documents per status and the `_meta` of one physical index."""
    meta = index_meta(es, index)
    response = es.search(
        index=index,
        size=0,
        aggs={"statuses": {"terms": {"field": "status", "size": 20}}},
        track_total_hits=True,
    )
    buckets = response["aggregations"]["statuses"]["buckets"]
    return {
        "index": index,
        "documents": response["hits"]["total"]["value"],
        "statuses": {bucket["key"]: bucket["doc_count"] for bucket in buckets},
        "created_at": meta.get("created_at"),
        "model": meta.get("model"),
        "compute": meta.get("compute"),
    }


def runs_index(alias: str) -> str:
    return f"{alias}-runs"


def last_runs(es: Elasticsearch, alias: str, count: int = 5) -> list[dict[str, Any]]:
    """The newest run reports of this alias (without their failure lists); empty before the first run."""
    if not es.indices.exists(index=runs_index(alias)):
        return []
    response = es.search(
        index=runs_index(alias), size=count, sort=[{"started_at": "desc"}], source_excludes=["failures"]
    )
    return [hit["_source"] for hit in response["hits"]["hits"]]
