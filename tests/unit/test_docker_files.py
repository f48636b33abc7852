"""Offline checks of docker/: compose-spec schema, hadolint, shellcheck, consistency, the entry point.

No Docker engine is needed (or available on CI): the compose file is validated against the compose-spec
JSON schema vendored by check-jsonschema, before and after interpolating scripts/versions.env and
docker/demo.env; the Dockerfile is linted by hadolint and the shell scripts by shellcheck (both pinned
in requirements.txt). docker/entrypoint.sh and docker/healthcheck.py are run for real.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
ENV_FILES = [REPO / "scripts" / "versions.env", DOCKER / "demo.env"]
APP_IMAGE = "imgsearch-app:local"
ENTRY_COMMANDS = {"api", "indexer", "demo", "kibana-setup", "python"}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}")


def tool(name: str) -> str:
    """A lint tool installed from requirements.txt next to this interpreter (make venv)."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make venv` (it is pinned in requirements.txt)")
    return found


def read_env_files() -> dict[str, str]:
    values: dict[str, str] = {}
    for path in ENV_FILES:
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, value = line.partition("=")
                values[name.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error} and $$, for the checks."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        value = env.get(name)
        if operator == "?" and not value:
            raise AssertionError(f"${{{name}}} is required ({argument}) and not set by {ENV_FILES}")
        if operator == "-":
            return value if value else argument
        if value is None:
            raise AssertionError(f"${{{name}}} has no default and is not set by {ENV_FILES}")
        return value

    return VAR.sub(substitute, text.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def schema_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_file_matches_the_compose_spec_schema():
    result = schema_check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_interpolated_with_the_documented_env_files_matches_the_schema(tmp_path):
    rendered = tmp_path / "compose.rendered.yaml"
    rendered.write_text(interpolate(COMPOSE.read_text(), read_env_files()))
    result = schema_check(rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "$" not in json.dumps(yaml.safe_load(rendered.read_text())["services"]["kibana"]["environment"])


def test_schema_check_rejects_a_broken_compose_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "services:\n  api:\n    image: x\n    depends_on: {db: {condition: when_i_feel_like_it}}\n"
    )
    assert schema_check(broken).returncode != 0


def test_elasticsearch_and_kibana_share_one_version_with_security_on(services):
    versions = read_env_files()
    assert versions["ES_VERSION"] == versions["KIBANA_VERSION"]
    es_image, kibana_image = services["elasticsearch"]["image"], services["kibana"]["image"]
    assert es_image.endswith(":${ES_VERSION:-" + versions["ES_VERSION"] + "}")
    assert kibana_image.endswith(":${KIBANA_VERSION:-" + versions["KIBANA_VERSION"] + "}")
    es_env = services["elasticsearch"]["environment"]
    assert es_env["xpack.security.enabled"] == "true"
    assert es_env["xpack.security.http.ssl.enabled"] == "true"
    kibana_env = services["kibana"]["environment"]
    assert json.loads(kibana_env["ELASTICSEARCH_HOSTS"]) == ["https://elasticsearch:9200"]
    assert kibana_env["ELASTICSEARCH_USERNAME"] == "kibana_system"


def test_every_published_port_is_bound_to_loopback(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_dependencies_volumes_and_mounts_resolve(compose, services):
    declared_volumes = set(compose["volumes"])
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if spec["condition"] == "service_healthy":
                check = services[dependency].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), f"{dependency} has no healthcheck"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
        if mode := service.get("network_mode", ""):
            assert mode.removeprefix("service:") in services


def app_services(services: dict[str, dict]) -> dict[str, dict]:
    return {name: s for name, s in services.items() if s.get("image") == APP_IMAGE}


def test_app_services_build_the_one_image_and_use_its_entry_points(services):
    apps = app_services(services)
    assert {"demo-indexer", "api", "es-keys", "kibana-setup", "photos", "indexer"} <= set(apps)
    dockerfile_args = set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), re.MULTILINE))
    for name, service in apps.items():
        build = service["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert set(build.get("args", {})) <= dockerfile_args
        assert service["command"][0] in ENTRY_COMMANDS, name
        if service["command"][0] != "api":
            assert service.get("healthcheck") is not None, f"{name} inherits the API's /health check"


def test_app_services_reach_elasticsearch_over_tls_with_their_own_key(services):
    for name in ("demo-indexer", "api", "indexer"):
        env = {**services[name]["environment"]}
        assert env["ES_URL"].startswith("https://")
        assert env["ES_CA_CERTS"].startswith("/certs/")
        assert "certs:/certs:ro" in services[name]["volumes"]
        key_file = env["IMGSEARCH_ENV_FILE"]
        assert key_file.startswith("/run/imgsearch-secrets/")
        assert "es-secrets:/run/imgsearch-secrets:ro" in services[name]["volumes"]
    assert services["api"]["environment"]["IMGSEARCH_ENV_FILE"].endswith("/api.env")
    assert services["demo-indexer"]["environment"]["IMGSEARCH_ENV_FILE"].endswith("/indexer.env")


def test_the_key_setup_service_runs_the_security_script_that_writes_those_files(services):
    command = services["es-keys"]["command"]
    module = command[command.index("-m") + 1]
    assert (REPO / (module.replace(".", "/") + ".py")).is_file(), f"{module} is missing"
    assert command[command.index("--output-dir") + 1] == "/run/imgsearch-secrets"
    assert "/run/imgsearch-secrets" in DOCKERFILE.read_text()


def test_one_shot_services_run_in_order(services):
    def condition(service: str, dependency: str) -> str:
        return services[service]["depends_on"][dependency]["condition"]

    assert condition("elasticsearch", "es-certs") == "service_completed_successfully"
    assert condition("kibana", "es-setup") == "service_completed_successfully"
    assert condition("demo-indexer", "es-keys") == "service_completed_successfully"
    assert condition("api", "demo-indexer") == "service_completed_successfully"
    assert condition("kibana-setup", "kibana") == "service_healthy"
    assert services["indexer"]["profiles"] == ["ops"]


def test_dockerfile_passes_hadolint():
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_problem(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")
    result = subprocess.run([tool("hadolint"), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_shell_scripts_pass_shellcheck():
    scripts = [ENTRYPOINT, *sorted((DOCKER / "elasticsearch").glob("*.sh"))]
    result = subprocess.run(
        [tool("shellcheck"), *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_layout():
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), "base image must be pinned to a patch release"
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["/opt/imgsearch/entrypoint.sh"]' in text and 'CMD ["api"]' in text
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"/opt/imgsearch/healthcheck.py\"\]", text, re.M)
    for label in ("title", "description", "source", "version", "revision", "created", "base.name"):
        assert f"org.opencontainers.image.{label}=" in text
    for source in ("download", "local", "none"):
        assert f"AS weights-{source}" in text
    assert "FROM weights-${VGG16_WEIGHTS_SOURCE} AS weights" in text
    assert "SEARCH_BIND=0.0.0.0:8000" in text
    # The runtime install stops at this marker of requirements.txt (no test tooling in the image).
    assert "sed '/^# Tests and tooling/,$d'" in text
    assert "\n# Tests and tooling\n" in (REPO / "requirements.txt").read_text()


def test_every_copied_path_exists_and_is_not_dockerignored():
    ignored = [
        line
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("COPY ") or "--from=" in line:
            continue
        for source in line.split()[1:-1]:
            assert (REPO / source).exists(), source
            top = source.rstrip("/")
            excluded = [p for p in ignored if not p.startswith("!") and (top == p or top.startswith(p + "/"))]
            included = [p for p in ignored if p.startswith("!") and top.startswith(p[1:])]
            assert not excluded or included, f"{source} is excluded by {excluded}"


# --- docker/entrypoint.sh, run with stub programs -------------------------------------------------


@pytest.fixture
def stub_path(tmp_path) -> str:
    """A PATH whose python and gunicorn print their arguments and the variables the entry point sets."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("python", "gunicorn"):
        stub = bin_dir / program
        stub.write_text(
            "#!/bin/sh\n"
            f'echo "{program} $*"\n'
            'echo "VGG16_WEIGHTS=${VGG16_WEIGHTS-<unset>}"\n'
            'echo "ES_API_KEY=${ES_API_KEY-<unset>}"\n'
            'echo "MYSQL_URL=${MYSQL_URL-<unset>}"\n'
        )
        stub.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


def entrypoint(args: list[str], path: str, **env: str) -> subprocess.CompletedProcess:
    environment = {"PATH": path, "IMGSEARCH_BAKED_WEIGHTS": "/nonexistent/weights.h5", **env}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args], env=environment, capture_output=True, text=True, check=False
    )


def test_entrypoint_default_is_the_api_under_gunicorn(stub_path):
    result = entrypoint([], stub_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "gunicorn -c searchapi/gunicorn.conf.py searchapi:create_app()"


def test_entrypoint_runs_the_indexer_demo_and_kibana_setup(stub_path):
    assert entrypoint(["indexer", "full", "--partition", "0/4"], stub_path).stdout.startswith(
        "python -m indexer full --partition 0/4\n"
    )
    assert entrypoint(["demo", "--index-only"], stub_path).stdout.startswith("python -m demo --index-only\n")
    assert entrypoint(["kibana-setup", "--wait", "5"], stub_path).stdout.startswith(
        "python -m kibana.setup --wait 5\n"
    )
    assert entrypoint(["python", "-m", "indexer", "status"], stub_path).stdout.startswith(
        "python -m indexer status\n"
    )


def test_entrypoint_uses_the_baked_weights_for_imagenet_only(stub_path, tmp_path):
    baked = tmp_path / "vgg16.h5"
    baked.write_bytes(b"weights")
    for given in ({}, {"VGG16_WEIGHTS": "imagenet"}):
        result = entrypoint(["indexer", "status"], stub_path, IMGSEARCH_BAKED_WEIGHTS=str(baked), **given)
        assert f"VGG16_WEIGHTS={baked}" in result.stdout
    result = entrypoint(["indexer"], stub_path, IMGSEARCH_BAKED_WEIGHTS=str(baked), VGG16_WEIGHTS="random")
    assert "VGG16_WEIGHTS=random" in result.stdout
    # Built with VGG16_WEIGHTS_SOURCE=none: nothing baked, the variable is left alone.
    assert "VGG16_WEIGHTS=<unset>" in entrypoint(["indexer"], stub_path).stdout


def test_entrypoint_reads_secrets_from_files(stub_path, tmp_path):
    key = tmp_path / "key"
    key.write_text("aWQ6c2VjcmV0\n")
    result = entrypoint(["indexer"], stub_path, ES_API_KEY_FILE=str(key))
    assert "ES_API_KEY=aWQ6c2VjcmV0\n" in result.stdout
    result = entrypoint(["indexer"], stub_path, ES_API_KEY_FILE=str(key), ES_API_KEY="given")
    assert "ES_API_KEY=given\n" in result.stdout
    missing = entrypoint(["indexer"], stub_path, ES_API_KEY_FILE=str(tmp_path / "nope"))
    assert missing.returncode == 2 and "ES_API_KEY_FILE" in missing.stderr


def test_entrypoint_loads_the_env_file_written_by_the_security_script(stub_path, tmp_path):
    env_file = tmp_path / "indexer.env"
    env_file.write_text(
        "# imgsearch_indexer_images (API key id abc)\nES_API_KEY=aWQ6a2V5\nMYSQL_URL=mysql://u:p@h/db"
    )
    result = entrypoint(["indexer"], stub_path, IMGSEARCH_ENV_FILE=str(env_file))
    assert "ES_API_KEY=aWQ6a2V5\n" in result.stdout and "MYSQL_URL=mysql://u:p@h/db\n" in result.stdout
    result = entrypoint(["indexer"], stub_path, IMGSEARCH_ENV_FILE=str(env_file), ES_API_KEY="set")
    assert "ES_API_KEY=set\n" in result.stdout
    env_file.write_text("not a variable line\n")
    bad = entrypoint(["indexer"], stub_path, IMGSEARCH_ENV_FILE=str(env_file))
    assert bad.returncode == 2 and "not a NAME=value line" in bad.stderr


# --- docker/healthcheck.py against a real local HTTP server ---------------------------------------


def load_healthcheck():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docker_healthcheck", DOCKER / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def health_server() -> Iterator[tuple[int, dict]]:
    state = {"status": 200, "body": b'{"status": "ok"}', "paths": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["paths"].append(self.path)
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(bind: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py")],
        env={**os.environ, "SEARCH_BIND": bind},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_healthcheck_passes_on_a_healthy_api(health_server):
    port, state = health_server
    result = run_healthcheck(f"0.0.0.0:{port}")
    assert result.returncode == 0, result.stderr
    assert state["paths"] == ["/health"]


def test_healthcheck_fails_on_errors_wrong_bodies_and_silence(health_server):
    port, state = health_server
    state["status"], state["body"] = 503, b'{"error": {}}'
    assert "answered 503" in run_healthcheck(f"0.0.0.0:{port}").stderr
    state["status"], state["body"] = 200, b'{"status": "starting"}'
    assert run_healthcheck(f"[::]:{port}").returncode == 1
    with socket_closed_port() as closed:
        assert run_healthcheck(f"0.0.0.0:{closed}").returncode == 1
    assert "not a TCP address" in run_healthcheck("unix:/tmp/api.sock").stderr


def socket_closed_port():
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed() -> Iterator[int]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield port

    return closed()


def test_health_url_from_gunicorn_binds():
    module = load_healthcheck()
    assert module.health_url("0.0.0.0:8000") == "http://127.0.0.1:8000/health"
    assert module.health_url("[::]:9000") == "http://127.0.0.1:9000/health"
    assert module.health_url("localhost") == "http://127.0.0.1:8000/health"
    with pytest.raises(ValueError):
        module.health_url("0.0.0.0:http")
