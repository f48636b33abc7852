"""Search routes: by image (upload, URL, base64) or by a stored image's vector, and the search page."""

from __future__ import annotations

import time
from collections.abc import Sequence

from flask import Blueprint, render_template

from imgsearch.features import RANDOM_WEIGHTS_WARNING
from searchapi.contract import ImageQuery, ImageUpload, SearchOptions, SimilarOptions, parse
from searchapi.errors import ApiError, not_found
from searchapi.inputs import query_vector, request_parameters, request_query, services
from searchapi.metrics import stage, stage_timings_ms
from searchapi.openapi import operation
from searchapi.responses import Hit, ModelInfo, SearchResult
from searchapi.search import find_similar

bp = Blueprint("search", __name__)

SIMILAR_PRODUCTS = {200: ("A page of similar products", SearchResult)}


def model_info() -> ModelInfo:
    info = services().extractor.info
    return ModelInfo(**info.as_meta(), warning=RANDOM_WEIGHTS_WARNING if info.is_random else None)


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
    return SearchResult(
        hits=[Hit(**hit.as_dict()) for hit in page.hits],
        from_=options.from_,
        size=options.size,
        has_more=page.has_more,
        collapse=options.collapse,
        took_ms=round((time.perf_counter() - started) * 1000, 1),
        timings_ms=stage_timings_ms(),
        model=model_info(),
    ).response()


def filter_context() -> dict[str, object]:
    return {"filter_fields": services().config.filter_fields}


@bp.post("/search")
@operation(
    "Similar products for a query image (upload, image_url or image_base64)",
    SIMILAR_PRODUCTS,
    errors=(400, 413, 415, 502, 503),
    query=SearchOptions,
    body={"multipart/form-data": (ImageUpload,), "application/json": (SearchOptions, ImageQuery)},
)
def search():
    started = time.perf_counter()
    params = request_parameters()
    options = parse(SearchOptions, params, filter_context())
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
@operation(
    "More like this: similar products from a stored image's vector (no model call)",
    SIMILAR_PRODUCTS,
    errors=(400, 404, 409, 502, 503),
    query=SimilarOptions,
)
def similar(image_id: str):
    started = time.perf_counter()
    options = parse(SimilarOptions, request_query(), filter_context())
    vector, relation_id = stored_vector(image_id)
    return search_response(vector, options, started, None if options.include_own_product else relation_id)


@bp.get("/")
@operation("The search page (HTML)", {200: ("HTML", "text/html")})
def index_page():
    info = services().extractor.info
    return render_template("index.html", warning=RANDOM_WEIGHTS_WARNING if info.is_random else None)
