"""MiNet: Mixed Interest Network (Ouyang et al., CIKM 2020).

Three kinds of user interest, for target domain ``t`` and source domain ``s``:

* long-term interest across domains: the user embedding ``p_u``, shared by both
  domains;
* short-term source interest ``a_s``: item-level attention over the user's
  recent source-domain items ``r_j``, with a transfer matrix ``M`` because the
  candidate ``q`` lives in the other domain::

    α_j ∝ exp(h_s^T ReLU(W_s [r_j ; q ; p_u ; (M r_j) ⊙ q])),   a_s = Σ_j α_j r_j

* short-term target interest ``a_t``: the same over the target-domain history
  (without ``M``).

Interest-level attention weighs each interest, unnormalised::

  v_x = exp(g_x^T ReLU(V_x [q ; p_u ; a_s ; a_t]) + c_x)    for x in {u, s, t}
  logit = MLP([v_u p_u ; v_s a_s ; v_t a_t ; q])

MiNet trains the source and target domains jointly with shared embeddings; here
each domain is in turn the target of its own head (head A: target A, source B;
head B: target B, source A), and both heads share the user and item embeddings.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.models.baselines import blocks
from dasl_tf.models.registry import register

# exp() of an interest score is taken after clipping it to +-MAX_INTEREST_SCORE,
# so that an unnormalised weight cannot overflow.
MAX_INTEREST_SCORE = 10.0
NUM_INTERESTS = 3


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class MixedInterestHead(tf_keras.layers.Layer):
  """MiNet's prediction for one target domain: item-level and interest-level attention.

  Args:
    attention_units: hidden size of the item- and interest-level attention MLPs.
    hidden_units: hidden layer sizes of the prediction MLP.
    dropout: dropout rate in the prediction MLP.
    l2: L2 penalty on the kernels.

  Call args:
    candidates: candidate item embeddings ``[B, C, d]`` (target domain).
    user: user embeddings ``[B, d]``.
    source_items: ``[B, T, d]`` the user's source-domain history.
    source_mask: bool ``[B, T]``.
    target_items: ``[B, T, d]`` the user's target-domain history.
    target_mask: bool ``[B, T]``.

  Output shape: ``[B, C]`` logits.
  """

  def __init__(self, attention_units: int = 32, hidden_units: Sequence[int] = (64, 32),
               dropout: float = 0.0, l2: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if attention_units < 1:
      raise ValueError(f"attention_units must be >= 1, got {attention_units}")
    self.attention_units = attention_units
    self.hidden_units = tuple(hidden_units)
    self.dropout = dropout
    self.l2 = l2

  def build(self, candidates_shape):
    regularizer = blocks.l2_regularizer(self.l2)
    self._source_attention = blocks.TargetAttentionPooling(
        (self.attention_units,), normalization="softmax", transfer=True, l2=self.l2,
        name="source_attention")
    self._target_attention = blocks.TargetAttentionPooling(
        (self.attention_units,), normalization="softmax", l2=self.l2, name="target_attention")
    self._interest_hidden = [
        tf_keras.layers.Dense(self.attention_units, activation="relu",
                              kernel_regularizer=regularizer, name=f"interest_hidden_{i}")
        for i in range(NUM_INTERESTS)]
    self._interest_score = [
        tf_keras.layers.Dense(1, kernel_regularizer=regularizer, name=f"interest_score_{i}")
        for i in range(NUM_INTERESTS)]
    self._mlp = blocks.logit_mlp(self.hidden_units, self.dropout, self.l2, "mlp")
    super().build(candidates_shape)

  def call(self, candidates: tf.Tensor, user: tf.Tensor, source_items: tf.Tensor,
           source_mask: tf.Tensor, target_items: tf.Tensor, target_mask: tf.Tensor,
           training: bool = False) -> tf.Tensor:
    source_interest = self._source_attention(candidates, source_items, source_mask, user)
    target_interest = self._target_attention(candidates, target_items, target_mask, user)
    interests = (tf.repeat(user[:, None, :], tf.shape(candidates)[1], axis=1),
                 source_interest, target_interest)
    attention_input = tf.concat((candidates,) + interests, axis=-1)
    weighted = []
    for interest, hidden, score in zip(interests, self._interest_hidden, self._interest_score):
      logit = tf.clip_by_value(score(hidden(attention_input)),
                               -MAX_INTEREST_SCORE, MAX_INTEREST_SCORE)
      weighted.append(tf.exp(logit) * interest)
    logits = self._mlp(tf.concat(weighted + [candidates], axis=-1), training=training)
    return tf.squeeze(logits, -1)

  def get_config(self):
    return {**super().get_config(), "attention_units": self.attention_units,
            "hidden_units": self.hidden_units, "dropout": self.dropout, "l2": self.l2}


@register("minet")
@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class MiNet(CrossDomainRanker):
  """MiNet with each domain the target of one head; embeddings shared by the heads."""

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    super().__init__(config, name=name, **kwargs)
    l2 = config.l2
    self.users = blocks.user_embedding(config)
    self.items_a, self.items_b = blocks.item_embeddings(config)
    self.head_a, self.head_b = (
        MixedInterestHead(config.attention_dim, config.hidden_units, dropout=config.dropout,
                          l2=l2, name=head_name)
        for head_name in ("head_a", "head_b"))

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    user = self.users(features[F.USER_ID])
    hist_a, hist_b = features[F.HIST_A], features[F.HIST_B]
    items_a, mask_a = self.items_a(hist_a), blocks.history_mask(hist_a)
    items_b, mask_b = self.items_b(hist_b), blocks.history_mask(hist_b)
    logits_a = self.head_a(self.items_a(candidates), user, items_b, mask_b, items_a, mask_a,
                           training=training)
    logits_b = self.head_b(self.items_b(candidates), user, items_a, mask_a, items_b, mask_b,
                           training=training)
    return logits_a, logits_b
