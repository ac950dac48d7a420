"""Interaction logs of the K domains as read: files -> one :class:`RawLog` per domain.

Every format is read to string columns by :mod:`dasl_tf.prepare.tables`
(whole files) or :mod:`dasl_tf.prepare.blocks` (the Beam driver's blocks);
:func:`log_of_table` turns them into a log by the rules every driver shares:
ids by :func:`dasl_tf.prepare.values.checked_ids`, ratings and times by
:func:`dasl_tf.prepare.values.to_float`, time units by
:mod:`dasl_tf.prepare.times`. Raw ids stay strings; ratings (or 0/1 clicks)
and times are float64, in file order.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

from dasl_tf.prepare import values as values_lib
# Block, blocks_of, read_block, expand and read_table are public here too (the Beam driver).
from dasl_tf.prepare.blocks import Block, blocks_of, read_block  # noqa: F401
from dasl_tf.prepare.config import PrepareConfig, PrepareError
from dasl_tf.prepare.tables import Table, expand, read_table  # noqa: F401
from dasl_tf.prepare.times import check_time_units, checked_time_unit


@dataclasses.dataclass
class RawLog:
  """One domain's log as read, before cleaning.

  Attributes:
    source: the file(s) it came from, for messages.
    user: raw user ids, str [N].
    item: raw item ids, str [N].
    rating: ratings, or 0/1 clicks when ``is_label``, float64 [N].
    timestamp: event times, float64 [N]; the row number when ``file_order``.
    is_label: ``rating`` holds 0/1 clicks rather than ratings.
    file_order: the input had no time column; row order stands in for time.
    category: category per row for single-file multi-category inputs, else None.
    time_unit: "ms" when the times are milliseconds since the epoch, "s"
      otherwise (seconds, or any other clock); "" for ``file_order``.
  """
  source: str
  user: np.ndarray
  item: np.ndarray
  rating: np.ndarray
  timestamp: np.ndarray
  is_label: bool = False
  file_order: bool = False
  category: Optional[np.ndarray] = None
  time_unit: str = ""

  def __len__(self) -> int:
    return len(self.user)

  def select(self, rows: np.ndarray, source: str) -> "RawLog":
    """The rows selected by a boolean mask, as a log of its own."""
    return RawLog(source, self.user[rows], self.item[rows], self.rating[rows],
                  self.timestamp[rows], self.is_label, self.file_order, None, self.time_unit)


@dataclasses.dataclass(frozen=True)
class _Columns:
  user: str
  item: str
  rating: str
  label: str
  timestamp: str
  category: str


def _columns_of(config: PrepareConfig) -> _Columns:
  if config.format in ("csv", "tsv", "parquet"):
    return _Columns(config.user_column, config.item_column, config.rating_column,
                    config.label_column, config.timestamp_column, config.category_column)
  if config.format == "amazon_json":
    return _Columns("reviewerID", "asin", "overall", "", "unixReviewTime", "")
  return _Columns("user", "item", "rating", "", "timestamp", "category")


def log_of_table(table: Table, config: PrepareConfig, with_category: bool = False) -> RawLog:
  """One table's rows as a log, its columns named by ``config`` (or its format's defaults).

  Ids follow :func:`values_lib.checked_ids` (stripped with ``config.strip_ids``);
  ratings and labels must be finite within float32, times finite.
  """
  columns = _columns_of(config)
  user = values_lib.checked_ids(table.column(columns.user), columns.user, table.where,
                                config.strip_ids)
  item = values_lib.checked_ids(table.column(columns.item), columns.item, table.where,
                                config.strip_ids)
  if table.has(columns.rating):
    rating, is_label = table.numbers(columns.rating, values_lib.FLOAT32_MAX), False
  elif columns.label and table.has(columns.label):
    rating, is_label = table.numbers(columns.label, values_lib.FLOAT32_MAX), True
  else:
    wanted = f"{columns.rating!r}" + (f" or {columns.label!r}" if columns.label else "")
    raise PrepareError(f"{table.path}: no column {wanted} (columns: {', '.join(table.columns)})")
  file_order = not table.has(columns.timestamp)
  if file_order:
    timestamp, time_unit = np.arange(len(user), dtype=np.float64), ""
  else:
    timestamp = table.numbers(columns.timestamp)
    time_unit = checked_time_unit(table, columns.timestamp, timestamp)
  category = table.column(columns.category) if with_category else None
  return RawLog(table.path, user, item, rating, timestamp, is_label, file_order, category,
                time_unit)


def _concat(logs: Sequence[RawLog], source: str) -> RawLog:
  if len(logs) == 1:
    return dataclasses.replace(logs[0], source=source)
  if len({(log.is_label, log.file_order) for log in logs}) > 1:
    raise PrepareError(f"{source}: files differ in having a rating or time column")
  check_same_time_unit(logs)
  offset = np.cumsum([0] + [len(log) for log in logs[:-1]])
  timestamp = np.concatenate([log.timestamp + (off if log.file_order else 0)
                              for log, off in zip(logs, offset)])
  category = (np.concatenate([log.category for log in logs])
              if logs[0].category is not None else None)
  return RawLog(source, np.concatenate([log.user for log in logs]),
                np.concatenate([log.item for log in logs]),
                np.concatenate([log.rating for log in logs]), timestamp,
                logs[0].is_label, logs[0].file_order, category, logs[0].time_unit)


def check_same_time_unit(logs: Sequence[RawLog]) -> None:
  """Raises PrepareError when the logs' times are not all in one unit.

  Times in milliseconds against times in seconds would order every record of
  one log after the other's, silently emptying cross-domain histories (or
  leaking the future into them).
  """
  check_time_units([(log.source, log.time_unit, float(log.timestamp[0]) if len(log) else None)
                    for log in logs])



def read_log(pattern: str, config: PrepareConfig, with_category: bool = False) -> RawLog:
  """Reads every file matching ``pattern`` (sorted) into one log, in file order."""
  logs = [log_of_table(read_table(path, config.format), config, with_category)
          for path in expand(pattern)]
  return _concat(logs, pattern)


def read_domains(config: PrepareConfig) -> Tuple[RawLog, ...]:
  """Reads the logs of the K domains, from one input each or one input split by category.

  Raises:
    PrepareError: an input is unreadable, the inputs' times are in different
      units, or a category has no row.
  """
  if not config.input:
    logs = tuple(read_log(pattern, config) for pattern in config.domain_inputs)
    check_same_time_unit(logs)
    return logs
  log = read_log(config.input, config, with_category=True)
  parts = split_by_category(log, config)
  for part, name in zip(parts, config.domain_categories):
    if not len(part):
      found = ", ".join(sorted(set(np.char.strip(log.category.astype(str)).tolist()))[:20])
      raise PrepareError(f"{config.input}: no rows of category {name!r} (categories: {found})")
  return parts


def split_by_category(log: RawLog, config: PrepareConfig) -> Tuple[RawLog, ...]:
  """The rows of each category of ``config.domain_categories``, as one log per domain."""
  category = np.char.strip(log.category.astype(str))
  return tuple(log.select(category == name, source)
               for name, source in zip(config.domain_categories, domain_sources(config)))


def domain_sources(config: PrepareConfig) -> Tuple[str, ...]:
  """How messages and ``stats.json`` name the input of each domain."""
  if not config.input:
    return config.domain_inputs
  return tuple(f"{config.input} [category {name}]" for name in config.domain_categories)
