# Ringfence: `make run` starts the gateway and the web UI; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config.example.toml
# Debian packages the gateway and the test suite use (real SIP peers, audio tools, browser, DB).
APT_RUN := espeak-ng sox
APT_TEST := kamailio kamailio-sqlite-modules baresip sip-tester chromium postgresql systemd faketime

.PHONY: run test venv deps prompts lint typecheck bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Installs Debian packages when they are missing (needs root or sudo; skipped when present).
deps:
	@missing=""; for p in $(APT_RUN) $(if $(filter test,$(MAKECMDGOALS)),$(APT_TEST)); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

prompts: venv
	@if [ -f gateway/prompts/generate.py ]; then $(PY) -m gateway.prompts.generate; fi

run: deps venv prompts
	$(PY) -m gateway --config $(CONFIG) db upgrade
	$(PY) -m gateway --config $(CONFIG) check-config
	bash scripts/run-both.sh $(PY) $(CONFIG)

test: deps venv prompts
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) bench/decide.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Appliance install on Debian 12 / Raspberry Pi OS (run as root): see docs/install-pi.md.
# DESTDIR, PREFIX, SYSCONFDIR, STATEDIR... are passed through the environment.
.PHONY: install upgrade uninstall
install:
	bash scripts/install.sh

upgrade:
	bash scripts/upgrade.sh

uninstall:
	bash scripts/uninstall.sh
