"""Response models: every JSON answer is built from one, so /openapi.json describes what is sent."""

from __future__ import annotations

from typing import Any, Literal

from flask import Response, jsonify
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from searchapi.contract import SCORE_DESCRIPTION


def absent_when_none(value: object) -> bool:
    return value is None


class Answer(BaseModel):
    """A JSON answer: dumped with its aliases (`from`), in the declared field order."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    def response(self, status: int = 200) -> Response:
        answer = jsonify(self.model_dump(mode="json"))
        answer.status_code = status
        return answer


class ModelInfo(BaseModel):
    id: str
    weights: str = Field(description="imagenet, random or file:<name>")
    fingerprint: str = Field(description="Digest of the weights; the index must have been built by the same")
    dims: int
    warning: str | SkipJsonSchema[None] = Field(
        None, exclude_if=absent_when_none, description="Present when the weights are random (tests, demos)"
    )


class Compute(BaseModel):
    """How this process computes vectors (KERAS_BACKEND, VGG16_PRECISION, VGG16_COMPILE) and why."""

    backend: Literal["tensorflow", "jax", "torch"] = Field(description="The Keras backend (KERAS_BACKEND)")
    precision: Literal["float32", "bfloat16"]
    compile: Literal["graph", "xla", "eager", "inductor"]
    batch_size: int = Field(description="Images per model call of an indexer here (a search sends one)")
    reason: str


class Hit(BaseModel):
    id: str
    relation_id: str
    image_url: str | None
    score: float = Field(description=SCORE_DESCRIPTION)


class SearchResult(Answer):
    """A page of similar products (or images, with collapse=false), best first."""

    hits: list[Hit]
    from_: int = Field(alias="from")
    size: int
    has_more: bool = Field(description="Another page exists")
    collapse: bool
    took_ms: float
    timings_ms: dict[str, float] = Field(description="Per stage: fetch, decode, model, elasticsearch")
    model: ModelInfo


class ImageRecord(Answer):
    """One indexed image, without its vector."""

    id: str
    relation_id: str | None
    photo: str | None
    image_url: str | None
    status: str | None = Field(description="indexed, reused, download_failed, decode_failed, ...")
    error_reason: str | None
    error_message: str | None
    updated_at: str | None
    indexed_at: str | None
    searchable: bool


class WriteResult(Answer):
    id: str
    relation_id: str
    result: Literal["created", "updated"]
    index: str
    timings_ms: dict[str, float]


class DeleteResult(Answer):
    id: str
    result: Literal["deleted"]
    index: str


class Health(Answer):
    status: Literal["ok"]


class Ready(Answer):
    ready: bool
    reason: str | SkipJsonSchema[None] = Field(
        None, exclude_if=absent_when_none, description="Why not ready (absent when ready)"
    )
    checks: dict[str, str] = Field(description="model, elasticsearch, index")
    compute: Compute


class IndexSummary(BaseModel):
    index: str
    documents: int
    statuses: dict[str, int]
    created_at: str | None
    model: dict[str, Any] | None = Field(description="The model that built the index (its _meta)")
    compute: dict[str, Any] | None


class Stats(Answer):
    """What the API serves: alias -> index, documents per status, both models, the last indexing run."""

    alias: str
    indices: list[IndexSummary]
    documents: int
    model: ModelInfo
    compute: Compute
    model_matches: bool
    last_run: dict[str, Any] | None = Field(
        description="run_id, mode, index, outcome, message, started_at, finished_at, elapsed_seconds, "
        "rows_seen, statuses, errors, images_per_second"
    )
