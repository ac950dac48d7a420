"""Keeps AutoGraph from transpiling tf_keras's own code, as TensorFlow does for ``keras``.

TensorFlow's AutoGraph rules skip the ``keras`` package but not ``tf_keras``,
so the first ``fit``/``evaluate``/``predict`` of every process re-transpiled
Keras internals (about a minute on two busy CPU cores, for any model). This
module adds ``DoNotConvert("tf_keras")`` to AutoGraph's conversion rules when
it is imported. The ``call`` methods of dasl_tf's layers are still converted:
Keras converts them explicitly.

The rule lives here rather than in ``dasl_tf/__init__.py`` because installing it
imports TensorFlow, and ``dasl-prepare`` (``dasl_tf.prepare``) must run without
TensorFlow. The modules that build or fit Keras models (``dasl_tf.layers``,
``dasl_tf.models``, ``dasl_tf.training``, ``dasl_tf.metrics``) import this one
for its side effect:

  from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
"""
# Importing this module imports the dasl_tf package first, which sets
# TF_USE_LEGACY_KERAS=1 before TensorFlow's first import.
# pylint: disable=g-direct-tensorflow-import
from tensorflow.python.autograph.core import config as autograph_config

# pylint: enable=g-direct-tensorflow-import

KERAS_PACKAGE = "tf_keras"


def has_keras_rule() -> bool:
  """Whether AutoGraph's rules already leave ``tf_keras`` unconverted."""
  return any(isinstance(rule, autograph_config.DoNotConvert) and rule.matches(KERAS_PACKAGE)
             for rule in autograph_config.CONVERSION_RULES)


def leave_keras_code_unconverted() -> None:
  """Adds ``DoNotConvert("tf_keras")`` to AutoGraph's rules, once (idempotent)."""
  if not has_keras_rule():
    autograph_config.CONVERSION_RULES += (autograph_config.DoNotConvert(KERAS_PACKAGE),)


leave_keras_code_unconverted()
