"""DIN: Deep Interest Network (Zhou et al., KDD 2018), one independent model per domain.

Per domain, for user ``u``, own-domain history ``i_1..i_T`` and candidate ``q``::

  v_u   = Σ_j a(e_{i_j}, e_q) · e_{i_j}            (local activation unit, eq. 3;
                                                    weights are not normalised)
  logit = MLP([e_u ; v_u ; e_q])

``a`` is :class:`~dasl_tf.models.baselines.blocks.TargetAttentionPooling` with
``normalization="none"``. The two domains' towers share no parameter.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras

from dasl_tf.models.baselines import blocks
from dasl_tf.models.registry import register


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class DinTower(tf_keras.layers.Layer):
  """DIN for one domain: user embedding, attention-pooled history, candidate, MLP.

  Args:
    num_users: user vocabulary size (reserved ids included).
    num_items: item vocabulary size of the domain (reserved ids included).
    embedding_dim: d, the size of user and item embeddings.
    attention_units: hidden layer sizes of the local activation unit.
    hidden_units: hidden layer sizes of the prediction MLP.
    dropout: dropout rate in the prediction MLP.
    l2: L2 penalty on embeddings and kernels.

  Call args:
    user_ids: int64 ``[B]``.
    history: int64 ``[B, T]`` item ids of the domain, left-padded with 0.
    candidates: int64 ``[B, C]`` item ids of the domain.

  Output shape: ``[B, C]`` logits.
  """

  def __init__(self, num_users: int, num_items: int, embedding_dim: int,
               attention_units=(32,), hidden_units=(64, 32), dropout: float = 0.0,
               l2: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.num_users = num_users
    self.num_items = num_items
    self.embedding_dim = embedding_dim
    self.attention_units = tuple(attention_units)
    self.hidden_units = tuple(hidden_units)
    self.dropout = dropout
    self.l2 = l2
    blocks.check_embedding_sizes(num_users, embedding_dim, "users")
    blocks.check_embedding_sizes(num_items, embedding_dim, "items")

  def build(self, input_shape):
    self._users = blocks.id_embedding(self.num_users, self.embedding_dim, self.l2, "users")
    self._items = blocks.id_embedding(self.num_items, self.embedding_dim, self.l2, "items")
    self._attention = blocks.TargetAttentionPooling(
        self.attention_units, normalization="none", activation="sigmoid", l2=self.l2,
        name="activation_unit")
    self._mlp = blocks.logit_mlp(self.hidden_units, self.dropout, self.l2, "mlp")
    super().build(input_shape)

  def call(self, user_ids: tf.Tensor, history: tf.Tensor, candidates: tf.Tensor,
           training: bool = False) -> tf.Tensor:
    candidate_emb = self._items(candidates)
    interest = self._attention(candidate_emb, self._items(history),
                               blocks.history_mask(history))
    user_emb = blocks.tile_to_candidates(self._users(user_ids), candidates)
    logits = self._mlp(tf.concat([user_emb, interest, candidate_emb], axis=-1),
                       training=training)
    return tf.squeeze(logits, -1)

  def get_config(self):
    return {**super().get_config(), "num_users": self.num_users, "num_items": self.num_items,
            "embedding_dim": self.embedding_dim, "attention_units": self.attention_units,
            "hidden_units": self.hidden_units, "dropout": self.dropout, "l2": self.l2}


@register("din")
@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class Din(blocks.SingleDomainRanker):
  """DIN per domain; the activation unit has ``attention_dim`` hidden units."""

  def make_tower(self, num_items: int, name: str) -> DinTower:
    c = self.model_config
    return DinTower(c.num_users, num_items, c.embedding_dim, attention_units=(c.attention_dim,),
                    hidden_units=c.hidden_units, dropout=c.dropout, l2=c.l2, name=name)
