"""The batch training job: train, select the epoch on validation, test once, write ``metrics.json``.

One function, :func:`train_and_evaluate`, is the job: ``dasl-train``, the TFX
``run_fn`` and ``dasl-experiment`` all call it. It

1. resolves the distribution strategy (:mod:`dasl_tf.distribute`; the chief
   writes the model directory, other workers write to a scratch directory
   they delete at the end),
2. prepares the model directory (:mod:`dasl_tf.model_dir`), refusing a
   directory that holds a run with another configuration,
3. restores the last checkpoint if there is one, then trains with ``fit``
   (:mod:`dasl_tf.callbacks`): TensorBoard logs per head, early stopping and
   best-epoch selection on the **validation** split, and a divergence guard;
   a model that does not learn by gradients (``popularity``) is fitted by
   one ``adapt`` pass over the training split instead,
4. restores the best epoch's weights; a model that chooses something on the
   **validation** split (DASL's top-n part weights, :mod:`dasl_tf.term_weights`;
   ``pop_item_knn``'s blend weight) chooses it (``selection.json``),
5. evaluates the final weights once on the **test**
   split (AUC and HR@10 per domain and per slice: the ``metrics.json`` keys)
   and on the validation split (the same keys prefixed ``val_``), writes
   ``final/weights``, the report and ``history.json``, runs the export hook
   and, last of all, writes ``metrics.json``.

No choice of the job (early stopping, best epoch, the choices on validation) reads
the test split: it is opened only after training, for the final figures. A run is finished exactly
when ``metrics.json`` exists; it is published after everything else.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import tensorflow as tf
import tf_keras

from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
from dasl_tf import callbacks as callbacks_lib
from dasl_tf import catalogue as catalogue_lib
from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import data as data_lib
from dasl_tf import distribute
from dasl_tf import errors
from dasl_tf import filesystems
from dasl_tf import json_io
from dasl_tf import features as F
from dasl_tf import metrics as metrics_lib
from dasl_tf import model_dir as model_dir_lib
from dasl_tf import model_io
from dasl_tf import negatives as negatives_lib
from dasl_tf import publish
from dasl_tf import report as report_lib
from dasl_tf import run_inputs
from dasl_tf.run_inputs import TrainingData
from dasl_tf.model_dir import METRICS_FILE

VALIDATION_PREFIX = "val_"


class TrainingDivergedError(errors.DaslError, RuntimeError):
  """The training loss became NaN or infinite."""


def default_optimizer(train: config_lib.TrainConfig) -> tf_keras.optimizers.Optimizer:
  """Adam at ``train.learning_rate``, each variable's gradient clipped to ``train.clipnorm``."""
  return tf_keras.optimizers.Adam(learning_rate=train.learning_rate,
                                  clipnorm=train.clipnorm or None)


@dataclasses.dataclass(frozen=True)
class _Job:
  """One run of :func:`train_and_evaluate`: what it reads, where it writes, what it calls."""
  experiment: config_lib.ExperimentConfig
  data: TrainingData
  strategy: tf.distribute.Strategy
  chief: bool
  model_dir: str
  write_dir: str
  export_fn: Optional[Callable[[str], None]]
  write_report: bool
  verbose: int
  optimizer_fn: Callable[[config_lib.TrainConfig], tf_keras.optimizers.Optimizer]
  callbacks: Tuple[tf_keras.callbacks.Callback, ...]
  extra_metrics: Mapping[str, "MetricFn"]

  @property
  def train(self) -> config_lib.TrainConfig:
    return self.experiment.train

  def input(self, files: Sequence[str], **kwargs) -> tf.data.Dataset:
    """:func:`~dasl_tf.run_inputs.input_batches` of this run's feature spec, config and strategy."""
    return run_inputs.input_batches(files, self.data.schema.feature_spec, self.train,
                                    self.strategy, **kwargs)


# A user metric of the final model: (model, batches of a split with its stored negatives)
# -> one number, written to metrics.json under its name (test split) and val_<name>.
MetricFn = Callable[[tf_keras.Model, tf.data.Dataset], float]


def _require_examples(data: TrainingData) -> None:
  """Refuses a split without examples, before the model directory is touched.

  Raises:
    DataError: naming the split and its shards.
  """
  for split, files in (("training", data.train_files), ("validation", data.validation_files),
                       ("test", data.test_files)):
    if not files or not data_lib.has_records(files):
      raise errors.DataError(
          f"the {split} split has no examples (shards: {list(files) or 'none'}); re-run "
          "dasl-prepare on data with enough interactions per user, or point the split at "
          "other files")


def train_and_evaluate(experiment: config_lib.ExperimentConfig,
                       data: TrainingData,
                       model_dir: str,
                       overwrite: bool = False,
                       export_fn: Optional[Callable[[str], None]] = None,
                       write_report: bool = True,
                       verbose: int = 1,
                       optimizer_fn: Optional[Callable[[config_lib.TrainConfig],
                                                       tf_keras.optimizers.Optimizer]] = None,
                       callbacks: Sequence[tf_keras.callbacks.Callback] = (),
                       extra_metrics: Optional[Mapping[str, MetricFn]] = None
                       ) -> Dict[str, float]:
  """Trains, selects on validation, tests and saves one run; resumes it if possible.

  Args:
    experiment: the resolved configuration (see
      :func:`~dasl_tf.config_resolution.resolve_config`).
    data: the training, validation and test shards and the dataset's schema.
    model_dir: the run's directory (layout in :mod:`dasl_tf.model_dir`).
    overwrite: discard a previous run in ``model_dir`` instead of resuming it.
    export_fn: called by the chief with ``model_dir`` once the final weights are
      written, before ``metrics.json`` (for example the SavedModel export).
    write_report: write ``report/`` (plots and ``report.md``).
    verbose: ``fit``'s verbosity: 0 silent, 1 progress bar, 2 one line per epoch.
    optimizer_fn: builds the optimizer from the run's ``TrainConfig`` (default:
      :func:`default_optimizer`); a resumed run must be given the same one,
      since its checkpoint holds the optimizer's slots.
    callbacks: Keras callbacks added to the job's own (metrics, divergence
      guard, early stopping, checkpoints, TensorBoard), called after them in
      every epoch's ``fit``.
    extra_metrics: name -> ``fn(model, dataset)``: each is called with the
      final model on the test split and on the validation split (batches with
      their stored negatives, as the built-in metrics read them) and written to
      ``metrics.json`` as ``name`` and ``val_name``; a name may not shadow a
      built-in key.

  Returns:
    The metrics written to ``metrics.json``: the test split's ``auc_a``,
    ``auc_b``, ``hr10_a``, ``hr10_b`` (and ``auc_c``, ... of a dataset of
    K > 2 domains) and their per-slice variants (see
    :mod:`dasl_tf.metrics`), the same on the validation split prefixed
    ``val_``, ``loss_a``, ``loss_b``, ... (validation, best epoch),
    ``train_examples``, ``train_seconds``, ``examples_per_second``,
    ``epochs`` and ``best_epoch``; a metric without examples is None
    (``null`` in the file).

  Raises:
    DataError: a split has no examples.
    ModelDirError: ``model_dir`` holds a run with another configuration or on
      other data, or another run is using it.
    ConfigError: an export is asked for but the data has no vocabularies.
    TrainingDivergedError: the loss became NaN or infinite.
  """
  config_resolution.validate_config(experiment)
  filesystems.register(model_dir)
  _require_examples(data)
  if export_fn is not None and data.vocab_dir is None:
    raise config_lib.ConfigError(
        "exporting needs the dataset's vocab/ (raw ids -> rows), and the training data "
        "has none: give the dasl-prepare output directory (or a --schema_dir holding vocab/)")
  strategy = distribute.make_strategy(experiment.train.strategy)
  chief = distribute.is_chief(strategy)
  with model_dir_lib.run_lock(model_dir) if chief else contextlib.nullcontext():
    if chief:
      finished = model_dir_lib.prepare_model_dir(model_dir, experiment, data.schema,
                                                 data.vocab_dir, overwrite)
    else:
      finished = filesystems.files_for(model_dir).exists(os.path.join(model_dir, METRICS_FILE))
    if finished:
      logging.info("%s already holds the finished run; nothing to do", model_dir)
      return model_dir_lib.read_json(os.path.join(model_dir, METRICS_FILE))

    write_dir = model_dir if chief else tempfile.mkdtemp(prefix="dasl-worker-")
    job = _Job(experiment, data, strategy, chief, model_dir, write_dir, export_fn,
               write_report, verbose, optimizer_fn or default_optimizer, tuple(callbacks),
               dict(extra_metrics or {}))
    try:
      return _run(job)
    finally:
      if not chief:
        filesystems.files_for(write_dir).rmtree(write_dir)


def _run(job: _Job) -> Dict[str, float]:
  """The body of :func:`train_and_evaluate` once the model directory is ready."""
  experiment, data, model_dir = job.experiment, job.data, job.model_dir
  tf_keras.utils.set_random_seed(job.train.seed)
  # The run's one pass over the training split besides the epochs: it checks each shard
  # and keeps the columns every setup step reads (priors, tables, negatives, catalogue).
  training_split = data_lib.SplitColumns.read(data.train_files, data.schema.feature_spec)
  schedule = run_inputs.schedule(job.train, training_split.num_examples)

  with job.strategy.scope():
    model = model_io.build_model(experiment.model)
    optimizer = job.optimizer_fn(job.train)
    model.compile(optimizer=optimizer)
    optimizer.build(model.trainable_variables)
  state = model_dir_lib.TrainingState(
      model, os.path.join(job.write_dir, model_dir_lib.CHECKPOINT_DIR),
      os.path.join(job.write_dir, model_dir_lib.BEST_CHECKPOINT_DIR))
  if state.restore(os.path.join(model_dir, model_dir_lib.CHECKPOINT_DIR)):
    logging.info("resuming %s after epoch %d (%d examples trained on so far)", model_dir,
                 int(state.epoch.numpy()), int(state.train_examples.numpy()))

  if model.learns:
    _fit(job, model, state, schedule, training_split)
    if state.diverged:
      raise TrainingDivergedError(f"{model_dir}: {state.diverged}")
    if not state.restore_best(os.path.join(model_dir, model_dir_lib.BEST_CHECKPOINT_DIR)):
      logging.warning("%s has no best-epoch checkpoint; evaluating the last weights", model_dir)
  else:
    logging.info("%s does not learn by gradients: fitting it with one pass over the training "
                 "split", experiment.model.variant)
    model.adapt(training_split.dataset(job.train.batch_size))
  trained_catalogue = catalogue_lib.FullCatalogue.from_columns(training_split,
                                                               data.schema.num_items)
  selection = {}
  if hasattr(model, "select_on_validation"):  # its choices (weights of its score) read validation
    selection = model.select_on_validation(
        job.input(data.validation_files, with_negatives=True), trained_catalogue, job.train)

  metrics = _final_metrics(job, model, state, trained_catalogue)
  model_io.save_final_weights(model, job.write_dir)  # every worker saves (collective ops)
  if not job.chief:
    return metrics
  if job.write_report:
    report_lib.write_report(model, job.input(data.test_files), state.history, metrics,
                            os.path.join(model_dir, model_dir_lib.REPORT_DIR),
                            data.schema.domain_names)
  publish.write_json(os.path.join(model_dir, model_dir_lib.HISTORY_FILE), state.history)
  if selection:
    publish.write_json(os.path.join(model_dir, model_dir_lib.SELECTION_FILE), selection)
  if job.export_fn is not None:
    job.export_fn(model_dir)
  publish.write_json(os.path.join(model_dir, METRICS_FILE), metrics)
  heads = F.domain_suffixes(data.schema.num_domains)
  logging.info("finished %s: %s", model_dir,
               ", ".join(f"{k}={metrics[k]}" for k in
                         [f"{m}_{h}" for m in ("auc", "hr10") for h in heads]
                         + ["examples_per_second"]))
  return metrics


def _fit(job: _Job, model: tf_keras.Model, state: model_dir_lib.TrainingState,
         schedule: run_inputs.Schedule, training_split: data_lib.SplitColumns) -> None:
  """Trains with ``fit`` from the restored epoch on; validation drives early stopping."""
  experiment, data, strategy, train = job.experiment, job.data, job.strategy, job.train
  initial_epoch = int(state.epoch.numpy())
  if bool(state.finished.numpy()) or initial_epoch >= schedule.epochs:
    return
  spec = data.schema.feature_spec
  if initial_epoch == 0 and experiment.model.ranking_loss != config_lib.NO_RANKING_LOSS:
    logging.info("starting the item priors at the training split's click counts")
    model.adapt(training_split.dataset(train.batch_size))
  validation_ds = run_inputs.validation_dataset(experiment, data, strategy)
  negatives = negatives_lib.TrainingNegatives.for_run(train, data.schema, training_split,
                                                      data.schema_dir)
  logging.info("training %s on %d examples (%d per epoch, %d %s sampled negatives each), "
               "epochs %d..%d, strategy %s with %d replica(s)", experiment.model.variant,
               training_split.num_examples, schedule.examples_per_epoch,
               run_inputs.train_negatives_per_example(train, spec),
               train.negative_sampling, initial_epoch + 1, schedule.epochs, train.strategy,
               strategy.num_replicas_in_sync)
  callbacks = [
      callbacks_lib.EpochMetrics(strategy.num_replicas_in_sync),
      callbacks_lib.DivergenceGuard(state, train.learning_rate),
      callbacks_lib.ResumableEarlyStopping(state, train.monitor, train.early_stopping_patience),
      callbacks_lib.EpochCheckpoint(state, schedule.examples_per_epoch),
      tf_keras.callbacks.TensorBoard(os.path.join(job.write_dir, model_dir_lib.LOGS_DIR),
                                     write_graph=False, profile_batch=0),
      *job.callbacks,
  ]
  # One `fit` per epoch, each on the epoch's own shuffle and negatives: epoch e's order and
  # draws depend on (seed, e) alone, so a run resumed at e sees what an uninterrupted run would.
  for epoch in range(initial_epoch, schedule.epochs):
    train_ds = job.input(data.train_files, training=True, repeat=schedule.repeat,
                         seed=_epoch_seed(train.seed, epoch), negatives=negatives)
    model.fit(train_ds, validation_data=validation_ds, epochs=epoch + 1, initial_epoch=epoch,
              steps_per_epoch=schedule.steps_per_epoch,
              validation_steps=train.eval_steps or None, callbacks=callbacks,
              verbose=job.verbose)
    if model.stop_training or bool(state.finished.numpy()):
      break


def _epoch_seed(seed: int, epoch: int) -> int:
  """The shuffle and negative-draw seed of one epoch: a function of the seed and epoch only."""
  return (seed * 1_000_003 + epoch) % 2**31


def _final_metrics(job: _Job, model: tf_keras.Model, state: model_dir_lib.TrainingState,
                   trained: catalogue_lib.FullCatalogue) -> Dict[str, float]:
  """Test and validation metrics of the final weights plus the run's accounting.

  The per-head losses are those of the best epoch's validation pass, which
  ran on the same weights. The full-catalogue figures of the test split
  exclude what users touched in the training and validation splits; those of
  the validation split, what they touched in training (the validation targets
  are what it predicts).
  """
  data, spec, train = job.data, job.data.schema.feature_spec, job.train
  catalogues = {"": trained.union(catalogue_lib.FullCatalogue.from_files(
                    data.validation_files, spec, data.schema.num_items)),
                VALIDATION_PREFIX: trained}
  metrics = {}
  scorer = metrics_lib.EvaluationScorer(model)  # one trace for both splits
  for prefix, files in (("", data.test_files), (VALIDATION_PREFIX, data.validation_files)):
    dataset = job.input(files, with_negatives=True)
    for key, value in metrics_lib.evaluate_model(
        model, dataset, max_batches=train.eval_steps or None, catalogue=catalogues[prefix],
        full_catalogue_positives=train.full_catalogue_positives, seed=train.seed,
        scorer=scorer).items():
      metrics[prefix + key] = float(value)
    for name, metric_fn in job.extra_metrics.items():
      if prefix + name in metrics:
        raise config_lib.ConfigError(f"extra metric {name!r} would replace the built-in "
                                     f"metrics.json key {prefix + name!r}; rename it")
      metrics[prefix + name] = float(metric_fn(model, dataset))
  best_epoch = int(state.best_epoch.numpy())
  best_logs = state.history[best_epoch - 1] if best_epoch else {}
  for head in F.domain_suffixes(data.schema.num_domains):
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
  # JSON has no NaN: a metric without examples (an empty slice) is null.
  return json_io.finite_or_null(metrics)
