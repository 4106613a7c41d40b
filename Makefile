# Ringfence: `make run` starts the gateway and the web UI; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config.example.toml
# Debian packages the gateway and the test suite use (real SIP peers, audio tools, browser, DB).
APT_RUN := espeak-ng sox
APT_TEST := kamailio kamailio-sqlite-modules baresip sip-tester chromium postgresql systemd faketime

.PHONY: run test venv venv-test deps prompts translations lint typecheck bench clean

# `make run` installs only what runs (a Pi has no use for Playwright, mypy or ruff: the test
# extras are ~400 MB); `make test` adds the test extras on top of the same venv.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test

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

# The suite runs on TEST_WORKERS processes (pytest-xdist); each test file stays in one, so a
# module's Kamailio or PostgreSQL is started once. Most tests wait on a server more than they
# compute: two processes halve the time on two cores. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: deps venv-test prompts
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

# Re-extract the messages, merge them into the French catalogs and compile them. The .po and
# .mo files are committed (a fresh clone, `make run` and `make install` need no build step);
# run this after changing a message, translate what `msgstr ""` it leaves, run it again.
# tests/unit/test_catalogs.py fails on a message without French or a .mo older than its .po.
BABEL_KEYWORDS := -k _n:1,2 -k _p:1c,2 -k Nn_:1,2
translations: venv
	@for pkg in gateway web; do \
	  $(VENV)/bin/pybabel -q extract -F $$pkg/translations/babel.cfg $(BABEL_KEYWORDS) \
	    --no-location --sort-output --project Ringfence -o $$pkg/translations/messages.pot . && \
	  if [ -f $$pkg/translations/fr/LC_MESSAGES/messages.po ]; then \
	    $(VENV)/bin/pybabel -q update -i $$pkg/translations/messages.pot -d $$pkg/translations \
	      -l fr --no-fuzzy-matching --ignore-pot-creation-date --ignore-obsolete; \
	  else $(VENV)/bin/pybabel -q init -i $$pkg/translations/messages.pot \
	      -d $$pkg/translations -l fr; fi && \
	  $(VENV)/bin/pybabel compile -d $$pkg/translations -l fr --statistics; \
	done

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
