"""Keras layers of DASL (paper section 3), for Keras 3 and Keras 2 models.

``from dasl_tf.layers import MLP`` (and each layer module's ``MLP``, ...) gives
the class of the Keras that ``tf.keras`` resolves to in this process, as
``tf.keras`` follows ``TF_USE_LEGACY_KERAS``: Keras 3 (``keras``) by default,
Keras 2 (``tf_keras``) where ``TF_USE_LEGACY_KERAS=1``. The classes of one
Keras whatever the process uses: :mod:`dasl_tf.layers.keras3` and
:mod:`dasl_tf.layers.keras2`. Importing this package never changes the
process's Keras; a layer of one Keras called by a model of the other raises
an error saying so (:func:`dasl_tf.keras_select.check_same_keras`).

Example:
  >>> from dasl_tf import keras_select
  >>> from dasl_tf import layers
  >>> layers.MLP.__module__ == keras_select.SHELL_MODULES[keras_select.active_keras()]
  True
"""
from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
from dasl_tf.layers import shell
from dasl_tf.layers.dual_attention import masked_attention
from dasl_tf.layers.dual_embedding import orthogonality_residual

LAYERS = ("FeatureAutoencoder", "DualEmbedding", "MultiDomainEmbedding", "SequenceEncoder",
          "DualAttention", "CandidateInteraction", "MLP", "CheckpointedDropout")
"""The layer classes, each in both shells."""
CLASSES = LAYERS + ("OrthogonalityRegularizer", "OrthogonalRetraction")
"""Every class of the shells (the layers, the regularizer and the constraint)."""

__all__ = [*CLASSES, "masked_attention", "orthogonality_residual"]
__getattr__ = shell.active_keras_classes(*CLASSES)


def __dir__():
  return sorted(set(globals()) | set(CLASSES))
