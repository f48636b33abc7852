"""Search API against the real Elasticsearch: search by upload/URL/base64/id, collapse, errors."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from searchapi import create_app
from tests.integration.helpers import indexed_catalog, photo_entries

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def indexed(stack_urls, extractor, image_server, tmp_path_factory, es):
    """A module-wide index of 4 products x 2 views served over real HTTP."""
    reports = str(tmp_path_factory.mktemp("reports"))
    with indexed_catalog(stack_urls, extractor, image_server, reports, es, photo_entries(4, 2)) as env:
        yield env


@pytest.fixture
def client(indexed, extractor, es):
    app = create_app(
        {**indexed, "SEARCH_URL_ALLOWED_HOSTS": "127.0.0.1", "SEARCH_MAX_UPLOAD_BYTES": "2000000"},
        extractor=extractor,
    )
    return app.test_client()


def photo_bytes(photo_folder, name: str) -> bytes:
    return (photo_folder / name).read_bytes()


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["status"] == status and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body


def test_search_by_upload_finds_the_product_first_one_hit_per_product(client, photo_folder):
    upload = photo_bytes(photo_folder, "p003-coffee-front.jpg")
    response = client.post("/search", data={"image": (io.BytesIO(upload), "q.jpg")})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    hits = body["hits"]
    assert hits[0]["relation_id"] == "product-003"
    assert hits[0]["id"] == "5" and hits[0]["score"] > 0.999
    relation_ids = [hit["relation_id"] for hit in hits]
    assert sorted(relation_ids) == ["product-001", "product-002", "product-003", "product-004"]
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    assert body["size"] == 10 and body["from"] == 0 and body["took_ms"] > 0
    assert body["model"]["weights"] == "random" and "RANDOM" in body["model"]["warning"]


def test_size_and_from_page_through_products(client, photo_folder):
    upload = photo_bytes(photo_folder, "p001-astronaut-front.jpg")
    first = client.post("/search?size=2", data={"image": (io.BytesIO(upload), "q.jpg")}).get_json()
    second = client.post("/search?size=2&from=2", data={"image": (io.BytesIO(upload), "q.jpg")}).get_json()
    assert len(first["hits"]) == 2 and len(second["hits"]) == 2
    products = [hit["relation_id"] for hit in first["hits"] + second["hits"]]
    assert len(set(products)) == 4 and products[0] == "product-001"


def test_search_by_base64_and_by_url_agree_with_upload(client, photo_folder, image_server):
    data = photo_bytes(photo_folder, "p002-chelsea-crop.jpg")
    by_b64 = client.post("/search", json={"image_base64": base64.b64encode(data).decode(), "size": 3})
    by_url = client.post("/search", json={"image_url": image_server + "p002-chelsea-crop.jpg", "size": 3})
    assert by_b64.status_code == 200 and by_url.status_code == 200, by_url.get_json()
    assert by_b64.get_json()["hits"] == by_url.get_json()["hits"]
    assert by_b64.get_json()["hits"][0]["id"] == "4"


def test_min_score_cuts_off_low_scores(client, photo_folder):
    upload = photo_bytes(photo_folder, "p004-rocket-front.jpg")
    body = client.post("/search?min_score=0.995", data={"image": (io.BytesIO(upload), "q.jpg")}).get_json()
    assert [hit["id"] for hit in body["hits"]] == ["7"]


def test_similar_by_id_excludes_own_product(client):
    response = client.get("/images/1/similar?size=5")
    assert response.status_code == 200
    products = [hit["relation_id"] for hit in response.get_json()["hits"]]
    assert "product-001" not in products and len(products) == 3
    assert_error(client.get("/images/999999/similar"), 404, "image_not_found")


def test_health(client):
    assert client.get("/health").get_json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({}, 400, "missing_image"),
        ({"json": {"image_base64": "@@@not base64@@@"}}, 400, "invalid_parameter"),
        (
            {"json": {"image_base64": base64.b64encode(b"<html>nope</html>").decode()}},
            400,
            "image_not_an_image",
        ),
        ({"json": {"image_base64": ""}}, 400, "missing_image"),
        ({"json": [1, 2]}, 400, "invalid_json"),
        ({"json": {"image_url": "ftp://example.com/a.jpg"}}, 400, "bad_image_url"),
        ({"json": {"image_url": "http://169.254.169.254/latest/meta-data"}}, 400, "forbidden_image_url"),
        ({"json": {"image_url": "http://2130706433/x.jpg"}}, 400, "forbidden_image_url"),
        ({"data": {"image": (io.BytesIO(b""), "empty.jpg")}}, 400, None),
        ({"data": {"image": (io.BytesIO(b"GIF89a garbage"), "x.gif")}}, 400, None),
    ],
)
def test_bad_requests_get_json_4xx(client, kwargs, status, code):
    assert_error(client.post("/search", **kwargs), status, code)


@pytest.mark.parametrize("query", ["size=0", "size=101", "size=abc", "from=-1", "min_score=2", "min_score=x"])
def test_bad_parameters_name_the_parameter(client, photo_folder, query):
    upload = photo_bytes(photo_folder, "p001-astronaut-front.jpg")
    body = assert_error(client.post(f"/search?{query}", data={"image": (io.BytesIO(upload), "q.jpg")}), 400)
    assert query.split("=")[0] in body["error"]["message"]


def test_image_url_http_error_is_a_400(client, image_server):
    assert_error(client.post("/search", json={"image_url": image_server + "status/404"}), 400)


def test_oversized_upload_is_413(client):
    big = np.random.default_rng(0).integers(0, 255, 3_000_000, dtype=np.uint8).tobytes()
    assert_error(
        client.post("/search", data={"image": (io.BytesIO(big), "big.jpg")}), 413, "payload_too_large"
    )


def test_decompression_bomb_upload_is_400(client):
    buffer = io.BytesIO()
    Image.new("L", (10_000, 10_000)).save(buffer, "PNG")
    body = assert_error(client.post("/search", data={"image": (io.BytesIO(buffer.getvalue()), "b.png")}), 400)
    assert body["error"]["code"] == "image_too_many_pixels"


def test_elasticsearch_unreachable_is_503(indexed, extractor, photo_folder):
    app = create_app(
        {**indexed, "ES_URL": "http://127.0.0.1:9", "SEARCH_ES_TIMEOUT": "1"}, extractor=extractor
    )
    upload = photo_bytes(photo_folder, "p001-astronaut-front.jpg")
    response = app.test_client().post("/search", data={"image": (io.BytesIO(upload), "q.jpg")})
    assert_error(response, 503, "search_backend_unavailable")


def test_index_built_by_another_model_is_refused(indexed, es, photo_folder):
    from imgsearch.features import FeatureExtractor

    other = FeatureExtractor("random", seed=99)
    app = create_app(indexed, extractor=other)
    upload = photo_bytes(photo_folder, "p001-astronaut-front.jpg")
    response = app.test_client().post("/search", data={"image": (io.BytesIO(upload), "q.jpg")})
    assert_error(response, 503, "model_mismatch")
