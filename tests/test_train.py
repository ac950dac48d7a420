"""dasl-train: config precedence, the model directory it leaves, reuse/refusal, kill-and-resume,
validation-only model choices and a test split read once."""
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import data as data_lib
from dasl_tf import features as F
from dasl_tf import model_dir as model_dir_lib
from dasl_tf import model_io
from dasl_tf import run_inputs
from dasl_tf import training
from tests import references
from tests import test_train_support as support

# Early stopping with patience 2 ends the module's run well before MAX_EPOCHS (the
# validation objective rises after a few epochs on this small data), so the tests below
# see a run that stopped early and restored its best epoch. (Patience 1 can stop at the
# first rise of the validation objective, before the planted signal is learned.)
MAX_EPOCHS = 8
PATIENCE = 2


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  return support.make_dataset_dir(str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def cli_args(dataset_dir, tmp_path_factory):
  """The training command of this module: a JSON config plus one overriding flag."""
  config = support.small_config_json(str(tmp_path_factory.mktemp("cfg") / "run.json"),
                                     epochs=MAX_EPOCHS, early_stopping_patience=PATIENCE)
  return [f"--data_dir={dataset_dir}", f"--config={config}", "--learning_rate=0.02",
          "--variant=dasl", "--verbose=2"]


def _train(args, model_dir):
  proc = support.run_cli("dasl_tf.pipelines.train", args + [f"--model_dir={model_dir}"],
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


def _examples_in(files):
  return sum(data_lib.count_records(path) for path in files)


def _num_train_examples(dataset_dir):
  return _examples_in(training.TrainingData.from_data_dir(dataset_dir).train_files)


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
    for key in (name, "val_" + name, name + "_cold_start", name + "_both_domains"):
      assert np.isfinite(metrics[key]), key
  # The test AUCs, recomputed from the saved model by the pairwise definition.
  model, _, schema = model_io.load_model(model_dir)
  test_files = training.TrainingData.from_data_dir(dataset_dir).test_files
  features, labels = next(iter(data_lib.make_dataset(test_files, schema.feature_spec, 100000)))
  logits = model(features)
  in_a = features[F.DOMAIN].numpy() == F.DOMAIN_A
  for head, rows in (("a", in_a), ("b", ~in_a)):
    expected = references.pairwise_auc(labels.numpy()[rows], logits[f"logit_{head}"].numpy()[rows])
    assert metrics[f"auc_{head}"] == pytest.approx(expected, abs=1e-6), head
  data = training.TrainingData.from_data_dir(dataset_dir)
  test_examples = _examples_in(data.test_files)
  assert metrics["examples_a"] + metrics["examples_b"] == test_examples
  assert metrics["val_examples_a"] + metrics["val_examples_b"] == _examples_in(
      data.validation_files)
  assert np.isfinite(metrics["loss_a"]) and np.isfinite(metrics["loss_b"])
  assert metrics["train_examples"] == metrics["epochs"] * _num_train_examples(dataset_dir)
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
  with pytest.raises(model_dir_lib.ModelDirError, match="learning_rate: 0.02 -> 0.5"):
    training.train_and_evaluate(changed, data, model_dir)


def test_killed_run_resumes_to_the_same_result(cli_args, model_dir, dataset_dir, tmp_path):
  resumed_dir = str(tmp_path / "resumed")
  args = cli_args + [f"--model_dir={resumed_dir}"]
  proc = support.run_cli("dasl_tf.pipelines.train", args, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
  index = os.path.join(resumed_dir, model_dir_lib.CHECKPOINT_DIR, "checkpoint")
  while not os.path.exists(index) and proc.poll() is None:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(resumed_dir, "metrics.json")), "killed too late"

  output = _train(cli_args, resumed_dir)
  assert "resuming" in output
  resumed = _read_json(os.path.join(resumed_dir, "metrics.json"))
  uninterrupted = _read_json(os.path.join(model_dir, "metrics.json"))
  assert resumed["epochs"] == uninterrupted["epochs"] < MAX_EPOCHS  # stopped early, both
  assert resumed["best_epoch"] == uninterrupted["best_epoch"]
  assert resumed["train_examples"] == uninterrupted["train_examples"]  # no epoch counted twice
  for name in ("auc_a", "auc_b", "val_auc_a", "val_auc_b", "hr10_a", "hr10_b"):
    # Epoch e's shuffle depends on (seed, e) only and dropout's random state is in the
    # checkpoint, so the resumed run repeats the uninterrupted one.
    assert resumed[name] == pytest.approx(uninterrupted[name], abs=1e-6), name


def test_early_stopping_triggers_and_the_best_epoch_is_restored(model_dir, dataset_dir):
  """The run stops PATIENCE epochs after its best one, and keeps the best epoch's weights."""
  metrics = _read_json(os.path.join(model_dir, "metrics.json"))
  history = _read_json(os.path.join(model_dir, "history.json"))
  assert len(history) == metrics["epochs"] < MAX_EPOCHS
  val_losses = [epoch["val_loss"] for epoch in history]
  best = int(np.argmin(val_losses))
  assert metrics["best_epoch"] == best + 1 == metrics["epochs"] - PATIENCE
  assert val_losses[-1] > val_losses[best] + 1e-3  # the last epoch's weights differ in loss
  model, experiment, schema = model_io.load_model(model_dir)
  data = training.TrainingData.from_data_dir(dataset_dir)
  model.compile(optimizer=tf_keras.optimizers.Adam())
  restored = model.evaluate(run_inputs.validation_dataset(experiment, data), return_dict=True,
                            verbose=0)
  # The CTR losses: the ranking loss also moves with the top-n weights chosen after training.
  for head in ("a", "b"):
    assert restored[f"loss_{head}"] == pytest.approx(history[best][f"val_loss_{head}"],
                                                     rel=1e-3), head
  assert schema.num_users == experiment.model.num_users


def test_missing_data_flags_fail_with_a_usage_message(tmp_path):
  proc = support.run_cli("dasl_tf.pipelines.train", [f"--model_dir={tmp_path}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _, errors = proc.communicate(timeout=300)
  assert proc.returncode != 0
  assert "--data_dir" in errors


@pytest.mark.parametrize("train_steps, steps_per_epoch, expected", [
    (0, 0, (5, None, False, 100)),  # one pass per epoch
    (10, 0, (3, 4, True, 128)),  # 10 steps in epochs of one pass (4 steps), rounded up
    (0, 2, (5, 2, True, 64)),
])
def test_schedule_from_epochs_or_steps(train_steps, steps_per_epoch, expected):
  train = config_lib.TrainConfig(batch_size=32, epochs=5, train_steps=train_steps,
                                 steps_per_epoch=steps_per_epoch)
  schedule = run_inputs.schedule(train, 100)
  assert (schedule.epochs, schedule.steps_per_epoch, schedule.repeat,
          schedule.examples_per_epoch) == expected


def _shuffle_test_labels(dataset_dir, target):
  """A copy of the dataset whose test records have their labels permuted."""
  shutil.copytree(dataset_dir, target)
  schema = F.DatasetSchema.load(target)
  spec = schema.feature_spec
  rng = np.random.default_rng(0)
  for path in schema.splits["test"]:
    path = os.path.join(target, path)
    records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    examples = [tf.train.Example.FromString(r) for r in records]
    labels = rng.permutation([e.features.feature[F.LABEL].float_list.value[0] for e in examples])
    with tf.io.TFRecordWriter(path) as writer:
      for example, label in zip(examples, labels):
        example.features.feature[F.LABEL].float_list.value[:] = [label]
        writer.write(example.SerializeToString())
  assert spec == F.DatasetSchema.load(target).feature_spec
  return target


def test_no_model_choice_reads_the_test_split(cli_args, model_dir, dataset_dir, tmp_path):
  """Shuffling the test labels changes the test figures, never the epochs or the chosen one."""
  shuffled = _shuffle_test_labels(dataset_dir, str(tmp_path / "shuffled_test"))
  other_dir = str(tmp_path / "run")
  _train([a if not a.startswith("--data_dir=") else f"--data_dir={shuffled}" for a in cli_args],
         other_dir)
  original = _read_json(os.path.join(model_dir, "metrics.json"))
  changed = _read_json(os.path.join(other_dir, "metrics.json"))
  assert changed["best_epoch"] == original["best_epoch"]
  assert changed["epochs"] == original["epochs"]
  for name in ("val_auc_a", "val_auc_b", "val_hr10_a"):
    assert changed[name] == pytest.approx(original[name], abs=1e-6), name
  assert abs(changed["auc_a"] - original["auc_a"]) > 1e-3  # the test split was read, at the end
  history = [{k: v for k, v in epoch.items() if "seconds" not in k}
             for epoch in _read_json(os.path.join(model_dir, "history.json"))]
  history_changed = [{k: v for k, v in epoch.items() if "seconds" not in k}
                     for epoch in _read_json(os.path.join(other_dir, "history.json"))]
  assert len(history) == len(history_changed)
  for epoch, epoch_changed in zip(history, history_changed):
    assert epoch == pytest.approx(epoch_changed)
  # The top-n weights chosen on validation (dasl_tf.term_weights) are the same choice.
  selection = _read_json(os.path.join(model_dir, model_dir_lib.SELECTION_FILE))
  assert selection["a"]["positives"] > 0 and selection["b"]["positives"] > 0
  assert _read_json(os.path.join(other_dir, model_dir_lib.SELECTION_FILE)) == selection


def test_popularity_is_fitted_by_counting_not_by_epochs(dataset_dir, tmp_path):
  data = training.TrainingData.from_data_dir(dataset_dir)
  config = config_resolution.resolve_config(data.schema, None, {"variant": "popularity"},
                                            {"batch_size": 64})
  metrics = training.train_and_evaluate(config, data, str(tmp_path / "popularity"),
                                        write_report=False, verbose=0)
  assert metrics["epochs"] == 0 and metrics["best_epoch"] == 0
  assert 0.0 <= metrics["hr10_a"] <= 1.0 and 0.0 <= metrics["val_hr10_b"] <= 1.0


def test_folds_test_on_one_validate_on_the_next_and_train_on_the_rest(dataset_dir):
  names = {}
  for fold in range(support.NUM_FOLDS):
    data = training.TrainingData.for_fold(dataset_dir, fold)
    names[fold] = [{os.path.basename(p).split("-00000-of-")[0] for p in files}
                   for files in (data.train_files, data.validation_files, data.test_files)]
  assert names[0] == [{"fold-2"}, {"fold-1"}, {"fold-0"}]
  assert names[2] == [{"fold-1"}, {"fold-0"}, {"fold-2"}]


def test_more_train_negatives_than_stored_is_a_clear_error(dataset_dir, tmp_path):
  data = training.TrainingData.from_data_dir(dataset_dir)
  config = config_resolution.resolve_config(
      data.schema, None, {}, {"train_negatives": support.NUM_TRAIN_NEGATIVES + 1,
                              "negative_sampling": "stored"})
  with pytest.raises(config_lib.ConfigError, match="carries 3 per example"):
    training.train_and_evaluate(config, data, str(tmp_path / "run"), verbose=0)


def _failing_train(args, model_dir):
  proc = support.run_cli("dasl_tf.pipelines.train", args + [f"--model_dir={model_dir}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _, errors = proc.communicate(timeout=300)
  assert proc.returncode != 0
  assert "Traceback" not in errors, errors[-3000:]
  return errors


def test_a_truncated_training_shard_is_named_before_training(dataset_dir, tmp_path):
  """Not a DataLossError without a path, mid-training: the shard is named before epoch 1."""
  data_dir = str(tmp_path / "data")
  shutil.copytree(dataset_dir, data_dir)
  shard = training.TrainingData.from_data_dir(data_dir).train_files[0]
  with open(shard, "rb") as f:
    content = f.read()
  with open(shard, "wb") as f:
    f.write(content[:-7])  # records are of equal size: cut inside the last one
  errors = _failing_train([f"--data_dir={data_dir}", "--epochs=1"], str(tmp_path / "run"))
  assert f"dasl-train: error: {shard}: truncated or corrupt TFRecord file" in errors
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_wrong_typed_config_field_is_refused_before_training(dataset_dir, tmp_path):
  """The command line's view; every field kind is checked in tests/test_config_resolution.py."""
  config = tmp_path / "config.json"
  config.write_text(json.dumps({"model": {"embedding_dim": "32"}}))
  errors = _failing_train([f"--data_dir={dataset_dir}", f"--config={config}"],
                          str(tmp_path / "run"))
  assert (f"dasl-train: error: {config}: ModelConfig.embedding_dim: expected int, got '32'"
          in errors)
  assert not os.path.exists(tmp_path / "run")


def test_an_out_of_range_flag_is_refused_before_the_model_directory_is_touched(dataset_dir,
                                                                               tmp_path):
  errors = _failing_train([f"--data_dir={dataset_dir}", "--embedding_dim=0", "--dropout=0.5"],
                          str(tmp_path / "run"))
  assert errors.strip().splitlines()[-1] == (
      "dasl-train: error: ModelConfig.embedding_dim=0: it must be >= 1")
  assert not os.path.exists(tmp_path / "run")
