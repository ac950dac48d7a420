"""DASL as a Keras 3 model: ``compile``, ``fit``, ``save`` to ``.keras``, without TensorFlow Recommenders.

For Keras 3 users (``import keras``, ``TF_USE_LEGACY_KERAS`` unset). The model
is made of the layers of :mod:`dasl_tf.layers.keras3`, the same
implementation the Keras 2 model :class:`dasl_tf.models.DASL` (TFRS, the batch
job and the export) uses, and its regularisation losses are those layers'
losses: eq. (1)-(2) and the orthogonality penalty of ``DualEmbedding``, the
L2 penalties. This module imports neither TensorFlow Recommenders nor tf_keras
and needs Keras's TensorFlow backend (the layers' math is TensorFlow ops).

Example:
  >>> import keras
  >>> import numpy as np
  >>> from dasl_tf import keras3
  >>> model = keras3.DASL(num_users=10, num_items_a=8, num_items_b=8, embedding_dim=4,
  ...                     gru_units=4, attention_dim=4, hidden_units=(8,))
  >>> features = {"user_id": np.array([2, 3]), "item_id": np.array([4, 5]),
  ...             "domain": np.array([0, 1]), "hist_a": np.array([[0, 2, 3], [0, 0, 0]]),
  ...             "hist_b": np.array([[0, 0, 4], [2, 3, 4]])}
  >>> model(features).shape
  TensorShape([2])
  >>> model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
  >>> history = model.fit(features, np.array([1.0, 0.0]), epochs=1, verbose=0)
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import keras
import tensorflow as tf

from dasl_tf import features as F
from dasl_tf.layers import keras3 as layers
from dasl_tf.layers.dual_attention import JOINT, MASK, OWN, QUERY, RECORDS, SEPARATE
from dasl_tf.layers.sequence import encode_histories

_HISTORIES = (F.HIST_A, F.HIST_B)
_INT_FEATURES = (F.USER_ID, F.ITEM_ID, F.DOMAIN, F.HIST_A, F.HIST_B)


@keras.saving.register_keras_serializable(package="dasl_tf")
class DASL(keras.Model):
  """Dual Attentive Sequential Learning for CTR in two domains, as a Keras 3 model.

  The architecture of :class:`dasl_tf.models.DASL` without side features. Per
  example: the user's embeddings ``u_A``, ``u_B`` (one id embedding per
  domain, section 3.1 with ID-only data), ``X u_A`` and ``X^T u_B`` by
  ``DualEmbedding`` with eq. (1)-(2) over overlap users (both histories
  non-empty, 3.2), per domain a ``SequenceEncoder`` GRU (eq. 3-5) over the
  embedded history giving ``R_D`` and ``h_D`` (3.3); each head D embeds the
  candidate ``c_D`` with domain D's item embedding, attends with
  ``DualAttention`` (eq. 6-7 in ``"joint"`` mode, 3.4) and scores

    logit_D = MLP_D([u_D ; map(u_D') ; h_D ; h_D' ; Att_D ; c_D])

  with ``map(u_B) = X^T u_B`` for head A and ``map(u_A) = X u_A`` for head B.
  ``dual_embedding=False`` drops ``map(u_D')`` and eq. (1)-(2) (DASL-DE);
  ``mode="separate"`` is DASL-DA and ``mode="own"`` with
  ``dual_embedding=False`` Single-Domain (each head its own domain only).

  ``call`` returns the logit of each example's target item by the head of the
  example's domain, ``[batch]``: compile with
  ``keras.losses.BinaryCrossentropy(from_logits=True)``; Keras adds the
  layers' losses (``model.losses``) to it. :meth:`candidate_logits` scores
  any candidates for top-n.

  Args:
    num_users: user vocabulary size (reserved ids included, as ``schema.json``).
    num_items_a: domain A's item vocabulary size.
    num_items_b: domain B's item vocabulary size.
    embedding_dim: d, the size of user and item embeddings.
    gru_units: hidden size of each domain's GRU.
    attention_dim: d_k of Dual Attention.
    hidden_units: layer sizes of each head's MLP.
    dropout: dropout rate in the heads.
    l2: L2 penalty on the embeddings and the heads' kernels.
    dual_embedding: whether to use Dual Embedding (eq. 1-2).
    dual_embedding_weight: weight of eq. (1) + eq. (2).
    orthogonality_weight: weight of ``||X^T X - I||_F^2``.
    mode: Dual Attention's mode, ``"joint"``, ``"separate"`` or ``"own"``.
    **kwargs: ``keras.Model`` arguments (``name``, ...).

  Input: a dict of int tensors ``user_id`` ``[batch]``, ``item_id``
    ``[batch]`` (the target, in its domain's vocabulary), ``domain`` ``[batch]``
    (0 = A, 1 = B), ``hist_a``/``hist_b`` ``[batch, T]`` (left-padded with 0),
    as :mod:`dasl_tf.features` names them; other keys are ignored.
  Output: float32 ``[batch]``, the target's click logit.

  Raises:
    ValueError: a vocabulary is smaller than the reserved ids, or ``mode="own"``
      with Dual Embedding.
  """

  def __init__(self, num_users: int, num_items_a: int, num_items_b: int,
               embedding_dim: int = 32, gru_units: int = 32, attention_dim: int = 32,
               hidden_units: Sequence[int] = (64, 32), dropout: float = 0.0, l2: float = 0.0,
               dual_embedding: bool = True, dual_embedding_weight: float = 0.1,
               orthogonality_weight: float = 1.0, mode: str = JOINT, **kwargs):
    super().__init__(**kwargs)
    sizes = dict(num_users=num_users, num_items_a=num_items_a, num_items_b=num_items_b)
    for field, size in sizes.items():
      if size <= F.NUM_RESERVED_IDS:
        raise ValueError(f"keras3.DASL: {field}={size} must exceed the {F.NUM_RESERVED_IDS} "
                         f"reserved ids; take vocabulary sizes from schema.json")
    if mode == OWN and dual_embedding:
      raise ValueError("keras3.DASL: mode='own' (Single-Domain) needs dual_embedding=False")
    self.sizes = sizes
    self.embedding_dim = int(embedding_dim)
    self.gru_units = int(gru_units)
    self.attention_dim = int(attention_dim)
    self.hidden_units = tuple(int(u) for u in hidden_units)
    self.dropout = float(dropout)
    self.l2 = float(l2)
    self.use_dual_embedding = bool(dual_embedding)
    self.dual_embedding_weight = float(dual_embedding_weight)
    self.orthogonality_weight = float(orthogonality_weight)
    self.mode = mode
    self.single_domain = mode == OWN
    letters = [F.DOMAIN_SUFFIX[d] for d in F.DOMAINS]
    self.user_embeddings = [
        layers.FeatureAutoencoder(num_users, embedding_dim, l2=l2, oov_id=F.OOV_ID,
                                  name=f"user_embedding_{x}") for x in letters]
    self.item_embeddings = [
        layers.FeatureAutoencoder(size, embedding_dim, l2=l2, oov_id=F.OOV_ID,
                                  name=f"item_embedding_{x}")
        for size, x in zip((num_items_a, num_items_b), letters)]
    self.sequence_encoders = [layers.SequenceEncoder(gru_units, name=f"sequence_encoder_{x}")
                              for x in letters]
    self.dual_embedding = layers.DualEmbedding(
        dual_embedding_weight, orthogonality_weight,
        name="dual_embedding") if dual_embedding else None
    self.dual_attention = layers.DualAttention(attention_dim, mode=mode, name="dual_attention")
    self.heads = [layers.MLP(self.hidden_units, 1, dropout=dropout, l2=l2, name=f"head_{x}")
                  for x in letters]

  def call(self, features: Dict[str, tf.Tensor], training: Optional[bool] = None) -> tf.Tensor:
    features = self._cast(features)
    logits = self.candidate_logits(features, features[F.ITEM_ID][:, None], training=training)
    return logits[:, 0]

  def candidate_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                       training: Optional[bool] = None) -> tf.Tensor:
    """Click logits ``[batch, C]`` of candidates ``[batch, C]`` by each example's own head.

    Both heads score every candidate (each in its domain's vocabulary); each
    example keeps the head of its ``domain``.
    """
    features = self._cast(features)
    candidates = tf.cast(candidates, tf.int64)
    parts, records, masks = self._user_context(features, training)
    logits = []
    for d in F.DOMAINS:
      embedded = self.item_embeddings[d](candidates, training=training)
      inputs = {QUERY[d]: embedded}
      for e in F.DOMAINS:
        inputs.update({RECORDS[e]: records[e], MASK[e]: masks[e]})
      attended, = self.dual_attention(inputs, heads=(d,))
      context = tf.concat(parts[d], -1)[:, None, :]
      context = tf.repeat(context, tf.shape(candidates)[1], axis=1)
      head_input = tf.concat([context, attended, embedded], -1)
      logits.append(self.heads[d](head_input, training=training)[..., 0])
    in_a = tf.equal(features[F.DOMAIN], F.DOMAIN_A)[:, None]
    return tf.where(in_a, logits[F.DOMAIN_A], logits[F.DOMAIN_B])

  def _user_context(self, features: Dict[str, tf.Tensor], training: Optional[bool]):
    """Per head the candidate-independent parts, the GRU outputs and the masks per domain."""
    masks, records, states = encode_histories(
        [features[name] for name in _HISTORIES], self.item_embeddings,
        self.sequence_encoders, F.PAD_ID, training)
    users = [self.user_embeddings[d](features[F.USER_ID], training=training) for d in F.DOMAINS]
    parts: Dict[int, List[tf.Tensor]] = {d: [users[d]] for d in F.DOMAINS}
    if self.dual_embedding is not None:
      overlap = tf.reduce_any(masks[0], axis=1) & tf.reduce_any(masks[1], axis=1)
      a_to_b, b_to_a = self.dual_embedding((users[0], users[1], overlap))
      parts[F.DOMAIN_A].append(b_to_a)
      parts[F.DOMAIN_B].append(a_to_b)
    for d in F.DOMAINS:
      parts[d].append(states[d])
      if not self.single_domain:
        parts[d].append(states[1 - d])
    return parts, records, masks

  @staticmethod
  def _cast(features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The id features as int64 (Keras may hand them over as floats)."""
    return dict(features, **{name: tf.cast(features[name], tf.int64)
                             for name in _INT_FEATURES if name in features})

  def get_config(self):
    config = super().get_config()
    config.update(self.sizes, embedding_dim=self.embedding_dim, gru_units=self.gru_units,
                  attention_dim=self.attention_dim, hidden_units=list(self.hidden_units),
                  dropout=self.dropout, l2=self.l2, dual_embedding=self.use_dual_embedding,
                  dual_embedding_weight=self.dual_embedding_weight,
                  orthogonality_weight=self.orthogonality_weight, mode=self.mode)
    return config


__all__ = ["DASL", "JOINT", "SEPARATE", "OWN", "layers"]
