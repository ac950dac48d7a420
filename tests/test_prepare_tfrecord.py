"""dasl-prepare's TFRecord writer: TensorFlow's bytes and readers, without TensorFlow."""
import gzip

import numpy as np
import pytest
import tensorflow as tf

from dasl_tf.prepare import tfrecord
from dasl_tf.prepare import writer as writer_lib


def _records():
  """An empty record, short ones, a real tf.Example and a ~100 kB record."""
  rng = np.random.default_rng(3)
  example = tf.train.Example(features=tf.train.Features(feature={
      "x": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2, 3]))}))
  return [b"", b"a", bytes(range(256)), example.SerializeToString(), b"",
          rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes(), b"\x00" * 7]


def _tf_read(path, compression_type=""):
  return [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=compression_type)]


def test_uncompressed_bytes_equal_tensorflow_writer(tmp_path):
  records = _records()
  ours, theirs = str(tmp_path / "ours.tfrecord"), str(tmp_path / "theirs.tfrecord")
  with tfrecord.TFRecordWriter(ours) as writer:
    writer.write_all(records[:3])
    writer.write_all([])
    writer.write_all(records[3:])
  with tf.io.TFRecordWriter(theirs) as writer:
    for record in records:
      writer.write(record)
  with open(ours, "rb") as a, open(theirs, "rb") as b:
    assert a.read() == b.read()
  assert _tf_read(ours) == records


def test_gzip_reads_back_through_tf_data(tmp_path):
  records = _records()
  path = str(tmp_path / "ours.tfrecord.gz")
  with tfrecord.TFRecordWriter(path, compress=True) as writer:
    writer.write_all(records[:4])
    writer.write_all(records[4:])
  assert _tf_read(path, "GZIP") == records
  plain = str(tmp_path / "plain.tfrecord")
  with tfrecord.TFRecordWriter(plain) as writer:
    writer.write_all(records)
  with gzip.open(path, "rb") as compressed, open(plain, "rb") as uncompressed:
    assert compressed.read() == uncompressed.read()


def test_empty_files_and_closed_writer(tmp_path):
  plain, compressed = str(tmp_path / "e.tfrecord"), str(tmp_path / "e.tfrecord.gz")
  tfrecord.TFRecordWriter(plain).close()
  writer = tfrecord.TFRecordWriter(compressed, compress=True)
  writer.close()
  writer.close()  # a second close does nothing
  assert _tf_read(plain) == [] and _tf_read(compressed, "GZIP") == []
  with pytest.raises(ValueError, match="closed"):
    writer.write_all([b"x"])


def test_masked_crc32c_known_value():
  # The CRC-32C of "123456789" is 0xE3069283 (the standard check value).
  crc = 0xE3069283
  assert tfrecord.masked_crc32c(b"123456789") == (
      (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2 ** 32)


@pytest.mark.parametrize("compress", [False, True])
def test_shard_writers_keep_the_seeded_shard_assignment(tmp_path, compress):
  chunks = [[f"r{i}".encode() for i in range(n)] for n in (5, 0, 37, 1)]
  writers = writer_lib.ShardWriters(str(tmp_path), ["train"], 3, compress, seed=11)
  for chunk in chunks:
    writers.write("train", chunk)
  writers.close()
  rng = np.random.default_rng((11, 7))
  expected = [[], [], []]
  for chunk in chunks:
    for shard, record in zip(rng.integers(0, 3, len(chunk)).tolist(), chunk):
      expected[shard].append(record)
  paths = writer_lib.shard_paths("train", 3, compress)
  assert [_tf_read(str(tmp_path / p), "GZIP" if compress else "") for p in paths] == expected
