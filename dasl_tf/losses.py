"""The top-n training objective: a ranking loss over each example's sampled negatives.

A CTR model trained on rated items only never sees what a user would *not*
pick, so it cannot rank a plausible item above a random unseen one. Each
training example therefore carries ``k`` sampled items of its domain the user
had not touched by then (``train_negatives``, :mod:`dasl_tf.negatives`),
scored by the same head as the target. With ``r_0`` the target's ranking
score, ``r_1..r_k`` the negatives', ``q_i`` the probability that one draw of
the sampler picks item ``i``, ``m_j`` whether slot ``j`` holds a drawn
negative (1) or is empty (0: a user who left too few items to draw from) and
``p`` whether the target counts as a positive, the corrected scores are

  ``c_i = r_i - log q_i``  (i = 0..k, the target included)

(the log-q correction of Yi et al. 2019, "Sampling-bias-corrected neural
modeling for large corpus item recommendations"), and the per-example ranking
loss is one of

* ``"bce"`` (negatives as non-interactions):
  ``L = p * log(1 + exp(-c_0)) + (1 / k) * sum_j m_j * log(1 + exp(c_j))``.
  Its minimiser is ``sigmoid(c_i) = P(data) / (P(data) + P(drawn))``, so
  ``c_i = log(p_data(i) / q_i)``: without the correction the score
  ``r_i`` learns ``log p_data(i) - log q_i`` and popularity sampling pushes
  popular items down; with it ``r_i = log p_data(i)`` plus a constant;
* ``"softmax"`` (sampled softmax):
  ``L = p * (logsumexp({c_0} + {c_j : m_j = 1}) - c_0)``, the cross-entropy of
  picking the target among its candidates; ``exp(c_j) = exp(r_j) / q_j`` is
  the importance-weighted estimate of the full softmax's partition sum, and
  correcting the target as well (as ``tf.nn.sampled_softmax_loss`` does)
  makes the loss invariant to any constant in ``log q``.

With uniform draws (``q_i = 1 / N``) every ``log q_i`` is the same constant:
it cancels in the softmax and in bce only shifts every score by the same
amount (absorbed by the item priors), so it is left out (``log q = 0``).
Likewise the normalisation of ``q`` over the items a row may draw (its
untouched items) is one constant per row and is left out. With several draws
per row, ``q_i`` is the probability of one draw (the rows are drawn without
repeats, so later draws favour rarer items slightly; the usual approximation).

The ranking score is ``r = rel + b(i)`` for a model whose heads have a
relevance output ``rel`` (DASL and its ablations; every observed target is a
positive, ``p = 1``: relevance models *that* the user picks the item, the CTR
logit *whether* he clicks it), else ``r = s + b(i)`` with ``s`` the CTR logit
(``p`` = the click label); ``b`` is the per-item prior of
:meth:`dasl_tf.models.task.CrossDomainTask.item_prior`. The model's loss is
``CTR BCE on the observed label + ranking_weight * L``
(:meth:`dasl_tf.models.base.CrossDomainRanker.compute_loss`).
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from dasl_tf.config import RANKING_LOSSES


def sampled_ranking_loss(kind: str, target_scores: tf.Tensor, negative_scores: tf.Tensor,
                         positive: tf.Tensor, target_log_q: Optional[tf.Tensor] = None,
                         negative_log_q: Optional[tf.Tensor] = None,
                         negative_mask: Optional[tf.Tensor] = None) -> tf.Tensor:
  """The per-example ranking loss of the module docstring.

  Args:
    kind: ``"bce"`` or ``"softmax"``.
    target_scores: float ``[B]``, the target's ranking score ``r_0``.
    negative_scores: float ``[B, k]``, the sampled negatives' ranking scores.
    positive: float ``[B]``, ``p``: 1.0 where the target is a positive.
    target_log_q: float ``[B]``, ``log q_0``; None for uniform draws (no correction).
    negative_log_q: float ``[B, k]``, ``log q_j``; None for uniform draws.
    negative_mask: float or bool ``[B, k]``, ``m_j``; None when every slot holds
      a negative.

  Returns:
    float32 ``[B]``.

  Raises:
    ValueError: unknown ``kind``, or only one of the two log q tensors given.
  """
  if (target_log_q is None) != (negative_log_q is None):
    raise ValueError("the log-q correction needs both target_log_q and negative_log_q")
  if target_log_q is not None:
    target_scores = target_scores - tf.cast(target_log_q, target_scores.dtype)
    negative_scores = negative_scores - tf.cast(negative_log_q, negative_scores.dtype)
  mask = (tf.ones_like(negative_scores, tf.bool) if negative_mask is None
          else tf.cast(negative_mask, tf.bool))
  if kind == "bce":
    return (positive * tf.nn.softplus(-target_scores)
            + tf.reduce_mean(tf.where(mask, tf.nn.softplus(negative_scores), 0.0), axis=-1))
  if kind == "softmax":
    masked = tf.where(mask, negative_scores, tf.constant(-float("inf"), negative_scores.dtype))
    candidates = tf.concat([target_scores[:, None], masked], axis=-1)
    return positive * (tf.reduce_logsumexp(candidates, axis=-1) - target_scores)
  raise ValueError(f"ranking loss {kind!r}; choose one of {RANKING_LOSSES}")
