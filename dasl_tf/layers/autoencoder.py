"""Feature autoencoder of users or items (paper section 3.1)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import tensorflow as tf

from dasl_tf.layers import shell

__getattr__ = shell.active_keras_classes("FeatureAutoencoder")

ID = "id"
NUMERIC = "numeric"
CATEGORICAL = "categorical"
SAMPLE_WEIGHT = "sample_weight"

Inputs = Union[tf.Tensor, Dict[str, tf.Tensor]]


def _in_vocabulary(values: tf.Tensor, size: int) -> tf.Tensor:
  """Categorical values with those outside ``[0, size)`` replaced by 0 (missing)."""
  return tf.where((values >= 0) & (values < size), values, tf.zeros_like(values))


class FeatureAutoencoderBody(shell.LayerBody):
  """Encodes an entity's explicit features (id, numeric, categorical) to a latent embedding.

  The layer ``FeatureAutoencoder``.

  Section 3.1 of the paper: an MLP encoder maps the explicit features ``x`` of a
  user or an item to its latent embedding and an MLP decoder reconstructs them,
  trained by the reconstruction loss ``L = ||x - MLP_dec(MLP_enc(x))||``.
  Here ``x = [e_id ; numeric ; e_cat_1 ; ... ; e_cat_m]`` (``e_id`` the entity's id
  embedding, ``numeric`` the numeric features standardised by a
  ``BatchNormalization`` without scale and offset, since raw side features come
  in arbitrary units, ``e_cat_j`` an embedding of categorical column ``j``) and

    z = MLP_enc(x)                                 (the latent embedding, size d)
    L = weight * mean( ||numeric - num_hat||^2 + sum_j CE(cat_j, cat_hat_j) )

  where ``[num_hat ; cat_hat_1 ; ... ]= MLP_dec(z)``: numeric features are
  reconstructed by squared error and each categorical column by softmax
  cross-entropy over its vocabulary. An optional ``sample_weight`` input makes
  the mean a weighted mean (entities with weight 0 do not count). The id itself
  is not reconstructed (it is a free embedding; reconstructing a one-hot id
  from a d-dimensional latent only re-learns the embedding table). ``L`` is added with ``add_loss`` whenever side
  features are given.

  With ``encode_side_features=False`` the encoder reads the id embedding only,
  ``z = MLP_enc(e_id)``, and given side features are reconstruction targets
  only: the latent of an entity is then the same whether or not its side
  features are at hand (sampled candidates, history items), while the side
  features still shape it through ``L``.

  With no side features configured (``numeric_dim=0``, no categorical columns)
  the layer is the id embedding ``z = e_id``, without MLP or loss. When side
  features are configured but a call passes ids only (history items, sampled
  candidates), the side features are zero-filled, as the TFRecord parser fills
  absent side features, and no loss is added.

  Ids outside ``[0, vocab_size)`` are mapped to ``oov_id``; categorical values
  outside their vocabulary to 0 (missing).

  Example:
    >>> from dasl_tf.layers import FeatureAutoencoder
    >>> ae = FeatureAutoencoder(vocab_size=100, embedding_dim=8, numeric_dim=2)
    >>> z = ae({"id": tf.constant([3, 4]), "numeric": tf.ones([2, 2])})
    >>> z.shape, len(ae.losses)
    (TensorShape([2, 8]), 1)

  Args:
    vocab_size: size of the id vocabulary (reserved ids included).
    embedding_dim: d, the size of the id embedding and of the latent.
    numeric_dim: number of numeric side features.
    categorical_vocab_sizes: vocabulary size of each categorical side feature.
    hidden_units: hidden layer sizes of the encoder (the decoder mirrors them).
    categorical_embedding_dim: size of each categorical column's embedding.
    reconstruction_weight: weight of the reconstruction loss.
    l2: L2 penalty on the id embedding and the MLP kernels.
    oov_id: index that ids outside the vocabulary are mapped to.
    encode_side_features: whether the encoder reads the side features (else
      they are reconstruction targets only).

  Input shape: ids ``[...]`` (any leading shape), or a dict with ``"id"``
    ``[...]`` and optionally ``"numeric"`` float ``[..., numeric_dim]`` and
    ``"categorical"`` int ``[..., len(categorical_vocab_sizes)]`` and
    ``"sample_weight"`` float ``[...]`` (weights of the reconstruction loss).
  Output shape: ``[..., embedding_dim]``.

  Raises:
    ValueError: a size is not positive, a weight is negative, or ``oov_id`` is
      outside the vocabulary.
  """

  def __init__(self, vocab_size: int, embedding_dim: int, numeric_dim: int = 0,
               categorical_vocab_sizes: Sequence[int] = (),
               hidden_units: Sequence[int] = (64,), categorical_embedding_dim: int = 8,
               reconstruction_weight: float = 1.0, l2: float = 0.0, oov_id: int = 1,
               encode_side_features: bool = True, **kwargs):
    super().__init__(**kwargs)
    categorical_vocab_sizes = tuple(int(v) for v in categorical_vocab_sizes)
    if vocab_size <= 0 or embedding_dim <= 0 or categorical_embedding_dim <= 0:
      raise ValueError(
          f"FeatureAutoencoder sizes must be positive, got vocab_size={vocab_size}, "
          f"embedding_dim={embedding_dim}, categorical_embedding_dim={categorical_embedding_dim}")
    if numeric_dim < 0 or any(v <= 0 for v in categorical_vocab_sizes):
      raise ValueError(
          f"FeatureAutoencoder: numeric_dim must be >= 0 and categorical vocabulary sizes "
          f"> 0, got numeric_dim={numeric_dim}, categorical_vocab_sizes={categorical_vocab_sizes}")
    if reconstruction_weight < 0 or l2 < 0:
      raise ValueError(
          f"FeatureAutoencoder: weights must be >= 0, got reconstruction_weight="
          f"{reconstruction_weight}, l2={l2}")
    if not 0 <= oov_id < vocab_size:
      raise ValueError(f"FeatureAutoencoder: oov_id={oov_id} is outside [0, {vocab_size})")
    self.vocab_size = int(vocab_size)
    self.embedding_dim = int(embedding_dim)
    self.numeric_dim = int(numeric_dim)
    self.categorical_vocab_sizes = categorical_vocab_sizes
    self.hidden_units = tuple(int(u) for u in hidden_units)
    self.categorical_embedding_dim = int(categorical_embedding_dim)
    self.reconstruction_weight = float(reconstruction_weight)
    self.l2 = float(l2)
    self.oov_id = int(oov_id)
    self.encode_side_features = bool(encode_side_features)

  @property
  def has_side_features(self) -> bool:
    """Whether the layer encodes side features (else it is an id embedding)."""
    return bool(self.numeric_dim or self.categorical_vocab_sizes)

  def build(self, input_shape):
    keras = self._api.keras
    regularizer = keras.regularizers.L2(self.l2) if self.l2 else None
    self._id_embedding = keras.layers.Embedding(
        self.vocab_size, self.embedding_dim, embeddings_regularizer=regularizer,
        name="id_embedding")
    # Sublayers built here, not at the first call: a Keras 3 model reloads its weights
    # right after `build`.
    self.build_sublayer(self._id_embedding, (None,))
    if self.has_side_features:
      self._numeric_norm = keras.layers.BatchNormalization(
          center=False, scale=False, name="numeric_norm") if self.numeric_dim else None
      self._categorical_embeddings = [] if not self.encode_side_features else [
          keras.layers.Embedding(size, self.categorical_embedding_dim, name=f"categorical_{j}")
          for j, size in enumerate(self.categorical_vocab_sizes)
      ]
      self._encoder = self._api.MLP(self.hidden_units, self.embedding_dim, l2=self.l2,
                                    name="encoder")
      self._decoder = self._api.MLP(tuple(reversed(self.hidden_units)),
                                    self.numeric_dim + sum(self.categorical_vocab_sizes),
                                    l2=self.l2, name="decoder")
      if self._numeric_norm is not None:  # of the ids' rank: its input spec fixes the rank
        ids_shape = input_shape[ID] if isinstance(input_shape, dict) else input_shape
        self.build_sublayer(self._numeric_norm, tuple(ids_shape) + (self.numeric_dim,))
      for embedding in self._categorical_embeddings:
        self.build_sublayer(embedding, (None,))
      encoder_input = self.embedding_dim
      if self.encode_side_features:
        encoder_input += (self.numeric_dim
                          + self.categorical_embedding_dim * len(self.categorical_vocab_sizes))
      self.build_sublayer(self._encoder, (None, encoder_input))
      self.build_sublayer(self._decoder, (None, self.embedding_dim))
    super().build(input_shape)

  def call(self, inputs: Inputs, training: Optional[bool] = None) -> tf.Tensor:
    features = inputs if isinstance(inputs, dict) else {ID: inputs}
    unknown = sorted(set(features) - {ID, NUMERIC, CATEGORICAL, SAMPLE_WEIGHT})
    if unknown or ID not in features:
      raise ValueError(
          f"{self.name}: inputs must be ids or a dict with key 'id' and optional "
          f"'numeric'/'categorical'/'sample_weight'; got keys {sorted(features)}")
    ids = tf.cast(features[ID], tf.int64)
    ids = tf.where((ids >= 0) & (ids < self.vocab_size), ids, tf.constant(self.oov_id, tf.int64))
    id_embedding = self._id_embedding(ids)
    if not self.has_side_features:
      return id_embedding

    given = NUMERIC in features or CATEGORICAL in features
    leading_shape = tf.shape(ids)
    numeric = self._side_input(features, NUMERIC, self.numeric_dim, tf.float32, leading_shape)
    if self.numeric_dim:
      numeric = tf.stop_gradient(self._numeric_norm(numeric, training=training and given))
    categorical = self._side_input(features, CATEGORICAL, len(self.categorical_vocab_sizes),
                                   tf.int64, leading_shape)
    parts = [id_embedding]
    if self.encode_side_features:
      if self.numeric_dim:
        parts.append(numeric)
      for j, embedding in enumerate(self._categorical_embeddings):
        column = _in_vocabulary(categorical[..., j], self.categorical_vocab_sizes[j])
        parts.append(embedding(column))
    latent = self._encoder(tf.concat(parts, axis=-1))
    if given and self.reconstruction_weight:
      per_entity = self._reconstruction_error(latent, numeric, categorical)
      weights = tf.cast(features.get(SAMPLE_WEIGHT, tf.ones_like(per_entity)), per_entity.dtype)
      self.add_loss(self.reconstruction_weight * tf.reduce_sum(weights * per_entity) /
                    tf.maximum(tf.reduce_sum(weights), 1e-9))
    return latent

  def _side_input(self, features: Dict[str, tf.Tensor], key: str, width: int,
                  dtype: tf.DType, leading_shape: tf.Tensor) -> tf.Tensor:
    """The side feature ``key`` cast to ``dtype``, or zeros ``[..., width]`` when absent."""
    if key in features:
      return tf.cast(features[key], dtype)
    return tf.zeros(tf.concat([leading_shape, [width]], axis=0), dtype)

  def _reconstruction_error(self, latent: tf.Tensor, numeric: tf.Tensor,
                            categorical: tf.Tensor) -> tf.Tensor:
    """Per entity ``[...]``: numeric squared error plus the categorical cross-entropies."""
    reconstruction = self._decoder(latent)
    per_entity = tf.zeros(tf.shape(latent)[:-1])
    if self.numeric_dim:
      per_entity += tf.reduce_sum(
          tf.square(numeric - reconstruction[..., :self.numeric_dim]), axis=-1)
    offset = self.numeric_dim
    for j, size in enumerate(self.categorical_vocab_sizes):
      logits = reconstruction[..., offset:offset + size]
      per_entity += tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=_in_vocabulary(categorical[..., j], size), logits=logits)
      offset += size
    return per_entity

  def get_config(self):
    config = super().get_config()
    config.update(
        vocab_size=self.vocab_size, embedding_dim=self.embedding_dim,
        numeric_dim=self.numeric_dim, categorical_vocab_sizes=list(self.categorical_vocab_sizes),
        hidden_units=list(self.hidden_units),
        categorical_embedding_dim=self.categorical_embedding_dim,
        reconstruction_weight=self.reconstruction_weight, l2=self.l2, oov_id=self.oov_id,
        encode_side_features=self.encode_side_features)
    return config
