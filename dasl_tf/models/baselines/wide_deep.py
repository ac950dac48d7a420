"""Wide & Deep (Cheng et al., DLRS 2016), one independent model per domain.

Per domain, for user ``u``, own-domain history ``i_1..i_T`` and candidate ``q``::

  wide  = b + w_u + w_q + Σ_j w_cross[hash(i_j × q)]     (linear model over the ids and
                                                          the cross products "user
                                                          consumed i_j AND candidate is q")
  deep  = MLP([e_u ; mean_j e_{i_j} ; e_q])
  logit = wide + deep                                     (eq. 3, trained jointly)

The cross products are the paper's "installed app × impression app" feature
transformed to our data; they are hashed into ``cross_buckets`` weights. The two
domains' towers share no parameter.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras

from dasl_tf.models.baselines import blocks
from dasl_tf.models.registry import register

DEFAULT_CROSS_BUCKETS = 2 ** 18


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class WideAndDeepTower(tf_keras.layers.Layer):
  """Wide & Deep for one domain.

  Args:
    num_users: user vocabulary size (reserved ids included).
    num_items: item vocabulary size of the domain (reserved ids included).
    embedding_dim: d, the size of the deep part's embeddings.
    hidden_units: hidden layer sizes of the deep part.
    cross_buckets: hash buckets of the history-item × candidate cross products.
    dropout: dropout rate in the deep part.
    l2: L2 penalty on embeddings, wide weights and kernels.

  Call args:
    user_ids: int64 ``[B]``.
    history: int64 ``[B, T]`` item ids of the domain, left-padded with 0.
    candidates: int64 ``[B, C]`` item ids of the domain.

  Output shape: ``[B, C]`` logits.
  """

  def __init__(self, num_users: int, num_items: int, embedding_dim: int,
               hidden_units=(64, 32), cross_buckets: int = DEFAULT_CROSS_BUCKETS,
               dropout: float = 0.0, l2: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    blocks.check_embedding_sizes(num_users, embedding_dim, "users")
    blocks.check_embedding_sizes(num_items, embedding_dim, "items")
    if cross_buckets < 2:
      raise ValueError(f"cross_buckets must be >= 2, got {cross_buckets}")
    self.num_users = num_users
    self.num_items = num_items
    self.embedding_dim = embedding_dim
    self.hidden_units = tuple(hidden_units)
    self.cross_buckets = cross_buckets
    self.dropout = dropout
    self.l2 = l2

  def build(self, input_shape):
    def wide_weights(vocab_size, name):
      return blocks.id_embedding(vocab_size, 1, self.l2, name)

    self._wide_user = wide_weights(self.num_users, "wide_user")
    self._wide_item = wide_weights(self.num_items, "wide_item")
    self._wide_cross = wide_weights(self.cross_buckets, "wide_cross")
    self._wide_bias = self.add_weight(name="wide_bias", shape=(), initializer="zeros")
    self._users = blocks.id_embedding(self.num_users, self.embedding_dim, self.l2, "users")
    self._items = blocks.id_embedding(self.num_items, self.embedding_dim, self.l2, "items")
    self._deep = blocks.logit_mlp(self.hidden_units, self.dropout, self.l2, "deep")
    super().build(input_shape)

  def cross_bucket_ids(self, history: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
    """Hash bucket ``[B, C, T]`` of each (history item, candidate) pair."""
    pair_ids = history[:, None, :] * self.num_items + candidates[:, :, None]
    return tf.strings.to_hash_bucket_fast(tf.strings.as_string(pair_ids), self.cross_buckets)

  def call(self, user_ids: tf.Tensor, history: tf.Tensor, candidates: tf.Tensor,
           training: bool = False) -> tf.Tensor:
    mask = blocks.history_mask(history)
    cross = tf.squeeze(self._wide_cross(self.cross_bucket_ids(history, candidates)), -1)
    cross = tf.reduce_sum(cross * tf.cast(mask, cross.dtype)[:, None, :], axis=-1)
    wide = (self._wide_bias + self._wide_user(user_ids)
            + tf.squeeze(self._wide_item(candidates), -1) + cross)          # [B, C]
    candidate_emb = self._items(candidates)
    context = tf.concat([self._users(user_ids),
                         blocks.masked_mean(self._items(history), mask)], axis=-1)
    deep = self._deep(
        tf.concat([blocks.tile_to_candidates(context, candidates), candidate_emb], axis=-1),
        training=training)
    return wide + tf.squeeze(deep, -1)

  def get_config(self):
    return {**super().get_config(), "num_users": self.num_users, "num_items": self.num_items,
            "embedding_dim": self.embedding_dim, "hidden_units": self.hidden_units,
            "cross_buckets": self.cross_buckets, "dropout": self.dropout, "l2": self.l2}


@register("wide_deep")
@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class WideAndDeep(blocks.SingleDomainRanker):
  """Wide & Deep per domain."""

  def make_tower(self, num_items: int, name: str) -> WideAndDeepTower:
    c = self.model_config
    return WideAndDeepTower(c.num_users, num_items, c.embedding_dim,
                            hidden_units=c.hidden_units, dropout=c.dropout, l2=c.l2, name=name)
