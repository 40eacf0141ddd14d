# airgap-llm: the two commands a new user needs are `make demo` (the main job on the embedded default)
# and `make test` (everything CI runs). Both do their own set-up on a fresh machine.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
ROLE ?=

.PHONY: help setup test unit lint syntax molecule e2e demo demo-down clean

help:
	@echo "make setup     create .venv, install the package and test tools, host packages for the tests"
	@echo "make test      unit + integration tests, lint, playbook syntax, Molecule scenarios, e2e"
	@echo "make demo      local systemd target with no route out, tiny CPU bundle, install, validate"
	@echo "make molecule [ROLE=name]   Molecule scenarios (all roles, or one)"
	@echo "make lint      ansible-lint (production profile), yamllint, ruff, mypy"

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
	$(VENV)/bin/ruff check src tests bench filter_plugins
	$(VENV)/bin/mypy

molecule: setup
	@if [ -x tests/hosts/molecule-run ]; then tests/hosts/molecule-run $(ROLE); else echo "no molecule runner"; exit 1; fi

e2e: setup
	@if [ -d tests/e2e ] && ls tests/e2e/test_*.py >/dev/null 2>&1; then $(VENV)/bin/pytest tests/e2e; else echo "no e2e tests yet"; fi

test: unit lint syntax molecule e2e

demo: setup
	$(VENV)/bin/airgap-llm demo

demo-down: setup
	$(VENV)/bin/airgap-llm demo --down

clean:
	rm -rf build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
