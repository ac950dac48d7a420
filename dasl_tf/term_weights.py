"""The weights of a DASL head's top-n score, chosen on the validation split.

A DASL head ranks the candidates c of its domain D by

  score_D(u, c) = r_D(u, c) + b_D(c) + Σ_s w_{D,s} · s_{D,s}(c) + w_D · log(1 + r(c, t))

(relevance output, item prior, co-occurrence terms, recency term; docs/model.md,
docs/top_n_training.md). Training fits every part, weights included, with the
sampled ranking loss: a few negatives per example, mostly popular ones, never
the full catalogue the top-n list is drawn from. :func:`select_term_weights`
then chooses the parts' weights ``β_n`` for the full catalogue, as
``pop_item_knn`` chooses its blend weight: on the **validation** split only,

* for a seeded uniform sample of at most ``positives`` validation positives per
  domain (targets in the vocabulary), it scores every catalogue item the user
  has not touched, and the positive's stored evaluation ``negatives``, by each
  part separately (:meth:`DASL.top_n_parts <dasl_tf.models.dasl.DASL.top_n_parts>`), once;
* a coordinate search over :data:`MULTIPLIERS` (times the trained weight, one
  part at a time, :data:`SWEEPS` sweeps) keeps a move only when it raises the
  sample's objective: the product of its full-catalogue HR@10 and its sampled
  HR@10 (the square of their geometric mean, so that neither protocol is
  bought with the other; the full-catalogue HR@10 alone where the data stores
  no negatives), then full-catalogue NDCG@10 on ties, ranks with ties broken
  at random by a seeded rule, as :mod:`dasl_tf.metrics` does;
* the chosen weights are written into the model's own variables
  (:meth:`DASL.set_top_n_weights <dasl_tf.models.dasl.DASL.set_top_n_weights>`):
  an export serves them and a model directory keeps them, with no new variable.

The trained weights are the search's start, so the chosen ones never score a
lower objective on the sample. The CTR output is untouched: AUC does not change.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from dasl_tf import features as F
from dasl_tf import metrics as metrics_lib
from dasl_tf.catalogue import FullCatalogue

MULTIPLIERS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
"""What the search multiplies a part's trained weight by (a weight of 0 is multiplied as 1)."""
RELEVANCE_MULTIPLIERS = tuple(m for m in MULTIPLIERS if m > 0)
"""The same for the relevance, whose weight stays positive (it sets the scale)."""
SWEEPS = 2
"""Passes of the coordinate search over the parts (it stops early when a pass changes nothing)."""
SELECTION_K = 10
"""The cut-off of the HR@K and NDCG@K the search maximises."""


class Parts(NamedTuple):
  """One domain's sampled validation positives, each candidate scored by each part.

  Attributes:
    scores: part name -> float32 ``[N, V]``: in the full catalogue, column j is
      item ``2 + j``; against the stored negatives, column 0 is the target.
    ranked: bool ``[N, V]``: the candidates each target is ranked against.
    targets: int ``[N]``: each target's column.
    uniforms: float ``[N]``: the seeded uniforms that break its ties.
  """
  scores: Dict[str, np.ndarray]
  ranked: np.ndarray
  targets: np.ndarray
  uniforms: np.ndarray


def hit_rates(parts: Parts, weights: Mapping[str, float], k: int = SELECTION_K
              ) -> Tuple[float, float]:
  """``(HR@k, NDCG@k)`` of ``parts`` ranked by ``Σ_n weights[n] · scores[n]``."""
  scores = sum(np.float32(weight) * parts.scores[name]
               for name, weight in weights.items() if weight)
  if isinstance(scores, int):  # every weight 0: all items tie
    scores = np.zeros_like(parts.ranked, np.float32)
  rows = np.arange(parts.targets.size)
  target = scores[rows, parts.targets][:, None]
  above = np.sum((scores > target) & parts.ranked, axis=1)
  ties = np.sum((scores == target) & parts.ranked, axis=1)
  ranks = metrics_lib.random_ranks(above, ties, parts.uniforms)
  return float(np.mean(ranks <= k)), float(np.mean(metrics_lib.ndcg_gains(ranks, k)))


class HeadParts(NamedTuple):
  """One head's sample of validation positives, ranked two ways.

  Attributes:
    full: against the full catalogue less what the user touched.
    sampled: against each positive's stored evaluation ``negatives`` (the
      target is column 0), or None when the data stores none.
  """
  full: Parts
  sampled: Optional[Parts]


def head_rates(head: HeadParts, weights: Mapping[str, float], k: int = SELECTION_K
               ) -> Dict[str, float]:
  """``hr10_full``, ``ndcg10_full`` and (with sampled parts) ``hr10_sampled`` of ``weights``."""
  hr, ndcg = hit_rates(head.full, weights, k)
  rates = {f"hr{k}_full": hr, f"ndcg{k}_full": ndcg}
  if head.sampled is not None:
    rates[f"hr{k}_sampled"] = hit_rates(head.sampled, weights, k)[0]
  return rates


def objective(rates: Mapping[str, float], k: int = SELECTION_K) -> Tuple[float, float]:
  """What the search maximises: (full HR@k × sampled HR@k, full NDCG@k), compared in order."""
  return (rates[f"hr{k}_full"] * rates.get(f"hr{k}_sampled", 1.0), rates[f"ndcg{k}_full"])


def search_weights(head: HeadParts, start: Mapping[str, float], k: int = SELECTION_K
                   ) -> Tuple[Dict[str, float], Dict[str, float]]:
  """The coordinate search of the module doc, from the weights ``start``.

  Returns:
    ``(weights, rates)``: the chosen weights and their :func:`head_rates`.
  """
  weights = dict(start)
  rates = head_rates(head, weights, k)
  for _ in range(SWEEPS):
    moved = False
    for name in start:
      base = start[name] if start[name] else 1.0
      grid = RELEVANCE_MULTIPLIERS if name == "relevance" else MULTIPLIERS
      for multiplier in grid:
        trial = dict(weights, **{name: base * multiplier})
        if trial[name] == weights[name]:
          continue
        trial_rates = head_rates(head, trial, k)
        if objective(trial_rates, k) > objective(rates, k):
          weights, rates, moved = trial, trial_rates, True
    if not moved:
      break
  return weights, rates


class _PartScorer:
  """The traced scoring of every part of one model's head over a chunk of its catalogue."""

  def __init__(self, model):
    self.model = model

  @tf.function(reduce_retracing=True, autograph=False)
  def chunk(self, features: Dict[str, tf.Tensor], first_item: tf.Tensor, width: int,
            domain: int, num_items: int) -> Dict[str, tf.Tensor]:
    """Every part's scores ``[B, width]`` of the items ``first_item + j`` under head ``domain``
    (items past the vocabulary of ``num_items`` are scored as the OOV id: not read)."""
    items = first_item + tf.range(width, dtype=tf.int64)
    items = tf.where(items < num_items, items, tf.constant(F.OOV_ID, tf.int64))
    candidates = tf.broadcast_to(items, [tf.shape(features[F.ITEM_ID])[0], width])
    return self.model.top_n_parts(features, candidates, domain)

  @tf.function(reduce_retracing=True, autograph=False)
  def candidates(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                 domain: int) -> Dict[str, tf.Tensor]:
    """Every part's scores ``[B, C]`` of the given candidates under head ``domain``."""
    return self.model.top_n_parts(features, candidates, domain)


def _sample_positives(dataset: tf.data.Dataset, positives: int, seed: int,
                      domains: Sequence[int]) -> List[Dict[str, np.ndarray]]:
  """Per domain of ``domains``, the features of a seeded uniform sample of in-vocabulary positives."""
  samples = [metrics_lib.UniformSample(positives) for _ in domains]
  offset = 0
  for features, labels in dataset:
    arrays = {name: value.numpy() for name, value in features.items()
              if name != F.TRAIN_NEGATIVES}
    labels = labels.numpy().reshape(-1)
    index = offset + np.arange(labels.size)
    offset += labels.size
    for d in domains:
      rows = (labels > 0.5) & (arrays[F.DOMAIN] == d) & (arrays[F.ITEM_ID] != F.OOV_ID)
      samples[d].offer(
          metrics_lib.counter_uniforms(seed, metrics_lib.SELECTION_SAMPLE, index[rows]),
          dict({name: values[rows] for name, values in arrays.items()}, index=index[rows]))
  return [sample.columns for sample in samples]


def collect_parts(model, dataset: tf.data.Dataset, catalogue: FullCatalogue, positives: int,
                  seed: int, user_batch: int = 32, item_chunk: int = 2048) -> List[HeadParts]:
  """Each domain's :class:`HeadParts` over a sample of the positives of ``dataset``.

  Args:
    model: a model with ``top_n_parts`` (:class:`~dasl_tf.models.dasl.DASL`).
    dataset: the validation split's ``(features, labels)`` batches, with their
      ``negatives`` where the data stores them.
    catalogue: what users touched in the training split (the items not ranked).
    positives: the sample's size per domain.
    seed: seeds the sample and the tie-breaking.
    user_batch: positives per scoring call.
    item_chunk: catalogue items per scoring call.
  """
  scorer = _PartScorer(model)
  # One traced shape: batches of user_batch rows (the last one repeats rows) and
  # chunks of the larger catalogue's width (the last one runs past the vocabulary).
  chunk = max(1, min(item_chunk, max(catalogue.num_items) - F.NUM_RESERVED_IDS))
  result = []
  for d, sample in zip(model.domains, _sample_positives(dataset, positives, seed,
                                                        model.domains)):
    width = catalogue.num_items[d] - F.NUM_RESERVED_IDS
    count = 0 if sample is None else sample["index"].size
    has_negatives = count > 0 and F.NEGATIVES in sample
    full: Dict[str, np.ndarray] = {}
    sampled: Dict[str, List[np.ndarray]] = {}
    for start in range(0, count, user_batch):
      rows = np.arange(start, min(count, start + user_batch))
      padded = np.resize(rows, user_batch)
      features = {name: tf.constant(values[padded]) for name, values in sample.items()
                  if name not in ("index", "priority", F.NEGATIVES)}
      for first in range(0, width, chunk):
        columns = min(chunk, width - first)
        parts = scorer.chunk(features, tf.constant(F.NUM_RESERVED_IDS + first, tf.int64),
                             chunk, d, catalogue.num_items[d])
        for name, values in parts.items():
          full.setdefault(name, np.zeros((count, width), np.float32))[
              rows, first:first + columns] = values.numpy()[:rows.size, :columns]
      if has_negatives:
        candidates = np.concatenate(
            [sample[F.ITEM_ID][padded, None], sample[F.NEGATIVES][padded]], axis=1)
        for name, values in scorer.candidates(features, tf.constant(candidates), d).items():
          sampled.setdefault(name, []).append(values.numpy()[:rows.size])
    if not count:
      result.append(HeadParts(Parts({}, np.zeros((0, width), bool), np.zeros(0, np.int64),
                                    np.zeros(0)), None))
      continue
    uniforms = metrics_lib.counter_uniforms(seed, metrics_lib.SELECTION_TIES, sample["index"])
    ranked = ~catalogue.excluded(d, sample[F.USER_ID], sample[F.history_key(d)], sample[F.ITEM_ID],
                                 width)
    head = HeadParts(Parts(full, ranked, sample[F.ITEM_ID] - F.NUM_RESERVED_IDS, uniforms),
                     None)
    if has_negatives:
      ranked = np.concatenate([np.zeros((count, 1), bool), sample[F.NEGATIVES] != F.PAD_ID], 1)
      rows = ranked.any(axis=1)  # a positive with no real negative has no sampled rank
      if rows.any():
        head = head._replace(sampled=Parts(
            {name: np.concatenate(values)[rows] for name, values in sampled.items()},
            ranked[rows], np.zeros(int(rows.sum()), np.int64), uniforms[rows]))
    result.append(head)
    logging.info("term weights of head %s: every part scored for %d validation positives "
                 "against %d items and their %s", F.domain_suffix(d), count, width,
                 "stored negatives" if head.sampled is not None else "(no stored negatives)")
  return result


def select_term_weights(model, dataset: tf.data.Dataset, catalogue: FullCatalogue,
                        positives: int, seed: int) -> Dict[str, object]:
  """Chooses and sets each head's part weights on the validation split (the module doc).

  Args:
    model: a model with ``top_n_parts``, ``top_n_weights`` and ``set_top_n_weights``.
    dataset: the validation split's ``(features, labels)`` batches (never the test split).
    catalogue: what users touched in the training split.
    positives: validation positives sampled per domain.
    seed: seeds the sample and the tie-breaking.

  Returns:
    Per head ``"a"``/``"b"``: ``trained`` and ``chosen`` weights by part, the
    sample's ``positives`` and, under each, its :func:`head_rates`
    (``hr10_full_trained``, ..., ``hr10_sampled_chosen``). A head without a
    sampled positive keeps its trained weights.
  """
  selection: Dict[str, object] = {}
  for d, head in zip(model.domains, collect_parts(model, dataset, catalogue, positives, seed)):
    suffix = F.domain_suffix(d)
    trained = model.top_n_weights(d)
    if not head.full.targets.size:
      selection[suffix] = {"trained": trained, "chosen": trained, "positives": 0}
      continue
    before = head_rates(head, trained)
    chosen, after = search_weights(head, trained)
    model.set_top_n_weights(d, chosen)
    selection[suffix] = {"trained": trained, "chosen": chosen,
                         "positives": int(head.full.targets.size),
                         **{f"{key}_trained": value for key, value in before.items()},
                         **{f"{key}_chosen": value for key, value in after.items()}}
    logging.info("term weights of head %s on %d validation positives: %s; %s", suffix,
                 head.full.targets.size,
                 ", ".join(f"{key} {before[key]:.4f} -> {after[key]:.4f}" for key in before),
                 ", ".join(f"{n} {trained[n]:.3g} -> {chosen[n]:.3g}" for n in trained))
  return selection
