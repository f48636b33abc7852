"""Least-privilege roles, users and API keys for the indexer and the search API (needs an admin login).

python -m deploy.elasticsearch.security --help
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

ROLES_DIR = Path(__file__).resolve().parent / "roles"
# component -> role file; the role (and API key) name is the file's stem plus the alias.
COMPONENTS = {
    "indexer": "imgsearch_indexer",
    "api-read": "imgsearch_api_read",
    "api-write": "imgsearch_api_write",
}
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

HELP = """\
Admin login (environment): ES_ADMIN_API_KEY, or ES_ADMIN_USERNAME and ES_ADMIN_PASSWORD: a user or key
with the manage_security cluster privilege (e.g. `elastic`). It is only used by this script; the
indexer and the API never see it. Connection: ES_URL, ES_CA_CERTS or ES_SSL_FINGERPRINT (or
ES_VERIFY_CERTS=false), as for the indexer. ES_INDEX (default images) is the alias the roles cover.

Role and key names: imgsearch_indexer_<alias>, imgsearch_api_read_<alias>, imgsearch_api_write_<alias>.
An API key carries its role inline (role_descriptors): `roles` also updates the keys this admin owns.

Secrets: a new API key is printed once as an env line (ES_API_KEY=...), or with --output written to a
file created with mode 0600. Passwords are read from an environment variable, never from the command
line. Every command is idempotent: roles and users are created or updated; a key is created only when
no active key of that name exists (--rotate creates another one; `invalidate` retires the old ones).

examples:
  export ES_URL=https://es.internal:9200 ES_CA_CERTS=/etc/es/ca.crt ES_INDEX=images
  export ES_ADMIN_USERNAME=elastic ES_ADMIN_PASSWORD=...
  python -m deploy.elasticsearch.security setup --output-dir /run/secrets/imgsearch
  python -m deploy.elasticsearch.security api-key indexer --rotate --output indexer.env
  python -m deploy.elasticsearch.security invalidate indexer --keep <id of the new key>
  IMGSEARCH_PASSWORD=... python -m deploy.elasticsearch.security user imgsearch-indexer indexer

exit codes: 0 done, 1 Elasticsearch refused or failed, 2 bad configuration."""

log = logging.getLogger("deploy.security")


def role_name(component: str, alias: str) -> str:
    return f"{COMPONENTS[component]}_{alias}"


def role_body(component: str, alias: str) -> dict[str, Any]:
    """The role file of a component with `{{alias}}` (and `{{alias_regex}}`, the alias escaped for a
    Lucene regular expression such as /images-[0-9]{8}t[0-9]{9}z/) filled in."""
    template = json.loads((ROLES_DIR / f"{COMPONENTS[component]}.json").read_text())
    values = {"{{alias}}": alias, "{{alias_regex}}": re.sub(r"([^a-z0-9_-])", r"\\\1", alias)}
    return fill(template, values)


def fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, text in values.items():
            value = value.replace(placeholder, text)
        return value
    if isinstance(value, dict):
        return {fill(k, values): fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(item, values) for item in value]
    return value


def key_role_descriptor(component: str, alias: str) -> dict[str, Any]:
    """The role as an API key's inline role descriptor (no description: that field is for roles)."""
    return {k: v for k, v in role_body(component, alias).items() if k != "description"}


def admin_client(env: Mapping[str, str]) -> tuple[Elasticsearch, str]:
    """A client logged in with ES_ADMIN_* and the ES_* connection settings; (client, alias)."""
    from imgsearch.config import load_elastic_config
    from imgsearch.esclient import make_client
    from imgsearch.settings import ConfigError

    config = load_elastic_config(env, prefix="ES_ADMIN_")
    if not config.credentials_from:
        raise ConfigError("set ES_ADMIN_API_KEY, or ES_ADMIN_USERNAME and ES_ADMIN_PASSWORD (an admin login)")
    es = make_client(config, max_retries=2)
    return es, config.alias


def put_roles(es: Elasticsearch, alias: str, components: list[str] | None = None) -> list[str]:
    """Create or update the roles; also refresh the inline roles of active keys of the same names."""
    done = []
    for component in components or list(COMPONENTS):
        name = role_name(component, alias)
        es.security.put_role(name=name, **role_body(component, alias))
        updated = update_owned_keys(es, component, alias)
        log.info("role %s is up to date (%d API keys updated)", name, updated)
        done.append(name)
    return done


def update_owned_keys(es: Elasticsearch, component: str, alias: str) -> int:
    """Give the active keys of this name that the admin owns the current role definition."""
    ids = [key["id"] for key in active_keys(es, role_name(component, alias), owner=True)]
    if ids:
        es.security.bulk_update_api_keys(
            ids=ids, role_descriptors={role_name(component, alias): key_role_descriptor(component, alias)}
        )
    return len(ids)


def active_keys(es: Elasticsearch, name: str, owner: bool = False) -> list[dict[str, Any]]:
    response = es.options(ignore_status=404).security.get_api_key(name=name, active_only=True, owner=owner)
    return sorted(response.body.get("api_keys", []), key=lambda key: key.get("creation", 0))


def create_key(
    es: Elasticsearch, component: str, alias: str, expiration: str | None = None, rotate: bool = False
) -> dict[str, Any] | None:
    """A new API key with the component's role; None when an active one exists and rotate is False."""
    name = role_name(component, alias)
    existing = active_keys(es, name)
    if existing and not rotate:
        log.warning(
            "an active API key named %s exists (id %s); not creating another (use --rotate)",
            name,
            ", ".join(key["id"] for key in existing),
        )
        return None
    response = es.security.create_api_key(
        name=name,
        role_descriptors={name: key_role_descriptor(component, alias)},
        metadata={"imgsearch_component": component, "imgsearch_alias": alias},
        **({"expiration": expiration} if expiration else {}),
    ).body
    log.info("created API key %s (id %s)", name, response["id"])
    return {"component": component, "name": name, "id": response["id"], "encoded": response["encoded"]}


def invalidate_keys(es: Elasticsearch, component: str, alias: str, keep: str | None = None) -> list[str]:
    """Invalidate every active key of the component's name except `keep` (the end of a rotation)."""
    ids = [key["id"] for key in active_keys(es, role_name(component, alias)) if key["id"] != keep]
    if ids:
        es.security.invalidate_api_key(ids=ids)
    log.info("invalidated %d API keys named %s", len(ids), role_name(component, alias))
    return ids


def put_user(es: Elasticsearch, username: str, component: str, alias: str, password: str) -> None:
    """Create or update a native user holding the component's role (for ES_USERNAME/ES_PASSWORD)."""
    es.security.put_user(
        username=username,
        password=password,
        roles=[role_name(component, alias)],
        metadata={"imgsearch_component": component, "imgsearch_alias": alias},
    )
    log.info("user %s has role %s", username, role_name(component, alias))


def write_secret(path: Path, text: str) -> None:
    """Write a file readable by its owner only (created 0600; an existing file is tightened first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.chmod(0o600)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    log.info("wrote %s (mode 0600)", path)


def key_env_text(key: dict[str, Any]) -> str:
    return f"# {key['name']} (API key id {key['id']})\nES_API_KEY={key['encoded']}\n"


def emit_keys(keys: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Print the new keys once (env lines or JSON), or write them to 0600 files."""
    if args.json:
        print(json.dumps({key["component"]: key for key in keys}, indent=2))
        return
    for key in keys:
        target = output_path(key, args)
        if target is None:
            print(key_env_text(key), end="")
        else:
            write_secret(target, key_env_text(key))


def output_path(key: dict[str, Any], args: argparse.Namespace) -> Path | None:
    if getattr(args, "output", None):
        return Path(args.output)
    if getattr(args, "output_dir", None):
        return Path(args.output_dir) / f"{'indexer' if key['component'] == 'indexer' else 'api'}.env"
    return None


def command_roles(es: Elasticsearch, alias: str, args: argparse.Namespace) -> int:
    for name in put_roles(es, alias):
        print(f"role {name}")
    return EXIT_OK


def command_api_key(es: Elasticsearch, alias: str, args: argparse.Namespace) -> int:
    put_roles(es, alias, [args.component])
    key = create_key(es, args.component, alias, args.expiration, args.rotate)
    emit_keys([key] if key else [], args)
    return EXIT_OK


def command_setup(es: Elasticsearch, alias: str, args: argparse.Namespace) -> int:
    put_roles(es, alias)
    api_component = "api-write" if args.api_writes else "api-read"
    keys = [
        create_key(es, component, alias, args.expiration, args.rotate)
        for component in ("indexer", api_component)
    ]
    emit_keys([key for key in keys if key], args)
    return EXIT_OK


def command_invalidate(es: Elasticsearch, alias: str, args: argparse.Namespace) -> int:
    ids = invalidate_keys(es, args.component, alias, args.keep)
    print(json.dumps({"invalidated": ids}) if args.json else f"invalidated {len(ids)} keys: {' '.join(ids)}")
    return EXIT_OK


def command_user(es: Elasticsearch, alias: str, args: argparse.Namespace) -> int:
    from imgsearch.settings import ConfigError

    password = os.environ.get(args.password_env, "")
    if len(password) < 12:
        raise ConfigError(f"{args.password_env} must hold the user's password (at least 12 characters)")
    put_roles(es, alias, [args.component])
    put_user(es, args.username, args.component, alias, password)
    print(f"user {args.username} -> role {role_name(args.component, alias)}")
    return EXIT_OK


def roles_file_text(alias: str) -> str:
    """The three roles as a roles.yml for the file realm (each role one JSON line, which is YAML)."""
    lines = [f"# imgsearch roles for the alias {alias}: python -m deploy.elasticsearch.security roles-file"]
    lines += [f"{role_name(c, alias)}: {json.dumps(role_body(c, alias))}" for c in COMPONENTS]
    return "\n".join(lines) + "\n"


def command_print_roles(alias: str, args: argparse.Namespace) -> int:
    print(json.dumps({role_name(c, alias): role_body(c, alias) for c in COMPONENTS}, indent=2))
    return EXIT_OK


def command_roles_file(alias: str, args: argparse.Namespace) -> int:
    text = roles_file_text(alias)
    if args.output:
        Path(args.output).write_text(text)
        log.info("wrote %s", args.output)
    else:
        print(text, end="")
    return EXIT_OK


COMMANDS = {
    "roles": command_roles,
    "api-key": command_api_key,
    "setup": command_setup,
    "invalidate": command_invalidate,
    "user": command_user,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.elasticsearch.security",
        description="Create the imgsearch roles, users and API keys in a secured Elasticsearch.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_json_option(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("roles", help="create or update the three roles for ES_INDEX")
    commands.add_parser("print-roles", help="print the role bodies for ES_INDEX (no cluster needed)")
    roles_file = commands.add_parser(
        "roles-file", help="the roles as roles.yml for clusters whose roles live in files (no cluster needed)"
    )
    roles_file.add_argument("--output", metavar="FILE", help="write there instead of printing")
    key = commands.add_parser("api-key", help="create an API key for one component")
    key.add_argument("component", choices=list(COMPONENTS))
    add_key_options(key)
    add_json_option(key)
    key.add_argument("--output", metavar="FILE", help="write `ES_API_KEY=...` to FILE (mode 0600)")
    setup = commands.add_parser(
        "setup", help="roles, then an indexer key and an API key (read-only by default)"
    )
    setup.add_argument(
        "--api-writes", action="store_true", help="the API key may write (SEARCH_API_KEYS set)"
    )
    add_key_options(setup)
    add_json_option(setup)
    setup.add_argument("--output-dir", metavar="DIR", help="write indexer.env and api.env there (mode 0600)")
    invalidate = commands.add_parser("invalidate", help="invalidate a component's active API keys")
    invalidate.add_argument("component", choices=list(COMPONENTS))
    add_json_option(invalidate)
    which = invalidate.add_mutually_exclusive_group(required=True)
    which.add_argument("--keep", metavar="ID", help="the id of the key to keep (the new one)")
    which.add_argument("--all", action="store_true", help="invalidate every active key of the component")
    user = commands.add_parser("user", help="create or update a native user with a component's role")
    user.add_argument("username")
    user.add_argument("component", choices=list(COMPONENTS))
    user.add_argument(
        "--password-env", default="IMGSEARCH_PASSWORD", metavar="VAR", help="variable holding the password"
    )
    return parser


def add_json_option(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    """--json before or after the command (`--json setup`, `setup --json`): the command's copy has no
    default, so it never overwrites the one given before the command."""
    parser.add_argument(
        "--json", action="store_true", default=default, help="print results (and new keys) as JSON"
    )


def add_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--expiration", metavar="TIME", help="key lifetime such as 90d (default: none)")
    parser.add_argument("--rotate", action="store_true", help="create a key even if an active one exists")


def main(argv: list[str] | None = None) -> int:
    from elastic_transport import TransportError
    from elasticsearch import ApiError, AuthorizationException

    from imgsearch.config import load_elastic_config
    from imgsearch.esclient import error_reason, failure_message
    from imgsearch.settings import ConfigError, environ

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    # One INFO line per HTTP request from the client library drowns the script's own lines.
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    env = environ()
    try:
        offline = {"print-roles": command_print_roles, "roles-file": command_roles_file}
        if args.command in offline:
            return offline[args.command](
                load_elastic_config({"ES_INDEX": env.get("ES_INDEX", "")}).alias, args
            )
        es, alias = admin_client(env)
        return COMMANDS[args.command](es, alias, args)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    except AuthorizationException as exc:
        log.error(
            "the admin login lacks a privilege (manage_security is needed) (403): %s", error_reason(exc)
        )
        return EXIT_FAILED
    except ApiError as exc:
        if "pattern_capture" in f"{exc} {error_reason(exc)}":  # the .security index's analyzer is missing
            log.error(
                "this Elasticsearch cannot store native roles, users or API keys: its .security index cannot "
                "be created (%s; a minimal distribution without the analysis-common module). Use "
                "`roles-file` with file-realm users (bin/elasticsearch-users) instead",
                error_reason(exc),
            )
            return EXIT_FAILED
        config = load_elastic_config(env, prefix="ES_ADMIN_")
        log.error("%s", failure_message(exc, config) or f"Elasticsearch at {config.url} failed: {exc}")
        return EXIT_FAILED
    except TransportError as exc:
        config = load_elastic_config(env, prefix="ES_ADMIN_")
        log.error("%s", failure_message(exc, config) or f"Elasticsearch at {config.url} failed: {exc}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
