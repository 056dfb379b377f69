# Every target sets itself up on a fresh machine: the virtual environment lives in .venv
# and is rebuilt only when pyproject.toml or the pinned versions change. `make demo`
# installs the library and its demo extra only; `make test`, `make bench` and
# `make dashboards` add the rest (the dev extra, the exporters, the dashboards) on top.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The exact versions of every dependency (pyproject.toml holds the allowed ranges).
# --no-compile: Python compiles what it imports on first use, not all of scipy and
# scikit-learn up front (a third of the demo's set-up time, 80 MB of .venv).
PINNED := constraints/pinned.txt
PIP_INSTALL := $(BIN)/python -m pip install --quiet --no-compile --constraint $(PINNED)
# ...except what each mlobs process imports at its start (the warehouse writer, every CLI
# command): without bytecode on disk (PYTHONDONTWRITEBYTECODE, as in many container
# images) each start compiled SQLAlchemy, alembic and psycopg again, 1.1 s of CPU per
# warehouse writer. About 19 MB and 1.5 s (`ls -d` leaves out a package not installed).
STARTUP_PACKAGES := sqlalchemy alembic mako psycopg pygments tenacity duckdb
COMPILE_STARTUP := $(BIN)/python -m compileall -q -j 0 mlobs \
	$$(ls -d $(addprefix $(VENV)/lib/python3*/site-packages/,$(STARTUP_PACKAGES)) 2>/dev/null)
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean prometheus-tools browser-tools dashboards

EXPORTERS := exporters/mlobs-otel exporters/mlobs-prometheus

# promtool and the Prometheus server (Debian's `prometheus` package) for the exporter's
# tests only (`make test`); installed once when missing (as root), without starting the
# package's daemon.
prometheus-tools:
	@command -v promtool >/dev/null 2>&1 || sh exporters/mlobs-prometheus/deploy/install-prometheus.sh

# Debian's Chromium for the browser tests (tests/web/test_browser.py, `make test`);
# installed once when missing (as root). Playwright drives it: no browser download.
browser-tools:
	@command -v chromium >/dev/null 2>&1 || sh tests/support/install-chromium.sh

$(DEMO_STAMP): pyproject.toml $(PINNED)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e '.[demo]'
	$(COMPILE_STARTUP) >/dev/null
	touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP) $(addsuffix /pyproject.toml,$(EXPORTERS)) dashboards/pyproject.toml
	$(PIP_INSTALL) -e '.[dev]' $(addprefix -e ,$(EXPORTERS))
	# grafana-foundation-sdk needs Python 3.11; on 3.10 the dashboard tests skip.
	if $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
		$(PIP_INSTALL) -e 'dashboards[lint]'; \
	else echo "dashboards/ needs Python 3.11 or newer: not installed"; fi
	touch $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/mlobs demo

test: $(STAMP) prometheus-tools browser-tools
	$(BIN)/python -m pytest

# Regenerate dashboards/generated/*.json from the code in dashboards/, then lint them.
dashboards: $(STAMP)
	$(BIN)/python -m mlobs_dashboards generate
	$(BIN)/python -m mlobs_dashboards lint

bench: $(STAMP)
	$(BIN)/python tests/perf/run_benchmarks.py

clean:
	rm -rf $(VENV) mlobs-data dist build .pytest_cache
