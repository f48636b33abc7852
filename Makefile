# Image similarity search on Elasticsearch: set-up, tests and demo.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STACK := bash scripts/stack.sh
STACK_ENV = eval "$$($(STACK) env)"
export TF_CPP_MIN_LOG_LEVEL ?= 2
# scripts/versions.env: the default Elasticsearch (ES_VERSION=... overrides it for stack-up, demo, serve,
# bench-*) and the 9.x that `make test` runs the integration suite against as well.
ES_DEFAULT_VERSION := $(shell sed -n 's/^ES_VERSION=//p' scripts/versions.env)
ES9_VERSION := $(shell sed -n 's/^ES9_VERSION=//p' scripts/versions.env)
# The 9.x pass runs its own nodes on these ports, beside the default ones, and stops them afterwards.
ES9_TEST_PORTS ?= ES_PORT=9202 ES_TRANSPORT_PORT=9302 ES_SECURE_PORT=9203 ES_SECURE_TRANSPORT_PORT=9303

.PHONY: help venv backends stack-up stack-down stack-status browser lint format test test-es9 test-unit demo serve clean \
	bench bench-smoke bench-indexer bench-ingest bench-search bench-recall bench-quality bench-soak
BENCHES := indexer ingest search recall quality soak

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(BIN)/.installed  ## create .venv with the pinned requirements

# The optional Keras backends (requirements-backends.txt): the tests prove JAX gives TensorFlow's vectors.
$(BIN)/.backends: $(BIN)/.installed requirements-backends.txt
	$(BIN)/pip install -q -r requirements-backends.txt
	touch $@

backends: $(BIN)/.backends  ## add the optional Keras backends (JAX) to .venv

stack-up: venv  ## install (if needed) and start Elasticsearch + MariaDB locally (no Docker; ES_VERSION=<9.x> for 9.x, ES_NODES=3 for a cluster)
	$(STACK) up

stack-down:  ## stop the local Elasticsearch and MariaDB (and the security-on node if the tests started it)
	$(STACK) down
	$(STACK) down-secure

stack-status:  ## show what runs (and which Elasticsearch version)
	$(STACK) status

lint: venv  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

browser:  ## install Debian's chromium if missing (the search page test drives it headless)
	bash scripts/browser.sh

# The security-on node (port 9201) is stopped after the run when it was stopped before, even if pytest
# died before its own clean-up; `stack-up` reuses services that are up and healthy (a demo keeps running).
test: lint backends stack-up browser  ## lint, start the stack, run unit + integration tests against it, then test-es9
	secure_before="$$($(STACK) status-secure)"; rc=0; \
	{ $(STACK_ENV) && ES_EXPECT_VERSION=$${ES_VERSION:-$(ES_DEFAULT_VERSION)} $(BIN)/pytest; } || rc=$$?; \
	if [[ "$$secure_before" == *": stopped" ]]; then $(STACK) down-secure; fi; exit $$rc
	$(MAKE) test-es9

test-es9: backends browser  ## the integration suite against the ES9_VERSION of scripts/versions.env on ports 9202/9203 (started, then stopped)
	export ES_VERSION=$(ES9_VERSION) ES_EXPECT_VERSION=$(ES9_VERSION) $(ES9_TEST_PORTS) && $(STACK) up && \
	eval "$$($(STACK) env)" && rc=0 && { $(BIN)/pytest tests/integration $(PYTEST_ARGS) || rc=$$?; } && \
	$(STACK) stop-es && $(STACK) down-secure && exit $$rc

test-unit: backends  ## unit tests only (no services needed)
	$(BIN)/pytest tests/unit

demo: stack-up  ## index the demo catalog of real photos and serve the search page
	$(STACK_ENV) && ES_NUMBER_OF_REPLICAS=$${ES_NUMBER_OF_REPLICAS:-$$(( $${ES_NODES:-1} > 1 ? 1 : 0 ))} $(BIN)/python -m demo

serve: stack-up  ## serve the API with gunicorn (searchapi/gunicorn.conf.py) on the local stack's alias
	$(STACK_ENV) && $(BIN)/gunicorn -c searchapi/gunicorn.conf.py 'searchapi:create_app()'

clean:  ## remove caches and demo files (not the venv or the stack)
	rm -rf .pytest_cache .ruff_cache .demo reports

bench: stack-up  ## every benchmark in turn, full size (an hour or more; results in bench/results/)
	$(STACK_ENV) && for name in $(BENCHES); do $(BIN)/python -m bench.$$name $(BENCH_ARGS) || exit 1; done

bench-smoke: stack-up  ## every benchmark in its quick --smoke mode (a few minutes; results *-smoke-*)
	$(STACK_ENV) && for name in $(BENCHES); do $(BIN)/python -m bench.$$name --smoke || exit 1; done

bench-indexer: stack-up  ## indexer images/s: pipeline vs model ceiling vs naive (BENCH_ARGS="--images 240")
	$(STACK_ENV) && $(BIN)/python -m bench.indexer $(BENCH_ARGS)

bench-ingest: stack-up  ## documents/s one Elasticsearch node takes: the indexer's bulk sink vs the ceiling vs naive
	$(STACK_ENV) && $(BIN)/python -m bench.ingest $(BENCH_ARGS)

bench-search: stack-up  ## search latency: upload vs bare model, by id, API vs raw kNN at 100k docs (BENCH_ARGS)
	$(STACK_ENV) && $(BIN)/python -m bench.search $(BENCH_ARGS)

bench-recall: stack-up  ## recall@10, latency and disk of hnsw / int8_hnsw / bbq_hnsw at 10k and 100k (BENCH_ARGS)
	$(STACK_ENV) && $(BIN)/python -m bench.recall $(BENCH_ARGS)

bench-quality: stack-up  ## near-duplicate top-1/top-5 product accuracy per edit type, through the API (BENCH_ARGS)
	$(STACK_ENV) && $(BIN)/python -m bench.quality $(BENCH_ARGS)

bench-soak: stack-up  ## sustained API load while `indexer full` rebuilds and swaps the alias (BENCH_ARGS)
	$(STACK_ENV) && $(BIN)/python -m bench.soak $(BENCH_ARGS)

.PHONY: kibana-setup
kibana-setup: venv  ## import kibana/saved_objects.ndjson into KIBANA_URL for ES_INDEX (KIBANA_SETUP_ARGS="--space x")
	$(BIN)/python -m kibana.setup $(KIBANA_SETUP_ARGS)
