"""Operations routes: liveness, readiness, index statistics, Prometheus metrics, OpenAPI document."""

from __future__ import annotations

from elastic_transport import TransportError
from elasticsearch import ApiError as EsApiError
from flask import Blueprint, Response, current_app, jsonify

from imgsearch.indices import aliased_indices, last_runs, version_summary
from searchapi.errors import ApiError, es_readiness_problem
from searchapi.inputs import services
from searchapi.openapi import openapi_document, operation
from searchapi.responses import Compute, Health, IndexSummary, Ready, Stats
from searchapi.routes import model_info

bp = Blueprint("ops", __name__)

LAST_RUN_FIELDS = (
    "run_id",
    "mode",
    "index",
    "outcome",
    "message",
    "started_at",
    "finished_at",
    "elapsed_seconds",
    "rows_seen",
    "statuses",
    "errors",
    "images_per_second",
)


@bp.get("/health")
@operation("Liveness (no dependency checked)", {200: ("Alive", Health)})
def health():
    """Liveness: the process answers (no dependency is checked, so a restart loop is never caused)."""
    return Health(status="ok").response()


def readiness_problem() -> tuple[str, dict[str, str]]:
    """('', checks) when ready, else (the first failing check's reason, checks).

    The model is always warm here: create_app() warms it before the app can take a request."""
    svc = services()
    checks = {"model": "warmed", "elasticsearch": "unknown", "index": "unknown"}
    try:
        live = aliased_indices(svc.es, svc.alias)
        checks["elasticsearch"] = "reachable"
        if not live:
            checks["index"] = "missing"
            return f"alias {svc.alias} points to no index yet; run the indexer", checks
        mismatch = svc.index_model_mismatch()
    except (TransportError, EsApiError) as exc:
        checks["elasticsearch"], reason = es_readiness_problem(exc, svc.config.elastic)
        return reason, checks
    if mismatch:
        checks["index"] = "model mismatch"
        return mismatch, checks
    checks["index"] = ", ".join(live)
    return "", checks


@bp.get("/ready")
@operation(
    "Readiness: Elasticsearch reachable, model warm, same model as the index",
    {200: ("Ready", Ready), 503: ("Not ready, with the reason", Ready)},
)
def ready():
    """Readiness: Elasticsearch answers, the model is warm, the index was built by the same model."""
    reason, checks = readiness_problem()
    compute = Compute(**services().extractor.compute.as_meta())
    return Ready(ready=not reason, reason=reason or None, checks=checks, compute=compute).response(
        503 if reason else 200
    )


def last_run(svc) -> dict[str, object] | None:
    runs = last_runs(svc.es, svc.alias, 1)
    return {name: runs[0].get(name) for name in LAST_RUN_FIELDS} if runs else None


@bp.get("/stats")
@operation(
    "Alias, live index, documents per status, models, last indexing run",
    {200: ("Statistics", Stats)},
    errors=(502, 503),
)
def stats():
    """What the API serves: alias → index, documents per status, both models, the last indexing run."""
    svc = services()
    live = aliased_indices(svc.es, svc.alias)
    if not live:
        raise ApiError(503, "index_missing", f"alias {svc.alias} points to no index yet; run the indexer")
    summaries = [IndexSummary(**version_summary(svc.es, index)) for index in live]
    api_model = model_info()
    return Stats(
        alias=svc.alias,
        indices=summaries,
        documents=sum(summary.documents for summary in summaries),
        model=api_model,
        compute=Compute(**svc.extractor.compute.as_meta()),
        model_matches=all(
            (summary.model or {}).get("fingerprint") == api_model.fingerprint for summary in summaries
        ),
        last_run=last_run(svc),
    ).response()


@bp.get("/metrics")
@operation(
    "Prometheus metrics: latency per endpoint and per stage", {200: ("Prometheus text format", "text/plain")}
)
def metrics():
    body, content_type = services().metrics.exposition()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
@operation("This document", {200: ("OpenAPI 3.1", dict)})
def openapi():
    return jsonify(openapi_document(current_app, services().config))
