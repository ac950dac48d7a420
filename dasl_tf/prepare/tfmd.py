"""The prepared dataset in TensorFlow Metadata's protos: ``schema.pbtxt`` and ``stats.pb``.

``schema.json`` stays the package's own description; these two files let
TFX components read the same facts: SchemaGen-style pipelines and
ExampleValidator take ``schema.pbtxt`` (a ``tensorflow_metadata`` ``Schema``,
text format), and ``tfdv.load_stats_binary`` reads ``stats.pb`` (a
``DatasetFeatureStatisticsList``, one ``DatasetFeatureStatistics`` per split).

The schema gives every feature its type, fixed shape, presence and value
domain: ids lie in their vocabulary ``[0, size)`` (0 padding, 1 OOV), ``domain``
in {0, ..., K - 1}, ``label`` in [0, 1], ``timestamp`` >= 0. ``negatives`` and ``train_negatives`` are in
some splits only (presence 0). The statistics hold what ``dasl-prepare``
counts while writing: examples per split, per feature the examples carrying
it and its number of values, and the label's mean (the positive rate).
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

from google.protobuf import text_format
import numpy as np
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2

from dasl_tf import features as F
from dasl_tf import filesystems

SCHEMA_FILE = "schema.pbtxt"
STATS_FILE = "stats.pb"
# Features present in some splits only.
_SPLIT_FEATURES = (F.NEGATIVES, F.TRAIN_NEGATIVES)


def _int_domains(schema: F.DatasetSchema) -> Dict[str, Tuple[int, int]]:
  """The [min, max] of each integer feature's values."""
  largest_item = max(schema.num_items) - 1
  domains = {
      F.USER_ID: (0, schema.num_users - 1),
      F.ITEM_ID: (0, largest_item),
      F.DOMAIN: (0, schema.num_domains - 1),
      **{F.history_key(d): (0, size - 1) for d, size in enumerate(schema.num_items)},
      F.NEGATIVES: (0, largest_item),
      F.TRAIN_NEGATIVES: (0, largest_item),
      F.TIMESTAMP: (0, np.iinfo(np.int64).max),
  }
  for name, sizes in ((F.USER_CAT, schema.user_cat_vocab_sizes),
                      (F.ITEM_CAT, schema.item_cat_vocab_sizes)):
    if sizes:
      domains[name] = (0, max(sizes) - 1)
  return domains


def schema_proto(schema: F.DatasetSchema) -> schema_pb2.Schema:
  """The ``Schema`` of the examples of a prepared dataset."""
  proto = schema_pb2.Schema()
  domains = _int_domains(schema)
  shapes = schema.feature_spec.shapes(with_label=True, with_negatives=True,
                                      with_train_negatives=True, with_timestamp=True)
  for name, (dtype, shape) in shapes.items():
    feature = proto.feature.add(name=name)
    feature.type = schema_pb2.INT if dtype == np.int64 else schema_pb2.FLOAT
    feature.shape.SetInParent()
    for size in shape:
      feature.shape.dim.add(size=size)
    feature.presence.min_fraction = 0.0 if name in _SPLIT_FEATURES else 1.0
    feature.presence.min_count = 0 if name in _SPLIT_FEATURES else 1
    if name in domains:
      feature.int_domain.min, feature.int_domain.max = domains[name]
    elif name == F.LABEL:
      feature.float_domain.min, feature.float_domain.max = 0.0, 1.0
  return proto


def statistics_proto(schema: F.DatasetSchema, split_counts: Mapping[str, Mapping[str, int]]
                    ) -> statistics_pb2.DatasetFeatureStatisticsList:
  """Per split: examples, each feature's presence and value count, the label's mean."""
  statistics = statistics_pb2.DatasetFeatureStatisticsList()
  spec = schema.feature_spec
  for split, counts in split_counts.items():
    examples = counts["examples"]
    dataset = statistics.datasets.add(name=split, num_examples=examples)
    shapes = spec.shapes(with_label=True, with_negatives=split != "train",
                         with_train_negatives=split not in ("validation", "test"),
                         with_timestamp=True)
    for name, (dtype, shape) in shapes.items():
      feature = dataset.features.add()
      feature.path.step.append(name)
      feature.type = (statistics_pb2.FeatureNameStatistics.INT if dtype == np.int64
                      else statistics_pb2.FeatureNameStatistics.FLOAT)
      common = feature.num_stats.common_stats
      common.num_non_missing = examples
      values = int(np.prod(shape)) if shape else 1
      common.min_num_values = common.max_num_values = values
      common.avg_num_values = float(values)
      common.tot_num_values = examples * values
      if name == F.LABEL and examples:
        feature.num_stats.mean = counts["positives"] / examples
        feature.num_stats.min, feature.num_stats.max = 0.0, 1.0
  return statistics


def write(data_dir: str, schema: F.DatasetSchema,
          split_counts: Mapping[str, Mapping[str, int]]) -> None:
  """Writes ``schema.pbtxt`` and ``stats.pb`` into ``data_dir`` (local or remote)."""
  with filesystems.open_file(f"{data_dir.rstrip('/')}/{SCHEMA_FILE}", "w") as f:
    f.write(text_format.MessageToString(schema_proto(schema)))
  with filesystems.open_file(f"{data_dir.rstrip('/')}/{STATS_FILE}", "wb") as f:
    f.write(statistics_proto(schema, split_counts).SerializeToString())
