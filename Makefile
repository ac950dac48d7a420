# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON_FOR_VENV := $(shell for p in python3.11 python3.12 python3.10 python3; do \
  c=$$(command -v $$p) || continue; \
  $$c -c 'import sys; sys.exit(0 if (3,10) <= sys.version_info[:2] <= (3,12) else 1)' 2>/dev/null && { echo $$c; break; }; done)
# The TFX environment's (`make tfx`): 3.13 too (TensorFlow 2.21, NumPy 2; Debian 13 has only it).
PYTHON_FOR_TFX := $(shell for p in python3.11 python3.12 python3.13 python3.10 python3; do \
  c=$$(command -v $$p) || continue; \
  $$c -c 'import sys; sys.exit(0 if (3,10) <= sys.version_info[:2] <= (3,13) else 1)' 2>/dev/null && { echo $$c; break; }; done)
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONUNBUFFERED := 1
comma := ,

.PHONY: venv demo test test-slow test-tf221 clean tfx tfx-debian13

# $(call install_venv,DIR,CONSTRAINTS,EXTRAS): a virtual environment at DIR with dasl_tf
# installed editable with EXTRAS ("remote,beam,dev"), every package pinned by CONSTRAINTS.
define install_venv
	@if [ -z "$(PYTHON_FOR_VENV)" ]; then echo "error: dasl_tf needs Python 3.10, 3.11 or 3.12 (3.11 preferred); none was found on PATH." >&2; exit 1; fi
	@echo "==> creating $(1) with $(PYTHON_FOR_VENV)"
	$(PYTHON_FOR_VENV) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip
	@echo "==> installing dasl_tf[$(3)] pinned by $(2) (a few minutes on a fresh machine)"
	$(1)/bin/python -m pip install --quiet --progress-bar off -c $(2) -e '.[$(3)]'
	touch $(1)/.installed
endef

$(VENV)/.installed: setup.py constraints/default.txt
	$(call install_venv,$(VENV),constraints/default.txt,remote$(comma)beam$(comma)dev)

venv: $(VENV)/.installed

demo: venv
	$(PY) -m dasl_tf.pipelines.demo

# The suite in one pytest process per core (pytest-xdist), a test file per process at a time,
# so that a file's shared fixtures are built once. A test (its fixtures included) that runs
# past TEST_TIMEOUT seconds fails (pytest-timeout) instead of blocking the suite.
TEST_WORKERS ?= auto
TEST_TIMEOUT ?= 600
SLOW_TEST_TIMEOUT ?= 1800

test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --timeout $(TEST_TIMEOUT) -m "not slow" tests

test-slow: venv
	$(PY) -m pytest -q --timeout $(SLOW_TEST_TIMEOUT) -m slow tests

clean:
	rm -rf $(VENV) $(TF221_VENV) $(TFX_VENV) build *.egg-info .pytest_cache demo_output

# `make tfx`: the TFX 1.21 pipeline (pipelines/tfx_pipeline.py) in its own environment,
# .venv-tfx, where the platform allows it (glibc >= 2.39, Python 3.10-3.13): its tests,
# then the pipeline on a small synthetic dataset (demo_output/tfx). Elsewhere it prints
# one line saying what is missing and succeeds.
TFX_VENV := .venv-tfx
TFX_PY := $(TFX_VENV)/bin/python
TFX_OUTPUT := demo_output/tfx

tfx:
	@if ! missing=$$(bash tools/tfx_platform_check.sh "$(PYTHON_FOR_TFX)"); then \
	  echo "make tfx: skipped: $$missing"; exit 0; fi; \
	set -e; \
	if [ ! -f $(TFX_VENV)/.installed ] || [ setup.py -nt $(TFX_VENV)/.installed ] \
	    || [ constraints/tfx.txt -nt $(TFX_VENV)/.installed ]; then \
	  echo "==> creating $(TFX_VENV) with $(PYTHON_FOR_TFX)"; \
	  $(PYTHON_FOR_TFX) -m venv $(TFX_VENV); \
	  $(TFX_PY) -m pip install --quiet --upgrade pip; \
	  echo "==> installing dasl_tf with TFX 1.21 (constraints/tfx.txt; several minutes)"; \
	  $(TFX_PY) -m pip install --quiet --progress-bar off -c constraints/tfx.txt \
	    -e '.[dev]' tfx==1.21.0; \
	  touch $(TFX_VENV)/.installed; \
	fi; \
	echo "==> TFX tests"; \
	$(TFX_PY) -m pytest -q tests/test_tfx_pipeline.py tests/test_tfx_trainer.py; \
	echo "==> TFX pipeline on a small synthetic dataset ($(TFX_OUTPUT))"; \
	rm -rf $(TFX_OUTPUT); \
	$(TFX_PY) -m dasl_tf.pipelines.tfx_pipeline --output_dir=$(TFX_OUTPUT) \
	  --synthetic_users=500 --train_steps=300

# `make tfx-debian13`: `make tfx` natively in a Debian 13 root, for a host whose glibc is older
# than TFX 1.21's (Debian 12). tools/debian13_root.sh builds the root once (debootstrap into
# .debian13/; needs root), mounts the repository at /repo and runs there, with chroot, `make tfx`
# with its environment at /opt/venv-tfx inside the root (Python 3.13). Slow (the first run
# downloads a Debian base system, then TensorFlow and TFX); not part of `make test`.
DEBIAN13_TFX_VENV := /opt/venv-tfx

tfx-debian13:
	bash tools/debian13_root.sh make --no-print-directory tfx TFX_VENV=$(DEBIAN13_TFX_VENV)

# `make test-tf221`: the default suite on TensorFlow 2.21, the TFX environment's stack
# (constraints/tfx.txt) without TFX, which installs wherever TensorFlow 2.21 does (Debian 12
# included). tensorflow-io is not in it, so the s3:// test skips, saying so.
TF221_VENV := .venv-tf221
TF221_PY := $(TF221_VENV)/bin/python

$(TF221_VENV)/.installed: setup.py constraints/tfx.txt
	$(call install_venv,$(TF221_VENV),constraints/tfx.txt,beam$(comma)dev)

test-tf221: $(TF221_VENV)/.installed
	$(TF221_PY) -m pytest -q -rs -n $(TEST_WORKERS) --dist loadfile --timeout $(TEST_TIMEOUT) -m "not slow" tests
