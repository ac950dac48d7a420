"""Every ``>>>`` example of every installed module runs and prints what its docstring shows.

The installed package is ``dasl_tf`` plus ``dasl_tf.pipelines`` and
``dasl_tf.serving``, whose sources live in ``pipelines/`` and ``serving/``
(setup.py's ``package_dir``), so each is walked from its own path.
"""
import doctest
import importlib
import pkgutil

import pytest

import dasl_tf
import dasl_tf.pipelines
import dasl_tf.serving

# Top-level packages of the optional extras (setup.py's extras_require): a module
# that needs one is skipped where it is not installed.
# Packages of the extras and of the TFX environment (constraints/tfx.txt).
_OPTIONAL_PACKAGES = ("apache_beam", "tfx", "tensorflow_model_analysis")
_OPTION_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


_PACKAGES = (dasl_tf, dasl_tf.pipelines, dasl_tf.serving)


def _module_names():
  return sorted({name for package in _PACKAGES
                 for _, name, _ in pkgutil.walk_packages(package.__path__,
                                                         package.__name__ + ".")})


def test_every_installed_package_is_walked():
  names = _module_names()
  for module in ("dasl_tf.layers.dual_attention", "dasl_tf.pipelines.train",
                 "dasl_tf.serving.export"):
    assert module in names


@pytest.mark.parametrize("module_name", [package.__name__ for package in _PACKAGES]
                         + _module_names())
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
