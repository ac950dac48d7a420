"""Bad input to dasl-prepare: clear errors naming the file, line or field; exit code != 0."""
import gzip
import os
import subprocess
import sys

import pytest

from dasl_tf.prepare import PrepareConfig, PrepareError, prepare

HEADER = "user_id,item_id,rating,timestamp"


def _csv(path, *rows, header=HEADER):
  path.write_text("\n".join([header, *rows]) + "\n")
  return str(path)


@pytest.fixture
def good(tmp_path):
  a = _csv(tmp_path / "a.csv", "u1,i1,5,1", "u2,i2,4,2", "u1,i3,2,3")
  b = _csv(tmp_path / "b.csv", "u1,j1,5,1", "u2,j2,1,2")
  return a, b


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
