"""CoNet: Collaborative Cross Networks (Hu, Zhang and Yang, CIKM 2018).

Two base networks, one per domain, joined by cross connections: at every hidden
layer ``l`` each network also receives the other's activations through a
transfer matrix ``H_l`` shared by both directions::

  a_A^{l+1} = ReLU(W_A^l a_A^l + H^l a_B^l + b_A^l)
  a_B^{l+1} = ReLU(W_B^l a_B^l + H^l a_A^l + b_B^l)
  logit_A = h_A^T a_A^L,   logit_B = h_B^T a_B^L

Inputs are ``a_A^0 = [e_u ; e_{item A}]`` and ``a_B^0 = [e_u ; e_{item B}]`` with
one user embedding shared by the domains. CoNet trains on (user, item A, item B)
triples; an example here has one target item, so the other network's item is
the mean embedding of the user's history in that domain (zeros without history).
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.layers import mlp
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.models.baselines import blocks
from dasl_tf.models.registry import register


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class CrossConnectionNetwork(tf_keras.layers.Layer):
  """Two MLPs with cross connections (CoNet), ending in one logit each.

  Example:
    >>> net = CrossConnectionNetwork(hidden_units=(8, 4))
    >>> logit_a, logit_b = net(tf.ones([2, 3, 6]), tf.ones([2, 3, 6]))
    >>> logit_a.shape
    TensorShape([2, 3])

  Args:
    hidden_units: hidden layer sizes, the same in both networks (at least one).
    dropout: dropout rate after each hidden layer.
    l2: L2 penalty on the kernels and transfer matrices.

  Call args:
    inputs_a: ``[..., n]`` input of network A.
    inputs_b: ``[..., n]`` input of network B (same size as ``inputs_a``).

  Output: ``(logits_a, logits_b)``, each ``[...]``.
  """

  def __init__(self, hidden_units: Sequence[int], dropout: float = 0.0, l2: float = 0.0,
               **kwargs):
    super().__init__(**kwargs)
    if not hidden_units or any(int(u) < 1 for u in hidden_units):
      raise ValueError(f"hidden_units must be a non-empty list of sizes >= 1, got "
                       f"{tuple(hidden_units)}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    self.hidden_units = tuple(int(u) for u in hidden_units)
    self.dropout = dropout
    self.l2 = l2

  def build(self, input_shape):
    regularizer = blocks.l2_regularizer(self.l2)

    def dense(units, name, use_bias=True):
      return tf_keras.layers.Dense(units, use_bias=use_bias, kernel_regularizer=regularizer,
                                   name=name)

    self._own_a = [dense(u, f"a_{i}") for i, u in enumerate(self.hidden_units)]
    self._own_b = [dense(u, f"b_{i}") for i, u in enumerate(self.hidden_units)]
    self._cross = [dense(u, f"cross_{i}", use_bias=False)
                   for i, u in enumerate(self.hidden_units)]
    self._dropout = mlp.CheckpointedDropout(self.dropout)
    self._logit_a = dense(1, "logit_a")
    self._logit_b = dense(1, "logit_b")
    super().build(input_shape)

  def call(self, inputs_a: tf.Tensor, inputs_b: tf.Tensor, training: bool = False
           ) -> Tuple[tf.Tensor, tf.Tensor]:
    if inputs_a.shape[-1] != inputs_b.shape[-1]:
      raise ValueError(f"{self.name}: the two networks' inputs must have the same size, got "
                       f"{inputs_a.shape[-1]} and {inputs_b.shape[-1]}")
    hidden_a, hidden_b = inputs_a, inputs_b
    for own_a, own_b, cross in zip(self._own_a, self._own_b, self._cross):
      hidden_a, hidden_b = (tf.nn.relu(own_a(hidden_a) + cross(hidden_b)),
                            tf.nn.relu(own_b(hidden_b) + cross(hidden_a)))
      hidden_a = self._dropout(hidden_a, training=training)
      hidden_b = self._dropout(hidden_b, training=training)
    return (tf.squeeze(self._logit_a(hidden_a), -1), tf.squeeze(self._logit_b(hidden_b), -1))

  def get_config(self):
    return {**super().get_config(), "hidden_units": self.hidden_units,
            "dropout": self.dropout, "l2": self.l2}


@register("conet")
@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class CoNet(CrossDomainRanker):
  """CoNet in the two-headed frame: one cross network scores both domains."""

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    super().__init__(config, name=name, **kwargs)
    l2 = config.l2
    self.users = blocks.user_embedding(config)
    self.items_a, self.items_b = blocks.item_embeddings(config)
    self.network = CrossConnectionNetwork(config.hidden_units, dropout=config.dropout, l2=l2,
                                          name="cross_network")

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    user = blocks.tile_to_candidates(self.users(features[F.USER_ID]), candidates)

    def history_item(embeddings, history):
      pooled = blocks.masked_mean(embeddings(history), blocks.history_mask(history))
      return blocks.tile_to_candidates(pooled, candidates)

    candidate_a = tf.concat([user, self.items_a(candidates)], -1)
    candidate_b = tf.concat([user, self.items_b(candidates)], -1)
    context_a = tf.concat([user, history_item(self.items_a, features[F.HIST_A])], -1)
    context_b = tf.concat([user, history_item(self.items_b, features[F.HIST_B])], -1)
    logits_a, _ = self.network(candidate_a, context_b, training=training)
    _, logits_b = self.network(context_a, candidate_b, training=training)
    return logits_a, logits_b
