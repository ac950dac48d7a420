"""Checks of a log's time column: its unit (seconds or milliseconds), no negative or future times."""
from __future__ import annotations

import time
from typing import Optional, Sequence, Tuple

import numpy as np

from dasl_tf.prepare.config import PrepareError
from dasl_tf.prepare.tables import Table

# Times at or above this are taken as milliseconds since the epoch (1e11 s is
# the year 5138); below it, as seconds (or as any other monotone clock).
MILLISECONDS_FROM = 1e11
# Times later than now by more than this are refused as being in the future.
FUTURE_SLACK_S = 86400.0


def checked_time_unit(table: Table, name: str, times: np.ndarray) -> str:
  """The unit of a time column ("ms" or "s"); negative or future times are errors.

  Raises:
    PrepareError: a negative time, a time in the future (beyond a day's
      slack), or a column mixing milliseconds and seconds since the epoch;
      the message names the line.
  """
  known = ~np.isnan(times)
  negative = np.flatnonzero(known & (times < 0))
  if len(negative):
    row = negative[0]
    raise PrepareError(f"{table.where(row)}: column {name!r} holds a negative time "
                       f"{float(times[row])!r} ({len(negative)} such row(s))")
  in_ms = known & (times >= MILLISECONDS_FROM)
  unit = "ms" if in_ms.any() else "s"
  if unit == "ms":
    seconds_like = np.flatnonzero(known & ~in_ms)
    if len(seconds_like):
      raise PrepareError(
          f"{table.path}: column {name!r} mixes milliseconds ({float(times[in_ms][0])!r} at "
          f"{table.where(np.flatnonzero(in_ms)[0])}) and seconds since the epoch "
          f"({float(times[seconds_like[0]])!r} at {table.where(seconds_like[0])})")
  scale = 1000.0 if unit == "ms" else 1.0
  future = np.flatnonzero(known & (times / scale > time.time() + FUTURE_SLACK_S))
  if len(future):
    row = future[0]
    when = time.strftime("%Y-%m-%d", time.gmtime(min(times[row] / scale, 2**37)))
    unit_name = "milliseconds" if scale > 1 else "seconds"
    raise PrepareError(f"{table.where(row)}: column {name!r} holds a time in the future: "
                       f"{float(times[row])!r} ({when} as {unit_name} since the epoch; "
                       f"{len(future)} such row(s))")
  return unit


def check_time_units(units: Sequence[Tuple[str, str, Optional[float]]]) -> None:
  """:func:`dasl_tf.prepare.readers.check_same_time_unit` over ``(source, time unit, first time)`` of each log or block."""
  if len({unit for _, unit, _ in units if unit}) > 1:
    described = "; ".join(
        f"{source}: {'milliseconds' if unit == 'ms' else 'seconds'} (first time {first!r})"
        for source, unit, first in units if unit)
    raise PrepareError(f"the inputs' times are in different units ({described}); convert "
                       "one so that both count the same unit since the epoch")


