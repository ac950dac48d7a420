"""Clicks per item in a trailing window of time: ``recent_popularity`` and DASL's recency term.

:class:`RecentClicks` keeps, per domain, the sorted keys ``c · S + (time - t_0)``
of the training clicks (t_0 the first click's time, S one more than the span of
click times plus one), a non-trainable weight whose length is the number of
clicks; a count over a time range of one item is two ``tf.searchsorted`` calls
on it. For an example at time t (its ``timestamp`` feature) it counts

  r(c, t) = the clicked training examples of c whose time lies in [t - W, t)

(a click at t itself does not count, so a training example's own click never
counts for it), and a(c), all of c's clicked training examples. Examples
without ``timestamp`` (serving requests, whose signatures take no time) are
counted at the end of the training data: its last click + 1.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.cooccurrence import known_ids

SECONDS_PER_DAY = 86_400
UNITS_PER_DAY = {"seconds": SECONDS_PER_DAY, "milliseconds": 1000 * SECONDS_PER_DAY}
"""``timestamp`` units per day, by ``ModelConfig.timestamp_unit`` (pseudo-times have none)."""


def window_length(config: config_lib.ModelConfig) -> int:
  """``recent_window_days`` in the data's time unit.

  Raises:
    ConfigError: the window is not positive, or the data has no real times.
  """
  if config.recent_window_days < 1:
    raise config_lib.ConfigError(
        f"{config.variant}: ModelConfig.recent_window_days must be >= 1, got "
        f"{config.recent_window_days}")
  if config.timestamp_unit not in UNITS_PER_DAY:
    raise config_lib.ConfigError(
        f"{config.variant}: a window of days needs real times, but the data's timestamp unit "
        f"is {config.timestamp_unit!r} (dasl-prepare found no time column, so times are "
        "the records' order); give dasl-prepare a log with timestamps")
  return config.recent_window_days * UNITS_PER_DAY[config.timestamp_unit]


class RecentClicks(tf_keras.layers.Layer):
  """Per-domain click times of the training split, counted over a window (module doc).

  Args:
    item_counts: the item vocabulary size of each of the K domains.
    window: W, in the unit of the ``timestamp`` feature.
    name: Keras name of the layer.
  """

  def __init__(self, item_counts: Sequence[int], window: int, name: str = "recent_clicks",
               **kwargs):
    super().__init__(name=name, **kwargs)
    self.item_counts = tuple(item_counts)
    self.window = int(window)
    self.click_keys = [
        tf.Variable(tf.zeros([0], tf.int64), shape=tf.TensorShape([None]), trainable=False,
                    name=f"click_keys_{F.domain_suffix(d)}")
        for d in range(len(self.item_counts))]
    self.most_clicks = self.add_weight(name="most_clicks", shape=(len(self.item_counts),),
                                       initializer="zeros", trainable=False)
    self.time_origin, self.key_stride, self.reference_time = (
        self.add_weight(name=weight, shape=(), dtype=tf.int64, initializer="zeros",
                        trainable=False)
        for weight in ("time_origin", "key_stride", "reference_time"))

  def fit(self, examples: Dict[str, np.ndarray], variant: str) -> None:
    """Keeps the click times of the training examples' ``item_id``, ``domain``, ``timestamp``."""
    times = examples[F.TIMESTAMP].astype(np.int64)
    origin = int(times.min()) if times.size else 0
    stride = int(times.max()) - origin + 2 if times.size else 2
    self.time_origin.assign(origin)
    self.key_stride.assign(stride)
    self.reference_time.assign(int(times.max()) + 1 if times.size else 0)
    most = []
    for d in range(len(self.item_counts)):
      items = examples[F.ITEM_ID]
      keep = ((examples[F.DOMAIN] == d) & (items >= F.NUM_RESERVED_IDS)
              & (items < self.item_counts[d]))
      self.click_keys[d].assign(np.sort(items[keep] * stride + times[keep] - origin))
      most.append(np.bincount(items[keep]).max() if keep.any() else 0)
      logging.info("%s head %s: %d clicks", variant, F.domain_suffix(d), int(keep.sum()))
    self.most_clicks.assign(np.asarray(most, np.float32))

  def _count_before(self, keys: tf.Tensor, items: tf.Tensor, times: tf.Tensor) -> tf.Tensor:
    """Clicks of ``items`` earlier than ``times`` (same shape, clipped to the fitted span)."""
    offsets = tf.clip_by_value(times - self.time_origin, 0, self.key_stride - 1)
    bounds = tf.reshape(items * self.key_stride + offsets, [1, -1])
    positions = tf.searchsorted(tf.expand_dims(keys, 0), bounds, side="left", out_type=tf.int64)
    return tf.reshape(positions, tf.shape(items))

  def counts(self, candidates: tf.Tensor, domain: int, times: Optional[tf.Tensor]
             ) -> Tuple[tf.Tensor, tf.Tensor]:
    """``(r(c, t), a(c))``, int64 ``[B, C]`` each, of candidates of domain ``domain``.

    Args:
      candidates: int item indices ``[B, C]``.
      domain: the candidates' domain.
      times: the examples' ``timestamp`` ``[B]``, or None (the end of the training data).
    """
    items = known_ids(tf.cast(candidates, tf.int64), self.item_counts[domain])
    if times is None:
      times = tf.fill(tf.shape(items), self.reference_time)
    else:
      times = tf.broadcast_to(tf.cast(times, tf.int64)[:, None], tf.shape(items))
    keys = self.click_keys[domain]
    recent = (self._count_before(keys, items, times)
              - self._count_before(keys, items, times - self.window))
    start = tf.fill(tf.shape(items), self.time_origin)
    all_time = (self._count_before(keys, items, start + self.key_stride - 1)
                - self._count_before(keys, items, start))
    return recent, all_time
