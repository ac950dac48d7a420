"""Callbacks of the training loop: exact epoch metrics, divergence guard, early stopping, checkpoints.

Every counter the callbacks keep lives in the :class:`~dasl_tf.model_dir.TrainingState`
checkpoint, so a killed run resumes with the same early-stopping state.
"""
from __future__ import annotations

import math
import time
from typing import Dict, Optional

from absl import logging
import numpy as np
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.model_dir import TrainingState

class EpochMetrics(tf_keras.callbacks.Callback):
  """Completes the epoch logs: exact values across replicas, and the mean AUC of both heads.

  With several replicas, ``fit`` sums each replica's *local* metric results
  (an AUC of 1.7 on two workers). This callback replaces them with the
  metrics' values aggregated across replicas (read in cross-replica context,
  in the same order on every worker): the training metrics just before the
  validation pass resets them, the validation metrics at the epoch's end.
  It then adds ``auc`` and ``val_auc``, the mean of the heads' AUCs.
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
      heads = []  # auc_a, auc_b, ...: every head's, in domain order
      while f"{prefix}auc_{F.domain_suffix(len(heads))}" in logs:
        heads.append(float(logs[f"{prefix}auc_{F.domain_suffix(len(heads))}"]))
      if len(heads) >= 2:
        logs[f"{prefix}auc"] = sum(heads) / len(heads)


class DivergenceGuard(tf_keras.callbacks.Callback):
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


class ResumableEarlyStopping(tf_keras.callbacks.Callback):
  """Early stopping whose counters live in the :class:`TrainingState`, so they survive a restart.

  Saves the best epoch's weights whenever the monitored metric improves.
  """

  def __init__(self, state: TrainingState, monitor: str, patience: int):
    super().__init__()
    self._state = state
    self._monitor = monitor
    self._patience = patience
    self._mode = config_lib.monitor_mode(monitor)

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


class EpochCheckpoint(tf_keras.callbacks.Callback):
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

