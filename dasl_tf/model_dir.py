"""A run's model directory: its layout, the same-configuration check, and the resumable state.

Layout (see also :mod:`dasl_tf.model_io`): ``config.json``, ``schema.json``,
``vocab/``, ``checkpoints/`` (with ``best/``), ``logs/``, ``report/``,
``final/``, ``history.json`` and, written last, ``metrics.json``: a run is
finished exactly when ``metrics.json`` exists.

Resume: everything the loop needs to continue (model and optimizer variables,
completed epochs, the early-stopping counters, the accumulated training time
and example count, the per-epoch history) lives in one TensorFlow checkpoint
written at the end of every epoch. TensorFlow writes a checkpoint's data files
before it updates the ``checkpoint`` index, so a process killed at any moment
leaves either the previous or the new checkpoint, never a half one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

from absl import logging

import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf import model_io
from dasl_tf import publish

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT_DIR = os.path.join(CHECKPOINT_DIR, "best")
LOGS_DIR = "logs"
REPORT_DIR = "report"
LOCK_FILE = ".lock"
# Entries of a model directory that --overwrite may delete (nothing else is touched).
_RUN_ENTRIES = (model_io.CONFIG_FILE, F.SCHEMA_FILE, model_io.VOCAB_DIR,
                model_io.FINAL_DIR, CHECKPOINT_DIR, LOGS_DIR, REPORT_DIR, HISTORY_FILE,
                METRICS_FILE)


class ModelDirError(errors.DaslError, ValueError):
  """The model directory holds something other than a resumable run of this config."""


def read_json(path: str):
  """Reads a JSON file through ``tf.io.gfile``."""
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


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
                      schema: F.DatasetSchema, vocab_dir: Optional[str],
                      overwrite: bool = False) -> bool:
  """Creates or checks the model directory; returns whether it holds a finished run.

  A new directory gets ``schema.json``, ``vocab/`` and, last, ``config.json``.
  An existing one is resumed only if its ``config.json`` equals ``experiment``.

  Raises:
    ModelDirError: the directory holds a run with another configuration, or
      files that are not a dasl_tf run; ``overwrite`` discards a previous run.
  """
  files = filesystems.files_for(model_dir)
  config_path = os.path.join(model_dir, model_io.CONFIG_FILE)
  if overwrite:
    for entry in _RUN_ENTRIES:
      path = os.path.join(model_dir, entry)
      if files.isdir(path):
        files.rmtree(path)
      elif files.exists(path):
        files.remove(path)
  if files.exists(config_path):
    _check_same_data(model_dir, schema, vocab_dir)
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
    return files.exists(os.path.join(model_dir, METRICS_FILE))
  if files.isdir(model_dir):
    present = sorted(set(e.rstrip("/") for e in files.listdir(model_dir)) & set(_RUN_ENTRIES))
    if present:
      raise ModelDirError(
          f"{model_dir} holds {present} but no {model_io.CONFIG_FILE}: it is not a "
          "resumable run; choose a new --model_dir or pass --overwrite")
  files.makedirs(model_dir)
  schema.save(model_dir)
  if vocab_dir:
    _copy_tree(vocab_dir, os.path.join(model_dir, model_io.VOCAB_DIR))
  experiment.save(config_path)
  return False


def data_fingerprint(schema: F.DatasetSchema, vocab_dir: Optional[str]) -> str:
  """A digest of what a trained model depends on: the schema (shards aside) and the vocabularies.

  Two datasets with the same vocabulary sizes but other ids get different
  fingerprints, so a run is never resumed on a neighbour's data.
  """
  digest = hashlib.sha256()
  schema_fields = json.loads(schema.to_json())
  schema_fields.pop("splits", None)
  digest.update(json.dumps(schema_fields, sort_keys=True).encode())
  files = filesystems.files_for(vocab_dir) if vocab_dir else None
  if files and files.isdir(vocab_dir):
    for name in sorted(e.rstrip("/") for e in files.listdir(vocab_dir)):
      with files.GFile(os.path.join(vocab_dir, name), "rb") as f:
        digest.update(name.encode() + b"\0" + hashlib.sha256(f.read()).digest())
  return digest.hexdigest()


def _check_same_data(model_dir: str, schema: F.DatasetSchema, vocab_dir: Optional[str]) -> None:
  """Refuses to resume ``model_dir`` on data other than the data it was started on.

  Raises:
    ModelDirError: naming the model directory and the data.
  """
  stored_vocab = os.path.join(model_dir, model_io.VOCAB_DIR)
  stored = data_fingerprint(F.DatasetSchema.load(model_dir),
                            stored_vocab if vocab_dir else None)
  if stored != data_fingerprint(schema, vocab_dir):
    data = os.path.dirname(vocab_dir.rstrip("/")) if vocab_dir else "the given shards"
    raise ModelDirError(
        f"{model_dir} holds a run on other data than {data} (their schema.json or "
        "vocabularies differ): resuming would give users and items another row's "
        "embedding; choose a new --model_dir or pass --overwrite")


@contextlib.contextmanager
def run_lock(model_dir: str) -> Iterator[None]:
  """Holds ``<model_dir>/.lock`` while a run uses the directory; a second run is refused.

  The lock file holds the owner's host and process id; a lock whose process is
  gone (a killed run on this host) is taken over. On remote filesystems
  (``scheme://``), which have no exclusive create, no lock is taken.

  Raises:
    ModelDirError: another live process holds the lock.
  """
  if "://" in model_dir:
    logging.warning("%s: no run lock on a remote filesystem; do not start two runs on it",
                    model_dir)
    yield
    return
  os.makedirs(model_dir, exist_ok=True)
  path = os.path.join(model_dir, LOCK_FILE)
  owner = f"{socket.gethostname()} {os.getpid()}"
  for _ in range(2):
    try:
      descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      holder = _read_lock(path)
      if holder is not None and _alive(holder):
        raise ModelDirError(
            f"{model_dir} is in use by another run (process {holder[1]} on {holder[0]}, "
            f"{path}); wait for it to finish or choose another --model_dir") from None
      logging.warning("%s: taking over the lock of a run that is gone (%s)", model_dir,
                      " ".join(map(str, holder)) if holder else "unreadable lock")
      os.remove(path)
      continue
    with os.fdopen(descriptor, "w") as f:
      f.write(owner + "\n")
    break
  else:
    raise ModelDirError(f"{model_dir}: could not take the run lock {path}")
  try:
    yield
  finally:
    os.remove(path)


def _read_lock(path: str) -> Optional[Tuple[str, int]]:
  try:
    with open(path, encoding="utf-8") as f:
      host, pid = f.read().split()
    return host, int(pid)
  except (OSError, ValueError):
    return None


def _alive(holder: Tuple[str, int]) -> bool:
  """Whether the lock's process still runs (a lock of another host is assumed live)."""
  host, pid = holder
  if host != socket.gethostname():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _copy_tree(source: str, target: str) -> None:
  """Copies a flat directory, publishing it whole."""
  with publish.staged_directory(target, overwrite=True) as staging:
    for name in tf.io.gfile.listdir(source):
      tf.io.gfile.copy(os.path.join(source, name), os.path.join(staging, name))


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

