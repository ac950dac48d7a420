"""Evaluation metrics per head: exact AUC and HR@K against sampled negatives.

Stable metric names (used by ``metrics.json``, reports and callbacks):

* ``auc_a``, ``auc_b``: ROC AUC of the click probability of each head on the
  examples of its domain (exact, rank-based with ties averaged);
* ``hr10_a``, ``hr10_b``: hit rate at 10: each *positive* example's target
  item ranked by the head of its domain against the example's ``negatives``
  (K = 99 items the user never touched in that domain, sampled with a fixed
  seed by ``dasl-prepare``); a hit when fewer than 10 negatives score at least
  as high as the target (ties count against the target, so a constant scorer
  gets HR@10 = 10/100 rather than 1);
* ``examples_a``/``examples_b`` and ``positives_a``/``positives_b``: how many
  examples each number is computed on.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
from dasl_tf import features as F

DOMAIN_NAMES = ("a", "b")


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """Exact ROC AUC (Mann–Whitney U with average ranks for ties).

  Args:
    labels: ``[N]`` 0/1 labels.
    scores: ``[N]`` scores, higher = more likely positive.

  Returns:
    The AUC, or NaN when ``labels`` has no positive or no negative.
  """
  labels = np.asarray(labels).reshape(-1) > 0.5
  scores = np.asarray(scores, dtype=np.float64).reshape(-1)
  num_pos = int(labels.sum())
  num_neg = labels.size - num_pos
  if num_pos == 0 or num_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  sorted_scores = scores[order]
  ranks = np.empty(scores.size, dtype=np.float64)
  # Average 1-based rank within each run of equal scores.
  starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
  ends = np.r_[starts[1:], scores.size]
  ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
  return float((ranks[labels].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def hits_at_k(candidate_scores: tf.Tensor, candidate_valid: tf.Tensor, k: int) -> tf.Tensor:
  """Whether the first candidate (the target) ranks in the top ``k``.

  Args:
    candidate_scores: ``[N, 1 + K]`` scores; column 0 is the target.
    candidate_valid: bool ``[N, 1 + K]``; false for padding negatives, which
      are not ranked.
    k: the cut-off.

  Returns:
    bool ``[N]``: fewer than ``k`` valid negatives score at least as high as
    the target.
  """
  target = candidate_scores[:, :1]
  above = (candidate_scores[:, 1:] >= target) & candidate_valid[:, 1:]
  return tf.reduce_sum(tf.cast(above, tf.int32), axis=1) < k


class _Collector:
  """Gathers per-domain scores, labels and hits over the batches of a dataset."""

  def __init__(self, model, k: int):
    self.k = k
    self.model = model
    self.scores = [[], []]
    self.labels = [[], []]
    self.hits = [[], []]

  @tf.function(reduce_retracing=True)
  def _batch(self, features: Dict[str, tf.Tensor], labels: tf.Tensor):
    logits = self.model(features, training=False)
    in_a = tf.equal(features[F.DOMAIN], F.DOMAIN_A)
    own_logit = tf.where(in_a, logits["logit_a"], logits["logit_b"])
    if F.NEGATIVES not in features:
      return own_logit, tf.zeros([0], tf.bool), tf.zeros([0], tf.int64)
    positive = labels > 0.5
    selected = {name: tf.boolean_mask(value, positive) for name, value in features.items()}
    candidates = tf.concat([selected[F.ITEM_ID][:, None], selected[F.NEGATIVES]], axis=1)
    scores = self.model.score_candidates(selected, candidates, training=False)
    hits = hits_at_k(scores, tf.not_equal(candidates, F.PAD_ID), self.k)
    return own_logit, hits, selected[F.DOMAIN]

  def add(self, features: Dict[str, tf.Tensor], labels: tf.Tensor) -> None:
    own_logit, hits, hit_domains = (t.numpy() for t in self._batch(features, labels))
    domains = features[F.DOMAIN].numpy()
    labels = labels.numpy()
    for d in (F.DOMAIN_A, F.DOMAIN_B):
      self.scores[d].append(own_logit[domains == d])
      self.labels[d].append(labels[domains == d])
      self.hits[d].append(hits[hit_domains == d])

  def result(self) -> Dict[str, float]:
    out = {}
    for d, name in zip((F.DOMAIN_A, F.DOMAIN_B), DOMAIN_NAMES):
      labels = np.concatenate(self.labels[d]) if self.labels[d] else np.zeros(0)
      scores = np.concatenate(self.scores[d]) if self.scores[d] else np.zeros(0)
      hits = np.concatenate(self.hits[d]) if self.hits[d] else np.zeros(0, bool)
      out[f"auc_{name}"] = roc_auc(labels, scores)
      out[f"hr{self.k}_{name}"] = float(hits.mean()) if hits.size else float("nan")
      out[f"examples_{name}"] = int(labels.size)
      out[f"positives_{name}"] = int(hits.size)
    return out


def evaluate_model(model, dataset: tf.data.Dataset, k: int = 10,
                   max_batches: Optional[int] = None) -> Dict[str, float]:
  """AUC and HR@k per head of a :class:`~dasl_tf.models.base.CrossDomainRanker`.

  Args:
    model: a two-headed model (``call`` -> ``logit_a``/``logit_b``, and
      ``score_candidates``).
    dataset: batches of ``(features, labels)``, e.g. from
      ``dasl_tf.data.make_dataset(..., with_negatives=True)``. Without a
      ``negatives`` feature HR is NaN.
    k: the HR cut-off.
    max_batches: evaluate at most this many batches (None = all).

  Returns:
    ``{"auc_a", "auc_b", "hr{k}_a", "hr{k}_b", "examples_a", "examples_b",
    "positives_a", "positives_b"}``; a metric with no example is NaN.
  """
  collector = _Collector(model, k)
  for step, (features, labels) in enumerate(dataset):
    if max_batches is not None and step >= max_batches:
      break
    collector.add(features, labels)
    if step and step % 100 == 0:
      logging.info("evaluated %d batches", step)
  return collector.result()


class EvaluationCallback(tf_keras.callbacks.Callback):
  """Adds :func:`evaluate_model`'s metrics, prefixed (``val_auc_a``, ...), to each epoch's logs.

  Args:
    dataset: evaluation batches with ``negatives`` (see :func:`evaluate_model`).
    k: the HR cut-off.
    prefix: prefix of the log keys.
  """

  def __init__(self, dataset: tf.data.Dataset, k: int = 10, prefix: str = "val_"):
    super().__init__()
    self.dataset = dataset
    self.k = k
    self.prefix = prefix

  def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
    results = evaluate_model(self.model, self.dataset, self.k)
    logging.info("epoch %d evaluation: %s", epoch + 1, results)
    if logs is not None:
      logs.update({self.prefix + name: value for name, value in results.items()})
