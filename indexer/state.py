"""Run state kept in Elasticsearch (so a stateless container can run the job): locks, checkpoints, reports."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from elasticsearch import (
    AuthorizationException,
    BadRequestError,
    ConflictError,
    Elasticsearch,
    NotFoundError,
)

from imgsearch.indices import last_runs, runs_index
from imgsearch.retry import retry_elasticsearch
from indexer.partition import Partition
from indexer.report import ROW_COUNTS

log = logging.getLogger(__name__)

STATE_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "kind": {"type": "keyword"},
        "run_id": {"type": "keyword"},
        "owner": {"type": "keyword"},
        "expires_at_ms": {"type": "long"},
        "saved_at": {"type": "date"},
    },
}
RUNS_MAPPINGS: dict[str, Any] = {
    "dynamic_templates": [
        {"counts": {"path_match": "statuses.*", "mapping": {"type": "long"}}},
        {"errors": {"path_match": "errors.*", "mapping": {"type": "long"}}},
        {"stages": {"path_match": "stage_seconds.*", "mapping": {"type": "double"}}},
    ],
    "properties": {
        "run_id": {"type": "keyword"},
        "mode": {"type": "keyword"},
        "alias": {"type": "keyword"},
        "index": {"type": "keyword"},
        "partition": {"type": "keyword"},
        "outcome": {"type": "keyword"},
        "message": {"type": "text"},
        "started_at": {"type": "date"},
        "finished_at": {"type": "date"},
        "elapsed_seconds": {"type": "double"},
        "rows_seen": {"type": "long"},
        # Every status and the failed/succeeded totals, always present (0 included): what Kibana sums.
        # `statuses` (only the statuses that occurred, mapped by the template above) stays as it was.
        "rows": {"properties": {name: {"type": "long"} for name in ROW_COUNTS}},
        "images_per_second": {"type": "double"},
        "rows_per_second": {"type": "double"},
        "previous_indices": {"type": "keyword"},
        "deleted_indices": {"type": "keyword"},
        "failures": {"type": "object", "enabled": False},
        "model": {"type": "object", "enabled": False},
        # How the vectors were computed (imgsearch.compute): filterable in Kibana; `reason` stays in _source.
        "compute": {
            "properties": {
                "precision": {"type": "keyword"},
                "compile": {"type": "keyword"},
                "batch_size": {"type": "integer"},
            }
        },
        "resumed_from": {"type": "object", "enabled": False},
    },
}


def state_index(alias: str) -> str:
    return f"{alias}-indexer-state"


class LockHeld(RuntimeError):
    """Another live run holds the lock for this alias and partition."""


class LockLost(RuntimeError):
    """Our lock expired and was taken by another run; we must stop writing."""


class StateConflict(RuntimeError):
    """A state document changed under us (e.g. a full rebuild reset the incremental watermark)."""


@dataclass(frozen=True)
class Versioned:
    """A state document and the version it was read at (for compare-and-set)."""

    source: dict[str, Any]
    seq_no: int
    primary_term: int


class StateStore:
    """Small documents in `<alias>-indexer-state`, written with compare-and-set where it matters."""

    def __init__(self, es: Elasticsearch, alias: str, retry_seconds: float = 300.0) -> None:
        self.es = es
        self.alias = alias
        self.index = state_index(alias)
        self.retry_seconds = retry_seconds

    def ensure(self) -> StateStore:
        """Create the state and runs indices when missing (idempotent, race-safe), and add the fields
        a newer version maps explicitly to an index created by an older one."""
        for name, mappings in ((self.index, STATE_MAPPINGS), (runs_index(self.alias), RUNS_MAPPINGS)):
            if not self.es.indices.exists(index=name):
                settings = {"number_of_shards": 1, "auto_expand_replicas": "0-1"}
                try:
                    self.es.indices.create(index=name, settings=settings, mappings=mappings)
                    continue
                except BadRequestError as exc:
                    if exc.error != "resource_already_exists_exception":
                        raise
            self._add_missing_fields(name, mappings, required=name == self.index)
        return self

    def _add_missing_fields(self, name: str, mappings: dict[str, Any], required: bool) -> None:
        """put_mapping of the explicit properties an existing index lacks (never a changed type).

        For the runs index this is best effort: a role without `indices:admin/mapping/put` (an older
        role file; Elasticsearch 9's `write` no longer implies it) is refused, and the run goes on; the
        next report then maps the missing counts dynamically, as long, which is what RUNS_MAPPINGS says."""
        response = self.es.indices.get_mapping(index=name).body
        current = next(iter(response.values()), {}).get("mappings", {})
        missing = missing_properties(current.get("properties", {}), mappings["properties"])
        if not missing:
            return
        fields = ", ".join(field_paths(missing))
        try:
            self.es.indices.put_mapping(index=name, properties=missing)
        except (AuthorizationException, BadRequestError) as exc:
            if required:
                raise
            # 403 (a role without the privilege) is harmless (same types dynamically): info, not a
            # warning repeated at every run. A 400 means a real conflict.
            level = logging.INFO if isinstance(exc, AuthorizationException) else logging.WARNING
            log.log(
                level,
                "could not add %s to the mapping of %s (%s %s); they are mapped dynamically instead",
                fields,
                name,
                exc.meta.status,
                exc.error,
            )
            return
        log.info("added %s to the mapping of %s", fields, name)

    def get(self, doc_id: str) -> Versioned | None:
        try:
            response = retry_elasticsearch(
                lambda: self.es.get(index=self.index, id=doc_id), "read state", self.retry_seconds
            )
        except NotFoundError:
            return None
        return Versioned(response["_source"], response["_seq_no"], response["_primary_term"])

    def create(self, doc_id: str, body: dict[str, Any]) -> Versioned | None:
        """Write a new document; None when it already exists."""
        try:
            response = self.es.index(
                index=self.index, id=doc_id, document=body, op_type="create", refresh=True
            )
        except ConflictError:
            return None
        return Versioned(body, response["_seq_no"], response["_primary_term"])

    def replace(self, doc_id: str, body: dict[str, Any], expected: Versioned | None) -> Versioned:
        """Overwrite if unchanged since `expected` was read (create when expected is None)."""
        if expected is None:
            created = self.create(doc_id, body)
            if created is None:
                raise StateConflict(f"state document {doc_id} appeared concurrently")
            return created
        try:
            response = retry_elasticsearch(
                lambda: self.es.index(
                    index=self.index,
                    id=doc_id,
                    document=body,
                    if_seq_no=expected.seq_no,
                    if_primary_term=expected.primary_term,
                    refresh=True,
                ),
                f"save {doc_id}",
                self.retry_seconds,
            )
        except (ConflictError, NotFoundError) as exc:
            raise StateConflict(f"state document {doc_id} changed concurrently") from exc
        return Versioned(body, response["_seq_no"], response["_primary_term"])

    def put(self, doc_id: str, body: dict[str, Any]) -> None:
        """Overwrite unconditionally."""
        retry_elasticsearch(
            lambda: self.es.index(index=self.index, id=doc_id, document=body, refresh=True),
            f"save {doc_id}",
            self.retry_seconds,
        )

    def delete(self, doc_id: str, expected: Versioned | None = None) -> None:
        versions = (
            {"if_seq_no": expected.seq_no, "if_primary_term": expected.primary_term} if expected else {}
        )
        with contextlib.suppress(NotFoundError, ConflictError):
            self.es.delete(index=self.index, id=doc_id, refresh=True, **versions)

    def ids_of_kind(self, kind: str) -> list[str]:
        self.es.indices.refresh(index=self.index)
        response = self.es.search(index=self.index, query={"term": {"kind": kind}}, size=1000, source=False)
        return [hit["_id"] for hit in response["hits"]["hits"]]

    def record_run(self, report: dict[str, Any]) -> None:
        """Index one run report into `<alias>-runs` (for `status` and Kibana)."""
        retry_elasticsearch(
            lambda: self.es.index(
                index=runs_index(self.alias), id=report["run_id"], document=report, refresh=True
            ),
            "record run report",
            self.retry_seconds,
        )

    def last_runs(self, count: int = 5) -> list[dict[str, Any]]:
        return last_runs(self.es, self.alias, count)


def missing_properties(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The part of the wanted `properties` that the current ones lack, nested objects included.
    A field present with another definition is left alone (a mapping type cannot be changed)."""
    missing: dict[str, Any] = {}
    for name, spec in wanted.items():
        have = current.get(name)
        if have is None:
            missing[name] = spec
        elif "properties" in spec and have.get("type", "object") == "object":
            inner = missing_properties(have.get("properties", {}), spec["properties"])
            if inner:
                missing[name] = {"properties": inner}
    return missing


def field_paths(properties: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the leaf fields in a `properties` mapping."""
    paths: list[str] = []
    for name, spec in properties.items():
        if "properties" in spec:
            paths += field_paths(spec["properties"], f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def now_ms() -> int:
    return int(time.time() * 1000)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(lock: dict[str, Any], host: str) -> bool:
    """Expired, or held by a process on this very host that no longer exists (killed, OOM)."""
    if lock.get("expires_at_ms", 0) < now_ms():
        return True
    return lock.get("host") == host and not pid_alive(int(lock.get("pid", 0)))


class RunLock:
    """One run per alias and partition: a state document with an expiry, renewed by a heartbeat."""

    def __init__(self, store: StateStore, partition: Partition, run_id: str, mode: str, ttl: float) -> None:
        self.store = store
        self.doc_id = f"lock:{partition.key}"
        self.run_id = run_id
        self.mode = mode
        self.ttl = ttl
        self.host = socket.gethostname()
        self._held: Versioned | None = None
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> dict[str, Any]:
        return {
            "kind": "lock",
            "run_id": self.run_id,
            "mode": self.mode,
            "owner": f"{self.host}:{os.getpid()}",
            "host": self.host,
            "pid": os.getpid(),
            "expires_at_ms": now_ms() + int(self.ttl * 1000),
        }

    def acquire(self) -> RunLock:
        """Take the lock or raise LockHeld naming the holder; a stale lock is taken over."""
        self._held = self.store.create(self.doc_id, self._body())
        if self._held is None:
            current = self.store.get(self.doc_id)
            if current is not None and not is_stale(current.source, self.host):
                holder = current.source
                seconds = max(0, (holder.get("expires_at_ms", 0) - now_ms()) // 1000)
                raise LockHeld(
                    f"run {holder.get('run_id')} ({holder.get('mode')}) on {holder.get('owner')} holds the "
                    f"lock for {self.store.alias} [{self.doc_id}]; it expires in {seconds} s if not renewed"
                )
            try:
                self._held = self.store.replace(self.doc_id, self._body(), current)
            except StateConflict:
                raise LockHeld(f"another run took the lock for {self.store.alias} at the same time") from None
            if current is not None:
                log.warning("took over a stale lock left by run %s", current.source.get("run_id"))
        self._thread = threading.Thread(target=self._heartbeat, name="lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._held = self.store.replace(self.doc_id, self._body(), self._held)
            except StateConflict:
                log.error("lost the run lock %s: another run took it over", self.doc_id)
                self._lost.set()
                return
            except Exception as exc:  # noqa: BLE001 - keep trying while the lock has not expired
                log.warning("could not renew the run lock (%s); retrying", exc)

    def ensure_held(self) -> None:
        if self._lost.is_set():
            raise LockLost(f"the run lock {self.doc_id} expired and was taken by another run")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._held is not None and not self._lost.is_set():
            self.store.delete(self.doc_id, self._held)
        self._held = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
