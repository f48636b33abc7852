"""Image documents: read one, and the API-key protected writes (index one image, delete one)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, jsonify

from imgsearch.documents import CatalogRow, indexed_document
from imgsearch.errors import SUCCESS_STATUSES
from searchapi.auth import require_api_key
from searchapi.errors import not_found
from searchapi.inputs import query_vector, request_parameters, services
from searchapi.metrics import stage, stage_timings_ms
from searchapi.params import bad_parameter, int_parameter

bp = Blueprint("images", __name__)

MAX_IMAGE_ID = 2**63 - 1
MAX_RELATION_ID_LENGTH = 512
MAX_PHOTO_LENGTH = 2048
PUBLIC_FIELDS = ("relation_id", "photo", "image_url", "status", "error_reason", "error_message")
DATE_FIELDS = ("updated_at", "indexed_at")


@bp.get("/images/<image_id>")
def get_image(image_id: str):
    svc = services()
    with stage("elasticsearch"):
        found = svc.es.options(ignore_status=404).get(
            index=svc.alias, id=image_id, source_excludes=["feature"]
        )
    if not found.get("found"):
        raise not_found(image_id, found)
    source = found["_source"]
    fields = {name: source.get(name) for name in PUBLIC_FIELDS + DATE_FIELDS}
    return jsonify({"id": found["_id"], **fields, "searchable": source.get("status") in SUCCESS_STATUSES})


def text_parameter(params, name: str, limit: int, required: bool) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise bad_parameter(name, "is required")
        return None
    if not isinstance(value, str | int) or isinstance(value, bool) or len(str(value)) > limit:
        raise bad_parameter(name, f"must be a string of at most {limit} characters")
    return str(value)


@bp.post("/images")
@require_api_key
def put_image():
    """Index one image now (e.g. a product just added to the catalog) without waiting for the job."""
    params = request_parameters()
    if params.get("id") in (None, ""):
        raise bad_parameter("id", "is required (the catalog row's integer primary key)")
    image_id = int_parameter(params, "id", 0, 1, MAX_IMAGE_ID)
    relation_id = text_parameter(params, "relation_id", MAX_RELATION_ID_LENGTH, required=True)
    image_url = params.get("image_url") if isinstance(params.get("image_url"), str) else None
    photo = text_parameter(params, "photo", MAX_PHOTO_LENGTH, required=False) or image_url
    svc = services()
    vector = query_vector(params)
    row = CatalogRow(id=image_id, relation_id=relation_id, photo=photo, updated_at=datetime.now(UTC))
    document = indexed_document(row, image_url, vector, datetime.now(UTC))
    with stage("elasticsearch"):
        svc.ensure_index_model_matches()
        result = svc.es.index(index=svc.alias, id=str(image_id), document=document, refresh="wait_for")
    created = result["result"] == "created"
    body = {
        "id": str(image_id),
        "relation_id": relation_id,
        "result": result["result"],
        "index": result["_index"],
        "timings_ms": stage_timings_ms(),
    }
    return jsonify(body), 201 if created else 200


@bp.delete("/images/<image_id>")
@require_api_key
def delete_image(image_id: str):
    svc = services()
    with stage("elasticsearch"):
        result = svc.es.options(ignore_status=404).delete(index=svc.alias, id=image_id, refresh="wait_for")
    if result.get("result") != "deleted":
        raise not_found(image_id, result)
    return jsonify({"id": image_id, "result": "deleted", "index": result["_index"]})
