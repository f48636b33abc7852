"""Indexer throughput side by side in one run: the bare model's ceiling, `indexer full`, a naive loop."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.catalog import catalog_environment, drop_catalog, fill_defaults, seed_catalog
from bench.ceilings import (
    Phase,
    add_compute_arguments,
    combined_ceiling,
    decode_rate,
    model_matrix,
    timed_batches,
)
from bench.machine import CpuMeter, load_average, machine_facts, wait_for_load_below
from bench.naive import naive_index, warm_up_predict
from bench.photos import ImageServer, serve_folder, write_photos

log = logging.getLogger("bench.indexer")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 0.90  # float32: pipeline / model ceiling
TARGET_COMBINED_RATIO = 0.85  # bfloat16: pipeline / (model + decode on the same cores)
TARGET_REUSE_SPEEDUP = 50.0
REUSE_PHASES = ("full, reuse", "incremental")
CHANGE_LAG_SECONDS = "1"  # the smallest INDEXER_CHANGE_LAG_SECONDS, so touched rows are due at once
IDLE_LOAD = 0.5
DISTURBED_CORES = 0.1  # others' cores above which a phase is flagged (Elasticsearch alone uses ~0.05)
DEFAULTS = {"images": 120, "naive_images": 30, "repeats": 3, "reuse_rows": 5000}
SMOKE = {"images": 16, "naive_images": 4, "repeats": 1, "reuse_rows": 400}

DESCRIPTION = """\
Measure, in one process and on the same freshly generated catalog photos:
  ceilings  the bare model in every precision and compile mode (float32/bfloat16 x graph/XLA, bf16
            also at batch 8), decode_image on all cores, and their combined ceiling on the shared
            cores, 1 / (1/model + 1/decode), for the precision the pipeline runs in
  ceiling   FeatureExtractor.extract on pre-decoded 224x224 batches (batch size = the pipeline's),
            after warm-up; one pass before and one after every pipeline run (C P C P C)
  pipeline  `indexer full --recompute` in-process (FullRebuild): MariaDB rows -> HTTP download ->
            decode -> VGG16 -> bulk -> validate -> alias swap; wall time of run(), model load excluded;
            --repeats runs, each compared with the faster ceiling pass next to it, median ratio
  reuse     the catalog grown to --reuse-rows rows (the N photos cycled, their documents written
            with the vectors just computed, untimed), then `indexer full` with vector reuse and
            nothing changed (no model call), then `indexer incremental` after --changed-share of
            the rows got a new updated_at (only those are downloaded and go through the model)
  naive     the tutorial loop on the first --naive-images rows: pages of --naive-page-size rows read
            with LIMIT offset, urllib download, keras load_img, model.predict on a batch of 1, one
            streaming_bulk per page
and report images/second (catalog rows brought up to date per second for the reuse phases) and the
ratios pipeline/ceiling, pipeline/combined ceiling, naive/ceiling, pipeline/naive, reuse/pipeline and
incremental/pipeline. The naive loop runs the float32 model, as a tutorial would.

Photos are JPEGs of 800x600..1600x1200 made from scikit-image's sample photographs (random crop,
mirror, exposure, quality 85-92), served by Python's threaded http.server in a child process. Rows
go into a throwaway MariaDB table bench_<random>, documents into throwaway indices bench-<random>*;
both are removed afterwards. Needs ES_URL and MYSQL_URL (eval "$(bash scripts/stack.sh env)").

Results: a table on stdout, bench/results/indexer-<UTC time>.json and bench/results/indexer-latest.md.
The machine is shared: each phase records the cores used by this process, the image server and
everything else (Elasticsearch included), and the 1-minute load average is recorded before and after."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.indexer",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a quick check that every phase runs (about a minute): {SMOKE} unless given; "
        "results go to indexer-smoke-*",
    )
    parser.add_argument("--images", type=int, help="catalog rows / photos (default 120)")
    parser.add_argument("--naive-images", type=int, help="rows the slow naive loop indexes (default 30)")
    parser.add_argument(
        "--naive-page-size",
        type=int,
        default=10,
        help="rows per LIMIT/OFFSET page of the naive loop (default 10)",
    )
    parser.add_argument(
        "--repeats", type=int, help="pipeline runs, each between two ceiling passes (default 3)"
    )
    parser.add_argument(
        "--reuse-rows",
        type=int,
        help="catalog rows for the reuse and incremental phases, the N photos cycled (default 5000; 0 skips)",
    )
    parser.add_argument(
        "--changed-share",
        type=float,
        default=0.01,
        help="share of those rows changed before the incremental run (default 0.01 = 1%%)",
    )
    parser.add_argument(
        "--batch-size", type=int, help="images per model call (default: the extractor's for its precision)"
    )
    parser.add_argument("--workers", type=int, default=8, help="pipeline download/decode threads (default 8)")
    parser.add_argument("--page-size", type=int, default=500, help="catalog keyset page size (default 500)")
    parser.add_argument(
        "--weights",
        default=os.environ.get("VGG16_WEIGHTS", "random"),
        help="VGG16_WEIGHTS for the run (default: $VGG16_WEIGHTS or 'random', same compute cost)",
    )
    parser.add_argument(
        "--intra-op-threads", type=int, default=0, help="TensorFlow intra-op threads (0 = TF)"
    )
    parser.add_argument(
        "--inter-op-threads", type=int, default=0, help="TensorFlow inter-op threads (0 = TF)"
    )
    add_compute_arguments(parser)
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"first wait up to SECONDS for the 1-minute load average to drop below {IDLE_LOAD}",
    )
    parser.add_argument(
        "--require-ratio",
        type=float,
        default=None,
        help="exit 1 when pipeline/ceiling is below this (default: report only)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where results are written")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated photos (default 0)")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def configure_tensorflow(intra: int, inter: int) -> None:
    """Thread pools must be set before TensorFlow initialises its runtime (0 keeps TF's default)."""
    import tensorflow as tf

    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)


def decode_photos(photos: list[Path]) -> np.ndarray:
    """Pre-decode with the project's decoder, so the ceiling phase is the model alone."""
    from imgsearch.imaging import decode_image

    return np.stack([decode_image(path.read_bytes()) for path in photos])


def measure_ceiling(extractor, pixels: np.ndarray, batch_size: int, label: str) -> Phase:
    """FeatureExtractor.extract over every pre-decoded image in batches of `batch_size`."""
    meter = timed_batches(extractor.extract, pixels, batch_size)
    what = f"FeatureExtractor.extract, batch {batch_size}, pre-decoded uint8 224x224"
    return Phase(label, what, len(pixels), meter.wall, meter.as_dict())


def run_in_process(env, extractor, args: argparse.Namespace, server: ImageServer, runner, recompute: bool):
    """One indexer run in-process (FullRebuild or IncrementalRun), timed from run() to its return."""
    from imgsearch.esclient import make_client
    from indexer import CatalogSource, RunOptions, load_indexer_config

    config = load_indexer_config(env)
    es = make_client(config.elastic)
    source = CatalogSource(config.mysql, page_size=args.page_size)
    options = RunOptions(batch_size=args.batch_size, workers=args.workers, recompute=recompute)
    try:
        with CpuMeter([server.pid]) as meter:
            report = runner(config, es, source, extractor, options).run()
    finally:
        source.close()
    if report.outcome != "succeeded":
        raise RuntimeError(f"{report.mode} run {report.outcome}: {report.message}; {dict(report.statuses)}")
    return report, meter


def run_extra(report, meter: CpuMeter) -> dict[str, Any]:
    return {
        "statuses": dict(report.statuses),
        "stage_seconds": {stage: round(seconds, 3) for stage, seconds in report.stage_seconds.items()},
        "model_busy_share": round(report.stage_seconds.get("model", 0.0) / meter.wall, 3),
    }


def measure_pipeline(env, extractor, args: argparse.Namespace, server: ImageServer, label: str) -> Phase:
    """`indexer full --recompute` in-process; the clock covers run() from index creation to alias swap."""
    from indexer import FullRebuild

    report, meter = run_in_process(env, extractor, args, server, FullRebuild, recompute=True)
    indexed = report.statuses.get("indexed", 0)
    if indexed != args.images:
        raise RuntimeError(f"pipeline run indexed {indexed} of {args.images}: {dict(report.statuses)}")
    what = "FullRebuild.run(), recompute, fresh HTTP downloads -> alias swap"
    return Phase(label, what, indexed, meter.wall, meter.as_dict(), run_extra(report, meter))


def grow_catalog(env, photos: list[Path], total: int) -> int:
    """Extend the catalog to `total` rows cycling the N photos, as if a full run had indexed them all.

    Rows N+1..total point at the same photo files as rows 1..N; their documents are written into the
    live index with the vector the pipeline just computed for the same photo bytes (what a full run
    would store for them), so the reuse and incremental phases start from an up-to-date index of
    `total` rows without `total` model calls. Setup only: not timed.
    """
    from elasticsearch.helpers import bulk

    from demo.catalog import CATALOG_UPDATED_AT, CatalogEntry, load_catalog
    from imgsearch.documents import CatalogRow, index_action, indexed_document
    from imgsearch.esclient import make_client
    from indexer import load_indexer_config

    config = load_indexer_config(env)
    first = len(photos) + 1
    entries = [
        CatalogEntry(number, f"product-{(number - 1) // 3 + 1:04d}", photos[(number - 1) % len(photos)].name)
        for number in range(first, total + 1)
    ]
    load_catalog(config.mysql, entries, replace=False)
    es = make_client(config.elastic)
    alias = config.elastic.alias
    (live,) = es.indices.get_alias(name=alias)
    stored = es.mget(index=live, ids=[str(n) for n in range(1, first)], source=["feature", "image_url"])
    vectors = {int(doc["_id"]): doc["_source"] for doc in stored["docs"] if doc.get("found")}
    moment = datetime.now(UTC)
    actions = (
        index_action(
            live,
            entry.id,
            indexed_document(
                CatalogRow(entry.id, entry.relation_id, entry.photo, CATALOG_UPDATED_AT),
                vectors[(entry.id - 1) % len(photos) + 1]["image_url"],
                vectors[(entry.id - 1) % len(photos) + 1]["feature"],
                moment,
            ),
        )
        for entry in entries
    )
    written, errors = bulk(es, actions, chunk_size=500, max_retries=3, raise_on_error=False)
    if errors:
        raise RuntimeError(f"growing the bench index failed: {errors[:3]}")
    es.indices.refresh(index=live)
    return written


def measure_reuse(env, extractor, args: argparse.Namespace, server: ImageServer) -> Phase:
    """`indexer full` with vector reuse when nothing changed: every row's stored vector is reused."""
    from indexer import FullRebuild

    report, meter = run_in_process(env, extractor, args, server, FullRebuild, recompute=False)
    reused = report.statuses.get("reused", 0)
    if reused != args.reuse_rows:
        raise RuntimeError(f"reuse run reused {reused} of {args.reuse_rows} rows: {dict(report.statuses)}")
    what = "FullRebuild.run(), vector reuse, nothing changed -> alias swap"
    return Phase(REUSE_PHASES[0], what, reused, meter.wall, meter.as_dict(), run_extra(report, meter))


def touch_rows(env, share: float, total: int) -> list[int]:
    """Mark `share` of the rows changed (updated_at = now), spread evenly over the catalog."""
    from indexer import connect, load_indexer_config

    config = load_indexer_config(env)
    count = max(1, round(total * share))
    ids = [1 + (number * total) // count for number in range(count)]
    connection = connect(config.mysql)
    try:
        cursor = connection.cursor()
        marks = ", ".join(["%s"] * len(ids))
        cursor.execute(f"UPDATE `{config.mysql.table}` SET updated_at = NOW() WHERE id IN ({marks})", ids)
        cursor.close()
    finally:
        connection.close()
    time.sleep(float(env["INDEXER_CHANGE_LAG_SECONDS"]) + 1.1)  # let the change lag pass them
    return ids


def measure_incremental(env, extractor, args: argparse.Namespace, server: ImageServer) -> Phase:
    """`indexer incremental` after `--changed-share` of the rows changed: only those reach the model."""
    from indexer import IncrementalRun

    changed = touch_rows(env, args.changed_share, args.reuse_rows)
    report, meter = run_in_process(env, extractor, args, server, IncrementalRun, recompute=False)
    indexed = report.statuses.get("indexed", 0)
    if indexed != len(changed) or report.failed:
        raise RuntimeError(f"incremental run indexed {indexed} of {len(changed)}: {dict(report.statuses)}")
    what = (
        f"IncrementalRun.run(), {len(changed)} of {args.reuse_rows} rows changed "
        "(download + model), deleted-row sweep over all"
    )
    extra = run_extra(report, meter) | {"rows_changed": len(changed)}
    return Phase(REUSE_PHASES[1], what, args.reuse_rows, meter.wall, meter.as_dict(), extra)


def measure_naive(env, args: argparse.Namespace, server: ImageServer) -> Phase:
    """The tutorial loop into its own throwaway index (index and connection made before the clock)."""
    from imgsearch.esclient import make_client
    from imgsearch.features import build_vgg16
    from imgsearch.indices import load_index_definition
    from indexer import connect, load_indexer_config

    config = load_indexer_config(env)
    es = make_client(config.elastic)
    index = f"{config.elastic.alias}-naive"
    body = load_index_definition(config.elastic, {"created_by": "bench.indexer naive"})
    es.indices.create(index=index, settings=body["settings"], mappings=body["mappings"])
    model = build_vgg16(args.weights, 1234)  # Keras's default float32, as the tutorials run it
    warm_up_predict(model)
    connection = connect(config.mysql)
    try:
        with CpuMeter([server.pid]) as meter:
            indexed = naive_index(
                model,
                es,
                index,
                connection,
                config.mysql.table,
                config.fetch.base_url,
                min(args.naive_images, args.images),
                args.naive_page_size,
            )
    finally:
        connection.close()
    what = (
        f"LIMIT offset pages of {args.naive_page_size} + urllib + keras load_img + model.predict(batch 1) "
        "+ streaming_bulk per page"
    )
    return Phase("naive", what, indexed, meter.wall, meter.as_dict())


@dataclass
class Measurements:
    """Ceiling passes interleaved with pipeline runs (C P C P C ...), and one naive run."""

    ceilings: list[Phase]
    pipelines: list[Phase]
    naive: Phase
    reuse: list[Phase] = field(default_factory=list)
    matrix: list[Phase] = field(default_factory=list)
    decode: Phase | None = None

    def combined(self, model_rate: float) -> float:
        """The model and decoding on the same cores (the decode ceiling measured once)."""
        return combined_ceiling(model_rate, self.decode.rate) if self.decode else model_rate

    def run_ratios(self) -> list[float]:
        """Each pipeline run against the faster of the ceiling passes just before and after it."""
        return [
            run.rate / max(self.ceilings[number].rate, self.ceilings[number + 1].rate)
            for number, run in enumerate(self.pipelines)
        ]

    @property
    def ceiling(self) -> Phase:
        return max(self.ceilings, key=lambda phase: phase.rate)

    @property
    def pipeline(self) -> Phase:
        """The median pipeline run (the lower middle one for an even count)."""
        ordered = sorted(self.pipelines, key=lambda phase: phase.rate)
        return ordered[(len(ordered) - 1) // 2]

    def combined_ratios(self) -> list[float]:
        """Each pipeline run against the combined ceiling of its faster adjacent model pass and decode."""
        return [
            run.rate / self.combined(max(self.ceilings[number].rate, self.ceilings[number + 1].rate))
            for number, run in enumerate(self.pipelines)
        ]

    def ratios(self) -> dict[str, Any]:
        per_run = self.run_ratios()
        combined = self.combined_ratios()
        return {
            "pipeline_over_ceiling": round(float(np.median(per_run)), 3),
            "pipeline_over_ceiling_per_run": [round(value, 3) for value in per_run],
            "pipeline_over_combined": round(float(np.median(combined)), 3),
            "pipeline_over_combined_per_run": [round(value, 3) for value in combined],
            "naive_over_ceiling": round(self.naive.rate / self.ceiling.rate, 3),
            "pipeline_over_naive": round(self.pipeline.rate / self.naive.rate, 3),
            **{
                f"{slug(phase.name)}_over_pipeline": round(phase.rate / self.pipeline.rate, 1)
                for phase in self.reuse
            },
        }


def slug(name: str) -> str:
    """'full, reuse' -> 'full_reuse'."""
    return name.replace(", ", "_").replace(" ", "_")


def measure_rounds(
    args: argparse.Namespace, env, extractor, pixels: np.ndarray, server: ImageServer
) -> tuple[list[Phase], list[Phase]]:
    """Ceiling passes and pipeline runs as C P C P ... C: every run has a ceiling pass on either side."""
    ceilings = [measure_ceiling(extractor, pixels, args.batch_size, "ceiling pass 1")]
    pipelines: list[Phase] = []
    for number in range(1, args.repeats + 1):
        pipelines.append(measure_pipeline(env, extractor, args, server, f"pipeline run {number}"))
        ceilings.append(measure_ceiling(extractor, pixels, args.batch_size, f"ceiling pass {number + 1}"))
    return ceilings, pipelines


def run_phases(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], Measurements]:
    """Generate photos, seed the catalog, load the model once, then measure every phase."""
    from imgsearch.features import FeatureExtractor

    print(f"writing {args.images} photos ...", file=sys.stderr)
    photos = write_photos(folder / "photos", args.images, args.seed)
    run_id = uuid.uuid4().hex[:10]
    with serve_folder(folder / "photos") as server:
        env = catalog_environment(
            f"bench-{run_id}",
            f"bench_{run_id}",
            server.url,
            args.weights,
            INDEXER_REPORT_DIR=str(folder / "reports"),
            INDEXER_CHANGE_LAG_SECONDS=CHANGE_LAG_SECONDS,
        )
        try:
            seed_catalog(env, photos)
            pixels = decode_photos(photos)
            print("measuring decode and the model in every precision and compile mode ...", file=sys.stderr)
            decode = decode_rate([path.read_bytes() for path in photos])
            matrix = model_matrix(args.weights, pixels)
            extractor = FeatureExtractor(args.weights, 1234, args.precision, args.compile, args.batch_size)
            args.batch_size = extractor.compute.batch_size
            extractor.warm_up()
            extractor.extract(pixels[: args.batch_size])
            print(f"model on {extractor.device}; measuring ...", file=sys.stderr)
            ceilings, pipelines = measure_rounds(args, env, extractor, pixels, server)
            reuse = measure_reuse_phases(args, env, extractor, photos, server)
            naive = measure_naive(env, args, server)
        finally:
            drop_catalog(env)
    settings = {
        "device": extractor.device,
        "compute": extractor.compute.as_meta(),
        "table": env["MYSQL_TABLE"],
        "alias": env["ES_INDEX"],
    }
    return settings, Measurements(ceilings, pipelines, naive, reuse, matrix, decode)


def measure_reuse_phases(args: argparse.Namespace, env, extractor, photos: list[Path], server) -> list[Phase]:
    """Item 4: grow the catalog (untimed), a reuse-only full rebuild, then an incremental run."""
    if args.reuse_rows <= 0:
        return []
    if args.reuse_rows < args.images:
        raise SystemExit(f"--reuse-rows {args.reuse_rows} must be 0 or at least --images {args.images}")
    print(f"growing the catalog to {args.reuse_rows} rows for the reuse phases ...", file=sys.stderr)
    grow_catalog(env, photos, args.reuse_rows)
    return [measure_reuse(env, extractor, args, server), measure_incremental(env, extractor, args, server)]


def results_of(args: argparse.Namespace, argv: list[str], facts, settings, measured, loads) -> dict[str, Any]:
    ratios = measured.ratios()
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    return {
        "benchmark": "indexer",
        "command": f"{python} -m bench.indexer {shlex.join(argv)}".rstrip(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": facts,
        "load_average": loads,
        "settings": {
            "smoke": args.smoke,
            "images": args.images,
            "naive_images": min(args.naive_images, args.images),
            "naive_page_size": args.naive_page_size,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "repeats": args.repeats,
            "page_size": args.page_size,
            "reuse_rows": args.reuse_rows,
            "changed_share": args.changed_share,
            "weights": args.weights,
            "intra_op_threads": args.intra_op_threads,
            "inter_op_threads": args.inter_op_threads,
            "precision": args.precision,
            "compile": args.compile,
            "photos": "JPEG 800x600..1600x1200 (25% portrait), quality 85-92, from scikit-image samples",
            **settings,
        },
        "ceilings": ceilings_of(measured),
        "summary": {
            "ceiling_images_per_second": round(measured.ceiling.rate, 3),
            "combined_ceiling_images_per_second": round(measured.combined(measured.ceiling.rate), 3),
            "pipeline_images_per_second": round(measured.pipeline.rate, 3),
            "naive_images_per_second": round(measured.naive.rate, 3),
        },
        "phases": [phase.as_dict() | {"phase": phase.name} for phase in measured_order(measured)],
        "ratios": ratios,
        "disturbed_phases": disturbed(measured_order(measured)),
        "target": {
            **pipeline_target(settings["compute"]["precision"], ratios),
            "reuse_over_pipeline": TARGET_REUSE_SPEEDUP,
            "reuse_met": all(
                ratios[f"{slug(phase.name)}_over_pipeline"] >= TARGET_REUSE_SPEEDUP
                for phase in measured.reuse
            )
            if measured.reuse
            else None,
        },
    }


def ceilings_of(measured: Measurements) -> dict[str, Any]:
    """The hardware's ceilings, measured once before the pipeline rounds."""
    return {
        "model": [phase.as_dict() | {"phase": phase.name} for phase in measured.matrix],
        "decode": measured.decode.as_dict() | {"phase": measured.decode.name} if measured.decode else None,
    }


def pipeline_target(precision: str, ratios: dict[str, Any]) -> dict[str, Any]:
    """Which ceiling the target is measured against: in bf16 the model no longer dwarfs decoding, so the
    pipeline is held to the model and decoding sharing the cores; in float32 to the model alone."""
    ratio, target = (
        ("pipeline_over_combined", TARGET_COMBINED_RATIO)
        if precision == "bfloat16"
        else ("pipeline_over_ceiling", TARGET_RATIO)
    )
    return {"ratio": ratio, "value": target, "met": ratios[ratio] >= target}


def disturbed(phases: list[Phase]) -> list[str]:
    """Phases during which other processes kept more than DISTURBED_CORES cores busy.

    The reuse phases are left out: Elasticsearch (counted among the others) does most of their work.
    """
    return [
        phase.name
        for phase in phases
        if phase.cpu.get("other_cores", 0.0) > DISTURBED_CORES and phase.name not in REUSE_PHASES
    ]


def measured_order(measured: Measurements) -> list[Phase]:
    """Phases in the order they ran."""
    interleaved = [measured.ceilings[0]]
    for run, ceiling in zip(measured.pipelines, measured.ceilings[1:], strict=True):
        interleaved += [run, ceiling]
    return [*interleaved, *measured.reuse, measured.naive]


def render_markdown(results: dict[str, Any]) -> str:
    """The human-readable tables written to indexer-latest.md and printed."""
    machine, settings, summary = results["machine"], results["settings"], results["summary"]
    loads, ratios = results["load_average"], results["ratios"]
    lines = [
        "# Indexer throughput: pipeline vs model ceiling vs naive",
        "",
        f"`{results['command']}` (finished {results['finished_at']})",
        "",
        f"Machine: {machine['cpu']}; TensorFlow {machine['tensorflow']}, "
        f"Keras {machine['keras']}, GPUs seen: {', '.join(machine['gpus']) or 'none'}; model on "
        f"{settings['device']}. Load average (1/5/15 min) before {loads['before']}, after {loads['after']}.",
        "",
        f"Pipeline precision {settings['compute']['precision']}, compile {settings['compute']['compile']}: "
        f"{settings['compute']['reason']}.",
        "",
        f"N = {settings['images']} photos ({settings['photos']}); batch size {settings['batch_size']}, "
        f"workers {settings['workers']}, {settings['repeats']} pipeline runs, weights "
        f"`{settings['weights']}`, naive on the first {settings['naive_images']}.",
        "",
        *ceiling_table(results),
        "",
        "| phase, in the order run | what | images | seconds | images/s | "
        "cores: own / image server / others / stolen |",
        "|---|---|---:|---:|---:|---|",
    ]
    for phase in results["phases"]:
        cpu = phase["cpu"]
        lines.append(
            f"| {phase['phase']} | {phase['what']} | {phase['images']} | {phase['seconds']:.2f} | "
            f"{phase['images_per_second']:.2f} | {cpu['own_cores']} / {cpu['image_server_cores']} / "
            f"{cpu['other_cores']} / {cpu['stolen_cores']} |"
        )
    per_run = ", ".join(f"{value:.3f}" for value in ratios["pipeline_over_ceiling_per_run"])
    combined_per_run = ", ".join(f"{value:.3f}" for value in ratios["pipeline_over_combined_per_run"])
    target = results["target"]
    lines += [
        "",
        "| summary | value |",
        "|---|---:|",
        f"| ceiling, fastest pass (images/s) | {summary['ceiling_images_per_second']:.2f} |",
        f"| pipeline, median run (images/s) | {summary['pipeline_images_per_second']:.2f} |",
        f"| naive (images/s) | {summary['naive_images_per_second']:.2f} |",
        f"| combined ceiling, model + decode on the same cores (images/s) | "
        f"{summary['combined_ceiling_images_per_second']:.2f} |",
        f"| pipeline / model ceiling (median over runs of run / faster adjacent ceiling pass; per run: "
        f"{per_run}) | {ratios['pipeline_over_ceiling']:.3f} |",
        f"| pipeline / combined ceiling (per run: {combined_per_run}) | "
        f"{ratios['pipeline_over_combined']:.3f} |",
        f"| **target: {target['ratio']} ≥ {target['value']:.2f}** | "
        f"**{'met' if target['met'] else 'NOT met'}** |",
        f"| naive / ceiling | {ratios['naive_over_ceiling']:.3f} |",
        f"| pipeline / naive | {ratios['pipeline_over_naive']:.2f}x |",
        *reuse_summary(results),
        "",
        disturbance_note(results["disturbed_phases"]),
        "",
        "Pipeline stage seconds (summed over threads) and the share of wall time the model was busy: "
        + "; ".join(
            f"{phase['phase']}: {phase['stage_seconds']}, model busy {phase['model_busy_share']:.0%}"
            for phase in results["phases"]
            if "stage_seconds" in phase
        ),
        "",
    ]
    return "\n".join(lines)


def ceiling_table(results: dict[str, Any]) -> list[str]:
    """The model in every precision and compile mode, and decoding on all cores."""
    ceilings = results["ceilings"]
    rows = [
        "| ceiling (measured once, before the pipeline rounds) | images/s | cores: own / others |",
        "|---|---:|---|",
    ]
    for phase in [*ceilings["model"], *([ceilings["decode"]] if ceilings["decode"] else [])]:
        cpu = phase["cpu"]
        cores = f"{cpu['own_cores']} / {cpu['other_cores']}"
        rows.append(f"| {phase['phase']} | {phase['images_per_second']:.2f} | {cores} |")
    return rows


def reuse_summary(results: dict[str, Any]) -> list[str]:
    """Summary rows of the reuse phases: rows kept current per second and the speed-up over the pipeline."""
    target = results["target"]["reuse_over_pipeline"]
    rows = []
    for phase in results["phases"]:
        key = f"{slug(phase['phase'])}_over_pipeline"
        if key in results["ratios"]:
            rows += [
                f"| {phase['phase']} (catalog rows / s) | {phase['images_per_second']:.1f} |",
                f"| **{phase['phase']} / pipeline** (target ≥ {target:.0f}x) | "
                f"**{results['ratios'][key]:.1f}x** |",
            ]
    return rows


def disturbance_note(phases: list[str]) -> str:
    if not phases:
        return f"No phase was disturbed: other processes used at most {DISTURBED_CORES} cores throughout."
    return (
        f"**Disturbed**: other processes used more than {DISTURBED_CORES} cores during "
        f"{', '.join(phases)}; these numbers are not representative, run again on a quiet machine."
    )


def write_results(results: dict[str, Any], folder: Path, smoke: bool) -> tuple[Path, Path]:
    """JSON with everything, and the markdown tables (indexer-latest.md, or indexer-smoke-latest.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    prefix = "indexer-smoke" if smoke else "indexer"
    json_path = folder / f"{prefix}-{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    markdown_path = folder / f"{prefix}-latest.md"
    markdown_path.write_text(render_markdown(results))
    return json_path, markdown_path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = fill_defaults(build_parser().parse_args(argv), SMOKE, DEFAULTS)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    before = wait_for_load_below(IDLE_LOAD, args.wait_idle) if args.wait_idle else load_average()
    if before[0] >= IDLE_LOAD:
        print(f"warning: 1-minute load average {before[0]} before the start; numbers may be disturbed")
    configure_tensorflow(args.intra_op_threads, args.inter_op_threads)
    with tempfile.TemporaryDirectory(prefix="bench-indexer-") as folder:
        settings, measured = run_phases(args, Path(folder))
    loads = {"before": before, "after": load_average()}
    results = results_of(args, argv, machine_facts(), settings, measured, loads)
    json_path, markdown_path = write_results(results, args.results_dir, args.smoke)
    print(render_markdown(results))
    print(f"written: {json_path} and {markdown_path}")
    required = args.require_ratio
    return 1 if required is not None and results["ratios"]["pipeline_over_ceiling"] < required else 0


if __name__ == "__main__":
    sys.exit(main())
