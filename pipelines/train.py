"""``dasl-train``: train, evaluate and (optionally) export one model.

Reads the TFRecords of ``dasl-prepare``, trains until early stopping (or for the
given epochs/steps), evaluates AUC and HR@10 per domain, and writes the model
directory (``config.json``, checkpoints, ``final/weights``, ``report/``,
``metrics.json``). Run the same command again after a crash to resume it.

Configuration precedence: built-in defaults < ``--config`` JSON < flags given on
the command line. Vocabulary sizes always come from the dataset.

Examples::

  dasl-train --data_dir=/tmp/douban --model_dir=/tmp/runs/dasl
  dasl-train --data_dir=/tmp/douban --model_dir=/tmp/runs/de --variant=dasl_de --epochs=5
  dasl-train --train_files='/d/train/*' --eval_files='/d/eval/*' --schema_dir=/d \\
      --model_dir=/tmp/run --config=run.json --learning_rate=1e-3
"""
from __future__ import annotations

import subprocess
import sys
from typing import Dict, List, Optional

from absl import app
from absl import flags
from absl import logging

from dasl_tf import config as config_lib
from dasl_tf import training

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Output directory of dasl-prepare.")
_TRAIN_FILES = flags.DEFINE_list("train_files", None,
                                 "Training shards or glob patterns (instead of --data_dir).")
_EVAL_FILES = flags.DEFINE_list("eval_files", None,
                                "Evaluation shards or glob patterns (instead of --data_dir).")
_SCHEMA_DIR = flags.DEFINE_string("schema_dir", None,
                                  "Directory of schema.json (and vocab/) for --train_files.")
_FOLD = flags.DEFINE_integer("fold", None,
                             "With a k-fold dataset: evaluate on fold-<fold>, train on the rest.")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "The run's directory.", required=True)
_SERVING_MODEL_DIR = flags.DEFINE_string(
    "serving_model_dir", None, "Export base of a versioned SavedModel, written at the end.")
_CONFIG = flags.DEFINE_string("config", None, "ExperimentConfig JSON file.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Discard a previous run in --model_dir instead of resuming it.")
_VERBOSE = flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar, 2 one line per epoch.")

# Flags that override fields of the config (only when given on the command line).
_MODEL_FLAGS = {
    "variant": flags.DEFINE_string("variant", "dasl", "Model: dasl, dasl_de, dasl_da, "
                                   "single_domain or a registered baseline."),
    "embedding_dim": flags.DEFINE_integer("embedding_dim", None, "Embedding size d."),
    "dropout": flags.DEFINE_float("dropout", None, "Dropout rate of the heads."),
}
_TRAIN_FLAGS = {
    "epochs": flags.DEFINE_integer("epochs", None, "Maximum epochs (early stopping may end "
                                   "training sooner)."),
    "steps_per_epoch": flags.DEFINE_integer("steps_per_epoch", None,
                                            "Steps per epoch (default: one pass)."),
    "train_steps": flags.DEFINE_integer("train_steps", None, "Total training steps."),
    "eval_steps": flags.DEFINE_integer("eval_steps", None,
                                       "Evaluation steps (default: the whole split)."),
    "batch_size": flags.DEFINE_integer("batch_size", None, "Global batch size."),
    "learning_rate": flags.DEFINE_float("learning_rate", None, "Adam learning rate."),
    "early_stopping_patience": flags.DEFINE_integer(
        "early_stopping_patience", None, "Epochs without improvement before stopping."),
    "monitor": flags.DEFINE_string("monitor", None, "Early-stopping metric (val_auc, ...)."),
    "seed": flags.DEFINE_integer("seed", None, "Seed of initialisation and shuffling."),
    "strategy": flags.DEFINE_enum("strategy", None, list(training.STRATEGIES),
                                  "tf.distribute strategy."),
}


def _explicit(defined: Dict[str, flags.FlagHolder]) -> Dict[str, object]:
  """The flags of ``defined`` given on the command line, by config field name."""
  return {field: holder.value for field, holder in defined.items() if holder.present}


def training_data() -> training.TrainingData:
  """The data the flags point at.

  Raises:
    app.UsageError: the data flags are missing or contradictory.
  """
  explicit_files = _TRAIN_FILES.value or _EVAL_FILES.value
  if _DATA_DIR.value and explicit_files:
    raise app.UsageError("give either --data_dir or --train_files/--eval_files, not both")
  if explicit_files:
    if not (_TRAIN_FILES.value and _EVAL_FILES.value and _SCHEMA_DIR.value):
      raise app.UsageError("--train_files needs --eval_files and --schema_dir (the directory "
                           "of the dataset's schema.json)")
    return training.TrainingData.from_patterns(_TRAIN_FILES.value, _EVAL_FILES.value,
                                               _SCHEMA_DIR.value)
  if not _DATA_DIR.value:
    raise app.UsageError("--data_dir (or --train_files/--eval_files/--schema_dir) is required")
  if _FOLD.value is not None:
    return training.TrainingData.for_fold(_DATA_DIR.value, _FOLD.value)
  return training.TrainingData.from_data_dir(_DATA_DIR.value)


def exporter(serving_model_dir: Optional[str]):
  """The export step for ``train_and_evaluate``: the next version under ``serving_model_dir``.

  ``dasl-export`` runs in its own process: it defines flags of the same names
  as this command (``--model_dir``), which one absl process cannot hold twice.
  """
  if not serving_model_dir:
    return None

  def export_fn(model_dir: str) -> None:
    command = [sys.executable, "-m", "serving.export", f"--model_dir={model_dir}",
               f"--export_base={serving_model_dir}"]
    logging.info("exporting: %s", " ".join(command))
    subprocess.run(command, check=True)

  return export_fn


def run(argv: List[str]) -> None:
  """Runs the job from the parsed flags; bad input ends with ``dasl-train: error: ...``."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    _train()
  except (config_lib.ConfigError, training.ModelDirError, training.TrainingDivergedError,
          FileNotFoundError, subprocess.CalledProcessError) as e:
    sys.exit(f"dasl-train: error: {e}")


def _train() -> None:
  """Resolves the data and the config, then trains (and exports)."""
  data = training_data()
  base = config_lib.ExperimentConfig.load(_CONFIG.value) if _CONFIG.value else None
  experiment = training.resolve_config(data.schema, base, _explicit(_MODEL_FLAGS),
                                       _explicit(_TRAIN_FLAGS))
  training.train_and_evaluate(experiment, data, _MODEL_DIR.value, overwrite=_OVERWRITE.value,
                              export_fn=exporter(_SERVING_MODEL_DIR.value),
                              verbose=_VERBOSE.value)


def main() -> None:
  """Console entry point (``dasl-train``)."""
  app.run(run)


if __name__ == "__main__":
  main()
