"""Readers of raw interaction logs, one per input format, into one columnar form.

Every reader returns a :class:`RawLog`: raw ids as strings (ids are never
re-typed, so ``007`` stays ``007``), ratings (or 0/1 clicks) and times as
float64, in file order. Bad input raises :class:`PrepareError` naming the file
and, where one exists, the line (text formats) or row (Parquet, ``.mat``).

Formats:
  csv / tsv     header row; columns named by the ``*_column`` flags.
  parquet       columns named by the ``*_column`` flags.
  amazon_csv    Amazon ratings: ``item,user,rating,timestamp``, no header.
  amazon_json   Amazon reviews, JSON lines (``.json`` or ``.json.gz``):
                ``reviewerID, asin, overall, unixReviewTime``.
  douban        ``ratings.dat``: ``user<TAB>item<TAB>rating[<TAB>time]``, no header.
  mat           Ciao / Epinions ``.mat``: rows of
                ``user, item, category, rating, helpfulness[, time]``.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import gzip
import io
import json
import os
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from dasl_tf import filesystems
from dasl_tf.prepare.config import PrepareConfig, PrepareError

_AMAZON_CSV_COLUMNS = ("item", "user", "rating", "timestamp")
_AMAZON_JSON_FIELDS = ("reviewerID", "asin", "overall", "unixReviewTime")
_DOUBAN_COLUMNS = ("user", "item", "rating", "timestamp")
_MAT_COLUMNS = ("user", "item", "category", "rating", "helpfulness", "timestamp")
_MAT_ID_COLUMNS = ("user", "item", "category")
# What ``str.splitlines`` splits on: an id holding one would break the
# one-id-per-line vocabulary files.
_LINE_BREAKS = "[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"
# Header-less and header delimited formats: (delimiter, column names or None).
_DELIMITED = {"csv": (",", None), "tsv": ("\t", None), "amazon_csv": (",", _AMAZON_CSV_COLUMNS),
              "douban": ("\t", _DOUBAN_COLUMNS)}
# Formats whose uncompressed files split into blocks at line breaks.
_LINE_FORMATS = (*_DELIMITED, "amazon_json")
# Times at or above this are taken as milliseconds since the epoch (1e11 s is
# the year 5138); below it, as seconds (or as any other monotone clock).
MILLISECONDS_FROM = 1e11
# Times later than now by more than this are refused as being in the future.
FUTURE_SLACK_S = 86400.0


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


@dataclasses.dataclass
class Table:
  """String columns of one file, with how to name a row in a message.

  Attributes:
    path: the file.
    columns: column name -> str values [N] (null cells are empty strings).
    first_line: line number of the first data row (0 = rows are not lines).
    nested: columns that were not read because they are nested (Parquet
      lists, structs, maps): name -> type.
  """
  path: str
  columns: Dict[str, np.ndarray]
  first_line: int
  nested: Dict[str, str] = dataclasses.field(default_factory=dict)

  def where(self, row: int) -> str:
    if self.first_line:
      return f"{self.path}:{self.first_line + row}"
    return f"{self.path} (row {row})"

  def has(self, name: str) -> bool:
    return name in self.columns or name in self.nested

  def column(self, name: str) -> np.ndarray:
    if name in self.nested:
      raise PrepareError(f"{self.path}: column {name!r} has the nested type "
                         f"{self.nested[name]}; expected one scalar (number or text) per row")
    if name not in self.columns:
      raise PrepareError(f"{self.path}: no column {name!r} (columns: {', '.join(self.columns)})")
    return self.columns[name]

  def numbers(self, name: str) -> np.ndarray:
    """A column as float64; a non-numeric cell is an error naming its line."""
    return to_float(self.column(name), name, self.where)


def to_float(values: np.ndarray, name: str, where) -> np.ndarray:
  """Converts strings to float64; empty cells become NaN, anything else not a finite number is an error.

  Args:
    values: str [N].
    name: column name, for the message.
    where: row index -> "file:line" text.

  Raises:
    PrepareError: a cell is not a number, or is ``nan``, ``inf`` or beyond
      float64 (``1e400``).
  """
  numbers, blank = parse_numbers(values, name, where)
  non_finite = np.flatnonzero(~blank & ~np.isfinite(numbers))
  if len(non_finite):
    row = non_finite[0]
    raise PrepareError(f"{where(row)}: column {name!r} must be a finite number, got "
                       f"{values[row]!r} ({len(non_finite)} such cell(s) in the column)")
  return numbers


def parse_numbers(values: np.ndarray, name: str, where) -> Tuple[np.ndarray, np.ndarray]:
  """Strings as float64 (NaN where blank) and the blank mask; text is an error.

  Cells are read as Python's ``float`` reads them, surrounding blanks allowed
  (``" 4"``, full-width ``"４"``), when Arrow cannot cast the column.

  Raises:
    PrepareError: a cell is not a number (the message names its line).
  """
  array = pa.array(values, type=pa.string())
  blank = pc.equal(pc.utf8_trim_whitespace(array), "")
  cleaned = pc.if_else(blank, pa.scalar(None, pa.string()), array)
  try:
    numbers = pc.cast(cleaned, pa.float64()).to_numpy(zero_copy_only=False)
  except (pa.ArrowInvalid, ValueError):
    numbers = np.array([_python_float(value, name, where, row)
                        for row, value in enumerate(values)], dtype=np.float64)
  return numbers, blank.to_numpy(zero_copy_only=False)


def _python_float(value: str, name: str, where, row: int) -> float:
  """One cell that Arrow could not cast, as Python reads it; an error names its line."""
  if not value.strip():
    return float("nan")
  try:
    return float(value)
  except ValueError:
    raise PrepareError(f"{where(row)}: column {name!r} must be numeric, got {value!r}") from None


def expand(pattern: str) -> List[str]:
  """Files matching a path or glob (local or ``scheme://``), sorted; an error when none exists."""
  if filesystems.scheme(pattern):
    remote = filesystems.files_for(pattern)
    files = sorted(remote.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    files = [f for f in files if remote.exists(f) and not remote.isdir(f)]
  else:
    files = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    files = [f for f in files if os.path.isfile(f)]
  if not files:
    raise PrepareError(f"input not found: {pattern!r} matches no file")
  return files


def _open_text(path: str):
  if path.endswith(".gz"):
    return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
  return open(path, encoding="utf-8", newline="")


def _first_row(path: str, delimiter: str) -> List[str]:
  """The first row of a delimited file (its header, or its first record)."""
  try:
    with _open_text(path) as f:
      line = f.readline()
  except (OSError, EOFError, UnicodeDecodeError) as e:
    raise PrepareError(f"{path}: cannot read ({e})") from e
  return _row_of_line(path, line, delimiter)


def _row_of_line(path: str, line: str, delimiter: str) -> List[str]:
  row = next(csv.reader([line], delimiter=delimiter), None)
  if not row:
    raise PrepareError(f"{path}: empty file")
  return [name.strip() for name in row]


def read_delimited(path: str, delimiter: str, column_names: Optional[Sequence[str]] = None
                  ) -> Table:
  """Reads a (possibly gzipped) delimited text file with every column as strings.

  Args:
    path: the file; ``.gz`` files are decompressed.
    delimiter: field separator.
    column_names: names of a header-less file's columns (missing trailing
      columns are allowed); None when the file has a header row.
  """
  return _parse_delimited(path, path, _first_row(path, delimiter), delimiter, column_names,
                          skip_header=not column_names)


def _parse_delimited(source, path: str, first_row: List[str], delimiter: str,
                     column_names: Optional[Sequence[str]], skip_header: bool) -> Table:
  """Parses delimited text (a path or a binary file object) into string columns.

  Args:
    source: what Arrow reads: a local path or a file object.
    path: the file, for messages.
    first_row: the file's first row: its header, or (header-less) its first record.
    delimiter: field separator.
    column_names: names of a header-less file's columns; None with a header row.
    skip_header: ``source`` starts with the header row.
  """
  header = list(column_names)[:len(first_row)] if column_names else first_row
  read_options = pa_csv.ReadOptions(column_names=header, skip_rows=1 if skip_header else 0)
  try:
    table = pa_csv.read_csv(
        source, read_options=read_options,
        parse_options=pa_csv.ParseOptions(delimiter=delimiter),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=False))
  except (pa.ArrowInvalid, OSError, EOFError) as e:
    raise PrepareError(f"{path}: cannot parse as {'headerless ' if column_names else ''}"
                       f"delimited text ({e})") from e
  return Table(path, {name: _strings(table.column(name)) for name in header},
               first_line=(1 if column_names else 2) if isinstance(source, str) else 0)


def _strings(column) -> np.ndarray:
  return np.asarray(pc.fill_null(column.cast(pa.string()), "").to_numpy(zero_copy_only=False),
                    dtype=object)


def read_parquet(path: str) -> Table:
  """Reads a Parquet file with every scalar column cast to strings.

  Nested columns (lists, structs, maps) are kept out; naming one as an input
  column is an error that gives its type.
  """
  try:
    table = pq.read_table(path)
  except (pa.ArrowInvalid, OSError) as e:
    raise PrepareError(f"{path}: cannot read as Parquet ({e})") from e
  return _table_of_arrow(path, table)


def _table_of_arrow(path: str, table: pa.Table) -> Table:
  columns, nested = {}, {}
  for field in table.schema:
    if pa.types.is_nested(field.type):
      nested[field.name] = str(field.type)
    else:
      columns[field.name] = _strings(table.column(field.name))
  return Table(path, columns, first_line=0, nested=nested)


def read_json_lines(path: str, fields: Sequence[str]) -> Table:
  """Reads the named fields of a (possibly gzipped) JSON-lines file."""
  try:
    with _open_text(path) as f:
      table = _parse_json_lines(path, f, fields, lambda number: f"{path}:{number}")
  except (OSError, EOFError, UnicodeDecodeError) as e:
    raise PrepareError(f"{path}: cannot read ({e})") from e
  table.first_line = 1
  return table


def _parse_json_lines(path: str, lines: Iterable[str], fields: Sequence[str],
                      where: Callable[[int], str]) -> Table:
  """The named fields of JSON lines; ``where(k)`` names the k-th line (1-based)."""
  values = {field: [] for field in fields}
  for line_number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise PrepareError(f"{where(line_number)}: not valid JSON ({e})") from e
    for field in fields:
      if field not in record:
        raise PrepareError(f"{where(line_number)}: record has no field {field!r}")
      values[field].append(str(record[field]))
  return Table(path, {k: np.asarray(v, dtype=object) for k, v in values.items()}, first_line=0)


def read_mat(path: str) -> Table:
  """Reads a Ciao / Epinions rating matrix (``rating`` variable of a ``.mat`` file).

  Id columns (user, item, category) must hold whole finite numbers; the other
  columns keep their values (a fractional rating stays fractional).

  Raises:
    PrepareError: the file is not a readable ``.mat`` (v7.3 files are HDF5 and
      named as such), has no rating matrix, or an id is not a whole number.
  """
  import scipy.io  # pylint: disable=g-import-not-at-top

  try:
    contents = scipy.io.loadmat(path)
  except NotImplementedError as e:  # scipy's answer to MATLAB v7.3 (HDF5) files
    raise PrepareError(f"{path}: a MATLAB v7.3 (HDF5) .mat file, which is not supported; "
                       "re-save it in MATLAB with save(..., '-v7') ({e})") from e
  except (ValueError, OSError, TypeError) as e:
    raise PrepareError(f"{path}: cannot read as a MATLAB .mat file ({e})") from e
  arrays = {k: v for k, v in contents.items()
            if not k.startswith("__") and isinstance(v, np.ndarray) and v.ndim == 2}
  if "rating" in arrays:
    matrix = arrays["rating"]
  elif len(arrays) == 1:
    matrix = next(iter(arrays.values()))
  else:
    raise PrepareError(f"{path}: expected a 'rating' matrix, found variables {sorted(arrays)}")
  if matrix.shape[1] < 5:
    raise PrepareError(f"{path}: the rating matrix has {matrix.shape[1]} columns; expected "
                       f"{', '.join(_MAT_COLUMNS)}")
  if not np.issubdtype(matrix.dtype, np.number):
    raise PrepareError(f"{path}: the rating matrix holds {matrix.dtype}, not numbers")
  table = Table(path, {}, first_line=0)
  for k, name in enumerate(_MAT_COLUMNS[:min(matrix.shape[1], len(_MAT_COLUMNS))]):
    values = matrix[:, k].astype(np.float64)
    if name in _MAT_ID_COLUMNS:
      bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
      if len(bad):
        raise PrepareError(f"{table.where(bad[0])}: column {name!r} must hold whole-number "
                           f"ids, got {float(values[bad[0]])!r} ({len(bad)} such row(s))")
      table.columns[name] = values.astype(np.int64).astype(str).astype(object)
    else:
      table.columns[name] = np.array([_number_text(v) for v in values.tolist()], dtype=object)
  return table


def _number_text(value: float) -> str:
  """A number as text that reads back to itself: "4" when whole, else ``repr`` ("3.5", "nan")."""
  return str(int(value)) if np.isfinite(value) and value == int(value) else repr(value)


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


def read_table(path: str, file_format: str) -> Table:
  """Reads one file of ``file_format`` (local, or copied from ``scheme://``) into string columns."""
  with filesystems.local_copy(path) as local:
    table = _read_local_table(local, file_format)
  table.path = path  # messages name the file as given
  return table


def _read_local_table(path: str, file_format: str) -> Table:
  if file_format in _DELIMITED:
    delimiter, column_names = _DELIMITED[file_format]
    return read_delimited(path, delimiter, column_names)
  if file_format == "parquet":
    return read_parquet(path)
  if file_format == "amazon_json":
    return read_json_lines(path, _AMAZON_JSON_FIELDS)
  if file_format == "mat":
    return read_mat(path)
  raise PrepareError(f"unknown format {file_format!r}")


@dataclasses.dataclass(frozen=True)
class Block:
  """A part of an input file that one worker reads on its own.

  Attributes:
    path: the file.
    file_index: the file's rank among the input's files (sorted).
    start: first byte of a text block (the block holds the lines that
      begin in ``[start, end)``).
    end: end of a text block; -1 for a whole file or a Parquet row group.
    row_group: the Parquet row group, or -1.
  """
  path: str
  file_index: int
  start: int = 0
  end: int = -1
  row_group: int = -1


def blocks_of(path: str, file_index: int, file_format: str, block_bytes: int) -> List[Block]:
  """Splits a file into blocks: byte ranges of uncompressed text, Parquet row groups, else one.

  Raises:
    PrepareError: a Parquet file cannot be read.
  """
  if file_format == "parquet":
    try:
      with filesystems.open_file(path, "rb") as f:
        row_groups = pq.ParquetFile(f).num_row_groups
    except (pa.ArrowInvalid, OSError) as e:
      raise PrepareError(f"{path}: cannot read as Parquet ({e})") from e
    return [Block(path, file_index, row_group=k) for k in range(max(row_groups, 1))]
  if file_format in _LINE_FORMATS and not path.endswith(".gz"):
    size = filesystems.file_size(path)
    return [Block(path, file_index, start, min(start + block_bytes, size))
            for start in range(0, max(size, 1), block_bytes)]
  return [Block(path, file_index)]


def read_block(block: Block, file_format: str) -> Table:
  """Reads one block into string columns, as :func:`read_table` reads a whole file.

  Rows keep their order within the block; messages name the file and the
  block's byte range (or row group).
  """
  if block.row_group >= 0:
    where = f"{block.path} [row group {block.row_group}]"
    try:
      with filesystems.open_file(block.path, "rb") as f:
        return _table_of_arrow(where, pq.ParquetFile(f).read_row_group(block.row_group))
    except (pa.ArrowInvalid, OSError) as e:
      raise PrepareError(f"{where}: cannot read as Parquet ({e})") from e
  if block.end < 0:
    return read_table(block.path, file_format)
  where = f"{block.path} [bytes {block.start}-{block.end}]"
  try:
    with filesystems.open_file(block.path, "rb") as f:
      first_line = f.readline().decode("utf-8")
      data = _lines_from(f, block.start, block.end)
    if file_format == "amazon_json":
      return _parse_json_lines(where, data.decode("utf-8").splitlines(), _AMAZON_JSON_FIELDS,
                               lambda number: f"{where} (line {number})")
  except (OSError, UnicodeDecodeError) as e:
    raise PrepareError(f"{where}: cannot read ({e})") from e
  delimiter, column_names = _DELIMITED[file_format]
  first_row = _row_of_line(block.path, first_line, delimiter)
  skip_header = block.start == 0 and not column_names
  if not data:  # every line of the range began in the previous block
    header = list(column_names)[:len(first_row)] if column_names else first_row
    return Table(where, {name: np.empty(0, dtype=object) for name in header}, first_line=0)
  return _parse_delimited(io.BytesIO(data), where, first_row, delimiter, column_names,
                          skip_header)


def _lines_from(f, start: int, end: int) -> bytes:
  """The lines of a binary file that begin in ``[start, end)``, whole."""
  if start:
    f.seek(start - 1)
    f.readline()  # the end of the line begun before ``start``: the previous block's
  else:
    f.seek(0)
  begin = f.tell()
  data = f.read(max(end - begin, 0))
  if data and not data.endswith(b"\n"):
    data += f.readline()
  return data


def log_of_table(table: Table, config: PrepareConfig, with_category: bool = False) -> RawLog:
  """One table's rows as a log, its columns named by ``config`` (or its format's defaults)."""
  columns = _columns_of(config)
  user = _ids(table, columns.user)
  item = _ids(table, columns.item)
  if table.has(columns.rating):
    rating, is_label = table.numbers(columns.rating), False
  elif columns.label and table.has(columns.label):
    rating, is_label = table.numbers(columns.label), True
  else:
    wanted = f"{columns.rating!r}" + (f" or {columns.label!r}" if columns.label else "")
    raise PrepareError(f"{table.path}: no column {wanted} (columns: {', '.join(table.columns)})")
  file_order = not table.has(columns.timestamp)
  if file_order:
    timestamp, time_unit = np.arange(len(user), dtype=np.float64), ""
  else:
    timestamp = table.numbers(columns.timestamp)
    time_unit = _checked_time_unit(table, columns.timestamp, timestamp)
  category = table.column(columns.category) if with_category else None
  return RawLog(table.path, user, item, rating, timestamp, is_label, file_order, category,
                time_unit)


def _ids(table: Table, name: str) -> np.ndarray:
  """An id column; an id holding a line break is an error naming its line."""
  ids = table.column(name)
  broken = pc.match_substring_regex(pa.array(ids, type=pa.string()), _LINE_BREAKS)
  rows = np.flatnonzero(broken.to_numpy(zero_copy_only=False))
  if len(rows):
    raise PrepareError(f"{table.where(rows[0])}: {name!r} id {ids[rows[0]]!r} holds a line "
                       "break, which the one-id-per-line vocabulary files cannot hold")
  return ids


def _checked_time_unit(table: Table, name: str, times: np.ndarray) -> str:
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


def check_time_units(units: Sequence[Tuple[str, str, Optional[float]]]) -> None:
  """:func:`check_same_time_unit` over ``(source, time unit, first time)`` of each log or block."""
  if len({unit for _, unit, _ in units if unit}) > 1:
    described = "; ".join(
        f"{source}: {'milliseconds' if unit == 'ms' else 'seconds'} (first time {first!r})"
        for source, unit, first in units if unit)
    raise PrepareError(f"the inputs' times are in different units ({described}); convert "
                       "one so that both count the same unit since the epoch")


def read_log(pattern: str, config: PrepareConfig, with_category: bool = False) -> RawLog:
  """Reads every file matching ``pattern`` (sorted) into one log, in file order."""
  logs = [log_of_table(read_table(path, config.format), config, with_category)
          for path in expand(pattern)]
  return _concat(logs, pattern)


def read_domains(config: PrepareConfig) -> Tuple[RawLog, RawLog]:
  """Reads the logs of domains A and B, from two inputs or one split by category."""
  if not config.input:
    logs = read_log(config.input_a, config), read_log(config.input_b, config)
    check_same_time_unit(logs)
    return logs
  log = read_log(config.input, config, with_category=True)
  parts = split_by_category(log, config)
  for part, name in zip(parts, (config.category_a, config.category_b)):
    if not len(part):
      found = ", ".join(sorted(set(np.char.strip(log.category.astype(str)).tolist()))[:20])
      raise PrepareError(f"{config.input}: no rows of category {name!r} (categories: {found})")
  return parts


def split_by_category(log: RawLog, config: PrepareConfig) -> Tuple[RawLog, RawLog]:
  """The rows of ``config.category_a`` and of ``config.category_b``, as two logs."""
  category = np.char.strip(log.category.astype(str))
  sources = domain_sources(config)
  return tuple(log.select(category == name, source)
               for name, source in zip((config.category_a, config.category_b), sources))


def domain_sources(config: PrepareConfig) -> Tuple[str, str]:
  """How messages and ``stats.json`` name the inputs of domains A and B."""
  if not config.input:
    return config.input_a, config.input_b
  return (f"{config.input} [category {config.category_a}]",
          f"{config.input} [category {config.category_b}]")
