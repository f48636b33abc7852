"""Image documents: read one, and the API-key protected writes (index one image, delete one)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint

from imgsearch.documents import CatalogRow, indexed_document
from imgsearch.errors import SUCCESS_STATUSES
from searchapi.auth import require_api_key
from searchapi.contract import ImageQuery, ImageUpload, ImageWrite, parse
from searchapi.errors import not_found
from searchapi.inputs import query_vector, request_parameters, services
from searchapi.metrics import stage, stage_timings_ms
from searchapi.openapi import operation
from searchapi.responses import DeleteResult, ImageRecord, WriteResult

bp = Blueprint("images", __name__)

PUBLIC_FIELDS = ("relation_id", "photo", "image_url", "status", "error_reason", "error_message")
DATE_FIELDS = ("updated_at", "indexed_at")


@bp.get("/images/<image_id>")
@operation(
    "One indexed image (without its vector)", {200: ("The image", ImageRecord)}, errors=(404, 502, 503)
)
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
    searchable = source.get("status") in SUCCESS_STATUSES
    return ImageRecord(id=found["_id"], **fields, searchable=searchable).response()


@bp.post("/images")
@require_api_key
@operation(
    "Index one catalog image now, before the next indexer run",
    {201: ("Created", WriteResult), 200: ("Replaced", WriteResult)},
    errors=(400, 401, 403, 413, 415, 502, 503),
    body={"multipart/form-data": (ImageWrite, ImageUpload), "application/json": (ImageWrite, ImageQuery)},
    secured=True,
)
def put_image():
    """Index one image now (e.g. a product just added to the catalog) without waiting for the job."""
    params = request_parameters()
    write: ImageWrite = parse(ImageWrite, params)
    image_url = params.get("image_url") if isinstance(params.get("image_url"), str) else None
    photo = write.photo or image_url
    svc = services()
    vector = query_vector(params)
    row = CatalogRow(id=write.id, relation_id=write.relation_id, photo=photo, updated_at=datetime.now(UTC))
    document = indexed_document(row, image_url, vector, datetime.now(UTC))
    with stage("elasticsearch"):
        svc.ensure_index_model_matches()
        result = svc.es.index(index=svc.alias, id=str(write.id), document=document, refresh="wait_for")
    answer = WriteResult(
        id=str(write.id),
        relation_id=write.relation_id,
        result=result["result"],
        index=result["_index"],
        timings_ms=stage_timings_ms(),
    )
    return answer.response(201 if result["result"] == "created" else 200)


@bp.delete("/images/<image_id>")
@require_api_key
@operation(
    "Remove an image from the live index (the next indexer run re-adds it if its row is in the catalog)",
    {200: ("Deleted", DeleteResult)},
    errors=(401, 403, 404, 502, 503),
    secured=True,
)
def delete_image(image_id: str):
    svc = services()
    with stage("elasticsearch"):
        result = svc.es.options(ignore_status=404).delete(index=svc.alias, id=image_id, refresh="wait_for")
    if result.get("result") != "deleted":
        raise not_found(image_id, result)
    return DeleteResult(id=image_id, result="deleted", index=result["_index"]).response()
