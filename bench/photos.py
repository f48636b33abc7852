"""Realistic catalog photos for benchmarks: varied JPEGs from scikit-image's samples, served over HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from demo.catalog import PHOTOS, sample_photo

MIN_SIZE = (800, 600)
MAX_SIZE = (1600, 1200)
_SERVING = re.compile(r"port (\d+)")


def photo_variant(
    photo: Image.Image,
    rng: np.random.Generator,
    min_size: tuple[int, int] = MIN_SIZE,
    max_size: tuple[int, int] = MAX_SIZE,
) -> Image.Image:
    """A new shot of a product: random crop, maybe mirrored, other exposure, min_size..max_size."""
    width, height = photo.size
    keep = rng.uniform(0.7, 1.0)
    crop_w, crop_h = int(width * keep), int(height * keep)
    left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    shot = photo.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        shot = ImageOps.mirror(shot)
    shot = ImageEnhance.Brightness(shot).enhance(rng.uniform(0.8, 1.2))
    shot = ImageEnhance.Contrast(shot).enhance(rng.uniform(0.8, 1.2))
    target_w = int(rng.integers(min_size[0], max_size[0] + 1))
    portrait = rng.random() < 0.25
    size = (target_w * 3 // 4, target_w) if portrait else (target_w, target_w * 3 // 4)
    return shot.resize(size, Image.Resampling.LANCZOS)


def write_photos(
    folder: Path,
    count: int,
    seed: int = 0,
    min_size: tuple[int, int] = MIN_SIZE,
    max_size: tuple[int, int] = MAX_SIZE,
) -> list[Path]:
    """Write `count` distinct JPEGs (quality 85-92) cycling over the sample photos; return their paths.

    Landscape photos are min_size..max_size wide (4:3), a quarter of them portrait.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples = [sample_photo(name) for name in PHOTOS]
    paths: list[Path] = []
    for number in range(count):
        name = PHOTOS[number % len(PHOTOS)]
        path = folder / f"{number + 1:05d}-{name}.jpg"
        quality = int(rng.integers(85, 93))
        shot = photo_variant(samples[number % len(samples)], rng, min_size, max_size)
        shot.save(path, "JPEG", quality=quality)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class ImageServer:
    """A running image host: its base URL and process id (for CPU accounting)."""

    url: str
    pid: int


@contextmanager
def serve_folder(folder: Path) -> Iterator[ImageServer]:
    """Serve `folder` with Python's threaded http.server in a child process.

    A separate process, like a real image host, so serving costs no GIL time in the measured process.
    """
    command = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory"]
    server = subprocess.Popen(
        [*command, str(folder)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        match = _SERVING.search(line)
        if not match:
            raise RuntimeError(f"the image server did not start: {line!r}")
        yield ImageServer(f"http://127.0.0.1:{match.group(1)}/", server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
