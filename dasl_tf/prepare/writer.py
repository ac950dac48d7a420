"""Output of ``dasl-prepare``: a staging directory renamed into place, and TFRecord shards.

Everything is written into a staging sibling of ``output_dir`` and renamed to
``output_dir`` only when complete (:func:`dasl_tf.publish.staged_directory`),
so a failed run leaves nothing half-written at ``output_dir``. With
``--overwrite`` only a previous output of ``dasl-prepare`` (a directory that
holds ``schema.json``) is replaced. Shards are
``<split>/part-SSSSS-of-NNNNN.tfrecord[.gz]``, written by
:class:`dasl_tf.prepare.tfrecord.TFRecordWriter` (no TensorFlow).
"""
from __future__ import annotations

import contextlib
import os
from typing import Dict, Iterator, List, Sequence

import numpy as np

from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf import publish
from dasl_tf.prepare.config import PrepareError
from dasl_tf.prepare.tfrecord import TFRecordWriter

SHARD_PREFIX = "part"
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"


def shard_suffix(compress: bool) -> str:
  return ".tfrecord.gz" if compress else ".tfrecord"


def shard_paths(split: str, num_shards: int, compress: bool) -> List[str]:
  """Shard paths of a split, relative to the output directory."""
  return [os.path.join(split, f"{SHARD_PREFIX}-{k:05d}-of-{num_shards:05d}"
                       f"{shard_suffix(compress)}") for k in range(num_shards)]


@contextlib.contextmanager
def staging_dir(output_dir: str, overwrite: bool) -> Iterator[str]:
  """Yields a staging directory that becomes ``output_dir`` when the block succeeds.

  The block must write ``schema.json``: it marks the directory as an output
  of ``dasl-prepare`` that a later ``--overwrite`` may replace.

  Raises:
    PrepareError: ``output_dir`` exists and ``overwrite`` is False, or it
      exists and holds no ``schema.json`` (it is never replaced then), or it
      cannot be written (unwritable, full disk); nothing is left there then.
  """
  try:
    target = output_dir if filesystems.scheme(output_dir) else os.path.abspath(output_dir)
    with publish.staged_directory(target, overwrite, F.SCHEMA_FILE,
                                  "prepared dataset") as staging:
      yield staging
  except publish.PublishError as e:
    raise PrepareError(str(e)) from None
  except OSError as e:
    raise PrepareError(f"{output_dir}: cannot write the prepared dataset "
                       f"({e.strerror or e}{': ' + e.filename if e.filename else ''}); "
                       "nothing was written there") from e


write_json = publish.write_json  # stats.json: the package's one JSON format


class ShardWriters:
  """Open TFRecord writers for every shard of every split.

  Each record goes to a shard drawn by a seeded generator, so shards are
  balanced and mix users. Within a shard, records keep the order of the calls.
  """

  def __init__(self, root: str, splits: Sequence[str], num_shards: int, compress: bool,
               seed: int):
    self._rng = np.random.default_rng((seed, 7))
    self._writers: Dict[str, List[TFRecordWriter]] = {}
    for split in splits:
      filesystems.files_for(root).makedirs(os.path.join(root, split))
      self._writers[split] = [TFRecordWriter(os.path.join(root, p), compress)
                              for p in shard_paths(split, num_shards, compress)]

  def write(self, split: str, records: Sequence[bytes]) -> None:
    """Writes a chunk of records of ``split``: one write call per shard."""
    writers = self._writers[split]
    shards = self._rng.integers(0, len(writers), len(records))
    by_shard: List[List[bytes]] = [[] for _ in writers]
    for shard, record in zip(shards.tolist(), records):
      by_shard[shard].append(record)
    for writer, shard_records in zip(writers, by_shard):
      writer.write_all(shard_records)

  def close(self) -> None:
    for writers in self._writers.values():
      for writer in writers:
        writer.close()
