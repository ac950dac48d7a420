"""Numbers and ids of every input format: one parsing rule, range checks, padded and repeated ids, empty splits."""
import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dasl_tf.prepare import PrepareConfig, PrepareError, prepare

# Largest float32, written independently of the code under test.
FLOAT32_MAX = 3.4028234663852886e38


def _rows(prefix):
  """Users u1, u2 with 5 items each: (user, item, rating, time) as text."""
  return [[f"u{u}", f"{prefix}{k}", str((5, 4, 2, 5, 1)[k]), str(10 * u + k)]
          for u in (1, 2) for k in range(5)]


# Per format: the file's name, the line of its first record (0 = rows, not lines)
# and the name of its rating column.
FORMATS = {"csv": ("a.csv", 2, "rating"), "tsv": ("a.tsv", 2, "rating"),
           "parquet": ("a.parquet", 0, "rating"), "douban": ("a.dat", 1, "rating"),
           "amazon_csv": ("a_amazon.csv", 1, "rating"),
           "amazon_json": ("a.json", 1, "overall")}


def _write(tmp_path, file_format, rows, name=None):
  """Writes (user, item, rating, time) rows in ``file_format``; returns the path."""
  path = tmp_path / (name or FORMATS[file_format][0])
  if file_format in ("csv", "tsv"):
    sep = "," if file_format == "csv" else "\t"
    lines = [sep.join(("user_id", "item_id", "rating", "timestamp"))] + [sep.join(r) for r in rows]
  elif file_format == "douban":
    lines = ["\t".join(r) for r in rows]
  elif file_format == "amazon_csv":
    lines = [",".join((r[1], r[0], r[2], r[3])) for r in rows]
  elif file_format == "amazon_json":
    lines = [json.dumps({"reviewerID": r[0], "asin": r[1], "overall": r[2],
                         "unixReviewTime": r[3]}) for r in rows]
  else:
    columns = list(zip(*rows))
    pq.write_table(pa.table({n: list(c) for n, c in
                             zip(("user_id", "item_id", "rating", "timestamp"), columns)}),
                   str(path))
    return str(path)
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(path)


def _where(tmp_path, file_format, row):
  name, first_line, _ = FORMATS[file_format]
  if first_line:
    return f"{tmp_path / name}:{first_line + row}"
  return f"{tmp_path / name} \\(row {row}\\)"


def _run(tmp_path, a, b, **flags):
  flags.setdefault("num_negatives", 0)
  flags.setdefault("train_negatives", 0)
  return prepare(PrepareConfig(input_a=a, input_b=b, output_dir=str(tmp_path / "out"), **flags))


def _run_format(tmp_path, file_format, rows_a, **flags):
  a = _write(tmp_path, file_format, rows_a)
  b = _write(tmp_path, file_format, _rows("j"), name="b_" + FORMATS[file_format][0])
  return _run(tmp_path, a, b, format=file_format, **flags)


# --- one number rule for every format ------------------------------------------------------


@pytest.mark.parametrize("file_format", sorted(FORMATS))
@pytest.mark.parametrize("cell", ["1_0", "５", "4\u00a0", "0x10"])
def test_python_only_numbers_are_errors_in_every_format(tmp_path, file_format, cell):
  """Python's float reads "1_0" as 10 (a click); Arrow's rule refuses it, in every reader."""
  rows = _rows("i")
  rows[3][2] = cell
  column = FORMATS[file_format][2]
  with pytest.raises(PrepareError, match=rf"^{_where(tmp_path, file_format, 3)}: column "
                                         rf"'{column}' must be numeric, got {re.escape(repr(cell))}$"):
    _run_format(tmp_path, file_format, rows)
  assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("file_format", sorted(FORMATS))
def test_arrow_spellings_read_the_same_in_every_format(tmp_path, file_format):
  """"+5", "5e0" and ".4e1" are numbers by Arrow's rule: clicks 5, 5 and 4 (>= 4)."""
  rows = _rows("i")
  rows[2][2], rows[4][2] = "+5", ".4e1"  # were 2 and 1: two more clicks
  stats = _run_format(tmp_path, file_format, rows)
  ratings = np.array([5, 4, 5, 5, 4, 5, 4, 2, 5, 1], dtype=np.float64)
  assert stats["domains"]["A"]["positive_rate"] == pytest.approx(np.mean(ratings >= 4))


def test_a_time_with_an_underscore_is_an_error(tmp_path):
  rows = _rows("i")
  rows[1][3] = "1_1"
  with pytest.raises(PrepareError, match=r"a.csv:3: column 'timestamp' must be numeric, got '1_1'"):
    _run_format(tmp_path, "csv", rows)


# --- float32 range --------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["csv", "parquet", "douban"])
def test_a_rating_beyond_float32_is_an_error(tmp_path, file_format):
  rows = _rows("i")
  rows[6][2] = "1e39"
  with pytest.raises(PrepareError, match=rf"{_where(tmp_path, file_format, 6)}: column 'rating' "
                                         r"must be a finite number within float32 .*got '1e39'"):
    _run_format(tmp_path, file_format, rows)
  assert not os.path.exists(tmp_path / "out")


def test_a_mat_rating_beyond_float32_is_an_error(tmp_path):
  import scipy.io  # pylint: disable=g-import-not-at-top
  matrix = np.array([[u, 10 * c + k, c, 5, 0, 100 * c + 10 * u + k]
                     for c in (1, 2) for u in (1, 2) for k in range(5)], dtype=np.float64)
  matrix[7, 3] = 1e39
  path = str(tmp_path / "r.mat")
  scipy.io.savemat(path, {"rating": matrix})
  with pytest.raises(PrepareError, match=r"r.mat \(row 7\): column 'rating' must be a finite "
                                         r"number within float32"):
    prepare(PrepareConfig(format="mat", input=path, category_a="1", category_b="2",
                          output_dir=str(tmp_path / "out"), num_negatives=0, train_negatives=0))


def _features(tmp_path, *lines, name="items.csv"):
  path = tmp_path / name
  path.write_text("\n".join(("item_id,price",) + lines) + "\n", encoding="utf-8")
  return str(path)


def test_a_side_feature_beyond_float32_is_an_error_and_its_limit_is_not(tmp_path):
  """1e39 became inf in the float32 features, and training diverged at step 0."""
  a, b = _write(tmp_path, "csv", _rows("i")), _write(tmp_path, "csv", _rows("j"), "b.csv")
  bad = _features(tmp_path, "i0,1.5", "i1,1e39", "i2,-2")
  with pytest.raises(PrepareError, match=r"items.csv:3: column 'price' must be a finite number "
                                         r"within float32 .*got '1e39'"):
    _run(tmp_path, a, b, item_features_a=bad)
  assert not os.path.exists(tmp_path / "out")
  at_limit = _features(tmp_path, "i0,1.5", f"i1,{FLOAT32_MAX!r}", f"i2,{-FLOAT32_MAX!r}",
                       name="limit.csv")
  stats = _run(tmp_path, a, b, item_features_a=at_limit)
  assert stats["side_features"]["item"]["numeric_columns"] == ["price"]


# --- ids --------------------------------------------------------------------------------------


def test_a_repeated_side_feature_id_names_both_lines(tmp_path):
  a, b = _write(tmp_path, "csv", _rows("i")), _write(tmp_path, "csv", _rows("j"), "b.csv")
  table = _features(tmp_path, "i0,1", "i1,2", "i2,3", "i1,4")
  with pytest.raises(PrepareError, match=rf"^{tmp_path / 'items.csv'}:5: column 'item_id' "
                                         rf"repeats the id 'i1' of {tmp_path / 'items.csv'}:3"):
    _run(tmp_path, a, b, item_features_a=table)
  assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("file_format", sorted(FORMATS))
@pytest.mark.parametrize("field", [0, 1])
def test_padded_ids_are_errors_in_every_format(tmp_path, file_format, field):
  rows = _rows("i")
  rows[7][field] = rows[7][field] + " "
  with pytest.raises(PrepareError, match=rf"^{_where(tmp_path, file_format, 7)}: column '.*' id "
                                         rf"'{rows[7][field]}' has leading or trailing "
                                         r"whitespace .*--strip_ids"):
    _run_format(tmp_path, file_format, rows)
  assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("file_format", ["csv", "douban", "parquet"])
def test_strip_ids_makes_padded_ids_one_id(tmp_path, file_format):
  rows = _rows("i")
  rows[0][0], rows[6][1] = " u1", "\ti1 " if file_format != "douban" else "i1 "
  stats = _run_format(tmp_path, file_format, rows, strip_ids=True)
  assert stats["users"] == 2  # u1 and u2 in both domains; " u1" is u1
  assert stats["domains"]["A"]["items"] == 5  # i0..i4; "i1 " is i1
  assert stats["config"]["strip_ids"] is True


def test_padded_side_feature_ids_are_errors_or_stripped(tmp_path):
  a, b = _write(tmp_path, "csv", _rows("i")), _write(tmp_path, "csv", _rows("j"), "b.csv")
  table = _features(tmp_path, "i0,1", "i1 ,2", "i2,3")
  with pytest.raises(PrepareError, match=r"items.csv:3: column 'item_id' id 'i1 ' has leading "
                                         "or trailing whitespace"):
    _run(tmp_path, a, b, item_features_a=table)
  stats = _run(tmp_path, a, b, item_features_a=table, strip_ids=True)
  assert stats["side_features"]["item"]["coverage"]["items_a"]["ids_with_features"] == 3
  repeated = _features(tmp_path, "i0,1", "i1 ,2", "i1,3", name="repeated.csv")
  with pytest.raises(PrepareError, match=r"repeated.csv:4: column 'item_id' repeats the id "
                                         r"'i1' of .*repeated.csv:3"):
    _run(tmp_path, a, b, item_features_a=repeated, strip_ids=True, overwrite=True)


# --- empty splits -----------------------------------------------------------------------------


def _csv(tmp_path, name, rows):
  return _write(tmp_path, "csv", [list(map(str, r)) for r in rows], name)


@pytest.mark.parametrize("flags, rows_a, rows_b, message", [
    # One interaction per user: every record is trained on, none validates.
    ({}, [(f"u{u}", f"i{u}", 5, u) for u in range(4)],
     [(f"v{u}", f"j{u}", 5, u) for u in range(4)],
     "the validation split is empty: every user has fewer than 3 interactions over both "
     "domains; the temporal split needs at least 3 per user to fill train/validation/test"),
    # Two per user (A then B, or B then A): the later one is tested, none validates.
    ({}, [("u1", "i1", 5, 1), ("u2", "i2", 5, 4)], [("u1", "j1", 5, 2), ("u2", "j2", 5, 3)],
     "the validation split is empty: every user has fewer than 3 interactions"),
    # Two users cannot fill three folds.
    ({"split": "kfold", "folds": 3}, [("u1", "i1", 5, 1), ("u2", "i2", 5, 2)],
     [("u1", "j1", 5, 3), ("u2", "j2", 5, 4)],
     "the fold-[0-2] split is empty: no user was dealt into it \\(2 user\\(s\\) over --folds=3\\)"),
    # Six records at times 1, 1, 1, 1, 2, 2: both cuts fall on time 2.
    ({"split": "global_time"}, [("u1", "i1", 5, 1), ("u2", "i2", 5, 1), ("u1", "i3", 5, 2)],
     [("u1", "j1", 5, 1), ("u2", "j2", 5, 1), ("u2", "j3", 5, 2)],
     "the validation split is empty: the validation and test cuts are the same time \\(2\\)"),
])
def test_an_empty_split_is_an_error_before_writing(tmp_path, flags, rows_a, rows_b, message):
  a, b = _csv(tmp_path, "a.csv", rows_a), _csv(tmp_path, "b.csv", rows_b)
  with pytest.raises(PrepareError, match=f"^{message}"):
    _run(tmp_path, a, b, **flags)
  assert not os.path.exists(tmp_path / "out")


def test_a_split_empty_in_one_domain_is_a_warning(tmp_path):
  """Each user: B, A (train), A (validation), B (test)."""
  rows_a = [(f"u{u}", f"i{k}", 5, 10 * u + k) for u in range(3) for k in (1, 2)]
  rows_b = [(f"u{u}", f"j{k}", 5, 10 * u + k) for u in range(3) for k in (0, 3)]
  stats = _run(tmp_path, _csv(tmp_path, "a.csv", rows_a), _csv(tmp_path, "b.csv", rows_b))
  assert stats["splits"]["validation"]["domain_b"] == 0
  assert stats["splits"]["test"]["domain_a"] == 0
  assert ("the validation split has no example of domain B (B); every example in it is of "
          "domain A") in stats["warnings"]
  assert ("the test split has no example of domain A (A); every example in it is of "
          "domain B") in stats["warnings"]
  with open(tmp_path / "out" / "stats.json", encoding="utf-8") as f:
    assert json.load(f)["warnings"] == stats["warnings"]
