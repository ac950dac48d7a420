"""``recent_popularity``: the most clicked items of a trailing window before the example's time.

For an example at time t (its ``timestamp`` feature, Unix seconds of the
target record; the window is W days only for data whose
``DatasetSchema.timestamp_unit`` is "seconds"), each head scores item c of
its domain by

  s(c, t) = log(1 + r(c, t) + a(c) / (1 + A_D))

with ``r(c, t)`` the clicked training examples of c whose time lies in
``[t - W, t)`` (W = ``ModelConfig.recent_window_days`` days; a click at t
itself does not count), ``a(c)`` all of c's clicked training examples and
``A_D`` the largest ``a`` of the domain. As ``a / (1 + A_D) < 1``, items rank by
the recent count first and ties break by all-time popularity (up to float32
rounding, which can tie, never reverse, two items). Unknown ids read the
out-of-vocabulary row (score 0).

Fitted by one :meth:`RecentPopularity.adapt` pass over the clicked training
examples (:class:`~dasl_tf.models.recent_clicks.RecentClicks`, which also says
how examples without ``timestamp`` are scored); training examples without it
are an error.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.cooccurrence import example_features
from dasl_tf.models.recent_clicks import SECONDS_PER_DAY, RecentClicks, window_length
from dasl_tf.models.registry import register



@tf_keras.utils.register_keras_serializable(package="dasl_tf")
@register("recent_popularity")
class RecentPopularity(CrossDomainRanker):
  """Clicks per item in the window before the example's time, ties by all-time clicks.

  Example:
    >>> model = RecentPopularity(config_lib.ModelConfig(
    ...     variant="recent_popularity", num_users=3, num_items_a=5, num_items_b=4,
    ...     recent_window_days=1))
    >>> day = SECONDS_PER_DAY
    >>> batch = ({F.ITEM_ID: tf.constant([2, 2, 3, 3, 3], tf.int64),
    ...           F.DOMAIN: tf.constant([0, 0, 0, 0, 0], tf.int64),
    ...           F.TIMESTAMP: tf.constant([9 * day, 9 * day, 2 * day, 2 * day, 2 * day],
    ...                                  tf.int64)},
    ...          tf.constant([1.0, 1.0, 1.0, 1.0, 1.0]))
    >>> model.adapt(tf.data.Dataset.from_tensors(batch))
    >>> features = {F.TIMESTAMP: tf.constant([9 * day + 1, 3 * day], tf.int64)}
    >>> logits_a, _ = model.head_logits(features, tf.constant([[2, 3], [2, 3]], tf.int64))
    >>> np.exp(logits_a.numpy()).round(2) - 1  # recent clicks + all-time clicks / 4
    array([[2.5 , 0.75],
           [0.5 , 3.75]], dtype=float32)

  Args:
    config: the model's :class:`~dasl_tf.config.ModelConfig` (vocabulary sizes,
      ``recent_window_days``).
    name: Keras name of the model.

  Raises:
    ConfigError: ``recent_window_days`` is not positive.
  """

  learns = False

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    super().__init__(config, name=name, **kwargs)
    self.clicks = RecentClicks((config.num_items_a, config.num_items_b), window_length(config))

  def adapt(self, dataset: tf.data.Dataset) -> None:
    """Keeps the clicks' times of the training ``dataset`` per item.

    Raises:
      ValueError: the examples have no ``timestamp`` (re-run dasl-prepare).
    """
    self.clicks.fit(example_features(dataset, (F.ITEM_ID, F.DOMAIN, F.TIMESTAMP),
                                     self.model_config.variant), self.model_config.variant)

  def domain_scores(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                    domain: int) -> tf.Tensor:
    """``s(c, t)`` ``[B, C]`` of candidates of domain ``domain``."""
    recent, all_time = self.clicks.counts(candidates, domain, features.get(F.TIMESTAMP))
    tie_break = tf.cast(all_time, tf.float64) / (
        1.0 + tf.cast(self.clicks.most_clicks[domain], tf.float64))
    return tf.cast(tf.math.log1p(tf.cast(recent, tf.float64) + tie_break), tf.float32)

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    return tuple(self.domain_scores(features, candidates, d) for d in F.DOMAINS)

  def domain_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                     domain: int, training: bool = False) -> tf.Tensor:
    return self.domain_scores(features, candidates, domain)[..., None]
