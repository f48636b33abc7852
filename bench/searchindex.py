"""A large bench index: real VGG16 vectors of generated photos plus synthetic products clustered round them.

Built with the project's own index definition and alias swap (indexer.sink), force-merged, and kept
across runs: its `_meta.bench` records what it was built from, so a later run with the same
parameters (and the same model fingerprint) reuses it instead of loading again.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch
from elasticsearch.helpers import streaming_bulk

from bench.photos import write_photos
from imgsearch import indices

log = logging.getLogger("bench.searchindex")

GENERATOR_VERSION = 1
DIMS = 512
BULK_DOCS = 500
GROUPS_PER_CHUNK = 2000
MERGE_TIMEOUT = 3 * 3600


@dataclass(frozen=True)
class CorpusPlan:
    """How the bench corpus is made; stored in the index `_meta.bench` and compared on reuse."""

    docs: int
    seed: int
    real_photos: int
    vector_index_type: str
    max_group: int = 5
    product_spread: float = 0.10
    image_spread: float = 0.04
    generator: int = GENERATOR_VERSION

    def as_meta(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"{self.docs} documents: VGG16 vectors of {self.real_photos} real photos (bench/photos.py "
            f"JPEGs 800x600..1600x1200 from scikit-image samples, seed {self.seed}), each the first image "
            f"of a product; the rest synthetic products of 1-{self.max_group} images: a product centre "
            f"is a random mix of two real vectors plus Gaussian noise of norm ~{self.product_spread}, "
            f"each image the centre plus noise of norm ~{self.image_spread}, negatives clipped to 0 "
            f"(like VGG16's ReLU output), L2-normalised; every image of a product shares its relation_id"
        )


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Clip negatives (ReLU-like) and scale every row to length 1."""
    clipped = np.maximum(vectors, 0.0)
    return clipped / np.maximum(np.linalg.norm(clipped, axis=1, keepdims=True), 1e-12)


def real_vectors(extractor, folder: Path, count: int, seed: int, batch_size: int = 8) -> np.ndarray:
    """Unit VGG16 vectors of `count` generated catalog photos (the project's decoder and model)."""
    from imgsearch.imaging import decode_image

    photos = write_photos(folder, count, seed)
    vectors = []
    for start in range(0, count, batch_size):
        pixels = np.stack([decode_image(path.read_bytes()) for path in photos[start : start + batch_size]])
        vectors.append(extractor.extract(pixels)[0])
    return np.concatenate(vectors)


def noise(rng: np.random.Generator, rows: int, norm: float) -> np.ndarray:
    """Gaussian rows of expected length ~`norm`."""
    return rng.standard_normal((rows, DIMS)) * (norm / np.sqrt(DIMS))


def members_around(centres: np.ndarray, sizes: np.ndarray, rng, spread: float) -> np.ndarray:
    """`sizes[i]` images around centre i."""
    repeated = np.repeat(centres, sizes, axis=0)
    return unit_rows(repeated + noise(rng, len(repeated), spread))


def synthetic_chunks(
    real: np.ndarray, plan: CorpusPlan, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(group sizes, vectors) chunks: first one product per real photo (the photo + siblings), then
    synthetic products between pairs of real vectors, until plan.docs images."""
    sizes = rng.integers(1, plan.max_group + 1, len(real))
    siblings = members_around(real, sizes - 1, rng, plan.image_spread)
    vectors = np.empty((int(sizes.sum()), DIMS))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    vectors[starts] = real
    vectors[np.setdiff1d(np.arange(len(vectors)), starts)] = siblings
    yield sizes, vectors
    while True:
        sizes = rng.integers(1, plan.max_group + 1, GROUPS_PER_CHUNK)
        first, second = rng.integers(0, len(real), (2, GROUPS_PER_CHUNK))
        mix = rng.uniform(0.0, 1.0, (GROUPS_PER_CHUNK, 1))
        centres = unit_rows(
            mix * real[first] + (1 - mix) * real[second] + noise(rng, GROUPS_PER_CHUNK, plan.product_spread)
        )
        yield sizes, members_around(centres, sizes, rng, plan.image_spread)


def corpus(real: np.ndarray, plan: CorpusPlan) -> Iterator[tuple[int, str, np.ndarray]]:
    """(id, relation_id, unit vector) for ids 1..plan.docs; real photos are products 1..len(real)."""
    rng = np.random.default_rng(plan.seed)
    doc_id, product = 0, 0
    for sizes, vectors in synthetic_chunks(real, plan, rng):
        row = 0
        for size in sizes:
            product += 1
            for vector in vectors[row : row + size]:
                doc_id += 1
                yield doc_id, f"bench-p{product:07d}", vector
                if doc_id == plan.docs:
                    return
            row += size


def document(doc_id: int, relation_id: str, vector: np.ndarray, now: str) -> dict[str, Any]:
    """A document of the project's mapping (dynamic: strict), like imgsearch.documents builds them."""
    return {
        "source_id": doc_id,
        "relation_id": relation_id,
        "photo": f"bench/{doc_id}.jpg",
        "image_url": f"http://bench.invalid/{doc_id}.jpg",
        "status": "indexed",
        "updated_at": "2026-01-01T00:00:00+00:00",
        "indexed_at": now,
        "feature": np.round(vector, 6).tolist(),
    }


def bulk_actions(index: str, real: np.ndarray, plan: CorpusPlan) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    for doc_id, relation_id, vector in corpus(real, plan):
        yield {"_index": index, "_id": str(doc_id), "_source": document(doc_id, relation_id, vector, now)}


def load_documents(es: Elasticsearch, index: str, real: np.ndarray, plan: CorpusPlan) -> int:
    """Bulk load the corpus; returns documents written (raises on any failed item)."""
    written = 0
    started = time.perf_counter()
    for ok, _item in streaming_bulk(
        es, bulk_actions(index, real, plan), chunk_size=BULK_DOCS, max_retries=5, raise_on_error=True
    ):
        written += ok
        if written % 10_000 == 0:
            rate = written / (time.perf_counter() - started)
            print(f"  {written}/{plan.docs} documents ({rate:.0f}/s)", file=sys.stderr)
    return written


@dataclass
class BenchIndex:
    """The physical index behind the bench alias and how it came to be."""

    alias: str
    index: str
    reused: bool
    docs: int
    segments: int
    store_bytes: int
    seconds: dict[str, float]
    corpus: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reusable_index(es: Elasticsearch, alias: str, plan: CorpusPlan, fingerprint: str) -> str | None:
    """The index behind `alias` if it was built from the same plan and model and holds every doc."""
    from imgsearch import indices

    for index in indices.aliased_indices(es, alias):
        meta = indices.index_meta(es, index)
        same_plan = meta.get("bench") == plan.as_meta()
        same_model = meta.get("model", {}).get("fingerprint") == fingerprint
        if same_plan and same_model and es.count(index=index)["count"] == plan.docs:
            return index
    return None


def describe_index(es: Elasticsearch, alias: str, index: str, reused: bool, seconds) -> BenchIndex:
    stats = es.indices.stats(index=index, metric="docs,store,segments").body["indices"][index]["primaries"]
    return BenchIndex(
        alias=alias,
        index=index,
        reused=reused,
        docs=stats["docs"]["count"],
        segments=stats["segments"]["count"],
        store_bytes=stats["store"]["size_in_bytes"],
        seconds=seconds,
        corpus=indices.index_meta(es, index).get("bench_stats", {}),
    )


def build_index(es: Elasticsearch, config, extractor, plan: CorpusPlan, photo_dir: Path) -> BenchIndex:
    """Real vectors, bulk load into a new version, restore settings, force-merge, swap the alias."""
    import indexer

    alias = config.alias
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    print(f"computing VGG16 vectors of {plan.real_photos} photos ...", file=sys.stderr)
    real = real_vectors(extractor, photo_dir, plan.real_photos, plan.seed)
    seconds["real_vectors"], clock = time.perf_counter() - clock, time.perf_counter()
    meta = {
        "model": extractor.info.as_meta(),
        "created_at": datetime.now(UTC).isoformat(),
        "created_by": "bench.search",
        "bench": plan.as_meta(),
        "bench_stats": corpus_stats(real, plan),
    }
    body = indices.load_index_definition(config, meta)
    index = indices.version_name(alias, datetime.now(UTC))
    indexer.delete_old_versions(es, alias, keep=0)  # leftovers of interrupted builds; never the live one
    indexer.create_build_index(es, index, body)
    print(f"loading {plan.docs} documents into {index} ...", file=sys.stderr)
    load_documents(es, index, real, plan)
    seconds["bulk_load"], clock = time.perf_counter() - clock, time.perf_counter()
    indexer.finish_build_index(es, index, body)
    seconds["refresh"], clock = time.perf_counter() - clock, time.perf_counter()
    print("force-merging to one segment ...", file=sys.stderr)
    es.options(request_timeout=MERGE_TIMEOUT).indices.forcemerge(index=index, max_num_segments=1)
    es.indices.refresh(index=index)
    seconds["force_merge"] = time.perf_counter() - clock
    indexer.swap_alias(es, alias, index)
    indexer.delete_old_versions(es, alias, keep=0)
    rounded = {name: round(value, 1) for name, value in seconds.items()}
    return describe_index(es, alias, index, False, rounded)


def ensure_index(
    es: Elasticsearch, config, extractor, plan: CorpusPlan, photo_dir: Path, rebuild: bool
) -> BenchIndex:
    """Reuse the alias's index when it matches `plan` and the model, else build it."""
    if not rebuild:
        index = reusable_index(es, config.alias, plan, extractor.info.fingerprint)
        if index:
            print(f"reusing {index} behind {config.alias} ({plan.docs} documents)", file=sys.stderr)
            return describe_index(es, config.alias, index, True, {})
    return build_index(es, config, extractor, plan, photo_dir)


def drop_index(es: Elasticsearch, alias: str) -> list[str]:
    """Delete every version of the bench alias (and with them the alias)."""

    names = indices.list_versions(es, alias) if es.indices.exists(index=f"{alias}-*") else []
    for name in names:
        es.indices.delete(index=name)
    return names


def corpus_stats(real: np.ndarray, plan: CorpusPlan, sample_docs: int = 20_000, queries: int = 200) -> dict:
    """What the vectors are like, on the first `sample_docs` of the corpus (regenerated, no I/O):
    mean cosine between real photos, random pairs, images of one product, and a query image and its
    nearest image of another product."""
    rows = list(corpus(real, replace(plan, docs=min(plan.docs, sample_docs))))
    vectors = np.stack([vector for _, _, vector in rows])
    products = np.array([relation for _, relation, _ in rows])
    rng = np.random.default_rng(plan.seed + 1)
    first, second = rng.integers(0, len(rows), (2, 5000))
    same = np.flatnonzero(products[1:] == products[:-1])
    picks = rng.choice(len(rows), size=min(queries, len(rows)), replace=False)
    scores = vectors[picks] @ vectors.T
    scores[products[picks][:, None] == products[None, :]] = -1.0
    real_pairs = (real @ real.T)[np.triu_indices(len(real), 1)]
    return {
        "sampled_docs": len(rows),
        "real_pair_cosine_mean": round(float(real_pairs.mean()), 4) if real_pairs.size else None,
        "random_pair_cosine_mean": round(float(np.mean(np.sum(vectors[first] * vectors[second], 1))), 4),
        "same_product_cosine_mean": round(float(np.mean(np.sum(vectors[same] * vectors[same + 1], 1))), 4),
        "nearest_other_product_cosine_mean": round(float(scores.max(axis=1).mean()), 4),
        "images_per_product_mean": round(len(rows) / len(set(products.tolist())), 2),
    }
