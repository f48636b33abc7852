"""Indexer images/s with no Elasticsearch, MySQL or network: the model and decode ceilings vs the pipeline."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench import harness
from bench.harness import CpuMeter, is_disturbed, say
from devstack.kit.imageserver import ServedFolder, serve_folder_process
from devstack.kit.processes import child_pids, process_seconds
from imgsearch.documents import CatalogRow, indexed_document
from imgsearch.features import FeatureExtractor
from imgsearch.imaging import decode_image
from indexer import Decoder, RowIndexer, RunOptions, RunReport, load_indexer_config, usable_cores

MODEL_SEED = 1234
TARGET, TARGET_BF16 = ("pipeline_over_ceiling", 0.8), 12_000.0  # the bf16 model's images/s, on a GPU
UPDATED = datetime(2024, 1, 1, tzinfo=UTC)
NO_MYSQL = "mysql://bench:unused@127.0.0.1:9/unused"  # validated by the config, never connected
PHOTOS = "generated JPEG 1024x768..1600x1200 (25% portrait), quality 85-92, 120-370 KB (mean ~220)"
Phase = dict[str, Any]


def options() -> harness.Options:
    opts = harness.Options("offline", "Indexer images/s without services: ceilings, pipeline, naive loop.")
    opts.preset("--images", int, 20_000, 48, "pipeline rows, cycling the distinct photos")
    opts.preset("--photos", int, 300, 12, "distinct generated photos")
    opts.preset("--model-images", int, 12_800, 16, "images per model ceiling pass")
    opts.preset("--decode-images", int, 4_000, 24, "images of the decode ceiling")
    opts.preset("--naive-images", int, 200, 6, "rows of the one-image-at-a-time loop")
    opts.add("--batch-size", type=int, help="images per model call (default: the compute plan's)")
    opts.add("--servers", type=int, help="image server processes (default: one per 4 usable cores)")
    opts.model()
    return opts


def write_photos(folder: Path, count: int, seed: int) -> list[Path]:
    """`count` JPEGs: a coarse random colour field enlarged smoothly, plus a grain JPEG cannot squeeze."""
    rng, paths = np.random.default_rng(seed), []
    for number in range(count):
        width = int(rng.integers(1024, 1601))
        size = (width * 3 // 4, width) if rng.random() < 0.25 else (width, width * 3 // 4)
        coarse = rng.integers(0, 256, (size[1] // 32 + 1, size[0] // 32 + 1, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC), np.int16)
        grain = rng.integers(-3, 4, (size[1], size[0], 1), dtype=np.int16)
        photo = Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))
        photo.save(path := folder / f"{number + 1:05d}.jpg", "JPEG", quality=int(rng.integers(85, 93)))
        paths.append(path)
    return paths


class Meter(CpuMeter):
    """CpuMeter plus `decode_workers`: our children but the image servers, alive or reaped (os.times)."""

    def __init__(self, servers: list[int]) -> None:
        super().__init__({"image_server": servers, "decode_workers": []})

    def sample(self) -> list[float]:
        servers, times = self.groups["image_server"], os.times()
        alive = sum(process_seconds(pid) for pid in child_pids(os.getpid()) if pid not in servers)
        return [*super().sample()[:-1], alive + times.children_user + times.children_system]


def phase(name: str, what: str, images: int, meter: CpuMeter, **extra: Any) -> Phase:
    """One measured phase: images in the meter's wall time, who used the CPU meanwhile, and details."""
    timing = {"seconds": round(meter.wall, 4), "images_per_second": round(images / meter.wall, 1)}
    return {"phase": name, "what": what, "images": images, **timing, "cpu": meter.as_dict(), **extra}


def rate(measured: Phase) -> float:
    return measured["images"] / measured["seconds"]


class CountingSink:
    """The pipeline's sink (and its factory): each action serialised, counted, reported written; no I/O."""

    def __init__(self) -> None:
        self.documents, self.bytes = 0, 0

    def __call__(self, on_result: Any) -> CountingSink:
        self.on_result = on_result
        return self

    def start(self) -> CountingSink:
        return self

    def put(self, action: dict[str, Any]) -> None:
        self.bytes += len(json.dumps(action["_source"]))
        self.documents += 1
        self.on_result(str(action["_id"]), True, None)

    def close(self) -> None:
        pass


class Bench:
    """One run's fixed parts: options, image servers, photos (bytes and decoded pixels), catalog rows."""

    def __init__(self, args: Any, photos: list[Path], servers: list[ServedFolder]) -> None:
        self.args, self.servers = args, [server.pid for server in servers]
        self.config = load_indexer_config(os.environ | {"MYSQL_URL": NO_MYSQL, "VGG16_WEIGHTS": args.weights})
        self.data = [path.read_bytes() for path in photos]
        self.pixels = np.stack([decode_image(data) for data in self.data])
        urls = [f"{servers[n % len(servers)].url}{photos[n % len(photos)].name}" for n in range(args.images)]
        self.rows = [(CatalogRow(n, harness.product_of(n), u, UPDATED), None) for n, u in enumerate(urls, 1)]

    def model(self, extractor: Any) -> Phase:
        """The bare model over the pre-decoded photos in the plan's batches, after an untimed warm-up."""
        plan, count, size = extractor.compute, len(self.pixels), extractor.compute.batch_size
        batches = [self.pixels[np.arange(start, start + size) % count] for start in range(0, count, size)]
        calls = max(1, self.args.model_images // size)
        extractor.extract(batches[0])
        with Meter(self.servers) as meter:
            for call in range(calls):
                extractor.extract(batches[call % len(batches)])
        what = f"FeatureExtractor.extract, pre-decoded uint8 224x224, {plan.compile}, batch {size}"
        return phase(f"model {plan.precision}", what, calls * size, meter, precision=plan.precision)

    def decode(self) -> Phase:
        """Decoder with one process per usable core over the JPEG bytes, fed by twice as many threads."""
        processes, cap, data = usable_cores(), self.config.fetch.max_pixels, self.data
        work, decoder = [data[n % len(data)] for n in range(self.args.decode_images)], Decoder(processes)
        with ThreadPoolExecutor(2 * processes) as pool:
            list(pool.map(lambda image: decoder(image, cap), data[: 2 * processes]))  # start the workers
            with Meter(self.servers) as meter:
                list(pool.map(lambda image: decoder(image, cap), work))
        decoder.close()
        what = "indexer Decoder (decode_image: draft, EXIF, resize to 224) in worker processes"
        return phase(f"decode, {processes} processes", what, len(work), meter, processes=processes)

    def pipeline(self, extractor: Any) -> Phase:
        """RowIndexer with auto settings: HTTP fetch → decode → model → documents → a counting sink."""
        sink = CountingSink()
        report, options = RunReport("bench-offline", "offline"), RunOptions(batch_size=self.args.batch_size)
        # no Elasticsearch client: only the default sink, BulkWriter, would use one
        indexer = RowIndexer(self.config, None, extractor, report, options, sink=sink)
        with Meter(self.servers) as meter:
            indexer.index(self.rows, "offline")
        statuses, wanted, stages = dict(report.statuses), len(self.rows), report.stage_seconds
        if statuses != {"indexed": wanted} or sink.documents != wanted:
            raise RuntimeError(f"pipeline: {statuses} ({dict(report.errors)}), not {wanted} indexed")
        extra = {"statuses": statuses, "shape": indexer.shape(), "document_bytes": sink.bytes}
        extra["stage_seconds"] = {stage: round(seconds, 3) for stage, seconds in stages.items()}
        extra["model_busy_share"] = round(stages["model"] / meter.wall, 3)
        what = "RowIndexer.index: HTTP fetch, decode, model, documents into a counting sink"
        return phase("pipeline", what, wanted, meter, **extra)

    def naive(self, extractor: Any) -> Phase:
        """One image at a time on one thread: urllib GET, decode_image, the model on a batch of one."""
        rows = [row for row, _ in self.rows[: self.args.naive_images]]
        extractor.extract(self.pixels[:1])  # a batch of one compiles once, untimed
        with Meter(self.servers) as meter:
            for row in rows:
                with urllib.request.urlopen(row.photo, timeout=30) as response:
                    pixels = decode_image(response.read())
                vector = extractor.extract(pixels[None])[0][0]
                json.dumps(indexed_document(row, row.photo, vector, datetime.now(UTC)))
        what = "urllib GET, decode_image, FeatureExtractor.extract on a batch of 1, document JSON"
        return phase("naive", what, len(rows), meter)


def measure(bench: Bench) -> tuple[dict[str, Phase], Any]:
    """The model in float32 and bfloat16, decoding on every core, the pipeline and the naive loop."""
    a, phases = bench.args, {}
    build = lambda precision: FeatureExtractor(a.weights, MODEL_SEED, precision, a.compile, a.batch_size)  # noqa: E731
    extractor = build(a.precision)
    say(f"model on {extractor.device}; measuring ...")
    for precision in ("float32", "bfloat16"):  # the pipeline's extractor is one of them
        model = extractor if precision == extractor.compute.precision else build(precision)
        phases[f"model {precision}"] = bench.model(model)
    phases["decode"], phases["pipeline"] = bench.decode(), bench.pipeline(extractor)
    return phases | {"naive": bench.naive(extractor)}, extractor


def results_of(args: Any, phases: dict[str, Phase], extractor: Any) -> dict[str, Any]:
    """The harness's envelope, settings, summary, ratios and targets. Pipeline / ceiling: min(model,
    decode) with the model on an accelerator, 1/(1/model + 1/decode) when they share the CPU's cores."""
    results = harness.envelope(args, args.load_before) | {"benchmark": "indexer-offline"}
    accelerated, precision = bool(results["machine"]["gpus"]), extractor.compute.precision
    model, decode = rate(phases[f"model {precision}"]), rate(phases["decode"])
    ceiling = min(model, decode) if accelerated else 1.0 / (1.0 / model + 1.0 / decode)
    pipeline, naive = rate(phases["pipeline"]), rate(phases["naive"])
    ratios = {"pipeline_over_ceiling": pipeline / ceiling, "pipeline_over_naive": pipeline / naive}
    ratios |= {"pipeline_over_model": pipeline / model, "pipeline_over_decode": pipeline / decode}
    ratios["bfloat16_over_float32"] = rate(phases["model bfloat16"]) / rate(phases["model float32"])
    summary = {"model": model, "decode": decode, "ceiling": ceiling, "pipeline": pipeline, "naive": naive}
    target = {"ratio": TARGET[0], "value": TARGET[1], "met": ratios[TARGET[0]] >= TARGET[1]}
    bf16 = rate(phases["model bfloat16"]) >= TARGET_BF16 if accelerated else None
    target |= {"ceiling": "min(model, decode)" if accelerated else "1/(1/model + 1/decode), same cores"}
    target |= {"model_bfloat16_images_per_second": TARGET_BF16, "model_bfloat16_met": bf16}
    keys = "smoke images photos model_images decode_images naive_images batch_size servers weights"
    settings = harness.pick(args, keys) | {"photos_made": PHOTOS, "device": extractor.device}
    settings |= {"compute": extractor.compute.as_meta(), "pipeline": phases["pipeline"]["shape"]}
    results["summary"] = {f"{key}_images_per_second": round(value, 1) for key, value in summary.items()}
    results |= {"ratios": {key: round(value, 3) for key, value in ratios.items()}, "target": target}
    flagged = [measured["phase"] for measured in phases.values() if is_disturbed(measured["cpu"])]
    return results | {"settings": settings, "phases": list(phases.values()), "disturbed_phases": flagged}


TABLES = ["target", "summary", "ratios", "settings", "phases"]
REPORT = harness.Report("Indexer throughput with no services: ceilings, pipeline, naive loop", TABLES)


def main(argv: list[str] | None = None) -> int:
    args = options().parse(argv)
    args.servers = args.servers or max(1, usable_cores() // 4)
    args.load_before = harness.load_before(args.wait_idle)
    with tempfile.TemporaryDirectory(prefix="bench-offline-") as folder, ExitStack() as stack:
        say(f"writing {args.photos} photos; {args.servers} image server processes ...")
        photos = write_photos(Path(folder), args.photos, seed=0)
        servers = [stack.enter_context(serve_folder_process(Path(folder))) for _ in range(args.servers)]
        phases, extractor = measure(Bench(args, photos, servers))
    harness.write_results(results_of(args, phases, extractor), REPORT, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
