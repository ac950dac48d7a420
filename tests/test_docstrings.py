"""Every ``>>>`` example in the dasl_tf package runs and prints what its docstring shows."""
import doctest
import importlib
import pkgutil

import pytest

import dasl_tf

# Top-level packages of the optional extras (setup.py's extras_require): a module
# that needs one is skipped where it is not installed.
# Packages of the extras and of the TFX environment (constraints/tfx.txt).
_OPTIONAL_PACKAGES = ("apache_beam", "tfx", "tensorflow_model_analysis")
_OPTION_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names():
  return sorted(name for _, name, _ in pkgutil.walk_packages(dasl_tf.__path__, "dasl_tf."))


@pytest.mark.parametrize("module_name", ["dasl_tf"] + _module_names())
def test_docstring_examples(module_name):
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    if (e.name or "").split(".")[0] in _OPTIONAL_PACKAGES:
      pytest.skip(f"{module_name} needs the optional package {e.name}")
    raise
  runner = doctest.DocTestRunner(optionflags=_OPTION_FLAGS)
  report = []
  for test in doctest.DocTestFinder().find(module, module_name):
    runner.run(test, out=report.append)
  assert not runner.failures, "".join(report)
