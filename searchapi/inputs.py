"""The query image of a request (upload, image_url, base64) turned into a vector by the indexer's code."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from flask import current_app, request
from werkzeug.datastructures import MultiDict

from imgsearch.errors import RowFailure
from imgsearch.imaging import decode_image
from searchapi.contract import ImageQuery, bad_parameter, parse
from searchapi.errors import ApiError
from searchapi.metrics import stage
from searchapi.services import Services
from searchapi.urlfetch import fetch_image_url


def services() -> Services:
    return current_app.extensions["imgsearch"]


def request_parameters() -> Mapping[str, object]:
    """Query string, form fields and a JSON object merged into one mapping (JSON wins, then form)."""
    params: dict[str, object] = dict(MultiDict(request.args).items())
    # werkzeug files a part whose name it cannot read (a CR in it) under None: ignored like any unknown field
    params.update((name, value) for name, value in request.form.items() if name is not None)
    if request.mimetype == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "the JSON body must be an object")
        params.update(body)
    elif request.content_length and request.mimetype not in ("multipart/form-data", ""):
        if request.mimetype != "application/x-www-form-urlencoded":
            raise ApiError(
                415,
                "unsupported_media_type",
                "send multipart/form-data (file upload), application/json or a form",
            )
    return params


def request_query() -> Mapping[str, object]:
    """The query string alone (a GET's parameters), first value of each name."""
    return request.args.to_dict()


def query_image_bytes(params: Mapping[str, object]) -> bytes:
    """Exactly one of: multipart file `image`, `image_url`, `image_base64` (see ImageQuery)."""
    query: ImageQuery = parse(ImageQuery, {**params, "image": request.files.get("image")})
    if query.image:
        return query.image.read()
    if query.image_url:
        return download(query.image_url)
    return decode_base64(query.image_base64)


def download(image_url: str) -> bytes:
    config = services().config
    with stage("fetch"):
        return fetch_image_url(
            image_url,
            timeout=config.url_fetch_timeout,
            max_bytes=config.url_fetch_max_bytes,
            allowed_hosts=config.url_allowed_hosts,
        )


def decode_base64(value: str) -> bytes:
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    limit = services().config.max_upload_bytes
    if len(value) > limit * 4 // 3 + 4:
        raise ApiError(413, "payload_too_large", f"image_base64 decodes to more than {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_parameter("image_base64", "is not valid base64") from None


def image_vector(data: bytes) -> list[float]:
    """Shared indexer path: decode → 224x224 RGB → VGG16 → unit vector (400 for a bad image)."""
    svc = services()
    with stage("decode"):
        try:
            pixels = decode_image(data, svc.config.max_pixels)
        except RowFailure as failure:
            raise ApiError(400, f"image_{failure.reason}", failure.message) from None
    with stage("model"):
        try:
            return svc.extractor.extract_one(pixels).tolist()
        except ValueError as exc:
            raise ApiError(400, "image_no_features", str(exc)) from None


def query_vector(params: Mapping[str, object]) -> list[float]:
    return image_vector(query_image_bytes(params))
