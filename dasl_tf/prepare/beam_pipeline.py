"""The Apache Beam driver: group records by user, then the same per-user function.

Pipeline::

  Create((user, record)) -> GroupByKey -> UserExamplesFn (sort the user's records,
  build_user_examples, encode; one tagged output per split) -> WriteToTFRecord per split

Reading, cleaning and the vocabularies run in the launching process (they are
global passes over the inputs); the per-user work, encoding and writing run in
Beam, on any runner: ``--runner beam`` plus ``--beam_runner`` (Beam's own
``--runner``, DirectRunner by default) and standard pipeline options, such as
``--direct_num_workers=2`` or ``--beam_runner DataflowRunner --project=...``.
Per-split counts come back through Beam metrics.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, Iterator, Sequence, Tuple

import numpy as np

from dasl_tf.prepare import writer as writer_lib
from dasl_tf.prepare.config import PrepareConfig
from dasl_tf.prepare.encoder import ExampleEncoder
from dasl_tf.prepare.examples import (COUNT_KEYS, ExampleParams, Timelines,
                                      build_user_examples)
from dasl_tf.prepare.interactions import Interactions

_NAMESPACE = "dasl_prepare"
# (timestamp, domain, row, item, label, split)
Record = Tuple[float, int, int, int, float, int]


def keyed_records(interactions: Interactions) -> Iterator[Tuple[int, Record]]:
  """Every record as ``(user, (timestamp, domain, row, item, label, split))``.

  ``row`` is the record's position in the merged table, so sorting a user's
  records by ``(timestamp, domain, row)`` restores the local driver's order.
  """
  columns = zip(interactions.user.tolist(), interactions.timestamp.tolist(),
                interactions.domain.tolist(), interactions.item.tolist(),
                interactions.label.tolist(), interactions.split.tolist())
  for row, (user, timestamp, domain, item, label, split) in enumerate(columns):
    yield user, (timestamp, domain, row, item, label, split)


def timeline_of(user: int, records: Iterable[Record]) -> Timelines:
  """A user's timeline from their grouped records (any order)."""
  ordered = sorted(records, key=lambda r: (r[0], r[1], r[2]))
  timestamp, domain, _, item, label, split = (np.asarray(c) for c in zip(*ordered))
  return Timelines(np.full(len(item), user, np.int64), item.astype(np.int64),
                   domain.astype(np.int64), label.astype(np.float32),
                   timestamp.astype(np.float64), split.astype(np.int64))


def run(interactions: Interactions, params: ExampleParams,
        encoder: ExampleEncoder, config: PrepareConfig, staging: str
       ) -> Dict[str, Dict[str, int]]:
  """Runs the pipeline; writes the shards under ``staging``; returns per-split counts."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=g-import-not-at-top
  from apache_beam.metrics.metric import MetricsFilter  # pylint: disable=g-import-not-at-top
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top

  split_names = config.split_names

  class UserExamplesFn(beam.DoFn):
    """(user, records) -> serialized examples, tagged by split."""

    def __init__(self):
      super().__init__()
      self._counters = {(name, key): beam.metrics.Metrics.counter(_NAMESPACE, f"{name}/{key}")
                        for name in split_names for key in COUNT_KEYS}

    def process(self, element):
      user, records = element
      examples = build_user_examples(timeline_of(user, records), params)
      for index, name in enumerate(split_names):
        part = examples.take(examples.split == index)
        if not len(part):
          continue
        for key, value in part.counts().items():
          self._counters[(name, key)].inc(value)
        for record in encoder.encode(part, params.negatives_by_split[index],
                                           params.train_negatives_by_split[index]):
          yield beam.pvalue.TaggedOutput(name, record)

  compression = CompressionTypes.GZIP if config.compress else CompressionTypes.UNCOMPRESSED
  pipeline = beam.Pipeline(
      options=pipeline_options.PipelineOptions(
          [f"--runner={config.beam_runner}", *config.beam_options]))
  examples = (pipeline
              | "Records" >> beam.Create(list(keyed_records(interactions)))
              | "GroupByUser" >> beam.GroupByKey()
              | "UserExamples" >> beam.ParDo(UserExamplesFn()).with_outputs(*split_names))
  for name in split_names:
    _ = examples[name] | f"Write-{name}" >> beam.io.WriteToTFRecord(
        os.path.join(staging, name, writer_lib.SHARD_PREFIX),
        file_name_suffix=writer_lib.shard_suffix(config.compress),
        num_shards=config.num_shards, shard_name_template=writer_lib.SHARD_TEMPLATE,
        compression_type=compression)
  result = pipeline.run()
  result.wait_until_finish()
  return _counts(result.metrics().query(MetricsFilter().with_namespace(_NAMESPACE)),
                 split_names)


def _counts(metrics, split_names: Sequence[str]) -> Dict[str, Dict[str, int]]:
  counts = {name: {key: 0 for key in COUNT_KEYS} for name in split_names}
  for counter in metrics["counters"]:
    name, key = counter.key.metric.name.split("/")
    counts[name][key] += counter.committed or counter.attempted or 0
  return counts
