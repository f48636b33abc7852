"""Search routes: by image (upload, URL, base64) or by a stored image's vector, and the search page."""

from __future__ import annotations

import time
from collections.abc import Sequence

from flask import Blueprint, current_app, jsonify, request, send_from_directory

from imgsearch.features import RANDOM_WEIGHTS_WARNING
from searchapi.errors import ApiError, not_found
from searchapi.inputs import query_vector, request_parameters, services
from searchapi.metrics import stage, stage_timings_ms
from searchapi.params import SearchOptions, bool_parameter, search_options
from searchapi.search import find_similar

bp = Blueprint("search", __name__)


def model_info() -> dict[str, object]:
    info = services().extractor.info
    payload = info.as_meta()
    if info.is_random:
        payload["warning"] = RANDOM_WEIGHTS_WARNING
    return payload


def search_response(vector: Sequence[float], options: SearchOptions, started: float, exclude=None):
    svc = services()
    with stage("elasticsearch"):
        svc.ensure_index_model_matches()
        page = find_similar(
            svc.es,
            svc.alias,
            vector,
            size=options.size,
            from_=options.from_,
            min_score=options.min_score,
            exclude_relation_id=exclude,
            filters=options.filters,
            collapse=options.collapse,
        )
    return jsonify(
        {
            "hits": [hit.as_dict() for hit in page.hits],
            "from": options.from_,
            "size": options.size,
            "has_more": page.has_more,
            "collapse": options.collapse,
            "took_ms": round((time.perf_counter() - started) * 1000, 1),
            "timings_ms": stage_timings_ms(),
            "model": model_info(),
        }
    )


@bp.post("/search")
def search():
    started = time.perf_counter()
    params = request_parameters()
    options = search_options(params, services().config.filter_fields)
    return search_response(query_vector(params), options, started)


def stored_vector(image_id: str) -> tuple[list[float], str | None]:
    """The vector and product of an indexed image (404 unknown, 409 when its row failed)."""
    svc = services()
    with stage("elasticsearch"):
        found = svc.es.options(ignore_status=404).get(
            index=svc.alias, id=image_id, source=["feature", "relation_id"]
        )
    if not found.get("found"):
        raise not_found(image_id, found)
    source = found["_source"]
    if "feature" not in source:
        raise ApiError(409, "image_not_searchable", f"image {image_id!r} has no vector (its row failed)")
    return source["feature"], source.get("relation_id")


@bp.get("/images/<image_id>/similar")
def similar(image_id: str):
    started = time.perf_counter()
    params = request.args.to_dict()
    options = search_options(params, services().config.filter_fields)
    include_own = bool_parameter(params, "include_own_product", False)
    vector, relation_id = stored_vector(image_id)
    return search_response(vector, options, started, None if include_own else relation_id)


@bp.get("/")
def index_page():
    return send_from_directory(current_app.static_folder, "index.html")
