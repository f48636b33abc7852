"""The image fault matrix through the real `indexer full`: every bad photo ends as its row's status."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.catalog import CatalogEntry, sample_photo
from devstack.kit.catalog import catalog_environment
from devstack.kit.imageserver import FaultServer, serve_faults
from imgsearch import indices
from indexer.report import RunReport
from tests.integration.helpers import execute_sql, run_full, seed

pytestmark = pytest.mark.integration

MAX_BYTES = 200_000
REFUSED_URL = "http://127.0.0.1:9/photo.jpg"


@dataclass(frozen=True)
class Case:
    """One catalog row of the matrix: its photo and how it must end (reason None when indexed)."""

    name: str
    photo: str
    status: str
    reason: str | None = None
    requests: int | None = None  # how often the image server must have been asked (retries)


CASES = (
    Case("upright photo", "upright.jpg", "indexed", requests=1),
    Case("404", "missing.jpg", "download_failed", "http_404", requests=1),
    Case("500 then 200", "flaky/2/photo.jpg", "indexed", requests=3),
    Case("429 then 200", "throttle/1/0/photo.jpg", "indexed", requests=2),
    Case("503 every time", "status/503", "download_failed", "http_503", requests=3),
    Case("429, Retry-After 1 h", "throttle/1/3600/photo.jpg", "download_failed", "http_429", requests=1),
    Case("slow server past the timeout", "slow/5/photo.jpg", "download_failed", "timeout", requests=3),
    Case("server dripping bytes", "drip/0.2/photo.jpg", "download_failed", "timeout", requests=1),
    Case("connection reset", "reset/photo.jpg", "download_failed", "connection_reset", requests=3),
    Case("reset mid-body, then 200", "cut/1/photo.jpg", "indexed", requests=2),
    Case("connection refused", REFUSED_URL, "download_failed", "connection_refused"),
    Case("zero bytes", "empty.jpg", "decode_failed", "empty"),
    Case("HTML served as image/jpeg", "as-jpeg/page.html", "decode_failed", "not_an_image", requests=1),
    Case("truncated JPEG", "truncated.jpg", "decode_failed", "truncated"),
    Case("truncated WebP", "truncated.webp", "decode_failed", "truncated"),
    Case("CMYK JPEG", "cmyk.jpg", "indexed"),
    Case("16-bit PNG", "gray16.png", "indexed"),
    Case("palette PNG with transparency", "palette.png", "indexed"),
    Case("animated GIF", "animated.gif", "indexed"),
    Case("WebP", "photo.webp", "indexed"),
    Case("EXIF-rotated photo", "exif-rotated.jpg", "indexed"),
    Case("same pixels without EXIF", "sideways.jpg", "indexed"),
    Case("decompression bomb", "bomb.png", "decode_failed", "too_many_pixels"),
    Case("over the byte cap", "big.png", "download_failed", "too_large", requests=1),
    Case("unsupported format (ICO)", "icon.ico", "decode_failed", "unsupported_format"),
)
ROW_IDS = {case.name: row_id for row_id, case in enumerate(CASES, start=1)}


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def fault_files(photo: Image.Image) -> dict[str, bytes]:
    """Every file of the matrix, made from one real photograph."""
    sideways = photo.transpose(Image.Transpose.ROTATE_90)  # stored on its side; orientation 6 turns it back
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    noise = np.random.default_rng(7).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    upright = encode(photo, "JPEG", quality=92)
    webp = encode(photo, "WEBP", quality=90)
    return {
        "upright.jpg": upright,
        "photo.jpg": upright,
        "empty.jpg": b"",
        "page.html": b"<!doctype html><html><body><h1>404 Not Found</h1></body></html>",
        "truncated.jpg": upright[: len(upright) // 2],
        "cmyk.jpg": encode(photo.convert("CMYK"), "JPEG", quality=92),
        "gray16.png": encode(Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257), "PNG"),
        "palette.png": encode(palette, "PNG", transparency=0),
        "animated.gif": encode(photo, "GIF", save_all=True, append_images=[sideways], duration=100, loop=0),
        "photo.webp": webp,
        "truncated.webp": webp[: len(webp) // 2],
        "exif-rotated.jpg": encode(sideways, "JPEG", quality=92, exif=exif_orientation(6)),
        "sideways.jpg": encode(sideways, "JPEG", quality=92),
        "bomb.png": encode(Image.new("1", (8000, 8000)), "PNG"),  # 64 M pixels in a few kB
        "big.png": encode(Image.fromarray(noise), "PNG"),
        "icon.ico": encode(photo.resize((64, 64)), "ICO"),
    }


@pytest.fixture(scope="module")
def fault_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    photo = sample_photo("chelsea").resize((300, 200), Image.Resampling.LANCZOS)
    for name, data in fault_files(photo).items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(
    scope="module",
    params=[{"decode_processes": 0, "bulk_streams": 1}, {"decode_processes": 2, "bulk_streams": 3}],
    ids=["decode on the fetch threads, one bulk stream", "decode in 2 processes, 3 bulk streams"],
)
def spread(request) -> dict[str, int]:
    """How the run spreads its work: every row's outcome must be the same either way."""
    return request.param


@pytest.fixture(scope="module")
def fault_server(fault_folder, spread) -> Iterator[FaultServer]:
    """A fresh server (request counts from zero) for each way of spreading the work."""
    with serve_faults(fault_folder) as server:
        yield server


@dataclass(frozen=True)
class FaultRun:
    env: dict[str, str]
    report: RunReport
    documents: dict[str, dict]


@pytest.fixture(scope="module")
def fault_run(spread, stack_urls, es, extractor, fault_server, tmp_path_factory) -> Iterator[FaultRun]:
    """One full rebuild over the whole matrix (fast timeout, small byte cap); cleaned up afterwards."""
    alias = f"test-faults-{uuid.uuid4().hex[:8]}"
    env = {
        **catalog_environment(*stack_urls, alias, str(tmp_path_factory.mktemp("reports"))),
        "IMAGE_BASE_URL": fault_server.base_url,
        # Each download's deadline is timeout x (retries + 2) = 8 s: the slow server's three 2 s
        # attempts and their backoff (<= 1.125 s) end by ~7.1 s, and a reset row's three attempts have
        # ~7 s of slack for a loaded 2-core machine (at 1 s the 4 s budget ran out once in CI).
        "IMAGE_FETCH_TIMEOUT": "2",
        "IMAGE_FETCH_RETRIES": "2",
        "IMAGE_MAX_BYTES": str(MAX_BYTES),
    }
    seed(
        env, [CatalogEntry(ROW_IDS[case.name], f"product-{ROW_IDS[case.name]}", case.photo) for case in CASES]
    )
    try:
        report = run_full(env, extractor, max_failure_ratio=1.0, batch_size=4, workers=8, **spread)
        hits = es.search(index=alias, size=len(CASES) + 5)["hits"]["hits"]
        yield FaultRun(env, report, {hit["_id"]: hit["_source"] for hit in hits})
    finally:
        execute_sql(env, "DROP TABLE IF EXISTS `{table}`")
        es.options(ignore_status=404).indices.delete(index=f"{alias}*", expand_wildcards="all")


def test_fault_files_are_what_they_claim(fault_folder):
    folder = fault_folder
    assert (folder / "big.png").stat().st_size > MAX_BYTES > (folder / "gray16.png").stat().st_size
    assert (folder / "bomb.png").stat().st_size < 20_000
    with Image.open(folder / "gray16.png") as image:
        assert image.mode == "I;16"
    with Image.open(folder / "animated.gif") as image:
        assert image.n_frames == 2
    with Image.open(folder / "cmyk.jpg") as image:
        assert image.mode == "CMYK"
    with Image.open(folder / "palette.png") as image:
        assert image.mode == "P" and image.info["transparency"] == 0
    with Image.open(folder / "exif-rotated.jpg") as image:
        assert image.getexif()[0x0112] == 6


def test_the_run_succeeds_and_accounts_every_row(es, fault_run):
    report = fault_run.report
    assert report.outcome == "succeeded"
    assert report.rows_seen == len(CASES) and report.processed == len(CASES)
    assert indices.aliased_indices(es, fault_run.env["ES_INDEX"]) == [report.index]
    assert sorted(fault_run.documents, key=int) == [str(row_id) for row_id in ROW_IDS.values()]


def test_report_counts_match_the_matrix(fault_run):
    expected_statuses: dict[str, int] = {}
    expected_errors: dict[str, int] = {}
    for case in CASES:
        expected_statuses[case.status] = expected_statuses.get(case.status, 0) + 1
        if case.reason:
            key = f"{case.status}:{case.reason}"
            expected_errors[key] = expected_errors.get(key, 0) + 1
    assert dict(fault_run.report.statuses) == expected_statuses
    assert dict(fault_run.report.errors) == expected_errors


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_row_ends_with_its_status_and_reason(fault_run, fault_server, case):
    row_id = ROW_IDS[case.name]
    document = fault_run.documents[str(row_id)]
    assert (document["status"], document.get("error_reason")) == (case.status, case.reason), document
    if case.reason is None:
        assert len(document["feature"]) == 512 and "error_message" not in document
    else:
        assert "feature" not in document and document["error_message"]
        failure = next(item for item in fault_run.report.failures if item["id"] == row_id)
        assert (failure["status"], failure["reason"]) == (case.status, case.reason)
    if case.requests is not None:
        assert fault_server.hits(case.photo) == case.requests


def vector(fault_run: FaultRun, name: str) -> np.ndarray:
    return np.asarray(fault_run.documents[str(ROW_IDS[name])]["feature"])


def test_exif_rotated_photo_is_indexed_upright(fault_run):
    upright = vector(fault_run, "upright photo")
    rotated = vector(fault_run, "EXIF-rotated photo")
    sideways = vector(fault_run, "same pixels without EXIF")
    assert float(upright @ rotated) > 0.999
    # Seeded random weights make every photo look alike (even sideways scores ~0.99), so compare
    # distances: honouring the EXIF tag must land far closer to the upright photo than ignoring it.
    assert 1 - float(upright @ rotated) < (1 - float(upright @ sideways)) / 10


def test_transient_failures_that_recover_index_the_same_image(fault_run):
    upright = vector(fault_run, "upright photo")
    for name in ("500 then 200", "429 then 200", "reset mid-body, then 200"):
        assert float(upright @ vector(fault_run, name)) > 0.9999


def test_the_run_spread_its_work_as_asked(fault_run, spread):
    shape = fault_run.report.compute
    assert (shape["decode_processes"], shape["bulk_streams"]) == (
        spread["decode_processes"],
        spread["bulk_streams"],
    )
    assert shape["fetch_threads"] == 8
