"""kNN + collapse under-returns products; find_similar widens k until the page is full."""

from __future__ import annotations

import numpy as np
import pytest
from elasticsearch.helpers import bulk

from imgsearch.config import load_elastic_config
from imgsearch.indices import load_index_definition
from indexer.versions import create_build_index, finish_build_index, swap_alias
from searchapi.search import find_similar

pytestmark = [pytest.mark.integration]


def unit(vector: np.ndarray) -> list[float]:
    return (vector / np.linalg.norm(vector)).astype(float).tolist()


def at_cosine(query: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A vector whose cosine similarity with `query` is exactly `cosine`."""
    direction = query / np.linalg.norm(query)
    orthogonal = rng.normal(size=query.size)
    orthogonal -= orthogonal.dot(direction) * direction
    orthogonal /= np.linalg.norm(orthogonal)
    return cosine * direction + np.sqrt(1 - cosine**2) * orthogonal


def test_page_has_size_distinct_products_despite_a_crowding_product(es, alias):
    config = load_elastic_config(
        {"ES_INDEX": alias, "ES_NUMBER_OF_REPLICAS": "0", "ES_VECTOR_INDEX_TYPE": "hnsw"}
    )
    body = load_index_definition(config, {"model": {"fingerprint": "synthetic"}})
    index = f"{alias}-20260101t000000000z"
    create_build_index(es, index, body)
    rng = np.random.default_rng(7)
    query = rng.normal(size=512)
    crowd = [query + rng.normal(scale=0.05, size=512) for _ in range(120)]
    others = [at_cosine(query, cosine, rng) for cosine in (0.8, 0.7, 0.6, 0.5, 0.4)]
    actions = [
        {
            "_index": index,
            "_id": str(i),
            "_source": {"relation_id": "crowd", "feature": unit(v), "status": "indexed"},
        }
        for i, v in enumerate(crowd)
    ] + [
        {"_index": index, "_id": f"o{i}", "_source": {"relation_id": f"other-{i}", "feature": unit(v)}}
        for i, v in enumerate(others)
    ]
    bulk(es, actions)
    finish_build_index(es, index, body)
    swap_alias(es, alias, index)

    page = find_similar(es, alias, unit(query), size=4)

    assert [hit.relation_id for hit in page.hits] == ["crowd", "other-0", "other-1", "other-2"]
    assert page.attempts == 2 and page.k == 200


def test_short_index_returns_what_exists_without_looping(es, alias):
    config = load_elastic_config({"ES_INDEX": alias, "ES_NUMBER_OF_REPLICAS": "0"})
    body = load_index_definition(config, {})
    index = f"{alias}-20260101t000000000z"
    create_build_index(es, index, body)
    rng = np.random.default_rng(3)
    bulk(
        es,
        [
            {
                "_index": index,
                "_id": str(i),
                "_source": {"relation_id": f"p{i}", "feature": unit(rng.normal(size=512))},
            }
            for i in range(3)
        ],
    )
    finish_build_index(es, index, body)
    swap_alias(es, alias, index)
    page = find_similar(es, alias, unit(rng.normal(size=512)), size=10)
    assert len(page.hits) == 3 and page.attempts == 1
