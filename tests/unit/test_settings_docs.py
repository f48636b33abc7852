"""env.example and --help against the settings models: every variable read is documented with its default."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import Field

from imgsearch.config import AdminElasticConfig, ElasticConfig
from imgsearch.settings import EnvSettings, Variable, read, variables
from indexer.__main__ import build_parser
from indexer.config import IndexerConfig
from kibana import setup as kibana_setup
from searchapi.config import SearchConfig, ServerSettings

REPO = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO / "env.example"
LINE = re.compile(r"^(?P<commented>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


@dataclass(frozen=True)
class Documented:
    """One NAME=value line of env.example; commented-out lines are optional variables left unset."""

    name: str
    value: str
    commented: bool
    comment: str  # the comment block right above it


def documented(text: str) -> dict[str, Documented]:
    entries: dict[str, Documented] = {}
    comment: list[str] = []
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            name = match["name"]
            assert name not in entries, f"{name} is documented twice"
            entries[name] = Documented(name, match["value"], bool(match["commented"]), " ".join(comment))
        elif line.startswith("#"):
            comment.append(line.lstrip("# "))
            continue
        comment = []
    return entries


# The process models: what the indexer, the API, kibana set-up and the security script read.
MODELS: dict[type[EnvSettings], dict[str, str]] = {
    IndexerConfig: {"MYSQL_URL": "mysql://u:p@db.example:3306/shop"},
    SearchConfig: {},
    ServerSettings: {},
    kibana_setup.KibanaSettings: {},
    AdminElasticConfig: {},
}


def model_variables() -> dict[str, tuple[type[EnvSettings], Variable]]:
    found: dict[str, tuple[type[EnvSettings], Variable]] = {}
    for model in MODELS:
        for variable in variables(model):
            found.setdefault(variable.name, (model, variable))
    return found


def value_at(settings: EnvSettings, path: tuple[str, ...]) -> object:
    value: object = settings
    for name in path:
        value = getattr(value, name)
    return value


def problems_with(entries: dict[str, Documented], model: type[EnvSettings], variable: Variable) -> list[str]:
    """Why env.example's line for a model variable is wrong (empty: it is right)."""
    entry = entries.get(variable.name)
    if entry is None:
        return [f"{variable.name} is read by {model.__name__} but not in env.example"]
    if variable.required:
        read(model, {**MODELS[model], variable.name: entry.value})
        ok = not entry.commented and "Required" in entry.comment
        return [] if ok else [f"{variable.name} is required: say so above an uncommented example"]
    if entry.commented:
        ok = variable.default is None
        return [] if ok else [f"{variable.name} has a default: document it uncommented with that default"]
    given = value_at(read(model, {**MODELS[model], variable.name: entry.value}), variable.path)
    if given != value_at(read(model, MODELS[model]), variable.path):
        return [
            f"{variable.name}={entry.value} in env.example, but the default is {variable.default_text()!r}"
        ]
    return []


def test_every_variable_a_model_reads_is_in_env_example_with_its_default():
    entries = documented(ENV_EXAMPLE.read_text())
    problems = [
        p for model, variable in model_variables().values() for p in problems_with(entries, model, variable)
    ]
    assert problems == []


def test_env_example_documents_nothing_that_is_not_read():
    read_somewhere = set(model_variables())
    assert set(documented(ENV_EXAMPLE.read_text())) - read_somewhere == set()


class Extended(ElasticConfig):
    """A model that reads one variable more than env.example documents."""

    extra: int = Field(7, validation_alias="ES_SOMETHING_NEW", description="not documented")


def test_the_env_example_check_catches_a_missing_variable_and_a_wrong_default(monkeypatch):
    monkeypatch.setitem(MODELS, Extended, {})
    entries = documented(ENV_EXAMPLE.read_text())
    new = next(variable for variable in variables(Extended) if variable.name == "ES_SOMETHING_NEW")
    assert problems_with(entries, Extended, new) == [
        "ES_SOMETHING_NEW is read by Extended but not in env.example"
    ]
    wrong = documented("ES_SOMETHING_NEW=8\n")
    assert problems_with(wrong, Extended, new) == [
        "ES_SOMETHING_NEW=8 in env.example, but the default is '7'"
    ]
    assert problems_with(documented("ES_SOMETHING_NEW=7\n"), Extended, new) == []


def test_the_env_example_check_wants_required_variables_marked():
    url = next(variable for variable in variables(IndexerConfig) if variable.name == "MYSQL_URL")
    marked = documented("# Required. The catalog.\nMYSQL_URL=mysql://u:p@h:3306/db\n")
    assert problems_with(marked, IndexerConfig, url) == []
    unmarked = documented("# The catalog.\nMYSQL_URL=mysql://u:p@h:3306/db\n")
    assert problems_with(unmarked, IndexerConfig, url) == [
        "MYSQL_URL is required: say so above an uncommented example"
    ]


# --- --help -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["full", "--help"], ["incremental", "--help"]])
def test_indexer_help_lists_every_variable_with_its_default(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    listed = variables(IndexerConfig)
    assert {"ES_URL", "ES_API_KEY", "VGG16_COMPILE", "MYSQL_URL", "IMAGE_MAX_PIXELS", "INDEXER_LOCK_TTL"} <= {
        variable.name for variable in listed
    }
    for variable in listed:
        assert f" {variable.name} " in text
        line = " ".join(variable.help_line().split())
        assert line in text, variable.name
        if variable.default_text():
            assert f"default {variable.default_text()}" in line
    assert "[required]" in text and "exit codes:" in text


def test_kibana_help_lists_every_variable():
    text = " ".join(kibana_setup.build_parser().format_help().split())
    for variable in variables(kibana_setup.KibanaSettings):
        assert " ".join(variable.help_line().split()) in text, variable.name
