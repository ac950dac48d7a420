# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON_FOR_VENV := $(shell for p in python3.11 python3.12 python3.10 python3; do \
  c=$$(command -v $$p) || continue; \
  $$c -c 'import sys; sys.exit(0 if (3,10) <= sys.version_info[:2] <= (3,12) else 1)' 2>/dev/null && { echo $$c; break; }; done)
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-slow bench clean

$(VENV)/.installed: setup.py
	@if [ -z "$(PYTHON_FOR_VENV)" ]; then echo "error: dasl_tf needs Python 3.10, 3.11 or 3.12 (3.11 preferred); none was found on PATH." >&2; exit 1; fi
	@echo "==> creating $(VENV) with $(PYTHON_FOR_VENV)"
	$(PYTHON_FOR_VENV) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "==> installing dasl_tf and its pinned stack (a few minutes on a fresh machine)"
	$(PY) -m pip install --quiet --progress-bar off -e '.[beam,dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m dasl_tf.pipelines.demo

test: venv
	$(PY) -m pytest -q -m "not slow" tests

test-slow: venv
	$(PY) -m pytest -q -m slow tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_output
