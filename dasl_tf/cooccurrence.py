"""Item-item co-occurrence: cosine neighbour tables and the scores they give.

One pass over the clicked training examples counts each target item with the
items of a source history; :func:`cosine_neighbours` keeps each source item's
top-N cosine neighbours, and :func:`neighbour_scores` scores candidates
against a history, ``s(c) = Σ_t sim_N(h_t, c)``. The item-kNN baselines
(:mod:`dasl_tf.models.baselines.item_knn`) rank by it alone; DASL adds it to its
top-n score (``ModelConfig.cooccurrence_score``).
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Sequence

import numpy as np
import scipy.sparse
import tensorflow as tf

from dasl_tf import features as F


def example_features(dataset: tf.data.Dataset, names: Sequence[str], variant: str,
                     clicked_only: bool = True) -> Dict[str, np.ndarray]:
  """The features ``names`` of the examples, as NumPy arrays.

  Args:
    dataset: ``(features, labels)`` batches, read once.
    names: the features to keep.
    variant: the model's variant, named in errors.
    clicked_only: keep the clicked examples (label > 0.5) only.

  Raises:
    ValueError: the examples lack one of ``names``.
  """
  parts = {name: [] for name in names}
  for features, labels in dataset:
    for name in names:
      if name not in features:
        raise ValueError(f"{variant}: the training examples have no {name!r} feature; "
                         "re-run dasl-prepare (its output carries it)")
    keep = labels.numpy().reshape(-1) > (0.5 if clicked_only else -np.inf)
    for name in names:
      parts[name].append(features[name].numpy()[keep])
  if not parts[names[0]]:
    raise ValueError(f"{variant}: the training split has no examples")
  return {name: np.concatenate(values) for name, values in parts.items()}


def cosine_neighbours(sources: np.ndarray, targets: np.ndarray, num_sources: int,
                      num_targets: int, num_neighbours: int, symmetric: bool
                     ) -> "NeighbourTable":
  """Top-N cosine neighbours from co-occurrence events (see the module doc).

  Args:
    sources: int ``[E]`` source item of each event.
    targets: int ``[E]`` target item of each event.
    num_sources: the source vocabulary size V_s.
    num_targets: the target vocabulary size V_c (equal to V_s when ``symmetric``).
    num_neighbours: N, the neighbours kept per source item.
    symmetric: count ``P + Pᵀ`` without the diagonal (one vocabulary), else ``P``.

  Returns:
    The :class:`NeighbourTable`: each row of ``ids`` and ``sims`` by
    decreasing similarity (ties: the lower id first), padded with id 0 and
    similarity 0.
  """
  keep = ((sources >= F.NUM_RESERVED_IDS) & (sources < num_sources)
          & (targets >= F.NUM_RESERVED_IDS) & (targets < num_targets))
  if symmetric:
    keep &= sources != targets
  counts = scipy.sparse.coo_matrix(
      (np.ones(int(keep.sum())), (sources[keep], targets[keep])),
      shape=(num_sources, num_targets)).tocsr()  # duplicate events are summed
  if symmetric:
    counts = (counts + counts.T).tocsr()
  source_events = np.asarray(counts.sum(axis=1)).reshape(-1)
  target_events = np.asarray(counts.sum(axis=0)).reshape(-1)
  counts = counts.tocoo()
  sims = counts.data / np.sqrt(source_events[counts.row] * target_events[counts.col])
  order = np.lexsort((counts.col, -sims, counts.row))
  rows, cols, sims = counts.row[order], counts.col[order], sims[order]
  rank = np.arange(rows.size) - np.searchsorted(rows, rows)  # position within the row
  top = rank < num_neighbours
  ids = np.zeros((num_sources, num_neighbours), np.int32)
  values = np.zeros((num_sources, num_neighbours), np.float32)
  ids[rows[top], rank[top]] = cols[top]
  values[rows[top], rank[top]] = sims[top]
  return NeighbourTable(ids, values, source_events.astype(np.float32),
                        target_events.astype(np.float32))


def fit_table(examples: Dict[str, np.ndarray], domain: int, source_domain: int,
              item_counts: Sequence[int], num_neighbours: int) -> "NeighbourTable":
  """The neighbour table of head ``domain`` over the history of ``source_domain``.

  Each example of ``domain`` in ``examples`` (``item_id``, ``domain`` and the
  histories ``hist_a``, ``hist_b``, ..., as :func:`example_features` gives) is one
  event between its target and each item of its ``source_domain`` history;
  the own domain's table is symmetric, the other domain's bipartite.
  """
  in_domain = examples[F.DOMAIN] == domain
  source = examples[F.history_key(source_domain)][in_domain]
  targets = np.repeat(examples[F.ITEM_ID][in_domain], source.shape[1])
  return cosine_neighbours(source.reshape(-1), targets, item_counts[source_domain],
                           item_counts[domain], num_neighbours,
                           symmetric=source_domain == domain)


def known_ids(items: tf.Tensor, size: int) -> tf.Tensor:
  """``items`` with ids outside ``[0, size)`` replaced by the out-of-vocabulary id."""
  return tf.where((items >= 0) & (items < size), items, tf.cast(F.OOV_ID, items.dtype))


def neighbour_scores(history: tf.Tensor, neighbour_ids: tf.Tensor, neighbour_sims: tf.Tensor,
                     candidates: tf.Tensor, num_targets: int) -> tf.Tensor:
  """``s(c) = Σ_t sim_N(h_t, c)`` of candidates ``[B, C]`` from histories ``[B, T]``.

  The kept neighbours of the history ``[B, T, N]`` are summed into one
  ``[B, V_c]`` row per example (so memory does not grow with C), from which
  the candidates are read.
  """
  history = known_ids(tf.cast(history, tf.int64), neighbour_ids.shape[0])
  ids = tf.cast(tf.gather(neighbour_ids, history), tf.int64)  # [B, T, N]
  sims = tf.gather(neighbour_sims, history)
  batch = tf.shape(history, out_type=tf.int64)[0]
  rows = tf.range(batch)[:, None, None] * num_targets + ids
  dense = tf.math.unsorted_segment_sum(tf.reshape(sims, [-1]), tf.reshape(rows, [-1]),
                                       batch * num_targets)
  return tf.gather(tf.reshape(dense, [batch, num_targets]),
                   known_ids(tf.cast(candidates, tf.int64), num_targets), batch_dims=1)


class NeighbourTable(NamedTuple):
  """Top-N cosine neighbours of every source item, and the event counts behind them.

  Attributes:
    ids: int32 ``[V_s, N]`` neighbour ids by decreasing similarity (padding 0).
    sims: float32 ``[V_s, N]`` their similarities (0 for padding).
    source_events: float32 ``[V_s]``, ``n_h``: the events each source item takes part in.
    target_events: float32 ``[V_c]``, ``n_c``: the events each target item takes part in.
  """
  ids: np.ndarray
  sims: np.ndarray
  source_events: np.ndarray
  target_events: np.ndarray


def leave_one_out_scores(history: tf.Tensor, targets: tf.Tensor, ids: tf.Tensor,
                         sims: tf.Tensor, source_events: tf.Tensor, target_events: tf.Tensor,
                         symmetric: bool) -> tf.Tensor:
  """``s(c)`` of each example's own target with the example's own events taken out.

  A training example's target ``c`` and its history ``h_1..h_T`` were counted
  as the events ``(h_t, c)``, so the tables rate its target higher than they
  rate an item the user has not met (an unseen example's target). Removing
  them gives what the tables would say had the example been held out:

    sim_loo(h, c) = (C(h, c) - 1) / sqrt((n_h - 1) · (n_c - E)),
    C(h, c) = sim(h, c) · sqrt(n_h · n_c),

  ``E`` the example's events (its valid history items), for each ``h_t`` with
  ``c`` among its kept neighbours (0 otherwise), clipped at 0. Exact when the
  history holds no item twice and the held-out tables would keep the same
  neighbours.

  Args:
    history: int64 ``[B, T]`` the source history of each example.
    targets: int64 ``[B]`` each example's target.
    ids: the table's neighbour ids ``[V_s, N]``.
    sims: the table's similarities ``[V_s, N]``.
    source_events: ``n_h`` ``[V_s]``.
    target_events: ``n_c`` ``[V_c]``.
    symmetric: the table is the symmetric own-domain one (an item is not its
      own neighbour, so a history item equal to the target made no event).

  Returns:
    float32 ``[B]``.
  """
  history = known_ids(tf.cast(history, tf.int64), ids.shape[0])
  targets = known_ids(tf.cast(targets, tf.int64), target_events.shape[0])
  valid = history >= F.NUM_RESERVED_IDS
  if symmetric:
    valid &= tf.not_equal(history, targets[:, None])
  match = tf.equal(tf.cast(tf.gather(ids, history), tf.int64), targets[:, None, None])
  sim = tf.reduce_sum(tf.where(match, tf.gather(sims, history), 0.0), -1)  # [B, T]
  n_h = tf.gather(source_events, history)
  n_c = tf.gather(target_events, targets)[:, None]
  events = tf.reduce_sum(tf.cast(valid, tf.float32), -1, keepdims=True)
  count = sim * tf.sqrt(n_h * n_c) - 1.0
  held_out = count / tf.sqrt(tf.maximum(n_h - 1.0, 1.0) * tf.maximum(n_c - events, 1.0))
  return tf.reduce_sum(tf.where(valid & (sim > 0), tf.maximum(held_out, 0.0), 0.0), -1)
