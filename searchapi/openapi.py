"""GET /openapi.json (OpenAPI 3.1), assembled from the app's routes and the request/response models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from pydantic import TypeAdapter

from searchapi.config import SearchConfig
from searchapi.contract import SCORE_DESCRIPTION, ImageUpload
from searchapi.errors import ErrorBody

IMAGE_MEDIA_TYPES = "image/jpeg, image/png, image/gif, image/webp, image/bmp, image/tiff"
ERROR_MEANINGS = {
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
SECURITY = [{"apiKey": []}, {"bearer": []}]
Answer = type | str  # a model (JSON), or the media type of a text answer


@dataclass(frozen=True)
class Operation:
    """What /openapi.json says about one route; the models are the ones the route validates with."""

    summary: str
    answers: Mapping[int, tuple[str, Answer]]
    errors: tuple[int, ...] = ()
    query: type | None = None
    body: Mapping[str, tuple[type, ...]] = field(default_factory=dict)
    secured: bool = False


def operation(summary: str, answers: Mapping[int, tuple[str, Answer]], **details: Any) -> Callable:
    """Attach the route's description to its view function (read by `openapi_document`)."""

    def describe(view: Callable) -> Callable:
        view.openapi = Operation(summary, answers, **details)
        return view

    return describe


class Schemas:
    """Collects the JSON Schemas of the models into `components.schemas` and hands out references."""

    def __init__(self, filter_fields: tuple[str, ...]) -> None:
        self.components: dict[str, Any] = {}
        self.filter_fields = filter_fields

    def ref(self, model: type, mode: str) -> dict[str, Any]:
        """A reference to the model's component (a plain type such as `dict` is inlined)."""
        if not hasattr(model, "__pydantic_fields__"):
            return self.schema(model, mode)
        name = model.__name__
        if name not in self.components:
            schema = self.schema(model, mode)
            self.components.update(schema.pop("$defs", {}))
            self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def merged(self, models: tuple[type, ...], mode: str) -> dict[str, Any]:
        """One object with the fields of all `models` (flat, so that form tools see every part)."""
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for model in models:
            schema = self.schema(model, mode)
            self.components.update(schema.pop("$defs", {}))
            merged["properties"].update(schema["properties"])
            merged["required"] += schema.get("required", [])
            merged.update({key: schema[key] for key in ("oneOf",) if key in schema})
        merged["description"] = " ".join(model.__doc__ or "" for model in models)
        return merged

    def schema(self, model: type, mode: str) -> dict[str, Any]:
        schema = TypeAdapter(model).json_schema(mode=mode, ref_template="#/components/schemas/{model}")
        return self.tidy(schema)

    def tidy(self, schema: Any) -> Any:
        """Drop pydantic's titles and null defaults; name the fields a `filter` object may use."""
        if isinstance(schema, list):
            return [self.tidy(item) for item in schema]
        if not isinstance(schema, dict):
            return schema
        tidied = {
            key: self.tidy(value)
            for key, value in schema.items()
            if not (key == "title" and isinstance(value, str)) and not (key == "default" and value is None)
        }
        properties = tidied.get("properties")
        if isinstance(properties, dict) and "filter" in properties:
            properties["filter"]["propertyNames"] = {"enum": list(self.filter_fields)}
            properties["filter"]["description"] += "; fields: " + ", ".join(self.filter_fields)
        return tidied

    def query_parameters(self, model: type) -> list[dict[str, Any]]:
        schema = self.schema(model, "validation")
        required = set(schema.get("required", ()))
        parameters = []
        for name, prop in schema["properties"].items():
            parameter = {"name": name, "in": "query", "required": name in required}
            if "description" in prop:
                parameter["description"] = prop.pop("description")
            if prop.get("type") == "object":  # sent as JSON text
                parameter["content"] = {"application/json": {"schema": prop}}
            else:
                parameter["schema"] = prop
            parameters.append(parameter)
        return parameters


def content(schemas: Schemas, media_type: str, models: tuple[type, ...], mode: str) -> dict[str, Any]:
    schema = schemas.ref(models[0], mode) if len(models) == 1 else schemas.merged(models, mode)
    entry: dict[str, Any] = {"schema": schema}
    if ImageUpload in models:
        entry["encoding"] = {"image": {"contentType": IMAGE_MEDIA_TYPES}}
    return {media_type: entry}


def answer(schemas: Schemas, description: str, model: Answer) -> dict[str, Any]:
    if isinstance(model, str):
        return {"description": description, "content": {model: {"schema": {"type": "string"}}}}
    return {
        "description": description,
        "content": content(schemas, "application/json", (model,), "serialization"),
    }


def describe(schemas: Schemas, op: Operation, path_names: list[str]) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in path_names
    ]
    if op.query is not None:
        parameters += schemas.query_parameters(op.query)
    responses = {str(status): answer(schemas, *described) for status, described in op.answers.items()}
    for status in op.errors:
        responses[str(status)] = answer(schemas, ERROR_MEANINGS[status], ErrorBody)
    described: dict[str, Any] = {"summary": op.summary, "parameters": parameters, "responses": responses}
    if op.body:
        body: dict[str, Any] = {}
        for media_type, models in op.body.items():
            body.update(content(schemas, media_type, models, "validation"))
        described["requestBody"] = {"required": True, "content": body}
    if op.secured:
        described["security"] = SECURITY
    return described


def paths(app: Flask, schemas: Schemas) -> dict[str, Any]:
    """Every route whose view carries an `operation`, under its OpenAPI path (`{image_id}`)."""
    documented: dict[str, Any] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        op = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if op is None:
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        names = [name for name in rule.arguments]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            documented.setdefault(path, {})[method.lower()] = describe(schemas, op, names)
    return documented


def openapi_document(app: Flask, config: SearchConfig) -> dict[str, object]:
    schemas = Schemas(config.filter_fields)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Image similarity search API",
            "version": "1.0.0",
            "description": "Find similar products by image over an Elasticsearch kNN index. "
            + SCORE_DESCRIPTION,
        },
        "paths": paths(app, schemas),
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
