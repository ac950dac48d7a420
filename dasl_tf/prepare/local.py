"""The local driver: every user through the per-user function, in one process.

Users are processed in order and their examples are encoded and written in
chunks of about ``chunk_examples``, so memory holds the input table plus one
chunk, whatever the output size.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Sequence

import numpy as np
from absl import logging

from dasl_tf.prepare.encoder import ExampleEncoder
from dasl_tf.prepare.examples import (COUNT_KEYS, ExampleParams, Examples, UserTimeline,
                                      build_user_examples)
from dasl_tf.prepare.interactions import Interactions
from dasl_tf.prepare.writer import ShardWriters


def timelines(interactions: Interactions, folds: np.ndarray) -> Iterator[UserTimeline]:
  """Each user's timeline, in user-index order."""
  for k in range(len(interactions.offsets) - 1):
    rows = interactions.rows_of(k)
    user = int(interactions.user[rows.start])
    yield UserTimeline(user, interactions.item[rows], interactions.domain[rows],
                       interactions.label[rows], interactions.timestamp[rows],
                       int(folds[user]) if len(folds) else -1)


def write_examples(examples: Examples, split_names: Sequence[str], params: ExampleParams,
                   encoder: ExampleEncoder, writers: ShardWriters,
                   counts: Dict[str, Dict[str, int]]) -> None:
  """Encodes a chunk of examples and writes each to a shard of its split."""
  for index, name in enumerate(split_names):
    part = examples.take(examples.split == index)
    if not len(part):
      continue
    writers.write(name, encoder.encode(part, params.negatives_by_split[index]))
    for key, value in part.counts().items():
      counts[name][key] += value


def run(interactions: Interactions, folds: np.ndarray, params: ExampleParams,
        encoder: ExampleEncoder, split_names: Sequence[str], writers: ShardWriters,
        chunk_examples: int = 50000) -> Dict[str, Dict[str, int]]:
  """Builds and writes every example; returns per-split counts."""
  counts = {name: dict.fromkeys(COUNT_KEYS, 0) for name in split_names}
  chunk: List[Examples] = []
  pending = 0
  num_users = len(interactions.offsets) - 1
  for done, timeline in enumerate(timelines(interactions, folds), start=1):
    chunk.append(build_user_examples(timeline, params))
    pending += len(chunk[-1])
    if pending >= chunk_examples or done == num_users:
      write_examples(Examples.concat(chunk), split_names, params, encoder, writers, counts)
      logging.info("prepared %d / %d users", done, num_users)
      chunk, pending = [], 0
  return counts
