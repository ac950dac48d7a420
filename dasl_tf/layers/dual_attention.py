"""Dual Attention (paper section 3.4): attention over all domains' records jointly."""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from dasl_tf.layers import shell

__getattr__ = shell.active_keras_classes("DualAttention")

JOINT = "joint"
SEPARATE = "separate"
OWN = "own"
MODES = (JOINT, SEPARATE, OWN)

# The heads are numbered 0, 1, ..., K - 1, in the order of the layer's `domain_names`.
DOMAIN_NAMES = ("a", "b")


def input_keys(domain_names: Sequence[str] = DOMAIN_NAMES
               ) -> Tuple[Dict[int, str], Dict[int, str], Dict[int, str]]:
  """The input keys per head, ``(query, records, mask)``: ``query_<name>``, ... of each domain.

  Example:
    >>> input_keys(("x", "y", "z"))[0]
    {0: 'query_x', 1: 'query_y', 2: 'query_z'}

  Raises:
    ValueError: ``domain_names`` are fewer than two or not distinct.
  """
  if len(domain_names) < 2 or len(set(domain_names)) != len(domain_names):
    raise ValueError(f"DualAttention domain_names must be two or more distinct names, "
                     f"got {tuple(domain_names)}")
  return tuple({d: f"{role}_{name}" for d, name in enumerate(domain_names)}
               for role in ("query", "records", "mask"))


def attended_order(own: int, num_domains: int) -> Tuple[int, ...]:
  """The domains a head's records come in: its own first, then the others in order.

  Example:
    >>> attended_order(1, 3)
    (1, 0, 2)
  """
  return (own, *(d for d in range(num_domains) if d != own))


# The keys of the default domain names: query_a, records_b, ...
QUERY, RECORDS, MASK = input_keys()


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

  Example:
    >>> keys = tf.constant([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    >>> weights = attention_weights(tf.constant([[[2.0, 0.0]]]), keys,
    ...                             tf.constant([[True, True, False]]))
    >>> weights.numpy().round(4)  # softmax([2, 0] / sqrt(2)), the padded record at 0
    array([[[0.8044, 0.1956, 0.    ]]], dtype=float32)

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


class DualAttentionBody(shell.LayerBody):
  """Attention of each head's candidate over the user's records of all domains (``DualAttention``).

  Records ``R_1 .. R_K`` (``[batch, T, r]``, e.g. the per-step GRU outputs of
  each of the K ≥ 2 domains) are projected once per domain to keys
  ``K_e = R_e W^K_e`` and values ``V_e = R_e W^V_e``; each head's query is its
  candidate projected, ``q_d = c_d W^Q_d``. In ``"joint"`` mode (DASL) the
  softmax of head ``d`` runs over the K·T records of all domains at once, its
  own first, scaled by ``1/sqrt(d_k)``, with padding masked:

    Att_d = softmax( q_d (K_d ; K_others)^T / sqrt(d_k) ) (V_d ; V_others)

  With K = 2 and domains A, B this is the paper's pair:

    Att_A = softmax( q_A (K_A ; K_B)^T / sqrt(d_k) ) (V_A ; V_B)     (6)
    Att_B = softmax( q_B (K_B ; K_A)^T / sqrt(d_k) ) (V_B ; V_A)     (7)

  so the weight of a record of one domain depends on the records of the others.
  ``"separate"`` mode (the DASL-DA ablation) runs one softmax per domain and
  concatenates ``[softmax(q K_d^T) V_d ; softmax(q K_e^T) V_e ; ...]`` (own
  domain first); ``"own"`` mode (Single-Domain) attends to the head's own
  domain only. A head whose attended records are all padding gets 0.
  :meth:`record_weights` returns the weights that ``call`` multiplies the
  values by.

  The heads are numbered ``0 .. K-1``, the domains of ``domain_names`` in
  order; each input (and sublayer) name ends in its domain's name: with the
  default ``("a", "b")``, ``query_a``, ``records_b``, ... (:data:`QUERY`,
  :data:`RECORDS`, :data:`MASK`).

  Example:
    >>> from dasl_tf.layers import DualAttention
    >>> layer = DualAttention(key_dim=4)
    >>> inputs = {"query_a": tf.ones([2, 3, 8]), "query_b": tf.ones([2, 3, 8]),
    ...           "records_a": tf.zeros([2, 5, 6]), "records_b": tf.zeros([2, 5, 6]),
    ...           "mask_a": tf.ones([2, 5], tf.bool),
    ...           "mask_b": tf.constant([[False, False, False, True, True]] * 2)}
    >>> att_a, att_b = layer(inputs)
    >>> att_a.shape
    TensorShape([2, 3, 4])
    >>> weights_a, weights_b = layer.record_weights(inputs)
    >>> # Equal scores; eq. (6) spreads the weight over the 7 real records of A and B.
    >>> weights_a[0, 0].numpy().round(4)
    array([0.1429, 0.1429, 0.1429, 0.1429, 0.1429, 0.    , 0.    , 0.    ,
           0.1429, 0.1429], dtype=float32)
    >>> (att_b_alone,) = layer({k: v for k, v in inputs.items() if k != "query_a"},
    ...                        heads=(1,))
    >>> bool(tf.reduce_all(att_b_alone == att_b))
    True

  Args:
    key_dim: d_k, the size of queries and keys.
    value_dim: d_v, the size of values (defaults to ``key_dim``).
    mode: ``"joint"`` (eq. 6-7), ``"separate"`` or ``"own"``.
    domain_names: the names of the K ≥ 2 domains, in order: the suffixes of
      the input keys and sublayer names.

  Input shape: a dict with, for each domain name ``n``, ``query_n``
    ``[batch, C, q]`` (the head's candidates), ``records_n`` ``[batch, T, r]``
    and ``mask_n`` bool ``[batch, T]`` (true = real record). With
    ``heads=(1,)`` (say) only that head is computed and the other queries may
    be absent.
  Output shape: one tensor per head of ``heads`` (all domains by default, in
    order), each ``[batch, C, d_v]``, or ``[batch, C, K d_v]`` in
    ``"separate"`` mode.

  Raises:
    ValueError: a size is not positive, the mode is unknown, the domain names
      are fewer than two or not distinct, a head is not a domain number, or an
      input is missing.
  """

  def __init__(self, key_dim: int, value_dim: int = None, mode: str = JOINT,
               domain_names: Sequence[str] = DOMAIN_NAMES, **kwargs):
    super().__init__(**kwargs)
    self.domain_names = tuple(domain_names)
    self._query_keys, self._records_keys, self._mask_keys = input_keys(self.domain_names)
    self._domains = tuple(range(len(self.domain_names)))
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
    return len(self._domains) * self.value_dim if self.mode == SEPARATE else self.value_dim

  def build(self, input_shape: Dict[str, tf.TensorShape]):
    self._check_keys(input_shape, (*self._records_keys.values(), *self._mask_keys.values()))

    def projections(units: int, role: str, inputs: Dict[int, str]) -> List:
      """One projection without bias per domain, indexed by domain, built where its input is known.

      A query absent from ``input_shape`` (a call of one head) builds at its first call.
      """
      dense = [self._api.keras.layers.Dense(units, use_bias=False,
                                            name=f"{role}_{self.domain_names[d]}")
               for d in self._domains]
      for d in self._domains:
        if inputs[d] in input_shape:
          self.build_sublayer(dense[d], tuple(input_shape[inputs[d]]))
      return dense

    self._query = projections(self.key_dim, "query", self._query_keys)
    self._key = projections(self.key_dim, "key", self._records_keys)
    self._value = projections(self.value_dim, "value", self._records_keys)
    super().build(input_shape)

  def call(self, inputs: Mapping[str, tf.Tensor], heads: Optional[Sequence[int]] = None
           ) -> Tuple[tf.Tensor, ...]:
    """Each requested head's attention output, in the order of ``heads``.

    Args:
      inputs: the input dict; the query of a head not in ``heads`` may be absent.
      heads: domain numbers (all domains if ``None``); a scorer that needs one
        domain's head computes only that one.

    Returns:
      One ``[batch, C, output_dim]`` tensor per head of ``heads``.
    """
    heads = self._domains if heads is None else tuple(heads)
    weights = self._head_weights(inputs, heads)
    values = [self._value[d](inputs[self._records_keys[d]]) for d in self._domains]
    outputs = []
    for head in heads:
      parts = [tf.matmul(w, values[d]) for d, w in weights[head].items()]
      outputs.append(tf.concat(parts, -1) if self.mode == SEPARATE else tf.add_n(parts))
    return tuple(outputs)

  def record_weights(self, inputs: Mapping[str, tf.Tensor]) -> Tuple[tf.Tensor, ...]:
    """What each head attends to: the weights ``call`` multiplies the values by.

    For inspection (the training report's heatmap); computed by the same code
    as ``call``'s weights.

    Args:
      inputs: as for ``call``, with every query (the layer must be built).

    Returns:
      One tensor per domain, each ``[batch, C, K T]`` over domain 0's T
      records, then domain 1's, ... (domain order, whatever the head).
      ``"joint"``: one softmax over all K T records (eq. 6-7); ``"separate"``:
      each domain's part sums to 1 on its own; ``"own"``: the other domains'
      parts are 0.
    """
    weights = self._head_weights(inputs, self._domains)
    outputs = []
    for head in self._domains:
      batch_and_queries = tf.shape(weights[head][head])[:2]
      outputs.append(tf.concat([
          weights[head][d] if d in weights[head] else
          tf.zeros(tf.concat([batch_and_queries, tf.shape(inputs[self._mask_keys[d]])[1:]], 0))
          for d in self._domains], -1))
    return tuple(outputs)

  def _head_weights(self, inputs: Mapping[str, tf.Tensor], heads: Sequence[int]
                    ) -> Dict[int, Dict[int, tf.Tensor]]:
    """The attention weights of each head of ``heads`` (eq. 6-7 and the ablation modes).

    Returns:
      ``{head: {domain: [batch, C, T]}}``: each head's weights over the records
      of the domains it attends to, own domain first, then the others in
      order. ``"joint"``: one softmax over all domains' records (eq. 6-7),
      split back per domain; ``"separate"``: one softmax per domain;
      ``"own"``: the own domain only.
    """
    unknown = [head for head in heads if head not in self._domains]
    if unknown:
      raise ValueError(f"{self.name}: heads must be domains {self._domains} "
                       f"(the order of domain_names {self.domain_names}), got {list(heads)}")
    self._check_keys(inputs, [self._query_keys[head] for head in heads])
    keys = [self._key[d](inputs[self._records_keys[d]]) for d in self._domains]
    masks = [tf.cast(inputs[self._mask_keys[d]], tf.bool) for d in self._domains]
    weights = {}
    for own in heads:
      order = attended_order(own, len(self._domains))
      query = self._query[own](inputs[self._query_keys[own]])
      if self.mode == JOINT:
        joint = attention_weights(query, tf.concat([keys[d] for d in order], 1),
                                  tf.concat([masks[d] for d in order], 1))
        split = tf.split(joint, [tf.shape(keys[d])[1] for d in order], -1)
        weights[own] = dict(zip(order, split))
      else:
        attended = order if self.mode == SEPARATE else (own,)
        weights[own] = {d: attention_weights(query, keys[d], masks[d]) for d in attended}
    return weights

  def _check_keys(self, inputs, required: Sequence[str]) -> None:
    missing = sorted(set(required) - set(inputs))
    if missing:
      expected = [keys[d] for keys in (self._query_keys, self._records_keys, self._mask_keys)
                  for d in self._domains]
      raise ValueError(f"{self.name}: missing input(s) {missing}; expected keys {expected}")

  def get_config(self):
    config = super().get_config()
    config.update(key_dim=self.key_dim, value_dim=self.value_dim, mode=self.mode,
                  domain_names=self.domain_names)
    return config
