"""Explicit candidate interactions for the prediction heads (DIN-style product features)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import tensorflow as tf

from dasl_tf.layers import shell

__getattr__ = shell.active_keras_classes("CandidateInteraction")


class CandidateInteractionBody(shell.LayerBody):
  """Element-wise products of each candidate with projected user-context vectors (``CandidateInteraction``).

  For a candidate embedding ``c`` (size d) and context vectors ``x_1..x_n``
  (attention outputs, GRU states, user embeddings; any sizes ``k_i``):

    out = [c ⊙ (x_1 P_1) ; ... ; c ⊙ (x_n P_n)],   P_i ∈ R^{k_i × d}, no bias

  A linear layer over ``out`` then computes ``Σ_i c^T diag(w_i) P_i^T x_i``, a
  learned bilinear form between the candidate and each context: the
  candidate/history affinity a plain MLP over ``[x ; c]`` has to approximate
  with many ReLUs (as in DIN's ``e_cand ⊙ e_hist`` features).

  Example:
    >>> from dasl_tf.layers import CandidateInteraction
    >>> layer = CandidateInteraction(l2=0.0)
    >>> out = layer([tf.ones([2, 3, 4]), tf.ones([2, 3, 5]), tf.ones([2, 6])])
    >>> out.shape
    TensorShape([2, 3, 8])

  Args:
    l2: L2 penalty on the projection kernels.

  Input shape: a list ``[candidates, x_1, ..., x_n]`` with ``candidates``
    ``[batch, C, d]`` and each ``x_i`` either ``[batch, C, k_i]`` (per candidate)
    or ``[batch, k_i]`` (shared by the example's candidates), ``n >= 1``.
  Output shape: ``[batch, C, n * d]``.

  Raises:
    ValueError: ``l2`` is negative, fewer than two inputs are given, or an
      input has an unknown last dimension.
  """

  def __init__(self, l2: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if l2 < 0:
      raise ValueError(f"CandidateInteraction l2 must be >= 0, got {l2}")
    self.l2 = float(l2)

  def build(self, input_shape: Sequence[tf.TensorShape]):
    shapes = [tf.TensorShape(shape) for shape in input_shape]
    if len(shapes) < 2:
      raise ValueError(f"{self.name}: expects [candidates, context, ...], got {len(shapes)} input(s)")
    if any(shape[-1] is None for shape in shapes):
      raise ValueError(f"{self.name}: every input needs a known last dimension, got {shapes}")
    keras = self._api.keras
    regularizer = keras.regularizers.L2(self.l2) if self.l2 else None
    self._projections = [
        keras.layers.Dense(shapes[0][-1], use_bias=False, kernel_regularizer=regularizer,
                           name=f"projection_{i}") for i in range(len(shapes) - 1)]
    for projection, context_shape in zip(self._projections, shapes[1:]):
      self.build_sublayer(projection, tuple(context_shape))
    super().build(input_shape)

  def call(self, inputs: Sequence[tf.Tensor], training: Optional[bool] = None) -> tf.Tensor:
    candidates = inputs[0]
    products = []
    for projected in self.project(inputs[1:]):
      if len(projected.shape) == 2:
        projected = tf.expand_dims(projected, 1)  # shared by the C candidates: broadcast.
      products.append(candidates * projected)
    return tf.concat(products, axis=-1)

  def project(self, contexts: Sequence[tf.Tensor]) -> Tuple[tf.Tensor, ...]:
    """The projected contexts ``x_i P_i``, each ``[batch, d]`` or ``[batch, C, d]`` as ``x_i``.

    The factors ``call`` multiplies the candidates by (the layer must be built).
    """
    return tuple(projection(context) for projection, context in zip(self._projections, contexts))

  def get_config(self):
    config = super().get_config()
    config.update(l2=self.l2)
    return config
