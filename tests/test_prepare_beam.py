"""The Beam driver against the local one: the same records, stats and vocabularies.

Each case writes inputs with invalid rows, duplicates and shuffled file order,
prepares them with both drivers, and compares every serialized record (as a
multiset per split), ``stats.json`` (but the run time), ``schema.json`` and
the vocabulary files. Small ``block_bytes`` make Beam read every text file in
many blocks.
"""
import csv
import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dasl_tf import synthetic
from dasl_tf.prepare import PrepareConfig, PrepareError, prepare
from dasl_tf.prepare import beam_pipeline
from dasl_tf.prepare import beam_runner
from dasl_tf.prepare import readers

pytest.importorskip("apache_beam", reason="the Beam driver needs apache-beam (extra [beam])")

TINY = synthetic.SyntheticConfig(num_users=40, num_items_a=150, num_items_b=150, seed=11)


def _read_rows(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.reader(f))


def _write_rows(path, rows, delimiter=","):
  with open(path, "w", newline="", encoding="utf-8") as f:
    csv.writer(f, delimiter=delimiter, lineterminator="\n").writerows(rows)
  return str(path)


def _messy(rows, seed):
  """Shuffled records with duplicates (earlier and later) and invalid rows added."""
  header, body = rows[0], rows[1:]
  rng = np.random.default_rng(seed)
  body = [body[k] for k in rng.permutation(len(body))]
  duplicates = [list(body[k]) for k in rng.choice(len(body), 8, replace=False)]
  for k, row in enumerate(duplicates):
    row[3] = str(int(row[3]) + (-1000 if k % 2 else 1000))  # earlier and later copies
    row[2] = "5" if row[2] != "5" else "1"
  invalid = [["", "a1", "4", "1"], ["u000001", "a00001", "", "2"],
             ["u000001", "a00002", "0", "3"], ["u000001", "a00003", "4", ""]]
  return [header] + body[:20] + duplicates + invalid + body[20:]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  root = tmp_path_factory.mktemp("beam_raw")
  paths = synthetic.generate(str(root), TINY)
  for key, seed in (("input_a", 1), ("input_b", 2)):
    paths[key] = _write_rows(root / f"messy_{key}.csv", _messy(_read_rows(paths[key]), seed))
  return paths


def _records(data_dir, split):
  """Every serialized record of a split, sorted (a multiset of bytes)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(data_dir, split, "*")))
  compression = "GZIP" if files[0].endswith(".gz") else ""
  return sorted(bytes(r.numpy()) for r in tf.data.TFRecordDataset(files, compression))


def _assert_same_output(local_dir, beam_dir, split_names):
  stats_local = json.load(open(os.path.join(local_dir, "stats.json")))
  stats_beam = json.load(open(os.path.join(beam_dir, "stats.json")))
  for split in split_names:
    records = _records(local_dir, split)
    assert len(records) == stats_local["splits"][split]["examples"] > 0, split
    assert records == _records(beam_dir, split), split
  for stats in (stats_local, stats_beam):
    del stats["seconds"]
    for key in ("runner", "beam_options", "block_bytes", "output_dir"):
      del stats["config"][key]
  assert stats_local == stats_beam
  for name in ("schema.json", "schema.pbtxt"):
    assert open(os.path.join(local_dir, name)).read() == open(os.path.join(beam_dir, name)).read()
  vocab_files = sorted(os.listdir(os.path.join(local_dir, "vocab")))
  assert vocab_files == sorted(os.listdir(os.path.join(beam_dir, "vocab")))
  for name in vocab_files:
    assert (open(os.path.join(local_dir, "vocab", name)).read()
            == open(os.path.join(beam_dir, "vocab", name)).read()), name
  assert not os.path.exists(os.path.join(beam_dir, beam_pipeline.SUMMARY_FILE))


def _both(tmp_path, beam_options=(), **flags):
  base = {"num_negatives": 10, "train_negatives": 3, "num_shards": 2, **flags}
  local = PrepareConfig(output_dir=str(tmp_path / "local"), **base)
  beam = PrepareConfig(output_dir=str(tmp_path / "beam"), runner="beam", block_bytes=700,
                       beam_options=tuple(beam_options), **base)
  return local, beam


def test_csv_with_side_features_in_worker_processes(raw, tmp_path, monkeypatch):
  """Two CSV inputs, side features, popularity negatives; workers are other processes.

  The launcher's readers and per-user function are replaced by ones that
  fail: the run passes only if no block is read and no example is built in
  the launching process.
  """
  local, beam = _both(tmp_path, ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
                      input_a=raw["input_a"], input_b=raw["input_b"],
                      user_features=raw["user_features"], item_features_a=raw["item_features_a"],
                      item_features_b=raw["item_features_b"], negative_sampling="popularity")
  prepare(local)

  def launcher_must_not(*args, **kwargs):
    raise AssertionError("a data pass ran in the launching process")

  monkeypatch.setattr(readers, "read_block", launcher_must_not)
  monkeypatch.setattr(beam_pipeline, "build_user_examples", launcher_must_not)
  prepare(beam)
  _assert_same_output(local.output_dir, beam.output_dir, local.split_names)
  assert json.load(open(os.path.join(beam.output_dir, "stats.json")))["domains"]["A"][
      "dropped"] == {"missing_id": 1, "missing_rating": 1, "invalid_rating": 1,
                     "missing_timestamp": 1, "duplicate": 8}


def test_douban_without_times_kfold_and_gzip(raw, tmp_path):
  """File order as time (pseudo-times), min item count, k folds, compressed shards."""
  inputs = {}
  for key in ("input_a", "input_b"):
    rows = _read_rows(raw[key])[1:]
    inputs[key] = _write_rows(tmp_path / f"{key}.dat",
                              [row[:3] for row in rows if row[0] and row[2]], "\t")
  local, beam = _both(tmp_path, format="douban", split="kfold", folds=3, min_item_count=2,
                      compress=True, **inputs)
  prepare(local)
  prepare(beam)
  _assert_same_output(local.output_dir, beam.output_dir, local.split_names)


def test_one_parquet_input_split_by_category(raw, tmp_path):
  """A single Parquet input with a category column, read by row groups."""
  columns = {"user_id": [], "item_id": [], "rating": [], "timestamp": [], "category": []}
  for key, category in (("input_a", "dvd"), ("input_b", "book")):
    for row in _read_rows(raw[key])[1:]:
      for name, value in zip(("user_id", "item_id", "rating", "timestamp"), row):
        columns[name].append(value)
      columns["category"].append(category)
  order = np.random.default_rng(3).permutation(len(columns["user_id"]))
  table = pa.table({name: [values[k] for k in order] for name, values in columns.items()})
  path = str(tmp_path / "both.parquet")
  pq.write_table(table, path, row_group_size=97)
  assert pq.ParquetFile(path).num_row_groups > 5
  local, beam = _both(tmp_path, format="parquet", input=path, category_a="dvd",
                      category_b="book")
  prepare(local)
  prepare(beam)
  _assert_same_output(local.output_dir, beam.output_dir, local.split_names)


def test_global_time_split_with_cold_start_users(raw, tmp_path):
  """One cut in time over both domains (a side input of Beam) and held-out domains."""
  local, beam = _both(tmp_path, input_a=raw["input_a"], input_b=raw["input_b"],
                      split="global_time", cold_start_users=0.4, validation_fraction=0.2)
  stats = prepare(local)
  prepare(beam)
  _assert_same_output(local.output_dir, beam.output_dir, local.split_names)
  assert stats["test_cut"] > stats["validation_cut"] > 0
  assert stats["cold_start_users_a"] > 0 and stats["cold_start_users_b"] > 0


def _lines(file_format, count):
  """A file's lines in ``file_format``: records of varied length, with a header where it has one."""
  records = [(f"u{k % 7}", f"{'i' * (1 + k % 13)}{k}", str(1 + k % 5), str(1000 + k))
             for k in range(count)]
  if file_format == "csv":
    return ["user_id,item_id,rating,timestamp"] + [",".join(r) for r in records]
  if file_format == "douban":
    return ["\t".join(r) for r in records]
  return [json.dumps({"reviewerID": u, "asin": i, "overall": float(r), "unixReviewTime": int(t)})
          for u, i, r, t in records]


@pytest.mark.parametrize("file_format", ["csv", "douban", "amazon_json"])
@pytest.mark.parametrize("block_bytes", [1, 7, 31, 64, 10**6])
def test_text_blocks_hold_every_line_once(tmp_path, file_format, block_bytes):
  """Blocks of any size, boundaries on or inside lines, give the file's rows in order."""
  path = tmp_path / "log.txt"
  path.write_text("\n".join(_lines(file_format, 60)) + "\n")
  whole = readers.read_table(str(path), file_format)
  blocks = readers.blocks_of(str(path), 0, file_format, block_bytes)
  assert [b.start for b in blocks] == list(range(0, path.stat().st_size, block_bytes))
  parts = [readers.read_block(block, file_format) for block in blocks]
  assert len(whole.columns) == 4
  for name in whole.columns:
    column = np.concatenate([p.columns[name] for p in parts]).tolist()
    assert column == whole.columns[name].tolist() and len(column) == 60


def test_bad_row_in_a_block_names_file_and_bytes_and_writes_nothing(raw, tmp_path):
  rows = _read_rows(raw["input_a"])
  rows[30][2] = "four"
  bad = _write_rows(tmp_path / "bad.csv", rows)
  _, beam = _both(tmp_path, input_a=bad, input_b=raw["input_b"])
  with pytest.raises(PrepareError, match=r"bad\.csv \[bytes \d+-\d+\] \(row \d+\): column "
                                         r"'rating' must be numeric, got 'four'"):
    prepare(beam)
  assert not os.path.exists(beam.output_dir)
  assert os.listdir(tmp_path) == ["bad.csv"]


def test_bad_input_raises_the_local_message_offline_without_a_traceback(
    raw, tmp_path, monkeypatch, capfd, caplog):
  """A CSV without its rating column: Beam raises the local driver's error, quietly, offline.

  Every socket connection and host lookup is refused and recorded: the
  default runner must not reach for the network (Beam's Prism runner
  downloads its binary at run time).
  """
  import socket  # pylint: disable=g-import-not-at-top
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  from apache_beam.runners.portability.fn_api_runner import fn_runner  # pylint: disable=g-import-not-at-top

  rows = _read_rows(raw["input_a"])
  assert rows[0][2] == "rating"
  bad = _write_rows(tmp_path / "bad.csv", [row[:2] + row[3:] for row in rows])
  local, beam = _both(tmp_path, input_a=bad, input_b=raw["input_b"])
  with pytest.raises(PrepareError) as local_error:
    prepare(local)
  assert str(local_error.value) == (f"{bad}: no column 'rating' or 'label' "
                                    "(columns: user_id, item_id, timestamp)")
  reached = []

  def offline(*args, **kwargs):
    reached.append(args)
    raise OSError("this test is offline")

  monkeypatch.setattr(socket.socket, "connect", offline)
  monkeypatch.setattr(socket, "getaddrinfo", offline)
  capfd.readouterr()
  with caplog.at_level("INFO"):
    with pytest.raises(PrepareError) as beam_error:
      prepare(beam)
  assert str(beam_error.value) == str(local_error.value)
  assert not reached
  logs = caplog.text + "".join(capfd.readouterr())
  assert "Traceback" not in logs and "PrismRunner" not in logs
  options = pipeline_options.PipelineOptions(["--runner=DirectRunner"])
  assert isinstance(beam_runner.pipeline_runner(options), fn_runner.FnApiRunner)
  assert beam_runner.pipeline_runner(
      pipeline_options.PipelineOptions(["--runner=DataflowRunner"])) is None


def test_three_domains_with_cold_start_users(raw, tmp_path):
  """K = 3 inputs (``--inputs``): every history, held-out domains and counts as the local driver."""
  rows = _read_rows(raw["input_b"])
  third = [rows[0]] + [[user, "c" + item, rating, time] for user, item, rating, time in rows[1:]
                       if time.isdigit() and int(time) % 3]
  inputs = (raw["input_a"], raw["input_b"], _write_rows(tmp_path / "c.csv", third))
  local, beam = _both(tmp_path, inputs=inputs, cold_start_users=0.4)
  stats = prepare(local)
  prepare(beam)
  _assert_same_output(local.output_dir, beam.output_dir, local.split_names)
  assert stats["splits"]["train"]["domain_c"] > 0 and stats["cold_start_users_c"] > 0
