"""The tutorial way to index images, as the baseline: OFFSET pages, one image at a time, a bulk per page."""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Iterator

import numpy as np
from elasticsearch import Elasticsearch
from elasticsearch.helpers import streaming_bulk

CatalogTuple = tuple[int, str, str]


def naive_feature(model, data: bytes) -> np.ndarray:
    """PIL open + resize to 224x224, preprocess_input, model.predict on a batch of one, L2-normalise."""
    import keras

    image = keras.utils.load_img(io.BytesIO(data), target_size=(224, 224))
    batch = np.expand_dims(keras.utils.img_to_array(image), axis=0)
    feature = model.predict(keras.applications.vgg16.preprocess_input(batch), verbose=0)[0]
    return feature / np.linalg.norm(feature)


def naive_pages(connection, table: str, limit: int, page_size: int) -> Iterator[list[CatalogTuple]]:
    """`SELECT ... LIMIT offset, n` as the tutorials page (the server re-reads every skipped row)."""
    cursor = connection.cursor()
    offset = 0
    while offset < limit:
        cursor.execute(
            f"SELECT id, relation_id, photo FROM `{table}` LIMIT %s, %s",
            (offset, min(page_size, limit - offset)),
        )
        rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        offset += len(rows)
    cursor.close()


def naive_action(model, index: str, base_url: str, row: CatalogTuple) -> dict[str, object]:
    """Download with urllib and extract, one row at a time, as a bulk action."""
    row_id, relation_id, photo = row
    url = base_url + photo
    with urllib.request.urlopen(url, timeout=30) as response:
        data = response.read()
    document = {
        "source_id": row_id,
        "relation_id": relation_id,
        "photo": photo,
        "image_url": url,
        "status": "indexed",
        "feature": naive_feature(model, data).tolist(),
    }
    return {"_index": index, "_id": str(row_id), "_source": document}


def warm_up_predict(model) -> None:
    """model.predict builds its predict function on the first call: keep that out of the timing."""
    model.predict(np.zeros((1, 224, 224, 3), dtype=np.float32), verbose=0)


def naive_index(
    model, es: Elasticsearch, index: str, connection, table: str, base_url: str, limit: int, page_size: int
) -> int:
    """Page the catalog with OFFSET; per page, one `streaming_bulk` fed row by row; return rows indexed."""
    indexed = 0
    for page in naive_pages(connection, table, limit, page_size):
        actions = (naive_action(model, index, base_url, row) for row in page)
        indexed += sum(ok for ok, _ in streaming_bulk(es, actions))
    return indexed
