"""Offline checks of deploy/kubernetes/*.yaml and deploy/cron/imgsearch-indexer.cron: this project's rules.

    .venv/bin/python deploy/validate.py    # exit status 0 when every check passes, 1 when one fails

Schemas: kubernetes-validate (strict); cron expressions: croniter. deploy/README.md lists the rules.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import yaml
from croniter import croniter

Doc = dict[str, Any]
DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
# The oldest Kubernetes the manifests support (podFailurePolicy, timeZone) and newer ones the wheel ships.
KUBERNETES_VERSIONS = ("1.29.0", "1.31.0", "1.37.0")
NOT_RETRIED = {2, 3, 4}
LOCK_TTL = 600
ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
BEGIN, END = "# --- BEGIN partitioned variant", "# --- END partitioned variant"
INDEXER_CRONJOBS = {"images-indexer-incremental", "images-indexer-full"}
# Read by TensorFlow and Keras, not by the project (so not in env.example).
RUNTIME_VARIABLES = {"KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"}
# From a Secret (secretKeyRef) only; the admin login of deploy.elasticsearch.security never.
SECRET_VARIABLES = {"ES_API_KEY", "ES_PASSWORD", "MYSQL_URL", "SEARCH_API_KEYS"}
FORBIDDEN_VARIABLES = {"ES_ADMIN_API_KEY", "ES_ADMIN_USERNAME", "ES_ADMIN_PASSWORD"}
# Folders written at run time: on a read-only root filesystem they must lie on an emptyDir.
WRITABLE_VARIABLES = ("KERAS_HOME", "INDEXER_REPORT_DIR", "PROMETHEUS_MULTIPROC_DIR")
# The indexer and the API talk to one cluster and alias with one model.
SHARED_VARIABLES = ("ES_URL", "ES_INDEX", "ES_CA_CERTS", "ES_SSL_FINGERPRINT", "VGG16_WEIGHTS", "VGG16_SEED")
CRONTAB_NEEDLES = ("cd /opt/imgsearch &&", ". /etc/imgsearch/indexer.env", "flock -n", ">>", "--no-progress")
# Resident memory of the API (bench/results/search-latest.md): 1 worker x 8 threads 1229 MiB; every
# further worker holds another VGG16, about 770 MiB.
API_MIB_ONE_WORKER, API_MIB_PER_EXTRA_WORKER = 1229, 770
# (path, required value, what the check says) in each pod spec, container and CronJob.
POD_RULES = (
    ("securityContext.runAsNonRoot", True, "runAsNonRoot"),
    ("securityContext.seccompProfile.type", "RuntimeDefault", "seccomp RuntimeDefault"),
    ("automountServiceAccountToken", False, "no service-account token"),
)
CONTAINER_RULES = (
    ("securityContext.allowPrivilegeEscalation", False, "allowPrivilegeEscalation false"),
    ("securityContext.readOnlyRootFilesystem", True, "readOnlyRootFilesystem"),
    ("securityContext.capabilities.drop", ["ALL"], "drops all capabilities"),
)
CRONJOB_RULES = (
    ("spec.timeZone", "Etc/UTC", "timeZone Etc/UTC"),
    ("spec.concurrencyPolicy", "Forbid", "concurrencyPolicy Forbid"),
    ("spec.jobTemplate.spec.template.spec.restartPolicy", "Never", "restartPolicy Never (podFailurePolicy)"),
)
CRONJOB_REQUIRED = (
    "spec.startingDeadlineSeconds",
    "spec.successfulJobsHistoryLimit",
    "spec.failedJobsHistoryLimit",
    "spec.jobTemplate.spec.activeDeadlineSeconds",
    "spec.jobTemplate.spec.ttlSecondsAfterFinished",
)


@dataclass(frozen=True)
class Paths:
    """The files checked, and the ones their facts come from (tests point `kubernetes` elsewhere)."""

    kubernetes: Path = DEPLOY / "kubernetes"
    crontab: Path = DEPLOY / "cron" / "imgsearch-indexer.cron"
    env_example: Path = REPO / "env.example"
    dockerfile: Path = REPO / "docker" / "Dockerfile"
    entrypoint: Path = REPO / "docker" / "entrypoint.sh"
    gunicorn_conf: Path = REPO / "searchapi" / "gunicorn.conf.py"

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

    def expect(self, label: str, doc: Doc, rules: Iterable[tuple[str, object, str]]) -> None:
        for path, wanted, message in rules:
            self.check(dig(doc, path) == wanted, f"{label}: {message}")


def dig(doc: Any, path: str, default: Any = None) -> Any:
    """doc["a"]["b"] for "a.b", else `default`."""
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return default
        doc = doc[key]
    return doc


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
    numbers = (*map(int, user[-1]), weights[1], int(port[1]), frozenset(commands), int(start[1]))
    return ImageFacts(*numbers, graceful_timeout=int(graceful[1]))


def documented_variables(env_example: Path) -> set[str]:
    """Every NAME= in env.example, including the commented-out optional ones (# NAME=...)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", env_example.read_text(), re.M))


# --- schemas (kubernetes-validate) and schedules (croniter) -------------------------------------------


def schema_error(doc: Doc, version: str) -> str | None:
    """kubernetes-validate's strict verdict on one document: None, or what is wrong."""
    return _schema_error(json.dumps(doc, sort_keys=True, default=str), version)


@cache
def _schema_error(document: str, version: str) -> str | None:
    try:
        used = kubernetes_validate.validate(json.loads(document), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message[:300]}"
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as error:
        return error.message
    wanted = version.rsplit(".", 1)[0]
    return None if used == wanted else f"kubernetes-validate ships no {wanted} schema (it used {used})"


def schedule(expression: str, start: datetime = ORIGIN) -> croniter:
    """croniter over `expression`. ValueError, also for what croniter accepts but Kubernetes' CronJob
    controller refuses: not five fields (croniter reads six as seconds), a backward range, weekday 7."""
    fields = expression.split()
    if not expression.startswith("@"):
        if len(fields) != 5:
            raise ValueError(f"{expression!r}: expected 5 fields, got {len(fields)}")
        if any(int(low) > int(high) for low, high in re.findall(r"(\d+)-(\d+)", expression)):
            raise ValueError(f"{expression!r}: a range runs backwards")
        if any(int(day) > 6 for day in re.findall(r"\d+", re.sub(r"/\d+", "", fields[4]))):
            raise ValueError(f"{expression!r}: day of week is 0-6 (0 is Sunday)")
    return croniter(expression, start)


def runs(expression: str, after: datetime, until: datetime) -> list[datetime]:
    """Every start in (after, until], in order (UTC); ValueError for a bad or never-matching expression."""
    starts, iterator = [], schedule(expression, after)
    while (moment := iterator.get_next(datetime)) <= until:
        starts.append(moment)
    return starts


def parse_problem(expression: str) -> str:
    """'' when `expression` is a valid schedule that runs, else ': <why>'."""
    try:
        schedule(expression).get_next(datetime)
    except ValueError as error:
        return f": {error}"
    return ""


# --- objects, references, environment ----------------------------------------------------------------


def commented_variant(text: str) -> str:
    """The partitioned variant, uncommented (the manifest after its prose, from the `# ---` line)."""
    lines = text[text.index(BEGIN) : text.index(END)].splitlines()
    lines = lines[lines.index("# ---") :]
    return "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines) + "\n"


def load_documents(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def workload_pods(doc: Doc) -> Doc | None:
    """The pod spec of a CronJob or Deployment, else None."""
    path = {"CronJob": "spec.jobTemplate.spec.template.spec", "Deployment": "spec.template.spec"}
    return dig(doc, path[doc["kind"]]) if doc["kind"] in path else None


@dataclass(frozen=True)
class Setting:
    """One environment variable: its value where known, and its source ("configmap:<name>", "literal",
    "secret:<name>/<key>", "envFrom-secret:<name>/<key>", "other")."""

    value: str | None
    source: str


Env = dict[str, Setting]


def value(env: Env, name: str) -> str | None:
    return env[name].value if name in env else None


@dataclass(frozen=True)
class Context:
    """One file's ConfigMaps and Secrets (references must resolve inside it), the image, env.example."""

    configmaps: dict[str, dict[str, str]]
    secrets: dict[str, Doc]
    facts: ImageFacts
    known: set[str]
    report: Report

    @classmethod
    def of(cls, docs: list[Doc], facts: ImageFacts, known: set[str], report: Report) -> Context:
        configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
        secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
        return cls(configmaps, secrets, facts, known, report)

    def secret_keys(self, name: str) -> set[str]:
        secret = self.secrets.get(name, {})
        return set(secret.get("stringData") or {}) | set(secret.get("data") or {})


def container_env(container: Doc, ctx: Context, label: str) -> Env:
    env: Env = {}
    check = ctx.report.check
    for source in container.get("envFrom", []):
        name = dig(source, "configMapRef.name")
        if name and check(name in ctx.configmaps, f"{label}: envFrom ConfigMap {name} is in the file"):
            env |= {k: Setting(str(v), f"configmap:{name}") for k, v in ctx.configmaps[name].items()}
        if name := dig(source, "secretRef.name"):
            check(name in ctx.secrets, f"{label}: envFrom Secret {name} is in the file")
            env |= {k: Setting(None, f"envFrom-secret:{name}/{k}") for k in ctx.secret_keys(name)}
    for item in container.get("env", []):
        variable, source = item["name"], item.get("valueFrom", {})
        secret, config = source.get("secretKeyRef"), source.get("configMapKeyRef")
        if "value" in item:
            env[variable] = Setting(str(item["value"]), "literal")
        elif secret:
            name, key = secret["name"], secret["key"]
            found = key in ctx.secret_keys(name)
            check(found, f"{label}: {variable} from Secret {name} key {key}, which is in the file")
            env[variable] = Setting(None, f"secret:{name}/{key}")
        elif config:
            name, key, data = config["name"], config["key"], ctx.configmaps.get(config["name"], {})
            check(key in data, f"{label}: {variable} from ConfigMap {name} key {key}, which is in the file")
            env[variable] = Setting(str(data.get(key)), f"configmap:{name}")
        else:
            env[variable] = Setting(None, "other")
    return env


def quantity(amount: object) -> float:
    """A Kubernetes quantity (cpu or bytes) as a number: "2" -> 2, "500m" -> 0.5, "3Gi" -> 3 * 2**30."""
    text = str(amount)
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
    env: Env


# --- every pod ----------------------------------------------------------------------------------------


def check_pod(label: str, pod: Doc, ctx: Context) -> list[Workload]:
    """Security, image, weights, TLS, credentials and environment of one pod spec."""
    facts, report = ctx.facts, ctx.report
    report.expect(label, pod, POD_RULES)
    user = tuple(dig(pod, f"securityContext.{key}") for key in ("runAsUser", "runAsGroup", "fsGroup"))
    uid, gid = facts.uid, facts.gid
    report.check(user == (uid, gid, gid), f"{label}: runs as the image's user {uid}:{gid} (fsGroup {gid})")
    report.check(not pod.get("initContainers"), f"{label}: no init containers (the image has the weights)")
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    return [check_container(f"{label}/{c['name']}", c, volumes, ctx) for c in pod["containers"]]


def check_container(name: str, container: Doc, volumes: dict[str, Doc], ctx: Context) -> Workload:
    check, facts, image = ctx.report.check, ctx.facts, container.get("image", "")
    ctx.report.expect(name, container, CONTAINER_RULES)
    check(dig(container, "securityContext.runAsUser", facts.uid) == facts.uid, f"{name}: no other runAsUser")
    pinned = re.search(r":[\w.-]+$|@sha256:", image) and not image.endswith(":latest")
    check(pinned, f"{name}: image {image} pinned")
    mounts = {mount["mountPath"]: mount for mount in container.get("volumeMounts", [])}
    for path, mount in mounts.items():
        check(mount["name"] in volumes, f"{name}: volume {mount['name']} exists")
        over = under(facts.baked_weights, path)
        check(not over, f"{name}: nothing mounted over the baked weights ({path})")
    empty_dirs = [path for path, mount in mounts.items() if "emptyDir" in volumes.get(mount["name"], {})]
    check("/tmp" in empty_dirs, f"{name}: /tmp is an emptyDir (the root filesystem is read-only)")
    env = container_env(container, ctx, name)
    check_environment(name, env, ctx)
    check_tls(name, env, mounts, volumes, ctx)
    check_runtime(name, env, empty_dirs, container.get("resources", {}), ctx.report)
    return Workload(name, image, env)


def check_environment(name: str, env: Env, ctx: Context) -> None:
    """Documented variables, secrets from Secrets, https with verified certificates, the baked weights."""
    check, baked = ctx.report.check, ctx.facts.baked_weights
    undocumented = sorted(set(env) - ctx.known - RUNTIME_VARIABLES)
    listed = f": not {undocumented}" if undocumented else ""
    check(not undocumented, f"{name}: every variable is in env.example{listed}")
    check(not FORBIDDEN_VARIABLES & set(env), f"{name}: no admin login (ES_ADMIN_*)")
    for variable in sorted(SECRET_VARIABLES & set(env)):
        source = env[variable].source
        check(source.startswith("secret:"), f"{name}: {variable} from a Secret (secretKeyRef), got {source}")
    check("ES_API_KEY" in env, f"{name}: ES_API_KEY is set (security on)")
    url = value(env, "ES_URL") or ""
    check(url.startswith("https://"), f"{name}: ES_URL is https ({url})")
    check("@" not in url.split("//", 1)[-1].split("/", 1)[0], f"{name}: no credentials in ES_URL")
    verify = (value(env, "ES_VERIFY_CERTS") or "true").lower()
    check(verify not in ("0", "false", "no", "off"), f"{name}: certificates are verified")
    weights = value(env, "VGG16_WEIGHTS")
    other = "" if weights == baked else f", not {weights}"
    check(weights == baked, f"{name}: VGG16_WEIGHTS is the image's baked file {baked}{other}")


def check_runtime(name: str, env: Env, folders: list[str], resources: Doc, report: Report):
    """Requests and limits, writable folders on an emptyDir, TensorFlow's threads matched to the CPU limit."""
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    both = {"cpu", "memory"} <= set(requests) <= set(limits)
    if report.check(both, f"{name}: cpu and memory requests and limits"):
        within = all(quantity(requests[key]) <= quantity(limits[key]) for key in requests)
        report.check(within, f"{name}: requests <= limits")
    for variable in WRITABLE_VARIABLES:
        if (folder := value(env, variable)) is not None:
            on_empty_dir = any(under(folder, path) for path in folders)
            report.check(on_empty_dir, f"{name}: {variable}={folder} lies on an emptyDir")
    cpu = limits.get("cpu")
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        threads = value(env, variable)
        matches = threads is not None and cpu is not None and float(threads) == quantity(cpu)
        report.check(matches, f"{name}: {variable} ({threads}) matches the CPU limit ({cpu})")


def check_tls(name: str, env: Env, mounts: dict[str, Doc], volumes: dict[str, Doc], ctx: Context) -> None:
    """ES_CA_CERTS is a file mounted from a Secret key in the file, or ES_SSL_FINGERPRINT pins one."""
    ca, fingerprint = value(env, "ES_CA_CERTS") or "", value(env, "ES_SSL_FINGERPRINT") or ""
    check = ctx.report.check
    if not check(bool(ca) != bool(fingerprint), f"{name}: either ES_CA_CERTS or ES_SSL_FINGERPRINT"):
        return
    if fingerprint:
        sha256 = re.fullmatch(r"[0-9a-f]{64}", fingerprint.replace(":", "").lower())
        check(sha256, f"{name}: ES_SSL_FINGERPRINT is a SHA-256 (64 hex digits)")
        return
    mount = mounts.get(str(PurePosixPath(ca).parent))
    secret = volumes.get(mount["name"], {}).get("secret") if mount else None
    if not check(secret, f"{name}: ES_CA_CERTS {ca} lies in a mounted Secret volume"):
        return
    keys, secret_name = ctx.secret_keys(secret["secretName"]), secret["secretName"]
    items = {item["path"]: item["key"] for item in secret.get("items", [])} or {key: key for key in keys}
    key = items.get(PurePosixPath(ca).name)
    check(key in keys, f"{name}: ES_CA_CERTS comes from Secret {secret_name} key {key}, which is in the file")


def check_placeholders(label: str, documents: list[Doc], report: Report) -> None:
    for secret in (doc for doc in documents if doc["kind"] == "Secret"):
        name = f"{label}: Secret {secret['metadata']['name']}"
        labelled = dig(secret, "metadata.labels", {}).get("imgsearch/placeholder") == "true"
        report.check(labelled, f"{name} is labelled imgsearch/placeholder=true (skipped by -l '...!=true')")
        values = [*(secret.get("stringData") or {}).values(), *(secret.get("data") or {}).values()]
        report.check(all(item in ("", None) for item in values), f"{name}: placeholder values are empty")


# --- the indexer's CronJobs ---------------------------------------------------------------------------


def check_cronjob(cronjob: Doc, report: Report) -> None:
    check, name, job = report.check, cronjob["metadata"]["name"], cronjob["spec"]["jobTemplate"]["spec"]
    problem = parse_problem(cronjob["spec"]["schedule"])
    check(not problem, f"{name}: schedule {cronjob['spec']['schedule']!r} parses{problem}")
    report.expect(name, cronjob, CRONJOB_RULES)
    for path in CRONJOB_REQUIRED:
        check(dig(cronjob, path) is not None, f"{name}: {path.rsplit('.', 1)[-1]} set")
    check(1 <= job.get("backoffLimit", 6) <= 4, f"{name}: small backoffLimit ({job.get('backoffLimit')})")
    containers = {c["name"]: c for c in job["template"]["spec"]["containers"]}
    rules = dig(job, "podFailurePolicy.rules", [])
    codes = {
        code
        for rule in rules
        if rule["action"] == "FailJob" and dig(rule, "onExitCodes.operator") == "In"
        for code in rule["onExitCodes"]["values"]
    }
    check(codes == NOT_RETRIED, f"{name}: exit codes {sorted(codes)} fail the Job without retry")
    for container in filter(None, (dig(rule, "onExitCodes.containerName") for rule in rules)):
        check(container in containers, f"{name}: podFailurePolicy names container {container!r}")
    if check("indexer" in containers, f"{name}: has a container named indexer"):
        command = containers["indexer"].get("command", []) + containers["indexer"].get("args", [])
        mode = "incremental" if "incremental" in name else "full"
        check(command[:4] == ["python", "-m", "indexer", mode], f"{name}: runs python -m indexer {mode}")
        check("--no-progress" in command, f"{name}: --no-progress")
        if job.get("completionMode") == "Indexed":
            partition = f"$(JOB_COMPLETION_INDEX)/{job['completions']}"
            check(partition in command, f"{name}: --partition {partition} matches completions")
            check(job.get("parallelism") == job["completions"], f"{name}: parallelism == completions")


def check_no_overlap(first: Doc, second: Doc, report: Report, days: int = 35) -> None:
    """No run of `first` can still hold the lock when a run of `second` is due (over `days` days)."""
    label = f"{first['metadata']['name']} (deadlines + lock TTL) never overlaps {second['metadata']['name']}"
    until = ORIGIN + timedelta(days=days)
    try:
        starts = runs(first["spec"]["schedule"], ORIGIN, until)
        others = runs(second["spec"]["schedule"], ORIGIN, until + timedelta(days=7))
    except ValueError as error:
        report.check(False, f"{label}: {error}")
        return
    # A run may start startingDeadlineSeconds late, last activeDeadlineSeconds, and leave its lock LOCK_TTL.
    spec = first["spec"]
    seconds = spec["startingDeadlineSeconds"] + spec["jobTemplate"]["spec"]["activeDeadlineSeconds"]
    end = timedelta(seconds=seconds + LOCK_TTL)
    clashes = [(start, other) for start in starts for other in others if start <= other < start + end]
    clash = f": {clashes[0][0]} runs until past {clashes[0][1]}" if clashes else ""
    report.check(not clashes, label + clash)


def check_indexer(documents: list[Doc], variant: list[Doc], ctx: Context) -> list[Workload]:
    report = ctx.report
    cronjobs = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "CronJob"}
    report.check(set(cronjobs) == INDEXER_CRONJOBS, "indexer: the two CronJobs are defined")
    one = len(variant) == 1 and variant[0]["kind"] == "CronJob"
    report.check(one, "indexer: one commented partitioned variant")
    check_placeholders("indexer", documents, report)
    workloads = []
    for cronjob in [*cronjobs.values(), *variant]:
        check_cronjob(cronjob, report)
        workloads += check_pod(cronjob["metadata"]["name"], workload_pods(cronjob), ctx)
    if set(cronjobs) == INDEXER_CRONJOBS:
        incremental, full = cronjobs["images-indexer-incremental"], cronjobs["images-indexer-full"]
        for first, second in [(incremental, full), (full, incremental), *((v, incremental) for v in variant)]:
            check_no_overlap(first, second, report)
    return workloads


# --- the search API -----------------------------------------------------------------------------------


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == item for key, item in selector.items())


def check_probe(name: str, probe: Doc | None, path: str, ports: set[object], report: Report) -> Doc:
    get = dig(probe, "httpGet", {})
    got = "" if get.get("path") == path else f", not {get.get('path')}"
    report.check(get.get("path") == path, f"{name}: GET {path}{got}")
    report.check(get.get("port") in ports, f"{name}: on the container's port ({get.get('port')})")
    return probe or {}


def check_api_probes(name: str, api: Doc, env: Env, facts: ImageFacts, report: Report) -> set:
    """Port agreement, readiness on /ready and liveness on /health, the model's start-up window."""
    numbers = {port["containerPort"] for port in api.get("ports", [])}
    ports = numbers | {port["name"] for port in api.get("ports", []) if "name" in port}
    bind, port = value(env, "SEARCH_BIND") or "", facts.port
    agree = numbers == {port} and bind.rsplit(":", 1)[-1] == str(port)
    report.check(agree, f"{name}: containerPort, SEARCH_BIND ({bind}) and the image's EXPOSE agree on {port}")
    ready = check_probe(f"{name}: readinessProbe", api.get("readinessProbe"), "/ready", ports, report)
    check_probe(f"{name}: livenessProbe", api.get("livenessProbe"), "/health", ports, report)
    if startup := api.get("startupProbe") or {}:
        check_probe(f"{name}: startupProbe", startup, "/health", ports, report)
    window = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    window += (startup or api.get("livenessProbe", {})).get("initialDelaySeconds", 0)
    allowed = facts.healthcheck_start_seconds
    report.check(window >= allowed, f"{name}: {window} s to warm up before liveness (HEALTHCHECK: {allowed})")
    es_timeout, timeout = float(value(env, "SEARCH_ES_TIMEOUT") or 5), ready.get("timeoutSeconds", 1)
    report.check(
        timeout > es_timeout, f"{name}: readiness timeout {timeout} > SEARCH_ES_TIMEOUT ({es_timeout:g})"
    )
    return ports


def check_api_capacity(name: str, api: Doc, pod: Doc, env: Env, ctx: Context) -> None:
    """Memory for every worker's model, the metrics folder, a grace period longer than the drain."""
    check, graceful = ctx.report.check, ctx.facts.graceful_timeout
    workers = int(value(env, "SEARCH_WORKERS") or 1)
    both = {"SEARCH_THREADS", "SEARCH_WORKERS"} <= set(env)
    check(both, f"{name}: SEARCH_WORKERS and SEARCH_THREADS set (gunicorn.conf.py)")
    memory = dig(api, "resources.requests.memory")
    needed = API_MIB_ONE_WORKER + API_MIB_PER_EXTRA_WORKER * (workers - 1)
    enough = quantity(memory or 0) >= needed * 2**20
    check(enough, f"{name}: memory request {memory} holds {workers} worker(s) (>= {needed} MiB)")
    multiproc = "PROMETHEUS_MULTIPROC_DIR" in env
    check(multiproc == (workers > 1), f"{name}: PROMETHEUS_MULTIPROC_DIR iff SEARCH_WORKERS > 1 ({workers})")
    pre_stop = dig(api, "lifecycle.preStop.exec.command", [])
    delay = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] and len(pre_stop) == 2 else 0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace > delay + graceful, f"{name}: grace period {grace} > preStop {delay} + gunicorn's {graceful}")


def check_deployment(deployment: Doc, report: Report) -> int:
    """Selector, replicas and a rollout that never lowers capacity; the replica count."""
    name, spec = deployment["metadata"]["name"], deployment["spec"]
    matches = selects(dig(spec, "selector.matchLabels", {}), dig(spec, "template.metadata.labels", {}))
    report.check(matches, f"{name}: selector matches the pod labels")
    replicas = spec.get("replicas", 1)
    report.check(replicas >= 2, f"{name}: at least 2 replicas ({replicas})")
    rolling = dig(spec, "strategy.rollingUpdate", {})
    rolling_update = dig(spec, "strategy.type", "RollingUpdate") == "RollingUpdate"
    surge = rolling_update and rolling.get("maxSurge", 0) not in (0, "0%")
    message = f"{name}: rolling update adds a pod before removing one (maxUnavailable 0)"
    report.check(surge and rolling.get("maxUnavailable") == 0, message)
    return replicas


def check_routing(
    kinds: dict[str, list[Doc]], labels: Doc, ports: set, replicas: int, report: Report
) -> None:
    """The Service and the PodDisruptionBudgets select the API pods; the Service targets its port."""
    service = kinds["Service"][0]
    label = f"service {service['metadata']['name']}"
    report.check(selects(dig(service, "spec.selector", {}), labels), f"{label}: selects the API pods")
    for port in dig(service, "spec.ports", []):
        target = port.get("targetPort", port["port"])
        report.check(target in ports, f"{label}: targetPort {port.get('targetPort')} is the API's port")
    for budget in kinds.get("PodDisruptionBudget", []):
        name, spec = f"pdb {budget['metadata']['name']}", budget["spec"]
        report.check(selects(dig(spec, "selector.matchLabels", {}), labels), f"{name}: selects the API pods")
        allowed = spec.get("maxUnavailable")
        if allowed is None:
            allowed = replicas - int(spec.get("minAvailable", replicas))
        evictable = isinstance(allowed, int) and 0 < allowed < replicas
        report.check(evictable, f"{name}: lets a drain evict a pod, never all {replicas}")


def check_api(documents: list[Doc], ctx: Context) -> list[Workload]:
    check = ctx.report.check
    by_kind: dict[str, list[Doc]] = {}
    check_placeholders("api", documents, ctx.report)
    for doc in documents:
        by_kind.setdefault(doc["kind"], []).append(doc)
    one_each = len(by_kind.get("Deployment", [])) == len(by_kind.get("Service", [])) == 1
    if not check(one_each, "api: one Deployment and one Service"):
        return []
    deployment = by_kind["Deployment"][0]
    name, template = deployment["metadata"]["name"], deployment["spec"]["template"]
    replicas = check_deployment(deployment, ctx.report)
    workloads = check_pod(name, template["spec"], ctx)
    containers = {c["name"]: c for c in template["spec"]["containers"]}
    if not check(list(containers) == ["api"], f"{name}: one container, named api"):
        return workloads
    api, env = containers["api"], workloads[0].env
    entry = "command" not in api and api.get("args", [""])[0] == "api" and "api" in ctx.facts.entry_commands
    check(entry, f"{name}: the image's entry point with its `api` command (args {api.get('args')})")
    ports = check_api_probes(name, api, env, ctx.facts, ctx.report)
    check_api_capacity(name, api, template["spec"], env, ctx)
    check_routing(by_kind, dig(template, "metadata.labels", {}), ports, replicas, ctx.report)
    return workloads


# --- the host crontab, the schemas, both workloads ----------------------------------------------------


def check_crontab(crontab: Path, report: Report) -> None:
    lines = crontab.read_text().splitlines()
    entries = [
        (n, line.split(None, 6)) for n, line in enumerate(lines, 1) if re.match(r"\s*[^#\s=]+\s", line)
    ]
    for number, fields in entries:
        expression, user, command, name = " ".join(fields[:5]), fields[5], fields[6], f"crontab line {number}"
        problem = parse_problem(expression)
        if not report.check(not problem, f"{name}: {expression!r} parses{problem or f' (user {user})'}"):
            continue
        report.check("%" not in command, f"{name}: no unescaped % in the command")
        for needle in CRONTAB_NEEDLES:
            report.check(needle in command, f"{name}: has {needle!r}")
        iterator = schedule(expression)
        starts = ", ".join(f"{iterator.get_next(datetime):%a %Y-%m-%d %H:%M}" for _ in range(3))
        report.info(f"next runs of {expression!r}: {starts}")
    report.check(len(entries) == 2, "crontab has the incremental and the full line")
    report.check(any(line.startswith("MAILTO=") for line in lines), "crontab sets MAILTO")


def check_schemas(files: dict[str, list[Doc]], report: Report) -> None:
    for label, doc in ((label, doc) for label, documents in files.items() for doc in documents):
        for version in KUBERNETES_VERSIONS:
            error = schema_error(doc, version)
            name = f"{label}: {doc.get('kind')}/{dig(doc, 'metadata.name')}"
            details = f"\n        {error}" if error else ""
            report.check(not error, f"{name} valid against the Kubernetes {version} schema (strict){details}")


def check_across(indexer: list[Workload], api: list[Workload], report: Report) -> None:
    """One image, one cluster, one alias, one model; each component its own key."""
    images = {workload.image for workload in indexer + api}
    report.check(len(images) == 1, f"every workload runs the same image ({', '.join(sorted(images))})")
    for variable in SHARED_VARIABLES:
        values = {value(workload.env, variable) for workload in indexer + api}
        report.check(len(values) == 1, f"indexer and API agree on {variable} ({', '.join(map(str, values))})")
    if indexer and api:
        keys = {
            w.env["ES_API_KEY"].source.split("/")[0] for w in (indexer[0], api[0]) if "ES_API_KEY" in w.env
        }
        report.check(len(keys) == 2, f"indexer and API: different Secrets for ES_API_KEY ({', '.join(keys)})")


def guarded(report: Report, label: str, checks: Callable[..., list[Workload]], *args: Any) -> list[Workload]:
    """Run `checks`; a manifest too broken for them (a schema error: a missing field, a wrong type) is one
    more problem instead of a traceback."""
    try:
        return checks(*args)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        report.check(False, f"{label}: checks stopped at {type(exc).__name__}: {exc} (see the schema errors)")
        return []


def validate(paths: Paths = Paths(), report: Report | None = None) -> Report:
    """Every check of the two manifests, the commented partitioned variant and the crontab."""
    report = report if report is not None else Report()
    facts, known = image_facts(paths), documented_variables(paths.env_example)
    indexer_text = paths.indexer.read_text()
    indexer_docs, api_docs = load_documents(indexer_text), load_documents(paths.api.read_text())
    variant = load_documents(commented_variant(indexer_text))
    for doc in variant:
        doc["metadata"]["name"] += " [partitioned variant]"
    files = {paths.indexer.name: indexer_docs, "partitioned variant": variant, paths.api.name: api_docs}
    for label, documents in files.items():
        report.info(f"{label}: " + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in documents))
    check_schemas(files, report)
    indexer_ctx, api_ctx = (Context.of(docs, facts, known, report) for docs in (indexer_docs, api_docs))
    indexer = guarded(report, paths.indexer.name, check_indexer, indexer_docs, variant, indexer_ctx)
    api = guarded(report, paths.api.name, check_api, api_docs, api_ctx)
    check_across(indexer, api, report)
    check_crontab(paths.crontab, report)
    return report


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    report = validate()
    print(f"\n{report.passed} checks passed, {len(report.problems)} problem(s)")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
