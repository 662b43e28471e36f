# Every target bootstraps .venv from nothing (Python 3.11+ as python3).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint docs bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(PY) examples/podcast_demo.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The documentation site, built strictly: a broken link or reference fails the build.
# (Not --quiet: it hides the warnings, and then --strict lets them pass.)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

test: lint docs
	$(PY) -m pytest

# Overhead per request side by side with sentry-sdk and peers (about 15 minutes);
# installs wrk with apt-get when missing. BENCH_ARGS="--json" etc.: see --help.
bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)
