"""The batch training job: train, evaluate, checkpoint and resume, write ``metrics.json``.

One function, :func:`train_and_evaluate`, is the job: ``dasl-train``, the TFX
``run_fn`` and ``dasl-experiment`` all call it. It

1. resolves the distribution strategy (``default``, ``mirrored`` or
   ``multi_worker``; the chief writes the model directory, other workers write
   to a scratch directory they delete at the end),
2. prepares the model directory (``config.json``, ``schema.json``, ``vocab/``),
   refusing a directory that holds a run with another configuration,
3. restores the last checkpoint if there is one, then trains with ``fit``:
   progress bar, TensorBoard logs per head, early stopping on the evaluation
   metric, and a divergence guard that stops on a non-finite loss,
4. restores the best epoch's weights, evaluates them (AUC and HR@10 per
   domain, per-head losses), writes ``final/weights``, the report,
   ``history.json`` (per-epoch logs), runs the export hook and, last of all,
   writes ``metrics.json``.

Resume: everything the loop needs to continue (model and optimizer variables,
completed epochs, the early-stopping counters, the accumulated training time
and example count, the per-epoch history) lives in one TensorFlow checkpoint
written at the end of every epoch. TensorFlow writes a checkpoint's data files
before it updates the ``checkpoint`` index, so a process killed at any moment
leaves either the previous or the new checkpoint, never a half one. A run is
finished exactly when ``metrics.json`` exists; it is written atomically after
everything else, so no partial output is ever taken for a finished run.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
from dasl_tf import config as config_lib
from dasl_tf import data as data_lib
from dasl_tf import features as F
from dasl_tf import metrics as metrics_lib
from dasl_tf import model_io
from dasl_tf import models
from dasl_tf import report as report_lib

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT_DIR = os.path.join(CHECKPOINT_DIR, "best")
LOGS_DIR = "logs"
REPORT_DIR = "report"
STRATEGIES = ("default", "mirrored", "multi_worker")
# Entries of a model directory that --overwrite may delete (nothing else is touched).
_RUN_ENTRIES = (model_io.CONFIG_FILE, F.SCHEMA_FILE, model_io.VOCAB_DIR,
                model_io.FINAL_DIR, CHECKPOINT_DIR, LOGS_DIR, REPORT_DIR, HISTORY_FILE,
                METRICS_FILE)
# Model fields that always come from the dataset's schema.json.
_DATASET_FIELDS = ("num_users", "num_items_a", "num_items_b", "history_length", "user_num_dim",
                   "user_cat_vocab_sizes", "item_num_dim", "item_cat_vocab_sizes")


class TrainingDivergedError(RuntimeError):
  """The training loss became NaN or infinite."""


class ModelDirError(ValueError):
  """The model directory holds something other than a resumable run of this config."""


@dataclasses.dataclass(frozen=True)
class TrainingData:
  """Where a run reads its examples.

  Attributes:
    train_files: TFRecord shards trained on.
    eval_files: TFRecord shards evaluated on (with ``negatives`` for HR@10).
    schema: the dataset's schema (feature spec and vocabulary sizes).
    vocab_dir: raw-id vocabularies copied into the model directory, if any.
  """
  train_files: Tuple[str, ...]
  eval_files: Tuple[str, ...]
  schema: F.DatasetSchema
  vocab_dir: Optional[str] = None

  @classmethod
  def from_data_dir(cls, data_dir: str, train_split: str = "train",
                    eval_split: str = "eval") -> "TrainingData":
    """The splits of a ``dasl-prepare`` output directory."""
    return cls(train_files=tuple(data_lib.split_files(data_dir, train_split)),
               eval_files=tuple(data_lib.split_files(data_dir, eval_split)),
               schema=F.DatasetSchema.load(data_dir),
               vocab_dir=_vocab_dir_of(data_dir))

  @classmethod
  def for_fold(cls, data_dir: str, fold: int) -> "TrainingData":
    """Fold ``fold`` of a k-fold dataset: evaluate on ``fold-<fold>``, train on the others.

    Raises:
      ValueError: the dataset has no such fold.
    """
    schema = F.DatasetSchema.load(data_dir)
    folds = sorted(name for name in schema.splits if name.startswith("fold-"))
    eval_split = f"fold-{fold}"
    if eval_split not in folds:
      raise ValueError(f"{data_dir}: no split {eval_split!r}; the dataset has folds {folds} "
                       "(prepare it with k-fold splits to use --fold)")
    train_files = [f for name in folds if name != eval_split
                   for f in data_lib.split_files(data_dir, name)]
    return cls(train_files=tuple(train_files),
               eval_files=tuple(data_lib.split_files(data_dir, eval_split)),
               schema=schema, vocab_dir=_vocab_dir_of(data_dir))

  @classmethod
  def from_patterns(cls, train_patterns: Sequence[str], eval_patterns: Sequence[str],
                    schema_dir: str) -> "TrainingData":
    """Explicit shard patterns, with the ``schema.json`` (and ``vocab/``) of ``schema_dir``."""
    return cls(train_files=tuple(data_lib.resolve_files(list(train_patterns))),
               eval_files=tuple(data_lib.resolve_files(list(eval_patterns))),
               schema=F.DatasetSchema.load(schema_dir),
               vocab_dir=_vocab_dir_of(schema_dir))


def _vocab_dir_of(data_dir: str) -> Optional[str]:
  path = os.path.join(data_dir, model_io.VOCAB_DIR)
  return path if tf.io.gfile.isdir(path) else None


# ----------------------------------------------------------------------------- configuration


def resolve_config(schema: F.DatasetSchema,
                   base: Optional[config_lib.ExperimentConfig] = None,
                   model_overrides: Optional[Mapping[str, object]] = None,
                   train_overrides: Optional[Mapping[str, object]] = None
                   ) -> config_lib.ExperimentConfig:
  """The run's configuration: defaults < ``base`` (a ``--config`` file) < explicit overrides.

  Vocabulary and feature sizes always come from the dataset's schema; a base
  config that disagrees with the dataset is logged and overruled.

  Args:
    schema: the training data's schema.
    base: a config read from JSON (keys the file omits keep their defaults).
    model_overrides: ``ModelConfig`` fields set explicitly (for example by flags).
    train_overrides: ``TrainConfig`` fields set explicitly.

  Returns:
    The resolved, validated :class:`~dasl_tf.config.ExperimentConfig`.

  Raises:
    ConfigError: a value is invalid.
  """
  base = base or config_lib.ExperimentConfig()
  try:
    model = base.model.replace(**dict(model_overrides or {}))
    train = base.train.replace(**dict(train_overrides or {}))
  except TypeError as e:
    raise config_lib.ConfigError(f"unknown config field: {e}") from e
  from_dataset = schema.model_config().to_dict()
  defaults = config_lib.ModelConfig().to_dict()
  for name in _DATASET_FIELDS:
    given = getattr(model, name)
    if given != defaults[name] and given != from_dataset[name]:
      logging.warning("config sets %s=%s but the dataset has %s; using the dataset's value",
                      name, given, from_dataset[name])
  model = schema.model_config(**{k: v for k, v in model.to_dict().items()
                                 if k not in _DATASET_FIELDS})
  experiment = config_lib.ExperimentConfig(model=model, train=train)
  validate_config(experiment)
  return experiment


def validate_config(experiment: config_lib.ExperimentConfig) -> None:
  """Checks the values the training job depends on.

  Raises:
    ConfigError: naming the field and the accepted values.
  """
  train = experiment.train
  if experiment.model.variant not in models.variants():
    raise config_lib.ConfigError(
        f"model.variant={experiment.model.variant!r} is not a registered model; "
        f"choose one of {models.variants()}")
  if train.strategy not in STRATEGIES:
    raise config_lib.ConfigError(
        f"train.strategy={train.strategy!r}; choose one of {STRATEGIES}")
  positive = {"batch_size": train.batch_size, "learning_rate": train.learning_rate,
              "epochs": train.epochs}
  for name, value in positive.items():
    if not value > 0:
      raise config_lib.ConfigError(f"train.{name} must be > 0, got {value}")
  non_negative = {"clipnorm": train.clipnorm, "steps_per_epoch": train.steps_per_epoch,
                  "train_steps": train.train_steps, "eval_steps": train.eval_steps,
                  "early_stopping_patience": train.early_stopping_patience,
                  "shuffle_buffer": train.shuffle_buffer}
  for name, value in non_negative.items():
    if value < 0:
      raise config_lib.ConfigError(f"train.{name} must be >= 0, got {value}")
  _monitor_mode(train.monitor)


def _monitor_mode(monitor: str) -> str:
  """``max`` for AUC-like metrics, ``min`` for losses."""
  name = monitor[len("val_"):] if monitor.startswith("val_") else monitor
  if name.startswith("auc"):
    return "max"
  if name.startswith("loss"):
    return "min"
  raise config_lib.ConfigError(
      f"train.monitor={monitor!r}: expected an AUC or a loss, such as val_auc (mean of both "
      "heads), val_auc_a, val_auc_b, val_loss, val_loss_a or val_loss_b")


# ----------------------------------------------------------------------------- distribution


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The ``tf.distribute`` strategy called ``name``.

  ``multi_worker`` reads the cluster from the ``TF_CONFIG`` environment
  variable and must be created before any other TensorFlow operation runs.

  Raises:
    ConfigError: unknown strategy name.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      logging.warning("--strategy=multi_worker without TF_CONFIG: training as a single worker")
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise config_lib.ConfigError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's outputs (always true outside multi-worker)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


# ----------------------------------------------------------------------------- model directory


def _read_json(path: str):
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write_text_atomically(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file and a rename."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json_atomically(path: str, value) -> None:
  """Writes ``value`` as JSON to ``path`` through a temporary file and a rename."""
  write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _config_differences(old: Mapping, new: Mapping, prefix: str = "") -> List[str]:
  diffs = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      diffs.extend(_config_differences(a, b, f"{prefix}{key}."))
    elif a != b:
      diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return diffs


def prepare_model_dir(model_dir: str, experiment: config_lib.ExperimentConfig,
                      data: TrainingData, overwrite: bool = False) -> bool:
  """Creates or checks the model directory; returns whether it holds a finished run.

  A new directory gets ``schema.json``, ``vocab/`` and, last, ``config.json``.
  An existing one is resumed only if its ``config.json`` equals ``experiment``.

  Raises:
    ModelDirError: the directory holds a run with another configuration, or
      files that are not a dasl_tf run; ``overwrite`` discards a previous run.
  """
  config_path = os.path.join(model_dir, model_io.CONFIG_FILE)
  if overwrite:
    for entry in _RUN_ENTRIES:
      path = os.path.join(model_dir, entry)
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
  if tf.io.gfile.exists(config_path):
    try:
      previous = config_lib.ExperimentConfig.load(config_path)
    except config_lib.ConfigError as e:
      raise ModelDirError(f"{model_dir} holds an unreadable run configuration ({e}); "
                          "choose a new --model_dir or pass --overwrite") from e
    if previous != experiment:
      diffs = _config_differences(previous.to_dict(), experiment.to_dict())
      raise ModelDirError(
          f"{model_dir} holds a run with another configuration ({'; '.join(diffs)}); "
          "a run resumes only with the same configuration: choose a new --model_dir "
          "or pass --overwrite to discard the previous run")
    return tf.io.gfile.exists(os.path.join(model_dir, METRICS_FILE))
  if tf.io.gfile.isdir(model_dir) and tf.io.gfile.listdir(model_dir):
    present = sorted(set(e.rstrip("/") for e in tf.io.gfile.listdir(model_dir)) &
                     set(_RUN_ENTRIES))
    if present:
      raise ModelDirError(
          f"{model_dir} holds {present} but no {model_io.CONFIG_FILE}: it is not a "
          "resumable run; choose a new --model_dir or pass --overwrite")
  tf.io.gfile.makedirs(model_dir)
  data.schema.save(model_dir)
  if data.vocab_dir:
    _copy_tree(data.vocab_dir, os.path.join(model_dir, model_io.VOCAB_DIR))
  experiment.save(config_path)
  return False


def _copy_tree(source: str, target: str) -> None:
  """Copies a flat directory through a temporary directory and a rename."""
  tmp = f"{target}.tmp-{os.getpid()}"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  tf.io.gfile.makedirs(tmp)
  for name in tf.io.gfile.listdir(source):
    tf.io.gfile.copy(os.path.join(source, name), os.path.join(tmp, name))
  if tf.io.gfile.exists(target):
    tf.io.gfile.rmtree(target)
  tf.io.gfile.rename(tmp, target)


# ----------------------------------------------------------------------------- resumable state


class TrainingState:
  """Everything a killed run needs to continue, saved together in one checkpoint.

  Attributes:
    epoch: number of completed epochs.
    best: best value of the monitored metric so far (NaN before the first epoch).
    best_epoch: 1-based epoch of ``best`` (0 before the first epoch).
    wait: epochs since ``best`` improved (early stopping).
    finished: early stopping has ended the run.
    train_seconds: wall time spent in training epochs (validation included).
    train_examples: examples trained on.
    history: per-epoch logs, a JSON list.
    diverged: set (in memory only) when the loss became non-finite.
  """

  def __init__(self, model: tf_keras.Model, directory: str, best_directory: str):
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.best = tf.Variable(math.nan, dtype=tf.float64, trainable=False)
    self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.finished = tf.Variable(False, trainable=False)
    self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False)
    self.train_examples = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.history_json = tf.Variable("[]", dtype=tf.string, trainable=False)
    self.diverged: Optional[str] = None
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=model.optimizer, epoch=self.epoch, best=self.best,
        best_epoch=self.best_epoch, wait=self.wait, finished=self.finished,
        train_seconds=self.train_seconds, train_examples=self.train_examples,
        history=self.history_json)
    self._manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)
    self._best_manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), best_directory, max_to_keep=1)

  @property
  def history(self) -> List[Dict[str, float]]:
    return json.loads(self.history_json.numpy().decode("utf-8"))

  def append_history(self, logs: Mapping[str, float]) -> None:
    self.history_json.assign(json.dumps(self.history + [dict(logs)]))

  def restore(self, directory: str) -> bool:
    """Restores the latest checkpoint of ``directory``; returns whether there was one."""
    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
      return False
    self._manager.checkpoint.restore(latest).assert_existing_objects_matched()
    return True

  def save(self) -> None:
    self._manager.save(checkpoint_number=int(self.epoch.numpy()))

  def save_best(self) -> None:
    self._best_manager.save(checkpoint_number=int(self.epoch.numpy()) + 1)

  def restore_best(self, best_directory: str) -> bool:
    """Loads the best epoch's weights; returns whether a best checkpoint existed."""
    latest = tf.train.latest_checkpoint(best_directory)
    if latest is None:
      return False
    self._best_manager.checkpoint.restore(latest).expect_partial()
    return True


# ----------------------------------------------------------------------------- callbacks


class _EpochMetrics(tf_keras.callbacks.Callback):
  """Completes the epoch logs: exact values across replicas, and the mean AUC of both heads.

  With several replicas, ``fit`` sums each replica's *local* metric results
  (an AUC of 1.7 on two workers). This callback replaces them with the
  metrics' values aggregated across replicas (read in cross-replica context,
  in the same order on every worker): the training metrics just before the
  validation pass resets them, the validation metrics at the epoch's end.
  It then adds ``auc`` and ``val_auc``, the mean of the two heads' AUCs.
  """

  def __init__(self, num_replicas: int):
    super().__init__()
    self._num_replicas = num_replicas
    self._train_logs: Optional[Dict[str, float]] = None
    self._in_epoch = False

  def _metric_results(self, prefix: str) -> Dict[str, float]:
    return {f"{prefix}{m.name}": float(m.result()) for m in self.model.metrics}

  def on_epoch_begin(self, epoch, logs=None):
    self._in_epoch = True
    self._train_logs = None

  def on_test_begin(self, logs=None):
    if self._in_epoch and self._num_replicas > 1:
      self._train_logs = self._metric_results("")

  def on_epoch_end(self, epoch, logs=None):
    self._in_epoch = False
    if logs is None:
      return
    if self._num_replicas > 1:
      if self._train_logs is None:  # no validation pass: the metrics hold training values
        logs.update(self._metric_results(""))
      else:
        logs.update(self._train_logs)
        logs.update(self._metric_results("val_"))
    for prefix in ("", "val_"):
      if f"{prefix}auc_a" in logs and f"{prefix}auc_b" in logs:
        logs[f"{prefix}auc"] = (float(logs[f"{prefix}auc_a"]) + float(logs[f"{prefix}auc_b"])) / 2


class _DivergenceGuard(tf_keras.callbacks.Callback):
  """Stops training at the first non-finite loss and records why (like ``TerminateOnNaN``)."""

  def __init__(self, state: TrainingState, learning_rate: float):
    super().__init__()
    self._supports_tf_logs = True  # reads only the loss, not every metric, each step
    self._state = state
    self._learning_rate = learning_rate
    self._epoch = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not np.isfinite(float(loss)):
      self._state.diverged = (
          f"training diverged: the loss became {float(loss)} at epoch {self._epoch + 1}, "
          f"step {batch}. The last finite state is kept in the checkpoints (nothing after "
          f"it was saved). Lower the learning rate (now {self._learning_rate:g}), keep "
          "gradient clipping on (train.clipnorm) and check the input features for "
          "extreme values.")
      self.model.stop_training = True


class _ResumableEarlyStopping(tf_keras.callbacks.Callback):
  """Early stopping whose counters live in the :class:`TrainingState`, so they survive a restart.

  Saves the best epoch's weights whenever the monitored metric improves.
  """

  def __init__(self, state: TrainingState, monitor: str, patience: int):
    super().__init__()
    self._state = state
    self._monitor = monitor
    self._patience = patience
    self._mode = _monitor_mode(monitor)

  def on_epoch_end(self, epoch, logs=None):
    if self._state.diverged:
      return
    logs = logs or {}
    if self._monitor not in logs:
      raise ValueError(f"early stopping monitors {self._monitor!r}, but the epoch logs have "
                       f"only {sorted(logs)}")
    value = float(logs[self._monitor])
    best = float(self._state.best.numpy())
    improved = math.isnan(best) or (value > best if self._mode == "max" else value < best)
    if improved:
      self._state.best.assign(value)
      self._state.best_epoch.assign(epoch + 1)
      self._state.wait.assign(0)
      self._state.save_best()
      return
    self._state.wait.assign_add(1)
    if int(self._state.wait.numpy()) >= self._patience:
      logging.info("early stopping after epoch %d: %s has not improved on %.4f (epoch %d) "
                   "for %d epochs", epoch + 1, self._monitor, best,
                   int(self._state.best_epoch.numpy()), self._patience)
      self._state.finished.assign(True)
      self.model.stop_training = True


class _EpochCheckpoint(tf_keras.callbacks.Callback):
  """At each epoch's end: counts time and examples, appends the history, saves the checkpoint.

  The history records each epoch's wall time (``seconds``, evaluation pass
  included) and the part spent in training steps (``fit_seconds``).
  """

  def __init__(self, state: TrainingState, examples_per_epoch: int):
    super().__init__()
    self._state = state
    self._examples_per_epoch = examples_per_epoch
    self._epoch_started = 0.0
    self._validation_started: Optional[float] = None

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_started = time.perf_counter()
    self._validation_started = None

  def on_test_begin(self, logs=None):
    if self._validation_started is None:
      self._validation_started = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    if self._state.diverged:
      return
    now = time.perf_counter()
    seconds = now - self._epoch_started
    self._state.epoch.assign(epoch + 1)
    self._state.train_seconds.assign_add(seconds)
    self._state.train_examples.assign_add(self._examples_per_epoch)
    record = {"epoch": epoch + 1, "seconds": seconds,
              "fit_seconds": (self._validation_started or now) - self._epoch_started}
    record.update({k: float(v) for k, v in (logs or {}).items() if np.isscalar(v)})
    self._state.append_history(record)
    self._state.save()
    logging.info("epoch %d done in %.1f s; checkpoint saved", epoch + 1, seconds)


# ----------------------------------------------------------------------------- the job


@dataclasses.dataclass(frozen=True)
class _Schedule:
  """How many epochs of how many steps, derived from the TrainConfig and the data size."""
  epochs: int
  steps_per_epoch: Optional[int]
  repeat: bool
  examples_per_epoch: int


def _schedule(train: config_lib.TrainConfig, num_train_examples: int) -> _Schedule:
  full_pass_steps = max(1, math.ceil(num_train_examples / train.batch_size))
  if train.train_steps:
    steps = train.steps_per_epoch or min(train.train_steps, full_pass_steps)
    return _Schedule(epochs=math.ceil(train.train_steps / steps), steps_per_epoch=steps,
                     repeat=True, examples_per_epoch=steps * train.batch_size)
  if train.steps_per_epoch:
    return _Schedule(epochs=train.epochs, steps_per_epoch=train.steps_per_epoch, repeat=True,
                     examples_per_epoch=train.steps_per_epoch * train.batch_size)
  return _Schedule(epochs=train.epochs, steps_per_epoch=None, repeat=False,
                   examples_per_epoch=num_train_examples)


def count_examples(files: Sequence[str]) -> int:
  """Number of records in TFRecord shards."""
  compression = data_lib.compression_of(files[0])
  dataset = tf.data.TFRecordDataset(list(files), compression_type=compression)
  return int(dataset.reduce(np.int64(0), lambda count, _: count + 1).numpy())


def _input(files: Sequence[str], spec: F.FeatureSpec, train: config_lib.TrainConfig,
           strategy: tf.distribute.Strategy, training: bool = False,
           with_negatives: bool = False, repeat: bool = False) -> tf.data.Dataset:
  dataset = data_lib.make_dataset(
      list(files), spec, train.batch_size, training=training,
      shuffle_buffer=train.shuffle_buffer, seed=train.seed,
      with_negatives=with_negatives, repeat=repeat)
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
  return dataset


def train_and_evaluate(experiment: config_lib.ExperimentConfig,
                       data: TrainingData,
                       model_dir: str,
                       overwrite: bool = False,
                       export_fn: Optional[Callable[[str], None]] = None,
                       write_report: bool = True,
                       verbose: int = 1) -> Dict[str, float]:
  """Trains, evaluates and saves one run; resumes it if ``model_dir`` holds a checkpoint.

  Args:
    experiment: the resolved configuration (see :func:`resolve_config`).
    data: the training and evaluation shards and the dataset's schema.
    model_dir: the run's directory (layout in :mod:`dasl_tf.model_io`).
    overwrite: discard a previous run in ``model_dir`` instead of resuming it.
    export_fn: called by the chief with ``model_dir`` once the final weights are
      written, before ``metrics.json`` (for example the SavedModel export).
    write_report: write ``report/`` (plots and ``report.md``).
    verbose: ``fit``'s verbosity: 0 silent, 1 progress bar, 2 one line per epoch.

  Returns:
    The metrics written to ``metrics.json``: ``auc_a``, ``auc_b``, ``hr10_a``,
    ``hr10_b``, ``loss_a``, ``loss_b``, ``train_examples``, ``train_seconds``,
    ``epochs``, ``best_epoch``, ``examples_per_second``.

  Raises:
    ModelDirError: ``model_dir`` holds a run with another configuration.
    TrainingDivergedError: the loss became NaN or infinite.
  """
  validate_config(experiment)
  strategy = make_strategy(experiment.train.strategy)
  chief = is_chief(strategy)
  if chief:
    finished = prepare_model_dir(model_dir, experiment, data, overwrite)
  else:
    finished = tf.io.gfile.exists(os.path.join(model_dir, METRICS_FILE))
  if finished:
    logging.info("%s already holds the finished run; nothing to do", model_dir)
    return _read_json(os.path.join(model_dir, METRICS_FILE))

  write_dir = model_dir if chief else tempfile.mkdtemp(prefix="dasl-worker-")
  try:
    return _run(experiment, data, strategy, chief, model_dir, write_dir, export_fn,
                write_report, verbose)
  finally:
    if not chief:
      tf.io.gfile.rmtree(write_dir)


def _run(experiment: config_lib.ExperimentConfig, data: TrainingData,
         strategy: tf.distribute.Strategy, chief: bool, model_dir: str, write_dir: str,
         export_fn: Optional[Callable[[str], None]], write_report: bool,
         verbose: int) -> Dict[str, float]:
  """The body of :func:`train_and_evaluate` once the model directory is ready."""
  train = experiment.train
  tf_keras.utils.set_random_seed(train.seed)
  spec = data.schema.feature_spec
  num_train_examples = count_examples(data.train_files)
  schedule = _schedule(train, num_train_examples)
  train_ds = _input(data.train_files, spec, train, strategy, training=True,
                    repeat=schedule.repeat)
  eval_ds = _input(data.eval_files, spec, train, strategy)

  with strategy.scope():
    model = model_io.build_model(experiment.model)
    optimizer = tf_keras.optimizers.Adam(learning_rate=train.learning_rate,
                                         clipnorm=train.clipnorm or None)
    model.compile(optimizer=optimizer)
    optimizer.build(model.trainable_variables)
  state = TrainingState(model, os.path.join(write_dir, CHECKPOINT_DIR),
                        os.path.join(write_dir, BEST_CHECKPOINT_DIR))
  if state.restore(os.path.join(model_dir, CHECKPOINT_DIR)):
    logging.info("resuming %s after epoch %d (%d examples trained on so far)", model_dir,
                 int(state.epoch.numpy()), int(state.train_examples.numpy()))

  initial_epoch = int(state.epoch.numpy())
  if not bool(state.finished.numpy()) and initial_epoch < schedule.epochs:
    logging.info("training %s on %d examples (%d examples per epoch), epochs %d..%d, "
                 "strategy %s with %d replica(s)", experiment.model.variant,
                 num_train_examples, schedule.examples_per_epoch, initial_epoch + 1,
                 schedule.epochs, train.strategy, strategy.num_replicas_in_sync)
    callbacks = [
        _EpochMetrics(strategy.num_replicas_in_sync),
        _DivergenceGuard(state, train.learning_rate),
        _ResumableEarlyStopping(state, train.monitor, train.early_stopping_patience),
        _EpochCheckpoint(state, schedule.examples_per_epoch),
        tf_keras.callbacks.TensorBoard(os.path.join(write_dir, LOGS_DIR), write_graph=False,
                                       profile_batch=0),
    ]
    model.fit(train_ds, validation_data=eval_ds, epochs=schedule.epochs,
              initial_epoch=initial_epoch, steps_per_epoch=schedule.steps_per_epoch,
              validation_steps=train.eval_steps or None, callbacks=callbacks, verbose=verbose)
    if state.diverged:
      raise TrainingDivergedError(f"{model_dir}: {state.diverged}")

  if not state.restore_best(os.path.join(model_dir, BEST_CHECKPOINT_DIR)):
    logging.warning("%s has no best-epoch checkpoint; evaluating the last weights", model_dir)
  metrics = _final_metrics(model, data, spec, train, strategy, state)
  model_io.save_final_weights(model, write_dir)  # every worker saves (collective ops)
  if not chief:
    return metrics
  if write_report:
    report_lib.write_report(model, eval_ds, state.history, metrics,
                        os.path.join(model_dir, REPORT_DIR), data.schema.domain_names)
  write_json_atomically(os.path.join(model_dir, HISTORY_FILE), state.history)
  if export_fn is not None:
    export_fn(model_dir)
  write_json_atomically(os.path.join(model_dir, METRICS_FILE), metrics)
  logging.info("finished %s: %s", model_dir,
               ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())
                         if isinstance(v, float)))
  return metrics


def _final_metrics(model: tf_keras.Model, data: TrainingData, spec: F.FeatureSpec,
                   train: config_lib.TrainConfig, strategy: tf.distribute.Strategy,
                   state: TrainingState) -> Dict[str, float]:
  """Evaluation metrics of the restored best weights plus the run's accounting.

  The per-head losses are those of the best epoch's evaluation, which ran on
  the same weights and examples.
  """
  eval_ds = _input(data.eval_files, spec, train, strategy, with_negatives=True)
  metrics = {k: float(v) for k, v in metrics_lib.evaluate_model(
      model, eval_ds, max_batches=train.eval_steps or None).items()}
  best_epoch = int(state.best_epoch.numpy())
  best_logs = state.history[best_epoch - 1] if best_epoch else {}
  for head in ("a", "b"):
    metrics[f"loss_{head}"] = best_logs.get(f"val_loss_{head}", math.nan)
  seconds = float(state.train_seconds.numpy())
  examples = int(state.train_examples.numpy())
  metrics.update(
      train_examples=examples,
      train_seconds=seconds,
      examples_per_second=examples / seconds if seconds else 0.0,
      epochs=int(state.epoch.numpy()),
      best_epoch=best_epoch,
  )
  return metrics


# ----------------------------------------------------------------------------- experiment grid


@dataclasses.dataclass(frozen=True)
class GridRun:
  """One cell of an experiment grid: a variant trained on one fold or with one seed.

  Attributes:
    variant: the model variant.
    name: ``fold-<k>`` or ``seed-<s>``; the run's directory under the variant's.
    data: the run's training and evaluation data.
    seed: the run's training seed.
  """
  variant: str
  name: str
  data: TrainingData
  seed: int


def grid_runs(data_dir: str, variants: Sequence[str], folds: int = 0,
              seeds: Sequence[int] = (42,)) -> List[GridRun]:
  """The runs of an experiment: every variant on every fold (``folds`` > 0) or seed.

  With folds, fold ``k`` is evaluated after training on the other folds, with
  the first of ``seeds``; without, every seed trains on ``train`` and is
  evaluated on ``eval``.
  """
  if folds:
    cells = [(f"fold-{k}", TrainingData.for_fold(data_dir, k), seeds[0]) for k in range(folds)]
  else:
    data = TrainingData.from_data_dir(data_dir)
    cells = [(f"seed-{seed}", data, seed) for seed in seeds]
  return [GridRun(variant, name, data, seed) for variant in variants
          for name, data, seed in cells]


def run_grid(runs: Sequence[GridRun], output_dir: str,
             base: Optional[config_lib.ExperimentConfig] = None,
             train_overrides: Optional[Mapping[str, object]] = None,
             write_reports: bool = False) -> List[Dict[str, object]]:
  """Trains every run into ``<output_dir>/<variant>/<name>``; finished runs are reused.

  Returns:
    One ``{"variant", "run", "model_dir", "metrics"}`` per run, in order.
  """
  results = []
  for index, run in enumerate(runs):
    model_dir = os.path.join(output_dir, run.variant, run.name)
    logging.info("experiment run %d/%d: %s %s -> %s", index + 1, len(runs), run.variant,
                 run.name, model_dir)
    experiment = resolve_config(run.data.schema, base, {"variant": run.variant},
                                {**dict(train_overrides or {}), "seed": run.seed})
    metrics = train_and_evaluate(experiment, run.data, model_dir, write_report=write_reports,
                                 verbose=2)
    results.append({"variant": run.variant, "run": run.name, "model_dir": model_dir,
                    "metrics": metrics})
    tf_keras.backend.clear_session()
  return results
