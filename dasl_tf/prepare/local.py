"""The local driver: every user through the per-user function, in one process.

Users are processed in order, in chunks of complete users of about
``chunk_records`` records; each chunk's examples are built (vectorised over
the chunk), encoded and written before the next, so memory holds the input
table plus one chunk, whatever the output size.
"""
from __future__ import annotations

import os
from typing import Dict, Iterator, Sequence, Tuple

import numpy as np
from absl import logging

from dasl_tf.prepare.config import PrepareError
from dasl_tf.prepare.encoder import ExampleEncoder
from dasl_tf.prepare.examples import (ExampleParams, Examples, Timelines, build_user_examples,
                                      count_keys)
from dasl_tf.prepare.interactions import Interactions
from dasl_tf.prepare.writer import ShardWriters

CHUNK_RECORDS = 50000
# int64 arrays of a chunk's width held at once while its histories and
# negatives are built (histories, their index arrays, encoding).
_ARRAYS_PER_ID = 4


def check_memory(interactions: Interactions, params: ExampleParams,
                 chunk_records: int = CHUNK_RECORDS) -> None:
  """Refuses settings whose per-chunk arrays would not fit in memory, before allocating them.

  Raises:
    PrepareError: the estimate exceeds half of the memory available.
  """
  records = min(chunk_records, len(interactions.user)) or 1
  ids_per_record = (params.num_domains * params.history_length + params.num_negatives
                    + params.train_negatives)
  needed = records * ids_per_record * 8 * _ARRAYS_PER_ID
  available = available_memory_bytes()
  if needed > available / 2:
    raise PrepareError(
        f"--history_length={params.history_length} with {params.num_negatives} evaluation and "
        f"{params.train_negatives} training negatives needs about {needed / 2**30:.1f} GiB per "
        f"chunk of {records} records, more than half of the {available / 2**30:.1f} GiB "
        "available: use a smaller --history_length or fewer negatives")


def available_memory_bytes() -> int:
  """Memory available to new allocations: ``MemAvailable`` on Linux, else physical memory."""
  try:
    with open("/proc/meminfo", encoding="ascii") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def timelines(interactions: Interactions, chunk_records: int
             ) -> Iterator[Tuple[int, Timelines]]:
  """Chunks of complete users of about ``chunk_records`` records, with the users done so far."""
  offsets = interactions.offsets
  num_users = len(offsets) - 1
  first = 0
  while first < num_users:
    last = int(np.searchsorted(offsets, offsets[first] + chunk_records, side="right")) - 1
    last = min(max(last, first + 1), num_users)
    rows = slice(offsets[first], offsets[last])
    yield last, Timelines(interactions.user[rows], interactions.item[rows],
                          interactions.domain[rows], interactions.label[rows],
                          interactions.timestamp[rows], interactions.split[rows],
                          interactions.time[rows], interactions.held_out[rows])
    first = last


def write_examples(examples: Examples, split_names: Sequence[str], params: ExampleParams,
                   encoder: ExampleEncoder, writers: ShardWriters,
                   counts: Dict[str, Dict[str, int]]) -> None:
  """Encodes a chunk of examples and writes each to a shard of its split."""
  for index, name in enumerate(split_names):
    part = examples.take(examples.split == index)
    if not len(part):
      continue
    writers.write(name, encoder.encode(part, params.negatives_by_split[index],
                                           params.train_negatives_by_split[index]))
    for key, value in part.counts().items():
      counts[name][key] += value


def run(interactions: Interactions, params: ExampleParams,
        encoder: ExampleEncoder, split_names: Sequence[str], writers: ShardWriters,
        chunk_records: int = CHUNK_RECORDS) -> Dict[str, Dict[str, int]]:
  """Builds and writes every example; returns per-split counts."""
  counts = {name: dict.fromkeys(count_keys(params.num_domains), 0) for name in split_names}
  num_users = len(interactions.offsets) - 1
  for done, chunk in timelines(interactions, chunk_records):
    write_examples(build_user_examples(chunk, params), split_names, params, encoder, writers,
                   counts)
    logging.info("prepared %d / %d users", done, num_users)
  return counts
