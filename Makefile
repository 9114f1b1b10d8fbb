# make lab   - create .venv, install, open JupyterLab on the quickstart notebook
# make test  - create .venv, install what the tests need, run the whole suite
# make lint  - ruff and mypy (make test runs them first)
# make fuzz  - the fuzz tests, long and randomised
# make bench - run the benchmarks and print their figures
# make js    - rebuild the widget bundle (src/chatkit_lab/widget/static/widget.js) with esbuild
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: lab test lint fuzz bench install clean js browser

$(PY):
	@test -n "$(PYTHON)" || { echo "error: python3.11 not found (Python 3.11 or newer is required)"; exit 1; }
	@# Debian's python needs the python3-venv package for `-m venv`; install it when we can.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); \
	  else echo "error: '$(PYTHON) -m venv' failed; install python3-venv (sudo apt-get install python3-venv)"; exit 1; fi; }
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[lab,test]"
	@touch $(STAMP)

install: $(STAMP)

# JupyterLab refuses to start as root (containers, CI images, cloud notebooks) without --allow-root.
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
LAB_ARGS ?=

lab: $(STAMP)
	cd notebooks && ../$(VENV)/bin/jupyter lab $(ALLOW_ROOT) $(LAB_ARGS) 01_quickstart.ipynb

# Browser tests need Debian's Chromium, the widget's unit tests Node, the PostgresStore tests
# Debian's PostgreSQL server: install them when we can; otherwise those tests are skipped with a
# loud message (and fail under CI=true).
browser:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="chromium"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) || echo "!!! apt-get could not install $$missing !!!"; \
	  else echo "!!! $$missing missing and cannot be installed here: their tests will be skipped !!!"; fi; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts js/test
	$(VENV)/bin/mypy

test: $(STAMP) browser lint
	$(PY) -m pytest

# A longer, randomised run of the property-based fuzz tests (the suite runs a bounded one).
fuzz: $(STAMP)
	FUZZ_EXAMPLES=5000 FUZZ_RANDOM=1 $(PY) -m pytest -q tests/test_fuzz.py

# Peers the benchmarks compare against live in their own virtualenv, never in .venv.
PEERS := .venv-bench
$(PEERS)/.installed:
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet inspect-ai==0.3.285
	@touch $@

bench: $(STAMP) $(PEERS)/.installed
	$(PY) benchmarks/run.py --peers $(PEERS)

js/node_modules/.installed: js/package.json js/package-lock.json
	cd js && npm ci --no-audit --no-fund
	@touch $@

js: js/node_modules/.installed
	cd js && node build.mjs

clean:
	rm -rf $(VENV) .pytest_cache
