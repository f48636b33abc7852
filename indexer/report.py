"""Per-run statistics: counts per status, error histogram, stage timings, written as JSON."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from imgsearch.errors import FAILURE_STATUSES, SUCCESS_STATUSES, RowFailure, RowStatus

MAX_LISTED_FAILURES = 1000
# Keys of the report's `rows` object: one count per RowStatus (0 included), then the failed and
# succeeded totals. Explicit numbers, so Kibana and other readers need no script to fill in a missing
# status or to sum the failures (RUNS_MAPPINGS in indexer/state.py maps each as long).
ROW_TOTALS = ("failed", "succeeded")
ROW_COUNTS: tuple[str, ...] = (*(status.value for status in RowStatus), *ROW_TOTALS)


@dataclass
class RunReport:
    """Everything a run did, accounted row by row; thread-safe counters."""

    mode: str
    alias: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    index: str | None = None
    partition: str = "0/1"
    resumed_from: dict[str, object] | None = None
    plan: dict[str, object] | None = None
    previous_indices: list[str] = field(default_factory=list)
    deleted_indices: list[str] = field(default_factory=list)
    rows_seen: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    failures: list[dict[str, object]] = field(default_factory=list)
    stage_seconds: Counter = field(default_factory=Counter)
    model: dict[str, object] = field(default_factory=dict)
    compute: dict[str, object] = field(default_factory=dict)
    outcome: str = "running"
    message: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_success(self, status: RowStatus = RowStatus.INDEXED) -> None:
        with self._lock:
            self.statuses[status.value] += 1

    def record_failure(self, row_id: int, failure: RowFailure) -> None:
        with self._lock:
            self.statuses[failure.status.value] += 1
            self.errors[f"{failure.status.value}:{failure.reason}"] += 1
            if len(self.failures) < MAX_LISTED_FAILURES:
                self.failures.append(
                    {
                        "id": row_id,
                        "status": failure.status.value,
                        "reason": failure.reason,
                        "error": failure.message,
                    }
                )

    def add_time(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stage_seconds[stage] += seconds

    @property
    def processed(self) -> int:
        return sum(self.statuses.values())

    @property
    def succeeded(self) -> int:
        return sum(self.statuses[status.value] for status in SUCCESS_STATUSES)

    @property
    def failed(self) -> int:
        return sum(self.statuses[status.value] for status in FAILURE_STATUSES)

    @property
    def deleted(self) -> int:
        return self.statuses[RowStatus.DELETED.value]

    def row_counts(self) -> dict[str, int]:
        """Rows per status, every status listed (0 when none), plus the failed and succeeded totals."""
        with self._lock:
            counts = {status.value: self.statuses[status.value] for status in RowStatus}
        counts["failed"] = sum(counts[status.value] for status in FAILURE_STATUSES)
        counts["succeeded"] = sum(counts[status.value] for status in SUCCESS_STATUSES)
        return counts

    @property
    def elapsed_seconds(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()

    def finish(self, outcome: str, message: str = "") -> None:
        self.finished_at = datetime.now(UTC)
        self.outcome = outcome
        self.message = message

    def as_dict(self) -> dict[str, object]:
        elapsed = self.elapsed_seconds
        computed = self.statuses[RowStatus.INDEXED.value]
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "alias": self.alias,
            "index": self.index,
            "partition": self.partition,
            "resumed_from": self.resumed_from,
            "plan": self.plan,
            "outcome": self.outcome,
            "message": self.message,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "elapsed_seconds": round(elapsed, 3),
            "rows_seen": self.rows_seen,
            "statuses": dict(self.statuses),
            "rows": self.row_counts(),
            "errors": dict(self.errors.most_common()),
            "failures": self.failures,
            "stage_seconds": {stage: round(sec, 3) for stage, sec in self.stage_seconds.items()},
            "images_per_second": round(computed / elapsed, 3) if elapsed > 0 else None,
            "rows_per_second": round(self.processed / elapsed, 3) if elapsed > 0 else None,
            "previous_indices": self.previous_indices,
            "deleted_indices": self.deleted_indices,
            "model": self.model,
            "compute": self.compute,
        }

    def write_json(self, directory: str) -> Path:
        """Write report-<time>-<run id>.json into directory (created if needed)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"report-{self.started_at:%Y%m%dT%H%M%SZ}-{self.run_id}.json"
        path.write_text(json.dumps(self.as_dict(), indent=2, default=str))
        return path

    def summary(self) -> str:
        """Human-readable end-of-run summary."""
        data = self.as_dict()
        lines = [
            f"run {self.run_id} ({self.mode}) {self.outcome}: {self.message}".rstrip(": "),
            f"  alias {self.alias} -> {self.index}; rows seen {self.rows_seen}, "
            f"elapsed {data['elapsed_seconds']} s, {data['rows_per_second']} rows/s, "
            f"{data['images_per_second']} new vectors/s",
            "  statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(self.statuses.items())) or "none",
        ]
        for reason, count in self.errors.most_common(10):
            lines.append(f"  error {reason}: {count}")
        return "\n".join(lines)


class Stopwatch:
    """Context manager adding elapsed seconds to a report stage."""

    def __init__(self, report: RunReport, stage: str) -> None:
        self.report = report
        self.stage = stage
        self.start = 0.0

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.report.add_time(self.stage, time.perf_counter() - self.start)
