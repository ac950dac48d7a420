"""dasl_tf: Dual Attentive Sequential Learning (KDD'21) for cross-domain CTR prediction.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow, which
TensorFlow Recommenders needs: it sets ``TF_USE_LEGACY_KERAS=1`` before
TensorFlow is first imported. If TensorFlow was already imported and bound
``tf.keras`` to Keras 3, the import fails with an error that says what to do.

Public modules:
  * ``dasl_tf.config``: typed configuration dataclasses (JSON round-trip).
  * ``dasl_tf.features``: the one feature spec shared by writer, reader and serving.
  * ``dasl_tf.data``: tf.data input functions over the TFRecords.
  * ``dasl_tf.layers``: Keras layers of the model (autoencoder, dual embedding, ...).
  * ``dasl_tf.models``: the two-headed DASL model, its ablations and baselines.
  * ``dasl_tf.metrics``: AUC and HR@K per head.
"""
import os
import sys

__version__ = "0.1.0"


def _select_legacy_keras() -> None:
  """Makes ``tf.keras`` resolve to Keras 2 (tf_keras), or explains why it cannot."""
  os.environ["TF_USE_LEGACY_KERAS"] = "1"
  if "tensorflow" not in sys.modules:
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  bound_to = tf.keras.layers.Layer.__module__.split(".")[0]
  if bound_to != "tf_keras":
    raise ImportError(
        "dasl_tf needs Keras 2 (tf_keras), but TensorFlow was imported before dasl_tf "
        f"and already bound tf.keras to {bound_to!r} (Keras 3). Set the environment "
        "variable TF_USE_LEGACY_KERAS=1 before the first `import tensorflow` (for "
        "example `export TF_USE_LEGACY_KERAS=1`), or import dasl_tf first.")


def _leave_keras_code_unconverted() -> None:
  """Keeps AutoGraph from transpiling tf_keras's own code, as TensorFlow does for ``keras``.

  TensorFlow's AutoGraph rules skip the ``keras`` package but not ``tf_keras``,
  so the first ``fit``/``evaluate``/``predict`` of every process re-transpiled
  Keras internals (about a minute on two busy CPU cores, for any model). The
  ``call`` methods of dasl_tf's layers are still converted: Keras converts them
  explicitly.
  """
  from tensorflow.python.autograph.core import config as autograph_config  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import

  autograph_config.CONVERSION_RULES += (autograph_config.DoNotConvert("tf_keras"),)


_select_legacy_keras()
_leave_keras_code_unconverted()
