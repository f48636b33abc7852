"""The kNN (+ collapse) request builders: k sizing, score conversion, pre-filters."""

from __future__ import annotations

import pytest

from searchapi import queries


def test_min_score_converts_to_cosine_similarity_for_dot_product():
    assert queries.score_to_similarity(1.0) == 1.0
    assert queries.score_to_similarity(0.5) == 0.0
    assert queries.score_to_similarity(0.9) == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("size", "from_", "collapse", "expected"),
    [
        (10, 0, True, 55),
        (1, 0, True, 50),
        (100, 900, True, 5005),
        (100, 900, False, 1001),
        (10, 0, False, 11),
    ],
)
def test_initial_k_covers_the_page_plus_one_and_overfetches_when_collapsing(size, from_, collapse, expected):
    assert queries.initial_k(size, from_, collapse) == expected


def test_k_and_candidates_stay_within_the_elasticsearch_cap():
    assert queries.widened_k(5000) == queries.MAX_K
    assert queries.num_candidates_for(6000) == queries.MAX_K
    assert queries.num_candidates_for(10) == 100
    # What bench/recall.py measured for a page of 10 (k 55): 8 x k candidates.
    assert queries.num_candidates_for(queries.initial_k(10, 0)) == 440


def test_request_asks_one_extra_hit_and_collapses_on_the_product():
    request = queries.similarity_search([0.1, 0.2], size=10, from_=20, k=155)
    assert request["size"] == 11 and request["from_"] == 20
    assert request["collapse"] == {"field": "relation_id"}
    assert request["knn"]["k"] == 155 and request["knn"]["num_candidates"] == 1240
    assert "filter" not in request["knn"] and "similarity" not in request["knn"]


def test_without_collapse_there_is_no_collapse_section():
    assert "collapse" not in queries.similarity_search([0.1], size=5, from_=0, k=6, collapse=False)


def test_filters_and_exclusion_are_knn_pre_filters():
    clause = queries.knn_clause(
        [0.1], 50, min_score=0.75, exclude_relation_id="p1", filters={"relation_id": ["p2", "p3"]}
    )
    assert clause["similarity"] == pytest.approx(0.5)
    assert clause["filter"] == {
        "bool": {
            "filter": [{"terms": {"relation_id": ["p2", "p3"]}}],
            "must_not": [{"term": {"relation_id": "p1"}}],
        }
    }
