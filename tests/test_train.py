"""dasl-train: config precedence, the model directory it leaves, reuse/refusal, kill-and-resume."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import training
from tests import test_train_support as support

EPOCHS = 3


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  return support.make_dataset_dir(str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def cli_args(dataset_dir, tmp_path_factory):
  """The training command of this module: a JSON config plus one overriding flag."""
  config = support.small_config_json(str(tmp_path_factory.mktemp("cfg") / "run.json"),
                                     epochs=EPOCHS, early_stopping_patience=EPOCHS)
  return [f"--data_dir={dataset_dir}", f"--config={config}", "--learning_rate=0.02",
          "--variant=dasl", "--verbose=2"]


def _train(args, model_dir):
  proc = support.run_cli("pipelines.train", args + [f"--model_dir={model_dir}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  output, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, output[-4000:]
  return output


@pytest.fixture(scope="module")
def model_dir(cli_args, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("runs") / "uninterrupted")
  _train(cli_args, path)
  return path


def _read_json(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _num_train_examples(dataset_dir):
  return training.count_examples(training.TrainingData.from_data_dir(dataset_dir).train_files)


def test_flags_override_config_file_which_overrides_defaults(model_dir, dataset_dir):
  config = config_lib.ExperimentConfig.load(os.path.join(model_dir, "config.json"))
  schema = F.DatasetSchema.load(dataset_dir)
  assert config.train.learning_rate == 0.02  # flag over the file's 0.01
  assert config.train.batch_size == 32  # file over the default 256
  assert config.model.embedding_dim == 8  # file over the default 32
  assert config.train.monitor == config_lib.TrainConfig().monitor  # default kept
  assert config.model.num_users == schema.num_users  # always the dataset's
  assert config.model.history_length == support.HISTORY_LENGTH


def test_metrics_json_reports_both_heads_and_the_accounting(model_dir, dataset_dir):
  metrics = _read_json(os.path.join(model_dir, "metrics.json"))
  for name in ("auc_a", "auc_b", "hr10_a", "hr10_b"):
    assert 0.0 <= metrics[name] <= 1.0, name
  assert np.isfinite(metrics["loss_a"]) and np.isfinite(metrics["loss_b"])
  assert metrics["epochs"] == EPOCHS
  assert metrics["train_examples"] == EPOCHS * _num_train_examples(dataset_dir)
  assert metrics["train_seconds"] > 0
  assert (metrics["auc_a"] + metrics["auc_b"]) / 2 > 0.6  # the planted signal is learned


def test_report_plots_and_tensorboard_logs_per_head(model_dir):
  report_dir = os.path.join(model_dir, "report")
  text = open(os.path.join(report_dir, "report.md"), encoding="utf-8").read()
  for png in ("roc.png", "training_curves.png", "attention.png"):
    if png == "attention.png" and "exposes no attention weights" in text:
      continue
    assert f"]({png})" in text
    with open(os.path.join(report_dir, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  tags = set()
  for event_file in tf.io.gfile.glob(os.path.join(model_dir, "logs", "*", "events.*")):
    for record in tf.data.TFRecordDataset(event_file):
      event = tf.compat.v1.Event.FromString(record.numpy())
      tags.update(value.tag for value in event.summary.value)
  assert {"epoch_auc_a", "epoch_auc_b", "epoch_loss_a", "epoch_loss_b"} <= tags


def test_finished_run_is_reused_and_another_config_refused(model_dir, dataset_dir):
  config = config_lib.ExperimentConfig.load(os.path.join(model_dir, "config.json"))
  data = training.TrainingData.from_data_dir(dataset_dir)
  assert training.train_and_evaluate(config, data, model_dir) == _read_json(
      os.path.join(model_dir, "metrics.json"))
  changed = config.replace(train=config.train.replace(learning_rate=0.5))
  with pytest.raises(training.ModelDirError, match="learning_rate: 0.02 -> 0.5"):
    training.train_and_evaluate(changed, data, model_dir)


def test_killed_run_resumes_to_the_same_result(cli_args, model_dir, dataset_dir, tmp_path):
  resumed_dir = str(tmp_path / "resumed")
  args = cli_args + [f"--model_dir={resumed_dir}"]
  proc = support.run_cli("pipelines.train", args, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
  index = os.path.join(resumed_dir, training.CHECKPOINT_DIR, "checkpoint")
  while not os.path.exists(index) and proc.poll() is None:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(resumed_dir, "metrics.json")), "killed too late"

  output = _train(cli_args, resumed_dir)
  assert "resuming" in output
  resumed = _read_json(os.path.join(resumed_dir, "metrics.json"))
  uninterrupted = _read_json(os.path.join(model_dir, "metrics.json"))
  assert resumed["epochs"] == uninterrupted["epochs"] == EPOCHS
  assert resumed["train_examples"] == uninterrupted["train_examples"]  # no epoch counted twice
  for name in ("auc_a", "auc_b"):
    assert abs(resumed[name] - uninterrupted[name]) < 0.1, name


def test_missing_data_flags_fail_with_a_usage_message(tmp_path):
  proc = support.run_cli("pipelines.train", [f"--model_dir={tmp_path}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _, errors = proc.communicate(timeout=300)
  assert proc.returncode != 0
  assert "--data_dir" in errors


def test_resolve_config_precedence_and_dataset_sizes(dataset_dir):
  schema = F.DatasetSchema.load(dataset_dir)
  base = config_lib.ExperimentConfig(
      model=config_lib.ModelConfig(variant="dasl_de", num_users=999, gru_units=5),
      train=config_lib.TrainConfig(batch_size=7, epochs=4))
  config = training.resolve_config(schema, base, {"gru_units": 6}, {"batch_size": 9})
  assert (config.model.variant, config.model.gru_units) == ("dasl_de", 6)
  assert (config.train.batch_size, config.train.epochs) == (9, 4)
  assert config.model.num_users == schema.num_users


@pytest.mark.parametrize("overrides, message", [
    ({"strategy": "tpu"}, "strategy"),
    ({"monitor": "precision"}, "monitor"),
    ({"batch_size": 0}, "batch_size"),
])
def test_resolve_config_rejects_bad_values(dataset_dir, overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    training.resolve_config(F.DatasetSchema.load(dataset_dir), None, {}, overrides)


def test_resolve_config_rejects_unknown_variant(dataset_dir):
  with pytest.raises(config_lib.ConfigError, match="registered"):
    training.resolve_config(F.DatasetSchema.load(dataset_dir), None, {"variant": "nope"}, {})


def test_divergence_guard_stops_on_a_non_finite_loss(tmp_path):
  model = tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(2,))])
  model.compile(optimizer="adam", loss="mse")
  state = training.TrainingState(model, str(tmp_path / "ckpt"), str(tmp_path / "best"))
  guard = training._DivergenceGuard(state, learning_rate=0.5)  # pylint: disable=protected-access
  guard.set_model(model)
  guard.on_epoch_begin(2)
  guard.on_train_batch_end(5, {"loss": tf.constant(1.5)})
  assert not model.stop_training and state.diverged is None
  guard.on_train_batch_end(6, {"loss": tf.constant(np.nan)})
  assert model.stop_training
  assert "epoch 3, step 6" in state.diverged and "learning rate (now 0.5)" in state.diverged


@pytest.mark.parametrize("train_steps, steps_per_epoch, expected", [
    (0, 0, (5, None, False, 100)),  # one pass per epoch
    (10, 0, (3, 4, True, 128)),  # 10 steps in epochs of one pass (4 steps), rounded up
    (0, 2, (5, 2, True, 64)),
])
def test_schedule_from_epochs_or_steps(train_steps, steps_per_epoch, expected):
  train = config_lib.TrainConfig(batch_size=32, epochs=5, train_steps=train_steps,
                                 steps_per_epoch=steps_per_epoch)
  schedule = training._schedule(train, 100)  # pylint: disable=protected-access
  assert (schedule.epochs, schedule.steps_per_epoch, schedule.repeat,
          schedule.examples_per_epoch) == expected
