"""Item-kNN baselines: ``item_knn``, ``item_knn_cross`` and ``pop_item_knn`` (no learning).

Fitted by one :meth:`ItemKnn.adapt` pass over the training split. Every
training example of domain D with a click (label > 0.5) is one co-occurrence
event between its target item c and each item h_t of its *source* history:
the own-domain history (``hist_a`` for D = A, ``hist_b`` for D = B) for
``item_knn``, the other domain's for ``item_knn_cross``. Padding (0) and
out-of-vocabulary (1) ids take no part, and a repeated item counts once per
occurrence. With ``P(h, c)`` the number of events of source item h with target c:

* ``item_knn`` (own domain, symmetric): ``C = P + Pᵀ`` with its diagonal
  removed (an item is not its own neighbour), ``n_i = Σ_j C(i, j)`` the events
  item i takes part in, ``sim(i, j) = C(i, j) / sqrt(n_i · n_j)``;
* ``item_knn_cross`` (bipartite, source domain D' to target domain D):
  ``sim(h, c) = P(h, c) / sqrt(n_h · n_c)`` with ``n_h = Σ_c P(h, c)`` and
  ``n_c = Σ_h P(h, c)``: a cross-domain item-to-item kNN.

Each source item keeps its ``ModelConfig.knn_neighbors`` most similar items
(ties: the lower id first), stored per head as two non-trainable weights
``[V_source, N]`` (neighbour ids, similarities): the co-occurrences are
counted in a ``scipy.sparse`` matrix and never densified. The score of
candidate c for an example with source history h_1..h_T is

  s(c) = Σ_t sim_N(h_t, c)

where ``sim_N(h, c)`` is zero unless c is among h's kept neighbours. Unknown
ids read the out-of-vocabulary row (score 0). ``pop_item_knn`` adds
popularity: ``s(c) + w_D · log(1 + clicks(c))``, one weight per domain chosen
on the validation split (:meth:`PopItemKnn.select_on_validation`). The item
priors ``b_D`` stay zero: the top-n score is ``s`` itself.
"""
from __future__ import annotations

from typing import Dict, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import metrics as metrics_lib
from dasl_tf.cooccurrence import example_features, fit_table, known_ids, neighbour_scores
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.models.registry import register

BLEND_WEIGHTS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""The grid of popularity weights ``w_D`` :meth:`PopItemKnn.select_on_validation` tries."""
SELECTION_K = 10
"""The cut-off of the validation HR@K that chooses ``w_D``."""
SELECTION_SEED = 0
"""Seeds the random tie-breaking of that HR@K."""


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
@register("item_knn")
class ItemKnn(CrossDomainRanker):
  """Item-item cosine kNN over the own-domain history (the module doc has the math).

  Example:
    >>> model = ItemKnn(config_lib.ModelConfig(
    ...     variant="item_knn", num_users=3, num_items_a=5, num_items_b=4, history_length=2,
    ...     knn_neighbors=2))
    >>> batch = ({F.ITEM_ID: tf.constant([3, 4, 2], tf.int64),
    ...           F.DOMAIN: tf.constant([0, 0, 1], tf.int64),
    ...           F.HIST_A: tf.constant([[0, 2], [0, 2], [0, 0]], tf.int64),
    ...           F.HIST_B: tf.constant([[0, 0], [0, 0], [0, 0]], tf.int64)},
    ...          tf.constant([1.0, 1.0, 1.0]))
    >>> model.adapt(tf.data.Dataset.from_tensors(batch))
    >>> features = {F.HIST_A: tf.constant([[0, 2]], tf.int64),
    ...             F.HIST_B: tf.constant([[0, 0]], tf.int64)}
    >>> logits_a, _ = model.head_logits(features, tf.constant([[3, 4, 2]], tf.int64))
    >>> logits_a.numpy().round(4)  # sim(2, 3) = 1 / sqrt(2 * 1), sim(2, 2) = 0
    array([[0.7071, 0.7071, 0.    ]], dtype=float32)

  Args:
    config: the model's :class:`~dasl_tf.config.ModelConfig` (vocabulary sizes,
      ``knn_neighbors``).
    name: Keras name of the model.
  """

  learns = False
  cross_domain = False
  """Whether the source history is the other domain's (``item_knn_cross``)."""

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    super().__init__(config, name=name, **kwargs)
    self.item_counts = (config.num_items_a, config.num_items_b)
    self.neighbour_ids, self.neighbour_sims = [], []
    for d in F.DOMAINS:
      shape = (self.item_counts[self._source_domain(d)], config.knn_neighbors)
      suffix = F.DOMAIN_SUFFIX[d]
      self.neighbour_ids.append(self.add_weight(
          name=f"neighbour_ids_{suffix}", shape=shape, dtype=tf.int32, initializer="zeros",
          trainable=False))
      self.neighbour_sims.append(self.add_weight(
          name=f"neighbour_sims_{suffix}", shape=shape, initializer="zeros", trainable=False))

  def _source_domain(self, domain: int) -> int:
    """The domain whose history head ``domain`` reads."""
    return 1 - domain if self.cross_domain else domain

  def adapt(self, dataset: tf.data.Dataset) -> None:
    """Counts the co-occurrences of the training ``dataset`` and keeps the top neighbours."""
    self.fit_clicks(example_features(dataset, (F.ITEM_ID, F.DOMAIN, F.HIST_A, F.HIST_B),
                                     self.model_config.variant))

  def fit_clicks(self, clicked: Dict[str, np.ndarray]) -> None:
    """Fits the neighbour tables from the clicked training examples' features."""
    for d in F.DOMAINS:
      table = fit_table(clicked, d, self._source_domain(d), self.item_counts,
                        self.model_config.knn_neighbors)
      ids, sims = table.ids, table.sims
      in_domain = clicked[F.DOMAIN] == d
      self.neighbour_ids[d].assign(ids)
      self.neighbour_sims[d].assign(sims)
      logging.info("%s head %s: %d clicked examples, %d items with neighbours",
                   self.model_config.variant, F.DOMAIN_SUFFIX[d], int(in_domain.sum()),
                   int((sims[:, 0] > 0).sum()))

  def knn_scores(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                 domain: int) -> tf.Tensor:
    """``s(c)`` ``[B, C]`` of head ``domain`` (candidates in its vocabulary)."""
    history = features[(F.HIST_A, F.HIST_B)[self._source_domain(domain)]]
    return neighbour_scores(history, self.neighbour_ids[domain], self.neighbour_sims[domain],
                            candidates, self.item_counts[domain])

  def head_score(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                 domain: int) -> tf.Tensor:
    """The score ``[B, C]`` of head ``domain``: ``s(c)``."""
    return self.knn_scores(features, candidates, domain)

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    return tuple(self.head_score(features, candidates, d) for d in F.DOMAINS)

  def domain_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                     domain: int, training: bool = False) -> tf.Tensor:
    return self.head_score(features, candidates, domain)[..., None]


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
@register("item_knn_cross")
class CrossDomainItemKnn(ItemKnn):
  """Item-kNN from the other domain's history: ``sim(h, c)``, h an item of D', c of D.

  Example:
    >>> model = CrossDomainItemKnn(config_lib.ModelConfig(
    ...     variant="item_knn_cross", num_users=3, num_items_a=5, num_items_b=4,
    ...     history_length=2))
    >>> batch = ({F.ITEM_ID: tf.constant([3, 4], tf.int64),
    ...           F.DOMAIN: tf.constant([0, 0], tf.int64),
    ...           F.HIST_A: tf.constant([[0, 0], [0, 0]], tf.int64),
    ...           F.HIST_B: tf.constant([[0, 2], [2, 3]], tf.int64)},
    ...          tf.constant([1.0, 1.0]))
    >>> model.adapt(tf.data.Dataset.from_tensors(batch))
    >>> features = {F.HIST_A: tf.constant([[0, 0]], tf.int64),
    ...             F.HIST_B: tf.constant([[0, 3]], tf.int64)}
    >>> logits_a, _ = model.head_logits(features, tf.constant([[3, 4]], tf.int64))
    >>> logits_a.numpy().round(4)  # B item 3 met A item 4 once: 1 / sqrt(1 * 2)
    array([[0.    , 0.7071]], dtype=float32)
  """

  cross_domain = True


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
@register("pop_item_knn")
class PopItemKnn(ItemKnn):
  """``item_knn`` plus popularity, ``s(c) + w_D · log(1 + clicks(c))``, w_D chosen on validation.

  ``clicks(c)`` counts the clicked training examples of item c, as
  :class:`~dasl_tf.models.popularity.Popularity` does. ``w_D`` is the weight
  of :data:`BLEND_WEIGHTS` with the best sampled HR@10 on the validation
  split's positives of domain D (:meth:`select_on_validation`; ties: the
  smaller weight), kept in a non-trainable weight so an exported model keeps it.

  Example:
    >>> model = PopItemKnn(config_lib.ModelConfig(
    ...     variant="pop_item_knn", num_users=3, num_items_a=5, num_items_b=4,
    ...     history_length=2))
    >>> batch = ({F.ITEM_ID: tf.constant([3, 3, 4], tf.int64),
    ...           F.DOMAIN: tf.constant([0, 0, 0], tf.int64),
    ...           F.HIST_A: tf.constant([[0, 0], [0, 0], [0, 2]], tf.int64),
    ...           F.HIST_B: tf.constant([[0, 0], [0, 0], [0, 0]], tf.int64)},
    ...          tf.constant([1.0, 1.0, 1.0]))
    >>> model.adapt(tf.data.Dataset.from_tensors(batch))
    >>> model.blend_weights.assign([0.5, 0.0])  # select_on_validation chooses it
    <...>
    >>> features = {F.HIST_A: tf.constant([[0, 2]], tf.int64),
    ...             F.HIST_B: tf.constant([[0, 0]], tf.int64)}
    >>> logits_a, _ = model.head_logits(features, tf.constant([[3, 4]], tf.int64))
    >>> logits_a.numpy().round(4)  # 0.5 log(3) and sim(2, 4) + 0.5 log(2)
    array([[0.5493, 1.3466]], dtype=float32)
  """

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    super().__init__(config, name=name, **kwargs)
    self.log_clicks = [
        self.add_weight(name=f"log_clicks_{F.DOMAIN_SUFFIX[d]}", shape=(size,),
                        initializer="zeros", trainable=False)
        for d, size in zip(F.DOMAINS, self.item_counts)]
    self.blend_weights = self.add_weight(name="blend_weights", shape=(len(F.DOMAINS),),
                                         initializer="zeros", trainable=False)
    self.selection: Dict[str, object] = {}
    """What :meth:`select_on_validation` chose (JSON-able): ``blend_weight_a``, ``blend_weight_b``
    and, per domain, the validation HR@10 of every weight (``val_hr10_a``: ``{w: HR}``)."""

  def fit_clicks(self, clicked: Dict[str, np.ndarray]) -> None:
    super().fit_clicks(clicked)
    for d in F.DOMAINS:
      items = clicked[F.ITEM_ID][clicked[F.DOMAIN] == d]
      items = np.where((items >= 0) & (items < self.item_counts[d]), items, F.OOV_ID)
      self.log_clicks[d].assign(np.log1p(np.bincount(items, minlength=self.item_counts[d])))

  def popularity_scores(self, candidates: tf.Tensor, domain: int) -> tf.Tensor:
    """``log(1 + clicks(c))`` ``[B, C]`` of candidates of domain ``domain``."""
    return tf.gather(self.log_clicks[domain],
                     known_ids(tf.cast(candidates, tf.int64), self.item_counts[domain]))

  def head_score(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                 domain: int) -> tf.Tensor:
    """The score ``[B, C]`` of head ``domain``: ``s(c) + w_D · log(1 + clicks(c))``."""
    return (self.knn_scores(features, candidates, domain)
            + self.blend_weights[domain] * self.popularity_scores(candidates, domain))

  def select_on_validation(self, dataset: tf.data.Dataset, catalogue=None, train=None
                           ) -> Dict[str, object]:
    """Chooses each domain's ``w_D`` by sampled HR@10 over the validation ``dataset``.

    One pass scores every positive's target and ``negatives`` by ``s`` and by
    popularity; each weight of :data:`BLEND_WEIGHTS` then ranks the blend as
    :func:`~dasl_tf.metrics.evaluate_model` does (:func:`~dasl_tf.metrics.rank_counts`,
    ties broken at random by :func:`~dasl_tf.metrics.random_ranks`, seeded by
    the example's position in ``dataset``).

    Args:
      dataset: the validation split's ``(features, labels)`` batches with
        their ``negatives`` (never the test split).
      catalogue: unused (the job's hook passes every model the training
        split's :class:`~dasl_tf.catalogue.FullCatalogue`).
      train: unused (the job's :class:`~dasl_tf.config.TrainConfig`).

    Returns:
      :attr:`selection`.

    Raises:
      ValueError: the examples carry no ``negatives``.
    """
    if F.NEGATIVES not in dataset.element_spec[0]:
      raise ValueError(f"{self.model_config.variant}: the validation examples carry no "
                       f"{F.NEGATIVES!r}; the blend weight is chosen by HR@{SELECTION_K}")
    parts = {d: {"knn": [], "pop": [], "valid": [], "index": []} for d in F.DOMAINS}
    offset = 0
    for features, labels in dataset:
      index = offset + np.arange(int(tf.size(labels)))
      offset += index.size
      for d in F.DOMAINS:
        rows = (labels > 0.5) & tf.equal(features[F.DOMAIN], d)
        selected = {name: tf.boolean_mask(value, rows) for name, value in features.items()}
        candidates = tf.concat([selected[F.ITEM_ID][:, None], selected[F.NEGATIVES]], axis=1)
        parts[d]["knn"].append(self.knn_scores(selected, candidates, d))
        parts[d]["pop"].append(self.popularity_scores(candidates, d))
        parts[d]["valid"].append(tf.not_equal(candidates, F.PAD_ID))
        parts[d]["index"].append(index[rows.numpy()])
    chosen = []
    for d, suffix in F.DOMAIN_SUFFIX.items():
      knn, pop, valid = (tf.concat(parts[d][key], 0) for key in ("knn", "pop", "valid"))
      uniforms = metrics_lib.counter_uniforms(SELECTION_SEED, 0, np.concatenate(parts[d]["index"]))
      rates = {}
      for weight in BLEND_WEIGHTS:
        above, ties = (t.numpy() for t in metrics_lib.rank_counts(knn + weight * pop, valid))
        ranks = metrics_lib.random_ranks(above, ties, uniforms)
        rates[weight] = float(np.mean(ranks <= SELECTION_K)) if ranks.size else 0.0
      best = max(BLEND_WEIGHTS, key=lambda w, rates=rates: (rates[w], -w))
      chosen.append(best)
      self.selection[f"blend_weight_{suffix}"] = best
      self.selection[f"val_hr{SELECTION_K}_{suffix}"] = rates
      logging.info("%s head %s: popularity weight %g (validation HR@%d %.4f on %d positives; "
                   "by weight: %s)", self.model_config.variant, suffix, best, SELECTION_K,
                   rates[best], uniforms.size,
                   ", ".join(f"{w:g}: {r:.4f}" for w, r in rates.items()))
    self.blend_weights.assign(chosen)
    return self.selection
