"""Evaluation metrics per head: exact AUC, and HR@K / NDCG@K on sampled negatives and on the
full catalogue.

The ranking protocol. The paper (§4.2) reports AUC and HR@10 (after its reference [11]);
NDCG@10 and the full-catalogue ranking follow DESIGN.md §4. Every *positive*
example's target item is ranked by the head of its domain
(``model.score_candidates``) against a set of candidates; its 1-based rank is

  rank = 1 + #(candidates scored above the target) + U,  U ~ uniform on {0, ..., m},

where m candidates tie with the target: the target takes each of its m + 1 tied
positions with equal probability. U comes from a counter-based hash of
``(seed, example index in the dataset)`` (:func:`counter_uniforms`), so it is
reproducible and does not depend on the batch size. HR@K = [rank <= K] and
NDCG@K = [rank <= K] / log2(rank + 1) (one relevant item, so the ideal DCG is 1).

Stable metric names (``metrics.json``, reports and callbacks), with K = 10:

* ``auc_a``, ``auc_b``: ROC AUC of the click probability of each head on the
  examples of its domain (exact, rank-based with ties averaged);
* ``hr10_a``, ``hr10_b``: sampled HR@10: the target against the example's
  ``negatives`` (K = 99 items the user never touched in that domain, sampled
  with a fixed seed by ``dasl-prepare``; padding ids are not ranked), ties
  broken at random as above, so a constant scorer gets about 10/100. A
  positive without a real negative (all padding, or data prepared with
  ``--num_negatives 0``) is not ranked: with none ranked, the sampled keys are
  NaN (null in ``metrics.json``) while ``positives_a``/``_b`` still count every
  click;
* ``hr10_tied_against_a``, ``hr10_tied_against_b``: the same with ties counted
  against the target (a hit when fewer than 10 negatives score at least as
  high; a constant scorer gets 0): the rule of earlier releases;
* ``ndcg10_a``, ``ndcg10_b``: sampled NDCG@10 of the same random rank;
* ``hr10_full_a``/``hr10_full_b`` and ``ndcg10_full_a``/``ndcg10_full_b``: the
  headline figures: the target against every item of its domain's vocabulary
  (ids >= 2: every item with a training record) the user has not touched. Touched
  are the items of that domain in the user's examples of the earlier splits
  (targets and histories; training and validation for the test split, training
  for the validation split: the :class:`~dasl_tf.catalogue.FullCatalogue`) and in the example's own
  history; the target itself is always ranked. A target out of vocabulary (id 1, unseen in
  training) is a miss by rule (HR = NDCG = 0). Computed on a seeded uniform
  sample of at most ``full_catalogue_positives`` positives per domain (all of
  them when there are fewer);
* ``hr10_full_in_vocab_a``/``_b`` and ``ndcg10_full_in_vocab_a``/``_b``: the same
  over the sample's in-vocabulary targets only;
* ``full_catalogue_positives_a``/``_b``: the size of that sample (out-of-vocabulary
  targets included);
* ``unseen_target_share_a``/``_b``: the share of positives whose target is out
  of vocabulary (over all positives);
* ``examples_a``/``examples_b`` and ``positives_a``/``positives_b``: how many
  examples and positive examples each number is computed on;
* each of these again per slice of the examples (:data:`SLICES`), with the
  slice's name as a suffix: ``auc_a_cold_start`` (at most 2 own-domain
  history items before the target), ``auc_a_no_other_domain`` (no
  other-domain history before the target), ``auc_a_both_domains`` (history in
  both), ``hr10_full_b_cold_start_user`` (the user has no example of the
  earlier splits in the example's domain), and so on.

A model of K > 2 domains has every key once per domain, suffixed by its letter
(``auc_c``, ``hr10_c``, ``hr10_full_c``, ...); its ``other`` domain in the
slices is every other domain (``no_other_domain``: no record in any of them).

The full-catalogue keys and the ``cold_start_user`` slice need the earlier
splits (a :class:`~dasl_tf.catalogue.FullCatalogue`); without one they are absent.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.catalogue import FullCatalogue

SLICES = ("cold_start", "no_other_domain", "both_domains", "cold_start_user")
"""Example slices of the per-slice metrics (:func:`slice_masks`)."""
COLD_START_MAX_HISTORY = 2

# Streams of counter_uniforms: one per use, so the draws of one do not repeat in another.
_SAMPLED_TIES, _FULL_TIES, _FULL_SAMPLE = 0, 1, 2
SELECTION_SAMPLE, SELECTION_TIES = 3, 4
"""The streams of the validation sample of :mod:`dasl_tf.term_weights`, and of its ties."""


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


def rank_counts(candidate_scores: tf.Tensor, candidate_valid: tf.Tensor
               ) -> Tuple[tf.Tensor, tf.Tensor]:
  """How many candidates score above the target, and how many tie with it.

  Args:
    candidate_scores: ``[N, 1 + C]`` scores; column 0 is the target.
    candidate_valid: bool ``[N, 1 + C]``; false for candidates that are not
      ranked (padding, touched items); column 0 is not read.

  Returns:
    ``(above, ties)``, int32 ``[N]`` each, over the valid candidates.
  """
  target = candidate_scores[:, :1]
  valid = candidate_valid[:, 1:]
  above = tf.reduce_sum(tf.cast((candidate_scores[:, 1:] > target) & valid, tf.int32), axis=1)
  ties = tf.reduce_sum(tf.cast((candidate_scores[:, 1:] == target) & valid, tf.int32), axis=1)
  return above, ties


def _splitmix64(x: np.ndarray) -> np.ndarray:
  """The SplitMix64 finaliser of uint64 ``x`` (wrapping arithmetic)."""
  x = x + np.uint64(0x9E3779B97F4A7C15)
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def counter_uniforms(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
  """Uniform numbers in [0, 1), one per example index, from a counter-based hash.

  The number of example ``index`` is a function of ``(seed, stream, index)``
  only (SplitMix64 of the three), not of how the examples were batched.

  >>> u = counter_uniforms(7, 0, np.arange(5))
  >>> bool(np.all((u >= 0) & (u < 1))), bool(np.all(u == counter_uniforms(7, 0, np.arange(5))))
  (True, True)
  """
  with np.errstate(over="ignore"):
    key = _splitmix64(_splitmix64(np.array([seed % 2**64], np.uint64)) ^ np.uint64(stream))
    bits = _splitmix64(np.asarray(index).astype(np.uint64) ^ key)
  return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def random_ranks(above: np.ndarray, ties: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
  """1-based ranks of targets whose ties are broken uniformly at random.

  rank = 1 + above + U with U = floor(u * (ties + 1)) uniform on {0, ..., ties}.

  >>> random_ranks(np.array([0, 3]), np.array([0, 4]), np.array([0.99, 0.5]))
  array([1, 6])
  """
  tied_above = np.minimum(np.floor(uniforms * (ties + 1)), ties).astype(np.int64)
  return 1 + np.asarray(above, np.int64) + tied_above


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
  """NDCG@k of one relevant item at 1-based ``ranks``: 1 / log2(rank + 1) if rank <= k, else 0."""
  ranks = np.asarray(ranks, np.float64)
  return np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)


def slice_masks(own_history: np.ndarray, other_history: np.ndarray,
                cold_start_user: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
  """Which examples fall in each slice of :data:`SLICES`.

  Args:
    own_history: items in each example's own-domain history (before the target), int [N].
    other_history: items in its other-domain history, int [N].
    cold_start_user: whether the example's user has no example of the earlier
      splits in the example's domain, bool [N]; None leaves that slice out.

  Returns:
    ``{"cold_start": own <= 2, "no_other_domain": other == 0,
    "both_domains": own > 0 and other > 0, "cold_start_user": cold_start_user}``,
    bool [N] each.
  """
  masks = {"cold_start": own_history <= COLD_START_MAX_HISTORY,
           "no_other_domain": other_history == 0,
           "both_domains": (own_history > 0) & (other_history > 0)}
  if cold_start_user is not None:
    masks["cold_start_user"] = np.asarray(cold_start_user, bool)
  return masks


class UniformSample:
  """A uniform sample without replacement of at most ``size`` rows: the smallest priorities."""

  def __init__(self, size: int):
    self.size = size
    self.columns: Optional[Dict[str, np.ndarray]] = None

  def offer(self, priority: np.ndarray, columns: Mapping[str, np.ndarray]) -> None:
    columns = dict(columns, priority=priority)
    if self.columns is not None:
      columns = {name: np.concatenate([self.columns[name], values])
                 for name, values in columns.items()}
    if columns["priority"].size > self.size:
      keep = np.sort(np.lexsort((columns["index"], columns["priority"]))[:self.size])
      columns = {name: values[keep] for name, values in columns.items()}
    self.columns = columns


def _concat(parts: Sequence[Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
  return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _mean(values: np.ndarray) -> float:
  return float(values.mean()) if values.size else float("nan")


class EvaluationScorer:
  """The traced functions that score one model's evaluation batches.

  Building a model's graph is a large share of an evaluation's time, so the
  functions are traced once per scorer, without AutoGraph (the model is plain
  TensorFlow, as in the serving export): give one scorer to every
  :func:`evaluate_model` call of the same model (the test and the validation
  split). Each head is traced only where its domain's examples are scored.

  Args:
    model: a model with one head per domain (``domains``; ``call`` ->
      ``logit_a``, ``logit_b``, ..., and ``score_candidates``).
  """

  def __init__(self, model):
    self.model = model
    self.domains = tuple(model.domains)

  @tf.function(reduce_retracing=True, autograph=False)
  def batch(self, features: Dict[str, tf.Tensor], labels: tf.Tensor):
    """The CTR logit of each example's own head, and its positives' sampled rank counts."""
    logits = self.model(features, training=False)
    own_logit = F.domain_select(features[F.DOMAIN], [logits[f"logit_{F.domain_suffix(d)}"]
                                                     for d in self.domains])
    positive = labels > 0.5
    if F.NEGATIVES not in features:
      missing = -tf.ones_like(tf.boolean_mask(labels, positive), tf.int32)
      return own_logit, missing, missing
    selected = {name: tf.boolean_mask(value, positive) for name, value in features.items()}
    candidates = tf.concat([selected[F.ITEM_ID][:, None], selected[F.NEGATIVES]], axis=1)
    scores = self._own_head_scores(selected, candidates)
    ranked = tf.not_equal(candidates, F.PAD_ID)
    above, ties = rank_counts(scores, ranked)
    # A positive with no real negative (all padding, or none stored) has no sampled rank.
    unranked = ~tf.reduce_any(ranked[:, 1:], axis=1)
    return own_logit, tf.where(unranked, -1, above), tf.where(unranked, -1, ties)

  def prepare(self, element_spec) -> None:
    """Traces :meth:`batch` for the batches of ``element_spec`` whatever their size.

    Called before the first batch, so that the partial last batch of a split
    reuses the one trace instead of building the model's graph again.
    """
    self.batch.get_concrete_function(*element_spec)

  def _own_head_scores(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor) -> tf.Tensor:
    """``score_candidates``: each domain's rows gathered and scored by its own head alone."""
    rows = [tf.where(tf.equal(features[F.DOMAIN], d))[:, 0] for d in self.domains]
    scores = []
    for d in self.domains:
      take = lambda x, d=d: tf.gather(x, rows[d])  # pylint: disable=cell-var-from-loop
      scores.append(self.model.score_candidates(tf.nest.map_structure(take, features),
                                                take(candidates), training=False, domain=d))
    return tf.dynamic_stitch([tf.cast(r, tf.int32) for r in rows], scores)

  @tf.function(reduce_retracing=True, autograph=False)
  def catalogue_chunk(self, features: Dict[str, tf.Tensor], first_item: tf.Tensor,
                      excluded: tf.Tensor, domain: int) -> tf.Tensor:
    """Scores ``[B, C]`` of items ``first_item + j`` by the head of ``domain``; ``excluded`` [B, C]
    items are scored as the OOV id instead (their scores are not read)."""
    items = first_item + tf.range(tf.shape(excluded)[1], dtype=tf.int64)
    candidates = tf.where(excluded, tf.constant(F.OOV_ID, tf.int64),
                          tf.broadcast_to(items, tf.shape(excluded)))
    return self.model.score_candidates(features, candidates, training=False, domain=domain)


class _Collector:
  """Gathers per-domain scores, labels, ranks and slices over a dataset's batches."""

  def __init__(self, scorer: EvaluationScorer, k: int, seed: int,
               catalogue: Optional[FullCatalogue], full_catalogue_positives: int,
               user_batch: int, item_chunk: int):
    self.scorer = scorer
    self.k = k
    self.seed = seed
    self.catalogue = catalogue
    self.user_batch = user_batch
    self.item_chunk = item_chunk
    self.offset = 0
    self.domains = scorer.domains
    self.examples = {d: [] for d in self.domains}
    self.positives = {d: [] for d in self.domains}
    self.samples = ({d: UniformSample(full_catalogue_positives) for d in self.domains}
                    if catalogue is not None and full_catalogue_positives > 0 else None)

  def add(self, features: Dict[str, tf.Tensor], labels: tf.Tensor) -> None:
    own_logit, above, ties = (t.numpy() for t in self.scorer.batch(features, labels))
    arrays = {name: value.numpy() for name, value in features.items()
              if name not in (F.NEGATIVES, F.TRAIN_NEGATIVES)}
    labels = labels.numpy()
    index = self.offset + np.arange(labels.size)
    self.offset += labels.size
    domains = arrays[F.DOMAIN]
    history = np.stack([np.sum(arrays[F.history_key(d)] != F.PAD_ID, axis=1)
                        for d in self.domains], axis=1)
    own = np.take_along_axis(history, np.minimum(domains, len(self.domains) - 1)[:, None], 1)[:, 0]
    # "other": the records of every other domain (the one other domain's, of two)
    columns = {"own": own, "other": history.sum(axis=1) - own}
    if self.catalogue is not None:
      columns["cold_start_user"] = self.catalogue.cold_start_users(domains, arrays[F.USER_ID])
    positive = np.flatnonzero(labels > 0.5)
    for d in self.domains:
      rows = domains == d
      self.examples[d].append(dict({name: values[rows] for name, values in columns.items()},
                                   score=own_logit[rows], label=labels[rows]))
      in_d = domains[positive] == d
      rows = positive[in_d]
      ranked = dict({name: values[rows] for name, values in columns.items()},
                    index=index[rows], oov=arrays[F.ITEM_ID][rows] == F.OOV_ID)
      self.positives[d].append(dict(ranked, above=above[in_d], ties=ties[in_d]))
      if self.samples is not None:
        self.samples[d].offer(
            counter_uniforms(self.seed, _FULL_SAMPLE, ranked["index"]),
            dict(ranked, **{f"feature:{name}": values[rows] for name, values in arrays.items()}))

  def _full_ranks(self, domain: int, sample: Mapping[str, np.ndarray]) -> np.ndarray:
    """Full-catalogue random ranks of the sample's targets (inf for an out-of-vocabulary one).

    Every catalogue item, the target among them, is scored in the same calls
    (chunks of ``item_chunk`` items for ``user_batch`` targets); the target's
    own column gives its score and is not ranked against it.
    """
    # The chunk width of the larger catalogue for both domains: one traced shape.
    widest = max(self.catalogue.num_items) - F.NUM_RESERVED_IDS
    chunk = max(1, min(self.item_chunk, widest))
    num_chunks = -(-(self.catalogue.num_items[domain] - F.NUM_RESERVED_IDS) // chunk)
    targets = sample[f"feature:{F.ITEM_ID}"]
    ranks = np.full(targets.size, np.inf)
    in_vocab = np.flatnonzero(targets != F.OOV_ID)
    batch_rows = np.arange(self.user_batch)
    for done, start in enumerate(range(0, in_vocab.size, self.user_batch)):
      rows = in_vocab[start:start + self.user_batch]
      padded = np.resize(rows, self.user_batch)  # a stable batch shape: repeats rows
      features = {name[len("feature:"):]: tf.constant(values[padded])
                  for name, values in sample.items() if name.startswith("feature:")}
      target_columns = targets[padded] - F.NUM_RESERVED_IDS
      excluded = self.catalogue.excluded(
          domain, sample[f"feature:{F.USER_ID}"][padded],
          sample[f"feature:{F.history_key(domain)}"][padded], targets[padded], num_chunks * chunk)
      excluded[batch_rows, target_columns] = False  # scored with the others, ranked apart
      scores = np.concatenate([self.scorer.catalogue_chunk(
          features, tf.constant(F.NUM_RESERVED_IDS + c * chunk, tf.int64),
          tf.constant(excluded[:, c * chunk:(c + 1) * chunk]), domain).numpy()
                               for c in range(num_chunks)], axis=1)
      target_scores = scores[batch_rows, target_columns][:, None]
      ranked = ~excluded
      ranked[batch_rows, target_columns] = False
      above = np.sum((scores > target_scores) & ranked, axis=1)
      ties = np.sum((scores == target_scores) & ranked, axis=1)
      n = rows.size
      ranks[rows] = random_ranks(above[:n], ties[:n],
                                 counter_uniforms(self.seed, _FULL_TIES, sample["index"][rows]))
      if done % 10 == 9:
        logging.info("full-catalogue ranking of domain %s: %d of %d positives",
                     F.domain_suffix(domain), start + n, in_vocab.size)
    return ranks

  def _slices(self, columns: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    masks = {"": np.ones(columns["own"].size, bool)}
    masks.update({f"_{name}": mask for name, mask in slice_masks(
        columns["own"], columns["other"], columns.get("cold_start_user")).items()})
    return masks

  def result(self) -> Dict[str, float]:
    if not self.offset:
      raise ValueError("the evaluation dataset has no example")
    out = {}
    k = self.k
    for d in self.domains:
      name = F.domain_suffix(d)
      examples, positives = _concat(self.examples[d]), _concat(self.positives[d])
      sampled = positives["above"] >= 0
      ranks = random_ranks(positives["above"], positives["ties"],
                           counter_uniforms(self.seed, _SAMPLED_TIES, positives["index"]))
      tied_against_hit = positives["above"] + positives["ties"] < k
      sample = None
      if self.samples is not None:
        sample = self.samples[d].columns
        sample = dict(sample, rank=self._full_ranks(d, sample))
      example_slices, positive_slices = self._slices(examples), self._slices(positives)
      sample_slices = self._slices(sample) if sample is not None else {}
      for suffix, mask in example_slices.items():
        out[f"auc_{name}{suffix}"] = roc_auc(examples["label"][mask], examples["score"][mask])
        out[f"examples_{name}{suffix}"] = int(mask.sum())
        rows = positive_slices[suffix]
        ranked = rows & sampled
        out[f"hr{k}_{name}{suffix}"] = _mean(ranks[ranked] <= k)
        out[f"hr{k}_tied_against_{name}{suffix}"] = _mean(tied_against_hit[ranked])
        out[f"ndcg{k}_{name}{suffix}"] = _mean(ndcg_gains(ranks[ranked], k))
        out[f"positives_{name}{suffix}"] = int(rows.sum())
        out[f"unseen_target_share_{name}{suffix}"] = _mean(positives["oov"][rows])
        if sample is not None:
          rows = sample_slices[suffix]
          in_vocab = rows & ~sample["oov"]
          out[f"hr{k}_full_{name}{suffix}"] = _mean(sample["rank"][rows] <= k)
          out[f"ndcg{k}_full_{name}{suffix}"] = _mean(ndcg_gains(sample["rank"][rows], k))
          out[f"hr{k}_full_in_vocab_{name}{suffix}"] = _mean(sample["rank"][in_vocab] <= k)
          out[f"ndcg{k}_full_in_vocab_{name}{suffix}"] = _mean(
              ndcg_gains(sample["rank"][in_vocab], k))
          out[f"full_catalogue_positives_{name}{suffix}"] = int(rows.sum())
    return out


def evaluate_model(model, dataset: tf.data.Dataset, k: int = 10,
                   max_batches: Optional[int] = None,
                   catalogue: Optional[FullCatalogue] = None,
                   full_catalogue_positives: int = config_lib.TrainConfig.full_catalogue_positives,
                   seed: int = 0, user_batch: int = 64, item_chunk: int = 2048,
                   scorer: Optional[EvaluationScorer] = None) -> Dict[str, float]:
  """AUC, HR@k and NDCG@k per head, overall and per slice, of a two-headed model.

  Args:
    model: a two-headed model (``call`` -> ``logit_a``/``logit_b``, and
      ``score_candidates``), such as a
      :class:`~dasl_tf.models.base.CrossDomainRanker`.
    dataset: batches of ``(features, labels)``, e.g. from
      ``dasl_tf.data.make_dataset(..., with_negatives=True)``. Without a
      ``negatives`` feature (or with only padding in it) the sampled HR and
      NDCG are NaN; the positives are counted all the same.
    k: the HR and NDCG cut-off.
    max_batches: evaluate at most this many batches (None = all).
    catalogue: the training and validation splits' :class:`~dasl_tf.catalogue.FullCatalogue`;
      adds the full-catalogue keys and the ``cold_start_user`` slice.
    full_catalogue_positives: positives per domain ranked against the full
      catalogue (a seeded uniform sample; 0 = no full-catalogue keys).
    seed: seeds the random tie-breaking and the full-catalogue sample.
    user_batch: examples per full-catalogue scoring call.
    item_chunk: catalogue items per full-catalogue scoring call.
    scorer: the model's :class:`EvaluationScorer`, to reuse its traced
      functions across calls (default: a new one, traced anew).

  Returns:
    The keys of the module docstring (``auc_a``, ``hr{k}_a``, ``ndcg{k}_a``,
    ``hr{k}_full_a``, ..., for both domains) over all examples, and the same
    keys with the suffix ``_<slice>`` for each slice of :data:`SLICES`; a
    metric with no example is NaN.
  """
  if scorer is not None and scorer.model is not model:
    raise ValueError("evaluate_model: the scorer was made for another model")
  scorer = scorer or EvaluationScorer(model)
  scorer.prepare(dataset.element_spec)
  collector = _Collector(scorer, k, seed, catalogue, full_catalogue_positives, user_batch,
                         item_chunk)
  for step, (features, labels) in enumerate(dataset):
    if max_batches is not None and step >= max_batches:
      break
    collector.add(features, labels)
    if step and step % 100 == 0:
      logging.info("evaluated %d batches", step)
  return collector.result()
