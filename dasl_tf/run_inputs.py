"""What a training run reads: its shards, and the batches of each pass over them.

:class:`TrainingData` names the shards of the three splits and the dataset's
schema; :func:`input_batches` makes the ``tf.data`` batches of one pass for a
``tf.distribute`` strategy (training, with the epoch's shuffle and fresh
negatives; validation, with the ranking negatives; evaluation), and
:func:`schedule` how many steps of how many examples make the run's epochs.
:mod:`dasl_tf.training` runs the job over them.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional, Sequence, Tuple

import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import data as data_lib
from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf import model_io
from dasl_tf import negatives as negatives_lib


@dataclasses.dataclass(frozen=True)
class TrainingData:
  """Where a run reads its examples.

  Attributes:
    train_files: TFRecord shards trained on.
    validation_files: shards that early stopping and best-epoch selection watch.
    test_files: shards scored once, after training, for ``metrics.json``.
    schema: the dataset's schema (feature spec and vocabulary sizes).
    vocab_dir: raw-id vocabularies copied into the model directory, if any.
    schema_dir: the directory of ``schema.json`` (and ``dasl-prepare``'s
      ``stats.json``, which says how stored training negatives were drawn).
  """
  train_files: Tuple[str, ...]
  validation_files: Tuple[str, ...]
  test_files: Tuple[str, ...]
  schema: F.DatasetSchema
  vocab_dir: Optional[str] = None
  schema_dir: Optional[str] = None

  @classmethod
  def from_data_dir(cls, data_dir: str) -> "TrainingData":
    """The ``train``, ``validation`` and ``test`` splits of a ``dasl-prepare`` output.

    Raises:
      FileNotFoundError: the directory has no ``vocab/`` (not a complete output).
    """
    if _vocab_dir_of(data_dir) is None:
      raise FileNotFoundError(f"{data_dir} has no {model_io.VOCAB_DIR}/: not a complete "
                              "dasl-prepare output (re-run dasl-prepare)")
    return cls(train_files=tuple(data_lib.split_files(data_dir, "train")),
               validation_files=tuple(data_lib.split_files(data_dir, "validation")),
               test_files=tuple(data_lib.split_files(data_dir, "test")),
               schema=F.DatasetSchema.load(data_dir),
               vocab_dir=_vocab_dir_of(data_dir), schema_dir=data_dir)

  @classmethod
  def for_fold(cls, data_dir: str, fold: int) -> "TrainingData":
    """Fold ``fold`` of a k-fold dataset: test on it, validate on the next, train on the rest.

    Raises:
      errors.DataError: the dataset has no such fold or fewer than 3 folds.
    """
    schema = F.DatasetSchema.load(data_dir)
    folds = sorted(name for name in schema.splits if name.startswith("fold-"))
    test_split = f"fold-{fold}"
    if test_split not in folds:
      raise errors.DataError(f"{data_dir}: no split {test_split!r}; the dataset has folds {folds} "
                       "(prepare it with k-fold splits to use --fold)")
    if len(folds) < 3:
      raise errors.DataError(f"{data_dir}: {len(folds)} folds; k-fold runs need at least 3 (train, "
                       "validation and test folds)")
    validation_split = f"fold-{(fold + 1) % len(folds)}"
    train_files = [f for name in folds if name not in (test_split, validation_split)
                   for f in data_lib.split_files(data_dir, name)]
    return cls(train_files=tuple(train_files),
               validation_files=tuple(data_lib.split_files(data_dir, validation_split)),
               test_files=tuple(data_lib.split_files(data_dir, test_split)),
               schema=schema, vocab_dir=_vocab_dir_of(data_dir), schema_dir=data_dir)

  @classmethod
  def from_patterns(cls, train_patterns: Sequence[str], validation_patterns: Sequence[str],
                    test_patterns: Sequence[str], schema_dir: str) -> "TrainingData":
    """Explicit shard patterns, with the ``schema.json`` (and ``vocab/``) of ``schema_dir``."""
    return cls(train_files=tuple(data_lib.resolve_files(list(train_patterns))),
               validation_files=tuple(data_lib.resolve_files(list(validation_patterns))),
               test_files=tuple(data_lib.resolve_files(list(test_patterns))),
               schema=F.DatasetSchema.load(schema_dir),
               vocab_dir=_vocab_dir_of(schema_dir), schema_dir=schema_dir)


def _vocab_dir_of(data_dir: str) -> Optional[str]:
  path = os.path.join(data_dir, model_io.VOCAB_DIR)
  return path if filesystems.files_for(path).isdir(path) else None


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How many epochs of how many steps, derived from the TrainConfig and the data size."""
  epochs: int
  steps_per_epoch: Optional[int]
  repeat: bool
  examples_per_epoch: int


def schedule(train: config_lib.TrainConfig, num_train_examples: int) -> Schedule:
  full_pass_steps = max(1, math.ceil(num_train_examples / train.batch_size))
  if train.train_steps:
    steps = train.steps_per_epoch or min(train.train_steps, full_pass_steps)
    return Schedule(epochs=math.ceil(train.train_steps / steps), steps_per_epoch=steps,
                     repeat=True, examples_per_epoch=steps * train.batch_size)
  if train.steps_per_epoch:
    return Schedule(epochs=train.epochs, steps_per_epoch=train.steps_per_epoch, repeat=True,
                     examples_per_epoch=train.steps_per_epoch * train.batch_size)
  return Schedule(epochs=train.epochs, steps_per_epoch=None, repeat=False,
                   examples_per_epoch=num_train_examples)


def input_batches(files: Sequence[str], spec: F.FeatureSpec, train: config_lib.TrainConfig,
           strategy: tf.distribute.Strategy, training: bool = False,
           with_negatives: bool = False, repeat: bool = False,
           ranking_negatives: bool = False, seed: Optional[int] = None,
           negatives: Optional[negatives_lib.TrainingNegatives] = None) -> tf.data.Dataset:
  """Batches of a split for ``strategy``; ``seed`` (default ``train.seed``) seeds the shuffle.

  Training batches carry the stored ``train_negatives`` when
  ``train.negative_sampling`` is "stored"; ``negatives``, the run's
  :class:`~dasl_tf.negatives.TrainingNegatives`, then draws fresh ones (or
  adds the stored ones' log q) with the same ``seed``, so an epoch's draws are
  a function of (seed, epoch) like its shuffle.

  With ``ranking_negatives`` (the per-epoch validation pass), the first ``k``
  stored evaluation ``negatives`` stand in for ``train_negatives``, so the
  validation loss is the training objective, ranking term included.

  Raises:
    ValueError: training batches need fresh negatives and ``negatives`` is None.
  """
  num_ranking = train_negatives_per_example(train, spec)
  ranking_negatives = ranking_negatives and num_ranking > 0 and spec.num_negatives >= num_ranking
  stored = train.negative_sampling == "stored"
  if training and num_ranking and not stored and negatives is None:
    raise ValueError(f"train.negative_sampling={train.negative_sampling!r} draws the training "
                     "negatives in the input pipeline: pass the run's TrainingNegatives")
  seed = train.seed if seed is None else seed
  dataset = data_lib.make_dataset(
      list(files), spec, train.batch_size, training=training,
      shuffle_buffer=train.shuffle_buffer, seed=seed,
      with_negatives=with_negatives or ranking_negatives,
      train_negatives=num_ranking if training and stored else 0, repeat=repeat)
  if training and negatives is not None:
    dataset = negatives.apply(dataset, seed)
  if ranking_negatives:
    def as_ranking_negatives(features, labels):
      features = dict(features)
      negatives = features[F.NEGATIVES] if with_negatives else features.pop(F.NEGATIVES)
      features[F.TRAIN_NEGATIVES] = negatives[:, :num_ranking]
      return features, labels
    dataset = dataset.map(as_ranking_negatives)
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
  return dataset


def validation_dataset(experiment: config_lib.ExperimentConfig, data: TrainingData,
                       strategy: Optional[tf.distribute.Strategy] = None) -> tf.data.Dataset:
  """The batches of each epoch's validation pass, whose ``val_*`` figures early stopping reads."""
  return input_batches(data.validation_files, data.schema.feature_spec, experiment.train,
                strategy or tf.distribute.get_strategy(), ranking_negatives=True)


def train_negatives_per_example(train: config_lib.TrainConfig, spec: F.FeatureSpec) -> int:
  """Sampled negatives per training example the ranking loss sees (0: CTR loss only).

  Raises:
    ConfigError: more "stored" negatives asked for than the data carries.
  """
  count = negatives_lib.per_example(train, spec)
  if train.negative_sampling == "stored" and count > spec.num_train_negatives:
    raise config_lib.ConfigError(
        f"train.train_negatives={train.train_negatives}, but the training data carries "
        f"{spec.num_train_negatives} per example; prepare it with dasl-prepare "
        f"--train_negatives={train.train_negatives}, ask for fewer, or draw them fresh "
        "(train.negative_sampling='uniform')")
  return count
