"""dasl_tf: Dual Attentive Sequential Learning (KDD'21) for cross-domain CTR prediction.

Importing this package changes nothing about Keras: ``dasl_tf.layers`` gives
the layers of the Keras ``tf.keras`` resolves to (Keras 3, or Keras 2 =
``tf_keras`` where ``TF_USE_LEGACY_KERAS=1``), ``dasl_tf.keras3`` a Keras 3 DASL
model. What needs Keras 2 (TensorFlow Recommenders: ``dasl_tf.models``, the jobs,
``dasl-export``) selects it itself before TensorFlow's first import
(:mod:`dasl_tf.keras_select`), and says so when that is no longer possible.

Importing this package does not import TensorFlow, so ``dasl-prepare``
(``dasl_tf.prepare``) runs without it. The modules that build or fit Keras
models import :mod:`dasl_tf.autograph_rules`, which keeps AutoGraph from
transpiling tf_keras's own code.

Public modules:
  * ``dasl_tf.config``: typed configuration dataclasses (JSON round-trip).
  * ``dasl_tf.features``: the one feature spec shared by writer, reader and serving.
  * ``dasl_tf.data``: tf.data input functions over the TFRecords.
  * ``dasl_tf.layers``: Keras layers of the model (autoencoder, dual embedding, ...),
    for Keras 2 and Keras 3 (``dasl_tf.layers.keras2`` / ``dasl_tf.layers.keras3``).
  * ``dasl_tf.keras3``: a Keras 3 DASL model (compile / fit / save), without TFRS.
  * ``dasl_tf.models``: the two-headed DASL model (TFRS, Keras 2), its ablations and baselines.
  * ``dasl_tf.metrics``: AUC and HR@K per head.
  * ``dasl_tf.prepare``: ``dasl-prepare``, raw logs -> TFRecords (no TensorFlow).
"""
__version__ = "0.1.0"
