"""Pure builders of Elasticsearch documents and bulk actions for catalog rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from imgsearch.errors import RowFailure, RowStatus


@dataclass(frozen=True)
class CatalogRow:
    """One image row of the shop catalog."""

    id: int
    relation_id: str | None
    photo: str | None
    updated_at: datetime | None
    deleted: bool = False


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def base_fields(row: CatalogRow, image_url: str | None, indexed_at: datetime) -> dict[str, object]:
    return {
        "source_id": row.id,
        "relation_id": row.relation_id,
        "photo": row.photo,
        "image_url": image_url,
        "updated_at": iso(row.updated_at),
        "indexed_at": iso(indexed_at),
    }


def rounded(vector: np.ndarray | list[float]) -> list[float]:
    """The vector as JSON-ready floats of 7 decimals: shorter documents, float32 precision kept. numpy
    rounds the whole vector at once (Python's round() per value cost more than serialising it)."""
    return np.round(np.asarray(vector, dtype=np.float64), 7).tolist()


def indexed_document(
    row: CatalogRow,
    image_url: str,
    vector: np.ndarray | list[float],
    indexed_at: datetime,
    status: RowStatus = RowStatus.INDEXED,
) -> dict[str, object]:
    """A searchable document: the row's fields plus its unit feature vector."""
    return {
        **base_fields(row, image_url, indexed_at),
        "feature": rounded(vector),
        "status": status.value,
    }


def failed_document(
    row: CatalogRow, image_url: str | None, failure: RowFailure, indexed_at: datetime
) -> dict[str, object]:
    """A document without a vector that records why the row is not searchable."""
    return {
        **base_fields(row, image_url, indexed_at),
        "status": failure.status.value,
        "error_reason": failure.reason,
        "error_message": failure.message[:2000],
    }


def index_action(index: str, row_id: int, document: dict[str, object]) -> dict[str, object]:
    """A bulk `index` action; `_id` is the catalog primary key, so reruns overwrite, never duplicate."""
    return {"_op_type": "index", "_index": index, "_id": str(row_id), "_source": document}


def delete_action(index: str, row_id: int) -> dict[str, object]:
    """A bulk `delete` action for a row that left the catalog (a missing document counts as done)."""
    return {"_op_type": "delete", "_index": index, "_id": str(row_id)}
