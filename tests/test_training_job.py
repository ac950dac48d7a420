"""The training job's seams: a user optimizer and callback, epochs that differ, empty splits."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import data as data_lib
from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf import training
from tests import test_train_support as support

EPOCHS = 3


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  return support.make_dataset_dir(str(tmp_path_factory.mktemp("data")), num_users=20,
                                  per_user=8)


def _experiment(dataset_dir, **train):
  path = support.small_config_json(os.path.join(dataset_dir, "..", "run.json"), **train)
  return config_resolution.resolve_config(F.DatasetSchema.load(dataset_dir),
                                          config_lib.ExperimentConfig.load(path))


class _Recorder(tf_keras.callbacks.Callback):
  """Notes the optimizer the job trains with and the epochs it ends."""

  def __init__(self):
    super().__init__()
    self.optimizers, self.epochs = [], []

  def on_epoch_end(self, epoch, logs=None):
    self.optimizers.append(type(self.model.optimizer).__name__)
    self.epochs.append(epoch)


def _clicks_scored(model, dataset):
  """A user metric: the clicks among the examples the job passes it."""
  del model
  return sum(float(tf.reduce_sum(labels)) for _, labels in dataset)


def _clicks_in(files):
  return sum(float(tf.reduce_sum(tf.io.parse_example(
      batch, {F.LABEL: tf.io.FixedLenFeature([], tf.float32)})[F.LABEL]))
             for batch in tf.data.TFRecordDataset(list(files)).batch(256))


class _ShardReads:
  """Counts the whole-shard reads of :func:`dasl_tf.data.count_records` (the real reads)."""

  def __init__(self, read_count):
    self._read_count, self.paths = read_count, []

  def __call__(self, path):
    self.paths.append(path)
    return self._read_count(path)


class _TrainingInputs:
  """Keeps every dataset the job builds (the real ones, unchanged) and the shards each reads."""

  def __init__(self, make_dataset):
    self._make_dataset, self.datasets, self.files_read = make_dataset, [], []

  def __call__(self, files, *args, **kwargs):
    dataset = self._make_dataset(files, *args, **kwargs)
    self.files_read.extend(files)
    if kwargs.get("training"):
      self.datasets.append(dataset)
    return dataset


@pytest.fixture(scope="module")
def run(dataset_dir, tmp_path_factory):
  """One run with a user optimizer and a user callback, its training inputs kept."""
  recorder = _Recorder()
  inputs = _TrainingInputs(data_lib.make_dataset)
  reads = _ShardReads(data_lib._read_count)  # pylint: disable=protected-access
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(data_lib, "make_dataset", inputs)
    patch.setattr(data_lib, "_read_count", reads)
    patch.setattr(data_lib, "_COUNTED", {})
    metrics = training.train_and_evaluate(
        _experiment(dataset_dir, epochs=EPOCHS, early_stopping_patience=EPOCHS),
        training.TrainingData.from_data_dir(dataset_dir),
        str(tmp_path_factory.mktemp("runs") / "run"), write_report=False, verbose=0,
        optimizer_fn=lambda train: tf_keras.optimizers.SGD(train.learning_rate),
        callbacks=[recorder], extra_metrics={"clicks_scored": _clicks_scored})
  return metrics, recorder, inputs, reads


def test_a_user_optimizer_and_callback_are_used_through_the_public_api(run):
  metrics, recorder, _, _ = run
  assert recorder.epochs == list(range(EPOCHS)) == list(range(metrics["epochs"]))
  assert recorder.optimizers == ["SGD"] * EPOCHS


def _users_in_order(dataset):
  return np.concatenate([features[F.USER_ID].numpy() for features, _ in dataset])


def test_each_epoch_of_a_run_sees_its_own_order(run):
  _, _, inputs, _ = run
  orders = [_users_in_order(dataset) for dataset in inputs.datasets]
  assert len(orders) == EPOCHS
  for order in orders[1:]:
    np.testing.assert_array_equal(np.sort(order), np.sort(orders[0]))  # the same examples
  assert len({order.tobytes() for order in orders}) == EPOCHS, "two epochs share an order"


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_a_split_without_examples_is_refused_before_the_model_directory(dataset_dir, tmp_path,
                                                                        split):
  data_dir = str(tmp_path / "data")
  shutil.copytree(dataset_dir, data_dir)
  shard = os.path.join(data_dir, F.DatasetSchema.load(data_dir).splits[split][0])
  with tf.io.TFRecordWriter(shard):
    pass  # an empty shard
  model_dir = tmp_path / "run"
  with pytest.raises(errors.DataError, match=rf"the \w+ split has no examples .*{shard}"):
    training.train_and_evaluate(_experiment(dataset_dir, epochs=1),
                                training.TrainingData.from_data_dir(data_dir), str(model_dir),
                                verbose=0)
  assert not model_dir.exists()


def test_the_training_split_is_read_once_per_epoch_plus_one_pass(run, dataset_dir):
  """Epochs read the training split once each; one more pass checks it and does the setup.

  Every TFRecord read of the package goes through ``make_dataset`` or the
  shard check's ``_read_count`` (tests/test_contracts.py), both counted here.
  """
  _, _, inputs, reads = run
  data = training.TrainingData.from_data_dir(dataset_dir)
  assert len(inputs.datasets) == EPOCHS
  for shard in data.train_files:
    assert inputs.files_read.count(shard) == EPOCHS + 1, shard
    assert shard not in reads.paths  # the setup pass was its check
  assert sorted(reads.paths) == sorted(set(reads.paths))  # other splits: checked once each


def test_a_user_metric_is_written_for_the_test_and_validation_splits(run, dataset_dir):
  metrics, _, _, _ = run
  data = training.TrainingData.from_data_dir(dataset_dir)
  assert metrics["clicks_scored"] == _clicks_in(data.test_files) > 0
  assert metrics["val_clicks_scored"] == _clicks_in(data.validation_files) > 0
