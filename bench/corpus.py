"""Bench data: catalog photos from scikit-image's samples, and large indices of real + synthetic vectors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch
from elasticsearch.helpers import bulk
from PIL import Image, ImageEnhance, ImageOps

import indexer
from bench.harness import say
from demo.catalog import PHOTOS, sample_photo
from imgsearch import indices
from imgsearch.documents import CatalogRow, index_action, indexed_document
from imgsearch.imaging import decode_image

DIMS = 512
BULK_DOCS = 500
GROUPS_PER_CHUNK = 2000
MERGE_TIMEOUT = 3 * 3600
QUERY_SIZE = ((600, 450), (680, 510))  # query photos: "640x480-ish" JPEGs
EXTRACT_BATCH = 8  # the indexer's default batch size: one compiled shape serves both (XLA compiles per shape)


def photo_variant(photo: Image.Image, rng: np.random.Generator, sizes: tuple) -> Image.Image:
    """A new shot of a product: random crop, maybe mirrored, other exposure, sizes[0]..sizes[1] wide."""
    width, height = photo.size
    keep = rng.uniform(0.7, 1.0)
    crop_w, crop_h = int(width * keep), int(height * keep)
    left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    shot = photo.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        shot = ImageOps.mirror(shot)
    shot = ImageEnhance.Brightness(shot).enhance(rng.uniform(0.8, 1.2))
    shot = ImageEnhance.Contrast(shot).enhance(rng.uniform(0.8, 1.2))
    target_w = int(rng.integers(sizes[0][0], sizes[1][0] + 1))
    portrait = rng.random() < 0.25
    size = (target_w * 3 // 4, target_w) if portrait else (target_w, target_w * 3 // 4)
    return shot.resize(size, Image.Resampling.LANCZOS)


def write_photos(
    folder: Path, count: int, seed: int = 0, sizes: tuple = ((800, 600), (1600, 1200))
) -> list[Path]:
    """`count` distinct JPEGs (quality 85-92, 4:3, a quarter portrait) cycling over the sample photos."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, samples, paths = np.random.default_rng(seed), [sample_photo(name) for name in PHOTOS], []
    for number in range(count):
        paths.append(folder / f"{number + 1:05d}-{PHOTOS[number % len(PHOTOS)]}.jpg")
        quality = int(rng.integers(85, 93))
        photo_variant(samples[number % len(samples)], rng, sizes).save(paths[-1], "JPEG", quality=quality)
    return paths


def query_jpegs(folder: Path, count: int, seed: int) -> list[bytes]:
    """`count` upload JPEGs of ~640x480 (the photo seed + 7)."""
    return [path.read_bytes() for path in write_photos(folder, count, seed + 7, QUERY_SIZE)]


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
    generator: int = 1

    def describe(self) -> str:
        return (
            f"{self.docs} documents: VGG16 vectors of {self.real_photos} real photos (bench/corpus.py "
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


def padded_batch(images: list[np.ndarray], size: int) -> np.ndarray:
    """The images stacked and padded with black ones up to `size`, so every batch has one shape."""
    return np.stack([*images, *[np.zeros_like(images[0])] * (size - len(images))])


def extract_all(extractor, blobs: list[bytes], batch: int = EXTRACT_BATCH) -> np.ndarray:
    """decode_image -> FeatureExtractor.extract in padded batches of `batch`: unit vectors [n, 512]."""
    vectors = []
    for start in range(0, len(blobs), batch):
        images = [decode_image(data) for data in blobs[start : start + batch]]
        vectors.append(extractor.extract(padded_batch(images, batch))[0][: len(images)])
    return np.concatenate(vectors)


def real_vectors(extractor, folder: Path, count: int, seed: int) -> np.ndarray:
    """Unit VGG16 vectors of `count` generated catalog photos (the project's decoder and model)."""
    return extract_all(extractor, [path.read_bytes() for path in write_photos(folder, count, seed)])


def noise(rng: np.random.Generator, rows: int, norm: float) -> np.ndarray:
    """Gaussian rows of expected length ~`norm`."""
    return rng.standard_normal((rows, DIMS)) * (norm / np.sqrt(DIMS))


def members_around(centres: np.ndarray, sizes: np.ndarray, rng, spread: float) -> np.ndarray:
    repeated = np.repeat(centres, sizes, axis=0)
    return unit_rows(repeated + noise(rng, len(repeated), spread))


def synthetic_chunks(real: np.ndarray, plan: CorpusPlan, rng) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(group sizes, vectors) chunks: first one product per real photo (the photo + siblings), then
    synthetic products between pairs of real vectors, without end."""
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
        spread = noise(rng, GROUPS_PER_CHUNK, plan.product_spread)
        centres = unit_rows(mix * real[first] + (1 - mix) * real[second] + spread)
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


def bulk_actions(index: str, real: np.ndarray, plan: CorpusPlan) -> Iterator[dict[str, Any]]:
    """Documents of the project's mapping (dynamic: strict), built by imgsearch.documents."""
    now, updated = datetime.now(UTC), datetime(2026, 1, 1, tzinfo=UTC)
    for doc_id, relation_id, vector in corpus(real, plan):
        row = CatalogRow(doc_id, relation_id, f"bench/{doc_id}.jpg", updated)
        document = indexed_document(row, f"http://bench.invalid/{doc_id}.jpg", np.round(vector, 6), now)
        yield index_action(index, doc_id, document)


def build_version(es: Elasticsearch, name: str, body: dict, real: np.ndarray, plan: CorpusPlan) -> dict:
    """Create `name` for bulk loading, load the corpus, restore the serving settings, force-merge to one
    segment; returns the seconds of each step."""
    clock, seconds = time.perf_counter(), {}
    indexer.create_build_index(es, name, body)
    say(f"loading {plan.docs} documents into {name} ...")
    bulk(es, bulk_actions(name, real, plan), chunk_size=BULK_DOCS, max_retries=5)
    seconds["bulk_load"], clock = time.perf_counter() - clock, time.perf_counter()
    indexer.finish_build_index(es, name, body)
    seconds["refresh"], clock = time.perf_counter() - clock, time.perf_counter()
    say(f"force-merging {name} to one segment ...")
    es.options(request_timeout=MERGE_TIMEOUT).indices.forcemerge(index=name, max_num_segments=1)
    es.indices.refresh(index=name)
    seconds["force_merge"] = time.perf_counter() - clock
    return {key: round(value, 1) for key, value in seconds.items()}


def describe_index(es: Elasticsearch, alias: str, index: str, reused: bool, seconds: dict) -> dict[str, Any]:
    """The physical index behind the bench alias and how it came to be."""
    stats = es.indices.stats(index=index, metric="docs,store,segments").body["indices"][index]["primaries"]
    facts = {"alias": alias, "index": index, "reused": reused, "docs": stats["docs"]["count"]}
    facts |= {"segments": stats["segments"]["count"], "store_bytes": stats["store"]["size_in_bytes"]}
    return facts | {"seconds": seconds, "corpus": indices.index_meta(es, index).get("bench_stats", {})}


def ensure_index(es: Elasticsearch, config, extractor, plan: CorpusPlan, photos: Path, rebuild: bool) -> dict:
    """Reuse the alias's index when its `_meta.bench` records `plan`, the model's fingerprint is the same
    and it holds every doc (the index is kept across runs); else build a new version: real vectors, bulk
    load, force-merge, alias swap."""
    alias = config.alias
    for index in [] if rebuild else indices.aliased_indices(es, alias):
        meta, size = indices.index_meta(es, index), es.count(index=index)["count"]
        built = (meta.get("bench"), meta.get("model", {}).get("fingerprint"), size)
        if built == (asdict(plan), extractor.info.fingerprint, plan.docs):
            say(f"reusing {index} behind {alias} ({plan.docs} documents)")
            return describe_index(es, alias, index, True, {})
    say(f"computing VGG16 vectors of {plan.real_photos} photos ...")
    clock = time.perf_counter()
    real = real_vectors(extractor, photos, plan.real_photos, plan.seed)
    seconds = {"real_vectors": round(time.perf_counter() - clock, 1)}
    meta = {"model": extractor.info.as_meta(), "created_at": datetime.now(UTC).isoformat()}
    meta |= {"created_by": "bench.search", "bench": asdict(plan), "bench_stats": corpus_stats(real, plan)}
    index = indices.version_name(alias, datetime.now(UTC))
    indexer.delete_old_versions(es, alias, keep=0)  # leftovers of interrupted builds; never the live one
    seconds |= build_version(es, index, indices.load_index_definition(config, meta), real, plan)
    indexer.swap_alias(es, alias, index)
    indexer.delete_old_versions(es, alias, keep=0)
    return describe_index(es, alias, index, False, seconds)


def drop_index(es: Elasticsearch, alias: str) -> list[str]:
    """Delete every version of the bench alias (and with them the alias)."""
    names = indices.list_versions(es, alias) if es.indices.exists(index=f"{alias}-*") else []
    for name in names:
        es.indices.delete(index=name)
    return names


def corpus_stats(real: np.ndarray, plan: CorpusPlan, sample_docs: int = 20_000, queries: int = 200) -> dict:
    """What the vectors are like on the first `sample_docs` of the corpus: mean cosine between real
    photos, random pairs, images of one product, a query image and its nearest other product."""
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
