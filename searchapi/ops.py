"""Operations routes: liveness, readiness, index statistics, Prometheus metrics, OpenAPI document."""

from __future__ import annotations

from elastic_transport import TransportError
from elasticsearch import ApiError as EsApiError
from flask import Blueprint, Response, jsonify

from imgsearch.indices import aliased_indices, last_runs, version_summary
from searchapi.errors import ApiError, es_readiness_problem
from searchapi.inputs import services
from searchapi.openapi import openapi_document
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
def health():
    """Liveness: the process answers (no dependency is checked, so a restart loop is never caused)."""
    return jsonify({"status": "ok"})


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
def ready():
    """Readiness: Elasticsearch answers, the model is warm, the index was built by the same model."""
    reason, checks = readiness_problem()
    compute = services().extractor.compute.as_meta()
    if reason:
        return jsonify({"ready": False, "reason": reason, "checks": checks, "compute": compute}), 503
    return jsonify({"ready": True, "checks": checks, "compute": compute})


def last_run(svc) -> dict[str, object] | None:
    runs = last_runs(svc.es, svc.alias, 1)
    return {name: runs[0].get(name) for name in LAST_RUN_FIELDS} if runs else None


@bp.get("/stats")
def stats():
    """What the API serves: alias → index, documents per status, both models, the last indexing run."""
    svc = services()
    live = aliased_indices(svc.es, svc.alias)
    if not live:
        raise ApiError(503, "index_missing", f"alias {svc.alias} points to no index yet; run the indexer")
    summaries = [version_summary(svc.es, index) for index in live]
    api_model = model_info()
    return jsonify(
        {
            "alias": svc.alias,
            "indices": [
                {
                    "index": summary["index"],
                    "documents": summary["documents"],
                    "statuses": summary["statuses"],
                    "created_at": summary["created_at"],
                    "model": summary["model"],
                    "compute": summary["compute"],
                }
                for summary in summaries
            ],
            "documents": sum(summary["documents"] for summary in summaries),
            "model": api_model,
            "compute": svc.extractor.compute.as_meta(),
            "model_matches": all(
                (summary["model"] or {}).get("fingerprint") == api_model["fingerprint"]
                for summary in summaries
            ),
            "last_run": last_run(svc),
        }
    )


@bp.get("/metrics")
def metrics():
    body, content_type = services().metrics.exposition()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(services().config))
