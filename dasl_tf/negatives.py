"""Training negatives drawn fresh for every epoch in the tf.data pipeline, and their log q.

``TrainConfig.negative_sampling`` chooses where the ranking loss's negatives
come from (:class:`TrainingNegatives` is the step the training input applies):

* ``"stored"``: the ``train_negatives`` that ``dasl-prepare`` wrote, the same
  every epoch. When ``dasl-prepare`` drew them by popularity (its
  ``stats.json`` records its configuration), the batches get the log q of
  :mod:`dasl_tf.losses` computed from the training split's item counts (for a
  k-fold dataset ``dasl-prepare`` counted every fold and the run counts its
  training folds: an approximation of the q it drew from).
* ``"uniform"`` / ``"popularity"``: :class:`NegativeSampler` draws ``k`` new
  negatives per example of every training batch; popularity draws come with
  their log q.

A fresh draw for an example of domain D, user u and target t:

* Excluded items: every item of D that u has in ANY training example of D (as
  its target), plus the example's own D history and t. That is a superset of
  "touched by the target's time", so no drawn item was touched by then. Items
  u touches only later are excluded too: they are known positives of u, which
  the training example whose target they are teaches the head to score high,
  so drawing them as negatives would teach the opposite; and a set that does
  not depend on time is one sorted int64 key per (user, domain, item),
  ``(user * 2 + domain) * V + item`` (V the larger item vocabulary), built
  once per run from one pass over the training split and looked up with
  ``tf.searchsorted``.
* Candidates: a block of ``3k + 16`` draws by inverse CDF of
  ``tf.random.stateless_uniform``, over the items of D (ids 2..), uniformly
  or in proportion to ``count ** alpha`` (``count``: training examples of the
  item; an item without any is never drawn then).
* Kept: the first k candidates of the block, in draw order, that are neither
  excluded nor equal to an earlier candidate of the block (distinct within a
  row). With uniform draws that is a uniform k-subset of the allowed items.
* A short row (fewer than k kept: a user who touched almost the whole
  catalogue, or unlucky draws) fills its other slots with the padding id 0 and
  ``train_negative_mask`` 0, which the ranking loss ignores.
* Seeds: the block of batch ``b`` of an epoch is drawn with the stateless seed
  ``(epoch seed, b)``, the epoch seed being the one of the epoch's shuffle
  (``training._epoch_seed(seed, epoch)``), which also fixes the batches'
  order and contents. An epoch's draws therefore depend on (seed, epoch) and
  the data only, and a resumed run draws what an uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import data as data_lib
from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf import json_io
from dasl_tf.prepare.pipeline import STATS_FILE

# Negatives per example of fresh draws when the data stores none to take the count from.
DEFAULT_NUM_NEGATIVES = 16
# Candidates drawn per example: _OVERSAMPLE * k + _MARGIN.
_OVERSAMPLE = 3
_MARGIN = 16

Features = Dict[str, tf.Tensor]


def per_example(train: config_lib.TrainConfig, spec: F.FeatureSpec) -> int:
  """Negatives per training example the ranking loss sees (0: the CTR loss alone).

  ``train.train_negatives`` when set (>= 0); for -1 the data's
  ``num_train_negatives``, or :data:`DEFAULT_NUM_NEGATIVES` for fresh draws
  from data that stores none.
  """
  if train.train_negatives != -1:
    return train.train_negatives
  if spec.num_train_negatives or train.negative_sampling == "stored":
    return spec.num_train_negatives
  return DEFAULT_NUM_NEGATIVES


def touched_key(user, domain, item, num_items: int, num_domains: int = 2):
  """The key of (user, domain, item) triples of K = ``num_domains`` domains, NumPy or
  TensorFlow int64 (any shape)."""
  return (user * num_domains + domain) * num_items + item


@dataclasses.dataclass(frozen=True)
class TrainingSplit:
  """What the sampler reads of the training split.

  Attributes:
    keys: sorted unique :func:`touched_key` of every training example's
      (user, domain, target item), int64.
    counts: per domain, training examples per item index, int64 ``[V_d]``.
  """
  keys: np.ndarray
  counts: Tuple[np.ndarray, np.ndarray]

  @property
  def key_items(self) -> int:
    """The ``num_items`` of :attr:`keys`: the larger item vocabulary."""
    return max(len(counts) for counts in self.counts)

  @classmethod
  def from_columns(cls, columns: data_lib.SplitColumns,
                   schema: F.DatasetSchema) -> "TrainingSplit":
    """The keys and counts of the training split's columns (``user_id``, ``item_id``, ``domain``).

    Raises:
      ValueError: an item index lies outside its domain's vocabulary, or the
        keys would overflow int64.
    """
    sizes = schema.num_items
    if schema.num_users * len(sizes) * max(sizes) >= 2**63:
      raise ValueError(f"{schema.num_users} users x {len(sizes)} domains x {max(sizes)} items "
                       "overflow the int64 keys of the training negatives' exclusion set")
    user, item, domain = (columns.features[name] for name in (F.USER_ID, F.ITEM_ID, F.DOMAIN))
    counts = []
    for d in range(len(sizes)):
      items = item[domain == d]
      if items.size and not 0 <= items.min() <= items.max() < sizes[d]:
        raise ValueError(f"training split: item index {items.max()} of domain "
                         f"{F.domain_suffix(d).upper()} lies outside its vocabulary of "
                         f"{sizes[d]} (schema.json)")
      counts.append(np.bincount(items, minlength=sizes[d]).astype(np.int64))
    return cls(np.unique(touched_key(user, domain, item, max(sizes), len(sizes))), tuple(counts))


def draw_weights(counts: np.ndarray, kind: str, alpha: float) -> np.ndarray:
  """Unnormalised probability of drawing each item id of one domain, float64 ``[V]``.

  ``"uniform"``: 1 per item; ``"popularity"``: ``count ** alpha``; 0 for the
  reserved ids. A domain without weight anywhere is drawn uniformly.
  """
  weights = (np.ones(len(counts)) if kind == "uniform"
             else np.asarray(counts, np.float64) ** alpha)
  weights[:F.NUM_RESERVED_IDS] = 0.0
  if not weights.sum() > 0:
    weights[F.NUM_RESERVED_IDS:] = 1.0
  return weights


def log_q(weights: np.ndarray) -> np.ndarray:
  """``log q_i``, the log probability of one draw, per item id, float64 ``[V]``.

  An id that is never drawn (the reserved ids, an item without training
  examples under popularity sampling) gets the log q of the rarest drawn
  item, so that an out-of-vocabulary target has a finite correction.
  """
  floor = weights[weights > 0].min() if (weights > 0).any() else 1.0
  return np.log(np.maximum(weights, floor) / max(weights.sum(), floor))


def _by_domain(tables: Sequence[tf.Tensor], domain: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
  """``tables[domain][ids]`` per example: domain ``[B]``, ids ``[B]`` or ``[B, k]``."""
  return F.domain_select(domain, [
      tf.gather(table, tf.clip_by_value(ids, 0, tf.shape(table, tf.int64)[0] - 1))
      for table in tables])


class LogQ:
  """Adds the log q of the target and the negatives to training batches.

  Args:
    weights: per domain, :func:`draw_weights` of the sampler.
  """

  def __init__(self, weights: Sequence[np.ndarray]):
    self._tables = [tf.constant(log_q(w), tf.float32) for w in weights]

  def add_to(self, features: Features) -> Features:
    """``features`` with ``train_target_logq`` [B] and ``train_negative_logq`` [B, k]."""
    features = dict(features)
    domain = features[F.DOMAIN]
    features[F.TRAIN_TARGET_LOGQ] = _by_domain(self._tables, domain, features[F.ITEM_ID])
    features[F.TRAIN_NEGATIVE_LOGQ] = _by_domain(self._tables, domain,
                                                 features[F.TRAIN_NEGATIVES])
    return features


class NegativeSampler:
  """Draws fresh training negatives per batch (the rules of the module docstring).

  Args:
    split: the training split's keys and counts.
    num_negatives: k per example.
    kind: ``"uniform"`` or ``"popularity"``.
    alpha: the exponent of popularity draws.
  """

  def __init__(self, split: TrainingSplit, num_negatives: int, kind: str, alpha: float):
    if num_negatives < 1:
      raise ValueError(f"num_negatives={num_negatives}: a sampler draws at least one")
    self.num_negatives = num_negatives
    self.block = _OVERSAMPLE * num_negatives + _MARGIN
    self.weights = tuple(draw_weights(counts, kind, alpha) for counts in split.counts)
    self._sizes = [len(counts) for counts in split.counts]
    self._cdfs = [tf.constant(self._cdf(w)) for w in self.weights]
    # A key below every real one, so that a lookup never indexes an empty table.
    self._keys = tf.constant(np.concatenate([[-1], split.keys]).astype(np.int64))
    self._key_items = split.key_items
    self._earlier = tf.constant(np.tril(np.ones((self.block, self.block), bool), -1))

  @staticmethod
  def _cdf(weights: np.ndarray) -> np.ndarray:
    """The cumulative draw distribution over ids 2.. (one entry for a domain without items)."""
    cdf = np.cumsum(weights[F.NUM_RESERVED_IDS:])
    return cdf / cdf[-1] if len(cdf) else np.ones(1)

  def draw(self, features: Features, seed: tf.Tensor) -> Features:
    """``features`` with new ``train_negatives`` [B, k] and ``train_negative_mask`` [B, k].

    Args:
      features: a batch with ``user_id``, ``item_id``, ``domain`` and every history.
      seed: int64 ``[2]``, the stateless seed of the batch's block.
    """
    domain, target = features[F.DOMAIN], features[F.ITEM_ID]
    shape = tf.stack([tf.shape(domain)[0], self.block])
    uniform = tf.reshape(tf.random.stateless_uniform(shape, seed, dtype=tf.float64), [-1])
    draws = [tf.reshape(tf.minimum(tf.searchsorted(cdf, uniform, side="right", out_type=tf.int64),
                                   tf.size(cdf, out_type=tf.int64) - 1), shape)
             + F.NUM_RESERVED_IDS for cdf in self._cdfs]
    candidates = F.domain_select(domain, draws)
    history = F.domain_select(domain, [features[F.history_key(d)]
                                       for d in range(len(self._sizes))])
    vocabulary_size = F.domain_select(domain, [tf.constant([[size]], tf.int64)
                                               for size in self._sizes])
    repeated = candidates[:, :, None] == candidates[:, None, :]
    excluded = (self._touched(features[F.USER_ID], domain, candidates)
                | (candidates >= vocabulary_size)
                | tf.equal(candidates, target[:, None])
                | tf.reduce_any(candidates[:, :, None] == history[:, None, :], axis=-1)
                | tf.reduce_any(repeated & self._earlier, axis=-1))
    order = tf.argsort(tf.cast(excluded, tf.int32), axis=1, stable=True)[:, :self.num_negatives]
    kept = tf.gather(~excluded, order, batch_dims=1)
    features = dict(features)
    features[F.TRAIN_NEGATIVES] = tf.where(kept, tf.gather(candidates, order, batch_dims=1),
                                           tf.constant(F.PAD_ID, tf.int64))
    features[F.TRAIN_NEGATIVE_MASK] = tf.cast(kept, tf.float32)
    return features

  def _touched(self, user: tf.Tensor, domain: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
    """Whether (user, domain, item) is in the training split, bool like ``items`` [B, m]."""
    keys = tf.reshape(touched_key(user[:, None], domain[:, None], items, self._key_items,
                                  len(self._sizes)), [-1])
    position = tf.minimum(tf.searchsorted(self._keys, keys, out_type=tf.int64),
                          tf.size(self._keys, out_type=tf.int64) - 1)
    return tf.reshape(tf.equal(tf.gather(self._keys, position), keys), tf.shape(items))


def prepared_sampling(data_dir: Optional[str]) -> Tuple[str, float]:
  """How ``dasl-prepare`` drew the stored ``train_negatives``: (kind, alpha), from ``stats.json``.

  Data without a ``stats.json`` that records it is taken as uniform (with a warning).
  """
  path = os.path.join(data_dir, STATS_FILE) if data_dir else None
  if path and filesystems.files_for(path).exists(path):
    prepared = json_io.load(path).get("config", {})
    if "negative_sampling" in prepared:
      return prepared["negative_sampling"], float(prepared.get("negative_alpha", 0.0))
  logging.warning("%s does not record how the stored train_negatives were drawn; taking them "
                  "as uniform draws (no log-q correction)", path or "the training data")
  return "uniform", 0.0


class TrainingNegatives:
  """The step of the training input that draws negatives (or adds the stored ones' log q).

  Args:
    sampler: draws fresh negatives; None keeps the stored ones.
    log_q: adds log q to the batches; None for uniform draws.
  """

  def __init__(self, sampler: Optional[NegativeSampler], log_q: Optional[LogQ]):
    self.sampler = sampler
    self.log_q = log_q

  @classmethod
  def for_run(cls, train: config_lib.TrainConfig, schema: F.DatasetSchema,
              training_split: data_lib.SplitColumns, data_dir: Optional[str]
             ) -> Optional["TrainingNegatives"]:
    """The step of a run, or None when the batches need none (no negatives, uniform stored ones).

    Args:
      train: the run's training configuration.
      schema: the dataset's schema.
      training_split: the training split's columns (read for fresh or corrected draws).
      data_dir: the directory of ``schema.json`` and ``stats.json``, if known.
    """
    num_negatives = per_example(train, schema.feature_spec)
    if not num_negatives:
      return None
    if train.negative_sampling == "stored":
      kind, alpha = prepared_sampling(data_dir)
      if kind != "popularity":
        return None
      split = TrainingSplit.from_columns(training_split, schema)
      logging.info("stored train_negatives were drawn by popularity (alpha %g): correcting "
                   "them by log q", alpha)
      return cls(None, LogQ([draw_weights(c, kind, alpha) for c in split.counts]))
    split = TrainingSplit.from_columns(training_split, schema)
    sampler = NegativeSampler(split, num_negatives, train.negative_sampling,
                              train.negative_sampling_alpha)
    logging.info("drawing %d %s negatives per training example every epoch (blocks of %d; "
                 "%d (user, domain, item) pairs excluded)", num_negatives,
                 train.negative_sampling, sampler.block, len(split.keys))
    return cls(sampler, LogQ(sampler.weights) if train.negative_sampling == "popularity"
               else None)

  def apply(self, dataset: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """``(features, labels)`` batches with the step applied; batch b draws with ``(seed, b)``."""

    def step(index: tf.Tensor, batch: Tuple[Features, tf.Tensor]):
      features, labels = batch
      if self.sampler is not None:
        features = self.sampler.draw(features, tf.stack([tf.constant(seed, tf.int64), index]))
      if self.log_q is not None:
        features = self.log_q.add_to(features)
      return features, labels

    return dataset.enumerate().map(step, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)
