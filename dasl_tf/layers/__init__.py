"""Keras layers of DASL (paper section 3), usable in any tf_keras model."""
from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
from dasl_tf.layers.autoencoder import FeatureAutoencoder
from dasl_tf.layers.dual_attention import DualAttention, masked_attention
from dasl_tf.layers.dual_embedding import (DualEmbedding, OrthogonalityRegularizer,
                                           OrthogonalRetraction, orthogonality_residual)
from dasl_tf.layers.interaction import CandidateInteraction
from dasl_tf.layers.mlp import MLP
from dasl_tf.layers.sequence import SequenceEncoder
