"""dasl_tf: Dual Attentive Sequential Learning (KDD'21) for cross-domain CTR prediction.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow, which
TensorFlow Recommenders needs: it sets ``TF_USE_LEGACY_KERAS=1`` before
TensorFlow is first imported. If TensorFlow was already imported and bound
``tf.keras`` to Keras 3, the import fails with an error that says what to do.

Importing this package does not import TensorFlow, so ``dasl-prepare``
(``dasl_tf.prepare``) runs without it. The modules that build or fit Keras
models import :mod:`dasl_tf.autograph_rules`, which keeps AutoGraph from
transpiling tf_keras's own code.

Public modules:
  * ``dasl_tf.config``: typed configuration dataclasses (JSON round-trip).
  * ``dasl_tf.features``: the one feature spec shared by writer, reader and serving.
  * ``dasl_tf.data``: tf.data input functions over the TFRecords.
  * ``dasl_tf.layers``: Keras layers of the model (autoencoder, dual embedding, ...).
  * ``dasl_tf.models``: the two-headed DASL model, its ablations and baselines.
  * ``dasl_tf.metrics``: AUC and HR@K per head.
  * ``dasl_tf.prepare``: ``dasl-prepare``, raw logs -> TFRecords (no TensorFlow).
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


_select_legacy_keras()
