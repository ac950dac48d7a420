"""The local driver: every user through the per-user function, in one process.

Users are processed in order, in chunks of complete users of about
``chunk_records`` records; each chunk's examples are built (vectorised over
the chunk), encoded and written before the next, so memory holds the input
table plus one chunk, whatever the output size.
"""
from __future__ import annotations

from typing import Dict, Iterator, Sequence, Tuple

import numpy as np
from absl import logging

from dasl_tf.prepare.encoder import ExampleEncoder
from dasl_tf.prepare.examples import (COUNT_KEYS, ExampleParams, Examples, Timelines,
                                      build_user_examples)
from dasl_tf.prepare.interactions import Interactions
from dasl_tf.prepare.writer import ShardWriters


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
                          interactions.timestamp[rows], interactions.split[rows])
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
        chunk_records: int = 50000) -> Dict[str, Dict[str, int]]:
  """Builds and writes every example; returns per-split counts."""
  counts = {name: dict.fromkeys(COUNT_KEYS, 0) for name in split_names}
  num_users = len(interactions.offsets) - 1
  for done, chunk in timelines(interactions, chunk_records):
    write_examples(build_user_examples(chunk, params), split_names, params, encoder, writers,
                   counts)
    logging.info("prepared %d / %d users", done, num_users)
  return counts
