"""The layers as Keras 2 (``tf_keras``) classes, whatever ``TF_USE_LEGACY_KERAS`` says.

Each class is a thin shell over the body in its module (:mod:`dasl_tf.layers.shell`),
registered for tf_keras serialization as ``"dasl_tf>Name"``. Importing this
module does not change which Keras ``tf.keras`` resolves to.

Example:
  >>> import tf_keras
  >>> from dasl_tf.layers import keras2
  >>> issubclass(keras2.MLP, tf_keras.layers.Layer)
  True
"""
import sys

import tf_keras

from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
from dasl_tf import keras_select
from dasl_tf.layers import (autoencoder, dual_attention, dual_embedding, interaction, mlp,
                            sequence, shell)

KERAS = keras_select.KERAS2
keras = tf_keras

_this = sys.modules[__name__]
_register = tf_keras.utils.register_keras_serializable
_Layer = tf_keras.layers.Layer

CheckpointedDropout = shell.make_shell(_this, mlp.CheckpointedDropoutBody, _Layer, _register)
MLP = shell.make_shell(_this, mlp.MLPBody, _Layer, _register)
FeatureAutoencoder = shell.make_shell(_this, autoencoder.FeatureAutoencoderBody, _Layer, _register)
OrthogonalityRegularizer = shell.make_shell(
    _this, dual_embedding.OrthogonalityRegularizerBody, tf_keras.regularizers.Regularizer,
    _register)
OrthogonalRetraction = shell.make_shell(
    _this, dual_embedding.OrthogonalRetractionBody, tf_keras.constraints.Constraint, _register)
DualEmbedding = shell.make_shell(_this, dual_embedding.DualEmbeddingBody, _Layer, _register)
SequenceEncoder = shell.make_shell(_this, sequence.SequenceEncoderBody, _Layer, _register)
DualAttention = shell.make_shell(_this, dual_attention.DualAttentionBody, _Layer, _register)
CandidateInteraction = shell.make_shell(_this, interaction.CandidateInteractionBody, _Layer,
                                        _register)
