"""Pure parts of vector reuse: the unchanged test and chunking."""

from __future__ import annotations

from datetime import datetime

from imgsearch.documents import CatalogRow
from indexer.reuse import StoredVector, chunks, is_unchanged

ROW = CatalogRow(id=1, relation_id="p", photo="a.jpg", updated_at=datetime(2026, 1, 1, 8, 30))
STORED = StoredVector(image_url="http://cdn/a.jpg", updated_at="2026-01-01T08:30:00", feature=[1.0])


def test_same_url_and_timestamp_is_unchanged():
    assert is_unchanged(STORED, "http://cdn/a.jpg", ROW)


def test_other_url_or_timestamp_or_nothing_stored_is_changed():
    assert not is_unchanged(STORED, "http://cdn/b.jpg", ROW)
    later = CatalogRow(id=1, relation_id="p", photo="a.jpg", updated_at=datetime(2026, 1, 2))
    assert not is_unchanged(STORED, "http://cdn/a.jpg", later)
    assert not is_unchanged(None, "http://cdn/a.jpg", ROW)


def test_row_without_timestamp_is_never_reused():
    undated = CatalogRow(id=1, relation_id="p", photo="a.jpg", updated_at=None)
    assert not is_unchanged(StoredVector("http://cdn/a.jpg", None, [1.0]), "http://cdn/a.jpg", undated)


def test_chunks_keep_order_and_remainder():
    rows = [CatalogRow(i, "p", "x", None) for i in range(5)]
    assert [[r.id for r in c] for c in chunks(rows, 2)] == [[0, 1], [2, 3], [4]]
