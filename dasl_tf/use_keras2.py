"""Importing this module selects Keras 2 (tf_keras) for TensorFlow: :func:`dasl_tf.keras_select.require_keras2`.

The batch jobs, ``dasl-export`` and :mod:`dasl_tf.models` (TensorFlow
Recommenders) import it before TensorFlow's first import:

  from dasl_tf import use_keras2  # noqa: F401  pylint: disable=unused-import

It raises ImportError, saying what to do, when ``tf.keras`` is already bound
to Keras 3 in the process.
"""
from dasl_tf import keras_select

keras_select.require_keras2()
