"""Evaluation metrics per head: exact AUC and HR@K against sampled negatives.

Stable metric names (used by ``metrics.json``, reports and callbacks):

* ``auc_a``, ``auc_b``: ROC AUC of the click probability of each head on the
  examples of its domain (exact, rank-based with ties averaged);
* ``hr10_a``, ``hr10_b``: hit rate at 10: each *positive* example's target
  item ranked by the head of its domain against the example's ``negatives``
  (K = 99 items the user never touched in that domain, sampled with a fixed
  seed by ``dasl-prepare``); a hit when fewer than 10 negatives score at least
  as high as the target (ties count against the target, so a constant scorer
  gets HR@10 = 0, and a random one about 10/100);
* ``examples_a``/``examples_b`` and ``positives_a``/``positives_b``: how many
  examples each number is computed on;
* each of these again per slice of the examples (:data:`SLICES`), with the
  slice's name as a suffix: ``auc_a_cold_start`` (at most 2 own-domain
  history items before the target), ``auc_a_no_other_domain`` (no
  other-domain history before the target), ``auc_a_both_domains`` (history in
  both), and so on. Slices are per example, by what the model sees.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
from dasl_tf import features as F



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


SLICES = ("cold_start", "no_other_domain", "both_domains")
"""Example slices of the per-slice metrics (:func:`slice_masks`)."""
COLD_START_MAX_HISTORY = 2


def slice_masks(own_history: np.ndarray, other_history: np.ndarray) -> Dict[str, np.ndarray]:
  """Which examples fall in each slice of :data:`SLICES`.

  Args:
    own_history: items in each example's own-domain history (before the target), int [N].
    other_history: items in its other-domain history, int [N].

  Returns:
    ``{"cold_start": own <= 2, "no_other_domain": other == 0,
    "both_domains": own > 0 and other > 0}``, bool [N] each.
  """
  return {"cold_start": own_history <= COLD_START_MAX_HISTORY,
          "no_other_domain": other_history == 0,
          "both_domains": (own_history > 0) & (other_history > 0)}


class _Collector:
  """Gathers per-domain scores, labels, hits and history sizes over a dataset's batches."""

  def __init__(self, model, k: int):
    self.k = k
    self.model = model
    self.columns = {name: [[], []] for name in
                    ("scores", "labels", "own", "other", "hits", "hit_own", "hit_other")}

  @tf.function(reduce_retracing=True)
  def _batch(self, features: Dict[str, tf.Tensor], labels: tf.Tensor):
    logits = self.model(features, training=False)
    in_a = tf.equal(features[F.DOMAIN], F.DOMAIN_A)
    own_logit = tf.where(in_a, logits["logit_a"], logits["logit_b"])
    if F.NEGATIVES not in features:
      return own_logit, tf.zeros([0], tf.bool), tf.zeros([0], tf.bool)
    positive = labels > 0.5
    selected = {name: tf.boolean_mask(value, positive) for name, value in features.items()}
    candidates = tf.concat([selected[F.ITEM_ID][:, None], selected[F.NEGATIVES]], axis=1)
    scores = self.model.score_candidates(selected, candidates, training=False)
    hits = hits_at_k(scores, tf.not_equal(candidates, F.PAD_ID), self.k)
    return own_logit, hits, positive

  def add(self, features: Dict[str, tf.Tensor], labels: tf.Tensor) -> None:
    own_logit, hits, positive = (t.numpy() for t in self._batch(features, labels))
    domains = features[F.DOMAIN].numpy()
    history = [np.sum(features[name].numpy() != F.PAD_ID, axis=1)
               for name in (F.HIST_A, F.HIST_B)]
    own = np.where(domains == F.DOMAIN_A, history[0], history[1])
    other = np.where(domains == F.DOMAIN_A, history[1], history[0])
    labels = labels.numpy()
    hit_domains = domains[positive] if hits.size else np.zeros(0, domains.dtype)
    for d in (F.DOMAIN_A, F.DOMAIN_B):
      rows = domains == d
      hit_rows = hit_domains == d
      for name, values in (("scores", own_logit[rows]), ("labels", labels[rows]),
                           ("own", own[rows]), ("other", other[rows]),
                           ("hits", hits[hit_rows]),
                           ("hit_own", own[positive][hit_rows] if hits.size else own[:0]),
                           ("hit_other", other[positive][hit_rows] if hits.size else other[:0])):
        self.columns[name][d].append(values)

  def result(self) -> Dict[str, float]:
    out = {}
    for d, name in F.DOMAIN_SUFFIX.items():
      column = {key: np.concatenate(parts[d]) if parts[d] else np.zeros(0)
                for key, parts in self.columns.items()}
      masks = {"": np.ones(column["labels"].size, dtype=bool)}
      masks.update({f"_{s}": m for s, m in slice_masks(column["own"], column["other"]).items()})
      hit_masks = {"": np.ones(column["hits"].size, dtype=bool)}
      hit_masks.update({f"_{s}": m for s, m in
                        slice_masks(column["hit_own"], column["hit_other"]).items()})
      for suffix, mask in masks.items():
        hits = column["hits"][hit_masks[suffix]]
        out[f"auc_{name}{suffix}"] = roc_auc(column["labels"][mask], column["scores"][mask])
        out[f"hr{self.k}_{name}{suffix}"] = float(hits.mean()) if hits.size else float("nan")
        out[f"examples_{name}{suffix}"] = int(mask.sum())
        out[f"positives_{name}{suffix}"] = int(hits.size)
    return out


def evaluate_model(model, dataset: tf.data.Dataset, k: int = 10,
                   max_batches: Optional[int] = None) -> Dict[str, float]:
  """AUC and HR@k per head, overall and per slice, of a two-headed model.

  Args:
    model: a two-headed model (``call`` -> ``logit_a``/``logit_b``, and
      ``score_candidates``), such as a
      :class:`~dasl_tf.models.base.CrossDomainRanker`.
    dataset: batches of ``(features, labels)``, e.g. from
      ``dasl_tf.data.make_dataset(..., with_negatives=True)``. Without a
      ``negatives`` feature HR is NaN.
    k: the HR cut-off.
    max_batches: evaluate at most this many batches (None = all).

  Returns:
    ``{"auc_a", "auc_b", "hr{k}_a", "hr{k}_b", "examples_a", "examples_b",
    "positives_a", "positives_b"}`` over all examples, and the same keys with
    the suffix ``_<slice>`` for each slice of :data:`SLICES`; a metric with no
    example is NaN.
  """
  collector = _Collector(model, k)
  for step, (features, labels) in enumerate(dataset):
    if max_batches is not None and step >= max_batches:
      break
    collector.add(features, labels)
    if step and step % 100 == 0:
      logging.info("evaluated %d batches", step)
  return collector.result()
