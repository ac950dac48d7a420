"""Examples (arrays) -> serialized ``tf.train.Example`` records of the feature spec.

Side features are looked up here, from the user index and the target item's
index in its domain, so the per-user function stays free of them.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np

from dasl_tf import features as F
from dasl_tf.prepare import codec
from dasl_tf.prepare.examples import Examples
from dasl_tf.prepare.side_features import SideFeatures


@dataclasses.dataclass
class ExampleEncoder:
  """Encodes :class:`Examples` with the side features of their user and item.

  Attributes:
    feature_spec: the spec the records follow.
    user_features: user side features, or None.
    item_features: item side features (one matrix per domain), or None.
  """
  feature_spec: F.FeatureSpec
  user_features: Optional[SideFeatures] = None
  item_features: Optional[SideFeatures] = None

  def encode(self, examples: Examples, with_negatives: bool,
             with_train_negatives: bool = False) -> List[bytes]:
    """Serializes every example, with its evaluation and training negatives when asked."""
    ints = {F.USER_ID: examples.user, F.ITEM_ID: examples.item, F.DOMAIN: examples.domain,
            **{F.history_key(d): examples.histories[:, d]
               for d in range(examples.histories.shape[1])}}
    floats = {F.LABEL: examples.label}
    if self.feature_spec.has_timestamp:
      ints[F.TIMESTAMP] = examples.timestamp
    if with_negatives and self.feature_spec.num_negatives:
      ints[F.NEGATIVES] = examples.negatives
    if with_train_negatives and self.feature_spec.num_train_negatives:
      ints[F.TRAIN_NEGATIVES] = examples.train_negatives
    if self.user_features is not None:
      matrix = self.user_features.matrices[0]
      if self.feature_spec.user_num_dim:
        floats[F.USER_NUM] = matrix.numeric[examples.user]
      if self.feature_spec.user_cat_dim:
        ints[F.USER_CAT] = matrix.categorical[examples.user]
    if self.item_features is not None:
      spec = self.feature_spec
      numeric = np.zeros((len(examples), spec.item_num_dim), np.float32)
      categorical = np.zeros((len(examples), spec.item_cat_dim), np.int64)
      for domain, matrix in enumerate(self.item_features.matrices):
        rows = examples.domain == domain
        numeric[rows] = matrix.numeric[examples.item[rows]]
        categorical[rows] = matrix.categorical[examples.item[rows]]
      if spec.item_num_dim:
        floats[F.ITEM_NUM] = numeric
      if spec.item_cat_dim:
        ints[F.ITEM_CAT] = categorical
    return codec.serialize(ints, floats)
