"""The tutorial way to index images, as the baseline: one row at a time, end to end, no overlap."""

from __future__ import annotations

import io
import urllib.request
from dataclasses import dataclass

import numpy as np
from elasticsearch import Elasticsearch


@dataclass(frozen=True)
class NaiveRow:
    id: int
    relation_id: str
    photo: str
    url: str


def naive_feature(model, data: bytes) -> np.ndarray:
    """PIL open + resize to 224x224, preprocess_input, model.predict on a batch of one, L2-normalise."""
    import keras

    image = keras.utils.load_img(io.BytesIO(data), target_size=(224, 224))
    batch = np.expand_dims(keras.utils.img_to_array(image), axis=0)
    feature = model.predict(keras.applications.vgg16.preprocess_input(batch), verbose=0)[0]
    return feature / np.linalg.norm(feature)


def naive_index_one(model, es: Elasticsearch, index: str, row: NaiveRow) -> None:
    """Download with urllib, extract, and index one document with its own request."""
    with urllib.request.urlopen(row.url, timeout=30) as response:
        data = response.read()
    document = {
        "source_id": row.id,
        "relation_id": row.relation_id,
        "photo": row.photo,
        "image_url": row.url,
        "status": "indexed",
        "feature": naive_feature(model, data).tolist(),
    }
    es.index(index=index, id=str(row.id), document=document)


def warm_up_predict(model) -> None:
    """model.predict builds its predict function on the first call: keep that out of the timing."""
    model.predict(np.zeros((1, 224, 224, 3), dtype=np.float32), verbose=0)


def naive_index(model, es: Elasticsearch, index: str, rows: list[NaiveRow]) -> int:
    """Index every row in turn; return how many were indexed."""
    for row in rows:
        naive_index_one(model, es, index, row)
    return len(rows)
