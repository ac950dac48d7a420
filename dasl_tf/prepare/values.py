"""The one rule for the numbers and ids of every input: interaction logs and side-feature tables.

Numbers follow Arrow's CSV conversion: spaces and tabs around the number are
ignored, and the rest must be what ``pyarrow.compute.cast`` reads as a
float64 (``4``, ``+4``, ``.5``, ``4e2``, ``inf``, ``nan``); Python-only
spellings (``1_0``, full-width digits, other Unicode blanks) are errors, so
every format reads one cell to one value. A blank cell is missing (NaN).
``inf``, ``nan`` and numbers beyond float64 (``1e400``) are errors, and so
are, where the value is stored as float32 (ratings, side features), numbers
beyond float32 (``1e39``).

Ids are kept as written (``007`` stays ``007``). An id with leading or
trailing whitespace is an error, since ``'u1 '`` and ``'u1'`` would be two
users, unless the run strips ids (``--strip_ids``). An id holding a line
break is always an error: the vocabulary files hold one id per line.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dasl_tf.prepare.config import PrepareError

# The largest magnitude a float32 holds; ratings and side features are stored as float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# What Arrow's CSV conversion trims around a number.
_NUMBER_PADDING = " \t"
# What ``str.splitlines`` splits on: an id holding one would break the
# one-id-per-line vocabulary files.
_LINE_BREAKS = "[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"

Where = Callable[[int], str]  # row index -> "file:line" (or "file (row k)")


def parse_numbers(values: np.ndarray, name: str, where: Where) -> Tuple[np.ndarray, np.ndarray]:
  """Strings as float64 (NaN where blank) and the blank mask, by the module's rule.

  Args:
    values: str [N].
    name: column name, for the message.
    where: row index -> "file:line" text.

  Raises:
    PrepareError: a cell is not a number (the message names its line).
  """
  array = pc.utf8_trim(pa.array(values, type=pa.string()), _NUMBER_PADDING)
  blank = pc.equal(pc.utf8_length(array), 0)
  cleaned = pc.if_else(blank, pa.scalar(None, pa.string()), array)
  try:
    numbers = pc.cast(cleaned, pa.float64())
  except (pa.ArrowInvalid, ValueError):
    row = _first_unparsable(cleaned)
    raise PrepareError(f"{where(row)}: column {name!r} must be numeric, got "
                       f"{values[row]!r}") from None
  return (numbers.to_numpy(zero_copy_only=False),
          blank.to_numpy(zero_copy_only=False).astype(bool))


def _first_unparsable(array: pa.Array) -> int:
  """The first cell Arrow cannot cast to float64 (of an array that has one), by bisection."""
  low, high = 0, len(array)  # the first bad cell is in [low, high)
  while high - low > 1:
    middle = (low + high) // 2
    try:
      pc.cast(array.slice(low, middle - low), pa.float64())
      low = middle
    except (pa.ArrowInvalid, ValueError):
      high = middle
  return low


def to_float(values: np.ndarray, name: str, where: Where,
             limit: Optional[float] = None) -> np.ndarray:
  """Strings as float64 by the module's rule; blank cells become NaN.

  Args:
    values: str [N].
    name: column name, for the message.
    where: row index -> "file:line" text.
    limit: the largest magnitude allowed (:data:`FLOAT32_MAX` for values
      stored as float32), or None for any finite float64.

  Raises:
    PrepareError: a cell is not a number, is ``nan`` or infinite, is beyond
      float64 (``1e400``), or is beyond ``limit``; the message names its line.
  """
  numbers, blank = parse_numbers(values, name, where)
  finite = np.isfinite(numbers)
  bad = np.flatnonzero(~blank & ~finite)
  wanted = "a finite number"
  if not len(bad) and limit is not None:
    bad = np.flatnonzero(~blank & (np.abs(np.where(finite, numbers, 0.0)) > limit))
    wanted = f"a finite number within float32 (|x| <= {limit:.8g})"
  if len(bad):
    row = bad[0]
    raise PrepareError(f"{where(row)}: column {name!r} must be {wanted}, got {values[row]!r} "
                       f"({len(bad)} such cell(s) in the column)")
  return numbers


def checked_ids(ids: np.ndarray, name: str, where: Where, strip: bool) -> np.ndarray:
  """An id column under the module's rule: stripped when ``strip``, else refused when padded.

  Args:
    ids: str [N].
    name: column name, for the message.
    where: row index -> "file:line" text.
    strip: remove leading and trailing whitespace (``--strip_ids``).

  Returns:
    The ids, str (object) [N].

  Raises:
    PrepareError: an id has leading or trailing whitespace (unless ``strip``),
      or holds a line break; the message names its line and column.
  """
  array = pa.array(ids, type=pa.string())
  trimmed = pc.utf8_trim_whitespace(array)
  if strip:
    ids = np.asarray(trimmed.to_numpy(zero_copy_only=False), dtype=object)
    array = trimmed
  else:
    padded = np.flatnonzero(pc.not_equal(trimmed, array).to_numpy(zero_copy_only=False))
    if len(padded):
      row = padded[0]
      raise PrepareError(f"{where(row)}: column {name!r} id {ids[row]!r} has leading or "
                         f"trailing whitespace ({len(padded)} such id(s)); remove it, or pass "
                         "--strip_ids to strip it from every id")
  broken = np.flatnonzero(
      pc.match_substring_regex(array, _LINE_BREAKS).to_numpy(zero_copy_only=False))
  if len(broken):
    raise PrepareError(f"{where(broken[0])}: {name!r} id {ids[broken[0]]!r} holds a line "
                       "break, which the one-id-per-line vocabulary files cannot hold")
  return ids


def check_unique_ids(ids: np.ndarray, name: str, where: Where) -> None:
  """Refuses a repeated (non-blank) id, naming the lines of its first row and of the repeat.

  Raises:
    PrepareError: an id appears on two rows.
  """
  text = ids.astype(str)
  present = np.flatnonzero(np.char.str_len(text) > 0)
  _, first = np.unique(text[present], return_index=True)
  if len(first) == len(present):
    return
  is_first = np.zeros(len(present), dtype=bool)
  is_first[first] = True
  repeats = present[~is_first]
  repeat = repeats[0]
  original = np.flatnonzero(text == text[repeat])[0]
  raise PrepareError(f"{where(repeat)}: column {name!r} repeats the id {ids[repeat]!r} of "
                     f"{where(original)}; a side-feature table holds one row per id "
                     f"({len(repeats)} repeated row(s))")
