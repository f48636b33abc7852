"""HTTP routes: search by image (upload, URL, base64) or by stored image id, and health."""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass

from flask import Blueprint, current_app, jsonify, request, send_from_directory
from werkzeug.datastructures import MultiDict

from indexer.errors import RowFailure
from indexer.features import RANDOM_WEIGHTS_WARNING
from indexer.imaging import decode_image
from searchapi.errors import ApiError
from searchapi.search import find_similar
from searchapi.services import Services
from searchapi.urlfetch import fetch_image_url

bp = Blueprint("search", __name__)

MAX_SIZE = 100
MAX_FROM = 900


def services() -> Services:
    return current_app.extensions["imgsearch"]


def bad_parameter(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{name}: {message}")


def int_parameter(params: MultiDict, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise bad_parameter(name, "must be an integer")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise bad_parameter(name, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise bad_parameter(name, f"must be between {low} and {high}, got {value}")
    return value


def score_parameter(params: MultiDict) -> float | None:
    raw = params.get("min_score")
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise bad_parameter("min_score", f"must be a number, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise bad_parameter("min_score", f"must be between 0 and 1, got {value}")
    return value


def request_parameters() -> tuple[MultiDict, dict]:
    """Query string + form fields + JSON object, merged (JSON wins); the JSON body separately."""
    params = MultiDict(request.args)
    params.update(request.form)
    body: dict = {}
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "the JSON body must be an object")
        params.update({k: v for k, v in body.items() if k in ("size", "from", "min_score")})
    return params, body


def query_image_bytes(body: dict) -> bytes:
    """The query image from multipart `image`, JSON/form `image_url`, or JSON/form `image_base64`."""
    config = services().config
    upload = request.files.get("image")
    image_url = body.get("image_url") or request.form.get("image_url")
    image_base64 = body.get("image_base64") or request.form.get("image_base64")
    given = [
        name
        for name, value in (("image", upload), ("image_url", image_url), ("image_base64", image_base64))
        if value
    ]
    if len(given) != 1:
        raise ApiError(
            400,
            "missing_image" if not given else "ambiguous_image",
            "send exactly one of: multipart file `image`, `image_url`, `image_base64`",
        )
    if upload:
        return upload.read()
    if image_url:
        if not isinstance(image_url, str):
            raise bad_parameter("image_url", "must be a string")
        return fetch_image_url(
            image_url,
            timeout=config.url_fetch_timeout,
            max_bytes=config.url_fetch_max_bytes,
            allowed_hosts=config.url_allowed_hosts,
        )
    return decode_base64(image_base64)


def decode_base64(value: object) -> bytes:
    if not isinstance(value, str):
        raise bad_parameter("image_base64", "must be a string")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_parameter("image_base64", "is not valid base64") from None


def query_vector(data: bytes) -> list[float]:
    """Shared indexer path: decode → 224x224 RGB → VGG16 → unit vector."""
    try:
        pixels = decode_image(data, services().config.max_pixels)
    except RowFailure as failure:
        raise ApiError(400, f"image_{failure.reason}", failure.message) from None
    try:
        return services().extractor.extract_one(pixels).tolist()
    except ValueError as exc:
        raise ApiError(400, "image_no_features", str(exc)) from None


def model_info() -> dict[str, object]:
    info = services().extractor.info
    payload = info.as_meta()
    if info.is_random:
        payload["warning"] = RANDOM_WEIGHTS_WARNING
    return payload


@dataclass(frozen=True)
class Page:
    """Validated paging parameters of a similarity search."""

    size: int
    from_: int
    min_score: float | None


def page_parameters(params: MultiDict) -> Page:
    return Page(
        size=int_parameter(params, "size", 10, 1, MAX_SIZE),
        from_=int_parameter(params, "from", 0, 0, MAX_FROM),
        min_score=score_parameter(params),
    )


def search_response(vector: list[float], page: Page, started: float, exclude_relation_id=None):
    svc = services()
    svc.ensure_index_model_matches()
    result = find_similar(
        svc.es,
        svc.config.elastic.alias,
        vector,
        size=page.size,
        from_=page.from_,
        min_score=page.min_score,
        exclude_relation_id=exclude_relation_id,
    )
    return jsonify(
        {
            "hits": [hit.as_dict() for hit in result.hits],
            "from": page.from_,
            "size": page.size,
            "took_ms": round((time.perf_counter() - started) * 1000, 1),
            "model": model_info(),
        }
    )


@bp.post("/search")
def search():
    started = time.perf_counter()
    params, body = request_parameters()
    page = page_parameters(params)
    vector = query_vector(query_image_bytes(body))
    return search_response(vector, page, started)


@bp.get("/images/<image_id>/similar")
def similar(image_id: str):
    started = time.perf_counter()
    page = page_parameters(MultiDict(request.args))
    svc = services()
    found = svc.es.options(ignore_status=404).get(
        index=svc.config.elastic.alias, id=image_id, source=["feature", "relation_id"]
    )
    source = found.get("_source") if found.get("found") else None
    if not source:
        raise ApiError(404, "image_not_found", f"no image with id {image_id!r} in the index")
    if "feature" not in source:
        raise ApiError(409, "image_not_searchable", f"image {image_id!r} has no vector (its row failed)")
    include_own = request.args.get("include_own_product", "false").lower() in ("1", "true", "yes")
    exclude = None if include_own else source.get("relation_id")
    return search_response(source["feature"], page, started, exclude)


@bp.get("/health")
def health():
    return jsonify({"status": "ok"})


@bp.get("/")
def index_page():
    return send_from_directory(current_app.static_folder, "index.html")
