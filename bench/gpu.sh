#!/usr/bin/env bash
# bench.offline on a GPU machine that has only Python 3.12, JAX and/or PyTorch, and CUDA (bench/README.md).
#
#   bash bench/gpu.sh wheels      here, where PyPI is reachable: the project's pure-Python and small runtime
#                                 dependencies as wheels into .gpu-wheels/ (git-ignored; carry it along)
#   bash bench/gpu.sh run [ARGS]  there, offline: the wheels the machine's python lacks installed from
#                                 .gpu-wheels/ into .gpu-site/ (PYTHONPATH), then bench.offline once per importable
#                                 backend (jax, then torch) with VGG16_WEIGHTS=random; ARGS go to the bench
#                                 (e.g. --smoke); results under $OUT when set, else bench/results
#
# Overrides: PYTHON_VERSION (wheels for another CPython, e.g. 3.11 to try `run` elsewhere), PYTHON (the
# interpreter `run` uses), WHEELS (the wheel folder), SITE (where `run` installs the wheels the machine lacks).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=${WHEELS:-.gpu-wheels}
SITE=${SITE:-.gpu-site}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
# pinned in requirements.txt: what bench.offline imports that such a machine lacks (not the MySQL driver:
# indexer imports it only to connect; not numpy, 17 MB: JAX depends on it, PyTorch machines have it)
TOP=(keras pillow pydantic pydantic-settings tenacity elasticsearch orjson tabulate)
# what those need, at the versions the project's tests run with (a machine's own copies win: see run)
DEPS=(
  namex==0.1.0 optree==0.20.0 h5py==3.14.0 absl-py==2.5.1 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2
  pygments==2.21.0 ml-dtypes==0.7.0 packaging==26.4 typing-extensions==4.16.0 pydantic-core==2.50.5
  annotated-types==0.8.0 typing-inspection==0.4.5 python-dotenv==1.2.4 elastic-transport==8.19.0
  urllib3==2.8.0 certifi==2026.10.19.post1 python-dateutil==4.0.0 six==1.17.0 tzdata==2026.6
)

say() { printf '== %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

# "name==version" as requirements.txt pins it
pin() {
  grep -ioE "^$1==[^ ]+" requirements.txt || die "$1 is not pinned in requirements.txt"
}

top_pins() {
  local name
  for name in "${TOP[@]}"; do
    pin "$name" || exit 1
  done
}

wheels() {
  local pip=(python3 -m pip) pins
  [ -x .venv/bin/pip ] && pip=(.venv/bin/pip)
  mapfile -t pins < <(top_pins)
  [ "${#pins[@]}" -eq "${#TOP[@]}" ] || die "could not read the pins of ${TOP[*]} from requirements.txt"
  mkdir -p "$WHEELS"
  "${pip[@]}" download --quiet --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --no-deps -d "$WHEELS" "${pins[@]}" "${DEPS[@]}"
  say "$(find "$WHEELS" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1) in $WHEELS/"
}

describe() {
  local python=$1 backend=$2
  "$python" - "$backend" <<'EOF'
import importlib, os, sys
backend = sys.argv[1]
module = importlib.import_module(backend)
if backend == "jax":
    devices = [f"{device.platform}:{device.device_kind}" for device in module.devices()]
else:
    cuda = module.cuda
    devices = [cuda.get_device_name(n) for n in range(cuda.device_count())] or ["cpu"]
cores = len(os.sched_getaffinity(0))
print(f"{backend} {module.__version__} on {', '.join(devices)}; {cores} usable cores; Python {sys.version.split()[0]}")
EOF
}

# the carried wheels whose distribution the machine's python lacks (its own copies win: its numpy, ml_dtypes)
missing_wheels() {
  "$1" - "$WHEELS" <<'EOF'
import sys
from importlib import metadata
from pathlib import Path

for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    name = wheel.name.split("-")[0]
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        print(wheel)
EOF
}

run() {
  local python=${PYTHON:-} out=${OUT:-bench/results} backend failed=() ran=0 wanted
  [ -n "$python" ] || python=$(command -v python3.12 || command -v python3) || die "no python3 found"
  [ -d "$WHEELS" ] || die "no $WHEELS/: run 'bash bench/gpu.sh wheels' where PyPI is reachable, then carry it"
  # --target and PYTHONPATH, not a venv: the machine's python may itself be a venv's, whose packages a
  # new venv would not see
  mapfile -t wanted < <(missing_wheels "$python")
  say "$python: installing ${#wanted[@]} missing wheels from $WHEELS/ into $SITE/"
  if [ "${#wanted[@]}" -gt 0 ]; then
    "$python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
      --upgrade --target "$SITE" "${wanted[@]}"
  fi
  export PYTHONPATH="$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH}"
  if command -v nvidia-smi >/dev/null; then nvidia-smi -L || true; fi
  for backend in jax torch; do
    if ! "$python" -c "import $backend" 2>/dev/null; then
      say "$backend: not importable here, skipped"
      continue
    fi
    say "$(describe "$python" "$backend")"
    say "KERAS_BACKEND=$backend python -m bench.offline --results-dir $out $*"
    ran=$((ran + 1))
    KERAS_BACKEND=$backend VGG16_WEIGHTS=random TF_CPP_MIN_LOG_LEVEL=2 \
      "$python" -m bench.offline --results-dir "$out" "$@" || failed+=("$backend")
  done
  [ "$ran" -gt 0 ] || die "neither jax nor torch is importable: nothing ran"
  [ "${#failed[@]}" -eq 0 ] || die "failed: ${failed[*]}"
  say "done: results in $out"
}

case "${1:-}" in
  wheels) wheels ;;
  run)
    shift
    run "$@"
    ;;
  *) die "usage: bash bench/gpu.sh wheels | run [bench.offline options]" ;;
esac
