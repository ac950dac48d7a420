"""Dual Embedding (paper section 3.2): an orthogonal map between two domains' user spaces."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import tensorflow as tf

from dasl_tf.layers import shell

__getattr__ = shell.active_keras_classes("DualEmbedding", "OrthogonalityRegularizer",
                                         "OrthogonalRetraction")

def orthogonality_residual(kernel: tf.Tensor) -> tf.Tensor:
  """``||X^T X - I||_F`` of a square matrix ``X``."""
  gram = tf.matmul(kernel, kernel, transpose_a=True)
  return tf.norm(gram - tf.eye(tf.shape(kernel)[0], dtype=kernel.dtype))


class OrthogonalityRegularizerBody:
  """Penalty ``weight * ||X^T X - I||_F^2`` that pulls a square kernel toward orthogonality.

  A Keras regularizer (``OrthogonalityRegularizer``). Unlike Keras's
  ``regularizers.OrthogonalRegularizer`` (which normalises the
  rows and so ignores their norms), this penalty is zero only when ``X^T X = I``
  exactly, that is when ``X^T`` is the inverse of ``X`` as eq. (2) of the
  paper needs.

  Example:
    >>> from dasl_tf.layers import OrthogonalityRegularizer
    >>> # X = 2 I_3: X^T X - I = 3 I_3, whose squared Frobenius norm is 27.
    >>> float(OrthogonalityRegularizer(1.0)(tf.eye(3) * 2.0).numpy().round(4))
    27.0

  Args:
    weight: factor of the squared Frobenius norm.

  Raises:
    ValueError: ``weight`` is negative.
  """

  def __init__(self, weight: float = 1.0):
    if weight < 0:
      raise ValueError(f"OrthogonalityRegularizer weight must be >= 0, got {weight}")
    self.weight = float(weight)

  def __call__(self, kernel: tf.Tensor) -> tf.Tensor:
    return self.weight * tf.square(orthogonality_residual(kernel))

  def get_config(self):
    return {"weight": self.weight}


class OrthogonalRetractionBody:
  """Pulls a square kernel back to the orthogonal matrices after each optimizer step.

  A Keras constraint (``OrthogonalRetraction``).

  Applies ``steps`` Newton–Schulz iterations ``X <- X (1.5 I - 0.5 X^T X)``, which
  converge quadratically to the orthogonal polar factor of ``X`` when
  ``||X^T X - I|| < 1``; an orthogonally initialised kernel moved by small
  gradient steps stays in that region.

  Args:
    steps: Newton–Schulz iterations per application.

  Raises:
    ValueError: ``steps`` is not positive.
  """

  def __init__(self, steps: int = 1):
    if steps <= 0:
      raise ValueError(f"OrthogonalRetraction steps must be positive, got {steps}")
    self.steps = int(steps)

  def __call__(self, kernel: tf.Tensor) -> tf.Tensor:
    identity = tf.eye(tf.shape(kernel)[0], dtype=kernel.dtype)
    for _ in range(self.steps):
      kernel = tf.matmul(kernel, 1.5 * identity - 0.5 * tf.matmul(kernel, kernel, transpose_a=True))
    return kernel

  def get_config(self):
    return {"steps": self.steps}


class DualEmbeddingBody(shell.LayerBody):
  """Maps user embeddings between domains A and B with one orthogonal matrix ``X`` (``DualEmbedding``).

  With column vectors ``u_A``, ``u_B`` (a user's embedding in each domain) the
  layer returns both mappings

    X u_A     (domain A's user mapped into B's space: its B-side representation)
    X^T u_B   (domain B's user mapped into A's space)

  and adds, over the *overlap* users of the batch (``overlap`` true), the dual
  metric-learning losses of eq. (1) and eq. (2), each a mean over those users:

    L_X   = mean ||X u_A - u_B||^2                               (1)
    L_X^T = mean ||u_A - X^T u_B||^2                             (2)
    loss  = dual_weight * (L_X + L_X^T)
          + orthogonality_weight * ||X^T X - I||_F^2            (XX^T = X^TX = I)

  Both directions train together in every step. A batch without overlap users
  adds 0 for eq. (1)-(2). ``X`` starts orthogonal; with ``retraction_steps > 0``
  an ``OrthogonalRetraction`` constraint re-orthogonalises it after each
  optimizer step (Newton–Schulz steps), so ``||X^T X - I||_F`` stays near 0
  even when the dual losses pull ``X`` away from orthogonality.

  Batched rows are row vectors, so the layer computes ``u_A X^T`` and ``u_B X``.

  Example:
    >>> from dasl_tf.layers import DualEmbedding
    >>> layer = DualEmbedding()
    >>> a_to_b, b_to_a = layer((tf.ones([2, 4]), tf.ones([2, 4]), tf.constant([True, False])))
    >>> a_to_b.shape, len(layer.losses)
    (TensorShape([2, 4]), 2)

  Args:
    dual_weight: weight of eq. (1) + eq. (2).
    orthogonality_weight: weight of ``||X^T X - I||_F^2`` (0 disables it).
    retraction_steps: Newton–Schulz steps that re-orthogonalise ``X`` after
      each optimizer step (0 = none: only the penalty keeps it orthogonal).
    seed: seed of the orthogonal initialisation.

  Input shape: a tuple ``(u_a [batch, d], u_b [batch, d], overlap [batch])``,
    ``overlap`` bool (or 0/1): which users are pivots for eq. (1)-(2).
  Output shape: a tuple ``(X u_A [batch, d], X^T u_B [batch, d])``.

  Raises:
    ValueError: a weight or ``retraction_steps`` is negative, or ``u_a`` and
      ``u_b`` differ in size.
  """

  def __init__(self, dual_weight: float = 0.1, orthogonality_weight: float = 1.0,
               retraction_steps: int = 2, seed: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    if dual_weight < 0 or orthogonality_weight < 0:
      raise ValueError(
          f"DualEmbedding weights must be >= 0, got dual_weight={dual_weight}, "
          f"orthogonality_weight={orthogonality_weight}")
    if retraction_steps < 0:
      raise ValueError(f"DualEmbedding retraction_steps must be >= 0, got {retraction_steps}")
    self.dual_weight = float(dual_weight)
    self.orthogonality_weight = float(orthogonality_weight)
    self.retraction_steps = int(retraction_steps)
    self.seed = seed

  def build(self, input_shape: Sequence[tf.TensorShape]):
    dim_a = tf.TensorShape(input_shape[0])[-1]
    dim_b = tf.TensorShape(input_shape[1])[-1]
    if dim_a != dim_b:
      raise ValueError(
          f"{self.name}: u_a and u_b must have the same size, got {dim_a} and {dim_b}")
    self.kernel = self.add_weight(
        name="kernel", shape=(dim_a, dim_a),
        initializer=self._api.keras.initializers.Orthogonal(seed=self.seed),
        regularizer=(self._api.OrthogonalityRegularizer(self.orthogonality_weight)
                     if self.orthogonality_weight else None),
        constraint=(self._api.OrthogonalRetraction(self.retraction_steps)
                    if self.retraction_steps else None))
    super().build(input_shape)

  def call(self, inputs: Tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    user_a, user_b, overlap = inputs
    a_to_b = tf.matmul(user_a, self.kernel, transpose_b=True)  # X u_A
    b_to_a = tf.matmul(user_b, self.kernel)  # X^T u_B
    if self.dual_weight:
      weights = tf.cast(tf.reshape(overlap, [-1]), user_a.dtype)
      count = tf.maximum(tf.reduce_sum(weights), 1.0)
      forward = tf.reduce_sum(weights * tf.reduce_sum(tf.square(a_to_b - user_b), -1)) / count
      backward = tf.reduce_sum(weights * tf.reduce_sum(tf.square(user_a - b_to_a), -1)) / count
      self.add_loss(self.dual_weight * (forward + backward))
    return a_to_b, b_to_a

  def orthogonality_residual(self) -> tf.Tensor:
    """``||X^T X - I||_F`` of the current kernel."""
    return orthogonality_residual(self.kernel)

  def get_config(self):
    config = super().get_config()
    config.update(dual_weight=self.dual_weight, orthogonality_weight=self.orthogonality_weight,
                  retraction_steps=self.retraction_steps, seed=self.seed)
    return config
