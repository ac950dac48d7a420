"""A run's model directory: its layout, the same-configuration check, and the resumable state.

Layout (see also :mod:`dasl_tf.model_io`): ``config.json``, ``schema.json``,
``vocab/``, ``checkpoints/`` (with ``best/``), ``logs/``, ``report/``,
``final/``, ``history.json``, ``selection.json`` (what the model chose on the
validation split, where it chooses anything) and, written last, ``metrics.json``: a run is
finished exactly when ``metrics.json`` exists.

Resume: everything the loop needs to continue (model and optimizer variables,
completed epochs, the early-stopping counters, the accumulated training time
and example count, the per-epoch history) lives in one TensorFlow checkpoint
written at the end of every epoch. TensorFlow writes a checkpoint's data files
before it updates the ``checkpoint`` index, so a process killed at any moment
leaves either the previous or the new checkpoint, never a half one.

Run lock (:func:`run_lock`): ``.lock`` holds one line ``host pid start boot``:
the holder's host name, process id, process start time (field 22 of
``/proc/<pid>/stat``, clock ticks since boot) and boot id
(``/proc/sys/kernel/random/boot_id``), ``-`` where the system has none; the
older ``host pid`` lines are read too. A lock of this host is stale when it
was written before the last reboot, or its process is gone, or its process
id now belongs to a process started at another time. A lock of another host
cannot be checked that way: it is held under a lease. Its holder touches the
file every :data:`LOCK_REFRESH_SECONDS` (1 min), and a lock untouched for
:data:`LOCK_LEASE_SECONDS` (10 min; the hosts' clocks must agree to within
that) is stale; until then the run is refused with a message naming the
holder and the file, which may be deleted to take the lock over at once. A
lock in the older format from another host is never refreshed, so it is
stale 10 min after it was written. A stale lock is taken over with a warning.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import threading
import time
from typing import Dict, Iterator, List, Mapping, NamedTuple, Optional

from absl import logging

import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf import json_io
from dasl_tf import model_io
from dasl_tf import publish

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
SELECTION_FILE = "selection.json"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT_DIR = os.path.join(CHECKPOINT_DIR, "best")
LOGS_DIR = "logs"
REPORT_DIR = "report"
LOCK_FILE = ".lock"
# A lock written on another host is stale once untouched this long; its holder
# touches it every LOCK_REFRESH_SECONDS.
LOCK_LEASE_SECONDS = 600
LOCK_REFRESH_SECONDS = 60
# Entries of a model directory that --overwrite may delete (nothing else is touched).
_RUN_ENTRIES = (model_io.CONFIG_FILE, F.SCHEMA_FILE, model_io.VOCAB_DIR,
                model_io.FINAL_DIR, CHECKPOINT_DIR, LOGS_DIR, REPORT_DIR, HISTORY_FILE,
                METRICS_FILE)


class ModelDirError(errors.DaslError, ValueError):
  """The model directory holds something other than a resumable run of this config."""


def read_json(path: str):
  """Reads a model directory's JSON file, local or remote, strictly (:func:`dasl_tf.json_io.load`).

  Raises:
    errors.DataError: the file is not valid JSON or repeats a key (naming the file).
  """
  return json_io.load(path)


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

  The lock file names its holder (host, process id, process start time, boot
  id); a lock whose holder is gone is taken over with a warning (see the
  module docstring), and the holder touches the file every
  :data:`LOCK_REFRESH_SECONDS` so that other hosts see it held. On remote
  filesystems (``scheme://``), which have no exclusive create, no lock is
  taken.

  Raises:
    ModelDirError: another run, possibly alive, holds the lock.
  """
  if "://" in model_dir:
    logging.warning("%s: no run lock on a remote filesystem; do not start two runs on it",
                    model_dir)
    yield
    return
  os.makedirs(model_dir, exist_ok=True)
  path = os.path.join(model_dir, LOCK_FILE)
  me = _this_process()
  for _ in range(2):
    try:
      descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      _take_over_if_stale(model_dir, path, _read_lock(path))
      continue
    with os.fdopen(descriptor, "w") as f:
      f.write(_lock_line(me))
    break
  else:
    raise ModelDirError(f"{model_dir}: could not take the run lock {path}: another run "
                        "took it meanwhile; wait for it to finish or choose another --model_dir")
  stop = threading.Event()
  refresher = threading.Thread(target=_refresh_lock, args=(path, stop), daemon=True,
                               name="dasl-run-lock")
  refresher.start()
  try:
    yield
  finally:
    stop.set()
    refresher.join()
    holder = _read_lock(path)
    if holder == me:
      os.remove(path)
    elif os.path.lexists(path):
      logging.warning("%s: the run lock %s was taken over by %s while this run held it; "
                      "left in place", model_dir, path, _describe(holder))
    else:
      logging.warning("%s: the run lock %s was deleted while this run held it", model_dir, path)


class _LockHolder(NamedTuple):
  """What a lock file says about the run holding it."""
  host: str
  pid: int
  start: Optional[str]  # /proc/<pid>/stat field 22: start time in clock ticks since boot.
  boot: Optional[str]  # /proc/sys/kernel/random/boot_id.


def _this_process() -> _LockHolder:
  return _LockHolder(socket.gethostname(), os.getpid(), _start_time(os.getpid()), _boot_id())


def _start_time(pid: int) -> Optional[str]:
  """The start time of process ``pid`` (field 22 of ``/proc/<pid>/stat``); None where absent."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
      # Field 2 is the command name in parentheses, which may hold spaces: count after it.
      return f.read().rpartition(")")[2].split()[22 - 3]
  except (OSError, IndexError):
    return None


def _boot_id() -> Optional[str]:
  """The id of the running kernel's boot (changes at every reboot); None where absent."""
  try:
    with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as f:
      return f.read().strip() or None
  except OSError:
    return None


def _lock_line(holder: _LockHolder) -> str:
  return " ".join([holder.host, str(holder.pid), holder.start or "-", holder.boot or "-"]) + "\n"


def _read_lock(path: str) -> Optional[_LockHolder]:
  """The holder a lock file names (``host pid start boot``, or the older ``host pid``).

  Returns None for a file that is unreadable or in neither format.
  """
  try:
    with open(path, encoding="utf-8") as f:
      fields = f.read().split()
    if len(fields) == 2:
      return _LockHolder(fields[0], int(fields[1]), None, None)
    host, pid, start, boot = fields
    return _LockHolder(host, int(pid), None if start == "-" else start,
                       None if boot == "-" else boot)
  except (OSError, ValueError):
    return None


def _describe(holder: Optional[_LockHolder]) -> str:
  return f"process {holder.pid} on {holder.host}" if holder else "an unknown run"


def _stale_reason(holder: Optional[_LockHolder], path: str) -> Optional[str]:
  """Why the lock at ``path`` of ``holder`` is stale, or None while its run may be alive."""
  if holder is None:
    return "the lock file is unreadable"
  if holder.host != socket.gethostname():
    age = time.time() - os.stat(path).st_mtime
    return (f"untouched for {age:.0f} s, more than the {LOCK_LEASE_SECONDS} s lease"
            if age > LOCK_LEASE_SECONDS else None)
  boot = _boot_id()
  if holder.boot and boot and holder.boot != boot:
    return "written before this host's last reboot"
  if holder.pid == os.getpid() and holder.start is None:
    return "its process id is now this process's"
  try:
    os.kill(holder.pid, 0)
  except ProcessLookupError:
    return "its process is gone"
  except PermissionError:
    pass  # Alive, as another user.
  start = _start_time(holder.pid)
  if holder.start and start and holder.start != start:
    return "its process id now belongs to another process"
  return None


def _take_over_if_stale(model_dir: str, path: str, holder: Optional[_LockHolder]) -> None:
  """Deletes the lock at ``path`` if its holder is gone; else refuses.

  Raises:
    ModelDirError: naming the holder, the lock file and how to take it over.
  """
  try:
    reason = _stale_reason(holder, path)
  except FileNotFoundError:
    return  # Released meanwhile.
  if reason is None:
    lease = "" if holder.host == socket.gethostname() else (
        f" (a lock of another host untouched for {LOCK_LEASE_SECONDS} s is taken over)")
    raise ModelDirError(
        f"{model_dir} is in use by another run ({_describe(holder)}, {path}); wait for it "
        f"to finish, choose another --model_dir, or, if that run is gone, delete {path}{lease}")
  logging.warning("%s: taking over the run lock %s of %s: %s", model_dir, path,
                  _describe(holder), reason)
  with contextlib.suppress(FileNotFoundError):
    os.remove(path)


def _refresh_lock(path: str, stop: threading.Event) -> None:
  """Touches the lock file every :data:`LOCK_REFRESH_SECONDS` until ``stop`` is set."""
  while not stop.wait(LOCK_REFRESH_SECONDS):
    try:
      os.utime(path)
    except OSError as e:
      logging.warning("%s: could not refresh the run lock (%s); another host may take it "
                      "over after %d s", path, e.strerror or e, LOCK_LEASE_SECONDS)


def _copy_tree(source: str, target: str) -> None:
  """Copies a flat directory, publishing it whole."""
  with publish.staged_directory(target, overwrite=True) as staging:
    files = filesystems.files_for(source)
    for name in files.listdir(source):
      files.copy(os.path.join(source, name), os.path.join(staging, name))


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

