"""Request parameter validation: each bad value is a 400 that names the parameter."""

from __future__ import annotations

import pytest

from searchapi.contract import SearchOptions, bool_parameter, filter_parameter, search_options
from searchapi.errors import ApiError

FIELDS = ("relation_id", "status")


def rejected(params: dict[str, object], name: str) -> str:
    with pytest.raises(ApiError) as caught:
        search_options(params, FIELDS)
    assert caught.value.status == 400 and caught.value.code == "invalid_parameter"
    assert caught.value.message.startswith(f"{name}:")
    return caught.value.message


def test_defaults():
    assert search_options({}, FIELDS) == SearchOptions(size=10, from_=0, min_score=None, collapse=True)


def test_query_string_and_json_types_are_both_accepted():
    options = search_options(
        {"size": "5", "from": 10, "min_score": "0.8", "collapse": False, "filter": '{"status": "indexed"}'},
        FIELDS,
    )
    assert options == SearchOptions(5, 10, 0.8, False, {"status": ["indexed"]})


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"size": "0"}, "size"),
        ({"size": "101"}, "size"),
        ({"size": "ten"}, "size"),
        ({"size": True}, "size"),
        ({"size": 2.5}, "size"),
        ({"from": "-1"}, "from"),
        ({"from": "901"}, "from"),
        ({"min_score": "high"}, "min_score"),
        ({"min_score": "1.5"}, "min_score"),
        ({"min_score": "-0.1"}, "min_score"),
        ({"collapse": "maybe"}, "collapse"),
        ({"filter": "{not json"}, "filter"),
        ({"filter": "[1]"}, "filter"),
        ({"filter": {"photo": "x"}}, "filter"),
        ({"filter": {"relation_id": []}}, "filter.relation_id"),
        ({"filter": {"relation_id": [1]}}, "filter.relation_id"),
        ({"filter": {"relation_id": ["x" * 2000]}}, "filter.relation_id"),
    ],
)
def test_bad_values_name_the_parameter(params, name):
    rejected(params, name)


def test_unknown_filter_field_lists_the_allowed_ones():
    message = rejected({"filter": {"feature": "x"}}, "filter")
    assert "feature" in message and "relation_id, status" in message


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("YES", True), ("off", False), ("", True)])
def test_bool_words(raw, expected):
    assert bool_parameter({"x": raw}, "x", True) is expected


def test_a_single_filter_value_becomes_a_list():
    assert filter_parameter({"filter": {"relation_id": "p1"}}, FIELDS) == {"relation_id": ["p1"]}


def test_a_form_part_whose_name_werkzeug_cannot_read_is_ignored_like_any_unknown_field():
    """A carriage return in a part's name makes werkzeug file the value under the key None."""
    from flask import Flask, request

    from searchapi.inputs import request_parameters

    body = b'--b\r\nContent-Disposition: form-data; name="a\rb"\r\n\r\n{}\r\n--b\r\n'
    body += b'Content-Disposition: form-data; name="size"\r\n\r\n3\r\n--b--\r\n'
    content_type = "multipart/form-data; boundary=b"
    with Flask(__name__).test_request_context(method="POST", data=body, content_type=content_type):
        assert None in request.form
        params = request_parameters()
        assert params == {"size": "3"}
        assert search_options(params, FIELDS).size == 3
