"""Offline checks of the deployment files in deploy/ (not part of the project's runtime).

    .venv/bin/python deploy/validate.py --vendored-schema-only   # what the unit tests run
    /tmp/kv/bin/python deploy/validate.py                         # the complete check

It reads deploy/kubernetes/indexer-cronjobs.yaml (with its commented partitioned variant),
deploy/kubernetes/searchapi.yaml and deploy/cron/imgsearch-indexer.cron, and checks:

- every manifest against the Kubernetes 1.29 schema (strict: unknown fields are errors), vendored in
  deploy/kubernetes/schemas/ so that the check needs nothing but jsonschema;
- what the schemas cannot: the settings the indexer and the API rely on, the security settings (non-root
  uid of the image, read-only root filesystem, ES_API_KEY from a Secret, https, the CA mounted from the
  Secret), the weights baked into the image, probes, resources, that every reference (ConfigMap, Secret,
  key, volume, port, selector) resolves, that every variable is documented in env.example, that both
  workloads run the same image against the same cluster, alias and weights;
- the cron expressions, and that neither schedule can start while a run of the other may still hold the
  indexer's lock.

The project's .venv has what this needs (PyYAML and jsonschema, pinned through requirements.txt). The
complete check adds kubernetes-validate (its schemas of 1.29, 1.31 and 1.37, and a check that the vendored
schema matches its own) and croniter (a second opinion on the cron expressions). They are deliberately not
in requirements.txt; use a throwaway virtualenv:

    python3 -m venv /tmp/kv && /tmp/kv/bin/pip install kubernetes-validate pyyaml croniter
    /tmp/kv/bin/python deploy/validate.py
    /tmp/kv/bin/python deploy/validate.py --write-schema   # after adding a kind: refresh the vendored schema
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import yaml

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
KUBERNETES_VERSIONS = ("1.29.0", "1.31.0", "1.37.0")
SCHEMA_VERSION = "1.29.0"
SCHEMA = DEPLOY / "kubernetes" / "schemas" / f"kubernetes-{SCHEMA_VERSION}-strict.json"
# The kinds the manifests use; the vendored schema holds these and the definitions they reference.
KINDS = (
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "CronJob"),
    ("policy/v1", "PodDisruptionBudget"),
)
NOT_RETRIED = {2, 3, 4}
LOCK_TTL = 600
BEGIN, END = "# --- BEGIN partitioned variant", "# --- END partitioned variant"
INDEXER_CRONJOBS = {"images-indexer-incremental", "images-indexer-full"}
# Variables read by TensorFlow and Keras, not by the project (so not in env.example).
RUNTIME_VARIABLES = {
    "KERAS_HOME": "Keras: config folder, on the writable /tmp",
    "TF_CPP_MIN_LOG_LEVEL": "TensorFlow: C++ log level",
    "TF_NUM_INTRAOP_THREADS": "TensorFlow: threads per operation, matched to the CPU limit",
    "TF_NUM_INTEROP_THREADS": "TensorFlow: operations run at once, matched to the CPU limit",
}
# Values that must come from a Secret (secretKeyRef), never from a ConfigMap or a literal.
SECRET_VARIABLES = {"ES_API_KEY", "ES_PASSWORD", "MYSQL_URL", "SEARCH_API_KEYS"}
# The admin login of deploy.elasticsearch.security: never given to the indexer or the API.
FORBIDDEN_VARIABLES = {"ES_ADMIN_API_KEY", "ES_ADMIN_USERNAME", "ES_ADMIN_PASSWORD"}
# Folders written at run time: on a read-only root filesystem they must lie on an emptyDir.
WRITABLE_VARIABLES = ("KERAS_HOME", "INDEXER_REPORT_DIR", "PROMETHEUS_MULTIPROC_DIR")
# Resident memory of the API (bench/results/search-latest.md): 1 worker x 8 threads 1229 MiB; every
# further worker holds another VGG16, about 770 MiB.
API_MIB_ONE_WORKER = 1229
API_MIB_PER_EXTRA_WORKER = 770


@dataclass(frozen=True)
class Paths:
    """The files checked, and the ones their facts come from (tests point `kubernetes` elsewhere)."""

    kubernetes: Path = DEPLOY / "kubernetes"
    crontab: Path = DEPLOY / "cron" / "imgsearch-indexer.cron"
    env_example: Path = REPO / "env.example"
    dockerfile: Path = REPO / "docker" / "Dockerfile"
    entrypoint: Path = REPO / "docker" / "entrypoint.sh"
    gunicorn_conf: Path = REPO / "searchapi" / "gunicorn.conf.py"
    schema: Path = SCHEMA

    @property
    def indexer(self) -> Path:
        return self.kubernetes / "indexer-cronjobs.yaml"

    @property
    def api(self) -> Path:
        return self.kubernetes / "searchapi.yaml"


@dataclass
class Report:
    """Collects the failed checks; prints every check when `echo` is set."""

    echo: Callable[[str], None] | None = print
    problems: list[str] = field(default_factory=list)
    passed: int = 0

    def check(self, condition: object, message: str) -> bool:
        if self.echo:
            self.echo(("ok    " if condition else "FAIL  ") + message)
        if condition:
            self.passed += 1
        else:
            self.problems.append(message)
        return bool(condition)

    def info(self, message: str) -> None:
        if self.echo:
            self.echo("      " + message)


# --- facts from the image and the project ------------------------------------------------------------


@dataclass(frozen=True)
class ImageFacts:
    """What docker/Dockerfile, docker/entrypoint.sh and searchapi/gunicorn.conf.py promise."""

    uid: int
    gid: int
    baked_weights: str
    port: int
    entry_commands: frozenset[str]
    healthcheck_start_seconds: int
    graceful_timeout: int


def image_facts(paths: Paths) -> ImageFacts:
    dockerfile = paths.dockerfile.read_text()
    user = re.findall(r"^USER\s+(\d+):(\d+)\s*$", dockerfile, re.M)
    weights = re.search(r"IMGSEARCH_BAKED_WEIGHTS=(\S+)", dockerfile)
    port = re.search(r"^EXPOSE\s+(\d+)", dockerfile, re.M)
    start = re.search(r"--start-period=(\d+)s", dockerfile)
    commands = re.findall(r"^\s+([a-z][a-z-]*)\)\s+exec\b", paths.entrypoint.read_text(), re.M)
    graceful = re.search(r"^graceful_timeout\s*=\s*(\d+)", paths.gunicorn_conf.read_text(), re.M)
    if not (user and weights and port and start and commands and graceful):
        raise SystemExit(f"cannot read the image's user, weights, port or entry commands from {paths}")
    return ImageFacts(
        uid=int(user[-1][0]),
        gid=int(user[-1][1]),
        baked_weights=weights.group(1),
        port=int(port.group(1)),
        entry_commands=frozenset(commands),
        healthcheck_start_seconds=int(start.group(1)),
        graceful_timeout=int(graceful.group(1)),
    )


def documented_variables(env_example: Path) -> set[str]:
    """Every NAME= in env.example, including the commented-out optional ones (# NAME=...)."""
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", env_example.read_text(), re.M)
    return set(names)


# --- cron expressions (the subset Kubernetes' CronJob controller accepts) -----------------------------

CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names for lowest.., whether "?" is allowed)
CRON_FIELDS = (
    ("minute", 0, 59, (), False),
    ("hour", 0, 23, (), False),
    ("day of month", 1, 31, (), True),
    ("month", 1, 12, MONTHS, False),
    ("day of week", 0, 6, DAYS, True),
)


@dataclass(frozen=True)
class Cron:
    """A parsed five-field expression, evaluated like robfig/cron (Kubernetes) and Vixie cron: when
    both day fields are restricted, a day matches either of them."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool
    weekdays_star: bool

    def matches(self, moment: datetime) -> bool:
        return moment.minute in self.minutes and moment.hour in self.hours and self.day_matches(moment)

    def day_matches(self, moment: datetime) -> bool:
        if moment.month not in self.months:
            return False
        day = moment.day in self.days
        weekday = (moment.weekday() + 1) % 7 in self.weekdays
        if self.days_star or self.weekdays_star:
            return day and weekday
        return day or weekday

    def runs(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Every start in (after, until], in order (UTC: no daylight-saving gaps)."""
        day = after.replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= until:
            if self.day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        moment = day.replace(hour=hour, minute=minute)
                        if after < moment <= until:
                            yield moment
            day += timedelta(days=1)


def parse_cron(expression: str) -> Cron:
    """Parse a standard five-field cron expression or a macro; ValueError says what is wrong."""
    text = CRON_MACROS.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) != len(CRON_FIELDS):
        raise ValueError(f"{expression!r}: expected 5 fields, got {len(fields)}")
    values = []
    stars = []
    for raw, (name, low, high, names, question) in zip(fields, CRON_FIELDS, strict=True):
        stars.append(raw == "*" or (question and raw == "?"))
        values.append(frozenset(parse_cron_field(raw, name, low, high, names, question)))
    return Cron(expression, *values, days_star=stars[2], weekdays_star=stars[4])


def parse_cron_field(
    raw: str, name: str, low: int, high: int, names: tuple[str, ...], question: bool
) -> set[int]:
    def number(token: str) -> int:
        if token.lower() in names:
            return names.index(token.lower()) + low
        if not token.isdigit():
            raise ValueError(f"{name}: {token!r} is not a number")
        value = int(token)
        if not low <= value <= high:
            raise ValueError(f"{name}: {value} is outside {low}-{high}")
        return value

    result: set[int] = set()
    for part in raw.split(","):
        span, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{name}: bad step {step_text!r}")
            step = int(step_text)
        if span == "*" or (question and span == "?"):
            start, end = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise ValueError(f"{name}: range {span!r} runs backwards")
        else:
            start = number(span)
            end = high if step_text else start
        result.update(range(start, end + 1, step))
    return result


def croniter_disagrees(expression: str, origin: datetime, count: int = 60) -> str | None:
    """With croniter installed: the first of `count` runs where it and parse_cron differ, else None."""
    try:
        from croniter import croniter
    except ImportError:
        return None
    theirs = croniter(expression, origin)
    ours = parse_cron(expression).runs(origin, origin + timedelta(days=30 * 366))
    for _ in range(count):
        mine, other = next(ours, None), theirs.get_next(datetime)
        if mine != other:
            return f"croniter says {other}, validate.py says {mine}"
    return None


# --- manifests ----------------------------------------------------------------------------------------


def commented_variant(text: str) -> str:
    """The partitioned variant, uncommented (the manifest after its prose, from the `# ---` line)."""
    lines = text[text.index(BEGIN) : text.index(END)].splitlines()
    lines = lines[lines.index("# ---") :]
    return "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines) + "\n"


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def workload_pods(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a CronJob or Deployment, else None."""
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if doc["kind"] == "Deployment":
        return doc["spec"]["template"]["spec"]
    return None


@dataclass
class Objects:
    """The ConfigMaps and Secrets of one file, by name (references must resolve inside the file)."""

    configmaps: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, documents: Iterable[dict[str, Any]]) -> Objects:
        docs = list(documents)
        return cls(
            configmaps={d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"},
            secrets={d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"},
        )

    def secret_keys(self, name: str) -> set[str]:
        secret = self.secrets.get(name, {})
        return set(secret.get("stringData") or {}) | set(secret.get("data") or {})


@dataclass(frozen=True)
class Setting:
    """One environment variable of a container: its value where literal, or where it comes from."""

    value: str | None
    source: str  # "configmap:<name>", "literal", "secret:<name>/<key>", "other"


def container_env(
    container: dict[str, Any], objects: Objects, label: str, report: Report
) -> dict[str, Setting]:
    env: dict[str, Setting] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            if report.check(name in objects.configmaps, f"{label}: envFrom ConfigMap {name} is in the file"):
                for key, value in objects.configmaps[name].items():
                    env[key] = Setting(str(value), f"configmap:{name}")
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            report.check(name in objects.secrets, f"{label}: envFrom Secret {name} is in the file")
            for key in objects.secret_keys(name):
                env[key] = Setting(None, f"envFrom-secret:{name}/{key}")
    for item in container.get("env", []):
        ref = item.get("valueFrom", {})
        if "value" in item:
            env[item["name"]] = Setting(str(item["value"]), "literal")
        elif "secretKeyRef" in ref:
            name, key = ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
            report.check(
                key in objects.secret_keys(name),
                f"{label}: {item['name']} from Secret {name} key {key}, which is in the file",
            )
            env[item["name"]] = Setting(None, f"secret:{name}/{key}")
        elif "configMapKeyRef" in ref:
            name, key = ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
            report.check(
                key in objects.configmaps.get(name, {}),
                f"{label}: {item['name']} from ConfigMap {name} key {key}, which is in the file",
            )
            env[item["name"]] = Setting(str(objects.configmaps.get(name, {}).get(key)), f"configmap:{name}")
        else:
            env[item["name"]] = Setting(None, "other")
    return env


def quantity(value: object) -> float:
    """A Kubernetes quantity (cpu or bytes) as a number: "2" -> 2, "500m" -> 0.5, "3Gi" -> 3 * 2**30."""
    text = str(value)
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def under(path: str, folder: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(folder))


@dataclass
class Workload:
    """What one container of one workload resolved to, for the cross-file checks."""

    label: str
    image: str
    env: dict[str, Setting]


def check_pod(
    label: str, pod: dict[str, Any], objects: Objects, facts: ImageFacts, known: set[str], report: Report
) -> list[Workload]:
    """Security, image, weights, TLS, credentials and environment of one pod spec."""
    context = pod.get("securityContext", {})
    check = report.check
    check(context.get("runAsNonRoot") is True, f"{label}: runAsNonRoot")
    check(
        (context.get("runAsUser"), context.get("runAsGroup"), context.get("fsGroup"))
        == (facts.uid, facts.gid, facts.gid),
        f"{label}: runs as the image's user {facts.uid}:{facts.gid} (fsGroup {facts.gid})",
    )
    check(
        context.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{label}: seccomp RuntimeDefault"
    )
    check(pod.get("automountServiceAccountToken") is False, f"{label}: no service-account token")
    check(
        not pod.get("initContainers"),
        f"{label}: no init containers (the image carries the VGG16 weights; no weights image)",
    )
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        check(not pod.get(key), f"{label}: no {key}")
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    workloads = []
    for container in pod["containers"]:
        name = f"{label}/{container['name']}"
        security = container.get("securityContext", {})
        check(security.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation false")
        check(security.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
        check(security.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: drops all capabilities")
        check(not security.get("privileged"), f"{name}: not privileged")
        check(security.get("runAsUser", facts.uid) == facts.uid, f"{name}: no other runAsUser")
        image = container.get("image", "")
        check(
            re.search(r":[\w.-]+$|@sha256:", image) and not image.endswith(":latest"),
            f"{name}: image {image} pinned",
        )

        mounts = {mount["mountPath"]: mount for mount in container.get("volumeMounts", [])}
        for mount in mounts.values():
            check(mount["name"] in volumes, f"{name}: volume {mount['name']} exists")
            check(
                not under(facts.baked_weights, mount["mountPath"]),
                f"{name}: nothing mounted over the baked weights ({mount['mountPath']})",
            )
        empty_dirs = [path for path, mount in mounts.items() if "emptyDir" in volumes.get(mount["name"], {})]
        check("/tmp" in empty_dirs, f"{name}: /tmp is an emptyDir (the root filesystem is read-only)")

        resources = container.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        if check(
            {"cpu", "memory"} <= set(requests) <= set(limits), f"{name}: cpu and memory requests and limits"
        ):
            check(
                all(quantity(requests[key]) <= quantity(limits[key]) for key in requests),
                f"{name}: requests <= limits",
            )

        env = container_env(container, objects, name, report)
        undocumented = sorted(set(env) - known - set(RUNTIME_VARIABLES))
        check(
            not undocumented,
            f"{name}: every variable is in env.example" + (f": not {undocumented}" if undocumented else ""),
        )
        check(not FORBIDDEN_VARIABLES & set(env), f"{name}: no admin login (ES_ADMIN_*)")
        for variable in sorted(SECRET_VARIABLES & set(env)):
            check(
                env[variable].source.startswith("secret:"),
                f"{name}: {variable} from a Secret (secretKeyRef), got {env[variable].source}",
            )
        check("ES_API_KEY" in env, f"{name}: ES_API_KEY is set (security on)")
        url = env.get("ES_URL", Setting("", "")).value or ""
        check(url.startswith("https://"), f"{name}: ES_URL is https ({url})")
        check("@" not in url.split("//", 1)[-1].split("/", 1)[0], f"{name}: no credentials in ES_URL")
        check(
            (env.get("ES_VERIFY_CERTS", Setting("true", "")).value or "true").lower()
            not in ("0", "false", "no", "off"),
            f"{name}: certificates are verified",
        )
        check_tls(name, env, mounts, volumes, objects, report)
        weights = env.get("VGG16_WEIGHTS", Setting(None, "")).value
        check(
            weights == facts.baked_weights,
            f"{name}: VGG16_WEIGHTS is the image's baked file {facts.baked_weights}"
            + ("" if weights == facts.baked_weights else f", not {weights}"),
        )
        for variable in WRITABLE_VARIABLES:
            folder = env.get(variable, Setting(None, "")).value
            if folder is not None:
                check(
                    any(under(folder, path) for path in empty_dirs),
                    f"{name}: {variable}={folder} lies on an emptyDir",
                )
        cpu_limit = limits.get("cpu")
        for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            threads = env.get(variable, Setting(None, "")).value
            check(
                threads is not None and cpu_limit is not None and float(threads) == quantity(cpu_limit),
                f"{name}: {variable} ({threads}) matches the CPU limit ({cpu_limit})",
            )
        workloads.append(Workload(name, image, env))
    return workloads


def check_tls(
    name: str,
    env: dict[str, Setting],
    mounts: dict[str, dict[str, Any]],
    volumes: dict[str, dict[str, Any]],
    objects: Objects,
    report: Report,
) -> None:
    """ES_CA_CERTS is a file mounted from a Secret key in the file, or ES_SSL_FINGERPRINT pins one."""
    ca = env.get("ES_CA_CERTS", Setting(None, "")).value or ""
    fingerprint = env.get("ES_SSL_FINGERPRINT", Setting(None, "")).value or ""
    if not report.check(bool(ca) != bool(fingerprint), f"{name}: either ES_CA_CERTS or ES_SSL_FINGERPRINT"):
        return
    if fingerprint:
        report.check(
            re.fullmatch(r"[0-9a-f]{64}", fingerprint.replace(":", "").lower()),
            f"{name}: ES_SSL_FINGERPRINT is a SHA-256 (64 hex digits)",
        )
        return
    folder, filename = str(PurePosixPath(ca).parent), PurePosixPath(ca).name
    mount = mounts.get(folder)
    secret = volumes.get(mount["name"], {}).get("secret") if mount else None
    if not report.check(secret, f"{name}: ES_CA_CERTS {ca} lies in a mounted Secret volume"):
        return
    items = {item["path"]: item["key"] for item in secret.get("items", [])} or {
        key: key for key in objects.secret_keys(secret["secretName"])
    }
    key = items.get(filename)
    report.check(
        key is not None and key in objects.secret_keys(secret["secretName"]),
        f"{name}: ES_CA_CERTS comes from Secret {secret['secretName']} key {key}, which is in the file",
    )


def check_placeholders(label: str, documents: list[dict[str, Any]], report: Report) -> None:
    for secret in (doc for doc in documents if doc["kind"] == "Secret"):
        name = f"{label}: Secret {secret['metadata']['name']}"
        report.check(
            secret["metadata"].get("labels", {}).get("imgsearch/placeholder") == "true",
            f"{name} is labelled imgsearch/placeholder=true (-l 'imgsearch/placeholder!=true' skips it)",
        )
        values = {**(secret.get("stringData") or {}), **(secret.get("data") or {})}
        report.check(
            all(value in ("", None) for value in values.values()), f"{name}: placeholder values are empty"
        )


# --- the indexer's CronJobs ---------------------------------------------------------------------------


def check_cronjob(cronjob: dict[str, Any], report: Report) -> None:
    check = report.check
    name = cronjob["metadata"]["name"]
    spec = cronjob["spec"]
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    indexer = containers.get("indexer")
    try:
        parse_cron(spec["schedule"])
        parsed = ""
    except ValueError as exc:
        parsed = f": {exc}"
    check(not parsed, f"{name}: schedule {spec['schedule']!r} parses{parsed}")
    check(spec.get("timeZone") == "Etc/UTC", f"{name}: timeZone Etc/UTC")
    check(spec.get("concurrencyPolicy") == "Forbid", f"{name}: concurrencyPolicy Forbid")
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        check(key in spec, f"{name}: {key} set")
    for key in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        check(key in job, f"{name}: {key} set")
    check(1 <= job.get("backoffLimit", 6) <= 4, f"{name}: small backoffLimit ({job.get('backoffLimit')})")
    check(pod.get("restartPolicy") == "Never", f"{name}: restartPolicy Never (required by podFailurePolicy)")
    rules = job.get("podFailurePolicy", {}).get("rules", [])
    fail_codes = {
        code
        for rule in rules
        if rule["action"] == "FailJob" and rule.get("onExitCodes", {}).get("operator") == "In"
        for code in rule["onExitCodes"]["values"]
    }
    check(fail_codes == NOT_RETRIED, f"{name}: exit codes {sorted(fail_codes)} fail the Job without retry")
    for rule in rules:
        container = rule.get("onExitCodes", {}).get("containerName")
        if container:
            check(container in containers, f"{name}: podFailurePolicy names container {container!r}")
    if not check(indexer is not None, f"{name}: has a container named indexer"):
        return
    command = indexer.get("command", []) + indexer.get("args", [])
    mode = "incremental" if "incremental" in name else "full"
    check(command[:4] == ["python", "-m", "indexer", mode], f"{name}: runs python -m indexer {mode}")
    check("--no-progress" in command, f"{name}: --no-progress")
    if job.get("completionMode") == "Indexed":
        partition = f"$(JOB_COMPLETION_INDEX)/{job['completions']}"
        check(partition in command, f"{name}: --partition {partition} matches completions")
        check(job.get("parallelism") == job["completions"], f"{name}: parallelism == completions")


def latest_end(cronjob: dict[str, Any], start: datetime) -> datetime:
    """When a run started at `start` has stopped for sure and its lock has expired."""
    spec = cronjob["spec"]
    job = spec["jobTemplate"]["spec"]
    seconds = spec["startingDeadlineSeconds"] + job["activeDeadlineSeconds"] + LOCK_TTL
    return start + timedelta(seconds=seconds)


def check_no_overlap(first: dict[str, Any], second: dict[str, Any], report: Report, days: int = 35) -> None:
    """No run of `first` can still hold the lock when a run of `second` is due (over `days` days)."""
    label = f"{first['metadata']['name']} (deadlines + lock TTL) never overlaps {second['metadata']['name']}"
    try:
        first_cron, second_cron = (
            parse_cron(first["spec"]["schedule"]),
            parse_cron(second["spec"]["schedule"]),
        )
    except ValueError as exc:
        report.check(False, f"{label}: {exc}")
        return
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    until = origin + timedelta(days=days)
    others = list(second_cron.runs(origin, until + timedelta(days=7)))
    clashes = [
        (start, other)
        for start in first_cron.runs(origin, until)
        for other in others
        if start <= other < latest_end(first, start)
    ]
    report.check(
        not clashes, label + (f": {clashes[0][0]} runs until past {clashes[0][1]}" if clashes else "")
    )


def check_indexer(
    documents: list[dict[str, Any]],
    variant: list[dict[str, Any]],
    facts: ImageFacts,
    known: set[str],
    report: Report,
) -> list[Workload]:
    objects = Objects.of(documents)
    cronjobs = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "CronJob"}
    report.check(set(cronjobs) == INDEXER_CRONJOBS, "indexer: the two CronJobs are defined")
    report.check(
        len(variant) == 1 and variant[0]["kind"] == "CronJob", "indexer: one commented partitioned variant"
    )
    check_placeholders("indexer", documents, report)
    workloads = []
    for cronjob in [*cronjobs.values(), *variant]:
        check_cronjob(cronjob, report)
        workloads += check_pod(
            cronjob["metadata"]["name"], workload_pods(cronjob), objects, facts, known, report
        )
    if set(cronjobs) == INDEXER_CRONJOBS:
        incremental, full = cronjobs["images-indexer-incremental"], cronjobs["images-indexer-full"]
        pairs = [(incremental, full), (full, incremental)] + [(each, incremental) for each in variant]
        for first, second in pairs:
            check_no_overlap(first, second, report)
    return workloads


# --- the search API -----------------------------------------------------------------------------------


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def check_probe(
    name: str, probe: dict[str, Any] | None, path: str, ports: set[object], report: Report
) -> dict[str, Any]:
    get = (probe or {}).get("httpGet", {})
    got = "" if get.get("path") == path else f", not {get.get('path')}"
    report.check(get.get("path") == path, f"{name}: GET {path}{got}")
    report.check(get.get("port") in ports, f"{name}: on the container's port ({get.get('port')})")
    return probe or {}


def check_api(
    documents: list[dict[str, Any]], facts: ImageFacts, known: set[str], report: Report
) -> list[Workload]:
    check = report.check
    objects = Objects.of(documents)
    check_placeholders("api", documents, report)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in documents:
        by_kind.setdefault(doc["kind"], []).append(doc)
    deployments, services = by_kind.get("Deployment", []), by_kind.get("Service", [])
    if not check(len(deployments) == 1 and len(services) == 1, "api: one Deployment and one Service"):
        return []
    deployment, service = deployments[0], services[0]
    name = deployment["metadata"]["name"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    check(
        selects(spec["selector"].get("matchLabels", {}), labels), f"{name}: selector matches the pod labels"
    )
    replicas = spec.get("replicas", 1)
    check(replicas >= 2, f"{name}: at least 2 replicas ({replicas})")
    rolling = spec.get("strategy", {}).get("rollingUpdate", {})
    check(
        spec.get("strategy", {}).get("type", "RollingUpdate") == "RollingUpdate"
        and rolling.get("maxUnavailable") == 0
        and rolling.get("maxSurge", 0) not in (0, "0%"),
        f"{name}: rolling update adds a pod before removing one (maxUnavailable 0)",
    )
    workloads = check_pod(name, pod, objects, facts, known, report)
    containers = {c["name"]: c for c in pod["containers"]}
    api = containers.get("api")
    if not check(api is not None and len(containers) == 1, f"{name}: one container, named api"):
        return workloads
    env = workloads[0].env
    check(
        "command" not in api and api.get("args", [""])[0] == "api" and "api" in facts.entry_commands,
        f"{name}: the image's entry point with its `api` command (args {api.get('args')})",
    )
    port_numbers = {port["containerPort"] for port in api.get("ports", [])}
    port_names = {port.get("name") for port in api.get("ports", [])} - {None}
    bind = env.get("SEARCH_BIND", Setting("", "")).value or ""
    check(
        port_numbers == {facts.port} and bind.rsplit(":", 1)[-1] == str(facts.port),
        f"{name}: containerPort, SEARCH_BIND ({bind}) and the image's EXPOSE agree on {facts.port}",
    )
    ports = port_numbers | port_names
    ready = check_probe(f"{name}: readinessProbe", api.get("readinessProbe"), "/ready", ports, report)
    check_probe(f"{name}: livenessProbe", api.get("livenessProbe"), "/health", ports, report)
    startup = api.get("startupProbe")
    if startup:
        check_probe(f"{name}: startupProbe", startup, "/health", ports, report)
    window = (startup or {}).get("periodSeconds", 10) * (startup or {}).get("failureThreshold", 3)
    window += (startup or api.get("livenessProbe", {})).get("initialDelaySeconds", 0)
    check(
        window >= facts.healthcheck_start_seconds,
        f"{name}: {window} s to load and warm the model before liveness counts "
        f"(the image's HEALTHCHECK allows {facts.healthcheck_start_seconds} s)",
    )
    es_timeout = float(env.get("SEARCH_ES_TIMEOUT", Setting("5", "")).value or 5)
    check(
        ready.get("timeoutSeconds", 1) > es_timeout,
        f"{name}: readiness timeout {ready.get('timeoutSeconds', 1)} s > SEARCH_ES_TIMEOUT {es_timeout:g} s",
    )
    workers = int(env.get("SEARCH_WORKERS", Setting("1", "")).value or 1)
    check(
        "SEARCH_THREADS" in env and "SEARCH_WORKERS" in env,
        f"{name}: SEARCH_WORKERS and SEARCH_THREADS set (gunicorn.conf.py)",
    )
    requests = api.get("resources", {}).get("requests", {})
    needed = API_MIB_ONE_WORKER + API_MIB_PER_EXTRA_WORKER * (workers - 1)
    check(
        quantity(requests.get("memory", 0)) >= needed * 2**20,
        f"{name}: memory request {requests.get('memory')} holds {workers} worker(s) (>= {needed} MiB)",
    )
    multiproc = "PROMETHEUS_MULTIPROC_DIR" in env
    check(
        multiproc == (workers > 1),
        f"{name}: PROMETHEUS_MULTIPROC_DIR set exactly when SEARCH_WORKERS > 1 ({workers})",
    )
    pre_stop = api.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    delay = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] and len(pre_stop) == 2 else 0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(
        grace > delay + facts.graceful_timeout,
        f"{name}: terminationGracePeriodSeconds {grace} > preStop {delay} s + gunicorn graceful_timeout "
        f"{facts.graceful_timeout} s",
    )
    check(
        selects(service["spec"].get("selector", {}), labels),
        f"service {service['metadata']['name']}: selects the API pods",
    )
    for port in service["spec"].get("ports", []):
        check(
            port.get("targetPort", port["port"]) in ports,
            f"service {service['metadata']['name']}: targetPort {port.get('targetPort')} is the API's port",
        )
    for budget in by_kind.get("PodDisruptionBudget", []):
        budget_name = f"pdb {budget['metadata']['name']}"
        check(
            selects(budget["spec"].get("selector", {}).get("matchLabels", {}), labels),
            f"{budget_name}: selects the API pods",
        )
        allowed = budget["spec"].get("maxUnavailable")
        if allowed is None:
            allowed = replicas - int(budget["spec"].get("minAvailable", replicas))
        check(
            isinstance(allowed, int) and 0 < allowed < replicas,
            f"{budget_name}: lets a drain evict a pod, never all {replicas}",
        )
    return workloads


# --- schemas ------------------------------------------------------------------------------------------


def kind_stem(api_version: str, kind: str) -> str:
    """kubernetes-validate's file stem: ("batch/v1", "CronJob") -> "cronjob-batch-v1"."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}"


def build_schema() -> dict[str, Any]:
    """The vendored schema, from kubernetes-validate's bundled strict schemas of SCHEMA_VERSION."""
    import importlib.metadata
    import importlib.resources

    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    folder = folder / f"v{SCHEMA_VERSION}-local-strict"
    definitions = json.loads((folder / "_definitions.json").read_text())["$defs"]
    prefix = "/api/_definitions.json#/$defs/"

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            result = {}
            for key, value in node.items():
                if key in ("description", "$schema", "$id"):
                    continue
                if key == "$ref":
                    value = value.removeprefix(prefix.removesuffix("#/$defs/"))
                    if not value.startswith("#/$defs/"):
                        raise SystemExit(f"unexpected $ref {value}")
                result[key] = clean(value)
            return result
        if isinstance(node, list):
            return [clean(item) for item in node]
        return node

    kinds = {f"{api_version} {kind}": kind_stem(api_version, kind) for api_version, kind in KINDS}
    defs: dict[str, Any] = {
        stem: clean(json.loads((folder / f"{stem}.json").read_text())) for stem in kinds.values()
    }
    pending = list(defs.values())
    while pending:
        for name in re.findall(r'"#/\$defs/([^"]+)"', json.dumps(pending.pop())):
            if name not in defs:
                defs[name] = clean(definitions[name])
                pending.append(defs[name])
    version = importlib.metadata.version("kubernetes-validate")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Generated by `python deploy/validate.py --write-schema` from kubernetes-validate {version} "
            f"(v{SCHEMA_VERSION}-local-strict): the kinds of deploy/kubernetes and every definition they "
            "reference, descriptions removed. Do not edit; regenerate."
        ),
        "kinds": kinds,
        "$defs": dict(sorted(defs.items())),
    }


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


def schema_errors(schema: dict[str, Any], doc: dict[str, Any], limit: int = 5) -> list[str]:
    stem = schema["kinds"].get(f"{doc.get('apiVersion')} {doc.get('kind')}")
    if stem is None:
        return [
            f"kind {doc.get('apiVersion')} {doc.get('kind')} is not in the vendored schema (--write-schema)"
        ]
    validator = jsonschema.Draft202012Validator({"$ref": f"#/$defs/{stem}", "$defs": schema["$defs"]})
    errors = sorted(validator.iter_errors(doc), key=lambda error: list(error.absolute_path))
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message[:300]}"
        for error in errors[:limit]
    ]


def check_vendored_schema(paths: Paths, files: dict[str, list[dict[str, Any]]], report: Report) -> None:
    schema = json.loads(paths.schema.read_text())
    for label, documents in files.items():
        for doc in documents:
            errors = schema_errors(schema, doc)
            name = f"{label}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            report.check(
                not errors,
                f"{name} valid against the Kubernetes {SCHEMA_VERSION} schema (strict)"
                + "".join(f"\n        {e}" for e in errors),
            )


def kubernetes_validate(path: Path, label: str, report: Report) -> None:
    tool = Path(sys.executable).with_name("kubernetes-validate")
    for version in KUBERNETES_VERSIONS:
        result = subprocess.run(
            [str(tool), "--strict", "-k", version, str(path)], capture_output=True, text=True, check=False
        )
        report.info(result.stdout.rstrip().replace("\n", "\n      "))
        report.check(result.returncode == 0, f"{label}: kubernetes-validate --strict -k {version}")


# --- the host crontab ---------------------------------------------------------------------------------


def check_crontab(crontab: Path, report: Report) -> None:
    entries = []
    text = crontab.read_text()
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" in stripped.split()[0]:
            report.info(f"line {number}: variable {stripped.split('=')[0]}")
            continue
        fields = stripped.split(None, 6)
        schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
        entries.append(schedule)
        try:
            cron = parse_cron(schedule)
        except ValueError as exc:
            report.check(False, f"crontab line {number}: {schedule!r} parses: {exc}")
            continue
        report.check(True, f"crontab line {number}: {schedule!r} parses (user {user})")
        report.check("%" not in command, f"crontab line {number}: no unescaped % in the command")
        for needle in (
            "cd /opt/imgsearch &&",
            ". /etc/imgsearch/indexer.env",
            "flock -n",
            ">>",
            "--no-progress",
        ):
            report.check(needle in command, f"crontab line {number}: has {needle!r}")
        origin = datetime(2026, 1, 1, tzinfo=UTC)
        runs = cron.runs(origin, origin + timedelta(days=400))
        report.info(
            f"next runs of {schedule!r}: " + ", ".join(f"{next(runs):%a %Y-%m-%d %H:%M}" for _ in range(3))
        )
    report.check(len(entries) == 2, "crontab has the incremental and the full line")
    report.check(any(line.startswith("MAILTO=") for line in text.splitlines()), "crontab sets MAILTO")


# --- everything ---------------------------------------------------------------------------------------


def guarded(report: Report, label: str, checks: Callable[..., list[Workload]], *args: Any) -> list[Workload]:
    """Run `checks`; a manifest too broken for them (a schema error: a missing field, a wrong type) is one
    more problem instead of a traceback."""
    try:
        return checks(*args)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        report.check(False, f"{label}: checks stopped at {type(exc).__name__}: {exc} (see the schema errors)")
        return []


def validate(paths: Paths = Paths(), report: Report | None = None, full: bool = False) -> Report:
    """Every check. `full` adds kubernetes-validate (three versions; is the vendored schema current?) and
    croniter (a second parser of the schedules)."""
    report = report if report is not None else Report()
    facts = image_facts(paths)
    known = documented_variables(paths.env_example)
    indexer_text, api_text = paths.indexer.read_text(), paths.api.read_text()
    indexer_docs, api_docs = load_documents(indexer_text), load_documents(api_text)
    variant = load_documents(commented_variant(indexer_text))
    for doc in variant:
        doc["metadata"]["name"] += " [partitioned variant]"
    files = {paths.indexer.name: indexer_docs, "partitioned variant": variant, paths.api.name: api_docs}
    for label, documents in files.items():
        report.info(f"{label}: " + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in documents))

    check_vendored_schema(paths, files, report)
    if full:
        kubernetes_validate(paths.indexer, paths.indexer.name, report)
        kubernetes_validate(paths.api, paths.api.name, report)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="partitioned-") as handle:
            handle.write(commented_variant(indexer_text))
            handle.flush()
            kubernetes_validate(Path(handle.name), "partitioned variant", report)
        report.check(
            paths.schema.read_text() == schema_text(build_schema()),
            f"{paths.schema.name} matches kubernetes-validate's schema (else run --write-schema)",
        )

    indexer = guarded(report, paths.indexer.name, check_indexer, indexer_docs, variant, facts, known, report)
    api = guarded(report, paths.api.name, check_api, api_docs, facts, known, report)

    # Across the workloads: one image, one cluster, one alias, one model; each component its own key.
    workloads = indexer + api
    images = {workload.image for workload in workloads}
    report.check(len(images) == 1, f"every workload runs the same image ({', '.join(sorted(images))})")
    for variable in (
        "ES_URL",
        "ES_INDEX",
        "ES_CA_CERTS",
        "ES_SSL_FINGERPRINT",
        "VGG16_WEIGHTS",
        "VGG16_SEED",
    ):
        values = {workload.env.get(variable, Setting(None, "")).value for workload in workloads}
        report.check(len(values) == 1, f"indexer and API agree on {variable} ({', '.join(map(str, values))})")
    if indexer and api:
        keys = {w.env.get("ES_API_KEY", Setting(None, "")).source.split("/")[0] for w in (indexer[0], api[0])}
        report.check(
            len(keys) == 2,
            f"indexer and API use different Secrets for ES_API_KEY ({', '.join(sorted(keys))})",
        )

    check_crontab(paths.crontab, report)
    if full:
        origin = datetime(2026, 1, 1, tzinfo=UTC)
        for doc in [*indexer_docs, *variant]:
            if doc["kind"] == "CronJob":
                disagreement = croniter_disagrees(doc["spec"]["schedule"], origin)
                report.check(
                    disagreement is None,
                    f"croniter agrees on {doc['spec']['schedule']!r}: {disagreement or 'yes'}",
                )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--vendored-schema-only",
        action="store_true",
        help="skip kubernetes-validate and croniter (the checks the project's .venv can run)",
    )
    parser.add_argument("--write-schema", action="store_true", help=f"regenerate {SCHEMA.relative_to(REPO)}")
    args = parser.parse_args(argv)
    if args.write_schema:
        SCHEMA.parent.mkdir(parents=True, exist_ok=True)
        SCHEMA.write_text(schema_text(build_schema()))
        print(f"wrote {SCHEMA.relative_to(REPO)}")
        return 0
    full = not args.vendored_schema_only
    if full:
        try:
            import croniter  # noqa: F401
            import kubernetes_validate  # noqa: F401
        except ImportError as exc:
            print(f"{exc.name} is not installed: see this file's docstring, or use --vendored-schema-only")
            return 2
    report = validate(full=full)
    print(f"\n{report.passed} checks passed, {len(report.problems)} problem(s)")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
