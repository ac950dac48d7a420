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
  has not touched by each part separately (:meth:`DASL.top_n_parts
  <dasl_tf.models.dasl.DASL.top_n_parts>`), once;
* a coordinate search over :data:`MULTIPLIERS` (times the trained weight, one
  part at a time, :data:`SWEEPS` sweeps) keeps a move only when it raises the
  sample's full-catalogue HR@10 (ties of HR: NDCG@10), ranks with ties broken
  at random by a seeded rule, as :mod:`dasl_tf.metrics` does;
* the chosen weights are written into the model's own variables
  (:meth:`DASL.set_top_n_weights <dasl_tf.models.dasl.DASL.set_top_n_weights>`):
  an export serves them and a model directory keeps them, with no new variable.

The trained weights are the search's start, so the chosen ones never score
less on the sample. The CTR output is untouched: AUC does not change.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, NamedTuple, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from dasl_tf import features as F
from dasl_tf import metrics as metrics_lib
from dasl_tf.catalogue import HISTORIES, FullCatalogue

MULTIPLIERS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
"""What the search multiplies a part's trained weight by (a weight of 0 is multiplied as 1)."""
RELEVANCE_MULTIPLIERS = tuple(m for m in MULTIPLIERS if m > 0)
"""The same for the relevance, whose weight stays positive (it sets the scale)."""
SWEEPS = 2
"""Passes of the coordinate search over the parts (it stops early when a pass changes nothing)."""
SELECTION_K = 10
"""The cut-off of the HR@K and NDCG@K the search maximises."""


class Parts(NamedTuple):
  """One domain's sampled validation positives, each catalogue item scored by each part.

  Attributes:
    scores: part name -> float32 ``[N, V]``: column j is item ``2 + j``.
    ranked: bool ``[N, V]``: the items each target is ranked against.
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


def search_weights(parts: Parts, start: Mapping[str, float], k: int = SELECTION_K
                   ) -> Tuple[Dict[str, float], Tuple[float, float]]:
  """The coordinate search of the module doc, from the weights ``start``.

  Returns:
    ``(weights, (HR@k, NDCG@k))``: the chosen weights and their rates on ``parts``.
  """
  weights = dict(start)
  best = hit_rates(parts, weights, k)
  for _ in range(SWEEPS):
    moved = False
    for name in start:
      base = start[name] if start[name] else 1.0
      grid = RELEVANCE_MULTIPLIERS if name == "relevance" else MULTIPLIERS
      for multiplier in grid:
        trial = dict(weights, **{name: base * multiplier})
        if trial[name] == weights[name]:
          continue
        rates = hit_rates(parts, trial, k)
        if rates > best:
          weights, best, moved = trial, rates, True
    if not moved:
      break
  return weights, best


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


def _sample_positives(dataset: tf.data.Dataset, positives: int, seed: int
                      ) -> List[Dict[str, np.ndarray]]:
  """Per domain, the features of a seeded uniform sample of in-vocabulary positives."""
  samples = [metrics_lib.UniformSample(positives) for _ in F.DOMAINS]
  offset = 0
  for features, labels in dataset:
    arrays = {name: value.numpy() for name, value in features.items()
              if name not in (F.NEGATIVES, F.TRAIN_NEGATIVES)}
    labels = labels.numpy().reshape(-1)
    index = offset + np.arange(labels.size)
    offset += labels.size
    for d in F.DOMAINS:
      rows = (labels > 0.5) & (arrays[F.DOMAIN] == d) & (arrays[F.ITEM_ID] != F.OOV_ID)
      samples[d].offer(
          metrics_lib.counter_uniforms(seed, metrics_lib.SELECTION_SAMPLE, index[rows]),
          dict({name: values[rows] for name, values in arrays.items()}, index=index[rows]))
  return [sample.columns for sample in samples]


def collect_parts(model, dataset: tf.data.Dataset, catalogue: FullCatalogue, positives: int,
                  seed: int, user_batch: int = 32, item_chunk: int = 2048) -> List[Parts]:
  """Each domain's :class:`Parts` over a sample of the positives of ``dataset``.

  Args:
    model: a model with ``top_n_parts`` (:class:`~dasl_tf.models.dasl.DASL`).
    dataset: the validation split's ``(features, labels)`` batches.
    catalogue: what users touched in the training split (the items not ranked).
    positives: the sample's size per domain.
    seed: seeds the sample and the tie-breaking.
    user_batch: positives per scoring call.
    item_chunk: catalogue items per scoring call.
  """
  scorer = _PartScorer(model)
  result = []
  for d, sample in zip(F.DOMAINS, _sample_positives(dataset, positives, seed)):
    width = catalogue.num_items[d] - F.NUM_RESERVED_IDS
    count = 0 if sample is None else sample["index"].size
    targets = (np.zeros(0, np.int64) if sample is None
               else sample[F.ITEM_ID] - F.NUM_RESERVED_IDS)
    scores: Dict[str, np.ndarray] = {}
    # One traced shape: batches of user_batch rows (the last one repeats rows) and
    # chunks of the larger catalogue's width (the last one runs past the vocabulary).
    chunk = max(1, min(item_chunk, max(catalogue.num_items) - F.NUM_RESERVED_IDS))
    for start in range(0, count, user_batch):
      rows = np.arange(start, min(count, start + user_batch))
      padded = np.resize(rows, user_batch)
      features = {name: tf.constant(values[padded]) for name, values in sample.items()
                  if name not in ("index", "priority")}
      for first in range(0, width, chunk):
        columns = min(chunk, width - first)
        parts = scorer.chunk(features, tf.constant(F.NUM_RESERVED_IDS + first, tf.int64),
                             chunk, d, catalogue.num_items[d])
        for name, values in parts.items():
          scores.setdefault(name, np.zeros((count, width), np.float32))[
              rows, first:first + columns] = values.numpy()[:rows.size, :columns]
    ranked = ~catalogue.excluded(
        d, sample[F.USER_ID], sample[HISTORIES[d]], sample[F.ITEM_ID], width
    ) if count else np.zeros((0, width), bool)
    uniforms = (metrics_lib.counter_uniforms(seed, metrics_lib.SELECTION_TIES, sample["index"])
                if count else np.zeros(0))
    result.append(Parts(scores, ranked, targets, uniforms))
    logging.info("term weights of head %s: every part scored for %d validation positives "
                 "against %d items", F.DOMAIN_SUFFIX[d], count, width)
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
    sample's ``positives`` and its full-catalogue ``hr10``/``ndcg10`` under each.
    A head without a sampled positive keeps its trained weights.
  """
  selection: Dict[str, object] = {}
  for d, parts in zip(F.DOMAINS, collect_parts(model, dataset, catalogue, positives, seed)):
    suffix = F.DOMAIN_SUFFIX[d]
    trained = model.top_n_weights(d)
    if not parts.targets.size:
      selection[suffix] = {"trained": trained, "chosen": trained, "positives": 0}
      continue
    before = hit_rates(parts, trained)
    chosen, after = search_weights(parts, trained)
    model.set_top_n_weights(d, chosen)
    selection[suffix] = {
        "trained": trained, "chosen": chosen, "positives": int(parts.targets.size),
        f"hr{SELECTION_K}_trained": before[0], f"ndcg{SELECTION_K}_trained": before[1],
        f"hr{SELECTION_K}_chosen": after[0], f"ndcg{SELECTION_K}_chosen": after[1]}
    logging.info("term weights of head %s on %d validation positives: HR@%d %.4f -> %.4f "
                 "(NDCG %.4f -> %.4f); %s", suffix, parts.targets.size, SELECTION_K, before[0],
                 after[0], before[1], after[1],
                 ", ".join(f"{n} {trained[n]:.3g} -> {chosen[n]:.3g}" for n in trained))
  return selection

