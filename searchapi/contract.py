"""Request models: they validate each request (400s name the parameter) and describe it in /openapi.json."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema
from pydantic_core import PydanticCustomError

from searchapi.errors import ApiError

MAX_SIZE = 100
MAX_FROM = 900
MAX_FILTER_VALUES = 100
MAX_FILTER_VALUE_LENGTH = 1024
MAX_IMAGE_ID = 2**63 - 1
MAX_RELATION_ID_LENGTH = 512
MAX_PHOTO_LENGTH = 2048
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
INVALID = "invalid_parameter"
IMAGE_FIELDS = ("image", "image_url", "image_base64")
IMAGE_CHOICE = "send exactly one of: multipart file `image`, `image_url`, `image_base64`"
SCORE_DESCRIPTION = (
    "Similarity in [0, 1]. Vectors are L2-normalised and the field uses dot_product, so "
    "score = (1 + cosine) / 2: 1.0 is the same image, 0.5 is orthogonal (unrelated). "
    "Pick a min_score cut-off from your own catalog: search with known near-duplicates and known "
    "unrelated products and take a value between their score distributions."
)
IMAGE_FORMATS = "JPEG, PNG, GIF, WebP, BMP, TIFF or MPO (sniffed from the bytes)"


def bad_parameter(name: str, message: str) -> ApiError:
    return ApiError(400, INVALID, f"{name}: {message}")


def invalid(message: str) -> PydanticCustomError:
    """A validator's refusal; `parse` prefixes the parameter's name (its location in the request)."""
    return PydanticCustomError(INVALID, "{problem}", {"problem": message})


# ---- one value of one parameter ---------------------------------------------------------------


def int_between(low: int, high: int) -> Callable[[object], int]:
    def check(raw: object) -> int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise invalid(f"must be an integer, got {raw!r}")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise invalid(f"must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise invalid(f"must be between {low} and {high}, got {value}")
        return value

    return check


def score_value(raw: object) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise invalid(f"must be a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise invalid(f"must be a number, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise invalid(f"must be between 0 and 1, got {value}")
    return value


def bool_value(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise invalid(f"must be true or false, got {raw!r}")


def text_up_to(limit: int) -> Callable[[object], str]:
    """A string (an integer is taken as its digits) of at most `limit` characters."""

    def check(raw: object) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, str | int) or isinstance(raw, bool) or len(str(raw)) > limit:
            raise invalid(f"must be a string of at most {limit} characters")
        return str(raw)

    return check


def string_value(raw: object) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise invalid("must be a string")
    return raw


def filter_values(raw: object) -> list[str]:
    values = raw if isinstance(raw, list) else [raw]
    if not values or len(values) > MAX_FILTER_VALUES:
        raise invalid(f"needs 1 to {MAX_FILTER_VALUES} values")
    for value in values:
        if not isinstance(value, str) or not value or len(value) > MAX_FILTER_VALUE_LENGTH:
            raise invalid(f"values must be non-empty strings of at most {MAX_FILTER_VALUE_LENGTH} chars")
    return values


def filter_object(raw: object, allowed: tuple[str, ...] | None) -> dict[str, object]:
    """`filter`: an object (or its JSON text in a form/query field) of allowed field -> value(s)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise invalid('must be a JSON object like {"relation_id": ["p1"]}') from None
    if not isinstance(raw, dict):
        raise invalid("must be an object of field -> value or list of values")
    unknown = sorted(name for name in raw if allowed is not None and name not in allowed)
    if unknown:
        raise invalid(f"cannot filter on {', '.join(unknown)}; allowed: {', '.join(allowed or ())}")
    return raw


def allowed_filter_fields(raw: object, info) -> dict[str, object]:
    """The allowed fields come from the validation context (SEARCH_FILTER_FIELDS); code that builds
    a SearchOptions itself, without a context, is trusted."""
    context = info.context or {}
    return filter_object(raw, context.get("filter_fields"))


# ---- the annotated types the models are made of -------------------------------------------------

FilterValues = Annotated[
    list[str],
    BeforeValidator(filter_values, json_schema_input_type=str | list[str]),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_VALUE_LENGTH},
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_FILTER_VALUES,
                    "items": {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_VALUE_LENGTH},
                },
            ]
        }
    ),
]


def bounded_int(low: int, high: int, description: str, **extra: Any) -> Any:
    return Annotated[
        int, Field(ge=low, le=high, description=description, **extra), BeforeValidator(int_between(low, high))
    ]


def flag(description: str) -> Any:
    return Annotated[bool, Field(description=description), BeforeValidator(bool_value)]


PageSize = bounded_int(1, MAX_SIZE, "Products per page")
Offset = bounded_int(0, MAX_FROM, "Offset in products", alias="from")
Collapse = flag("One hit per product (relation_id); false returns images")
IncludeOwnProduct = flag("Keep the stored image's own product in the results")
ImageId = bounded_int(1, MAX_IMAGE_ID, "The catalog row's primary key (the document id)")


@dataclass(frozen=True, config=ConfigDict(validate_by_name=True, validate_by_alias=True))
class SearchOptions:
    """Paging, cut-off, filter and collapse of a similarity search (query string, form or JSON body)."""

    size: PageSize = 10
    from_: Offset = 0
    min_score: Annotated[
        Annotated[float, Field(ge=0, le=1)] | SkipJsonSchema[None],
        Field(description=SCORE_DESCRIPTION),
        BeforeValidator(score_value),
    ] = None
    collapse: Collapse = True
    filters: Annotated[
        dict[str, FilterValues],
        Field(alias="filter", description="kNN pre-filter: field -> value(s) (JSON text in a query/form)"),
        BeforeValidator(allowed_filter_fields),
    ] = Field(default_factory=dict)


@dataclass(frozen=True, config=ConfigDict(validate_by_name=True, validate_by_alias=True))
class SimilarOptions(SearchOptions):
    """The options of "more like this" (GET /images/{image_id}/similar)."""

    include_own_product: IncludeOwnProduct = False


class ImageQuery(BaseModel):
    """The query image: exactly one of a multipart file `image`, `image_url`, `image_base64`."""

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        json_schema_extra={"oneOf": [{"required": ["image_url"]}, {"required": ["image_base64"]}]},
    )

    image: SkipJsonSchema[Any] = None
    image_url: Annotated[
        Annotated[str, Field(min_length=1)] | SkipJsonSchema[None],
        Field(json_schema_extra={"format": "uri"}, description="http(s) URL of an image"),
        BeforeValidator(string_value),
    ] = None
    image_base64: Annotated[
        Annotated[str, Field(min_length=1)] | SkipJsonSchema[None],
        Field(
            json_schema_extra={"format": "byte"},
            description=f"Base64 of an image (a data: URL prefix is accepted): {IMAGE_FORMATS}",
        ),
        BeforeValidator(string_value),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def exactly_one(cls, given: dict[str, object]) -> dict[str, object]:
        chosen = {name: given[name] for name in IMAGE_FIELDS if given.get(name)}
        if len(chosen) != 1:
            raise PydanticCustomError("ambiguous_image" if chosen else "missing_image", IMAGE_CHOICE)
        return chosen


class ImageUpload(BaseModel):
    """A multipart upload: the query image as the file part `image`."""

    image: Annotated[
        bytes,
        WithJsonSchema({"type": "string", "format": "binary", "description": f"The image: {IMAGE_FORMATS}"}),
    ]


class ImageWrite(BaseModel):
    """One catalog row to index now (POST /images); the image comes as for a search."""

    required_hints: ClassVar[dict[str, str]] = {"id": "the catalog row's integer primary key"}

    id: ImageId
    relation_id: Annotated[
        str,
        Field(min_length=1, max_length=MAX_RELATION_ID_LENGTH, description="The product"),
        BeforeValidator(text_up_to(MAX_RELATION_ID_LENGTH)),
    ]
    photo: Annotated[
        Annotated[str, Field(max_length=MAX_PHOTO_LENGTH)] | SkipJsonSchema[None],
        Field(description="The catalog's photo path (default: image_url)"),
        BeforeValidator(text_up_to(MAX_PHOTO_LENGTH)),
    ] = None


# ---- from a request's parameters to a model, or to the API's 400 --------------------------------


def is_blank(value: object) -> bool:
    """An empty form/query value counts as not given (so it takes the default)."""
    return value is None or (isinstance(value, str) and value == "")


def to_api_error(error: Mapping[str, Any], model: type) -> ApiError:
    name = ".".join(str(part) for part in error["loc"])
    if error["type"] in ("missing_image", "ambiguous_image"):
        return ApiError(400, error["type"], error["msg"])
    if error["type"] == "missing":
        hint = getattr(model, "required_hints", {}).get(name)
        return bad_parameter(name, f"is required ({hint})" if hint else "is required")
    return bad_parameter(name, error["msg"])


@cache
def adapter(model: type) -> TypeAdapter:
    return TypeAdapter(model)


def parse(model: type, params: Mapping[str, object], context: Mapping[str, object] | None = None):
    """The model validated from `params` (blank values dropped); its first error as a 400."""
    given = {name: value for name, value in params.items() if not is_blank(value)}
    try:
        return adapter(model).validate_python(given, context=context, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise to_api_error(exc.errors(include_url=False)[0], model) from None


def search_options(params: Mapping[str, object], filter_fields: tuple[str, ...]) -> SearchOptions:
    return parse(SearchOptions, params, {"filter_fields": filter_fields})


def bool_parameter(params: Mapping[str, object], name: str, default: bool) -> bool:
    """One boolean parameter on its own (the words the models accept)."""
    raw = params.get(name)
    if is_blank(raw):
        return default
    try:
        return bool_value(raw)
    except PydanticCustomError as exc:
        raise bad_parameter(name, exc.message()) from None


def filter_parameter(params: Mapping[str, object], allowed: tuple[str, ...]) -> dict[str, list[str]]:
    return search_options({"filter": params.get("filter")}, allowed).filters
