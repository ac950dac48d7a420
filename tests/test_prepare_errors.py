"""Bad input to dasl-prepare: clear errors naming the file, line or field; exit code != 0."""
import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from dasl_tf.prepare import PrepareConfig, PrepareError, prepare

HEADER = "user_id,item_id,rating,timestamp"


def _csv(path, *rows, header=HEADER):
  path.write_text("\n".join([header, *rows]) + "\n")
  return str(path)


def _timeline(prefix, time_of=str):
  """Rows of users u1, u2 with 5 items each (ratings 5, 4, 2, 5, 1), wide enough for 3 splits."""
  return [f"u{u},{prefix}{k},{(5, 4, 2, 5, 1)[k]},{time_of(10 * u + k)}"
          for u in (1, 2) for k in range(5)]


@pytest.fixture
def good(tmp_path):
  return _csv(tmp_path / "a.csv", *_timeline("i")), _csv(tmp_path / "b.csv", *_timeline("j"))


def _run(tmp_path, a, b, **flags):
  flags.setdefault("num_negatives", 0)
  flags.setdefault("train_negatives", 0)
  return prepare(PrepareConfig(input_a=a, input_b=b, output_dir=str(tmp_path / "out"), **flags))


def test_missing_file(tmp_path, good):
  with pytest.raises(PrepareError, match="nope.csv.*matches no file"):
    _run(tmp_path, str(tmp_path / "nope.csv"), good[1])


def test_missing_column(tmp_path, good):
  bad = _csv(tmp_path / "bad.csv", "u1,i1,5", header="user_id,item,rating")
  with pytest.raises(PrepareError, match=r"bad.csv: no column 'item_id' \(columns: user_id, item"):
    _run(tmp_path, bad, good[1])
  no_rating = _csv(tmp_path / "r.csv", "u1,i1,5", header="user_id,item_id,stars")
  with pytest.raises(PrepareError, match="r.csv: no column 'rating' or 'label'"):
    _run(tmp_path, no_rating, good[1])


@pytest.mark.parametrize("row,field", [("u1,i9,five,4", "rating"), ("u1,i9,5,noon", "timestamp")])
def test_non_numeric_value_names_line_and_column(tmp_path, good, row, field):
  bad = _csv(tmp_path / "bad.csv", "u1,i1,5,1", "u2,i2,4,2", row)
  with pytest.raises(PrepareError, match=rf"bad.csv:4: column '{field}' must be numeric"):
    _run(tmp_path, bad, good[1])


def test_invalid_and_duplicate_rows_are_dropped_and_counted(tmp_path, good):
  a = _csv(tmp_path / "a.csv", "u1,i1,5,1", "u1,i1,3,9", "u2,i2,0,2", "u2,,4,3", "u2,i3,,4",
           "u3,i4,4,", "u3,i5,4,6")
  stats = _run(tmp_path, a, good[1])
  assert stats["domains"]["A"]["dropped"] == {
      "duplicate": 1, "invalid_rating": 1, "missing_id": 1, "missing_rating": 1,
      "missing_timestamp": 1}
  assert stats["domains"]["A"]["records"] == 2
  assert stats["domains"]["A"]["positive_rate"] == 1.0  # the earliest (5 at t=1) of u1,i1 kept


def test_empty_domain(tmp_path, good):
  empty = _csv(tmp_path / "empty.csv", "u1,i1,0,1")
  with pytest.raises(PrepareError, match=r"domain B \(.*empty.csv\) has no valid record"):
    _run(tmp_path, good[0], empty)
  header_only = _csv(tmp_path / "header.csv")
  with pytest.raises(PrepareError, match="domain B"):
    _run(tmp_path, good[0], header_only)


def test_no_overlap_users_is_a_warning(tmp_path, good):
  b = _csv(tmp_path / "b.csv", "v1,j1,5,1", "v2,j2,1,2")
  stats = _run(tmp_path, good[0], b)
  assert stats["overlap_users"] == 0
  assert any("no user appears in both domains" in w for w in stats["warnings"])


def test_corrupt_gzip(tmp_path, good):
  data = gzip.compress((HEADER + "\n" + "u1,i1,5,1\n" * 2000).encode())
  path = tmp_path / "a.csv.gz"
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(PrepareError, match="a.csv.gz"):
    _run(tmp_path, str(path), good[1])


def test_bad_flags():
  with pytest.raises(PrepareError, match="--format='xml'"):
    PrepareConfig(format="xml", input_a="a", input_b="b", output_dir="o")
  with pytest.raises(PrepareError, match="--category_a"):
    PrepareConfig(input="x.mat", format="mat", output_dir="o")
  with pytest.raises(PrepareError, match="--validation_fraction"):
    PrepareConfig(input_a="a", input_b="b", output_dir="o", validation_fraction=1.0)
  with pytest.raises(PrepareError, match="--test_fraction"):
    PrepareConfig(input_a="a", input_b="b", output_dir="o", validation_fraction=0.5,
                  test_fraction=0.5)
  for bad in (float("nan"), float("inf")):
    with pytest.raises(PrepareError, match="--label_threshold"):
      PrepareConfig(input_a="a", input_b="b", output_dir="o", label_threshold=bad)
  with pytest.raises(PrepareError, match="--negative_sampling"):
    PrepareConfig(input_a="a", input_b="b", output_dir="o", negative_sampling="zipf")


def test_cli_reports_error_and_exit_code(tmp_path, good):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  command = [sys.executable, "-m", "dasl_tf.pipelines.prepare", "--input_a", good[0],
             "--input_b", str(tmp_path / "missing.csv"), "--output_dir", str(tmp_path / "o")]
  proc = subprocess.run(command, capture_output=True, text=True, env=env,
                        cwd=os.path.dirname(os.path.dirname(__file__)))
  assert proc.returncode != 0
  assert "dasl-prepare: error: input not found" in proc.stderr and "missing.csv" in proc.stderr
  assert not os.path.exists(tmp_path / "o")


# --- numbers that are not data -----------------------------------------------------------


@pytest.mark.parametrize("cell", ["inf", "nan", "1e400", "-inf"])
@pytest.mark.parametrize("field", ["rating", "timestamp"])
def test_non_finite_numbers_are_errors_naming_the_line(tmp_path, good, cell, field):
  row = f"u3,i9,{cell},4" if field == "rating" else f"u3,i9,5,{cell}"
  bad = _csv(tmp_path / "bad.csv", "u1,i1,5,1", row)
  with pytest.raises(PrepareError, match=rf"bad.csv:3: column '{field}' must be a finite "
                                         rf"number, got '{cell}'"):
    _run(tmp_path, bad, good[1])
  assert not os.path.exists(tmp_path / "out")


def test_spaces_and_tabs_around_numbers_are_read_as_arrow_reads_them(tmp_path, good):
  """Arrow's CSV conversion ignores spaces and tabs around a number (" 4", "5\t"); values kept."""
  rows = _timeline("i")
  rows[0], rows[1], rows[2] = "u1,i0, 4,10", "u1,i1,5\t,11", "u1,i2,2 ,12"
  stats = _run(tmp_path, _csv(tmp_path / "a.csv", *rows), good[1])
  assert stats["domains"]["A"]["records"] == 10
  # 4, 5, 2 as written, then 5, 1 and u2's 5, 4, 2, 5, 1: six clicks (>= 4) of ten.
  assert stats["domains"]["A"]["positive_rate"] == pytest.approx(0.6)
  bad = _csv(tmp_path / "bad.csv", "u1,i1, 4,1", "u2,i2,4 stars,2")
  with pytest.raises(PrepareError, match="bad.csv:3: column 'rating' must be numeric, "
                                         "got '4 stars'"):
    _run(tmp_path, bad, good[1])


@pytest.mark.parametrize("time_cell, message", [
    ("-5", "bad.csv:3: column 'timestamp' holds a negative time -5.0"),
    ("4102444800", "bad.csv:3: column 'timestamp' holds a time in the future: .*2100-01-01"),
    ("4102444800000", "bad.csv:3: .*in the future.*2100-01-01 as milliseconds"),
])
def test_negative_and_future_times_are_errors(tmp_path, good, time_cell, message):
  first = "1600000000000" if len(time_cell) > 11 else "1600000000"
  bad = _csv(tmp_path / "bad.csv", f"u1,i1,5,{first}", f"u2,i2,4,{time_cell}")
  with pytest.raises(PrepareError, match=message):
    _run(tmp_path, bad, good[1])


def test_milliseconds_against_seconds_are_an_error_naming_both_inputs(tmp_path):
  """Today's failure: every record of one domain sorted after the other's, histories empty."""
  a = _csv(tmp_path / "a.csv", *_timeline("i", lambda t: 1600000000000 + 1000 * t))
  b = _csv(tmp_path / "b.csv", *_timeline("j", lambda t: 1600000000 + t))
  with pytest.raises(PrepareError, match=r"different units \(.*a.csv: milliseconds .*; "
                                         r".*b.csv: seconds"):
    _run(tmp_path, a, b)
  mixed = _csv(tmp_path / "mixed.csv", "u1,i1,5,1600000000000", "u2,i2,4,1600000100")
  with pytest.raises(PrepareError, match="mixed.csv: column 'timestamp' mixes milliseconds"):
    _run(tmp_path, mixed, b)
  # Both in milliseconds is consistent, and prepares.
  b_ms = _csv(tmp_path / "b_ms.csv", *_timeline("j", lambda t: 1600000000000 + 1000 * t))
  assert _run(tmp_path, a, b_ms)["domains"]["B"]["records"] == 10


@pytest.mark.parametrize("raw_id", ["i\n2", "i\u20282", "i\r2", "i\x852"])
def test_ids_holding_line_breaks_are_errors(tmp_path, good, raw_id):
  path = tmp_path / "bad.csv"
  path.write_text(f'{HEADER}\nu1,i1,5,1\nu2,"{raw_id}",4,2\n', encoding="utf-8")
  with pytest.raises(PrepareError, match=r"bad.csv:3: 'item_id' id .* holds a line break"):
    _run(tmp_path, str(path), good[1])


# --- .mat and Parquet ----------------------------------------------------------------------


def _mat(tmp_path, matrix, name="ratings.mat"):
  import scipy.io  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / name)
  scipy.io.savemat(path, {"rating": np.asarray(matrix, dtype=np.float64)})
  return path


def _run_mat(tmp_path, path):
  return prepare(PrepareConfig(format="mat", input=path, category_a="1", category_b="2",
                               output_dir=str(tmp_path / "out"), num_negatives=0,
                               train_negatives=0))


# Users 1 and 2, items 10.. of category 1 and 20.. of category 2, five each.
MAT_ROWS = [[u, 10 * c + k, c, 5, 0, 100 * c + 10 * u + k]
            for c in (1, 2) for u in (1, 2) for k in range(5)]


@pytest.mark.parametrize("column, value", [(0, np.nan), (1, 10.5), (2, np.inf)])
def test_mat_ids_must_be_whole_numbers(tmp_path, column, value):
  rows = [list(r) for r in MAT_ROWS]
  rows[1][column] = value
  name = ("user", "item", "category")[column]
  with pytest.raises(PrepareError, match=rf"ratings.mat \(row 1\): column '{name}' must hold "
                                         "whole-number ids"):
    _run_mat(tmp_path, _mat(tmp_path, rows))


def test_mat_fractional_ratings_are_kept_not_truncated(tmp_path):
  """A 3.5 must not become 3: with the threshold 3.5 it is a click."""
  rows = [list(r) for r in MAT_ROWS]
  rows[13][3] = 3.5
  stats = prepare(PrepareConfig(format="mat", input=_mat(tmp_path, rows), category_a="1",
                                category_b="2", output_dir=str(tmp_path / "out"),
                                num_negatives=0, train_negatives=0, label_threshold=3.5))
  assert stats["domains"]["B"]["positive_rate"] == 1.0
  rows[13][3] = 3.4
  stats = prepare(PrepareConfig(format="mat", input=_mat(tmp_path, rows, "b.mat"),
                                category_a="1", category_b="2",
                                output_dir=str(tmp_path / "out2"), num_negatives=0,
                                train_negatives=0, label_threshold=3.5))
  assert stats["domains"]["B"]["positive_rate"] == pytest.approx(0.9)
  rows[13][3] = np.nan
  with pytest.raises(PrepareError, match=r"\(row 13\): column 'rating' must be a finite number"):
    _run_mat(tmp_path, _mat(tmp_path, rows, "nan.mat"))


def test_mat_v73_is_named_as_such(tmp_path):
  path = tmp_path / "v73.mat"
  # The 128-byte header MATLAB writes before an HDF5 v7.3 file.
  header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
  path.write_bytes(header.ljust(116) + b"\x00" * 8 + b"\x00\x02IM" + b"\x89HDF\r\n\x1a\n" * 64)
  with pytest.raises(PrepareError, match="v73.mat: a MATLAB v7.3 \\(HDF5\\) .mat file"):
    _run_mat(tmp_path, str(path))


def test_list_typed_parquet_columns_are_named_with_their_type(tmp_path, good):
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  table = pa.table({"user_id": ["u1", "u2"], "item_id": [["i1"], ["i2", "i3"]],
                    "rating": [5, 4], "timestamp": [1, 2]})
  path = str(tmp_path / "a.parquet")
  pq.write_table(table, path)
  b = str(tmp_path / "b.parquet")
  pq.write_table(pa.table({"user_id": ["u1"], "item_id": ["j1"], "rating": [5],
                           "timestamp": [1]}), b)
  with pytest.raises(PrepareError, match=r"a.parquet: column 'item_id' has the nested type "
                                         r"list<.*string.*>"):
    _run(tmp_path, path, b, format="parquet")


# --- output and memory ---------------------------------------------------------------------------


def test_an_unwritable_output_dir_is_an_error_and_nothing_is_left(tmp_path, good):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(PrepareError, match="cannot write the prepared dataset"):
    prepare(PrepareConfig(input_a=good[0], input_b=good[1], output_dir=str(blocker / "out"),
                          num_negatives=0, train_negatives=0))
  assert blocker.read_text() == "not a directory"


def test_a_history_length_that_cannot_fit_in_memory_is_refused_before_allocating(tmp_path, good):
  with pytest.raises(PrepareError, match=r"--history_length=1000000000 .* needs about "
                                         r"[0-9.]+ GiB .* more than half of the"):
    _run(tmp_path, *good, history_length=10**9)
  assert not os.path.exists(tmp_path / "out")
