"""Dual Attention (paper section 3.4): attention over both domains' records jointly."""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import tensorflow as tf
import tf_keras

JOINT = "joint"
SEPARATE = "separate"
OWN = "own"
MODES = (JOINT, SEPARATE, OWN)

QUERY_A, QUERY_B = "query_a", "query_b"
RECORDS_A, RECORDS_B = "records_a", "records_b"
MASK_A, MASK_B = "mask_a", "mask_b"
INPUT_KEYS = (QUERY_A, QUERY_B, RECORDS_A, RECORDS_B, MASK_A, MASK_B)
HEADS = ("a", "b")


def masked_attention(query: tf.Tensor, keys: tf.Tensor, values: tf.Tensor,
                     mask: tf.Tensor) -> tf.Tensor:
  """Scaled dot-product attention of C queries over T records, padding masked.

  ``softmax(q K^T / sqrt(d_k)) V`` where masked records get weight 0; a row whose
  records are all masked returns 0 (not NaN).

  Args:
    query: ``[batch, C, d_k]``.
    keys: ``[batch, T, d_k]``.
    values: ``[batch, T, d_v]``.
    mask: bool ``[batch, T]``, true for real records.

  Returns:
    ``[batch, C, d_v]``.
  """
  return tf.matmul(attention_weights(query, keys, mask), values)


def attention_weights(query: tf.Tensor, keys: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """The weights ``softmax(q K^T / sqrt(d_k))`` of :func:`masked_attention`, padding at 0.

  Args:
    query: ``[batch, C, d_k]``.
    keys: ``[batch, T, d_k]``.
    mask: bool ``[batch, T]``, true for real records.

  Returns:
    ``[batch, C, T]``; each row sums to 1 over its real records (0 if it has none).
  """
  scale = 1.0 / math.sqrt(float(query.shape[-1]))
  scores = tf.matmul(query, keys, transpose_b=True) * scale  # [B, C, T]
  valid = mask[:, None, :]
  scores = tf.where(valid, scores, tf.fill(tf.shape(scores), scores.dtype.min))
  return tf.nn.softmax(scores, axis=-1) * tf.cast(valid, scores.dtype)


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class DualAttention(tf_keras.layers.Layer):
  """Attention of each head's candidate over the user's records of both domains.

  Records ``R_A``, ``R_B`` (``[batch, T, r]``, e.g. the per-step GRU outputs of
  each domain) are projected once per domain to keys ``K_D = R_D W^K_D`` and
  values ``V_D = R_D W^V_D``; each head's query is its candidate projected,
  ``q_A = c_A W^Q_A`` and ``q_B = c_B W^Q_B``. In ``"joint"`` mode (DASL) the
  softmax runs over the 2T records of both domains at once, scaled by
  ``1/sqrt(d_k)``, with padding masked:

    Att_A = softmax( q_A (K_A ; K_B)^T / sqrt(d_k) ) (V_A ; V_B)     (6)
    Att_B = softmax( q_B (K_B ; K_A)^T / sqrt(d_k) ) (V_B ; V_A)     (7)

  so the weight of a record of one domain depends on the records of the other.
  ``"separate"`` mode (the DASL-DA ablation) runs one softmax per domain and
  concatenates ``[softmax(q K_A^T) V_A ; softmax(q K_B^T) V_B]``; ``"own"``
  mode (Single-Domain) attends to the head's own domain only. A head whose
  attended records are all padding gets 0.

  Example:
    >>> layer = DualAttention(key_dim=4)
    >>> inputs = {"query_a": tf.ones([2, 3, 8]), "query_b": tf.ones([2, 3, 8]),
    ...           "records_a": tf.ones([2, 5, 6]), "records_b": tf.ones([2, 5, 6]),
    ...           "mask_a": tf.ones([2, 5], tf.bool), "mask_b": tf.ones([2, 5], tf.bool)}
    >>> att_a, att_b = layer(inputs)
    >>> att_a.shape
    TensorShape([2, 3, 4])
    >>> (att_b_alone,) = layer({k: v for k, v in inputs.items() if k != "query_a"},
    ...                        heads=("b",))


  Args:
    key_dim: d_k, the size of queries and keys.
    value_dim: d_v, the size of values (defaults to ``key_dim``).
    mode: ``"joint"`` (eq. 6-7), ``"separate"`` or ``"own"``.

  Input shape: a dict with ``query_a``/``query_b`` ``[batch, C, q]`` (each
    head's candidates), ``records_a``/``records_b`` ``[batch, T, r]`` and
    ``mask_a``/``mask_b`` bool ``[batch, T]`` (true = real record). With
    ``heads=("b",)`` (or ``("a",)``) only that head is computed and the other
    query may be absent.
  Output shape: ``(Att_A, Att_B)`` (the heads of ``heads``, in order), each
    ``[batch, C, d_v]``, or ``[batch, C, 2 d_v]`` in ``"separate"`` mode.

  Raises:
    ValueError: a size is not positive, the mode is unknown, or an input is missing.
  """

  def __init__(self, key_dim: int, value_dim: int = None, mode: str = JOINT, **kwargs):
    super().__init__(**kwargs)
    value_dim = key_dim if value_dim is None else value_dim
    if key_dim <= 0 or value_dim <= 0:
      raise ValueError(
          f"DualAttention sizes must be positive, got key_dim={key_dim}, value_dim={value_dim}")
    if mode not in MODES:
      raise ValueError(f"DualAttention mode must be one of {MODES}, got {mode!r}")
    self.key_dim = int(key_dim)
    self.value_dim = int(value_dim)
    self.mode = mode

  @property
  def output_dim(self) -> int:
    """Size of each head's output."""
    return 2 * self.value_dim if self.mode == SEPARATE else self.value_dim

  def build(self, input_shape: Dict[str, tf.TensorShape]):
    self._check_keys(input_shape, (RECORDS_A, RECORDS_B, MASK_A, MASK_B))

    def projection(units: int, name: str) -> tf_keras.layers.Dense:
      return tf_keras.layers.Dense(units, use_bias=False, name=name)

    self._query = {d: projection(self.key_dim, f"query_{d}") for d in "ab"}
    self._key = {d: projection(self.key_dim, f"key_{d}") for d in "ab"}
    self._value = {d: projection(self.value_dim, f"value_{d}") for d in "ab"}
    super().build(input_shape)

  def call(self, inputs: Dict[str, tf.Tensor], heads: Sequence[str] = HEADS
           ) -> Tuple[tf.Tensor, ...]:
    """Each requested head's attention output, in the order of ``heads``.

    Args:
      inputs: the input dict; the query of a head not in ``heads`` may be absent.
      heads: ``"a"``, ``"b"`` or both; a scorer that needs one domain's head
        computes only that one.
    """
    self._check_keys(inputs, [f"query_{head}" for head in heads])
    keys = {d: self._key[d](inputs[f"records_{d}"]) for d in "ab"}
    values = {d: self._value[d](inputs[f"records_{d}"]) for d in "ab"}
    masks = {d: tf.cast(inputs[f"mask_{d}"], tf.bool) for d in "ab"}
    outputs = []
    for own in heads:
      other = "b" if own == "a" else "a"
      query = self._query[own](inputs[f"query_{own}"])
      if self.mode == JOINT:
        outputs.append(masked_attention(
            query, tf.concat([keys[own], keys[other]], 1),
            tf.concat([values[own], values[other]], 1),
            tf.concat([masks[own], masks[other]], 1)))
      elif self.mode == SEPARATE:
        outputs.append(tf.concat(
            [masked_attention(query, keys[d], values[d], masks[d]) for d in (own, other)], -1))
      else:
        outputs.append(masked_attention(query, keys[own], values[own], masks[own]))
    return tuple(outputs)

  def _check_keys(self, inputs, required: Sequence[str]) -> None:
    missing = sorted(set(required) - set(inputs))
    if missing:
      raise ValueError(f"{self.name}: missing input(s) {missing}; expected keys {INPUT_KEYS}")

  def record_weights(self, inputs: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    """What each head attends to: its weights over the records of both domains.

    For inspection (the training report's heatmap); ``call`` does not use it.

    Args:
      inputs: as for ``call`` (the layer must be built).

    Returns:
      ``(W_A, W_B)``, each ``[batch, C, 2T]`` over domain A's T records then
      domain B's. ``"joint"``: one softmax over all 2T records (eq. 6-7);
      ``"separate"``: each domain's half sums to 1 on its own; ``"own"``: the
      other domain's half is 0.
    """
    keys = {d: self._key[d](inputs[f"records_{d}"]) for d in "ab"}
    masks = {d: tf.cast(inputs[f"mask_{d}"], tf.bool) for d in "ab"}
    lengths = {d: tf.shape(keys[d])[1] for d in "ab"}
    outputs = []
    for own, other in (("a", "b"), ("b", "a")):
      query = self._query[own](inputs[f"query_{own}"])
      if self.mode == JOINT:
        joint = attention_weights(query, tf.concat([keys[own], keys[other]], 1),
                                  tf.concat([masks[own], masks[other]], 1))
        weights = dict(zip((own, other), tf.split(joint, [lengths[own], lengths[other]], -1)))
      else:
        weights = {d: attention_weights(query, keys[d], masks[d]) for d in (own, other)}
        if self.mode == OWN:
          weights[other] = tf.zeros_like(weights[other])
      outputs.append(tf.concat([weights["a"], weights["b"]], -1))
    return outputs[0], outputs[1]

  def get_config(self):
    config = super().get_config()
    config.update(key_dim=self.key_dim, value_dim=self.value_dim, mode=self.mode)
    return config
