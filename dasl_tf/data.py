"""tf.data input functions over the TFRecords written by ``dasl-prepare``.

Shards are interleaved, examples are batched *before* parsing (one vectorised
``parse_example`` per batch), shuffled with a seeded buffer and prefetched. Each
batch mixes examples of both domains, so both heads train in every step.

TensorFlow reports a truncated or corrupt TFRecord as ``DataLossError:
truncated record at 458428`` without the file's name, in the middle of
training. :func:`make_dataset` therefore checks every shard once before it
builds the pipeline (one pass of record framing and CRCs at C++ speed; turn it
off with ``verify_files=False``) and raises :class:`CorruptRecordsError`
naming the file.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import tensorflow as tf

from dasl_tf import features as features_lib

Patterns = Union[str, Sequence[str]]


class CorruptRecordsError(ValueError):
  """A TFRecord shard is truncated, corrupt, or not in the expected compression."""


def resolve_files(patterns: Patterns) -> List[str]:
  """Expands file patterns (local or any tf.io.gfile filesystem) to a sorted file list.

  Raises:
    FileNotFoundError: a pattern matches no file.
  """
  if isinstance(patterns, str):
    patterns = [patterns]
  files = []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise FileNotFoundError(f"no TFRecord file matches {pattern!r}")
    files.extend(matched)
  return files


def compression_of(path: str) -> str:
  """The TFRecord compression of a shard, from its file name."""
  return "GZIP" if path.endswith(".gz") else ""


def count_records(path: str) -> int:
  """Reads every record of one shard and returns how many there are.

  Raises:
    CorruptRecordsError: the file is truncated or corrupt (the message names it).
  """
  dataset = tf.data.TFRecordDataset(path, compression_type=compression_of(path))
  try:
    batches = dataset.batch(4096)
    return int(batches.reduce(tf.constant(0, tf.int64),
                              lambda count, batch: count + tf.size(batch, out_type=tf.int64)))
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
          tf.errors.OutOfRangeError) as e:
    reason = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", e.message).split(" [Op:")[0]
    raise CorruptRecordsError(
        f"{path}: truncated or corrupt TFRecord file ({reason.strip()}); re-run dasl-prepare "
        "or copy the file again") from None


def split_files(data_dir: str, split: str) -> List[str]:
  """The shards of one split of a ``dasl-prepare`` output directory.

  ``split`` is ``train``, ``eval`` or a fold name such as ``fold-0``; the list
  of shards comes from ``schema.json`` so no stray file is ever read.
  """
  schema = features_lib.DatasetSchema.load(data_dir)
  if split not in schema.splits:
    raise ValueError(f"{data_dir}: no split {split!r}; the dataset has {sorted(schema.splits)}")
  return [os.path.join(data_dir, p) for p in schema.splits[split]]


def make_dataset(file_patterns: Patterns,
                 feature_spec: features_lib.FeatureSpec,
                 batch_size: int,
                 training: bool = False,
                 shuffle_buffer: int = 20000,
                 seed: Optional[int] = None,
                 with_negatives: bool = False,
                 repeat: bool = False,
                 drop_remainder: bool = False,
                 num_parallel_reads: int = 4,
                 verify_files: bool = True) -> tf.data.Dataset:
  """Batches of ``(features, label)`` read from TFRecord shards.

  Args:
    file_patterns: shard paths or glob patterns (GZIP shards end in ``.gz``).
    feature_spec: the spec the shards were written with.
    batch_size: examples per batch.
    training: shuffle files and examples (seeded by ``seed``).
    shuffle_buffer: examples held by the shuffle buffer when training.
    seed: shuffle seed; fixed seeds give reproducible epochs.
    with_negatives: also parse the ``negatives`` feature (evaluation files).
    repeat: repeat the data forever (for step-based training).
    drop_remainder: drop the last, smaller batch (needed by some strategies).
    num_parallel_reads: shards read concurrently.
    verify_files: read every shard once first, so that a truncated or corrupt
      file fails here, by name, rather than mid-training.

  Returns:
    A dataset of ``(features, label)``: features is a dict of batched tensors
    named as in :mod:`dasl_tf.features`, label a float32 ``[batch]`` tensor.

  Raises:
    FileNotFoundError: a pattern matches no file.
    CorruptRecordsError: a shard is truncated or corrupt (``verify_files``).
  """
  files = resolve_files(file_patterns)
  compressions = {compression_of(f) for f in files}
  if len(compressions) > 1:
    raise ValueError(f"mixed GZIP and uncompressed shards in {files}")
  compression = compressions.pop()
  if verify_files:
    for path in files:
      count_records(path)
  file_ds = tf.data.Dataset.from_tensor_slices(files)
  if training:
    file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  ds = file_ds.interleave(
      lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
      cycle_length=min(num_parallel_reads, len(files)),
      num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=not training or seed is not None)
  if training:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)

  def parse(serialized: tf.Tensor) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
    parsed = feature_spec.parse(serialized, with_label=True, with_negatives=with_negatives)
    label = parsed.pop(features_lib.LABEL)
    return parsed, label

  ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)
