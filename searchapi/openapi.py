"""The OpenAPI 3.1 description of every route (served at GET /openapi.json)."""

from __future__ import annotations

from searchapi.config import SearchConfig
from searchapi.params import MAX_FROM, MAX_SIZE

SCORE_DESCRIPTION = (
    "Similarity in [0, 1]. Vectors are L2-normalised and the field uses dot_product, so "
    "score = (1 + cosine) / 2: 1.0 is the same image, 0.5 is orthogonal (unrelated). "
    "Pick a min_score cut-off from your own catalog: search with known near-duplicates and known "
    "unrelated products and take a value between their score distributions."
)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, object]) -> dict[str, object]:
    return {"application/json": {"schema": schema}}


def error_responses(*statuses: int) -> dict[str, object]:
    meaning = {
        400: "Invalid parameter or image (the message names it)",
        401: "Missing or invalid API key",
        403: "Write endpoints are disabled (SEARCH_API_KEYS is empty)",
        404: "Unknown image id",
        409: "The image's row failed to index, so it has no vector",
        413: "Request body or image larger than the limit",
        415: "Unsupported Content-Type",
        502: "Elasticsearch rejected the query",
        503: "Elasticsearch unreachable or busy, index missing, or index built by another model",
    }
    return {str(s): {"description": meaning[s], "content": json_content(ref("Error"))} for s in statuses}


def search_parameters(config: SearchConfig) -> list[dict[str, object]]:
    return [
        {
            "name": "size",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SIZE, "default": 10},
            "description": "Products per page",
        },
        {
            "name": "from",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_FROM, "default": 0},
            "description": "Offset in products",
        },
        {
            "name": "min_score",
            "in": "query",
            "schema": {"type": "number", "minimum": 0, "maximum": 1},
            "description": SCORE_DESCRIPTION,
        },
        {
            "name": "collapse",
            "in": "query",
            "schema": {"type": "boolean", "default": True},
            "description": "One hit per product (relation_id); false returns images",
        },
        {
            "name": "filter",
            "in": "query",
            "schema": {"type": "string"},
            "description": "JSON object of field -> value or values; fields: "
            + ", ".join(config.filter_fields),
        },
    ]


def schemas(config: SearchConfig) -> dict[str, object]:
    string_or_strings = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["status", "code", "message"],
                    "properties": {
                        "status": {"type": "integer"},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                    },
                }
            },
        },
        "Hit": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "relation_id": {"type": "string"},
                "image_url": {"type": ["string", "null"]},
                "score": {"type": "number", "description": SCORE_DESCRIPTION},
            },
        },
        "Model": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "weights": {"type": "string"},
                "fingerprint": {"type": "string"},
                "dims": {"type": "integer"},
                "warning": {"type": "string"},
            },
        },
        "SearchResult": {
            "type": "object",
            "properties": {
                "hits": {"type": "array", "items": ref("Hit")},
                "from": {"type": "integer"},
                "size": {"type": "integer"},
                "has_more": {"type": "boolean", "description": "Another page exists"},
                "collapse": {"type": "boolean"},
                "took_ms": {"type": "number"},
                "timings_ms": {
                    "type": "object",
                    "additionalProperties": {"type": "number"},
                    "description": "fetch, decode, model, elasticsearch",
                },
                "model": ref("Model"),
            },
        },
        "SearchJson": {
            "type": "object",
            "description": "Exactly one of image_url, image_base64",
            "properties": {
                "image_url": {"type": "string", "format": "uri"},
                "image_base64": {"type": "string", "description": "Base64, optionally a data: URL"},
                "size": {"type": "integer"},
                "from": {"type": "integer"},
                "min_score": {"type": "number"},
                "collapse": {"type": "boolean"},
                "filter": {
                    "type": "object",
                    "additionalProperties": string_or_strings,
                    "description": "Fields: " + ", ".join(config.filter_fields),
                },
            },
        },
        "SearchUpload": {
            "type": "object",
            "required": ["image"],
            "properties": {"image": {"type": "string", "format": "binary"}},
        },
        "Image": {
            "type": "object",
            "properties": {
                name: {"type": ["string", "null"]}
                for name in (
                    "id",
                    "relation_id",
                    "photo",
                    "image_url",
                    "status",
                    "error_reason",
                    "error_message",
                    "updated_at",
                    "indexed_at",
                )
            }
            | {"searchable": {"type": "boolean"}},
        },
        "ImageWrite": {
            "type": "object",
            "required": ["id", "relation_id"],
            "description": "Exactly one of image (multipart), image_url, image_base64",
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "relation_id": {"type": "string"},
                "photo": {"type": "string"},
                "image_url": {"type": "string", "format": "uri"},
                "image_base64": {"type": "string"},
                "image": {"type": "string", "format": "binary"},
            },
        },
        "WriteResult": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "relation_id": {"type": "string"},
                "result": {"type": "string"},
                "index": {"type": "string"},
                "timings_ms": {"type": "object"},
            },
        },
        "Ready": {
            "type": "object",
            "properties": {
                "ready": {"type": "boolean"},
                "reason": {"type": "string"},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                "compute": ref("Compute"),
            },
        },
        "Compute": {
            "type": "object",
            "description": "How this process computes vectors (VGG16_PRECISION, VGG16_COMPILE) and why",
            "properties": {
                "precision": {"type": "string", "enum": ["float32", "bfloat16"]},
                "compile": {"type": "string", "enum": ["graph", "xla"]},
                "batch_size": {
                    "type": "integer",
                    "description": "images per model call an indexer would use here (a search sends one)",
                },
                "reason": {"type": "string"},
            },
        },
        "Stats": {
            "type": "object",
            "properties": {
                "alias": {"type": "string"},
                "documents": {"type": "integer"},
                "indices": {"type": "array", "items": {"type": "object"}},
                "model": ref("Model"),
                "compute": ref("Compute"),
                "model_matches": {"type": "boolean"},
                "last_run": {"type": ["object", "null"]},
            },
        },
    }


def image_id_parameter() -> dict[str, object]:
    return {"name": "image_id", "in": "path", "required": True, "schema": {"type": "string"}}


def paths(config: SearchConfig) -> dict[str, object]:
    secured = [{"apiKey": []}, {"bearer": []}]
    ok_json = {"description": "OK", "content": json_content({"type": "object"})}
    return {
        "/search": {
            "post": {
                "summary": "Similar products for a query image (upload, image_url or image_base64)",
                "parameters": search_parameters(config),
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {"schema": ref("SearchUpload")},
                        "application/json": {"schema": ref("SearchJson")},
                    },
                },
                "responses": {
                    "200": {
                        "description": "A page of similar products",
                        "content": json_content(ref("SearchResult")),
                    },
                    **error_responses(400, 413, 415, 502, 503),
                },
            }
        },
        "/images/{image_id}/similar": {
            "get": {
                "summary": "More like this: similar products from a stored image's vector (no model call)",
                "parameters": [
                    image_id_parameter(),
                    *search_parameters(config),
                    {
                        "name": "include_own_product",
                        "in": "query",
                        "schema": {"type": "boolean", "default": False},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "A page of similar products",
                        "content": json_content(ref("SearchResult")),
                    },
                    **error_responses(400, 404, 409, 502, 503),
                },
            }
        },
        "/images/{image_id}": {
            "get": {
                "summary": "One indexed image (without its vector)",
                "parameters": [image_id_parameter()],
                "responses": {
                    "200": {"description": "The image", "content": json_content(ref("Image"))},
                    **error_responses(404, 503),
                },
            },
            "delete": {
                "summary": "Remove an image from the live index (the next indexer run re-adds it "
                "if its row is still in the catalog)",
                "security": secured,
                "parameters": [image_id_parameter()],
                "responses": {"200": ok_json, **error_responses(401, 403, 404, 503)},
            },
        },
        "/images": {
            "post": {
                "summary": "Index one catalog image now, before the next indexer run",
                "security": secured,
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {"schema": ref("ImageWrite")},
                        "application/json": {"schema": ref("ImageWrite")},
                    },
                },
                "responses": {
                    "201": {"description": "Created", "content": json_content(ref("WriteResult"))},
                    "200": {"description": "Replaced", "content": json_content(ref("WriteResult"))},
                    **error_responses(400, 401, 403, 413, 415, 503),
                },
            }
        },
        "/stats": {
            "get": {
                "summary": "Alias, live index, documents per status, models, last indexing run",
                "responses": {
                    "200": {"description": "Statistics", "content": json_content(ref("Stats"))},
                    **error_responses(503),
                },
            }
        },
        "/health": {"get": {"summary": "Liveness (no dependency checked)", "responses": {"200": ok_json}}},
        "/ready": {
            "get": {
                "summary": "Readiness: Elasticsearch reachable, model warm, same model as the index",
                "responses": {
                    "200": {"description": "Ready", "content": json_content(ref("Ready"))},
                    "503": {
                        "description": "Not ready, with the reason",
                        "content": json_content(ref("Ready")),
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics: latency per endpoint and per stage",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": ok_json}}},
        "/": {
            "get": {
                "summary": "The search page (HTML)",
                "responses": {
                    "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
                },
            }
        },
    }


def openapi_document(config: SearchConfig) -> dict[str, object]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Image similarity search API",
            "version": "1.0.0",
            "description": "Find similar products by image over an Elasticsearch kNN index. "
            + SCORE_DESCRIPTION,
        },
        "paths": paths(config),
        "components": {
            "schemas": schemas(config),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
