"""Blocks of input files that Beam workers read on their own: byte ranges or Parquet row groups."""
from __future__ import annotations

import dataclasses
import io
from typing import List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dasl_tf import filesystems
from dasl_tf.prepare import tables
from dasl_tf.prepare.config import PrepareError
from dasl_tf.prepare.tables import Table


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
  if file_format in tables.LINE_FORMATS and not path.endswith(".gz"):
    size = filesystems.file_size(path)
    return [Block(path, file_index, start, min(start + block_bytes, size))
            for start in range(0, max(size, 1), block_bytes)]
  return [Block(path, file_index)]


def read_block(block: Block, file_format: str) -> Table:
  """Reads one block into string columns, as :func:`tables.read_table` reads a whole file.

  Rows keep their order within the block; messages name the file and the
  block's byte range (or row group).
  """
  if block.row_group >= 0:
    where = f"{block.path} [row group {block.row_group}]"
    try:
      with filesystems.open_file(block.path, "rb") as f:
        return tables.table_of_arrow(where, pq.ParquetFile(f).read_row_group(block.row_group))
    except (pa.ArrowInvalid, OSError) as e:
      raise PrepareError(f"{where}: cannot read as Parquet ({e})") from e
  if block.end < 0:
    return tables.read_table(block.path, file_format)
  where = f"{block.path} [bytes {block.start}-{block.end}]"
  try:
    with filesystems.open_file(block.path, "rb") as f:
      first_line = f.readline().decode("utf-8")
      data = _lines_from(f, block.start, block.end)
    if file_format == "amazon_json":
      return tables.parse_json_lines(where, data.decode("utf-8").splitlines(), tables.AMAZON_JSON_FIELDS,
                               lambda number: f"{where} (line {number})")
  except (OSError, UnicodeDecodeError) as e:
    raise PrepareError(f"{where}: cannot read ({e})") from e
  delimiter, column_names = tables.DELIMITED[file_format]
  first_row = tables.row_of_line(block.path, first_line, delimiter)
  skip_header = block.start == 0 and not column_names
  if not data:  # every line of the range began in the previous block
    header = list(column_names)[:len(first_row)] if column_names else first_row
    return Table(where, {name: np.empty(0, dtype=object) for name in header}, first_line=0)
  return tables.parse_delimited(io.BytesIO(data), where, first_row, delimiter, column_names,
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


