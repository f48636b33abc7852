"""The API keeps the contract it publishes in /openapi.json: schemathesis against the real app and index.

Schemathesis reads the document from the app (WSGI, no server), draws requests from it (examples,
coverage cases, then Hypothesis fuzzing, a bounded number per operation) and checks every answer:
no 5xx, no schema-valid request refused, documented status codes, content types and body schemas,
every 405 with `Allow`, 401 without a key. JSON Schema cannot say "a decodable photo" or "a URL that
answers with an image", so the three image formats of the contract (`binary` uploads, `byte` base64,
`uri` image_url) are drawn from real photos: files, their base64, and their URLs on the local image
server (the one host the app may fetch from here). Everything else comes from the document alone.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from demo.catalog import CatalogEntry
from searchapi import create_app
from tests.integration.helpers import indexed_catalog, photo_entries

pytestmark = [pytest.mark.integration]

API_KEY = "contract-key-" + "0" * 24
IMAGE_FORMATS = ("binary", "byte", "uri")
# Bounded for 2 slow cores: most /search cases run the model (~0.1-0.3 s each).
SCHEMATHESIS_CONFIG = {
    "seed": 20261205,
    "generation": {"mode": "all", "max-examples": 8, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
    # The API is lenient by design (numbers as strings, unknown fields ignored), so a "negative" case
    # that it accepts is not a defect; negative cases still must not cause a 5xx or a wrong schema.
    "checks": {"negative_data_rejection": {"enabled": False}},
}


@pytest.fixture(scope="module")
def catalog(stack_urls, extractor, image_server, tmp_path_factory, es) -> Iterator[dict[str, str]]:
    """4 products x 2 views, plus one row whose image is corrupt (id 9: its `similar` is a 409)."""
    entries = [*photo_entries(4, 2), CatalogEntry(9, "product-009", "corrupt.jpg")]
    reports = str(tmp_path_factory.mktemp("contract-reports"))
    options = {"prefix": "test-contract", "record_run": True, "max_failure_ratio": 0.5}
    with indexed_catalog(stack_urls, extractor, image_server, reports, es, entries, **options) as env:
        yield env


@pytest.fixture(scope="module")
def app(catalog, extractor):
    return create_app(
        {
            **catalog,
            "SEARCH_URL_ALLOWED_HOSTS": "127.0.0.1",
            "SEARCH_API_KEYS": API_KEY,
            "SEARCH_FILTER_FIELDS": "relation_id,status",
        },
        extractor=extractor,
    )


@pytest.fixture(scope="module")
def real_images(photo_folder, image_server) -> Iterator[None]:
    """The image formats drawn from real photos while this module runs (the registry is global)."""
    names = sorted(path.name for path in photo_folder.glob("p*.jpg"))
    files = [(photo_folder / name).read_bytes() for name in names]
    schemathesis.openapi.format("binary", st.sampled_from(files))
    schemathesis.openapi.format("byte", st.sampled_from([base64.b64encode(data).decode() for data in files]))
    schemathesis.openapi.format("uri", st.sampled_from([image_server + name for name in names]))
    yield
    from schemathesis.specs.openapi.formats import unregister_string_format

    for name in IMAGE_FORMATS:
        unregister_string_format(name)


@pytest.fixture(scope="module")
def api_schema(app, real_images):
    config = SchemathesisConfig.from_dict(SCHEMATHESIS_CONFIG)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)

    @schema.hook
    def before_generate_path_parameters(context, strategy):
        """Half of the ids are the catalog's (1-9; 9 failed), so `similar` and `get` find something."""
        indexed = st.sampled_from([{"image_id": str(number)} for number in range(1, 10)])
        return st.one_of(strategy, indexed)

    return schema


contract = schemathesis.pytest.from_fixture("api_schema")


@contract.parametrize()
def test_every_operation_keeps_the_published_contract(case):
    case.call_and_validate(headers={"X-API-Key": API_KEY})


def test_a_wrong_method_is_a_json_405_that_lists_the_allowed_methods(app):
    response = app.test_client().get("/search")
    assert response.status_code == 405 and response.get_json()["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    response = app.test_client().put("/images/1")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "DELETE", "OPTIONS"}
