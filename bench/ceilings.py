"""The hardware's ceilings for indexing: the model per precision and compile mode, decode on all cores."""

from __future__ import annotations

import argparse
import gc
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.machine import CpuMeter

# (precision, compile mode, batch size or None for that precision's default), cheapest last
MODEL_VARIANTS = (
    ("float32", "graph", None),
    ("float32", "xla", None),
    ("bfloat16", "graph", None),
    ("bfloat16", "graph", 8),
    ("bfloat16", "xla", None),
)


def add_compute_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--precision and --compile, defaulting to VGG16_PRECISION / VGG16_COMPILE or auto (the hardware's)."""
    from imgsearch.compute import COMPILE_MODES, PRECISIONS

    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=os.environ.get("VGG16_PRECISION", "auto"),
        help="VGG16_PRECISION of the measured code (default $VGG16_PRECISION or auto: from the hardware)",
    )
    parser.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default=os.environ.get("VGG16_COMPILE", "auto"),
        help="VGG16_COMPILE of the measured code (default $VGG16_COMPILE or auto)",
    )


@dataclass
class Phase:
    """One measured phase: how many images in how many seconds, and who used the CPU meanwhile."""

    name: str
    what: str
    images: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "images": self.images,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.rate, 3),
            "cpu": self.cpu,
            **self.extra,
        }


def timed_batches(extract: Callable[[np.ndarray], object], pixels: np.ndarray, batch: int) -> CpuMeter:
    """Run `extract` over every image in batches; the meter holds the wall time and cores used."""
    with CpuMeter() as meter:
        for start in range(0, len(pixels), batch):
            extract(pixels[start : start + batch])
    return meter


def model_variant(weights: str, precision: str, compile_mode: str, batch: int | None):
    """A FeatureExtractor in one precision and compile mode, warmed up at its batch size."""
    from imgsearch.features import FeatureExtractor

    extractor = FeatureExtractor(weights, 1234, precision, compile_mode, batch)
    warm = np.zeros((extractor.compute.batch_size, 224, 224, 3), dtype=np.uint8)
    extractor.extract(warm)
    extractor.extract(warm)
    return extractor


def model_matrix(weights: str, pixels: np.ndarray, rounds: int = 2) -> list[Phase]:
    """The bare model's images/s in every precision and compile mode (bf16 also at batch 8): all
    variants loaded at once and measured round-robin, `rounds` times, each keeping its fastest pass,
    so a slow minute of the shared machine does not land on one variant only."""
    variants = [model_variant(weights, *variant) for variant in MODEL_VARIANTS]
    best: list[Phase | None] = [None] * len(variants)
    for _ in range(rounds):
        for number, extractor in enumerate(variants):
            compute = extractor.compute
            meter = timed_batches(extractor.extract, pixels, compute.batch_size)
            name = f"model {compute.precision}, {compute.compile}, batch {compute.batch_size}"
            what = f"FeatureExtractor.extract over the pre-decoded images, fastest of {rounds} passes"
            detail = {"precision": compute.precision, "compile": compute.compile}
            detail["batch_size"] = compute.batch_size
            phase = Phase(name, what, len(pixels), meter.wall, meter.as_dict(), detail)
            if best[number] is None or phase.rate > best[number].rate:
                best[number] = phase
    del variants
    gc.collect()
    return [phase for phase in best if phase is not None]


def decode_rate(photos: list[bytes], threads: int | None = None, passes: int = 2) -> Phase:
    """`decode_image` of the JPEG bytes on `threads` threads (default: every core); Pillow releases the
    GIL while it decodes and resizes, so threads scale across cores."""
    from imgsearch.imaging import decode_image

    threads = threads or os.cpu_count() or 1
    work = photos * passes
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(decode_image, photos[:threads]))
        with CpuMeter() as meter:
            list(pool.map(decode_image, work))
    what = "decode_image of the JPEG bytes on a thread pool"
    return Phase(
        f"decode, {threads} threads", what, len(work), meter.wall, meter.as_dict(), {"threads": threads}
    )


def combined_ceiling(model_per_second: float, decode_per_second: float) -> float:
    """Images/s when the model and decoding share the same cores: each image costs both."""
    if model_per_second <= 0 or decode_per_second <= 0:
        return 0.0
    return 1.0 / (1.0 / model_per_second + 1.0 / decode_per_second)
