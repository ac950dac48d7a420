"""``dasl-experiment``: DASL, its ablations and the baselines over folds or seeds, as one table.

Trains every variant on every fold of a k-fold dataset (``--folds``) or with
every seed on the train/eval split (``--seeds``), then writes, in
``--output_dir``:

* ``<variant>/<fold-k|seed-s>/``: each run's model directory (finished runs
  are reused, so an interrupted experiment resumes where it stopped),
* ``results.json``: every run's metrics,
* ``table.md`` and ``table.json``: AUC and HR@10 per domain, mean ± std over
  runs, one row per variant (the layout of the paper's Tables 4 and 5).

Example::

  dasl-experiment --data_dir=/tmp/douban --output_dir=/tmp/douban_table \\
      --variants=dasl,dasl_de,dasl_da,single_domain,din,wide_deep --seeds=1,2,3 --epochs=4
"""
from __future__ import annotations

import os
import sys
from typing import List

from absl import app
from absl import flags
from absl import logging

from dasl_tf import config as config_lib
from dasl_tf import models
from dasl_tf import report
from dasl_tf import training

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Output directory of dasl-prepare.",
                                required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where runs and tables are written.",
                                  required=True)
_VARIANTS = flags.DEFINE_list(
    "variants", ["dasl", "dasl_de", "dasl_da", "single_domain"],
    "Variants to compare (any registered model; 'all' = every registered one).")
_FOLDS = flags.DEFINE_integer("folds", 0, "Use folds 0..N-1 of a k-fold dataset (0 = use "
                              "the train/eval split with each of --seeds).")
_SEEDS = flags.DEFINE_list("seeds", ["42"], "Training seeds (with --folds: the first one).")
_CONFIG = flags.DEFINE_string("config", None, "ExperimentConfig JSON applied to every run.")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Maximum epochs per run.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Global batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", None, "Adam learning rate.")
_REPORTS = flags.DEFINE_bool("reports", False, "Write each run's report/ (plots).")
_TITLE = flags.DEFINE_string("title", "", "Caption of the table.")


def _variants() -> List[str]:
  if _VARIANTS.value == ["all"]:
    return list(models.variants())
  unknown = sorted(set(_VARIANTS.value) - set(models.variants()))
  if unknown:
    raise app.UsageError(f"unknown --variants {unknown}; registered: {models.variants()}")
  return list(_VARIANTS.value)


def run(argv: List[str]) -> None:
  """Runs the experiment from the parsed flags; bad input ends with ``dasl-experiment: error``."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    _experiment()
  except (config_lib.ConfigError, training.ModelDirError, training.TrainingDivergedError,
          FileNotFoundError) as e:
    sys.exit(f"dasl-experiment: error: {e}")


def _experiment() -> None:
  """Trains the grid and writes the runs' metrics and the tables."""
  seeds = [int(seed) for seed in _SEEDS.value]
  runs = training.grid_runs(_DATA_DIR.value, _variants(), _FOLDS.value, seeds)
  base = config_lib.ExperimentConfig.load(_CONFIG.value) if _CONFIG.value else None
  overrides = {name: flag.value for name, flag in (
      ("epochs", _EPOCHS), ("batch_size", _BATCH_SIZE), ("learning_rate", _LEARNING_RATE))
               if flag.present}
  results = training.run_grid(runs, _OUTPUT_DIR.value, base, overrides, _REPORTS.value)
  summary = report.summarize_runs(results)
  domain_names = runs[0].data.schema.domain_names
  table = report.experiment_table_markdown(summary, domain_names, _TITLE.value)
  training.write_json_atomically(os.path.join(_OUTPUT_DIR.value, "results.json"), results)
  training.write_json_atomically(os.path.join(_OUTPUT_DIR.value, "table.json"), summary)
  table_path = os.path.join(_OUTPUT_DIR.value, "table.md")
  training.write_text_atomically(table_path, table)
  logging.info("wrote %s", table_path)
  print(table)


def main() -> None:
  """Console entry point (``dasl-experiment``)."""
  app.run(run)


if __name__ == "__main__":
  main()
