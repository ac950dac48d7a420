"""Raw input files -> string columns (:class:`Table`), one reader per format family.

Every column is read as text (ids are never re-typed, so ``007`` stays
``007``); numbers are parsed afterwards by the one rule of
:mod:`dasl_tf.prepare.values`, whatever the format. Bad input raises
:class:`PrepareError` naming the file and, where one exists, the line (text
formats) or row (Parquet, ``.mat``).

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
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from dasl_tf import filesystems
from dasl_tf.prepare import values as values_lib
from dasl_tf.prepare.config import PrepareError

_AMAZON_CSV_COLUMNS = ("item", "user", "rating", "timestamp")
AMAZON_JSON_FIELDS = ("reviewerID", "asin", "overall", "unixReviewTime")
_DOUBAN_COLUMNS = ("user", "item", "rating", "timestamp")
_MAT_COLUMNS = ("user", "item", "category", "rating", "helpfulness", "timestamp")
_MAT_ID_COLUMNS = ("user", "item", "category")
# Header-less and header delimited formats: (delimiter, column names or None).
DELIMITED = {"csv": (",", None), "tsv": ("\t", None), "amazon_csv": (",", _AMAZON_CSV_COLUMNS),
             "douban": ("\t", _DOUBAN_COLUMNS)}
# Formats whose uncompressed files split into blocks at line breaks.
LINE_FORMATS = (*DELIMITED, "amazon_json")


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

  def numbers(self, name: str, limit: Optional[float] = None) -> np.ndarray:
    """A column as float64 (:func:`values_lib.to_float`); a bad cell is an error naming its line."""
    return values_lib.to_float(self.column(name), name, self.where, limit)


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
  return row_of_line(path, line, delimiter)


def row_of_line(path: str, line: str, delimiter: str) -> List[str]:
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
  return parse_delimited(path, path, _first_row(path, delimiter), delimiter, column_names,
                          skip_header=not column_names)


def parse_delimited(source, path: str, first_row: List[str], delimiter: str,
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
  return table_of_arrow(path, table)


def table_of_arrow(path: str, table: pa.Table) -> Table:
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
      table = parse_json_lines(path, f, fields, lambda number: f"{path}:{number}")
  except (OSError, EOFError, UnicodeDecodeError) as e:
    raise PrepareError(f"{path}: cannot read ({e})") from e
  table.first_line = 1
  return table


def parse_json_lines(path: str, lines: Iterable[str], fields: Sequence[str],
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


def read_table(path: str, file_format: str) -> Table:
  """Reads one file of ``file_format`` (local, or copied from ``scheme://``) into string columns."""
  with filesystems.local_copy(path) as local:
    table = _read_local_table(local, file_format)
  table.path = path  # messages name the file as given
  return table


def _read_local_table(path: str, file_format: str) -> Table:
  if file_format in DELIMITED:
    delimiter, column_names = DELIMITED[file_format]
    return read_delimited(path, delimiter, column_names)
  if file_format == "parquet":
    return read_parquet(path)
  if file_format == "amazon_json":
    return read_json_lines(path, AMAZON_JSON_FIELDS)
  if file_format == "mat":
    return read_mat(path)
  raise PrepareError(f"unknown format {file_format!r}")


