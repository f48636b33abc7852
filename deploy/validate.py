"""Offline checks of the scheduling files in deploy/ (not part of the project's runtime or tests).

Needs PyYAML, croniter and kubernetes-validate, which are deliberately not in requirements.txt.
Run it from a throwaway virtualenv:

    python3 -m venv /tmp/kv && /tmp/kv/bin/pip install kubernetes-validate pyyaml croniter
    /tmp/kv/bin/python deploy/validate.py

It validates every manifest in deploy/kubernetes/indexer-cronjobs.yaml (and the commented partitioned
variant) against the bundled Kubernetes schemas, then checks what the schemas cannot: the settings the
indexer relies on, the cron expressions, and that a run cannot still hold the lock when the other starts.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from croniter import croniter

DEPLOY = Path(__file__).resolve().parent
MANIFEST = DEPLOY / "kubernetes" / "indexer-cronjobs.yaml"
CRONTAB = DEPLOY / "cron" / "imgsearch-indexer.cron"
KUBERNETES_VERSIONS = ("1.29.0", "1.31.0", "1.37.0")
NOT_RETRIED = {2, 3, 4}
LOCK_TTL = 600
BEGIN, END = "# --- BEGIN partitioned variant", "# --- END partitioned variant"

problems: list[str] = []


def check(condition: bool, message: str) -> None:
    print(("ok    " if condition else "FAIL  ") + message)
    if not condition:
        problems.append(message)


def commented_variant(text: str) -> str:
    """The partitioned variant, uncommented (the manifest after its prose, from the `# ---` line)."""
    lines = text[text.index(BEGIN) : text.index(END)].splitlines()
    lines = lines[lines.index("# ---") :]
    return "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines) + "\n"


def schema_validate(path: Path, label: str) -> None:
    tool = Path(sys.executable).with_name("kubernetes-validate")
    for version in KUBERNETES_VERSIONS:
        result = subprocess.run(
            [str(tool), "--strict", "-k", version, str(path)], capture_output=True, text=True, check=False
        )
        print(result.stdout.rstrip())
        check(result.returncode == 0, f"{label}: kubernetes-validate --strict -k {version}")


def check_cronjob(cronjob: dict, names: set[tuple[str, str]]) -> None:
    name = cronjob["metadata"]["name"]
    spec = cronjob["spec"]
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    indexer = containers.get("indexer")
    check(croniter.is_valid(spec["schedule"]), f"{name}: schedule {spec['schedule']!r} parses")
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
    check(indexer is not None, f"{name}: has a container named indexer")
    if indexer is None:
        return
    command = indexer["command"] + indexer["args"]
    mode = "incremental" if "incremental" in name else "full"
    check(command[:4] == ["python", "-m", "indexer", mode], f"{name}: runs python -m indexer {mode}")
    check("--no-progress" in command, f"{name}: --no-progress")
    resources = indexer.get("resources", {})
    check(
        {"cpu", "memory"} <= set(resources.get("requests", {})) <= set(resources.get("limits", {})),
        f"{name}: cpu and memory requests and limits",
    )
    for source in indexer.get("envFrom", []):
        for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if ref in source:
                ref_name = source[ref]["name"]
                check((kind, ref_name) in names, f"{name}: envFrom {kind} {ref_name} is in the file")
    volumes = {volume["name"] for volume in pod.get("volumes", [])}
    for container in pod["containers"] + pod.get("initContainers", []):
        for mount in container.get("volumeMounts", []):
            check(mount["name"] in volumes, f"{name}: volume {mount['name']} of {container['name']} exists")
    if job.get("completionMode") == "Indexed":
        partition = f"$(JOB_COMPLETION_INDEX)/{job['completions']}"
        check(partition in command, f"{name}: --partition {partition} matches completions")
        check(job.get("parallelism") == job["completions"], f"{name}: parallelism == completions")


def latest_end(cronjob: dict, start: datetime) -> datetime:
    """When a run started at `start` has stopped for sure and its lock has expired."""
    spec = cronjob["spec"]
    job = spec["jobTemplate"]["spec"]
    seconds = spec["startingDeadlineSeconds"] + job["activeDeadlineSeconds"] + LOCK_TTL
    return start + timedelta(seconds=seconds)


def starts(cronjob: dict, origin: datetime, until: datetime) -> list[datetime]:
    schedule = croniter(cronjob["spec"]["schedule"], origin)
    result = [schedule.get_next(datetime)]
    while result[-1] < until:
        result.append(schedule.get_next(datetime))
    return result


def check_no_overlap(first: dict, second: dict, days: int = 35) -> None:
    """No run of `first` can still hold the lock when a run of `second` is due (over `days` days)."""
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    until = origin + timedelta(days=days)
    others = starts(second, origin, until + timedelta(days=7))
    clashes = [
        (start, other)
        for start in starts(first, origin, until)
        for other in others
        if start <= other < latest_end(first, start)
    ]
    label = f"{first['metadata']['name']} (deadlines + lock TTL) never overlaps {second['metadata']['name']}"
    check(not clashes, label + (f": {clashes[0]}" if clashes else ""))


def check_manifest() -> None:
    text = MANIFEST.read_text()
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    variant = [doc for doc in yaml.safe_load_all(commented_variant(text)) if doc]
    for doc in variant:
        doc["metadata"]["name"] += " [partitioned variant]"
    print(f"PyYAML: {len(documents)} documents, {len(variant)} in the commented variant")
    kinds = [(doc["kind"], doc["metadata"]["name"]) for doc in documents]
    print("  " + ", ".join(f"{kind}/{name}" for kind, name in kinds))
    schema_validate(MANIFEST, MANIFEST.name)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="partitioned-") as handle:
        handle.write(commented_variant(text))
        handle.flush()
        schema_validate(Path(handle.name), "partitioned variant")
    names = set(kinds)
    cronjobs = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "CronJob"}
    check(
        set(cronjobs) == {"images-indexer-incremental", "images-indexer-full"}, "the two CronJobs are defined"
    )
    for cronjob in [*cronjobs.values(), *variant]:
        check_cronjob(cronjob, names)
    secret = next(doc for doc in documents if doc["kind"] == "Secret")
    check("MYSQL_URL" in secret.get("stringData", {}), "Secret placeholder holds MYSQL_URL")
    incremental, full = cronjobs["images-indexer-incremental"], cronjobs["images-indexer-full"]
    for first, second in ((incremental, full), (full, incremental), (variant[0], incremental)):
        check_no_overlap(first, second)


def check_crontab() -> None:
    entries = []
    for number, line in enumerate(CRONTAB.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" in stripped.split()[0]:
            print(f"  line {number}: variable {stripped.split('=')[0]}")
            continue
        fields = stripped.split(None, 6)
        schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
        entries.append(schedule)
        check(croniter.is_valid(schedule), f"crontab line {number}: {schedule!r} parses (user {user})")
        check("%" not in command, f"crontab line {number}: no unescaped % in the command")
        for needle in (
            "cd /opt/imgsearch &&",
            ". /etc/imgsearch/indexer.env",
            "flock -n",
            ">>",
            "--no-progress",
        ):
            check(needle in command, f"crontab line {number}: has {needle!r}")
        now = datetime(2026, 1, 1, tzinfo=UTC)
        runs = croniter(schedule, now)
        print(
            f"  next runs of {schedule!r}: "
            + ", ".join(f"{runs.get_next(datetime):%a %Y-%m-%d %H:%M}" for _ in range(3))
        )
    check(len(entries) == 2, "crontab has the incremental and the full line")
    check(any(line.startswith("MAILTO=") for line in CRONTAB.read_text().splitlines()), "crontab sets MAILTO")


if __name__ == "__main__":
    check_manifest()
    check_crontab()
    print(f"\n{len(problems)} problem(s)")
    sys.exit(1 if problems else 0)
