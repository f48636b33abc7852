"""The benches' harness: options, machine facts, CPU and Elasticsearch accounting, disturbance, results."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tabulate import tabulate

import indexer
from devstack.kit import catalog
from devstack.kit.catalog import product_of
from devstack.kit.imageserver import serve_folder_process
from devstack.kit.processes import process_seconds
from imgsearch.compute import COMPILE_MODES, PRECISIONS, read_cpu_facts
from imgsearch.config import ElasticConfig, load_elastic_config
from imgsearch.esclient import make_client

RESULTS_DIR = Path(__file__).resolve().parent / "results"
IDLE_LOAD = 0.5  # 1-minute load average under which the machine counts as quiet
DISTURBED_CORES = 0.1  # cores used by other processes above which a phase is flagged
DISTURBED_ES_OPS = 10  # requests other users sent Elasticsearch during a phase, above which it is flagged


class Options:
    """A scenario's command line: the common options, its own, and defaults that differ under --smoke."""

    def __init__(self, name: str, summary: str) -> None:
        self.name, self.presets = name, {}
        prog, summary = f"python -m bench.{name}", f"{summary} See bench/README.md."
        self.parser = argparse.ArgumentParser(prog, description=summary)
        self.add("--smoke", action="store_true", help=f"a quick run of every phase; results {name}-smoke-*")
        self.add("--results-dir", type=Path, default=RESULTS_DIR, help="where results go (bench/results)")
        idle = f"first wait up to SECONDS for the 1-minute load average to drop below {IDLE_LOAD}"
        self.add("--wait-idle", type=float, default=0.0, metavar="SECONDS", help=idle)
        self.add("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    def add(self, *flags: str, **options: Any) -> None:
        self.parser.add_argument(*flags, **options)

    def preset(self, flag: str, kind: Callable, full: Any, smoke: Any, text: str) -> None:
        """An option whose default is `full`, or `smoke` under --smoke."""
        self.presets[flag.lstrip("-").replace("-", "_")] = (full, smoke)
        self.add(flag, type=kind, help=f"{text} (default {full}; --smoke {smoke})")

    def model(self, seed: int | None = None, seed_text: str = "VGG16_SEED") -> None:
        """--weights, --precision and --compile from VGG16_* or their defaults; --seed when given one."""
        weights = os.environ.get("VGG16_WEIGHTS") or "random"
        self.add("--weights", default=weights, help="VGG16_WEIGHTS (default $VGG16_WEIGHTS or random)")
        if seed is not None:
            self.add("--seed", type=int, default=seed, help=f"{seed_text} (default {seed})")
        for flag, choices in (("precision", PRECISIONS), ("compile", COMPILE_MODES)):
            name = f"VGG16_{flag.upper()}"
            default = os.environ.get(name, "auto")
            self.add(f"--{flag}", choices=choices, default=default, help=f"{name} (default auto)")

    def api(self) -> None:
        self.add("--api-start-timeout", type=float, default=300.0, help="seconds the API may take to settle")

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """The options (argv: sys.argv[1:] by default), kept with the bench's name for the results."""
        argv = sys.argv[1:] if argv is None else list(argv)
        args = self.parser.parse_args(argv)
        args.bench, args.argv = self.name, argv
        for key, (full, smoke) in self.presets.items():
            if getattr(args, key) is None:
                setattr(args, key, smoke if args.smoke else full)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return args


def pick(args: argparse.Namespace, names: str) -> dict[str, Any]:
    """Options as result settings: 'a b:c' gives {"a": args.a, "c": args.b}."""
    pairs = [name.partition(":") for name in names.split()]
    return {key or name: getattr(args, name) for name, _, key in pairs}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def elastic_config(index: str, index_type: str) -> ElasticConfig:
    """The project's Elasticsearch settings (ES_* from the environment) for one bench index, no replicas."""
    require("ES_URL")
    env = {key: value for key, value in os.environ.items() if key.startswith("ES_")}
    env |= {"ES_INDEX": index, "ES_NUMBER_OF_REPLICAS": "0", "ES_VECTOR_INDEX_TYPE": index_type}
    return load_elastic_config(env)


def require(*names: str) -> None:
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise SystemExit(f'{" and ".join(missing)} not set: run eval "$(bash scripts/stack.sh env)" first')


@contextmanager
def throwaway_catalog(
    photos: Path, prefix: str, weights: str, rows: list, cleanup: dict | None = None, **extra: str
) -> Iterator[tuple[dict[str, str], Any]]:
    """`photos` served by a child process; os.environ plus `extra` on a throwaway alias and table filled
    with `rows` ((id, relation_id, photo), or photo paths: ids from 1, three per product); (env, server);
    everything removed afterwards (what was, into `cleanup`)."""
    require("ES_URL", "MYSQL_URL")
    rows = [row if isinstance(row, tuple) else (n, product_of(n), row.name) for n, row in enumerate(rows, 1)]
    with serve_folder_process(photos) as server:
        base = {**os.environ, **extra, "IMAGE_BASE_URL": server.url, "VGG16_WEIGHTS": weights}
        with catalog.throwaway_catalog(base, prefix, rows, cleanup) as env:
            yield env, server


def indexer_run(env: dict[str, str], extractor, meter: CpuMeter | None = None, **options: Any):
    """`indexer full` (or with incremental=True `incremental`) in-process with a loaded model: its report
    and the meter that timed run() (from the first catalog read to the alias swap); an error unless it
    succeeded with `wanted` rows of `status` and none failed."""
    config, (status, wanted) = indexer.load_indexer_config(env), options.pop("expect")
    runner = indexer.IncrementalRun if options.pop("incremental", False) else indexer.FullRebuild
    source = indexer.CatalogSource(config.mysql, page_size=options.pop("page_size", 500))
    try:
        with meter or CpuMeter() as meter:
            run_options = indexer.RunOptions(**options)
            report = runner(config, make_client(config.elastic), source, extractor, run_options).run()
    finally:
        source.close()
    if report.outcome != "succeeded" or report.statuses.get(status, 0) != wanted or report.failed:
        problem = f"{report.outcome} {report.message}; {dict(report.statuses)}, not {wanted} {status}"
        raise RuntimeError(f"{runner.__name__}: {problem}")
    return report, meter


def machine_facts() -> dict[str, Any]:
    """What the numbers were measured on: the CPU and its native bf16 (which decides the precision), the
    Keras backend and the GPUs it sees, TensorFlow where installed (bench.offline runs without it)."""
    import keras

    from imgsearch import backends

    cpu, backend = read_cpu_facts(), backends.selected_backend()
    facts = {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu.model if cpu.model != "unknown CPU" else platform.processor() or "unknown",
        "cpu_vendor": cpu.vendor,
        "cpu_native_bf16": list(cpu.native_bf16),
        "cpu": cpu.describe(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "keras": keras.__version__,
        "keras_backend": backend,
        backend: metadata.version(backend),
        "gpus": [gpu.name for gpu in backends.accelerators(backend)],
    }
    if importlib.util.find_spec("tensorflow") is None:
        return facts | {"tensorflow": "not installed"}
    import tensorflow as tf

    threads = tf.config.threading
    return facts | {
        "tensorflow": tf.__version__,
        "intra_op_threads": threads.get_intra_op_parallelism_threads(),
        "inter_op_threads": threads.get_inter_op_parallelism_threads(),
    }


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def load_before(wait_idle: float) -> list[float]:
    """The load average at the start, after waiting up to `wait_idle` s for it to drop below IDLE_LOAD."""
    deadline = time.monotonic() + wait_idle
    while os.getloadavg()[0] >= IDLE_LOAD and time.monotonic() < deadline:
        time.sleep(5.0)
    if (loads := load_average())[0] >= IDLE_LOAD:
        say(f"warning: 1-minute load average {loads[0]} at the start; numbers may be disturbed")
    return loads


class CpuMeter:
    """Cores used during a phase: by this process, by named groups of processes (the image server, the
    API, Elasticsearch: `<name>_cores`), by everything else (`other_cores`), and `stolen_cores`: time
    the hypervisor gave our virtual CPUs to someone else, a disturbance no load average shows. With
    `children`, this process's child processes reaped meanwhile count as `<children>_cores`."""

    def __init__(self, groups: dict[str, list[int]] | None = None, children: str = "") -> None:
        self.groups, self.wall = groups or {}, 0.0
        self.names = [*self.groups, *([children] if children else [])]

    def sample(self) -> list[float]:
        with open("/proc/stat") as handle:
            ticks = [int(value) for value in handle.readline().split()[1:9]] + [0] * 8
        hertz = os.sysconf("SC_CLK_TCK")
        busy = (sum(ticks[:3]) + ticks[5] + ticks[6]) / hertz  # user nice system irq softirq
        named = [sum(process_seconds(pid) for pid in pids) for pids in self.groups.values()]
        children = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])  # reaped ones only
        named += [children] if len(self.names) > len(named) else []
        return [time.perf_counter(), process_seconds(), busy, ticks[7] / hertz, *named]

    def __enter__(self) -> CpuMeter:
        self.start = self.sample()
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = [b - a for a, b in zip(self.start, self.sample(), strict=True)]
        self.wall = self.used[0]

    def as_dict(self) -> dict[str, float]:
        wall, own, busy, stolen, *named = self.used
        cores = {"own": own, **dict(zip(self.names, named, strict=True))}
        cores |= {"other": max(busy - own - sum(named), 0.0), "stolen": stolen, "total": busy}
        return {f"{name}_cores": round(seconds / (wall or 1.0), 3) for name, seconds in cores.items()}


def elasticsearch_pids(es) -> list[int]:
    """The local Elasticsearch process, for CPU accounting (none when it runs elsewhere)."""
    nodes = es.nodes.info(node_id="_local", metric="process", filter_path="nodes.*.process.id").body
    pid = next(iter(nodes.get("nodes", {}).values()), {}).get("process", {}).get("id")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [int(pid)] if b"elasticsearch" in handle.read() else []
    except (OSError, TypeError, ValueError):
        return []


def elasticsearch_ops(es, mine: str) -> dict[str, int]:
    """Searches + index/delete operations Elasticsearch has served, per index not named `mine`*."""
    stats = es.indices.stats(metric="search,indexing", filter_path="indices.*.total").body
    totals = {
        name: index["total"] for name, index in stats.get("indices", {}).items() if not name.startswith(mine)
    }
    return {
        name: total["search"]["query_total"]
        + total["indexing"]["index_total"]
        + total["indexing"]["delete_total"]
        for name, total in totals.items()
    }


class PhaseMeter(CpuMeter):
    """Cores per process group plus the requests other users sent Elasticsearch (`other_es_ops`)."""

    def __init__(self, es, mine: str, groups: dict[str, list[int]]) -> None:
        super().__init__(groups)
        self.es, self.mine = es, mine

    def __enter__(self) -> PhaseMeter:
        self.ops = elasticsearch_ops(self.es, self.mine)
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        # operations served meanwhile: indices created meanwhile count whole, deleted ones not at all
        after = elasticsearch_ops(self.es, self.mine).items()
        self.other_es_ops = sum(max(count - self.ops.get(name, 0), 0) for name, count in after)

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {"other_es_ops": self.other_es_ops}


def is_disturbed(cpu: dict[str, float]) -> bool:
    """The disturbance rule: while a phase was measured, others used more than DISTURBED_CORES cores or
    sent Elasticsearch more than DISTURBED_ES_OPS requests."""
    return cpu.get("other_cores", 0.0) > DISTURBED_CORES or cpu.get("other_es_ops", 0) > DISTURBED_ES_OPS


def envelope(args: argparse.Namespace, before: list[float]) -> dict[str, Any]:
    """What every result starts with: the bench, the exact command, when, the machine, the load average."""
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    return {
        "benchmark": args.bench,
        "command": f"{python} -m bench.{args.bench} {shlex.join(args.argv)}".rstrip(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "load_average": {"before": before, "after": load_average()},
    }


def cell(value: Any, percent: bool = False) -> Any:
    """A table cell: nested dicts and lists flattened into one line; with `percent` a fraction as 70.4%."""
    if percent and isinstance(value, float):
        return f"{value:.1%}"
    if isinstance(value, dict):
        return ", ".join(f"{key} {cell(item)}" for key, item in value.items())
    return ", ".join(str(cell(item)) for item in value) if isinstance(value, list) else value


def table(rows: Any, percent: Sequence[str] = ()) -> str:
    """Markdown of a list of dicts (a row each), a dict of dicts (a row per key) or a dict (key, value);
    the `percent` columns (or keys) hold fractions, shown as percentages."""
    if isinstance(rows, dict) and all(isinstance(row, dict) for row in rows.values()):
        rows = [{"": name, **row} for name, row in rows.items()]
    if isinstance(rows, dict):
        body = [(key, cell(value, key in percent)) for key, value in rows.items()]
        return tabulate(body, ["", "value"], tablefmt="github")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    body = [[cell(row.get(column), column in percent) for column in columns] for row in rows]
    return tabulate(body, columns, tablefmt="github", missingval="-")


@dataclass(frozen=True)
class Report:
    """How a scenario's results read as markdown: a title, context lines, and the parts shown as tables
    (result keys, or (caption, function of the results)), whose `percent` columns are fractions shown
    as percentages; the disturbance verdict closes it."""

    title: str
    tables: Sequence[str | tuple[str, Callable[[dict], Any]]]
    context: Callable[[dict], list[str]] = lambda results: []
    percent: Sequence[str] = ()

    def render(self, results: dict[str, Any]) -> str:
        machine, loads = results["machine"], results["load_average"]
        parts = [f"# {self.title}", f"`{results['command']}` (finished {results['finished_at']})"]
        parts.append(
            f"Machine: {machine['cpu_count']} x {machine['cpu_model']} ({machine['cpu']}); TensorFlow "
            f"{machine['tensorflow']}, GPUs seen: {', '.join(machine['gpus']) or 'none'}. Load average "
            f"(1/5/15 min) before {loads['before']}, after {loads['after']}."
        )
        parts += self.context(results)
        for part in self.tables:
            caption, rows = (part, results[part]) if isinstance(part, str) else (part[0], part[1](results))
            parts += [f"## {caption}", table(rows, self.percent)] if rows else []
        rule = f"others used ≤ {DISTURBED_CORES} cores and sent Elasticsearch ≤ {DISTURBED_ES_OPS} requests"
        flagged = results.get("disturbed_phases", results.get("disturbed"))
        verdict = (
            f"**Disturbed**: {'; '.join(flagged)}; elsewhere {rule}." if flagged else f"Undisturbed: {rule}."
        )
        return "\n\n".join([*parts, verdict + " Disturbed numbers are not representative."]) + "\n"


def write_results(
    results: dict, report: Report, args: argparse.Namespace, **files: Callable[[Path], Path]
) -> None:
    """<name>[-smoke]-<UTC>.json and .md, <name>-latest.md for full runs; `files` are further writers,
    each given the path stem and returning the file it wrote (recorded in the JSON under its key)."""
    folder, smoke = args.results_dir, args.smoke
    folder.mkdir(parents=True, exist_ok=True)
    name = results["benchmark"]
    stem = folder / f"{name}{'-smoke' if smoke else ''}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    results |= {key: write(stem).name for key, write in files.items()}
    paths = [Path(f"{stem}.json"), Path(f"{stem}.md"), *(stem.parent / results[key] for key in files)]
    paths[0].write_text(json.dumps(results, indent=2) + "\n")
    paths[1].write_text(markdown := report.render(results))
    if not smoke:
        (folder / f"{name}-latest.md").write_text(markdown)
    print(markdown)
    print("written: " + ", ".join(str(path) for path in paths))
