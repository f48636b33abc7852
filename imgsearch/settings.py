"""Settings models on pydantic-settings: one field per environment variable, errors that name it."""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, core_schema
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
# Field metadata: the variable is read exactly as given (a password may start or end with spaces).
KEEP_SPACES = "keep-spaces"
NO_BREAK = "\xa0"


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


class Invalid(ValueError):
    """A value rejected by a shared rule; the message is completed with the variable's name."""


def environ() -> Mapping[str, str]:
    """The process environment (a seam for tests)."""
    return os.environ


@dataclass(frozen=True)
class Rule:
    """Field metadata: parses the variable's text before the type check; `text` goes into --help."""

    parse: Callable[[Any], Any]
    text: str = ""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self.parse, handler(source))


def integer(minimum: int = 0, maximum: int | None = None) -> Rule:
    """An integer within [minimum, maximum]."""

    def parse(raw: Any) -> int:
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise Invalid(f"must be an integer, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = "" if maximum is None else f" and <= {maximum}"
            raise Invalid(f"must be >= {minimum}{upper}, got {value}")
        return value

    return Rule(parse, f">= {minimum}" if maximum is None else f"{minimum}-{maximum}")


def number(minimum: float = 0.0) -> Rule:
    """A number >= minimum."""

    def parse(raw: Any) -> float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise Invalid(f"must be a number, got {raw!r}") from None
        if value < minimum:
            raise Invalid(f"must be >= {minimum}, got {value}")
        return value

    return Rule(parse, f">= {minimum:g}")


def choice(*choices: str) -> Rule:
    """One of a fixed set of values."""

    def parse(raw: Any) -> str:
        if raw not in choices:
            raise Invalid(f"must be one of {', '.join(choices)}; got {raw!r}")
        return raw

    return Rule(parse, " | ".join(choices))


def flag() -> Rule:
    """true/false (also 1/0, yes/no, on/off; any case)."""

    def parse(raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        value = str(raw).lower()
        if value not in TRUE + FALSE:
            raise Invalid(f"must be true or false, got {value!r}")
        return value in TRUE

    return Rule(parse, "true | false")


def comma_list() -> Rule:
    """Comma-separated items, stripped, empty ones dropped."""

    def parse(raw: Any) -> tuple[str, ...]:
        if not isinstance(raw, str):
            return tuple(raw)
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    return Rule(parse, "comma-separated")


def matches(pattern: re.Pattern[str], message: str) -> Rule:
    """Text matching `pattern`; `message` is completed with the value (`{!r}`)."""

    def parse(raw: Any) -> str:
        if not isinstance(raw, str) or not pattern.match(raw):
            raise Invalid(message.format(raw))
        return raw

    return Rule(parse)


def env_var(name: str, default: Any = PydanticUndefined, description: str = "", secret: bool = False) -> Any:
    """A settings field that reads the variable `name` (no default: required; secret: not in repr)."""
    return Field(default, validation_alias=name, description=description, repr=not secret)


class EnvSettings(BaseSettings):
    """Base of the settings models: a field reads the variable named by its `validation_alias`;
    a field typed as another EnvSettings is a part read from the same variables (see `read`)."""

    model_config = SettingsConfigDict(
        frozen=True, case_sensitive=True, extra="ignore", validate_default=False
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`Model()` reads the process environment with the same rules as `read`."""
        return init_settings, VariablesSource(settings_cls, environ())

    @classmethod
    def variable(cls, field_name: str) -> str:
        """The environment variable a field reads ("ES_API_KEY")."""
        return variable_name(cls.model_fields[field_name]) or field_name


class VariablesSource(PydanticBaseSettingsSource):
    """Values from a mapping of variables: stripped (unless KEEP_SPACES), empty counts as unset so the
    default applies; JSON is never decoded. `parts` are already-built nested settings."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        variables: Mapping[str, str],
        parts: Mapping[str, EnvSettings] | None = None,
    ) -> None:
        super().__init__(settings_cls)
        self.variables = variables
        self.parts = dict(parts or {})

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = variable_name(field)
        raw = self.variables.get(name) if name else None
        if raw is None:
            return None, field_name, False
        value = raw if KEEP_SPACES in field.metadata else raw.strip()
        return value or None, name or field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = dict(self.parts)
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[key] = value
        return values


Settings = TypeVar("Settings", bound=EnvSettings)


def variable_name(field: FieldInfo) -> str | None:
    alias = field.validation_alias
    return alias if isinstance(alias, str) else None


def settings_parts(cls: type[EnvSettings]) -> Iterator[tuple[str, type[EnvSettings]]]:
    """(field name, settings class) of the fields that are nested settings."""
    for name, field in cls.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, EnvSettings):
            yield name, field.annotation


def read(cls: type[Settings], variables: Mapping[str, str]) -> Settings:
    """Build a settings model (and its parts) from variables; ConfigError names every bad variable."""
    parts: dict[str, EnvSettings] = {}
    problems: list[str] = []
    for name, part in settings_parts(cls):
        try:
            parts[name] = read(part, variables)
        except ConfigError as exc:
            problems.append(str(exc))
    try:
        settings = cls(_build_sources=((VariablesSource(cls, variables, parts),), {}))
    except ValidationError as exc:
        failed = {name for name, _ in settings_parts(cls)} - set(parts)
        problems += [describe(error) for error in exc.errors() if not set(error["loc"][:1]) & failed]
    if problems:
        raise ConfigError("; ".join(dict.fromkeys(problems)))
    return settings


def describe(error: Any) -> str:
    """One pydantic error as a sentence that names the variable."""
    name = ".".join(str(part) for part in error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return str(cause)
    if isinstance(cause, Invalid):
        return f"{name} {cause}"
    if error["type"] == "missing":
        return f"{name} is required but not set (see env.example)"
    return f"{name}: {cause or error['msg']}"


# --- documentation: --help and the env.example check are generated from the fields ------------------


@dataclass(frozen=True)
class Variable:
    """One environment variable of a settings model, where it lands, and what --help says about it."""

    name: str
    path: tuple[str, ...]
    field: FieldInfo

    @property
    def required(self) -> bool:
        return self.field.is_required()

    @property
    def default(self) -> Any:
        return None if self.field.default is PydanticUndefined else self.field.default

    def default_text(self) -> str:
        """The default as written in env.example ("" when unset)."""
        value = self.default
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, tuple):
            return ",".join(value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    def help_line(self) -> str:
        """Description [rule; default X | required]; short notes joined by no-break spaces."""
        notes = [rule.text for rule in self.field.metadata if isinstance(rule, Rule) and rule.text]
        if self.required:
            notes.append("required")
        elif self.default_text():
            notes.append(f"default {self.default_text()}")
        notes = [note.replace(" ", NO_BREAK) if len(note) < 24 else note for note in notes]
        suffix = f" [{'; '.join(notes)}]" if notes else ""
        return f"{self.field.description or ''}{suffix}"


def variables(cls: type[EnvSettings], path: tuple[str, ...] = ()) -> list[Variable]:
    """Every variable a model and its parts read, in declaration order, each name once."""
    found: dict[str, Variable] = {}
    parts = dict(settings_parts(cls))
    for field_name, field in cls.model_fields.items():
        if field_name in parts:
            nested = variables(parts[field_name], (*path, field_name))
            found.update({v.name: v for v in nested if v.name not in found})
        elif (name := variable_name(field)) and name not in found:
            found[name] = Variable(name, (*path, field_name), field)
    return list(found.values())


def help_text(cls: type[EnvSettings], title: str, width: int = 110) -> str:
    """The variables of a model as an argparse epilog: name, description, [rule; default]."""
    listed = variables(cls)
    column = max(len(variable.name) for variable in listed) + 4
    lines = [title]
    for variable in listed:
        lines += textwrap.wrap(
            variable.help_line(),
            width=width,
            initial_indent=f"  {variable.name}".ljust(column),
            subsequent_indent=" " * column,
        )
    return "\n".join(lines).replace(NO_BREAK, " ")
