"""Near-duplicate product retrieval through the real search API: edited catalog photos in, top-1/top-5 out."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from bench import harness
from bench.corpus import extract_all
from bench.harness import say
from demo.catalog import sample_photo
from devstack.kit.apiserver import ApiServer, Layout, get_json, running_api
from devstack.kit.loadgen import SERVER, KeepAliveClient, upload_request
from imgsearch.config import load_elastic_config
from imgsearch.esclient import make_client

IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
CATALOG_QUALITY = 92  # JPEG quality of the catalog files and of the edited queries (unless an edit sets one)
PAGE_SIZE = 10  # products asked of the API per query; a rank beyond it counts as a miss
TOP_K = (1, 5)
MIN_TILE_STD = 5.0  # a tile this flat (grey-level standard deviation) is not a product: skipped
SMOKE_PRODUCTS = 10
SMOKE_EDITS = ("identity", "crop_center_80", "scale_0.25", "jpeg_q10", "grayscale", "flip_h", "rotate_90")
SMOKE_EDITS += ("text_overlay",)
RANDOM_NOTE = (
    "VGG16_WEIGHTS=random: these numbers measure the PIPELINE (decode -> VGG16 -> index -> kNN -> "
    "collapse -> API), NOT THE MODEL. Seeded random filters carry no learned semantics; ImageNet "
    "weights give other numbers (not measurable on this offline machine)."
)


# Sample photos in order, cut into (columns, rows) tiles (default the whole photo); the motorcycle's
# second view is the other camera of the stereo pair.
SOURCES = "astronaut chelsea motorcycle_left coins coffee horse rocket camera page color ihc logo "
SOURCES += "hubble_deep_field clock_motion retina text moon phantom cell brick grass gravel"
GRIDS = {"astronaut": (2, 2), "motorcycle_left": (3, 2), "coffee": (3, 2), "rocket": (3, 2), "camera": (2, 2)}
GRIDS |= {"ihc": (2, 2), "hubble_deep_field": (4, 3), "retina": (3, 3), "moon": (2, 2)}
SECOND_PHOTOS = {"motorcycle_left": "motorcycle_right"}


@dataclass
class Product:
    """One product: two catalog images (the photo or tile, and a second view) under one relation_id."""

    relation_id: str
    source: str
    box: tuple[int, int, int, int] | None  # region of the source photo; None = the whole photo
    original: Image.Image = field(repr=False)
    second: Image.Image = field(repr=False)
    second_view: str = ""

    def describe(self) -> dict[str, Any]:
        size, box = list(self.original.size), list(self.box) if self.box else None
        pixels = np.asarray(self.original.convert("RGB"), dtype=np.int16)
        facts = {"relation_id": self.relation_id, "source": self.source, "box": box, "size": size}
        grayscale = bool(np.abs(pixels - pixels[..., :1]).max() <= 2)
        return facts | {"second_view": self.second_view, "grayscale": grayscale}


def tile_boxes(size: tuple[int, int], grid: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Non-overlapping (left, top, right, bottom) boxes of a columns x rows grid, row by row."""
    (width, height), (columns, rows) = size, grid
    return [
        (c * width // columns, r * height // rows, (c + 1) * width // columns, (r + 1) * height // rows)
        for r in range(rows)
        for c in range(columns)
    ]


def perspective_coefficients(
    output: Sequence[tuple[float, float]], source: Sequence[tuple[float, float]]
) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients mapping 4 output corners onto 4 points of the source image."""
    rows, values = [], []
    for (x, y), (u, v) in zip(output, source, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        values += [u, v]
    return tuple(float(c) for c in np.linalg.solve(np.array(rows, float), np.array(values, float)))


def second_view(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Another shot of the product: seen slightly off-axis (each corner moved inwards by 0-6% of the
    width and height), then 0.75x or 1.3x."""
    insets, scale = rng.uniform(0.0, 0.06, size=(4, 2)), float(rng.choice([0.75, 1.3]))
    width, height = image.size
    corners = [(0, 0), (width, 0), (width, height), (0, height)]
    inwards = [(1, 1), (-1, 1), (-1, -1), (1, -1)]
    quad = [
        (x + sx * dx * width, y + sy * dy * height)
        for (x, y), (sx, sy), (dx, dy) in zip(corners, inwards, insets, strict=True)
    ]
    coefficients = perspective_coefficients(corners, quad)
    shifted = image.transform(image.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC)
    return rescale(shifted, scale), f"perspective (corners in by up to {insets.max():.0%}), {scale}x"


def build_products(limit: int | None, seed: int) -> list[Product]:
    """The products cut from the SOURCES in order, the first `limit` of them (all with None)."""
    rng, products = np.random.default_rng(seed), []
    for name in SOURCES.split():
        photo, grid, second_photo = sample_photo(name), GRIDS.get(name, (1, 1)), SECOND_PHOTOS.get(name)
        other = sample_photo(second_photo) if second_photo else None
        for position, box in enumerate(tile_boxes(photo.size, grid)):
            tile = photo.crop(box)
            if np.asarray(tile.convert("L"), float).std() < MIN_TILE_STD:
                continue
            if other:
                second, how = other.crop(box), f"same region of {second_photo} (other camera)"
            else:
                second, how = second_view(tile, rng)
            row, column = divmod(position, grid[0])
            relation_id = f"q{len(products) + 1:03d}-{name}" + ("" if grid == (1, 1) else f"-r{row}c{column}")
            products.append(Product(relation_id, name, None if grid == (1, 1) else box, tile, second, how))
        if limit is not None and len(products) >= limit:
            break
    return products[:limit] if limit is not None else products


def crop_box(size: tuple[int, int], keep: float, anchor: tuple[float, float]) -> tuple[int, int, int, int]:
    """A box keeping `keep` of each side; anchor (0..1, 0..1) places it (0.5, 0.5 = centred)."""
    width, height = size
    crop_w, crop_h = max(1, round(width * keep)), max(1, round(height * keep))
    left, top = round((width - crop_w) * anchor[0]), round((height - crop_h) * anchor[1])
    return left, top, left + crop_w, top + crop_h


def crop(image: Image.Image, keep: float, anchor: tuple[float, float] = (0.5, 0.5)) -> Image.Image:
    return image.crop(crop_box(image.size, keep, anchor))


def rescale(image: Image.Image, factor: float) -> Image.Image:
    width, height = image.size
    size = (max(8, round(width * factor)), max(8, round(height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def shift_hue(image: Image.Image, degrees: float) -> Image.Image:
    hsv = np.asarray(image.convert("RGB").convert("HSV"), dtype=np.int16)
    hsv[..., 0] = (hsv[..., 0] + round(degrees / 360 * 256)) % 256
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


def inner_scale(size: tuple[int, int], degrees: float) -> float:
    """Largest scale s such that an s-scaled, same-aspect centred box fits inside the rotated image."""
    width, height = size
    cos, sin = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    return min(width / (width * cos + height * sin), height / (width * sin + height * cos))


def pad_square(image: Image.Image, margin: float = 0.1, colour: str = "white") -> Image.Image:
    """Centred on a square canvas with a margin, as shops pad product shots."""
    side = round(max(image.size) * (1 + 2 * margin))
    canvas = Image.new("RGB", (side, side), colour)
    canvas.paste(image.convert("RGB"), ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


def text_overlay(image: Image.Image, text: str = "SALE -30%") -> Image.Image:
    """A semi-transparent banner over the bottom fifth with white text, and a small watermark."""
    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    width, height = base.size
    draw.rectangle((0, round(height * 0.8), width, height), fill=(0, 0, 0, 150))
    font = ImageFont.load_default(size=max(10, height // 9))
    draw.text((width // 20, round(height * 0.82)), text, font=font, fill=(255, 255, 255, 255))
    small = ImageFont.load_default(size=max(8, height // 20))
    draw.text((width // 40, height // 40), "© shop.example", font=small, fill=(255, 255, 255, 180))
    return Image.alpha_composite(base, layer).convert("RGB")


@dataclass(frozen=True)
class Edit:
    """One query edit: applied to the decoded original catalog image, sent as JPEG at `quality`."""

    name: str
    family: str
    what: str
    apply: Callable[[Image.Image], Image.Image]
    quality: int = CATALOG_QUALITY


EDITS = (
    Edit("identity", "control", "the catalog file itself, byte for byte", lambda i: i),
    Edit("crop_center_80", "crop", "centre 80% of each side", lambda i: crop(i, 0.8)),
    Edit("crop_center_60", "crop", "centre 60% of each side", lambda i: crop(i, 0.6)),
    Edit("crop_corner_70", "crop", "top-left 70% of each side (off-centre)", lambda i: crop(i, 0.7, (0, 0))),
    Edit("scale_0.5", "scale", "0.5x (Lanczos)", lambda i: rescale(i, 0.5)),
    Edit("scale_0.25", "scale", "0.25x (Lanczos)", lambda i: rescale(i, 0.25)),
    Edit("scale_2", "scale", "2x (Lanczos)", lambda i: rescale(i, 2.0)),
    Edit("jpeg_q30", "jpeg", "recompressed at JPEG quality 30", lambda i: i, 30),
    Edit("jpeg_q10", "jpeg", "recompressed at JPEG quality 10", lambda i: i, 10),
    Edit("brightness_+40", "colour", "brightness x1.4", lambda i: ImageEnhance.Brightness(i).enhance(1.4)),
    Edit("brightness_-40", "colour", "brightness x0.6", lambda i: ImageEnhance.Brightness(i).enhance(0.6)),
    Edit("saturation_x2", "colour", "saturation x2", lambda i: ImageEnhance.Color(i).enhance(2.0)),
    Edit("grayscale", "colour", "grayscale (one-channel JPEG)", lambda i: i.convert("L")),
    Edit("hue_+45", "colour", "hue rotated by 45 degrees", lambda i: shift_hue(i, 45)),
    Edit("flip_h", "geometric", "mirrored left-right", ImageOps.mirror),
    Edit("rotate_10", "geometric", "rotated 10 degrees, cropped to the largest box without fill",
         lambda i: crop(i.rotate(10, Image.Resampling.BICUBIC), inner_scale(i.size, 10))),
    Edit("rotate_90", "geometric", "rotated 90 degrees", lambda i: i.transpose(Image.Transpose.ROTATE_90)),
    Edit("pad_square", "overlay", "padded to a white square, 10% margin", pad_square),
    Edit("text_overlay", "overlay", "banner over the bottom fifth with 'SALE -30%' and a watermark",
         text_overlay),
)  # fmt: skip
EDIT_NAMES = tuple(edit.name for edit in EDITS)


def select_edits(names: Iterable[str]) -> list[Edit]:
    wanted = list(names)
    unknown = [name for name in wanted if name not in EDIT_NAMES]
    if unknown:
        raise SystemExit(f"unknown edit(s) {', '.join(unknown)}; choose from {', '.join(EDIT_NAMES)}")
    return [edit for edit in EDITS if edit.name in wanted]


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class Query:
    """One query: which product (index into the product list), which edit, the JPEG bytes."""

    product: int
    edit: Edit
    data: bytes = field(repr=False)


def make_queries(catalog_files: list[bytes], edits: list[Edit]) -> list[Query]:
    """Every edit of every product's original catalog image (catalog_files[i] = product i's file)."""
    queries = []
    for number, data in enumerate(catalog_files):
        with Image.open(io.BytesIO(data)) as opened:
            original = opened.convert("RGB")
        for edit in edits:
            body = data if edit.name == "identity" else encode_jpeg(edit.apply(original), edit.quality)
            queries.append(Query(number, edit, body))
    return queries


def rank_of(wanted: str, ranked: Sequence[str]) -> int | None:
    """1-based position of `wanted` among distinct ranked products; None when it is not there."""
    return ranked.index(wanted) + 1 if wanted in ranked else None


def within(rank: int | None, k: int) -> bool:
    return rank is not None and rank <= k


def accuracy(ranks: Sequence[int | None], k: int) -> float | None:
    """Share of queries whose product is within the first k (None for no queries)."""
    return sum(within(rank, k) for rank in ranks) / len(ranks) if ranks else None


def product_ranking(scores: np.ndarray, image_products: np.ndarray, products: int) -> np.ndarray:
    """Products best first, each scored by its best image (ties keep the lower product number)."""
    best = np.full(products, -np.inf)
    np.maximum.at(best, image_products, scores)
    return np.argsort(-best, kind="stable")


@dataclass
class QueryResult:
    """What one query got from the API and from the in-process baseline."""

    product: str
    source: str
    edit: str
    family: str
    query_bytes: int
    api_rank: int | None = None
    api_top: list[str] = field(default_factory=list)
    api_scores: list[float] = field(default_factory=list)
    api_status: int = 0
    api_ms: float = 0.0
    api_ids: list[str] = field(default_factory=list)  # image ids of the API's hits
    baseline_rank: int | None = None
    baseline_top: list[str] = field(default_factory=list)
    baseline_scores: list[float] = field(default_factory=list)
    score_gap: float | None = None  # API top-hit score - (1 + cos) / 2 of that image, in-process

    @property
    def top1_differs(self) -> bool:
        return self.api_top[:1] != self.baseline_top[:1]


def summary_row(label: str, family: str, results: list[QueryResult], sources: dict[str, str]) -> dict:
    """Accuracy of one group of queries, API and baseline, and how often they disagree."""
    api, baseline = [r.api_rank for r in results], [r.baseline_rank for r in results]
    sibling = [r for r in results if r.api_rank != 1 and r.api_top and sources.get(r.api_top[0]) == r.source]
    return {
        "edit": label,
        "family": family,
        "queries": len(results),
        **{f"api_top{k}": accuracy(api, k) for k in TOP_K},
        **{f"baseline_top{k}": accuracy(baseline, k) for k in TOP_K},
        "top1_differs": sum(1 for r in results if r.top1_differs),
        "api_errors": sum(1 for r in results if r.api_status != 200),
        "misses_to_same_photo": len(sibling),
        "api_misses": sum(1 for r in results if r.api_rank != 1),
    }


def summarise(results: list[QueryResult], edits: list[Edit], sources: dict[str, str]) -> dict[str, Any]:
    """Rows per edit, per family, and overall (every edit but the identity control)."""
    by_edit = [
        summary_row(e.name, e.family, [q for q in results if q.edit == e.name], sources) for e in edits
    ]
    families = list(dict.fromkeys(edit.family for edit in edits))
    by_family = [summary_row(f, f, [r for r in results if r.family == f], sources) for f in families]
    edited = [r for r in results if r.edit != "identity"]
    overall = summary_row("overall (all edits but identity)", "", edited, sources)
    return {"by_edit": by_edit, "by_family": by_family, "overall": overall}


def agreement(results: list[QueryResult]) -> dict[str, Any]:
    """How far the API's answers are from the in-process baseline (ranks as the API's page shows them)."""
    gaps = [abs(r.score_gap) for r in results if r.score_gap is not None]
    on_page = lambda rank: rank if within(rank, PAGE_SIZE) else None  # noqa: E731
    return {
        "queries": len(results),
        "top1_differs": sum(1 for r in results if r.top1_differs),
        "top5_hit_differs": sum(1 for r in results if within(r.api_rank, 5) != within(r.baseline_rank, 5)),
        "rank_differs": sum(1 for r in results if on_page(r.api_rank) != on_page(r.baseline_rank)),
        "score_gap_max": round(max(gaps), 6) if gaps else None,
        "score_gap_median": round(float(np.median(gaps)), 6) if gaps else None,
    }


def check_weights(weights: str) -> None:
    """Stop early, with a clear message, when the weights cannot be loaded offline."""
    if weights == "imagenet":
        homes = [os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"), "/tmp/.keras"]
        if not any(Path(home, "models", IMAGENET_FILE).is_file() for home in homes):
            raise SystemExit(
                f"--weights imagenet needs {Path(homes[0], 'models', IMAGENET_FILE)}, which is not there and "
                "cannot be downloaded on this machine: copy the file there (or pass --weights PATH to a .h5)"
            )
    elif weights != "random" and not Path(weights).is_file():
        raise SystemExit(f"--weights {weights}: no such file (use random, imagenet or a path to .h5 weights)")


def catalog_file_names(product: Product) -> tuple[str, str]:
    return f"{product.relation_id}-a.jpg", f"{product.relation_id}-b.jpg"


def query_api(server: ApiServer, queries: list[Query], results: list[QueryResult]) -> dict[str, Any]:
    """Every query through POST /search, one at a time; fills the API side of `results`; GET /stats."""
    status, stats = get_json(server.url + "/stats")
    if status != 200:
        raise RuntimeError(f"GET /stats answered {status}: {stats}")
    client = KeepAliveClient(server.host, server.port)
    try:
        for number, (query, result) in enumerate(zip(queries, results, strict=True), start=1):
            request, started = upload_request(query.data, PAGE_SIZE), time.perf_counter()
            status, answer = client.send(request)
            result.api_status, result.api_ms = status, round((time.perf_counter() - started) * 1000, 1)
            hits = json.loads(answer).get("hits", []) if status == 200 else []
            result.api_top = [hit["relation_id"] for hit in hits]
            result.api_scores = [hit["score"] for hit in hits]
            result.api_rank = rank_of(result.product, result.api_top)
            result.api_ids = [str(hit["id"]) for hit in hits]
            if number % 100 == 0:
                say(f"  API: {number}/{len(queries)} queries")
    finally:
        client.close()
    return stats


def stored_vectors(env: dict[str, str], ids: list[int]) -> np.ndarray:
    """The vectors the indexer stored, read back through the alias, in `ids` order."""
    config = load_elastic_config(env)
    docs = make_client(config).mget(index=config.alias, ids=[str(i) for i in ids], source=["feature"])["docs"]
    missing = [doc["_id"] for doc in docs if not doc.get("found") or not doc["_source"].get("feature")]
    if missing:
        raise RuntimeError(f"no stored vector for ids {missing[:10]}")
    return np.array([doc["_source"]["feature"] for doc in docs], dtype=np.float32)


def run_baseline(queries: np.ndarray, catalog: np.ndarray, products: list[Product], results: list) -> None:
    """Exact cosine against every catalog vector; products ranked by their best image."""
    image_products, names = np.arange(len(catalog)) // 2, [product.relation_id for product in products]
    for row, result in zip(queries @ catalog.T, results, strict=True):
        order = product_ranking(row, image_products, len(products))
        best = [float(row[image_products == p].max()) for p in order[:PAGE_SIZE]]
        result.baseline_top = [names[p] for p in order[:PAGE_SIZE]]
        result.baseline_scores = [round((1 + s) / 2, 6) for s in best]
        result.baseline_rank = int(np.flatnonzero(order == names.index(result.product))[0]) + 1
        if result.api_ids and result.api_scores:
            cosine = float(row[int(result.api_ids[0]) - 1])
            result.score_gap = round(result.api_scores[0] - (1 + cosine) / 2, 6)


def options() -> harness.Options:
    opts = harness.Options("quality", "Near-duplicate product retrieval through the search API, per edit.")
    products = f"the first N products (default all, ~68; --smoke {SMOKE_PRODUCTS})"
    opts.add("--products", type=int, help=products)
    edits = f"comma-separated, default all (--smoke {','.join(SMOKE_EDITS)}): {', '.join(EDIT_NAMES)}"
    opts.add("--edits", help=edits)
    opts.add("--index-type", default=os.environ.get("ES_VECTOR_INDEX_TYPE") or "int8_hnsw", help="index type")
    opts.api()
    opts.model(int(os.environ.get("VGG16_SEED") or 1234), "VGG16_SEED and the seed of the second views")
    return opts


def measure(args, folder: Path, products: list[Product], queries: list[Query], results: list) -> dict:
    """Both views of product i as catalog rows 2i+1 and 2i+2, indexed by `indexer full` in-process; every
    query through the API, then the in-process baseline; clean up."""
    from imgsearch.features import FeatureExtractor

    photos, seconds, names = folder / "photos", {}, [(p, n) for p in products for n in catalog_file_names(p)]
    extra = {"ES_VECTOR_INDEX_TYPE": args.index_type, "MYSQL_DELETED_COLUMN": ""}
    extra |= {"VGG16_SEED": str(args.seed), "VGG16_PRECISION": args.precision, "VGG16_COMPILE": args.compile}
    rows = [(number, product.relation_id, name) for number, (product, name) in enumerate(names, 1)]
    with harness.throwaway_catalog(photos, "bench-quality", args.weights, rows, **extra) as (env, _):
        extractor = FeatureExtractor(args.weights, args.seed, args.precision, args.compile)
        extractor.warm_up()
        say("indexing (indexer full, in-process) ...")
        reports = env | {"INDEXER_REPORT_DIR": str(folder / "reports")}
        report, meter = harness.indexer_run(reports, extractor, expect=("indexed", len(rows)))
        build = {"index": report.index, "statuses": dict(report.statuses), "seconds": round(meter.wall, 1)}
        say(f"querying the API ({len(queries)} uploads) ...")
        api_env = env | {"SEARCH_ACCESS_LOG": "0"}
        with running_api(api_env, folder, Layout.default(), args.api_start_timeout) as api:
            started = time.perf_counter()
            stats = query_api(api, queries, results)
        seconds["api_queries"], started = round(time.perf_counter() - started, 1), time.perf_counter()
        say("in-process baseline ...")
        stored = stored_vectors(env, list(range(1, len(rows) + 1)))
        recomputed = extract_all(extractor, [(photos / n).read_bytes() for _, n in names])
        cosines = np.sum(stored * recomputed, axis=1)  # the stored vectors against the catalog files'
        vectors = {"min_cosine": round(float(cosines.min()), 7)}
        vectors["mean_cosine"] = round(float(cosines.mean()), 7)
        run_baseline(extract_all(extractor, [q.data for q in queries]), stored, products, results)
        seconds |= {"baseline": round(time.perf_counter() - started, 1), "index": build["seconds"]}
    settings = harness.pick(args, "smoke weights seed index_type") | {"model": extractor.info.as_meta()}
    settings |= {"model_device": extractor.device, "compute": extractor.compute.as_meta()}
    settings |= {"alias": env["ES_INDEX"], "table": env["MYSQL_TABLE"]}
    settings |= {"index": build, "page_size": PAGE_SIZE}
    settings["catalog_jpeg_quality"] = CATALOG_QUALITY
    settings["server"] = f"{SERVER}, {Layout.default().name} (gthread)"
    return {"settings": settings, "api_stats": stats, "stored_vs_recomputed": vectors, "seconds": seconds}


def run(args, folder: Path) -> dict[str, Any]:
    """The corpus and queries, the measurement, and the results of every query."""
    products, photos = build_products(args.products, args.seed), folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for product in products:  # both views of every product; the queries edit the original's file
        for name, image in zip(catalog_file_names(product), (product.original, product.second), strict=True):
            (photos / name).write_bytes(encode_jpeg(image.convert("RGB"), CATALOG_QUALITY))
    originals = [(photos / catalog_file_names(product)[0]).read_bytes() for product in products]
    queries = make_queries(originals, args.edit_list)
    of = [(products[q.product], q) for q in queries]
    results = [QueryResult(p.relation_id, p.source, q.edit.name, q.edit.family, len(q.data)) for p, q in of]
    say(f"{len(products)} products, {len(queries)} queries; loading the model ...")
    before = harness.load_before(args.wait_idle)
    measured = measure(args, folder, products, queries, results)
    model = measured["api_stats"].get("model") or measured["settings"]["model"]
    seed = f", seed {args.seed}" if model.get("weights") == "random" else ""
    corpus = {"products": len(products), "images": 2 * len(products)}
    corpus["sources"] = len({p.source for p in products})
    measured["weights"] = f"{model.get('weights')}{seed} (fingerprint {model.get('fingerprint')})"
    measured["note"] = RANDOM_NOTE if args.weights == "random" else None
    measured["corpus"] = corpus | {"list": [product.describe() for product in products]}
    keys = ("name", "family", "what", "quality")
    measured["edits"] = [{key: getattr(edit, key) for key in keys} for edit in args.edit_list]
    measured["summary"] = summarise(results, args.edit_list, {p.relation_id: p.source for p in products})
    measured |= {"agreement": agreement(results), "queries": [asdict(result) for result in results]}
    return harness.envelope(args, before) | measured


def context(results: dict[str, Any]) -> list[str]:
    settings, corpus = results["settings"], results["corpus"]
    return [
        *([f"> **!!! {results['note']} !!!**"] if results["note"] else []),
        f"Weights: **{results['weights']}** (from the API's `GET /stats`; model matches the index: "
        f"{results['api_stats'].get('model_matches')}). Index type `{settings['index_type']}`, "
        f"{corpus['images']} documents of {corpus['products']} products; API {settings['server']}; model on "
        f"{settings['model_device']}.",
        f"API vs in-process baseline (exact cosine over the stored vectors): {results['agreement']}. Stored "
        f"vectors vs recomputed from the catalog: {results['stored_vs_recomputed']}. "
        f"Seconds: {results['seconds']}.",
    ]


def per(key: str) -> Callable[[dict], list[dict]]:
    return lambda results: [*results["summary"][key], results["summary"]["overall"]]


TABLES = [("per edit (top-k: the query's product among the first k)", per("by_edit"))]
TABLES += [("per family", per("by_family")), "edits"]
PERCENT = [f"{side}_top{k}" for side in ("api", "baseline") for k in TOP_K]
REPORT = harness.Report("Near-duplicate product retrieval through the search API", TABLES, context, PERCENT)


def main(argv: list[str] | None = None) -> int:
    args = options().parse(argv)
    check_weights(args.weights)
    args.products = args.products or (SMOKE_PRODUCTS if args.smoke else None)
    names = args.edits.split(",") if args.edits else SMOKE_EDITS if args.smoke else EDIT_NAMES
    args.edit_list = select_edits(name.strip() for name in names if name.strip())
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as folder:
        results = run(args, Path(folder))
    harness.write_results(results, REPORT, args)
    if results["note"]:
        print(f"\n{'!' * 100}\n!!! {results['note']}\n{'!' * 100}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
