"""The request models (one value per parameter, the image choice) and the OpenAPI document built from them."""

from __future__ import annotations

import pytest
from flask import Flask
from openapi_spec_validator import validate

from searchapi import images, ops, routes
from searchapi.config import load_search_config
from searchapi.contract import ImageQuery, ImageWrite, SearchOptions, parse
from searchapi.errors import ApiError
from searchapi.openapi import openapi_document


def refused(model: type, params: dict[str, object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(model, params)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "missing_image"),
        ({"image_url": "", "image_base64": None}, "missing_image"),
        ({"image_url": "https://a.example/x.jpg", "image_base64": "QQ=="}, "ambiguous_image"),
    ],
)
def test_exactly_one_image_source(params, code):
    assert refused(ImageQuery, params).code == code


def test_the_chosen_image_source_must_be_a_string_and_the_others_are_ignored():
    assert refused(ImageQuery, {"image_url": ["x"]}).message == "image_url: must be a string"
    assert parse(ImageQuery, {"image_base64": "QQ==", "image_url": 0}).image_base64 == "QQ=="


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"relation_id": "p"}, "id: is required (the catalog row's integer primary key)"),
        ({"id": "", "relation_id": "p"}, "id: is required (the catalog row's integer primary key)"),
        ({"id": "1"}, "relation_id: is required"),
        ({"id": 1, "relation_id": True}, "relation_id: must be a string of at most 512 characters"),
        (
            {"id": 1, "relation_id": "p", "photo": "x" * 3000},
            "photo: must be a string of at most 2048 characters",
        ),
    ],
)
def test_write_fields_are_checked_in_order_with_the_same_messages(params, message):
    assert refused(ImageWrite, params).message == message


def test_python_names_are_not_request_names():
    assert parse(SearchOptions, {"from_": 5}).from_ == 0
    assert parse(SearchOptions, {"from": "5"}).from_ == 5


@pytest.fixture(scope="module")
def document() -> dict:
    app = Flask("searchapi")
    for blueprint in (routes.bp, images.bp, ops.bp):
        app.register_blueprint(blueprint)
    return openapi_document(app, load_search_config({"SEARCH_FILTER_FIELDS": "relation_id,status"}))


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"] == "3.1.0" and "params" not in str(document)


def test_filter_is_a_json_object_of_the_configured_fields(document):
    (parameter,) = [p for p in document["paths"]["/search"]["post"]["parameters"] if p["name"] == "filter"]
    schema = parameter["content"]["application/json"]["schema"]
    assert schema["type"] == "object" and schema["propertyNames"] == {"enum": ["relation_id", "status"]}


def test_bodies_say_what_a_valid_request_needs(document):
    search = document["paths"]["/search"]["post"]["requestBody"]["content"]
    assert search["multipart/form-data"]["encoding"]["image"]["contentType"].startswith("image/jpeg")
    body = search["application/json"]["schema"]
    assert body["oneOf"] == [{"required": ["image_url"]}, {"required": ["image_base64"]}]
    assert body["properties"]["image_url"]["minLength"] == 1 and "size" in body["properties"]
    write = document["paths"]["/images"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert write["required"] == ["id", "relation_id", "image"]
    assert write["properties"]["relation_id"]["minLength"] == 1
    assert write["properties"]["image"]["format"] == "binary"
