"""Pure builders of the kNN + collapse search request (no I/O, unit-tested)."""

from __future__ import annotations

from collections.abc import Sequence

MAX_K = 10_000
OVERFETCH = 5
MIN_K = 50
RESULT_FIELDS = ["source_id", "relation_id", "image_url"]


def score_to_similarity(min_score: float) -> float:
    """Convert a minimum `_score` to kNN `similarity`: for dot_product, _score = (1 + cosine) / 2."""
    return 2.0 * min_score - 1.0


def initial_k(size: int, from_: int) -> int:
    """Documents to ask kNN for: several per wanted product, since products have several images."""
    return min(max((from_ + size) * OVERFETCH, MIN_K), MAX_K)


def widened_k(k: int) -> int:
    return min(k * 4, MAX_K)


def num_candidates_for(k: int) -> int:
    """HNSW candidates per shard: twice k (better recall), within Elasticsearch's 10,000 cap."""
    return min(max(2 * k, 100), MAX_K)


def knn_clause(
    vector: Sequence[float],
    k: int,
    min_score: float | None = None,
    exclude_relation_id: str | None = None,
) -> dict[str, object]:
    """The top-level `knn` section; exclusions are pre-filters so they do not eat into k."""
    clause: dict[str, object] = {
        "field": "feature",
        "query_vector": list(vector),
        "k": k,
        "num_candidates": num_candidates_for(k),
    }
    if min_score is not None:
        clause["similarity"] = score_to_similarity(min_score)
    if exclude_relation_id is not None:
        clause["filter"] = {"bool": {"must_not": [{"term": {"relation_id": exclude_relation_id}}]}}
    return clause


def similarity_search(
    vector: Sequence[float],
    *,
    size: int,
    from_: int,
    k: int,
    min_score: float | None = None,
    exclude_relation_id: str | None = None,
) -> dict[str, object]:
    """Keyword arguments for `es.search`: kNN, one hit per product (collapse), a page of products."""
    return {
        "knn": knn_clause(vector, k, min_score, exclude_relation_id),
        "collapse": {"field": "relation_id"},
        "from_": from_,
        "size": size,
        "source": RESULT_FIELDS,
        "track_total_hits": True,
    }
