"""Building blocks shared by the baselines: id embeddings, masks, candidate-aware
attention pooling and the two-independent-towers model frame.

The baselines read ids only (user, items, histories); user and item side
features are not used.

Shapes: ``B`` examples, ``C`` candidate items per example, ``T`` history length,
``d`` embedding size.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.layers.autoencoder import FeatureAutoencoder
from dasl_tf.layers.mlp import MLP
from dasl_tf.models.base import CrossDomainRanker

_NORMALIZATIONS = ("none", "softmax")
_MASKED_SCORE = -1e9


def l2_regularizer(l2: float) -> Optional[tf_keras.regularizers.Regularizer]:
  """An L2 regularizer of strength ``l2``, or None when ``l2`` is 0."""
  if l2 < 0:
    raise ValueError(f"l2 must be >= 0, got {l2}")
  return tf_keras.regularizers.L2(l2) if l2 > 0 else None


def check_embedding_sizes(vocab_size: int, dim: int, name: str) -> None:
  """Validates an embedding table's sizes.

  Raises:
    ValueError: the vocabulary is smaller than the reserved ids, or ``dim`` < 1.
  """
  if vocab_size < F.NUM_RESERVED_IDS:
    raise ValueError(f"{name}: vocabulary size must be >= {F.NUM_RESERVED_IDS} (padding and "
                     f"OOV ids included), got {vocab_size}; set the ModelConfig vocabulary sizes")
  if dim < 1:
    raise ValueError(f"{name}: embedding_dim must be >= 1, got {dim}")


def id_embedding(vocab_size: int, dim: int, l2: float, name: str) -> FeatureAutoencoder:
  """An id embedding over a vocabulary that counts the reserved ids (padding, OOV).

  It is a :class:`~dasl_tf.layers.FeatureAutoencoder` without side features:
  ids outside the vocabulary read the OOV row. Both heads score every example's
  candidates, so head A also looks up item ids of domain B, which may exceed
  domain A's vocabulary (their scores are masked out of the loss).

  Raises:
    ValueError: see :func:`check_embedding_sizes`.
  """
  check_embedding_sizes(vocab_size, dim, name)
  return FeatureAutoencoder(vocab_size, dim, l2=l2, oov_id=F.OOV_ID, name=name)


def user_embedding(config: config_lib.ModelConfig, name: str = "users") -> FeatureAutoencoder:
  """The user id embedding of a model config (see :func:`id_embedding`)."""
  return id_embedding(config.num_users, config.embedding_dim, config.l2, name)


def item_embeddings(config: config_lib.ModelConfig
                   ) -> Tuple[FeatureAutoencoder, FeatureAutoencoder]:
  """Domain A's and domain B's item id embeddings of a model config (see :func:`id_embedding`)."""
  return (id_embedding(config.num_items_a, config.embedding_dim, config.l2, "items_a"),
          id_embedding(config.num_items_b, config.embedding_dim, config.l2, "items_b"))


def logit_mlp(hidden_units: Sequence[int], dropout: float, l2: float, name: str) -> MLP:
  """An :class:`~dasl_tf.layers.MLP` with one output: ``[..., n] -> [..., 1]``."""
  return MLP(hidden_units, 1, dropout=dropout, l2=l2, name=name)


def history_mask(history: tf.Tensor) -> tf.Tensor:
  """bool ``[B, T]``: True where ``history`` holds an item, False on padding."""
  return tf.not_equal(history, F.PAD_ID)


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """Mean of ``values`` ``[B, T, d]`` over the steps where ``mask`` ``[B, T]`` is True.

  Returns:
    float32 ``[B, d]``; zeros for a row without any True step.
  """
  weights = tf.cast(mask, values.dtype)[..., None]
  count = tf.reduce_sum(weights, axis=1)
  return tf.math.divide_no_nan(tf.reduce_sum(values * weights, axis=1), count)


def tile_to_candidates(context: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
  """Repeats a per-example vector ``[B, d]`` for each candidate: ``[B, C, d]``."""
  return tf.repeat(context[:, None, :], tf.shape(candidates)[1], axis=1)


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class TargetAttentionPooling(tf_keras.layers.Layer):
  """Pools a behaviour sequence with weights that depend on the candidate item.

  For candidate ``q``, history items ``k_j`` and an optional per-example context
  ``c`` (for instance the user embedding)::

    s_j = MLP([k_j ; q ; (M k_j) ⊙ q ; c])            (one score per step)
    "none":    out = Σ_j m_j s_j k_j                   (DIN's local activation unit,
                                                        weights not normalised)
    "softmax": out = Σ_j softmax_j(s_j | m) k_j        (MiNet's item-level attention)

  ``m_j`` masks padding; ``M`` is a learned transfer matrix when ``transfer`` is
  True (history items of another domain) and the identity otherwise. The MLP's
  first layer is applied term by term, so the ``[B, C, T]`` work is one product.
  DIN's extra term ``k_j - q`` is omitted: it is a linear function of ``k_j`` and
  ``q``, which the first layer already sees.

  Example:
    >>> pool = TargetAttentionPooling(hidden_units=(8,), normalization="softmax")
    >>> pool(tf.ones([2, 3, 4]), tf.ones([2, 5, 4]), tf.ones([2, 5], tf.bool)).shape
    TensorShape([2, 3, 4])

  Args:
    hidden_units: hidden layer sizes of the scoring MLP (at least one layer).
    normalization: "none" (weighted sum) or "softmax" over the unmasked steps.
    transfer: map history items through a learned matrix before the product.
    activation: activation of the scoring MLP.
    l2: L2 penalty on the kernels.

  Call args:
    query: candidate embeddings ``[B, C, dq]``.
    keys: history embeddings ``[B, T, dk]`` (``dk == dq`` unless ``transfer``).
    mask: bool ``[B, T]``, True on real history items.
    context: optional ``[B, dc]`` features of the example.

  Output shape: ``[B, C, dk]``.
  """

  def __init__(self, hidden_units: Sequence[int], normalization: str = "none",
               transfer: bool = False, activation: str = "relu", l2: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if not hidden_units or any(int(u) < 1 for u in hidden_units):
      raise ValueError(f"hidden_units must be a non-empty list of sizes >= 1, got "
                       f"{tuple(hidden_units)}")
    if normalization not in _NORMALIZATIONS:
      raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    l2_regularizer(l2)
    self.hidden_units = tuple(int(u) for u in hidden_units)
    self.normalization = normalization
    self.transfer = transfer
    self.activation = activation
    self.l2 = l2

  def build(self, query_shape):
    regularizer = l2_regularizer(self.l2)
    first = self.hidden_units[0]

    def dense(units, name, **kwargs):
      return tf_keras.layers.Dense(units, kernel_regularizer=regularizer, name=name, **kwargs)

    self._key_term = dense(first, "key_term", use_bias=False)
    self._query_term = dense(first, "query_term")
    self._product_term = dense(first, "product_term", use_bias=False)
    self._context_term = dense(first, "context_term", use_bias=False)
    self._transfer = dense(int(query_shape[-1]), "transfer", use_bias=False) if self.transfer \
        else None
    self._act = tf_keras.activations.get(self.activation)
    self._hidden = [dense(units, f"hidden_{i + 1}", activation=self.activation)
                    for i, units in enumerate(self.hidden_units[1:])]
    self._score = dense(1, "score")
    super().build(query_shape)

  def call(self, query: tf.Tensor, keys: tf.Tensor, mask: tf.Tensor,
           context: Optional[tf.Tensor] = None) -> tf.Tensor:
    mapped_keys = self._transfer(keys) if self._transfer is not None else keys
    if mapped_keys.shape[-1] != query.shape[-1]:
      raise ValueError(f"{self.name}: history items have size {mapped_keys.shape[-1]} but "
                       f"candidates {query.shape[-1]}; use transfer=True to map them")
    product = mapped_keys[:, None, :, :] * query[:, :, None, :]          # [B, C, T, dq]
    hidden = (self._product_term(product)
              + self._key_term(keys)[:, None, :, :]
              + self._query_term(query)[:, :, None, :])
    if context is not None:
      hidden += self._context_term(context)[:, None, None, :]
    hidden = self._act(hidden)
    for layer in self._hidden:
      hidden = layer(hidden)
    scores = tf.squeeze(self._score(hidden), axis=-1)                    # [B, C, T]
    step_mask = tf.cast(mask, scores.dtype)[:, None, :]
    if self.normalization == "softmax":
      weights = tf.nn.softmax(scores + (1.0 - step_mask) * _MASKED_SCORE, axis=-1)
    else:
      weights = scores
    weights *= step_mask  # a row without history pools to zeros
    return tf.einsum("bct,btd->bcd", weights, keys)

  def get_config(self):
    return {**super().get_config(), "hidden_units": self.hidden_units,
            "normalization": self.normalization, "transfer": self.transfer,
            "activation": self.activation, "l2": self.l2}


class SingleDomainRanker(CrossDomainRanker):
  """Two independent towers, one per domain, with no shared parameter.

  Tower A sees only the user, ``hist_a`` and candidates of domain A; tower B
  only the user, ``hist_b`` and candidates of domain B. This is "one model per
  domain" (the paper's single-domain baselines) inside the two-headed frame.
  Subclasses implement :meth:`make_tower`.
  """

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    super().__init__(config, name=name, **kwargs)
    self.tower_a = self.make_tower(config.num_items_a, "tower_a")
    self.tower_b = self.make_tower(config.num_items_b, "tower_b")

  def make_tower(self, num_items: int, name: str) -> tf_keras.layers.Layer:
    """A layer ``(user_ids [B], history [B, T], candidates [B, C]) -> logits [B, C]``."""
    raise NotImplementedError

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    user_ids = features[F.USER_ID]
    return (self.tower_a(user_ids, features[F.HIST_A], candidates, training=training),
            self.tower_b(user_ids, features[F.HIST_B], candidates, training=training))
