"""Every API endpoint and error path against the real Elasticsearch (search page and SSRF elsewhere)."""

from __future__ import annotations

import io
import uuid

import pytest
from openapi_spec_validator import validate
from PIL import Image

from demo.catalog import CatalogEntry
from searchapi import create_app
from tests.integration.helpers import indexed_catalog, photo_entries

pytestmark = [pytest.mark.integration]

API_KEY = "test-key-" + "0" * 24
SHOP = "https://shop.example"


@pytest.fixture(scope="module")
def catalog(stack_urls, extractor, image_server, tmp_path_factory, es):
    """4 products x 2 views served over real HTTP, plus one row whose image is corrupt (id 9)."""
    entries = [*photo_entries(4, 2), CatalogEntry(9, "product-009", "corrupt.jpg")]
    reports = str(tmp_path_factory.mktemp("reports"))
    with indexed_catalog(
        stack_urls,
        extractor,
        image_server,
        reports,
        es,
        entries,
        "test-endpoints",
        True,
        max_failure_ratio=0.5,
    ) as env:
        yield env


@pytest.fixture(scope="module")
def app(catalog, extractor):
    return create_app(
        {
            **catalog,
            "SEARCH_URL_ALLOWED_HOSTS": "127.0.0.1",
            "SEARCH_API_KEYS": API_KEY,
            "SEARCH_CORS_ORIGINS": SHOP,
            "SEARCH_FILTER_FIELDS": "relation_id,status",
        },
        extractor=extractor,
    )


@pytest.fixture
def client(app):
    return app.test_client()


def upload(photo_folder, name: str = "p002-chelsea-front.jpg") -> dict[str, object]:
    return {"image": (io.BytesIO((photo_folder / name).read_bytes()), "q.jpg")}


def error_of(response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["status"] == status and error["message"] and "Traceback" not in error["message"]
    return error


def test_get_image_returns_its_fields_without_the_vector(client):
    body = client.get("/images/3").get_json()
    assert body["id"] == "3" and body["relation_id"] == "product-002"
    assert body["photo"] == "p002-chelsea-front.jpg" and body["image_url"].endswith(body["photo"])
    assert body["status"] == "indexed" and body["searchable"] is True
    assert body["indexed_at"] and "feature" not in body


def test_a_failed_row_is_visible_with_its_reason_but_not_searchable(client):
    body = client.get("/images/9").get_json()
    assert body["status"] == "decode_failed" and body["searchable"] is False
    assert body["error_reason"] and body["error_message"]
    assert error_of(client.get("/images/9/similar"), 409)["code"] == "image_not_searchable"


def test_unknown_image_is_404(client):
    assert error_of(client.get("/images/404404"), 404)["code"] == "image_not_found"
    assert error_of(client.get("/images/404404/similar"), 404)["code"] == "image_not_found"


def test_filter_restricts_results_to_the_given_products(client, photo_folder):
    body = client.post(
        "/search", data={**upload(photo_folder), "filter": '{"relation_id": ["product-001", "product-004"]}'}
    ).get_json()
    assert {hit["relation_id"] for hit in body["hits"]} == {"product-001", "product-004"}


def test_filter_on_a_field_not_whitelisted_is_400(client, photo_folder):
    error = error_of(client.post("/search", data={**upload(photo_folder), "filter": '{"photo": "x"}'}), 400)
    assert error["message"].startswith("filter:") and "relation_id, status" in error["message"]


def test_collapse_off_returns_images_so_a_product_can_repeat(client, photo_folder):
    body = client.post("/search?collapse=false&size=8", data=upload(photo_folder)).get_json()
    products = [hit["relation_id"] for hit in body["hits"]]
    assert len(products) == 8 and len(set(products)) == 4 and body["collapse"] is False
    assert products[:2] == ["product-002", "product-002"]


def test_has_more_tells_whether_a_next_page_exists(client, photo_folder):
    first = client.post("/search?size=3", data=upload(photo_folder)).get_json()
    last = client.post("/search?size=3&from=3", data=upload(photo_folder)).get_json()
    assert first["has_more"] is True and len(first["hits"]) == 3
    assert last["has_more"] is False and len(last["hits"]) == 1


def test_responses_carry_stage_timings(client, photo_folder):
    response = client.post("/search", data=upload(photo_folder))
    timings = response.get_json()["timings_ms"]
    assert set(timings) == {"decode", "model", "elasticsearch"}
    assert all(value >= 0 for value in timings.values()) and timings["model"] > 0
    assert "model;dur=" in response.headers["Server-Timing"]


def test_format_is_sniffed_from_the_bytes_not_the_declared_type(client, photo_folder):
    buffer = io.BytesIO()
    Image.open(photo_folder / "p003-coffee-front.jpg").save(buffer, "PNG")
    response = client.post(
        "/search", data={"image": (io.BytesIO(buffer.getvalue()), "photo.jpg", "text/plain")}
    )
    assert response.status_code == 200 and response.get_json()["hits"][0]["relation_id"] == "product-003"


def test_an_image_format_outside_the_safe_list_is_400(client):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, "TGA")
    error = error_of(client.post("/search", data={"image": (io.BytesIO(buffer.getvalue()), "x.jpg")}), 400)
    assert error["code"] in ("image_unsupported_format", "image_not_an_image")


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"data": "plain text", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
    ],
)
def test_bodies_of_the_wrong_kind_are_4xx(client, request_kwargs, status, code):
    assert error_of(client.post("/search", **request_kwargs), status)["code"] == code


def test_unknown_route_and_wrong_method_are_json(client):
    assert error_of(client.get("/nope"), 404)["code"] == "not_found"
    assert error_of(client.get("/search"), 405)["code"] == "method_not_allowed"


def test_write_endpoints_need_a_valid_key(client, photo_folder):
    data = {"id": "7001", "relation_id": "product-new", **upload(photo_folder)}
    missing = client.post("/images", data=data)
    assert error_of(missing, 401)["code"] == "api_key_required"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = client.post("/images", data=upload(photo_folder), headers={"X-API-Key": API_KEY[:-1] + "x"})
    assert error_of(wrong, 401)["code"] == "invalid_api_key"
    assert error_of(client.delete("/images/1"), 401)["code"] == "api_key_required"
    assert client.get("/images/1").status_code == 200


def test_write_endpoints_are_disabled_without_configured_keys(catalog, extractor):
    client = create_app(catalog, extractor=extractor).test_client()
    response = client.delete("/images/1", headers={"Authorization": f"Bearer {API_KEY}"})
    assert error_of(response, 403)["code"] == "writes_disabled"


def test_index_one_image_then_find_it_then_delete_it(client, photo_folder, image_server):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    created = client.post(
        "/images", data={"id": "7001", "relation_id": "product-new", **upload(photo_folder)}, headers=auth
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["result"] == "created"
    hits = client.post("/search?size=10", data=upload(photo_folder)).get_json()["hits"]
    assert {"product-new", "product-002"} <= {hit["relation_id"] for hit in hits[:2]}
    replaced = client.post(
        "/images",
        json={"id": 7001, "relation_id": "product-new", "image_url": image_server + "p004-rocket-front.jpg"},
        headers={"X-API-Key": API_KEY},
    )
    assert replaced.status_code == 200 and replaced.get_json()["result"] == "updated"
    stored = client.get("/images/7001").get_json()
    assert stored["image_url"].endswith("p004-rocket-front.jpg") and stored["searchable"] is True
    assert client.delete("/images/7001", headers=auth).get_json()["result"] == "deleted"
    assert client.get("/images/7001").status_code == 404
    assert error_of(client.delete("/images/7001", headers=auth), 404)["code"] == "image_not_found"


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"relation_id": "p"}, "id"),
        ({"id": "abc", "relation_id": "p"}, "id"),
        ({"id": "0", "relation_id": "p"}, "id"),
        ({"id": "5"}, "relation_id"),
        ({"id": "5", "relation_id": "x" * 600}, "relation_id"),
    ],
)
def test_write_parameters_are_validated_by_name(client, photo_folder, fields, name):
    response = client.post("/images", data={**fields, **upload(photo_folder)}, headers={"X-API-Key": API_KEY})
    assert error_of(response, 400)["message"].startswith(f"{name}:")


def test_writing_a_bad_image_is_400_and_writes_nothing(client):
    response = client.post(
        "/images",
        data={"id": "7002", "relation_id": "p", "image": (io.BytesIO(b"not an image"), "x.jpg")},
        headers={"X-API-Key": API_KEY},
    )
    assert error_of(response, 400)["code"] == "image_not_an_image"
    assert client.get("/images/7002").status_code == 404


def test_stats_show_alias_index_counts_models_and_last_run(client):
    body = client.get("/stats").get_json()
    assert body["alias"] == client.application.extensions["imgsearch"].alias
    assert len(body["indices"]) == 1 and body["indices"][0]["index"].startswith(body["alias"] + "-")
    assert body["documents"] == 9
    assert body["indices"][0]["statuses"] == {"indexed": 8, "decode_failed": 1}
    assert body["model_matches"] is True and body["model"]["weights"] == "random"
    assert body["indices"][0]["model"]["fingerprint"] == body["model"]["fingerprint"]
    run = body["last_run"]
    assert run["mode"] == "full" and run["outcome"] == "succeeded" and run["statuses"]["indexed"] == 8


def test_ready_when_elasticsearch_model_and_index_agree(client):
    body = client.get("/ready").get_json()
    assert body["ready"] is True
    assert body["checks"]["model"] == "warmed" and body["checks"]["elasticsearch"] == "reachable"


def test_not_ready_without_an_index(catalog, extractor, es):
    client = create_app({**catalog, "ES_INDEX": f"test-none-{uuid.uuid4().hex[:8]}"}, extractor=extractor)
    response = client.test_client().get("/ready")
    assert response.status_code == 503
    assert (
        response.get_json()["checks"]["index"] == "missing"
        and "run the indexer" in response.get_json()["reason"]
    )
    assert error_of(client.test_client().get("/stats"), 503)["code"] == "index_missing"
    assert error_of(client.test_client().get("/images/1"), 503)["code"] == "index_missing"


def test_not_ready_when_elasticsearch_is_unreachable(catalog, extractor):
    client = create_app(
        {**catalog, "ES_URL": "http://127.0.0.1:9", "SEARCH_ES_TIMEOUT": "1"}, extractor=extractor
    )
    response = client.test_client().get("/ready")
    assert response.status_code == 503 and response.get_json()["checks"]["elasticsearch"] == "unreachable"


def test_openapi_is_valid_and_documents_every_route(client, app):
    document = client.get("/openapi.json").get_json()
    validate(document)
    documented = {
        (path, method.upper()) for path, operations in document["paths"].items() for method in operations
    }
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {path} is not in /openapi.json"


def test_metrics_count_requests_per_endpoint_and_time_each_stage(client, photo_folder, image_server):
    client.post("/search", data=upload(photo_folder))
    client.post("/search", json={"image_url": image_server + "p001-astronaut-front.jpg"})
    client.get("/images/3/similar")
    client.get("/images/404404")
    text = client.get("/metrics").get_data(as_text=True)
    for line in (
        'imgsearch_http_request_duration_seconds_count{endpoint="/search",method="POST",status="200"}',
        'imgsearch_http_request_duration_seconds_count{endpoint="/images/<image_id>/similar",method="GET",'
        'status="200"}',
        'imgsearch_http_request_duration_seconds_count{endpoint="/images/<image_id>",method="GET",status="404"}',
    ):
        assert line in text, line
    for stage in ("fetch", "decode", "model", "elasticsearch"):
        assert f'imgsearch_stage_duration_seconds_count{{endpoint="/search",stage="{stage}"}}' in text, stage


def test_cors_headers_only_for_the_shop_origin(client, photo_folder):
    preflight = client.options("/search", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    response = client.post("/search", data=upload(photo_folder), headers={"Origin": SHOP})
    assert response.headers["Access-Control-Allow-Origin"] == SHOP and "Origin" in response.headers["Vary"]
    other = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_an_unexpected_error_is_an_opaque_json_500(catalog, extractor):
    app = create_app(catalog, extractor=extractor)

    def explode():
        raise RuntimeError("secret internal detail /etc/passwd")

    app.add_url_rule("/explode", view_func=explode)
    response = app.test_client().get("/explode")
    error = error_of(response, 500)
    assert error["code"] == "internal_error" and "secret" not in response.get_data(as_text=True)
