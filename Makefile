# airgap-llm: the two commands a new user needs are `make demo` (the main job on the embedded default)
# and `make test` (everything CI runs). Both do their own set-up on a fresh machine.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
ROLE ?=

.PHONY: help setup test unit lint syntax molecule e2e proof bench demo demo-down clean

help:
	@echo "make setup     create .venv, install the package and test tools, host packages for the tests"
	@echo "make test      unit + integration tests, lint, playbook syntax, Molecule scenarios, e2e"
	@echo "make demo      local systemd target with no route out, tiny CPU bundle, install, validate"
	@echo "make molecule [ROLE=name]   Molecule scenarios (every roles/*/molecule/*; or one role, or ROLE=role/scenario)"
	@echo "make lint      ansible-lint (production profile), yamllint, ruff, mypy"
	@echo "make proof     fault, security and bad-input tests against systemd targets, then the benchmarks"
	@echo "make bench     the benchmarks only (they print ratios for bench/RESULTS.md)"

# The stamp is rebuilt whenever the project's dependency list changes.
$(VENV)/.stamp: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.stamp
	@if [ -x tests/hosts/install-host-deps ]; then tests/hosts/install-host-deps; fi

unit: setup
	$(VENV)/bin/pytest

syntax: setup
	@for pb in playbooks/*.yml; do \
	  echo "syntax-check $$pb"; \
	  $(VENV)/bin/ansible-playbook --syntax-check -i inventories/local-cpu "$$pb"; \
	done

lint: setup
	$(VENV)/bin/yamllint -s .
	$(VENV)/bin/ansible-lint --profile production
	$(VENV)/bin/ruff check src tests bench filter_plugins library
	$(VENV)/bin/mypy

molecule: setup
	@if [ -x tests/hosts/molecule-run ]; then tests/hosts/molecule-run $(ROLE); else echo "no molecule runner"; exit 1; fi

# The e2e tests marked `proof` (slow fault proofs that share a module's deployment) run in `make proof`.
e2e: setup
	@if [ -d tests/e2e ] && ls tests/e2e/test_*.py >/dev/null 2>&1; then $(VENV)/bin/pytest -m "not proof" tests/e2e; else echo "no e2e tests yet"; fi

test: unit lint syntax molecule e2e

# The proof of issue-level promises under faults, bad input and load. The bad-input catalogue
# (tests/integration/test_bad_input.py) also runs in `make test`; the rest needs more time.
proof: setup
	$(VENV)/bin/pytest -v -rA tests/proof tests/integration/test_bad_input.py
	$(VENV)/bin/pytest -v -rA -m proof tests/e2e
	$(MAKE) bench

BENCHES := bench/verify.py bench/delta.py bench/staging.py bench/fanout.py bench/install_noop.py bench/time_to_healthy.py bench/load.py bench/upgrade.py
bench: setup
	@for b in $(BENCHES); do echo "== $$b"; $(VENV)/bin/python "$$b" || exit 1; done

demo: setup
	$(VENV)/bin/airgap-llm demo

demo-down: setup
	$(VENV)/bin/airgap-llm demo --down

clean:
	rm -rf build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
