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

Fitted by one :meth:`RecentPopularity.adapt` pass: per domain the sorted keys
``c · S + (time - t_0)`` of the clicks (t_0 the first click's time, S one
more than the span of click times plus one), a non-trainable weight whose
length is the number of clicks; a count over a time range of one item is
two ``tf.searchsorted`` calls on it. Training examples without ``timestamp``
are an error. Examples without it (serving requests, whose signatures take
no time) are scored at the end of the training data: its last click + 1 s.
"""
from __future__ import annotations

from typing import Dict, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.cooccurrence import example_features, known_ids
from dasl_tf.models.registry import register

SECONDS_PER_DAY = 86_400
UNITS_PER_DAY = {"seconds": SECONDS_PER_DAY, "milliseconds": 1000 * SECONDS_PER_DAY}
"""``timestamp`` units per day, by ``ModelConfig.timestamp_unit`` (pseudo-times have none)."""


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
    if config.recent_window_days < 1:
      raise config_lib.ConfigError(
          f"{config.variant}: ModelConfig.recent_window_days must be >= 1, got "
          f"{config.recent_window_days}")
    if config.timestamp_unit not in UNITS_PER_DAY:
      raise config_lib.ConfigError(
          f"{config.variant}: a window of days needs real times, but the data's timestamp unit "
          f"is {config.timestamp_unit!r} (dasl-prepare found no time column, so times are "
          "the records' order); give dasl-prepare a log with timestamps")
    self.item_counts = (config.num_items_a, config.num_items_b)
    self.window = config.recent_window_days * UNITS_PER_DAY[config.timestamp_unit]
    self.click_keys = [
        tf.Variable(tf.zeros([0], tf.int64), shape=tf.TensorShape([None]), trainable=False,
                    name=f"click_keys_{F.DOMAIN_SUFFIX[d]}") for d in F.DOMAINS]
    self.most_clicks = self.add_weight(name="most_clicks", shape=(len(F.DOMAINS),),
                                       initializer="zeros", trainable=False)
    # t_0, S and the time of requests without one (see the module doc).
    self.time_origin, self.key_stride, self.reference_time = (
        self.add_weight(name=weight, shape=(), dtype=tf.int64, initializer="zeros",
                        trainable=False)
        for weight in ("time_origin", "key_stride", "reference_time"))

  def adapt(self, dataset: tf.data.Dataset) -> None:
    """Keeps the clicks' times of the training ``dataset`` per item.

    Raises:
      ValueError: the examples have no ``timestamp`` (re-run dasl-prepare).
    """
    clicked = example_features(dataset, (F.ITEM_ID, F.DOMAIN, F.TIMESTAMP),
                               self.model_config.variant)
    times = clicked[F.TIMESTAMP].astype(np.int64)
    origin = int(times.min()) if times.size else 0
    stride = int(times.max()) - origin + 2 if times.size else 2
    self.time_origin.assign(origin)
    self.key_stride.assign(stride)
    self.reference_time.assign(int(times.max()) + 1 if times.size else 0)
    most = []
    for d in F.DOMAINS:
      items = clicked[F.ITEM_ID]
      keep = ((clicked[F.DOMAIN] == d) & (items >= F.NUM_RESERVED_IDS)
              & (items < self.item_counts[d]))
      self.click_keys[d].assign(np.sort(items[keep] * stride + times[keep] - origin))
      most.append(np.bincount(items[keep]).max() if keep.any() else 0)
      logging.info("%s head %s: %d clicks", self.model_config.variant, F.DOMAIN_SUFFIX[d],
                   int(keep.sum()))
    self.most_clicks.assign(np.asarray(most, np.float32))

  def _count_before(self, keys: tf.Tensor, items: tf.Tensor, times: tf.Tensor) -> tf.Tensor:
    """Clicks of ``items`` earlier than ``times`` (same shape, clipped to the fitted span)."""
    offsets = tf.clip_by_value(times - self.time_origin, 0, self.key_stride - 1)
    bounds = tf.reshape(items * self.key_stride + offsets, [1, -1])
    positions = tf.searchsorted(tf.expand_dims(keys, 0), bounds, side="left", out_type=tf.int64)
    return tf.reshape(positions, tf.shape(items))

  def domain_scores(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                    domain: int) -> tf.Tensor:
    """``s(c, t)`` ``[B, C]`` of candidates of domain ``domain``."""
    items = known_ids(tf.cast(candidates, tf.int64), self.item_counts[domain])
    if F.TIMESTAMP in features:
      times = tf.broadcast_to(tf.cast(features[F.TIMESTAMP], tf.int64)[:, None], tf.shape(items))
    else:
      times = tf.fill(tf.shape(items), self.reference_time)
    keys = self.click_keys[domain]
    recent = (self._count_before(keys, items, times)
              - self._count_before(keys, items, times - self.window))
    start = tf.fill(tf.shape(items), self.time_origin)
    all_time = (self._count_before(keys, items, start + self.key_stride - 1)
                - self._count_before(keys, items, start))
    tie_break = tf.cast(all_time, tf.float64) / (1.0 + tf.cast(self.most_clicks[domain],
                                                               tf.float64))
    return tf.cast(tf.math.log1p(tf.cast(recent, tf.float64) + tie_break), tf.float32)

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    return tuple(self.domain_scores(features, candidates, d) for d in F.DOMAINS)

  def domain_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                     domain: int, training: bool = False) -> tf.Tensor:
    return self.domain_scores(features, candidates, domain)[..., None]
