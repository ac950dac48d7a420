"""Side-feature tables (paper section 3.1): users' and items' numeric and categorical columns.

A table is a CSV (header row) or Parquet file whose first column is the raw id
(of a user, or of an item of one domain) and whose other columns are features.
A column is numeric when declared so (``--numeric_features``) or, undeclared,
when every non-empty cell parses as a number; otherwise it is categorical.

Values are aligned to the id vocabularies: row ``k`` of a feature matrix holds
the features of index ``k``. Ids of the vocabulary without a row (and empty
cells) get the defaults, 0.0 for numeric and index 0 for categorical
features; rows whose id is not in the vocabulary are ignored. Both are counted.
Ids and numbers follow the rules of :mod:`dasl_tf.prepare.values` (numeric
values must be finite within float32); an id on two rows is an error.
Each categorical column has a vocabulary of its sorted values (index = line +
2; 0 = missing, 1 = a value unseen here). Both domains' item tables must have
the same columns; their categorical vocabularies are shared.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from dasl_tf.features import NUM_RESERVED_IDS
from dasl_tf.prepare import tables
from dasl_tf.prepare import values as values_lib
from dasl_tf.prepare import vocab as vocab_lib
from dasl_tf.prepare.config import PrepareError


@dataclasses.dataclass
class FeatureMatrix:
  """Side features aligned to one id vocabulary.

  Attributes:
    numeric: float32 [V, Nn] (row = id index; rows 0 and 1 are defaults).
    categorical: int64 [V, Nc], categorical-vocabulary indices.
    coverage: counts for the stats: ids with a row, ids without one, rows
      whose id is unknown.
  """
  numeric: np.ndarray
  categorical: np.ndarray
  coverage: Dict[str, int]


@dataclasses.dataclass
class SideFeatures:
  """One entity's side features (users, or items of both domains).

  Attributes:
    numeric_columns: names of the numeric features, in order.
    categorical_columns: names of the categorical features, in order.
    categorical_vocabs: one vocabulary per categorical column.
    matrices: one :class:`FeatureMatrix` per id vocabulary (1 for users, 2 for items).
  """
  numeric_columns: Tuple[str, ...]
  categorical_columns: Tuple[str, ...]
  categorical_vocabs: Tuple[vocab_lib.Vocabulary, ...]
  matrices: Tuple[FeatureMatrix, ...]

  @property
  def vocab_sizes(self) -> Tuple[int, ...]:
    return tuple(v.size for v in self.categorical_vocabs)


def read_table(path: str, strip_ids: bool = False) -> tables.Table:
  """Reads a side-feature table (Parquet if it ends in ``.parquet``, else CSV or TSV).

  Args:
    path: the file (a glob matching one file).
    strip_ids: strip whitespace around the ids (``--strip_ids``).

  Raises:
    PrepareError: not one file, an id padded with whitespace (without
      ``strip_ids``) or holding a line break, or an id on two rows; the
      message names the line(s).
  """
  files = tables.expand(path)
  if len(files) != 1:
    raise PrepareError(f"{path}: a side-feature table is one file, {len(files)} match")
  if files[0].endswith(".parquet"):
    table = tables.read_table(files[0], "parquet")
  else:
    table = tables.read_table(files[0], "tsv" if files[0].endswith((".tsv", ".tsv.gz"))
                              else "csv")
  if not table.columns:
    raise PrepareError(f"{files[0]}: a side-feature table needs an id column")
  name = list(table.columns)[0]
  table.columns[name] = values_lib.checked_ids(table.columns[name], name, table.where, strip_ids)
  values_lib.check_unique_ids(table.columns[name], name, table.where)
  return table


def _is_numeric(values: np.ndarray) -> bool:
  try:
    values_lib.parse_numbers(values, "", lambda row: "")
    return True
  except PrepareError:
    return False


def _column_kinds(feature_tables: Sequence[tables.Table], numeric: Sequence[str],
                  categorical: Sequence[str]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
  """Splits the feature columns (all but the first) into numeric and categorical."""
  names = list(feature_tables[0].columns)[1:]
  for table in feature_tables[1:]:
    if list(table.columns)[1:] != names:
      raise PrepareError(f"{table.path}: feature columns {list(table.columns)[1:]} differ from "
                         f"{feature_tables[0].path}: {names}")
  numeric_columns, categorical_columns = [], []
  for name in names:
    if name in categorical:
      categorical_columns.append(name)
    elif name in numeric or all(_is_numeric(t.columns[name]) for t in feature_tables):
      numeric_columns.append(name)
    else:
      categorical_columns.append(name)
  return tuple(numeric_columns), tuple(categorical_columns)


def _align(table: tables.Table, ids: vocab_lib.Vocabulary, numeric_columns: Sequence[str],
           categorical_columns: Sequence[str],
           categorical_vocabs: Sequence[vocab_lib.Vocabulary]) -> FeatureMatrix:
  """Places a table's rows at the vocabulary indices of their ids."""
  index = ids.lookup(list(table.columns.values())[0])
  known = index >= NUM_RESERVED_IDS
  numeric = np.zeros((ids.size, len(numeric_columns)), dtype=np.float32)
  categorical = np.zeros((ids.size, len(categorical_columns)), dtype=np.int64)
  for k, name in enumerate(numeric_columns):
    values = table.numbers(name, values_lib.FLOAT32_MAX)
    numeric[index[known], k] = np.nan_to_num(values[known], nan=0.0)
  for k, (name, vocabulary) in enumerate(zip(categorical_columns, categorical_vocabs)):
    values = table.columns[name]
    codes = np.where(np.char.str_len(values.astype(str)) > 0, vocabulary.lookup(values), 0)
    categorical[index[known], k] = codes[known]
  covered = np.unique(index[known])
  return FeatureMatrix(numeric, categorical, {
      "ids_with_features": int(len(covered)),
      "ids_without_features": int(ids.size - NUM_RESERVED_IDS - len(covered)),
      "rows_with_unknown_id": int((~known).sum()),
  })


def load(paths: Sequence[Optional[str]], id_vocabs: Sequence[vocab_lib.Vocabulary],
         numeric: Sequence[str], categorical: Sequence[str],
         strip_ids: bool = False) -> Optional[SideFeatures]:
  """Reads one entity's tables (one path per id vocabulary; None = no table).

  ``strip_ids`` strips whitespace around the tables' ids (:func:`read_table`).

  Returns:
    The aligned features, or None when no table is given. A vocabulary
    without a table gets defaults for every id.
  """
  by_vocab = {k: read_table(p, strip_ids) for k, p in enumerate(paths) if p}
  if not by_vocab:
    return None
  present = list(by_vocab.values())
  numeric_columns, categorical_columns = _column_kinds(present, numeric, categorical)
  categorical_vocabs = []
  for name in categorical_columns:
    values = np.concatenate([t.columns[name] for t in present])
    values = values[np.char.str_len(values.astype(str)) > 0]
    categorical_vocabs.append(vocab_lib.build(values)[0])
  matrices = []
  for k, ids in enumerate(id_vocabs):
    if k in by_vocab:
      matrices.append(_align(by_vocab[k], ids, numeric_columns, categorical_columns,
                             categorical_vocabs))
    else:
      matrices.append(FeatureMatrix(
          np.zeros((ids.size, len(numeric_columns)), np.float32),
          np.zeros((ids.size, len(categorical_columns)), np.int64),
          {"ids_with_features": 0, "ids_without_features": ids.size - NUM_RESERVED_IDS,
           "rows_with_unknown_id": 0}))
  return SideFeatures(numeric_columns, categorical_columns, tuple(categorical_vocabs),
                      tuple(matrices))


def write_vocabs(vocab_dir: str, prefix: str, features: Optional[SideFeatures]) -> List[str]:
  """Writes ``<vocab_dir>/<prefix>_<column>.txt`` per categorical column; returns the names."""
  if features is None:
    return []
  names = []
  for name, vocabulary in zip(features.categorical_columns, features.categorical_vocabs):
    vocabulary.write(os.path.join(vocab_dir, f"{prefix}_{name}.txt"))
    names.append(f"{prefix}_{name}.txt")
  return names
