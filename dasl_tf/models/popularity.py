"""``popularity``: the no-learning baseline every table shows, a most-popular list per domain.

Each head scores an item by ``log(1 + clicks)``, the item's clicked examples
in the training data (any increasing function of the count ranks the same;
the logarithm keeps ``sigmoid`` away from saturation in ``predict``). The
counts are the item priors ``b_D`` of the model's task, set by one
:meth:`~dasl_tf.models.task.CrossDomainTask.adapt` pass; the top-n score
``s + b = 2 log(1 + clicks)`` ranks as the count does. It ignores the user,
so it is the bar a personalised top-n must clear.
"""
from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.models.registry import register


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
@register("popularity")
class Popularity(CrossDomainRanker):
  """Scores ``log(1 + clicks per item in train)`` with the head of the item's domain.

  Fitted by :meth:`adapt` (one pass over the training data), never by gradients.

  Example:
    >>> model = Popularity(config_lib.ModelConfig(
    ...     variant="popularity", num_users=3, num_items_a=5, num_items_b=4))
    >>> batch = ({F.ITEM_ID: tf.constant([2, 2, 3], tf.int64),
    ...           F.DOMAIN: tf.constant([0, 0, 1], tf.int64)},
    ...          tf.constant([1.0, 1.0, 1.0]))
    >>> model.adapt(tf.data.Dataset.from_tensors(batch))
    >>> logits_a, logits_b = model.head_logits({}, tf.constant([[2, 3]], tf.int64))
    >>> import numpy as np
    >>> np.exp(logits_a.numpy()) - 1, np.exp(logits_b.numpy()) - 1  # the clicks per item
    (array([[2., 0.]], dtype=float32), array([[0., 1.]], dtype=float32))

  Args:
    config: the model's :class:`~dasl_tf.config.ModelConfig` (vocabulary sizes).
    name: Keras name of the model.
  """

  learns = False

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, ...]:
    return tuple(self.task.domain_prior(candidates, d) for d in self.domains)
