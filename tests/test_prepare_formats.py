"""Every input format reads to the same log; flags choose columns and categories."""
import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.io

from dasl_tf.prepare import PrepareConfig
from dasl_tf.prepare import readers

# (user, item, rating, timestamp) of domains A and B; ids are strings as in raw files.
ROWS_A = [("u1", "10", 5, 100), ("u2", "11", 3, 101), ("u1", "12", 4, 102), ("u3", "10", 1, 103)]
ROWS_B = [("u1", "20", 2, 200), ("u3", "21", 5, 201), ("u4", "20", 4, 202)]


def _write(path, lines, compress=False):
  text = "".join(line + "\n" for line in lines)
  if compress:
    with gzip.open(path, "wt", encoding="utf-8") as f:
      f.write(text)
  else:
    path.write_text(text, encoding="utf-8")
  return str(path)


def _assert_log(log, rows, file_order=False):
  assert log.user.tolist() == [r[0] for r in rows]
  assert log.item.tolist() == [r[1] for r in rows]
  np.testing.assert_array_equal(log.rating, [r[2] for r in rows])
  assert log.file_order == file_order
  if not file_order:
    np.testing.assert_array_equal(log.timestamp, [r[3] for r in rows])


def _read(tmp_path, **flags):
  return readers.read_domains(PrepareConfig(output_dir=str(tmp_path / "out"), **flags))


def test_csv_with_header_and_gzip(tmp_path):
  header = "user_id,item_id,rating,timestamp"
  a = _write(tmp_path / "a.csv", [header] + [",".join(map(str, r)) for r in ROWS_A])
  b = _write(tmp_path / "b.csv.gz", [header] + [",".join(map(str, r)) for r in ROWS_B],
             compress=True)
  log_a, log_b = _read(tmp_path, format="csv", input_a=a, input_b=b)
  _assert_log(log_a, ROWS_A)
  _assert_log(log_b, ROWS_B)


def test_tsv_with_named_columns_and_leading_zero_ids(tmp_path):
  rows = [("007", "0010", 5, 1)]
  lines = ["ts\tscore\tiid\tuid"] + [f"{r[3]}\t{r[2]}\t{r[1]}\t{r[0]}" for r in rows]
  path = _write(tmp_path / "a.tsv", lines)
  log_a, _ = _read(tmp_path, format="tsv", input_a=path, input_b=path, user_column="uid",
                   item_column="iid", rating_column="score", timestamp_column="ts")
  _assert_log(log_a, rows)


def test_csv_label_column_replaces_rating(tmp_path):
  path = _write(tmp_path / "a.csv", ["user_id,item_id,label,timestamp", "u1,i1,1,5", "u1,i2,0,6"])
  log_a, _ = _read(tmp_path, format="csv", input_a=path, input_b=path)
  assert log_a.is_label and log_a.rating.tolist() == [1.0, 0.0]


def test_parquet(tmp_path):
  for name, rows in (("a", ROWS_A), ("b", ROWS_B)):
    table = pa.table({"user_id": [r[0] for r in rows], "item_id": [int(r[1]) for r in rows],
                      "rating": [float(r[2]) for r in rows], "timestamp": [r[3] for r in rows]})
    pq.write_table(table, str(tmp_path / f"{name}.parquet"))
  log_a, log_b = _read(tmp_path, format="parquet", input_a=str(tmp_path / "a.parquet"),
                       input_b=str(tmp_path / "b.parquet"))
  _assert_log(log_a, ROWS_A)
  _assert_log(log_b, ROWS_B)


def test_glob_reads_files_in_sorted_order(tmp_path):
  header = "user_id,item_id,rating,timestamp"
  _write(tmp_path / "a-2.csv", [header] + [",".join(map(str, r)) for r in ROWS_A[2:]])
  _write(tmp_path / "a-1.csv", [header] + [",".join(map(str, r)) for r in ROWS_A[:2]])
  b = _write(tmp_path / "b.csv", [header] + [",".join(map(str, r)) for r in ROWS_B])
  log_a, _ = _read(tmp_path, format="csv", input_a=str(tmp_path / "a-*.csv"), input_b=b)
  _assert_log(log_a, ROWS_A)


def test_amazon_ratings_csv_has_item_first_and_no_header(tmp_path):
  a = _write(tmp_path / "a.csv", [f"{r[1]},{r[0]},{r[2]}.0,{r[3]}" for r in ROWS_A])
  b = _write(tmp_path / "b.csv", [f"{r[1]},{r[0]},{r[2]}.0,{r[3]}" for r in ROWS_B])
  log_a, log_b = _read(tmp_path, format="amazon_csv", input_a=a, input_b=b)
  _assert_log(log_a, ROWS_A)
  _assert_log(log_b, ROWS_B)


def test_amazon_review_json_lines_gz(tmp_path):
  def lines(rows):
    return [json.dumps({"reviewerID": r[0], "asin": r[1], "overall": float(r[2]),
                        "unixReviewTime": r[3], "reviewText": "ok"}) for r in rows]
  a = _write(tmp_path / "a.json.gz", lines(ROWS_A), compress=True)
  b = _write(tmp_path / "b.json", lines(ROWS_B))
  log_a, log_b = _read(tmp_path, format="amazon_json", input_a=a, input_b=b)
  _assert_log(log_a, ROWS_A)
  _assert_log(log_b, ROWS_B)


def test_douban_ratings_dat_without_time_uses_file_order(tmp_path):
  a = _write(tmp_path / "book.dat", [f"{r[0]}\t{r[1]}\t{r[2]}" for r in ROWS_A])
  b = _write(tmp_path / "music.dat", [f"{r[0]}\t{r[1]}\t{r[2]}" for r in ROWS_B])
  log_a, log_b = _read(tmp_path, format="douban", input_a=a, input_b=b)
  _assert_log(log_a, ROWS_A, file_order=True)
  _assert_log(log_b, ROWS_B, file_order=True)
  np.testing.assert_array_equal(log_a.timestamp, np.arange(len(ROWS_A)))


def test_mat_file_split_by_category(tmp_path):
  matrix = np.array([[int(r[0][1:]), int(r[1]), cat, r[2], 0, r[3]]
                     for rows, cat in ((ROWS_A, 1), (ROWS_B, 2)) for r in rows]
                    + [[9, 99, 3, 5, 0, 300]], dtype=np.int32)
  path = str(tmp_path / "rating_with_timestamp.mat")
  scipy.io.savemat(path, {"rating": matrix})
  log_a, log_b = _read(tmp_path, format="mat", input=path, category_a="1", category_b="2")
  strip = lambda rows: [(r[0][1:],) + r[1:] for r in rows]  # noqa: E731
  _assert_log(log_a, strip(ROWS_A))
  _assert_log(log_b, strip(ROWS_B))


def test_single_csv_with_category_column(tmp_path):
  lines = ["user_id,item_id,rating,timestamp,category"]
  lines += [",".join(map(str, r)) + ",books" for r in ROWS_A]
  lines += [",".join(map(str, r)) + ",music" for r in ROWS_B]
  path = _write(tmp_path / "all.csv", lines)
  log_a, log_b = _read(tmp_path, format="csv", input=path, category_a="books",
                       category_b="music")
  _assert_log(log_a, ROWS_A)
  _assert_log(log_b, ROWS_B)
  with pytest.raises(readers.PrepareError, match="no rows of category 'movies'.*books"):
    _read(tmp_path, format="csv", input=path, category_a="books", category_b="movies")
