# One command per habit, the same for developers and CI.
# Every target that needs Python runs `scripts/setup` first (fast when nothing changed).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k verify -x"`.
PYTEST_ARGS ?=
# `make test` runs the test files in this many processes (pytest-xdist, one file per process at
# a time: most integration tests wait on brokers, agents and disks rather than compute).
# TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= 3
# SIGKILL rounds of tests/integration/test_power_cuts.py in `make chaos` (`make test` runs 10).
CHAOS_ROUNDS ?= 500
# Inputs over the fuzz targets for `make fuzz` (`make test` runs 2,000).
FUZZ_INPUTS ?= 100000
FUZZ_TESTS := tests/unit/test_fuzz.py tests/unit/test_fuzz_verify.py \
	tests/unit/test_fuzz_documents.py tests/unit/test_fuzz_config.py \
	tests/unit/test_fuzz_control_socket.py tests/unit/controlplane/test_fuzz_cap.py

.PHONY: help setup test chaos fuzz soak soak-week lint bench fleet demo deb clean

help: ## list the targets
	@echo "ttcs-agent — edge agent for ward screens and loudspeakers"
	@echo
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-7s %s\n", $$1, $$2}'

setup: ## install missing Debian packages (apt) and the Python virtualenv .venv
	@scripts/setup

test: setup ## run the test suite (real Mosquitto, no 'slow' tests), TEST_WORKERS processes
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

chaos: setup ## the long runs kept out of `make test` (CHAOS_ROUNDS=500 power cuts, …); tables
	TTCS_CHAOS_ROUNDS=$(CHAOS_ROUNDS) $(PY) -m pytest -m slow $(PYTEST_ARGS)

# Each property's time grows with FUZZ_INPUTS: no per-test time limit here.
fuzz: setup ## fuzz the decoders and parsers with FUZZ_INPUTS inputs (100,000); prints a table
	TTCS_FUZZ_INPUTS=$(FUZZ_INPUTS) $(PY) -m pytest -q --timeout=0 $(FUZZ_TESTS) $(PYTEST_ARGS)

# Prints the flapping link's table and the load soak's memory/fd/thread curve; exit 1 on a
# broken promise. E.g. SOAK_ARGS="--flap-minutes 5 --load-minutes 5".
soak: setup ## 30 min behind a flapping 3G-like link, then 1,000 commands with /proc sampled
	$(PY) scripts/soak.py $(SOAK_ARGS)

# Not `setup`: `setup --soak` also installs libfaketime and gcc (for scripts/faketime_semwait.c).
# The unmodified agent, its clock 168x (an hour is a week): SOAK_WEEK_ARGS="--wall-s 900".
soak-week: ## the agent's clock 168x under libfaketime: a table per quarter day, exit 1 on a missed goal
	@scripts/setup --soak
	$(PY) scripts/soak_week.py $(SOAK_WEEK_ARGS)

# All three run even when one fails, so one pass shows every problem.
lint: setup ## ruff check, ruff format --check, mypy (config in pyproject.toml)
	@status=0; \
	for tool in "ruff check ." "ruff format --check ." "mypy"; do \
		echo "$(VENV)/bin/$$tool"; $(VENV)/bin/$$tool || status=1; \
	done; \
	exit $$status

# Not `setup`: `setup --bench` also installs what the benchmarks compare against (chromium).
bench: ## run the benchmarks (scripts/bench.py; e.g. BENCH_ARGS="--only screen")
	@scripts/setup --bench
	$(PY) scripts/bench.py $(BENCH_ARGS)

# Output: the table on stdout, fleet-out/fleet.json. About 10 minutes on 2 cores.
fleet: setup ## the fleet simulator: 100, 300, 1,000 devices on one Mosquitto (e.g. FLEET_ARGS="--sizes 50")
	$(PY) -m fleetsim $(FLEET_ARGS)

demo: setup ## run the end-to-end demo (scripts/demo)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo

# Output: dist/ttcs-agent_VERSION_ARCH.deb (the build itself happens in build/deb/). Reused while
# the source is unchanged; scripts/build-deb --force builds anyway.
deb: setup ## build dist/ttcs-agent_VERSION_ARCH.deb with dpkg-buildpackage, then lintian
	@scripts/build-deb

clean: ## remove the virtualenv, caches, demo/bench output and built packages (build/, dist/)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis \
		demo-out bench-out fleet-out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
