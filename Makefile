# Every target bootstraps .venv from nothing (Python 3.11+ as python3).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SDK_PIN := constraints/sentry-sdk.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(SDK_PIN) | cksum | cut -d' ' -f1)

.PHONY: demo test lint docs bench release sdk-range

$(STAMP): pyproject.toml $(SDK_PIN)
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" -c $(SDK_PIN)
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
	.ci/system_tools
	$(PY) -m pytest
	$(MAKE) release sdk-range

# The package as PyPI serves it: sdist and wheel built, twine-checked, the wheel
# installed alone in a fresh environment and smoke-tested, each extra imported.
release: $(STAMP)
	.ci/release_check

# The core and adapter tests against the oldest and the newest supported
# sentry-sdk (constraints/sentry-sdk-*.txt), each in its own environment.
sdk-range: $(STAMP)
	.ci/sdk_range

# Overhead per request side by side with sentry-sdk and peers (about 20 minutes);
# installs wrk with apt-get when missing. BENCH_ARGS="--json" etc.: see --help.
bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)
