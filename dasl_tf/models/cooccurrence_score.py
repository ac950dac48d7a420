"""Item co-occurrence as a term of DASL's top-n score (``ModelConfig.cooccurrence_score``).

A head's relevance output ``r_D(u, c)`` learns from the examples what the user
wants; which items go together is counted, once, from the training split
(:mod:`dasl_tf.cooccurrence`). :class:`CooccurrenceScore` adds the count's
signal to the relevance, with one learned weight per head and source:

  r'_D(u, c) = r_D(u, c) + Σ_s w_{D,s} · Σ_t sim_s(h^s_t, c)

over the sources s = the own domain D (symmetric item-item cosine over the
own-domain history) and, for the cross-domain variants, every other domain D'
in order (bipartite cosine from D' history items to D targets): the cross-domain
source is how a user with no own-domain history still gets a personal top-n.
The tables count every training interaction, as the relevance output learns
them. On a training example, its own events are taken out of its target's
score (:func:`~dasl_tf.cooccurrence.leave_one_out_scores`), so that training
sees the tables as evaluation does, where the target was never counted.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from dasl_tf import cooccurrence
from dasl_tf import features as F



def _key(domain: int, source: int) -> str:
  """The name of head ``domain``'s table over ``source``'s history ("a_from_b")."""
  return f"{F.domain_suffix(domain)}_from_{F.domain_suffix(source)}"


class CooccurrenceScore(tf_keras.layers.Layer):
  """``Σ_s w_{D,s} · s_{D,s}(c)`` of candidates, per head (the module doc has the math).

  The neighbour tables are non-trainable weights set by :meth:`fit`; the
  weights ``w`` (``[K, S]``, one per head and source) are trained and start at 1.

  Args:
    item_counts: the item vocabulary size of each of the K domains.
    num_neighbours: neighbours kept per item (``ModelConfig.knn_neighbors``).
    cross_domain: also score from every other domain's history (``S = K``, else 1).
    name: Keras name of the layer.
  """

  def __init__(self, item_counts: Sequence[int], num_neighbours: int, cross_domain: bool,
               name: str = "cooccurrence", **kwargs):
    super().__init__(name=name, **kwargs)
    self.item_counts = tuple(item_counts)
    domains = range(len(self.item_counts))
    self.sources = {d: (d, *(e for e in domains if e != d)) if cross_domain else (d,)
                    for d in domains}
    self.tables = {}  # by _key(head, source)
    for d in domains:
      for s in self.sources[d]:
        suffix = _key(d, s)
        rows, cols = self.item_counts[s], self.item_counts[d]
        self.tables[suffix] = cooccurrence.NeighbourTable(*(
            self.add_weight(name=f"{field}_{suffix}", shape=shape, dtype=dtype,
                            initializer="zeros", trainable=False)
            for field, shape, dtype in (("neighbour_ids", (rows, num_neighbours), tf.int32),
                                        ("neighbour_sims", (rows, num_neighbours), tf.float32),
                                        ("source_events", (rows,), tf.float32),
                                        ("target_events", (cols,), tf.float32))))
    self.weights_per_source = self.add_weight(
        name="source_weights", shape=(len(self.item_counts), len(self.sources[0])),
        initializer="ones", trainable=True)

  def fit(self, examples: Dict[str, np.ndarray]) -> None:
    """Sets the tables from the training examples' ``item_id``, ``domain`` and histories."""
    for d in self.sources:
      for s in self.sources[d]:
        table = self.tables[_key(d, s)]
        fitted = cooccurrence.fit_table(examples, d, s, self.item_counts, table.ids.shape[1])
        for variable, value in zip(table, fitted):
          variable.assign(value)

  def source_names(self, domain: int) -> Tuple[str, ...]:
    """The names of head ``domain``'s sources, in the order of its weights ("b_from_a")."""
    return tuple(_key(domain, s) for s in self.sources[domain])

  def source_scores(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor, domain: int,
                    leave_one_out: bool = False) -> List[tf.Tensor]:
    """The unweighted ``s_{D,s}(c)`` ``[B, C]`` of each source of head ``domain``, in order.

    Args:
      features: the examples' histories (``hist_a``, ``hist_b``, ...).
      candidates: int64 item indices of domain ``domain``.
      domain: the head.
      leave_one_out: candidates[:, 0] is each example's own target, counted in
        the tables (a training example): score it with its events taken out.
    """
    scores = []
    for s in self.sources[domain]:
      table = self.tables[_key(domain, s)]
      history = features[F.history_key(s)]
      score = cooccurrence.neighbour_scores(history, table.ids, table.sims, candidates,
                                            self.item_counts[domain])
      if leave_one_out:
        held_out = cooccurrence.leave_one_out_scores(
            history, candidates[:, 0], *table, symmetric=s == domain)
        score = tf.concat([held_out[:, None], score[:, 1:]], axis=1)
      scores.append(score)
    return scores

  def scores(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor, domain: int,
             leave_one_out: bool = False) -> tf.Tensor:
    """The term ``Σ_s w_{D,s} · s_{D,s}(c)`` ``[B, C]`` of head ``domain`` (arguments as
    for :meth:`source_scores`)."""
    return tf.add_n([self.weights_per_source[domain, k] * score for k, score in enumerate(
        self.source_scores(features, candidates, domain, leave_one_out))])
