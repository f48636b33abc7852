"""`python -m kibana.setup`: import kibana/saved_objects.ndjson into Kibana, for one alias.

The file is written for the alias `images`; the objects are rewritten for ES_INDEX (data view patterns
`<alias>` and `<alias>-runs`, object ids `imgsearch-<alias>-…`, titles `[<alias>] …`) and sent to
Kibana's import API: POST {KIBANA_URL}[/s/{space}]/api/saved_objects/_import?overwrite=true, a
multipart/form-data body whose part `file` is an .ndjson file, with the header `kbn-xsrf: true`.
The answer's `success` and `errors` are checked; any error fails the run with a message per object.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from pydantic import field_validator, model_validator

from imgsearch.config import ALIAS, ALIAS_RULE
from imgsearch.retry import NotReady, kibana_retrying
from imgsearch.settings import KEEP_SPACES, ConfigError, EnvSettings, env_var, help_text, matches, read

DEFAULT_FILE = Path(__file__).resolve().with_name("saved_objects.ndjson")
TEMPLATE_ALIAS = "images"
ID_PREFIX = "imgsearch-"
ALIAS_RE = ALIAS  # the rule of ES_INDEX
SPACE_RE = re.compile(r"^[a-z0-9_-]{1,100}$")
SPACE_RULE = matches(SPACE_RE, "must be a space id (a-z, 0-9, _ and -), got {!r}")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class KibanaSettings(EnvSettings):
    """Where the objects go and how to log in (KIBANA_*), and the alias they are for (ES_INDEX)."""

    url: str = env_var("KIBANA_URL", "http://127.0.0.1:5601", "Kibana base URL")
    space: Annotated[str | None, SPACE_RULE] = env_var(
        "KIBANA_SPACE", None, "space id (unset: the default space)"
    )
    username: str | None = env_var(
        "KIBANA_USERNAME", None, "a user with Saved Objects Management (all), with KIBANA_PASSWORD"
    )
    password: Annotated[str | None, KEEP_SPACES] = env_var(
        "KIBANA_PASSWORD", None, "password of KIBANA_USERNAME", secret=True
    )
    api_key: str | None = env_var(
        "KIBANA_API_KEY",
        None,
        "instead of a user: an API key (the `encoded` form), sent as `ApiKey`",
        secret=True,
    )
    ca_certs: str | None = env_var("KIBANA_CA_CERTS", None, "CA file for an https KIBANA_URL")
    alias: Annotated[str, ALIAS_RULE] = env_var(
        "ES_INDEX", TEMPLATE_ALIAS, "the image alias the objects are for"
    )

    @field_validator("url")
    @classmethod
    def check_url(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"KIBANA_URL must be an http(s) URL, got {url!r}")
        return url

    @model_validator(mode="after")
    def check_credentials(self) -> KibanaSettings:
        if self.api_key and (self.username or self.password):
            raise ConfigError("set either KIBANA_API_KEY or KIBANA_USERNAME/KIBANA_PASSWORD, not both")
        if bool(self.username) != bool(self.password):
            raise ConfigError("KIBANA_USERNAME and KIBANA_PASSWORD must be set together")
        return self


ENVIRONMENT_HELP = f"""\
{help_text(KibanaSettings, "environment (a command-line option wins over its variable):")}

exit codes: 0 imported; 1 Kibana unreachable, refused the request, or reported errors for objects;
2 bad arguments, environment or saved-objects file."""


class SetupError(Exception):
    """A failure with the exit code it maps to."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def load_objects(text: str, source: str = "saved objects") -> list[dict[str, Any]]:
    """Parse NDJSON: one saved object per non-empty line."""
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SetupError(f"{source} line {number} is not JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(value, dict) or "type" not in value or "id" not in value:
            raise SetupError(f"{source} line {number} is not a saved object (type, id)", EXIT_USAGE)
        objects.append(value)
    if not objects:
        raise SetupError(f"{source} holds no saved objects", EXIT_USAGE)
    return objects


def for_alias(objects: list[dict[str, Any]], alias: str) -> list[dict[str, Any]]:
    """The objects rewritten from the template alias `images` to `alias` (a deep copy)."""
    if not ALIAS_RE.match(alias):
        raise SetupError(f"ES_INDEX must be a lowercase index/alias name, got {alias!r}", EXIT_USAGE)
    patterns = {TEMPLATE_ALIAS: alias, f"{TEMPLATE_ALIAS}-runs": f"{alias}-runs"}
    old_prefix, new_prefix = f"{ID_PREFIX}{TEMPLATE_ALIAS}-", f"{ID_PREFIX}{alias}-"
    old_label, new_label = f"[{TEMPLATE_ALIAS}]", f"[{alias}]"

    def rename_id(value: str) -> str:
        return new_prefix + value[len(old_prefix) :] if value.startswith(old_prefix) else value

    result = []
    for original in objects:
        obj = copy.deepcopy(original)
        obj["id"] = rename_id(obj["id"])
        for reference in obj.get("references", []):
            reference["id"] = rename_id(reference["id"])
        attributes = obj.get("attributes", {})
        if obj["type"] == "index-pattern":
            title = attributes.get("title")
            if title not in patterns:
                raise SetupError(
                    f"data view {original['id']} has the pattern {title!r}; the template knows only "
                    f"{sorted(patterns)}",
                    EXIT_USAGE,
                )
            attributes["title"] = patterns[title]
        for key in ("title", "name"):
            if isinstance(attributes.get(key), str) and attributes[key].startswith(old_label):
                attributes[key] = new_label + attributes[key][len(old_label) :]
        result.append(obj)
    return result


def to_ndjson(objects: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(obj, separators=(",", ":")) + "\n" for obj in objects).encode()


def multipart_file(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one file part; returns (body, Content-Type header)."""
    boundary = f"----imgsearch-{uuid.uuid4().hex}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def import_url(kibana_url: str, space: str | None) -> str:
    base = kibana_url.rstrip("/")
    prefix = f"/s/{quote(space)}" if space else ""
    return f"{base}{prefix}/api/saved_objects/_import?overwrite=true"


def auth_header(settings: KibanaSettings) -> dict[str, str]:
    """Authorization from KIBANA_API_KEY or KIBANA_USERNAME/KIBANA_PASSWORD (none: security off)."""
    if settings.api_key:
        return {"Authorization": f"ApiKey {settings.api_key}"}
    if settings.username:
        token = base64.b64encode(f"{settings.username}:{settings.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, context: ssl.SSLContext | None
) -> Answer:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return Answer(response.status, decode(response.read()))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, decode(exc.read()))


def decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()


def send_with_wait(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    context: ssl.SSLContext | None,
    wait_seconds: float,
    retry_interval: float = 5.0,
) -> Answer:
    """POST once, or keep retrying for wait_seconds while Kibana is unreachable or answers 503
    (backoff up to retry_interval seconds); the last answer, or SetupError when none came."""

    def attempt() -> Answer:
        answer = post(url, body, headers, timeout, context)
        if answer.status == 503:
            raise NotReady(f"HTTP 503: {message_of(answer.body)}", answer)
        return answer

    def announce(line: str) -> None:
        print(f"kibana-setup: {line}", file=sys.stderr)

    try:
        return kibana_retrying(wait_seconds, retry_interval, announce)(attempt)
    except NotReady as exc:
        return exc.answer
    except (urllib.error.URLError, OSError) as exc:
        raise SetupError(f"cannot reach Kibana at {origin(url)}: {getattr(exc, 'reason', exc)}") from None


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def message_of(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or json.dumps(body)[:500])
    return str(body)[:500]


def check_answer(answer: Answer, url: str, space: str | None, expected: int) -> str:
    """The success line, or SetupError with what went wrong."""
    where = f"Kibana at {origin(url)}" + (f" (space {space})" if space else "")
    if answer.status == 401:
        raise SetupError(
            f"{where} rejected the credentials (HTTP 401: {message_of(answer.body)}); "
            "set KIBANA_USERNAME/KIBANA_PASSWORD or KIBANA_API_KEY"
        )
    if answer.status == 403:
        raise SetupError(
            f"{where} refused the import (HTTP 403: {message_of(answer.body)}); the user needs "
            "Saved Objects Management (all) in that space"
        )
    if answer.status == 404 and space:
        raise SetupError(f"{where}: HTTP 404 ({message_of(answer.body)}); does the space {space!r} exist?")
    if answer.status != 200:
        raise SetupError(f"{where} answered HTTP {answer.status}: {message_of(answer.body)}")
    if not isinstance(answer.body, dict) or not isinstance(answer.body.get("success"), bool):
        raise SetupError(f"{where} answered 200 without a `success` field: {message_of(answer.body)}")
    errors = answer.body.get("errors") or []
    if not answer.body["success"] or errors:
        lines = [describe_error(error) for error in errors] or ["(no errors listed)"]
        raise SetupError(
            f"{where} imported {answer.body.get('successCount', 0)} of {expected} objects; errors:\n  "
            + "\n  ".join(lines)
        )
    count = answer.body.get("successCount", 0)
    if count != expected:
        raise SetupError(f"{where} reported success but imported {count} of {expected} objects")
    return f"imported {count} saved objects into {where}"


def describe_error(error: dict[str, Any]) -> str:
    """One line per failed object: type id (title): error type and details."""
    detail = error.get("error") or {}
    kind = detail.get("type", "unknown")
    extra = ""
    if kind == "missing_references":
        extra = ": " + ", ".join(f"{ref.get('type')} {ref.get('id')}" for ref in detail.get("references", []))
    elif detail.get("message"):
        extra = f": {detail['message']}"
    title = error.get("title") or (error.get("meta") or {}).get("title") or ""
    return f"{error.get('type')} {error.get('id')} ({title}): {kind}{extra}"


def ssl_context(url: str, ca_certs: str | None) -> ssl.SSLContext | None:
    if urlsplit(url).scheme != "https":
        return None
    if ca_certs and not Path(ca_certs).is_file():
        raise SetupError(f"KIBANA_CA_CERTS file not found: {ca_certs}", EXIT_USAGE)
    return ssl.create_default_context(cafile=ca_certs or None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kibana.setup",
        description="Import the imgsearch Kibana saved objects (data views on the image alias and on "
        "<alias>-runs, the indexing-runs dashboard, saved searches) through Kibana's saved objects "
        "import API, overwriting earlier versions of the same objects.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kibana-url", help="Kibana base URL (default: KIBANA_URL)")
    parser.add_argument("--space", help="Kibana space id (default: KIBANA_SPACE)")
    parser.add_argument("--alias", help="image alias (default: ES_INDEX)")
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="saved objects NDJSON (template)")
    parser.add_argument("--ca-certs", help="CA file for https (default: KIBANA_CA_CERTS)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    parser.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="retry while Kibana is down or starting"
    )
    parser.add_argument(
        "--print",
        action="store_true",
        help="print the NDJSON for the alias (for a manual import); send nothing",
    )
    return parser


def load_settings(args: argparse.Namespace, env: Mapping[str, str]) -> KibanaSettings:
    """The variables, each overridden by its command-line option when that is given."""
    options = {"KIBANA_URL": args.kibana_url, "KIBANA_SPACE": args.space, "ES_INDEX": args.alias}
    options["KIBANA_CA_CERTS"] = args.ca_certs
    try:
        return read(KibanaSettings, {**env, **{k: v for k, v in options.items() if v is not None}})
    except ConfigError as exc:
        raise SetupError(str(exc), EXIT_USAGE) from None


def run(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    settings = load_settings(args, env)
    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SetupError(f"cannot read {args.file}: {exc}", EXIT_USAGE) from None
    objects = for_alias(load_objects(text, str(args.file)), settings.alias)
    payload = to_ndjson(objects)
    if args.print:
        sys.stdout.write(payload.decode())
        return None
    body, content_type = multipart_file("file", f"imgsearch-{settings.alias}.ndjson", payload)
    headers = {"kbn-xsrf": "true", "Content-Type": content_type, **auth_header(settings)}
    url = import_url(settings.url, settings.space)
    context = ssl_context(url, settings.ca_certs)
    answer = send_with_wait(url, body, headers, args.timeout, context, args.wait)
    done = check_answer(answer, url, settings.space, len(objects))
    dashboards = [obj["id"] for obj in objects if obj["type"] == "dashboard"]
    space_path = f"/s/{settings.space}" if settings.space else ""
    links = [f"{settings.url.rstrip('/')}{space_path}/app/dashboards#/view/{oid}" for oid in dashboards]
    return "\n".join([f"{done} for alias {settings.alias}", *(f"  dashboard: {link}" for link in links)])


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    try:
        summary = run(args, env)
    except SetupError as exc:
        print(f"kibana-setup: {exc}", file=sys.stderr)
        return exc.code
    if summary:
        print(f"kibana-setup: {summary}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
