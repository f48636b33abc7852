"""Run a similarity search that returns `size` distinct products whenever the index has them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from elasticsearch import Elasticsearch

from searchapi import queries


@dataclass(frozen=True)
class SimilarHit:
    id: str
    relation_id: str
    image_url: str | None
    score: float

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "relation_id": self.relation_id,
            "image_url": self.image_url,
            "score": self.score,
        }


@dataclass(frozen=True)
class SearchPage:
    hits: list[SimilarHit]
    has_more: bool
    k: int
    attempts: int


def to_hits(response: dict) -> list[SimilarHit]:
    return [
        SimilarHit(
            id=hit["_id"],
            relation_id=hit["_source"].get("relation_id"),
            image_url=hit["_source"].get("image_url"),
            score=round(float(hit["_score"]), 6),
        )
        for hit in response["hits"]["hits"]
    ]


def find_similar(
    es: Elasticsearch,
    alias: str,
    vector: Sequence[float],
    *,
    size: int,
    from_: int = 0,
    min_score: float | None = None,
    exclude_relation_id: str | None = None,
    filters: queries.Filters | None = None,
    collapse: bool = True,
) -> SearchPage:
    """kNN (+ collapse); widens k and retries while a collapsed page is short and kNN was saturated.

    Only the top k documents reach collapse, so products with many images can crowd a page
    (Elasticsearch collapse + knn under-return): a short page with `hits.total == k` means more
    documents exist beyond k, so we ask again with a larger k, up to the 10,000 cap.
    """
    k = queries.initial_k(size, from_, collapse)
    attempts = 0
    while True:
        attempts += 1
        request = queries.similarity_search(
            vector,
            size=size,
            from_=from_,
            k=k,
            min_score=min_score,
            exclude_relation_id=exclude_relation_id,
            filters=filters,
            collapse=collapse,
        )
        response = es.search(index=alias, **request)
        hits = to_hits(response)
        saturated = response["hits"]["total"]["value"] >= k
        if len(hits) > size or not saturated or k >= queries.MAX_K or not collapse:
            return SearchPage(hits=hits[:size], has_more=len(hits) > size, k=k, attempts=attempts)
        k = queries.widened_k(k)
