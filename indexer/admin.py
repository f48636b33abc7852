"""Operator commands on the alias: what it serves (`status`) and going back a version (`rollback`)."""

from __future__ import annotations

from elasticsearch import Elasticsearch

from imgsearch.indices import aliased_indices, list_versions, version_summary
from indexer.state import StateStore
from indexer.versions import swap_alias


class RollbackImpossible(RuntimeError):
    """There is no retained version to go back to."""


def alias_status(es: Elasticsearch, alias: str, runs: int = 5) -> dict[str, object]:
    """The alias, every retained version (newest first), run state (locks, checkpoints) and last runs."""
    live = aliased_indices(es, alias)
    versions = [version_summary(es, name) | {"live": name in live} for name in list_versions(es, alias)]
    store = StateStore(es, alias)
    return {
        "alias": alias,
        "live": live,
        "versions": versions,
        "state": run_state(es, store),
        "last_runs": store.last_runs(runs),
    }


def run_state(es: Elasticsearch, store: StateStore) -> list[dict[str, object]]:
    """Locks, checkpoints and unfinished builds recorded for the alias."""
    if not es.indices.exists(index=store.index):
        return []
    es.indices.refresh(index=store.index)
    hits = es.search(index=store.index, size=100)["hits"]["hits"]
    return sorted(({"id": hit["_id"], **hit["_source"]} for hit in hits), key=lambda entry: entry["id"])


def previous_version(es: Elasticsearch, alias: str, target: str | None = None) -> tuple[str, str]:
    """(current, previous): the live index and the newest retained version older than it (or `target`)."""
    live = aliased_indices(es, alias)
    if len(live) != 1:
        raise RollbackImpossible(f"alias {alias} points to {live or 'nothing'}; expected exactly one index")
    versions = list_versions(es, alias)
    if target is not None:
        if target not in versions:
            raise RollbackImpossible(f"{target} is not a retained version of {alias}: {versions}")
        return live[0], target
    older = [name for name in versions if name < live[0]]
    if not older:
        raise RollbackImpossible(f"no retained version older than {live[0]} (versions: {versions})")
    return live[0], older[0]


def rollback(es: Elasticsearch, alias: str, target: str | None = None) -> tuple[str, str]:
    """Point the alias back at the previous (or given) version in one atomic call."""
    current, previous = previous_version(es, alias, target)
    if current == previous:
        raise RollbackImpossible(f"alias {alias} already points to {current}")
    swap_alias(es, alias, previous)
    return current, previous
