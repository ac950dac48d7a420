"""The tf.data reader: shapes, negatives, seeded shuffling, and named errors for bad shards."""
import gzip
import json
import os

import numpy as np
import pytest

from dasl_tf import data
from dasl_tf import features as F


def _spec(data_dir):
  return F.DatasetSchema.load(data_dir).feature_spec


def test_batches_follow_the_feature_spec(synthetic_data_dir):
  spec = _spec(synthetic_data_dir)
  files = data.split_files(synthetic_data_dir, "eval")
  features, label = next(iter(data.make_dataset(files, spec, 32, with_negatives=True)))
  for name, (dtype, shape) in spec.shapes(with_label=False, with_negatives=True).items():
    assert features[name].dtype == dtype and tuple(features[name].shape) == (32,) + shape, name
  assert set(np.unique(label.numpy())) <= {0.0, 1.0}
  assert set(np.unique(features[F.DOMAIN].numpy())) == {0, 1}, "both domains in a batch"
  train = data.make_dataset(data.split_files(synthetic_data_dir, "train"), spec, 32)
  assert F.NEGATIVES not in next(iter(train))[0]


def test_reads_every_record_once_and_seeded_shuffle_is_reproducible(synthetic_data_dir):
  spec = _spec(synthetic_data_dir)
  files = data.split_files(synthetic_data_dir, "train")
  stats = json.load(open(os.path.join(synthetic_data_dir, "stats.json")))
  plain = np.concatenate([f[F.ITEM_ID].numpy() for f, _ in data.make_dataset(files, spec, 500)])
  assert len(plain) == stats["splits"]["train"]["examples"]

  def shuffled(seed):
    ds = data.make_dataset(files, spec, 500, training=True, seed=seed)
    return np.concatenate([f[F.ITEM_ID].numpy() for f, _ in ds])

  first, second, other = shuffled(1), shuffled(1), shuffled(2)
  np.testing.assert_array_equal(first, second)
  assert not np.array_equal(first, other)
  np.testing.assert_array_equal(np.sort(first), np.sort(plain))


def test_unknown_split_and_missing_files(synthetic_data_dir, tmp_path):
  with pytest.raises(ValueError, match="no split 'test'.*eval"):
    data.split_files(synthetic_data_dir, "test")
  with pytest.raises(FileNotFoundError, match="nothing-"):
    data.make_dataset(str(tmp_path / "nothing-*.tfrecord"), F.FeatureSpec(), 8)


def test_truncated_shard_is_named(synthetic_data_dir, tmp_path):
  source = data.split_files(synthetic_data_dir, "train")[0]
  truncated = tmp_path / "part-truncated.tfrecord"
  truncated.write_bytes(open(source, "rb").read()[:-7])
  with pytest.raises(data.CorruptRecordsError, match="part-truncated.tfrecord: truncated"):
    data.make_dataset([str(truncated)], _spec(synthetic_data_dir), 8)


def test_corrupt_shards_are_named(synthetic_data_dir, tmp_path):
  source = data.split_files(synthetic_data_dir, "train")[0]
  flipped = bytearray(open(source, "rb").read())
  flipped[40] ^= 0xFF
  corrupt = tmp_path / "part-corrupt.tfrecord"
  corrupt.write_bytes(bytes(flipped))
  with pytest.raises(data.CorruptRecordsError, match="part-corrupt.tfrecord: .*corrupt"):
    data.make_dataset([str(corrupt)], _spec(synthetic_data_dir), 8)
  bad_gzip = tmp_path / "part-bad.tfrecord.gz"
  compressed = gzip.compress(open(source, "rb").read())
  bad_gzip.write_bytes(compressed[:len(compressed) // 2])
  with pytest.raises(data.CorruptRecordsError, match="part-bad.tfrecord.gz"):
    data.make_dataset([str(bad_gzip)], _spec(synthetic_data_dir), 8)
  assert data.count_records(source) > 0
