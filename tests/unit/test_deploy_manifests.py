"""Offline checks of deploy/kubernetes: the indexer's CronJobs and the search API's Deployment.

Runs deploy/validate.py (kubernetes-validate's strict schemas of 1.29, 1.31 and 1.37, the settings,
security, references, schedules read by croniter, and cross-file agreement) on the real files, shows that
it fails on broken copies of them, and checks the key properties once more by reading the YAML directly.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy import validate

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
INDEXER, API = KUBERNETES / "indexer-cronjobs.yaml", KUBERNETES / "searchapi.yaml"
WEIGHTS_IMAGE_REFERENCES = ("vgg16-weights.Dockerfile", "imgsearch-vgg16-weights", "initContainers")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def variant() -> list[dict[str, Any]]:
    return documents_of(validate.commented_variant(INDEXER.read_text()))


def documents_of(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def pods() -> dict[str, dict[str, Any]]:
    """Every pod spec: both CronJobs, the partitioned variant and the API Deployment."""
    result = {}
    for label, docs in (("indexer", documents(INDEXER)), ("variant", variant()), ("api", documents(API))):
        for doc in docs:
            pod = validate.workload_pods(doc)
            if pod is not None:
                result[f"{label}:{doc['metadata']['name']}"] = pod
    return result


def containers() -> dict[str, dict[str, Any]]:
    return {
        f"{name}/{container['name']}": container
        for name, pod in pods().items()
        for container in pod.get("containers", []) + pod.get("initContainers", [])
    }


def config_maps() -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: doc["data"]
        for path in (INDEXER, API)
        for doc in documents(path)
        if doc["kind"] == "ConfigMap"
    }


def run(paths: validate.Paths = validate.Paths()) -> list[str]:
    return validate.validate(paths, validate.Report(echo=None)).problems


# --- the validation on the real files --------------------------------------------------------------------


def test_validation_passes():
    report = validate.validate(report=validate.Report(echo=None))
    assert report.problems == []
    assert report.passed > 200


def test_command_line(capsys):
    assert validate.main([]) == 0
    out = capsys.readouterr().out
    assert "0 problem(s)" in out
    for version in ("1.29.0", "1.37.0"):
        assert (
            f"searchapi.yaml: Deployment/imgsearch-api valid against the Kubernetes {version} schema" in out
        )


# --- the validation fails on broken copies --------------------------------------------------------------

INCREMENTAL_CONTAINERS = "          containers:\n            - name: indexer\n"
API_KEY_FROM_SECRET = (
    "            - name: ES_API_KEY\n"
    "              valueFrom:\n"
    "                secretKeyRef: {name: imgsearch-api-secrets, key: ES_API_KEY}\n"
)
INDEXER_KEY_FROM_SECRET = (
    "                - name: ES_API_KEY\n"
    "                  valueFrom:\n"
    "                    secretKeyRef: {name: imgsearch-indexer-secrets, key: ES_API_KEY}\n"
)
FINGERPRINT = "AB:" * 31 + "AB"

BREAKAGES = {
    "weights init container": (
        INDEXER,
        INCREMENTAL_CONTAINERS,
        "          initContainers:\n"
        "            - name: vgg16-weights\n"
        "              image: registry.example.com/imgsearch-vgg16-weights:imagenet-notop\n"
        '              command: ["cp", "/vgg16/w.h5", "/tmp/"]\n' + INCREMENTAL_CONTAINERS,
        "no init containers",
    ),
    "volume over the baked weights": (
        API,
        "            - {name: tmp, mountPath: /tmp}\n",
        "            - {name: tmp, mountPath: /tmp}\n"
        "            - {name: tmp, mountPath: /opt/imgsearch/weights}\n",
        "nothing mounted over the baked weights",
    ),
    "weights path": (
        INDEXER,
        'VGG16_WEIGHTS: "/opt/imgsearch/weights/',
        'VGG16_WEIGHTS: "/weights/',
        "VGG16_WEIGHTS is the image's baked file",
    ),
    "API key as a literal": (
        API,
        API_KEY_FROM_SECRET,
        '            - {name: ES_API_KEY, value: "aWQ6a2V5"}\n',
        "ES_API_KEY from a Secret (secretKeyRef)",
    ),
    "indexer without a key": (INDEXER, INDEXER_KEY_FROM_SECRET, "", "ES_API_KEY is set"),
    "key missing from the placeholder": (
        INDEXER,
        '  ES_API_KEY: ""\n',
        "",
        "ES_API_KEY from Secret imgsearch-indexer-secrets key ES_API_KEY, which is in the file",
    ),
    "CA key missing from the Secret": (
        API,
        '  es-ca.crt: ""\n',
        '  ca.crt: ""\n',
        "ES_CA_CERTS comes from Secret imgsearch-api-secrets key es-ca.crt",
    ),
    "CA and fingerprint": (
        API,
        '  ES_INDEX: "images"\n',
        f'  ES_INDEX: "images"\n  ES_SSL_FINGERPRINT: "{FINGERPRINT}"\n',
        "either ES_CA_CERTS or ES_SSL_FINGERPRINT",
    ),
    "plain http": (API, 'ES_URL: "https://', 'ES_URL: "http://', "ES_URL is https"),
    "verification off": (
        INDEXER,
        '  ES_INDEX: "images"\n',
        '  ES_INDEX: "images"\n  ES_VERIFY_CERTS: "false"\n',
        "certificates are verified",
    ),
    "real value in a placeholder": (
        INDEXER,
        '  MYSQL_URL: ""',
        '  MYSQL_URL: "mysql://u:p@db:3306/shop"',
        "placeholder values are empty",
    ),
    "readiness on /health": (
        API,
        "httpGet: {path: /ready, port: http}",
        "httpGet: {path: /health, port: http}",
        "readinessProbe: GET /ready",
    ),
    "liveness on /ready": (
        API,
        "          livenessProbe:\n            httpGet: {path: /health, port: http}",
        "          livenessProbe:\n            httpGet: {path: /ready, port: http}",
        "livenessProbe: GET /health",
    ),
    "probe on another port": (
        API,
        "httpGet: {path: /ready, port: http}",
        "httpGet: {path: /ready, port: 9000}",
        "readinessProbe: on the container's port",
    ),
    "root user": (
        API,
        "        runAsUser: 10001\n",
        "        runAsUser: 0\n",
        "runs as the image's user 10001",
    ),
    "writable root filesystem": (
        INDEXER,
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
        "readOnlyRootFilesystem",
    ),
    "another image": (
        API,
        "image: registry.example.com/imgsearch-app:1.0.0",
        "image: registry.example.com/imgsearch-app:1.0.1",
        "every workload runs the same image",
    ),
    "undocumented variable": (
        API,
        '  SEARCH_THREADS: "8"\n',
        '  SEARCH_THREADS: "8"\n  SEARCH_THREAD: "8"\n',
        "every variable is in env.example",
    ),
    "second worker without memory": (
        API,
        'SEARCH_WORKERS: "1"',
        'SEARCH_WORKERS: "2"',
        "memory request 1536Mi holds 2 worker(s)",
    ),
    "other alias for the API": (
        API,
        '  ES_INDEX: "images"\n',
        '  ES_INDEX: "products"\n',
        "indexer and API agree on ES_INDEX",
    ),
    "service selects nothing": (
        API,
        "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: imgsearch\n"
        "    app.kubernetes.io/component: api\n",
        "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: imgsearch\n"
        "    app.kubernetes.io/component: web\n",
        "selects the API pods",
    ),
    "overlapping schedules": (
        INDEXER,
        '  schedule: "0 4 * * 0"',
        '  schedule: "30 3 * * 0"',
        "images-indexer-incremental (deadlines + lock TTL) never overlaps images-indexer-full",
    ),
    "bad cron expression": (INDEXER, '"15 2 * * *"', '"15 25 * * *"', "schedule '15 25 * * *' parses"),
    "seconds field in the schedule": (
        INDEXER,
        '"15 2 * * *"',
        '"0 15 2 * * *"',
        "schedule '0 15 2 * * *' parses: '0 15 2 * * *': expected 5 fields, got 6",
    ),
    "retried exit code": (INDEXER, "values: [2, 3, 4]", "values: [2, 3]", "fail the Job without retry"),
    "unknown field (schema)": (
        API,
        "            periodSeconds: 20\n",
        "            periodSecond: 20\n",
        "Deployment/imgsearch-api valid against the Kubernetes 1.29.0 schema",
    ),
    "wrong type (schema)": (
        INDEXER,
        "startingDeadlineSeconds: 900",
        'startingDeadlineSeconds: "soon"',
        "CronJob/images-indexer-incremental valid against the Kubernetes 1.29.0 schema",
    ),
    "unknown field (newest schema)": (
        API,
        "            periodSeconds: 20\n",
        "            periodSecond: 20\n",
        "Deployment/imgsearch-api valid against the Kubernetes 1.37.0 schema",
    ),
    "unknown field in the partitioned variant (schema)": (
        INDEXER,
        "#       completionMode: Indexed\n",
        "#       completionMode: Indexed\n#       completionModes: Indexed\n",
        "partitioned variant: CronJob/images-indexer-full [partitioned variant] valid against the Kubernetes",
    ),
}


def broken_copy(tmp_path: Path, edits: list[tuple[Path, str, str]]) -> validate.Paths:
    folder = tmp_path / "kubernetes"
    folder.mkdir()
    for path in (INDEXER, API):
        shutil.copy(path, folder / path.name)
    for path, old, new in edits:
        target = folder / path.name
        text = target.read_text()
        assert old in text, f"{old!r} is not in {path.name}: update the test"
        target.write_text(text.replace(old, new, 1))
    return validate.Paths(kubernetes=folder)


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_validation_fails_on(breakage, tmp_path):
    path, old, new, expected = BREAKAGES[breakage]
    problems = run(broken_copy(tmp_path, [(path, old, new)]))
    assert any(expected in problem for problem in problems), problems


def test_fingerprint_instead_of_ca_file_passes(tmp_path):
    """The documented alternative: ES_SSL_FINGERPRINT in both ConfigMaps instead of the CA file."""
    ca = 'ES_CA_CERTS: "/etc/imgsearch/es-tls/ca.crt"'
    fingerprint = f'ES_SSL_FINGERPRINT: "{FINGERPRINT}"'
    assert run(broken_copy(tmp_path, [(INDEXER, ca, fingerprint), (API, ca, fingerprint)])) == []


# --- the key properties, read straight from the YAML -------------------------------------------------------


def test_no_weights_image_or_init_container_left():
    assert not (KUBERNETES / "vgg16-weights.Dockerfile").exists()
    for name, pod in pods().items():
        assert not pod.get("initContainers"), name
        assert not [v for v in pod.get("volumes", []) if "weights" in v["name"]], name
    for path in (INDEXER, API):
        text = path.read_text()
        for reference in WEIGHTS_IMAGE_REFERENCES:
            assert reference not in text, f"{path.name} mentions {reference}"
    checked = [REPO / "README.md", REPO / "env.example", *REPO.glob("docs/*.md")]
    checked += [
        p for p in (REPO / "deploy").rglob("*") if p.is_file() and p.suffix in (".md", ".yaml", ".py")
    ]
    checked += [
        p for p in (REPO / "docker").rglob("*") if p.is_file() and p.suffix in ("", ".md", ".yaml", ".sh")
    ]
    for path in checked:
        if path.resolve() == Path(validate.__file__).resolve():
            continue
        for reference in WEIGHTS_IMAGE_REFERENCES[:2]:
            assert reference not in path.read_text(errors="replace"), f"{path} mentions {reference}"


def test_weights_are_the_images_baked_file():
    baked = re.search(r"IMGSEARCH_BAKED_WEIGHTS=(\S+)", (REPO / "docker" / "Dockerfile").read_text()).group(1)
    assert baked.endswith("/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert {data["VGG16_WEIGHTS"] for data in config_maps().values()} == {baked}


def test_es_api_key_from_a_secret_key_ref():
    secrets = {}
    for name, container in containers().items():
        env = {item["name"]: item for item in container.get("env", [])}
        ref = env["ES_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "ES_API_KEY", name
        secrets[name.split(":")[0]] = ref["name"]
        for variable in ("MYSQL_URL", "SEARCH_API_KEYS", "ES_API_KEY", "ES_PASSWORD"):
            assert all(variable not in data for data in config_maps().values()), variable
    assert secrets == {
        "indexer": "imgsearch-indexer-secrets",
        "variant": "imgsearch-indexer-secrets",
        "api": "imgsearch-api-secrets",
    }


def test_https_and_the_ca_from_the_secret():
    for name, data in config_maps().items():
        assert data["ES_URL"].startswith("https://"), name
        assert data["ES_CA_CERTS"] == "/etc/imgsearch/es-tls/ca.crt", name
    for name, pod in pods().items():
        volume = next(v for v in pod["volumes"] if v["name"] == "es-tls")
        assert volume["secret"]["items"] == [{"key": "es-ca.crt", "path": "ca.crt"}], name
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["es-tls"] == {"name": "es-tls", "mountPath": "/etc/imgsearch/es-tls", "readOnly": True}


def test_api_probes_and_command():
    (deployment,) = [doc for doc in documents(API) if doc["kind"] == "Deployment"]
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert api["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert "command" not in api and api["args"] == ["api"]
    data = config_maps()["imgsearch-api-config"]
    assert (data["SEARCH_WORKERS"], data["SEARCH_THREADS"], data["SEARCH_BIND"]) == ("1", "8", "0.0.0.0:8000")


def test_non_root_uid_10001():
    assert re.search(r"^USER 10001:10001$", (REPO / "docker" / "Dockerfile").read_text(), re.M)
    for name, pod in pods().items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (10001, 10001, 10001), (
            name
        )
    for name, container in containers().items():
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name


def test_same_image_in_all_workloads():
    images = {container["image"] for container in containers().values()}
    assert images == {"registry.example.com/imgsearch-app:1.0.0"}
    assert len(containers()) == 4  # incremental, full, the partitioned variant, the API


def test_every_variable_is_in_env_example():
    documented = validate.documented_variables(REPO / "env.example")
    used = {name for data in config_maps().values() for name in data}
    used |= {item["name"] for container in containers().values() for item in container.get("env", [])}
    assert {"ES_API_KEY", "ES_CA_CERTS", "MYSQL_URL", "SEARCH_THREADS"} <= used
    assert used - documented <= set(validate.RUNTIME_VARIABLES)
    # The exemptions are TensorFlow's and Keras's own variables, never the project's.
    project = re.compile(r"^(ES|SEARCH|INDEXER|IMAGE|MYSQL|VGG16|KIBANA|IMGSEARCH|PROMETHEUS)_")
    assert not [name for name in validate.RUNTIME_VARIABLES if project.match(name)]


def test_secrets_are_empty_placeholders():
    for path in (INDEXER, API):
        for secret in (doc for doc in documents(path) if doc["kind"] == "Secret"):
            assert secret["metadata"]["labels"]["imgsearch/placeholder"] == "true"
            assert set(secret["stringData"].values()) == {""}


# --- the schedules (croniter) and the schemas (kubernetes-validate) ------------------------------------


def test_cron_schedules():
    origin = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday
    until = datetime(2026, 2, 1, tzinfo=UTC)

    def runs(expression: str, count: int = 3) -> list[str]:
        return [f"{moment:%a %m-%d %H:%M}" for moment in validate.runs(expression, origin, until)][:count]

    assert runs("15 2 * * *") == ["Thu 01-01 02:15", "Fri 01-02 02:15", "Sat 01-03 02:15"]
    assert runs("0 4 * * 0") == ["Sun 01-04 04:00", "Sun 01-11 04:00", "Sun 01-18 04:00"]
    assert runs("@weekly", 1) == ["Sun 01-04 00:00"]
    assert runs("*/20 9-10 * * mon-fri", 4) == [
        "Thu 01-01 09:00",
        "Thu 01-01 09:20",
        "Thu 01-01 09:40",
        "Thu 01-01 10:00",
    ]
    # Both day fields restricted: either matches (the 10th, or any Monday).
    assert runs("0 0 10 * 1", 4) == [
        "Mon 01-05 00:00",
        "Sat 01-10 00:00",
        "Mon 01-12 00:00",
        "Mon 01-19 00:00",
    ]
    assert runs("0 0 * 3 *") == []  # no March in January
    for bad in (
        "15 2 * *",
        "60 * * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "0 0 * * 7",
        "*/0 * * * *",
        "5-1 * * * *",
        "0 15 2 * * *",  # croniter would read a sixth field as seconds; Kubernetes refuses it
        "0 0 31 2 *",  # never runs
    ):
        with pytest.raises(ValueError):
            validate.runs(bad, origin, until)
        assert validate.parse_problem(bad).startswith(": "), bad
    assert validate.parse_problem("15 2 * * *") == ""
    assert "expected 5 fields, got 4" in validate.parse_problem("15 2 * *")
    assert "out of range" in validate.parse_problem("15 25 * * *")


def test_schemas_are_strict():
    assert set(validate.KUBERNETES_VERSIONS) <= set(kubernetes_validate.utils.all_versions())
    (service,) = [doc for doc in documents(API) if doc["kind"] == "Service"]
    for version in validate.KUBERNETES_VERSIONS:
        assert validate.schema_error(service, version) is None
        assert "'extra' was unexpected" in validate.schema_error({**service, "extra": 1}, version)
        wrong_type = validate.schema_error({**service, "spec": {**service["spec"], "type": 3}}, version)
        assert wrong_type.startswith("spec.type: 3 is not of type 'string'"), wrong_type
        unknown = validate.schema_error(
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}}, version
        )
        assert unknown.startswith("Couldn't find schema for kind Widget"), unknown
