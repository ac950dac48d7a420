"""``dasl-prepare`` as a library: raw two-domain logs -> TFRecords, schema, vocabularies, stats.

The local runner never imports TensorFlow (its start-up alone took longer than
a whole Douban run); only ``--runner beam`` does, through Beam.

Modules, one responsibility each:
  config         :class:`PrepareConfig` (one field per flag) and :class:`PrepareError`.
  values         the one rule for numbers and ids of every input.
  tables         one reader per input format -> string columns.
  blocks         the blocks of input files that Beam workers read.
  times          time-column checks (unit, negative and future times).
  readers        both domains' logs -> :class:`readers.RawLog`.
  interactions   cleaning (drops, counted) and the merged per-user table.
  vocab          raw id -> index vocabularies (0 = padding, 1 = OOV).
  side_features  user / item side-feature tables aligned to the vocabularies.
  splits         temporal, global-time and k-fold split rules; cold-start users.
  examples       the per-user function both drivers share.
  codec          vectorised ``tf.train.Example`` serialization.
  encoder        examples + side features -> serialized records.
  writer         staging directory and TFRecord shards.
  tfrecord       TFRecord files (plain or GZIP) written without TensorFlow.
  stats          ``stats.json``.
  local          the local driver.
  beam_pipeline  the Apache Beam driver.
  beam_runner    how it runs: the runner (no download), worker errors, counters.
  pipeline       :func:`prepare`, which ties them together.
"""
from dasl_tf.prepare.config import FORMATS, PrepareConfig, PrepareError
from dasl_tf.prepare.pipeline import prepare

__all__ = ["FORMATS", "PrepareConfig", "PrepareError", "prepare"]
