"""SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018), per domain.

Per domain, for the own-domain history ``s_1..s_T`` (left-padded, most recent
last) and a candidate ``c``, with the domain's item embedding ``M`` and a
learned positional embedding ``P``::

  Ê_t  = sqrt(d) M_{s_t} + P_t                              (eq. 1; then dropout)
  S    = softmax(Q K^T / sqrt(d_h) + causal/padding mask) V  (eq. 2-3, Q, K, V = Ê W^Q, Ê W^K,
                                                              Ê W^V; position t sees the real
                                                              items at positions <= t only)
  F_t  = ReLU(S_t W1 + b1) W2 + b2                           (eq. 4, point-wise)
  each sublayer g as  x + Dropout(g(LayerNorm(x)))           (eq. 6), ``sasrec_blocks`` blocks
                                                              stacked (eq. 5), a final LayerNorm
  h    = F_T, the output at the most recent item; a learned h_0 for an empty history
  r    = h · M_c                                             (relevance, shared item
                                                              embedding, eq. 9)
  logit = r + MLP([h ; M_c ; h ⊙ M_c])                       (the CTR logit)

The model trains with the objective of every dasl_tf model (``CrossDomainRanker``):
the CTR loss on ``logit`` and, with sampled negatives, the ranking loss on
``r + b`` (``b`` the item prior), which is also the top-n score. The paper
trains ``r`` alone, with one sampled negative per position. The CTR logit
adds an MLP to ``r``: ``r`` has to rank every observed item above unseen ones,
so alone it cannot also tell a disliked observed item from a liked one, while
an MLP alone learns the planted history signal of the tests far more slowly
than with the bilinear term ``r`` beside it (AUC near 0.5 in one domain after
3 epochs in half the runs, against about 0.8 with ``r``). Deviations from the
paper: multi-head attention projects the heads' concatenation by ``W^O`` (the
Transformer's form) and ``W^{Q,K,V}`` have no bias; as in the authors' code,
item embeddings are scaled by ``sqrt(d)`` and padded positions are held at 0
after every block. The two domains' towers share no parameter.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.layers.mlp import CheckpointedDropout, MLP
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.models.baselines import blocks
from dasl_tf.models.registry import register

_HISTORIES = (F.HIST_A, F.HIST_B)


def causal_attention_mask(mask: tf.Tensor) -> tf.Tensor:
  """bool ``[B, T, T]``: query position ``t`` may attend to key ``s`` iff ``s <= t`` and real.

  Args:
    mask: bool ``[B, T]``, True on real history items.
  """
  length = tf.shape(mask)[1]
  causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)  # s <= t
  return causal[None] & mask[:, None, :]


def _dropout(rate: float, name: str) -> Optional[CheckpointedDropout]:
  return CheckpointedDropout(rate, name=name) if rate else None


def _apply(dropout: Optional[CheckpointedDropout], x: tf.Tensor, training: bool) -> tf.Tensor:
  return dropout(x, training=training) if dropout is not None else x


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class CausalSelfAttentionBlock(tf_keras.layers.Layer):
  """One SASRec self-attention block over a sequence, causal and padding-masked.

  ``x = x + Dropout(SA(LayerNorm(x)))`` then ``x = x + Dropout(FFN(LayerNorm(x)))``
  (eq. 2-4 with the residual form of eq. 6), where ``SA`` is multi-head scaled
  dot-product self-attention in which position ``t`` attends to the real
  positions ``<= t`` only (:func:`causal_attention_mask`) and ``FFN`` the
  point-wise ``ReLU(x W1 + b1) W2 + b2`` of width ``d``. Padded positions
  output 0, so no output depends on a later item or on padding.

  Example:
    >>> block = CausalSelfAttentionBlock(num_heads=2)
    >>> block(tf.ones([3, 5, 8]), tf.ones([3, 5], tf.bool)).shape
    TensorShape([3, 5, 8])

  Args:
    num_heads: attention heads; they split the input size ``d`` evenly.
    dropout: dropout rate on each sublayer's output, in ``[0, 1)``.
    l2: L2 penalty on the kernels.

  Call args:
    inputs: float ``[B, T, d]``.
    mask: bool ``[B, T]``, True on real items.

  Output shape: ``[B, T, d]``.

  Raises:
    ValueError: ``num_heads`` < 1 or it does not divide ``d``.
  """

  def __init__(self, num_heads: int = 1, dropout: float = 0.0, l2: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if num_heads < 1:
      raise ValueError(f"{self.name}: num_heads must be >= 1, got {num_heads}")
    blocks.l2_regularizer(l2)
    self.num_heads = int(num_heads)
    self.dropout = float(dropout)
    self.l2 = float(l2)

  def build(self, input_shape):
    dim = int(input_shape[-1])
    if dim % self.num_heads:
      raise ValueError(f"{self.name}: num_heads={self.num_heads} must divide the input size "
                       f"{dim} (ModelConfig.sasrec_heads and embedding_dim)")
    self._attention_norm = tf_keras.layers.LayerNormalization(name="attention_norm")
    self._attention = tf_keras.layers.MultiHeadAttention(
        self.num_heads, dim // self.num_heads, use_bias=False,
        kernel_regularizer=blocks.l2_regularizer(self.l2), name="attention")
    self._attention_dropout = _dropout(self.dropout, "attention_dropout")
    self._ffn_norm = tf_keras.layers.LayerNormalization(name="ffn_norm")
    self._ffn = MLP((dim,), dim, l2=self.l2, name="ffn")
    self._ffn_dropout = _dropout(self.dropout, "ffn_dropout")
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, mask: tf.Tensor, training: bool = False) -> tf.Tensor:
    real = tf.cast(mask, inputs.dtype)[..., None]
    normed = self._attention_norm(inputs)
    attended = self._attention(normed, normed, attention_mask=causal_attention_mask(mask),
                               training=training)
    x = inputs + _apply(self._attention_dropout, attended, training)
    x = x + _apply(self._ffn_dropout, self._ffn(self._ffn_norm(x)), training)
    # A padded query has no key to attend to (Keras then spreads its weights over
    # all positions, later ones included): hold it at 0.
    return x * real

  def get_config(self):
    return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout,
            "l2": self.l2}


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class SasRecTower(tf_keras.layers.Layer):
  """SASRec for one domain: the self-attentive history encoder and the two scores.

  Example:
    >>> tower = SasRecTower(num_items=20, history_length=4, embedding_dim=8)
    >>> history = tf.constant([[0, 0, 5, 6], [0, 0, 0, 0]], tf.int64)
    >>> tower(history, tf.constant([[5, 7, 9]] * 2, tf.int64)).shape
    TensorShape([2, 3, 2])

  Args:
    num_items: item vocabulary size of the domain (reserved ids included).
    history_length: T, the padded history length (one positional embedding each).
    embedding_dim: d, the size of item embeddings and of the user representation.
    num_blocks: stacked :class:`CausalSelfAttentionBlock` s.
    num_heads: attention heads per block.
    hidden_units: hidden layer sizes of the MLP that the CTR logit adds to ``r``.
    dropout: dropout rate on the input embeddings, in the blocks and in the MLP.
    l2: L2 penalty on embeddings and kernels.
    relevance: whether the output holds the relevance ``r`` after the CTR logit.

  Call args:
    history: int64 ``[B, T]`` item ids of the domain, left-padded with 0.
    candidates: int64 ``[B, C]`` item ids of the domain (others read the OOV row).

  Output shape: ``[B, C, 2]`` (CTR logit, relevance), or ``[B, C, 1]`` without
  ``relevance``.

  Raises:
    ValueError: a size is invalid.
  """

  def __init__(self, num_items: int, history_length: int, embedding_dim: int,
               num_blocks: int = 2, num_heads: int = 1, hidden_units: Sequence[int] = (64, 32),
               dropout: float = 0.0, l2: float = 0.0, relevance: bool = True, **kwargs):
    super().__init__(**kwargs)
    blocks.check_embedding_sizes(num_items, embedding_dim, "items")
    if history_length < 1 or num_blocks < 1:
      raise ValueError(f"{self.name}: history_length and num_blocks must be >= 1, got "
                       f"{history_length} and {num_blocks} (ModelConfig.history_length, "
                       f"sasrec_blocks)")
    self.num_items = int(num_items)
    self.history_length = int(history_length)
    self.embedding_dim = int(embedding_dim)
    self.num_blocks = int(num_blocks)
    self.num_heads = int(num_heads)
    self.hidden_units = tuple(int(u) for u in hidden_units)
    self.dropout = float(dropout)
    self.l2 = float(l2)
    self.relevance = bool(relevance)

  def build(self, input_shape):
    self._items = blocks.id_embedding(self.num_items, self.embedding_dim, self.l2, "items")
    self._positions = tf_keras.layers.Embedding(
        self.history_length, self.embedding_dim,
        embeddings_regularizer=blocks.l2_regularizer(self.l2), name="positions")
    self._input_dropout = _dropout(self.dropout, "input_dropout")
    self._blocks = [CausalSelfAttentionBlock(self.num_heads, self.dropout, self.l2,
                                             name=f"block_{i}") for i in range(self.num_blocks)]
    self._final_norm = tf_keras.layers.LayerNormalization(name="final_norm")
    self._empty = self.add_weight(name="empty_history", shape=(self.embedding_dim,),
                                  initializer="zeros")
    self._mlp = blocks.logit_mlp(self.hidden_units, self.dropout, self.l2, "mlp")
    super().build(input_shape)

  def sequence_outputs(self, history: tf.Tensor, training: bool = False) -> tf.Tensor:
    """``F_t`` ``[B, T, d]`` at every position ``t`` (0 on padding): what items ``<= t`` say."""
    if history.shape[1] is not None and history.shape[1] != self.history_length:
      raise ValueError(f"{self.name}: history has {history.shape[1]} steps but the tower was "
                       f"built for history_length={self.history_length}")
    mask = blocks.history_mask(history)
    real = tf.cast(mask, tf.float32)[..., None]
    scale = tf.sqrt(tf.cast(self.embedding_dim, tf.float32))
    x = scale * self._items(history) + self._positions(tf.range(self.history_length))[None]
    x = _apply(self._input_dropout, x * real, training)
    for block in self._blocks:
      x = block(x, mask, training=training)
    return self._final_norm(x) * real

  def user_representation(self, history: tf.Tensor, training: bool = False) -> tf.Tensor:
    """``h`` ``[B, d]``: the output at the most recent item, ``h_0`` for an empty history."""
    last = self.sequence_outputs(history, training=training)[:, -1]
    has_history = tf.reduce_any(blocks.history_mask(history), axis=1)
    return tf.where(has_history[:, None], last, self._empty[None])

  def call(self, history: tf.Tensor, candidates: tf.Tensor, training: bool = False
           ) -> tf.Tensor:
    user = blocks.tile_to_candidates(self.user_representation(history, training), candidates)
    items = self._items(candidates)
    relevance = tf.reduce_sum(user * items, axis=-1, keepdims=True)
    logit = relevance + self._mlp(tf.concat([user, items, user * items], axis=-1),
                                  training=training)
    return tf.concat([logit, relevance], axis=-1) if self.relevance else logit

  def get_config(self):
    return {**super().get_config(), "num_items": self.num_items,
            "history_length": self.history_length, "embedding_dim": self.embedding_dim,
            "num_blocks": self.num_blocks, "num_heads": self.num_heads,
            "hidden_units": self.hidden_units, "dropout": self.dropout, "l2": self.l2,
            "relevance": self.relevance}


@register("sasrec")
@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class SasRec(CrossDomainRanker):
  """SASRec per domain: head A reads ``hist_a`` only, head B ``hist_b`` only.

  The towers (:class:`SasRecTower`, ``sasrec_blocks`` blocks of ``sasrec_heads``
  heads, ``config.history_length`` positions) share no parameter. The heads
  have a relevance output trained by the ranking loss unless
  ``config.ranking_loss`` is "none".

  Example:
    >>> from dasl_tf import config as config_lib
    >>> config = config_lib.ModelConfig(variant="sasrec", num_users=10, num_items_a=20,
    ...                                 num_items_b=30, history_length=3, embedding_dim=8)
    >>> model = SasRec(config)
    >>> features = {"user_id": tf.constant([2, 3], tf.int64),
    ...             "item_id": tf.constant([5, 6], tf.int64),
    ...             "domain": tf.constant([0, 1], tf.int64),
    ...             "hist_a": tf.constant([[0, 4, 5], [0, 0, 0]], tf.int64),
    ...             "hist_b": tf.constant([[0, 0, 7], [8, 9, 10]], tf.int64)}
    >>> model.score_candidates(features, tf.constant([[5, 6, 7]] * 2, tf.int64)).shape
    TensorShape([2, 3])

  Args:
    config: the model's :class:`~dasl_tf.config.ModelConfig`.
    name: Keras name of the model (defaults to the variant).

  Raises:
    ValueError: a vocabulary or size is invalid.
  """

  def __init__(self, config: config_lib.ModelConfig, name: Optional[str] = None, **kwargs):
    super().__init__(config, name=name, **kwargs)
    self.tower_a, self.tower_b = (
        SasRecTower(size, config.history_length, config.embedding_dim,
                    num_blocks=config.sasrec_blocks, num_heads=config.sasrec_heads,
                    hidden_units=config.hidden_units, dropout=config.dropout, l2=config.l2,
                    relevance=self.has_relevance, name=f"tower_{F.DOMAIN_SUFFIX[d]}")
        for d, size in zip(F.DOMAINS, (config.num_items_a, config.num_items_b)))

  @property
  def has_relevance(self) -> bool:
    """The heads have a relevance output ``r`` when the model is trained to rank."""
    return self.model_config.ranking_loss != config_lib.NO_RANKING_LOSS

  def head_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                   training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    """Outputs ``[batch, C, U]`` of candidates under both heads (CTR, then relevance)."""
    return tuple(self.domain_outputs(features, candidates, d, training) for d in F.DOMAINS)

  def domain_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                     domain: int, training: bool = False) -> tf.Tensor:
    """Outputs ``[batch, C, U]`` of candidates under one head; the other is not computed."""
    tower = (self.tower_a, self.tower_b)[domain]
    return tower(features[_HISTORIES[domain]], candidates, training=training)
