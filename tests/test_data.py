"""The tf.data reader: shapes, negatives, seeded shuffling, and named errors for bad shards."""
import collections
import gzip
import json
import os
import re

import numpy as np
import pytest

from dasl_tf import data
from dasl_tf import features as F


def _spec(data_dir):
  return F.DatasetSchema.load(data_dir).feature_spec


def test_batches_follow_the_feature_spec(synthetic_data_dir):
  spec = _spec(synthetic_data_dir)
  files = data.split_files(synthetic_data_dir, "test")
  features, label = next(iter(data.make_dataset(files, spec, 32, with_negatives=True)))
  for name, (dtype, shape) in spec.shapes(with_label=False, with_negatives=True).items():
    assert features[name].dtype == dtype and tuple(features[name].shape) == (32,) + shape, name
  assert set(np.unique(label.numpy())) <= {0.0, 1.0}
  assert set(np.unique(features[F.DOMAIN].numpy())) == {0, 1}, "both domains in a batch"
  train = data.make_dataset(data.split_files(synthetic_data_dir, "train"), spec, 32)
  assert F.NEGATIVES not in next(iter(train))[0] and F.TRAIN_NEGATIVES not in next(iter(train))[0]
  train = data.make_dataset(data.split_files(synthetic_data_dir, "train"), spec, 32,
                            train_negatives=2)
  assert tuple(next(iter(train))[0][F.TRAIN_NEGATIVES].shape) == (32, 2)
  with pytest.raises(ValueError, match="train_negatives"):
    data.make_dataset(data.split_files(synthetic_data_dir, "train"), spec, 32,
                      train_negatives=spec.num_train_negatives + 1)


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
  with pytest.raises(ValueError, match="no split 'eval'.*'test', 'train', 'validation'"):
    data.split_files(synthetic_data_dir, "eval")
  with pytest.raises(FileNotFoundError, match="nothing-"):
    data.make_dataset(str(tmp_path / "nothing-*.tfrecord"), F.FeatureSpec(), 8)


@pytest.mark.parametrize("shard", ["/etc/passwd", "../elsewhere/train.tfrecord",
                                   "train/../../x.tfrecord", "s3://bucket/train.tfrecord"])
def test_shard_paths_outside_the_data_directory_are_refused(synthetic_data_dir, tmp_path, shard):
  schema = F.DatasetSchema.load(synthetic_data_dir)
  F.DatasetSchema(**{**schema.__dict__, "splits": {"train": (shard,)}}).save(str(tmp_path))
  with pytest.raises(ValueError, match=rf"schema.json: shard '{re.escape(shard)}' of split "
                     "'train' lies outside the data directory"):
    data.split_files(str(tmp_path), "train")


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


def _keys(batches):
  """(user_id, item_id, domain, last hist_a, last hist_b) of every example, in order."""
  keys = []
  for features, _ in batches:
    columns = [features[F.USER_ID], features[F.ITEM_ID], features[F.DOMAIN],
               features[F.HIST_A][:, -1], features[F.HIST_B][:, -1]]
    keys.extend(zip(*(c.numpy().tolist() for c in columns)))
  return keys


def _file_keys(spec, path):
  return _keys(data.make_dataset([path], spec, 1000, verify_files=False))


def test_evaluation_order_is_a_round_robin_of_the_shards(synthetic_data_dir):
  """Record i of every shard in turn, whatever the parse window and batch size."""
  spec = _spec(synthetic_data_dir)
  for split in ("train", "test"):
    files = data.split_files(synthetic_data_dir, split)
    per_file = [_file_keys(spec, f) for f in files]
    expected = [shard[i] for i in range(max(map(len, per_file))) for shard in per_file
                if i < len(shard)]
    for batch_size, window in ((64, 8192), (64, 100), (1000, 7)):
      batches = list(data.make_dataset(files, spec, batch_size, parse_window=window,
                                       with_negatives=split == "test"))
      assert _keys(batches) == expected, (split, batch_size, window)
      assert [int(label.shape[0]) for _, label in batches[:-1]] == [batch_size] * (len(batches) - 1)


@pytest.mark.parametrize("shuffle_buffer", [20000, 500])
def test_training_order_reads_every_example_once_per_epoch(synthetic_data_dir, shuffle_buffer):
  spec = _spec(synthetic_data_dir)
  files = data.split_files(synthetic_data_dir, "train")
  contents = sorted(k for f in files for k in _file_keys(spec, f))
  ds = data.make_dataset(files, spec, 64, training=True, seed=3, shuffle_buffer=shuffle_buffer)
  first, second = _keys(ds), _keys(ds)
  assert sorted(first) == contents and sorted(second) == contents
  assert first != second, "each epoch is shuffled anew"
  assert first != sorted(first) and first != _keys(data.make_dataset(files, spec, 64))
  # repeat: one epoch's examples, then the next epoch's (reshuffled); batches span the seam.
  repeated = data.make_dataset(files, spec, 64, training=True, seed=3,
                               shuffle_buffer=shuffle_buffer, repeat=True, drop_remainder=True)
  assert repeated.element_spec[1].shape == (64,)
  stream = _keys(repeated.take(2 * len(contents) // 64))
  n = len(contents)
  assert sorted(stream[:n]) == contents
  assert not collections.Counter(stream[n:]) - collections.Counter(contents)
  assert stream[n:] != stream[:len(stream) - n]


@pytest.mark.parametrize("shuffle_buffer", [20000, 500])
def test_seeded_training_order_is_reproducible_and_mixes_domains(synthetic_data_dir,
                                                                  shuffle_buffer):
  spec = _spec(synthetic_data_dir)
  files = data.split_files(synthetic_data_dir, "train")

  def epochs(seed, count=2):
    ds = data.make_dataset(files, spec, 64, training=True, seed=seed,
                           shuffle_buffer=shuffle_buffer, verify_files=False)
    return [list(ds) for _ in range(count)]

  first, again, other = epochs(1), epochs(1), epochs(2)
  for epoch, epoch_again in zip(first, again):
    assert _keys(epoch) == _keys(epoch_again)
  assert _keys(first[0]) != _keys(other[0]) and _keys(first[1]) != _keys(other[1])
  for batches in first + other:
    for features, label in batches[:-1]:
      assert int(label.shape[0]) == 64
      assert set(features[F.DOMAIN].numpy().tolist()) == {0, 1}, "both domains in every batch"


def test_training_order_is_shuffled_beyond_the_files(synthetic_data_dir):
  """Examples that follow each other in a shard (one user's timeline) end up far apart."""
  spec = _spec(synthetic_data_dir)
  files = data.split_files(synthetic_data_dir, "train")
  position = {k: i for i, k in enumerate(_keys(data.make_dataset(
      files, spec, 64, training=True, seed=5, shuffle_buffer=500)))}
  shards = [_file_keys(spec, f) for f in files]
  gaps = [abs(position[a] - position[b]) for keys in shards for a, b in zip(keys, keys[1:])]
  # A uniform permutation of a window of 1,000 records puts neighbours ~333 apart.
  assert np.median(gaps) > 150, np.median(gaps)
  assert np.mean(np.asarray(gaps) < 64) < 0.15


def test_gzip_shards_read_the_same_examples(synthetic_data_dir, tmp_path):
  spec = _spec(synthetic_data_dir)
  files = data.split_files(synthetic_data_dir, "train")
  gz_files = []
  for path in files:
    gz_path = tmp_path / (os.path.basename(path) + ".gz")
    gz_path.write_bytes(gzip.compress(open(path, "rb").read()))
    gz_files.append(str(gz_path))
  assert _keys(data.make_dataset(gz_files, spec, 64)) == _keys(data.make_dataset(files, spec, 64))
  assert (_keys(data.make_dataset(gz_files, spec, 64, training=True, seed=4))
          == _keys(data.make_dataset(files, spec, 64, training=True, seed=4)))
