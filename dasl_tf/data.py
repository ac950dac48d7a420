"""tf.data input functions over the TFRecords written by ``dasl-prepare``.

Every stage works on many records at a time, because per-record tf.data steps
(a parallel interleave hand-off, a shuffle-buffer slot) cost microseconds each
and dominated the old reader on a 2-core machine:

* Evaluation order: the shards are interleaved record by record (round robin,
  sequentially: the same order as before, without a thread hand-off per
  record), cut into windows of ``parse_window`` records, each window parsed by
  one vectorised ``parse_example``, then re-cut into batches with ``rebatch``.
* Training order: shard order is shuffled; blocks of 64
  consecutive records are read from the shards in parallel and shuffled in a
  buffer of ``shuffle_buffer`` records' worth of blocks; the blocks are joined
  into windows of ``2 * shuffle_buffer`` records, each window is parsed at once
  and permuted uniformly (a stateless shuffle whose seeds come from
  ``tf.data.Dataset.random(seed)``, new each epoch), then re-cut into batches.
  The result matches a per-record ``shuffle(shuffle_buffer)`` in how far
  examples move and how many users a batch holds (numbers in BUILD.md); every
  batch is a random sample of its window, so it mixes both domains.

TensorFlow reports a truncated or corrupt TFRecord as ``DataLossError:
truncated record at 458428`` without the file's name, in the middle of
training. :func:`make_dataset` therefore checks every shard once before it
builds the pipeline (one pass of record framing and CRCs at C++ speed; turn it
off with ``verify_files=False``) and raises :class:`CorruptRecordsError`
naming the file. :class:`SplitColumns` reads a split whole, shard by shard, and
counts as that check (``dasl-train`` starts from it, so its training split is read
once per epoch plus that one pass).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from dasl_tf import errors
from dasl_tf import features as features_lib
from dasl_tf import filesystems

Patterns = Union[str, Sequence[str]]


class CorruptRecordsError(errors.DataError):
  """A TFRecord shard is truncated, corrupt, or not in the expected compression."""


def resolve_files(patterns: Patterns) -> List[str]:
  """Expands file patterns (local or any tf.io.gfile filesystem) to a sorted file list.

  Raises:
    FileNotFoundError: a pattern matches no file.
  """
  if isinstance(patterns, str):
    patterns = [patterns]
  filesystems.register(*patterns)
  files = []
  for pattern in patterns:
    matched = filesystems.glob(pattern)
    if not matched:
      raise FileNotFoundError(f"no TFRecord file matches {pattern!r}")
    files.extend(matched)
  return files


def compression_of(path: str) -> str:
  """The TFRecord compression of a shard, from its file name."""
  return "GZIP" if path.endswith(".gz") else ""


# Shards this process has read whole, by identity (path, size, modification time), and
# their record counts: a run checks each shard once, however many datasets read it.
_COUNTED: Dict[Tuple[str, int, int], int] = {}


def count_records(path: str) -> int:
  """How many records one shard holds, read whole once per process and file version.

  A shard read before is not read again while its size and modification time
  are unchanged, so counting the training split and checking it before each
  epoch read it once.

  Raises:
    CorruptRecordsError: the file is truncated or corrupt (the message names it).
  """
  identity = _shard_identity(path)
  if identity not in _COUNTED:
    _COUNTED[identity] = _read_count(path)
  return _COUNTED[identity]


def _shard_identity(path: str) -> Tuple[str, int, int]:
  """The key of ``path`` in :data:`_COUNTED`: the path, its size and modification time."""
  return (path, *filesystems.file_version(path))


# What TensorFlow raises on a truncated, corrupt or unparsable shard.
_READ_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
                tf.errors.OutOfRangeError)


def _corrupt(path: str, error: tf.errors.OpError) -> CorruptRecordsError:
  """The error naming ``path`` for TensorFlow's ``error`` reading it."""
  reason = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message).split(" [Op:")[0]
  return CorruptRecordsError(
      f"{path}: truncated or corrupt TFRecord file ({reason.strip()}); re-run dasl-prepare "
      "or copy the file again")


def _read_count(path: str) -> int:
  """Reads every record of one shard and returns how many there are (see count_records)."""
  dataset = tf.data.TFRecordDataset(path, compression_type=compression_of(path))
  try:
    batches = dataset.batch(4096)
    return int(batches.reduce(tf.constant(0, tf.int64),
                              lambda count, batch: count + tf.size(batch, out_type=tf.int64)))
  except _READ_ERRORS as e:
    raise _corrupt(path, e) from None




def setup_columns(num_domains: int) -> Tuple[str, ...]:
  """The columns a run's setup reads of the training split of K domains.

  They feed the item priors, the co-occurrence and recency tables, the
  negative sampler's exclusions and the full catalogue: ``user_id``,
  ``item_id``, ``domain``, every history and ``timestamp``.
  """
  return (features_lib.USER_ID, features_lib.ITEM_ID, features_lib.DOMAIN,
          *features_lib.history_keys(num_domains), features_lib.TIMESTAMP)


_COLUMN_BATCH = 8192


@dataclasses.dataclass(frozen=True)
class SplitColumns:
  """Some feature columns and the labels of a split, in NumPy, from one pass over its shards.

  The pass reads every shard whole, one at a time, so it is also the shard
  check of :func:`count_records` (a bad shard is named; its count is kept), and
  a run that starts from it reads its training split once besides the epochs.
  It keeps ``8 * (3 + 2T + 1) + 4`` bytes per example (T the history length).

  Attributes:
    features: name -> array ``[N]`` or ``[N, T]``, for the names the data
      carries (``timestamp`` only where it was prepared with times).
    labels: float32 ``[N]``.
  """
  features: Dict[str, np.ndarray]
  labels: np.ndarray

  @classmethod
  def read(cls, files: Sequence[str], spec: features_lib.FeatureSpec,
           names: Optional[Sequence[str]] = None) -> "SplitColumns":
    """Reads the columns ``names`` (default: :func:`setup_columns`) of ``files`` in file order.

    Raises:
      CorruptRecordsError: a shard is truncated, corrupt or does not parse.
    """
    names = setup_columns(spec.num_domains) if names is None else names
    parts: Dict[str, List[np.ndarray]] = {}
    labels: List[np.ndarray] = []
    for path in files:
      shard_labels = []
      try:
        for features, label in make_dataset([path], spec, _COLUMN_BATCH, verify_files=False):
          for name in names:
            if name in features:
              parts.setdefault(name, []).append(features[name].numpy())
          shard_labels.append(label.numpy())
      except _READ_ERRORS as e:
        raise _corrupt(path, e) from None
      _COUNTED[_shard_identity(path)] = sum(map(len, shard_labels))
      labels.extend(shard_labels)
    if not labels:
      raise errors.DataError(f"no examples in {list(files)}")
    return cls({name: np.concatenate(values) for name, values in parts.items()},
               np.concatenate(labels))

  @property
  def num_examples(self) -> int:
    return len(self.labels)

  def batches(self, batch_size: int = _COLUMN_BATCH) -> Iterator[Dict[str, np.ndarray]]:
    """The feature columns in consecutive slices of ``batch_size`` examples (views)."""
    for start in range(0, self.num_examples, batch_size):
      yield {name: values[start:start + batch_size] for name, values in self.features.items()}

  def dataset(self, batch_size: int = _COLUMN_BATCH) -> tf.data.Dataset:
    """``(features, labels)`` batches of the columns, as :func:`make_dataset` gives them."""
    return tf.data.Dataset.from_tensor_slices((self.features, self.labels)).batch(batch_size)


def has_records(files: Sequence[str]) -> bool:
  """Whether any of the shards holds a record (reads at most one record per shard)."""
  return any(any(True for _ in tf.data.TFRecordDataset(path,
                                                       compression_type=compression_of(path)
                                                       ).take(1))
             for path in files)


def split_files(data_dir: str, split: str) -> List[str]:
  """The shards of one split of a ``dasl-prepare`` output directory.

  ``split`` is ``train``, ``validation``, ``test`` or a fold name such as ``fold-0``; the list
  of shards comes from ``schema.json`` so no stray file is ever read.
  """
  schema = features_lib.DatasetSchema.load(data_dir)
  if split not in schema.splits:
    raise errors.DataError(f"{data_dir}: no split {split!r}; the dataset has {sorted(schema.splits)}")
  for path in schema.splits[split]:
    if os.path.isabs(path) or "://" in path or ".." in path.replace("\\", "/").split("/"):
      raise errors.DataError(f"{os.path.join(data_dir, features_lib.SCHEMA_FILE)}: shard {path!r} of "
                       f"split {split!r} lies outside the data directory; refusing to read it")
  return [os.path.join(data_dir, p) for p in schema.splits[split]]


# Records read from one shard at a time when training (the unit of the block shuffle).
_READ_BLOCK = 64
# Training windows (parsed and permuted at once) hold this many times shuffle_buffer records.
_WINDOW_FACTOR = 2
# Records parsed together in evaluation order (then re-cut into batches).
_PARSE_WINDOW = 8192


def make_dataset(file_patterns: Patterns,
                 feature_spec: features_lib.FeatureSpec,
                 batch_size: int,
                 training: bool = False,
                 shuffle_buffer: int = 20000,
                 seed: Optional[int] = None,
                 with_negatives: bool = False,
                 train_negatives: int = 0,
                 repeat: bool = False,
                 drop_remainder: bool = False,
                 num_parallel_reads: int = 4,
                 verify_files: bool = True,
                 parse_window: int = _PARSE_WINDOW,
                 with_timestamp: bool = True) -> tf.data.Dataset:
  """Batches of ``(features, label)`` read from TFRecord shards.

  Args:
    file_patterns: shard paths or glob patterns (GZIP shards end in ``.gz``).
    feature_spec: the spec the shards were written with.
    batch_size: examples per batch.
    training: shuffle files and examples (seeded by ``seed``).
    shuffle_buffer: the scale of the example shuffle when training: blocks of
      64 records are shuffled in a buffer of this many records, then windows of
      twice this many records are permuted uniformly (see the module doc).
    seed: shuffle seed; fixed seeds give reproducible epochs (each epoch, or
      each ``repeat``, is shuffled differently).
    with_negatives: also parse the ``negatives`` feature (evaluation files).
    train_negatives: also parse the ``train_negatives`` feature (training
      files) and keep its first ``train_negatives`` columns; -1 keeps all the
      files carry, 0 parses none.
    repeat: repeat the data forever (for step-based training).
    drop_remainder: drop the last, smaller batch (needed by some strategies).
    num_parallel_reads: shards interleaved at a time.
    verify_files: read every shard whole first (once per process: see
      :func:`count_records`), so that a truncated or corrupt file fails here,
      by name, rather than mid-training.
    parse_window: records parsed by one ``parse_example`` in evaluation order
      (batches and their order do not depend on it).
    with_timestamp: also parse ``timestamp`` (the target's time, int64
      ``[batch]``) when the data carries it (``feature_spec.has_timestamp``);
      older datasets have none, and then no ``timestamp`` feature comes.

  Returns:
    A dataset of ``(features, label)``: features is a dict of batched tensors
    named as in :mod:`dasl_tf.features`, label a float32 ``[batch]`` tensor.

  Raises:
    FileNotFoundError: a pattern matches no file.
    CorruptRecordsError: a shard is truncated or corrupt (``verify_files``).
  """
  if train_negatives > feature_spec.num_train_negatives:
    raise errors.DataError(f"{train_negatives} training negatives per example asked for, but the "
                     f"data carries {feature_spec.num_train_negatives} (dasl-prepare "
                     "--train_negatives)")
  if batch_size < 1 or shuffle_buffer < 1 or parse_window < 1:
    raise errors.DataError(f"batch_size ({batch_size}), shuffle_buffer ({shuffle_buffer}) and "
                     f"parse_window ({parse_window}) must be at least 1")
  files = resolve_files(file_patterns)
  compressions = {compression_of(f) for f in files}
  if len(compressions) > 1:
    raise errors.DataError(f"mixed GZIP and uncompressed shards in {files}")
  compression = compressions.pop()
  if verify_files:
    for path in files:
      count_records(path)
  cycle_length = min(num_parallel_reads, len(files))
  file_ds = tf.data.Dataset.from_tensor_slices(files)

  def parse(serialized: tf.Tensor) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
    parsed = feature_spec.parse(serialized, with_label=True, with_negatives=with_negatives,
                                with_train_negatives=train_negatives != 0,
                                with_timestamp=with_timestamp)
    if train_negatives > 0 and features_lib.TRAIN_NEGATIVES in parsed:
      parsed[features_lib.TRAIN_NEGATIVES] = (
          parsed[features_lib.TRAIN_NEGATIVES][:, :train_negatives])
    label = parsed.pop(features_lib.LABEL)
    return parsed, label

  if training:
    file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    blocks = file_ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression).batch(_READ_BLOCK),
        cycle_length=cycle_length, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=seed is not None)
    blocks = blocks.shuffle(max(1, shuffle_buffer // _READ_BLOCK), seed=seed,
                            reshuffle_each_iteration=True)
    windows = blocks.rebatch(_WINDOW_FACTOR * shuffle_buffer)
    # Two int64 seeds per window; a new sequence each epoch, the same for the same seed.
    window_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def parse_and_permute(serialized: tf.Tensor, window_seed: tf.Tensor):
      parsed, label = parse(serialized)
      order = tf.random.experimental.stateless_shuffle(
          tf.range(tf.shape(label)[0]), seed=window_seed)
      return tf.nest.map_structure(lambda t: tf.gather(t, order), (parsed, label))

    ds = tf.data.Dataset.zip((windows, window_seeds)).map(
        parse_and_permute, num_parallel_calls=tf.data.AUTOTUNE)
  else:
    # Sequential round robin over the shards: one record from each in turn, as a
    # deterministic parallel interleave gives, without its per-record hand-off.
    records = file_ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
        cycle_length=cycle_length)
    ds = records.batch(parse_window).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
  if repeat:
    ds = ds.repeat()
  ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
  return ds.prefetch(tf.data.AUTOTUNE)
