"""Dual Embedding (paper section 3.2): orthogonal maps between domains' user spaces.

``DualEmbedding`` is the paper's pair (one kernel ``X``); ``MultiDomainEmbedding``
generalises it to K ≥ 2 domains (one orthogonal kernel per domain after the
first) and equals it for K = 2 on the same kernel.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import tensorflow as tf

from dasl_tf.layers import shell

__getattr__ = shell.active_keras_classes("DualEmbedding", "MultiDomainEmbedding",
                                         "OrthogonalityRegularizer", "OrthogonalRetraction")


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


def overlap_mean_squared_distance(x: tf.Tensor, y: tf.Tensor, overlap: tf.Tensor) -> tf.Tensor:
  """``mean ||x_i - y_i||^2`` over the rows ``i`` where ``overlap`` is true (0 if none).

  The form of eq. (1) and eq. (2): ``x`` a user's embedding mapped from one
  domain, ``y`` the same user's embedding in the other, over the overlap users.

  Example:
    >>> x, y = tf.constant([[1.0, 1.0], [3.0, 0.0]]), tf.zeros([2, 2])
    >>> float(overlap_mean_squared_distance(x, y, tf.constant([True, False])))
    2.0
  """
  weights = tf.cast(tf.reshape(overlap, [-1]), x.dtype)
  count = tf.maximum(tf.reduce_sum(weights), 1.0)
  return tf.reduce_sum(weights * tf.reduce_sum(tf.square(x - y), -1)) / count


def add_orthogonal_kernel(layer: Any, name: str, dim: int, seed: Optional[int],
                          orthogonality_weight: float, retraction_steps: int) -> tf.Variable:
  """A ``[dim, dim]`` weight of ``layer``, initialised orthogonal, penalised and retracted.

  Args:
    layer: a layer body (``layer._api`` names its Keras).
    name: the weight's name.
    dim: its size.
    seed: seed of the orthogonal initialisation.
    orthogonality_weight: weight of ``||X^T X - I||_F^2`` (0: no penalty).
    retraction_steps: Newton–Schulz steps after each optimizer step (0: none).
  """
  api = layer._api  # pylint: disable=protected-access
  return layer.add_weight(
      name=name, shape=(dim, dim),
      initializer=api.keras.initializers.Orthogonal(seed=seed),
      regularizer=(api.OrthogonalityRegularizer(orthogonality_weight)
                   if orthogonality_weight else None),
      constraint=api.OrthogonalRetraction(retraction_steps) if retraction_steps else None)


def _check_weights(layer: str, dual_weight: float, orthogonality_weight: float,
                   retraction_steps: int) -> None:
  if dual_weight < 0 or orthogonality_weight < 0:
    raise ValueError(
        f"{layer} weights must be >= 0, got dual_weight={dual_weight}, "
        f"orthogonality_weight={orthogonality_weight}")
  if retraction_steps < 0:
    raise ValueError(f"{layer} retraction_steps must be >= 0, got {retraction_steps}")


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
    _check_weights("DualEmbedding", dual_weight, orthogonality_weight, retraction_steps)
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
    self.kernel = add_orthogonal_kernel(self, "kernel", dim_a, self.seed,
                                        self.orthogonality_weight, self.retraction_steps)
    super().build(input_shape)

  def call(self, inputs: Tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    user_a, user_b, overlap = inputs
    a_to_b = tf.matmul(user_a, self.kernel, transpose_b=True)  # X u_A
    b_to_a = tf.matmul(user_b, self.kernel)  # X^T u_B
    if self.dual_weight:
      self.add_loss(self.dual_weight * (overlap_mean_squared_distance(a_to_b, user_b, overlap)
                                        + overlap_mean_squared_distance(user_a, b_to_a, overlap)))
    return a_to_b, b_to_a

  def orthogonality_residual(self) -> tf.Tensor:
    """``||X^T X - I||_F`` of the current kernel."""
    return orthogonality_residual(self.kernel)

  def get_config(self):
    config = super().get_config()
    config.update(dual_weight=self.dual_weight, orthogonality_weight=self.orthogonality_weight,
                  retraction_steps=self.retraction_steps, seed=self.seed)
    return config


class MultiDomainEmbeddingBody(shell.LayerBody):
  """Maps user embeddings between any two of K ≥ 2 domains (``MultiDomainEmbedding``).

  Domain 0's user space is the shared one. Each other domain ``e`` has one
  orthogonal kernel ``X_e`` (``kernel_<name>``) mapping the shared space into
  its own; ``X_0 = I``. The map from domain ``d`` to domain ``e`` is

    M_{d->e} = X_e X_d^T,   so   M_{e->d} = M_{d->e}^T = M_{d->e}^{-1}

  (orthogonal kernels make every map orthogonal and each map's inverse its
  transpose, as eq. (2) needs). The layer adds, over every pair ``d < e`` and
  the users present in both (``present[:, d]`` and ``present[:, e]``), the
  losses of eq. (1) and eq. (2), and the orthogonality penalty per kernel:

    loss = dual_weight * sum_{d<e} ( mean ||M_{d->e} u_d - u_e||^2         (1)
                                   + mean ||u_d - M_{e->d} u_e||^2 )      (2)
         + orthogonality_weight * sum_{e>0} ||X_e^T X_e - I||_F^2

  With K = 2 and domains A, B, ``X_1`` is ``DualEmbedding``'s ``X``:
  ``M_{A->B} = X``, ``M_{B->A} = X^T``, and the loss is ``DualEmbedding``'s
  (the same initial kernel for the same ``seed``). The K - 1 kernels are
  ``(K - 1) d^2`` weights, against ``K (K - 1) / 2`` for one map per pair,
  and every map is consistent: ``M_{d->e} M_{c->d} = M_{c->e}``.

  Example:
    >>> from dasl_tf.layers import MultiDomainEmbedding
    >>> layer = MultiDomainEmbedding(domain_names=("a", "b", "c"))
    >>> users = [tf.ones([2, 4])] * 3
    >>> mapped = layer((users, tf.constant([[True, True, False], [True, True, True]])))
    >>> mapped.shape  # [batch, from domain, to domain, d]
    TensorShape([2, 3, 3, 4])
    >>> bool(tf.reduce_all(mapped[:, 0, 0] == users[0]))  # M_{0->0} = I
    True

  Args:
    domain_names: the K ≥ 2 domains, in order; ``kernel_<name>`` for each
      after the first.
    dual_weight: weight of eq. (1) + eq. (2), summed over the pairs.
    orthogonality_weight: weight of ``||X_e^T X_e - I||_F^2`` per kernel (0
      disables it).
    retraction_steps: Newton–Schulz steps that re-orthogonalise each kernel
      after each optimizer step (0 = none).
    seed: seed of the orthogonal initialisation (kernel ``e`` takes
      ``seed + e - 1``).

  Input shape: a tuple ``(users, present)``: ``users`` K tensors
    ``[batch, d]`` (a user's embedding in each domain, in domain order) and
    ``present`` bool (or 0/1) ``[batch, K]``: in which domains the user is
    known, the pivots of eq. (1)-(2) for each pair.
  Output shape: ``[batch, K, K, d]``: ``[:, d, e]`` is ``M_{d->e} u_d``, user
    ``d``'s embedding mapped into domain ``e``'s space (``[:, 0, 0] = u_0``;
    ``[:, d, d] = X_d X_d^T u_d``, ``u_d`` while ``X_d`` is orthogonal).

  Raises:
    ValueError: a weight or ``retraction_steps`` is negative, the domain
      names are fewer than two or not distinct, or the inputs are not K
      embeddings of one size and a ``[batch, K]`` mask.
  """

  def __init__(self, domain_names: Sequence[str] = ("a", "b"), dual_weight: float = 0.1,
               orthogonality_weight: float = 1.0, retraction_steps: int = 2,
               seed: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    _check_weights("MultiDomainEmbedding", dual_weight, orthogonality_weight, retraction_steps)
    self.domain_names = tuple(domain_names)
    if len(self.domain_names) < 2 or len(set(self.domain_names)) != len(self.domain_names):
      raise ValueError(f"MultiDomainEmbedding domain_names must be two or more distinct names, "
                       f"got {self.domain_names}")
    self.dual_weight = float(dual_weight)
    self.orthogonality_weight = float(orthogonality_weight)
    self.retraction_steps = int(retraction_steps)
    self.seed = seed

  def build(self, input_shape):
    user_shapes, present_shape = input_shape
    num_domains = len(self.domain_names)
    dims = {tf.TensorShape(shape)[-1] for shape in user_shapes}
    if len(user_shapes) != num_domains or len(dims) != 1:
      raise ValueError(
          f"{self.name}: expected {num_domains} user embeddings of one size (domains "
          f"{self.domain_names}), got sizes {[tf.TensorShape(s)[-1] for s in user_shapes]}")
    if tf.TensorShape(present_shape)[-1] not in (None, num_domains):
      raise ValueError(f"{self.name}: present must be [batch, {num_domains}], "
                       f"got {tf.TensorShape(present_shape)}")
    (dim,) = dims
    self.kernels = [add_orthogonal_kernel(
        self, f"kernel_{name}", dim, None if self.seed is None else self.seed + index,
        self.orthogonality_weight, self.retraction_steps)
                    for index, name in enumerate(self.domain_names[1:])]
    super().build(input_shape)

  def call(self, inputs: Tuple[Sequence[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    users, present = inputs
    users = tf.stack(list(users), 1)  # [batch, K, d]
    dim = users.shape[-1]
    kernels = tf.stack([tf.eye(dim, dtype=users.dtype),  # [K, d, d]: X_0 = I
                        *(tf.convert_to_tensor(kernel) for kernel in self.kernels)])
    shared = tf.einsum("bki,kij->bkj", users, kernels)  # rows u_d X_d: X_d^T u_d
    mapped = tf.einsum("bdi,eji->bdej", shared, kernels)  # rows (X_d^T u_d) X_e^T
    if self.dual_weight:
      present = tf.cast(present, tf.bool)
      pairs = []
      num_domains = len(self.domain_names)
      for d in range(num_domains):
        for e in range(d + 1, num_domains):
          both = tf.logical_and(present[:, d], present[:, e])
          pairs.append(overlap_mean_squared_distance(mapped[:, d, e], users[:, e], both)
                       + overlap_mean_squared_distance(users[:, d], mapped[:, e, d], both))
      self.add_loss(self.dual_weight * tf.add_n(pairs))
    return mapped

  def orthogonality_residuals(self) -> Tuple[tf.Tensor, ...]:
    """``||X_e^T X_e - I||_F`` of each kernel, domains 1 .. K-1."""
    return tuple(orthogonality_residual(kernel) for kernel in self.kernels)

  def get_config(self):
    config = super().get_config()
    config.update(domain_names=self.domain_names, dual_weight=self.dual_weight,
                  orthogonality_weight=self.orthogonality_weight,
                  retraction_steps=self.retraction_steps, seed=self.seed)
    return config
