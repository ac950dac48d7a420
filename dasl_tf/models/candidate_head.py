"""A prediction head over C candidates whose candidate-independent work is done once per example.

DASL's head for domain D (the MLP that ends the paper's §3.4) reads, for each candidate c,

  x_c = [u ; a_c ; c ; c ⊙ (a_c P_0) ; c ⊙ (u_1 P_1) ; ... ; c ⊙ (u_n P_n)]

where ``u = [u_1 ; ... ; u_n]`` is the user context (user embeddings, the
Dual Embedding transfer, the GRU states: the same for all the example's
candidates), ``a_c`` the Dual Attention output of the candidate, and the
products those of :class:`~dasl_tf.layers.CandidateInteraction` (absent
without candidate interactions). Split the first layer's kernel ``W`` into the
row blocks of ``x_c`` (``W_u``, ``W_a``, ``W_c``, ``W_0``, ``W_1``, ...,
``W_n``); since ``(c ⊙ q) W_i = c diag(q) W_i``, its affine map is

  x_c W + b = (u W_u + b) + a_c W_a + (c ⊙ a_c P_0) W_0 + c M,
  M = W_c + Σ_i diag(u_i P_i) W_i                                 (per example)

The first term and ``M`` are computed once per example, not once per
candidate: per candidate the first layer costs ``(|a| + 2 d) H`` instead of
``(|u| + |a| + (n + 2) d) H`` multiply-adds (96 instead of 352 rows at the
default sizes), and the ``C`` copies of ``u`` are never built. The result is
:meth:`~dasl_tf.layers.MLP.call` on the concatenation, up to float rounding.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from dasl_tf.layers import shell


def _last_dim(x: tf.Tensor) -> int:
  return int(x.shape[-1])


def _dense(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
  """``x @ kernel`` over the last axis of ``x`` ``[batch, C, k]``, as one 2-D ``MatMul``."""
  shape = tf.shape(x)
  out = tf.matmul(tf.reshape(x, [-1, _last_dim(x)]), kernel)
  return tf.reshape(out, tf.concat([shape[:-1], [_last_dim(kernel)]], 0))


def _build(mlp, interaction, context: Sequence[tf.Tensor], attended: tf.Tensor,
           candidates: tf.Tensor) -> None:
  """Builds the layers not built yet, for the inputs a call on the concatenation would give them."""
  widths = [_last_dim(u) for u in context] + [_last_dim(attended), _last_dim(candidates)]
  with tf.init_scope():
    if interaction is not None and not interaction.built:
      shell.LayerBody.build_sublayer(interaction, [candidates.shape, attended.shape] +
                                     [u.shape for u in context])
    if not mlp.built:
      widths += [_last_dim(candidates)] * (1 + len(context)) if interaction is not None else []
      shell.LayerBody.build_sublayer(mlp, (None, None, sum(widths)))


def head_outputs(mlp, interaction, context: Sequence[tf.Tensor], attended: tf.Tensor,
                 candidates: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
  """``mlp`` over ``[u ; a_c ; c ; interaction([c, a_c, u_1, ..., u_n])]`` of every candidate.

  Args:
    mlp: the head, a built :class:`~dasl_tf.layers.MLP` whose input is that concatenation.
    interaction: a built :class:`~dasl_tf.layers.CandidateInteraction` over
      ``[candidates, attended, *context]``, or None (no interaction features).
    context: the candidate-independent parts ``u_i``, ``[batch, k_i]`` each.
    attended: ``[batch, C, |a|]``, the attention output per candidate.
    candidates: ``[batch, C, d]``, the candidates' embeddings.
    training: whether the head's dropout runs.

  Returns:
    ``mlp``'s output ``[batch, C, units]``.
  """
  _build(mlp, interaction, context, attended, candidates)
  first = mlp.first_layer
  context_sizes = [_last_dim(u) for u in context]
  d = _last_dim(candidates)
  interactions = 1 + len(context) if interaction is not None else 0
  blocks = tf.split(first.kernel, context_sizes + [_last_dim(attended), d] + [d] * interactions,
                    axis=0)
  context_rows = blocks[:len(context)]
  attended_rows, candidate_rows = blocks[len(context):len(context) + 2]
  interaction_rows = blocks[len(context) + 2:]

  shared = first.bias + tf.add_n([tf.matmul(u, w) for u, w in zip(context, context_rows)])
  per_candidate = [attended]
  per_candidate_rows = [attended_rows]
  if interaction is None:
    per_candidate.append(candidates)
    per_candidate_rows.append(candidate_rows)
    pre_activation = shared[:, None, :]
  else:
    attended_factor, *context_factors = interaction.project([attended, *context])
    per_candidate.append(candidates * attended_factor)
    per_candidate_rows.append(interaction_rows[0])
    # M = W_c + sum_i diag(u_i P_i) W_i, [batch, d, H]: c M is the candidate's remaining term.
    candidate_map = candidate_rows + tf.add_n(
        [q[:, :, None] * w for q, w in zip(context_factors, interaction_rows[1:])])
    pre_activation = shared[:, None, :] + tf.matmul(candidates, candidate_map)
  pre_activation += _dense(tf.concat(per_candidate, -1), tf.concat(per_candidate_rows, 0))
  return mlp.call_from_first_layer(pre_activation, training=training)
