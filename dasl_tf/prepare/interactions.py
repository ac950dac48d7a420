"""Cleaning of raw logs and the merged, per-user chronological table of the K domains.

Cleaning (per domain) drops, and counts by reason:
  missing_id          empty user or item id
  missing_rating      empty rating / label cell
  invalid_rating      rating <= 0 (e.g. Ciao's rating 0), or a label not in {0, 1}
  missing_timestamp   empty time cell
  duplicate           a repeated (user, item) pair; the earliest record is kept

The merged table sorts every record by ``(user, time, domain, row in file)``:
time ties are broken stably, first by domain and then by file order. A log
without a time column gets pseudo-times: a user's k-th of n records in the
domain (file order) is at ``(k + 0.5) / n``, interleaving the user's
domains in proportion.

Each record gets an integer time (:func:`integer_times`: the ``timestamp``
feature and the time of the global split) and its split
(:mod:`dasl_tf.prepare.splits`, cold-start users included) before the item
vocabularies are built: they hold the items of the records trained on only
(the ``train`` split, or every fold of a k-fold split), so an item first seen
in validation or test maps to the out-of-vocabulary id, as it would at serving
time.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dasl_tf.features import NUM_RESERVED_IDS, PSEUDO_TIME_SCALE, domain_suffix
from dasl_tf.prepare import readers
from dasl_tf.prepare import splits
from dasl_tf.prepare import vocab as vocab_lib
from dasl_tf.prepare.config import PrepareConfig, PrepareError
from dasl_tf.prepare.readers import RawLog

DROP_REASONS = ("missing_id", "missing_rating", "invalid_rating", "missing_timestamp",
                "duplicate")


@dataclasses.dataclass
class CleanLog:
  """One domain's valid, de-duplicated records, in file order.

  Attributes:
    user: raw user ids, str [N].
    item: raw item ids, str [N].
    label: 1.0 = click, float32 [N].
    timestamp: float64 [N].
    dropped: rows dropped per reason of :data:`DROP_REASONS`.
    file_order: the times are pseudo-times from file order.
  """
  user: np.ndarray
  item: np.ndarray
  label: np.ndarray
  timestamp: np.ndarray
  dropped: Dict[str, int]
  file_order: bool = False


def validity(log: RawLog) -> Tuple[np.ndarray, Dict[str, int]]:
  """Which rows are valid, and how many were dropped per reason (duplicates aside).

  Returns:
    ``(valid, dropped)``: bool [N], and counts for every reason of
    :data:`DROP_REASONS` but ``duplicate``.
  """
  missing_id = _is_empty(log.user) | _is_empty(log.item)
  missing_rating = ~missing_id & np.isnan(log.rating)
  if log.is_label:
    bad_value = ~np.isin(log.rating, (0.0, 1.0))
  else:
    bad_value = ~(log.rating > 0)
  invalid_rating = ~missing_id & ~missing_rating & bad_value
  missing_timestamp = ~missing_id & ~missing_rating & ~invalid_rating & np.isnan(log.timestamp)
  valid = ~(missing_id | missing_rating | invalid_rating | missing_timestamp)
  return valid, {"missing_id": int(missing_id.sum()),
                 "missing_rating": int(missing_rating.sum()),
                 "invalid_rating": int(invalid_rating.sum()),
                 "missing_timestamp": int(missing_timestamp.sum())}


def labels(log: RawLog, rows: np.ndarray, label_threshold: float) -> np.ndarray:
  """Click labels of the given rows: the 0/1 label, or rating >= threshold; float32."""
  values = log.rating[rows] if log.is_label else log.rating[rows] >= label_threshold
  return values.astype(np.float32)


def clean(log: RawLog, label_threshold: float) -> CleanLog:
  """Drops invalid and duplicate rows of one domain and labels the rest."""
  valid, dropped = validity(log)
  rows = np.flatnonzero(valid)
  # Keep the earliest record of each (user, item): sort by pair, then time, then row.
  _, user_code = vocab_lib.build(log.user[rows])
  _, item_code = vocab_lib.build(log.item[rows])
  order = np.lexsort((rows, log.timestamp[rows], item_code, user_code))
  first = np.ones(len(order), dtype=bool)
  first[1:] = ((user_code[order][1:] != user_code[order][:-1])
               | (item_code[order][1:] != item_code[order][:-1]))
  keep = np.sort(rows[order[first]])
  timestamp = (relative_positions(user_code[np.searchsorted(rows, keep)]) if log.file_order
               else log.timestamp[keep])
  dropped["duplicate"] = int(len(rows) - len(keep))
  return CleanLog(log.user[keep], log.item[keep], labels(log, keep, label_threshold), timestamp,
                  dropped, log.file_order)


def _is_empty(values: np.ndarray) -> np.ndarray:
  lengths = pc.utf8_length(pa.array(values, type=pa.string()))
  return lengths.to_numpy(zero_copy_only=False) == 0


def relative_positions(user_code: np.ndarray) -> np.ndarray:
  """Pseudo-times of a log without time: (k + 0.5) / n for a user's k-th of n records.

  The two domains of a user are then interleaved in proportion, as far as
  file order can say anything about time.
  """
  order = np.argsort(user_code, kind="stable")
  sorted_codes = user_code[order]
  starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
  sizes = np.diff(np.append(starts, len(order)))
  rank = np.arange(len(order)) - np.repeat(starts, sizes)
  positions = np.empty(len(order), dtype=np.float64)
  positions[order] = (rank + 0.5) / np.repeat(sizes, sizes)
  return positions


def integer_times(timestamp: np.ndarray, file_order: bool) -> np.ndarray:
  """The records' times as integers, in the unit of the ``timestamp`` feature.

  A time column's values rounded down (whole seconds, or milliseconds, as the
  input counts them); pseudo-times in (0, 1) (no time column) times
  :data:`dasl_tf.features.PSEUDO_TIME_SCALE`, rounded. Both keep the order
  of the times.

  Returns:
    int64 [N].
  """
  if file_order:
    return np.round(timestamp * PSEUDO_TIME_SCALE).astype(np.int64)
  return np.floor(timestamp).astype(np.int64)


@dataclasses.dataclass
class Interactions:
  """The K domains' records as vocabulary indices, grouped by user in time order.

  Records of user ``u`` are rows ``offsets[k]:offsets[k+1]`` where
  ``users[k] == u``; within a user they are sorted by time (stable ties).

  Attributes:
    user: user index, int64 [N].
    item: item index in the vocabulary of its domain, int64 [N].
    domain: the record's domain, 0 = A, 1 = B, 2 = C, ..., int64 [N].
    label: float32 [N].
    timestamp: float64 [N].
    split: index of the record's split (``PrepareConfig.split_names``), int64 [N].
    offsets: start of each user's rows, plus N at the end, int64 [U + 1].
    user_vocab: the user vocabulary (every domain).
    item_vocabs: the item vocabulary of each domain.
    time: :func:`integer_times` of ``timestamp``, int64 [N].
    held_out: the held-out domain of each record's user (cold-start users),
      ``splits.NO_DOMAIN`` for none, int64 [N].
    time_cuts: ``(validation_cut, test_cut)`` of a global_time split, else None.
  """
  user: np.ndarray
  item: np.ndarray
  domain: np.ndarray
  label: np.ndarray
  timestamp: np.ndarray
  split: np.ndarray
  offsets: np.ndarray
  user_vocab: vocab_lib.Vocabulary
  item_vocabs: Tuple[vocab_lib.Vocabulary, ...]
  time: np.ndarray
  held_out: np.ndarray
  time_cuts: Optional[Tuple[int, int]]

  def rows_of(self, k: int) -> slice:
    """Rows of the k-th user present (in user-index order)."""
    return slice(self.offsets[k], self.offsets[k + 1])


def merge(logs: Sequence[CleanLog], config: PrepareConfig) -> Interactions:
  """Builds the merged, sorted table of the domains, its splits and vocabularies.

  Args:
    logs: one log per domain, in domain order (domain index = position).
    config: the run's configuration.

  Raises:
    PrepareError: a domain has no valid record left, or none to train on.
  """
  if len({log.file_order for log in logs}) > 1:
    raise PrepareError("one domain has a timestamp column and another has not: their "
                       "records cannot be ordered against each other")
  for d, (log, source) in enumerate(zip(logs, readers.domain_sources(config))):
    if len(log.user) == 0:
      raise PrepareError(f"domain {domain_suffix(d).upper()} ({source}) has no valid record "
                         f"(dropped: {log.dropped})")
  user_vocab, user = vocab_lib.build(np.concatenate([log.user for log in logs]))
  raw_item = np.concatenate([log.item for log in logs])
  domain = np.repeat(np.arange(len(logs), dtype=np.int64), [len(log.user) for log in logs])
  label = np.concatenate([log.label for log in logs])
  timestamp = np.concatenate([log.timestamp for log in logs])
  row = np.arange(len(user))
  order = np.lexsort((row, domain, timestamp, user))
  user, raw_item, domain = user[order], raw_item[order], domain[order].astype(np.int64)
  starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
  offsets = np.append(starts, len(user)).astype(np.int64)
  time = integer_times(timestamp[order], logs[0].file_order)
  held_out = _held_out_domains(user, domain, user_vocab, config)
  cuts = None
  if config.split == "kfold":
    split = splits.user_folds(user_vocab.size, config.folds, config.seed)[user]
    trained = np.ones(len(user), dtype=bool)
  else:
    if config.split == "global_time":
      cuts = splits.time_cuts(*np.unique(time, return_counts=True),
                              config.validation_fraction, config.test_fraction)
    split = splits.record_splits(config.split, offsets, time, domain, held_out,
                                 config.validation_fraction, config.test_fraction, cuts)
    trained = split == splits.TRAIN
  item = np.empty(len(user), dtype=np.int64)
  item_vocabs = []
  for d in range(len(logs)):
    rows = domain == d
    if not (rows & trained).any():
      raise PrepareError(f"domain {domain_suffix(d).upper()} has no record in the training split: every user's "
                         "records of it fall in validation or test")
    vocabulary, _ = vocab_lib.build(raw_item[rows & trained], config.min_item_count)
    item[rows] = vocabulary.lookup(raw_item[rows])
    item_vocabs.append(vocabulary)
  return Interactions(user, item, domain, label[order], timestamp[order], split, offsets,
                      user_vocab, tuple(item_vocabs), time, held_out, cuts)


def _held_out_domains(user: np.ndarray, domain: np.ndarray, user_vocab: vocab_lib.Vocabulary,
                      config: PrepareConfig) -> np.ndarray:
  """The held-out domain of each record's user (:func:`splits.held_out_domains`), int64 [N]."""
  present = np.zeros((config.num_domains, user_vocab.size), dtype=bool)
  present[domain, user] = True
  in_a, in_b, *in_more = present[:, NUM_RESERVED_IDS:]
  by_user = np.full(user_vocab.size, splits.NO_DOMAIN, np.int64)
  by_user[NUM_RESERVED_IDS:] = splits.held_out_domains(
      user_vocab.tokens, in_a, in_b, config.cold_start_users, config.seed, in_more)
  return by_user[user]
