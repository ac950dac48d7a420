"""``dasl-train``: train, select on validation, test once and (optionally) export one model.

Reads the TFRecords of ``dasl-prepare``, trains until early stopping on the
validation split (or for the given epochs/steps), evaluates AUC and HR@10 per
domain and per slice on the test split, and writes the model directory
(``config.json``, checkpoints, ``final/weights``, ``report/``,
``metrics.json``). Run the same command again after a crash to resume it.

Configuration precedence: built-in defaults < ``--experiment`` preset
(:mod:`dasl_tf.presets`) < ``--config`` JSON < flags given on the command line.
Vocabulary sizes always come from the dataset.

Examples::

  dasl-train --data_dir=/tmp/douban --model_dir=/tmp/runs/dasl
  dasl-train --data_dir=/tmp/douban --model_dir=/tmp/runs/de --variant=dasl_de --epochs=5
  dasl-train --data_dir=/tmp/ciao --model_dir=/tmp/runs/paper --experiment=paper
  dasl-train --train_files='/d/train/*' --validation_files='/d/validation/*' \\
      --test_files='/d/test/*' --schema_dir=/d --model_dir=/tmp/run --config=run.json
"""
from __future__ import annotations

from typing import Dict, List, Optional

from absl import app
from absl import flags

from dasl_tf import use_keras2  # noqa: F401  pylint: disable=unused-import  (first: TFRS needs Keras 2)
from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import distribute
from dasl_tf import presets
from dasl_tf import filesystems
from dasl_tf import training
from dasl_tf.pipelines import cli
from dasl_tf.serving import export as export_lib

FLAGS = flags.FLAGS
# Flags that override fields of the config (only when given on the command line).
_MODEL_FIELDS = ("variant", "embedding_dim", "dropout", "ranking_loss", "ranking_weight")
_TRAIN_FIELDS = ("epochs", "steps_per_epoch", "train_steps", "eval_steps", "batch_size",
                 "learning_rate", "early_stopping_patience", "monitor", "train_negatives",
                 "negative_sampling", "negative_sampling_alpha", "seed", "strategy")


def define_flags() -> None:
  """Defines the flags of ``dasl-train`` (called once, by :func:`main`)."""
  with cli.key_flags():
    flags.DEFINE_string("data_dir", None, "Output directory of dasl-prepare.")
    flags.DEFINE_list("train_files", None,
                      "Training shards or glob patterns (instead of --data_dir).")
    flags.DEFINE_list("validation_files", None, "Validation shards or glob patterns "
                      "(early stopping and best-epoch selection watch them).")
    flags.DEFINE_list("test_files", None, "Test shards or glob patterns (scored once, after "
                      "training, for metrics.json).")
    flags.DEFINE_string("schema_dir", None,
                        "Directory of schema.json (and vocab/) for --train_files.")
    flags.DEFINE_integer("fold", None, "With a k-fold dataset: test on fold-<fold>, validate "
                         "on the next fold, train on the rest.")
    flags.DEFINE_string("model_dir", None, "The run's directory.")
    flags.DEFINE_string("serving_model_dir", None,
                        "Export base of a versioned SavedModel, written at the end.")
    flags.DEFINE_enum("experiment", None, sorted(presets.PRESETS),
                      "A named setting of dasl_tf/presets.py, applied over the defaults "
                      "(--config and flags override it): "
                      + "; ".join(f"{name}: {preset.description}"
                                  for name, preset in sorted(presets.PRESETS.items())) + ".")
    flags.DEFINE_string("config", None, "ExperimentConfig JSON file (over --experiment).")
    flags.DEFINE_bool("overwrite", False,
                      "Discard a previous run in --model_dir instead of resuming it.")
    flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar, 2 one line per epoch.")
    flags.DEFINE_string("variant", "dasl", "Model: dasl, dasl_de, dasl_da, single_domain or a "
                        "registered baseline (popularity, item_knn, pop_item_knn, sasrec, din, "
                        "...; dasl-experiment --variants=all lists every one).")
    flags.DEFINE_integer("embedding_dim", None, "Embedding size d.")
    flags.DEFINE_float("dropout", None, "Dropout rate of the heads.")
    flags.DEFINE_enum("ranking_loss", None, list(config_lib.RANKING_LOSSES),
                      "Top-n loss over the sampled training negatives.")
    flags.DEFINE_float("ranking_weight", None, "Weight of the ranking loss next to the CTR loss.")
    flags.DEFINE_integer("epochs", None,
                         "Maximum epochs (early stopping may end training sooner).")
    flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass).")
    flags.DEFINE_integer("train_steps", None, "Total training steps.")
    flags.DEFINE_integer("eval_steps", None, "Validation and test steps (default: the whole "
                         "split).")
    flags.DEFINE_integer("batch_size", None, "Global batch size.")
    flags.DEFINE_float("learning_rate", None, "Adam learning rate.")
    flags.DEFINE_integer("early_stopping_patience", None,
                         "Epochs without improvement before stopping.")
    flags.DEFINE_string("monitor", None, "Early-stopping metric on the validation split "
                        "(val_auc, val_auc_a, val_loss, ...).")
    flags.DEFINE_integer("train_negatives", None, "Sampled negatives per training example for "
                         "the ranking loss: -1 as many as the data carries (default; 16 fresh "
                         "draws when it carries none), 0 CTR loss only.")
    flags.DEFINE_enum("negative_sampling", None, list(config_lib.NEGATIVE_SAMPLINGS),
                      "Training negatives: drawn fresh every epoch (popularity, log-q "
                      "corrected: the default; or uniform) or those dasl-prepare stored.")
    flags.DEFINE_float("negative_sampling_alpha", None,
                       "Exponent of popularity sampling: train count ** alpha.")
    flags.DEFINE_integer("seed", None, "Seed of initialisation and shuffling.")
    flags.DEFINE_enum("strategy", None, list(distribute.STRATEGIES), "tf.distribute strategy.")
  flags.mark_flag_as_required("model_dir")


def _explicit(fields) -> Dict[str, object]:
  """The flags named ``fields`` that were given on the command line, by config field name."""
  return {field: FLAGS[field].value for field in fields if FLAGS[field].present}


def training_data() -> training.TrainingData:
  """The data the flags point at.

  Raises:
    app.UsageError: the data flags are missing or contradictory.
  """
  file_flags = (FLAGS.train_files, FLAGS.validation_files, FLAGS.test_files)
  if FLAGS.data_dir and any(file_flags):
    raise app.UsageError("give either --data_dir or --train_files/--validation_files/"
                         "--test_files, not both")
  if any(file_flags):
    if not (all(file_flags) and FLAGS.schema_dir):
      raise app.UsageError("--train_files needs --validation_files, --test_files and "
                           "--schema_dir (the directory of the dataset's schema.json)")
    return training.TrainingData.from_patterns(*file_flags, FLAGS.schema_dir)
  if not FLAGS.data_dir:
    raise app.UsageError("--data_dir (or --train_files/--validation_files/--test_files/"
                         "--schema_dir) is required")
  if FLAGS.fold is not None:
    return training.TrainingData.for_fold(FLAGS.data_dir, FLAGS.fold)
  return training.TrainingData.from_data_dir(FLAGS.data_dir)


def exporter(serving_model_dir: Optional[str]):
  """The export step for ``train_and_evaluate``: the next version under ``serving_model_dir``."""
  if not serving_model_dir:
    return None
  return lambda model_dir: export_lib.export_model(model_dir, serving_model_dir)


def run(argv: List[str]) -> None:
  """Runs the job from the parsed flags (errors: :func:`~dasl_tf.pipelines.cli.run_command`)."""
  cli.no_arguments(argv)
  _train()


def _train() -> None:
  """Resolves the data and the config, then trains (and exports)."""
  filesystems.register(FLAGS.data_dir, FLAGS.schema_dir, FLAGS.model_dir,
                       FLAGS.serving_model_dir, FLAGS.config, *(FLAGS.train_files or ()),
                       *(FLAGS.validation_files or ()), *(FLAGS.test_files or ()))
  data = training_data()
  base = presets.preset_config(FLAGS.experiment) if FLAGS.experiment else None
  if FLAGS.config:
    base = config_lib.ExperimentConfig.load(FLAGS.config, base)
  experiment = config_resolution.resolve_config(data.schema, base, _explicit(_MODEL_FIELDS),
                                                _explicit(_TRAIN_FIELDS))
  training.train_and_evaluate(experiment, data, FLAGS.model_dir, overwrite=FLAGS.overwrite,
                              export_fn=exporter(FLAGS.serving_model_dir),
                              verbose=FLAGS.verbose)


def main() -> None:
  """Console entry point (``dasl-train``)."""
  define_flags()
  cli.run_command("dasl-train", run)


if __name__ == "__main__":
  main()
