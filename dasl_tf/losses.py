"""The top-n training objective: a ranking loss over each example's sampled negatives.

A CTR model trained on rated items only never sees what a user would *not*
pick, so it cannot rank a plausible item above a random unseen one. Each
training example therefore carries ``k`` sampled items of its domain the user
had not touched by then (``train_negatives``), scored by the same head as the
target. With ``r_0`` the target's ranking score, ``r_1..r_k`` the negatives'
and ``p`` whether the target counts as a positive, the per-example ranking
loss is one of

* ``"bce"`` (negatives as non-interactions):
  ``L = p * log(1 + exp(-r_0)) + (1 / k) * sum_j log(1 + exp(r_j))``;
* ``"softmax"`` (sampled softmax):
  ``L = p * (logsumexp(r_0, ..., r_k) - r_0)``, the cross-entropy of picking
  the target among the ``k + 1`` candidates. The negatives are drawn
  uniformly by default, so every candidate's log sampling probability is the
  same constant and the log-q correction ``r_j - log q_j`` cancels.

The ranking score is ``r = rel + b(i)`` for a model whose heads have a
relevance output ``rel`` (DASL and its ablations; every observed target is a
positive, ``p = 1``: relevance models *that* the user picks the item, the CTR
logit *whether* he clicks it), else ``r = s + b(i)`` with ``s`` the CTR logit
(``p`` = the click label); ``b`` is the per-item prior of
:meth:`dasl_tf.models.base.CrossDomainRanker.item_prior`. The model's loss is
``CTR BCE on the observed label + ranking_weight * L``
(:meth:`dasl_tf.models.base.CrossDomainRanker.compute_loss`).
"""
from __future__ import annotations

import tensorflow as tf

from dasl_tf.config import RANKING_LOSSES


def sampled_ranking_loss(kind: str, target_scores: tf.Tensor, negative_scores: tf.Tensor,
                         positive: tf.Tensor) -> tf.Tensor:
  """The per-example ranking loss of the module docstring.

  Args:
    kind: ``"bce"`` or ``"softmax"``.
    target_scores: float ``[B]``, the target's ranking score ``r_0``.
    negative_scores: float ``[B, k]``, the sampled negatives' ranking scores.
    positive: float ``[B]``, ``p``: 1.0 where the target is a positive.

  Returns:
    float32 ``[B]``.

  Raises:
    ValueError: unknown ``kind``.
  """
  if kind == "bce":
    return (positive * tf.nn.softplus(-target_scores)
            + tf.reduce_mean(tf.nn.softplus(negative_scores), axis=-1))
  if kind == "softmax":
    candidates = tf.concat([target_scores[:, None], negative_scores], axis=-1)
    return positive * (tf.reduce_logsumexp(candidates, axis=-1) - target_scores)
  raise ValueError(f"ranking loss {kind!r}; choose one of {RANKING_LOSSES}")
