"""``dasl-experiment``: DASL, its ablations and the baselines over folds or seeds, as one table.

Trains every variant on every fold of a k-fold dataset (``--folds``) or with
every seed on the train/validation/test split (``--seeds``), then writes, in
``--output_dir``:

* ``<variant>/<fold-k|seed-s>/``: each run's model directory (finished runs
  are reused, so an interrupted experiment resumes where it stopped),
* ``results.json``: every run's metrics,
* ``table.md`` and ``table.json``: per domain, mean ± std over runs, one row
  per variant (the layout of the paper's Tables 4 and 5): the headline
  full-catalogue HR@10 and NDCG@10, the full-catalogue HR@10 of targets seen in
  training, the sampled HR@10 and the AUC, with the share of test positives
  whose target was unseen in training; overall and per slice (cold start, no
  other-domain history, both domains, cold-start users). The keys are those of
  :mod:`dasl_tf.metrics`.

Example::

  dasl-experiment --data_dir=/tmp/douban --output_dir=/tmp/douban_table \\
      --variants=dasl,dasl_de,dasl_da,single_domain,din,wide_deep --seeds=1,2,3 --epochs=4
"""
from __future__ import annotations

import os
from typing import List

from absl import app
from absl import flags
from absl import logging

from dasl_tf import use_keras2  # noqa: F401  pylint: disable=unused-import  (first: TFRS needs Keras 2)
from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import models
from dasl_tf import publish
from dasl_tf import report
from dasl_tf.pipelines import cli
from dasl_tf.pipelines import grid

FLAGS = flags.FLAGS
DEFAULT_VARIANTS = ("dasl", "dasl_de", "dasl_da", "single_domain", "popularity", "sasrec",
                    "item_knn", "item_knn_cross", "pop_item_knn", "recent_popularity")


def define_flags() -> None:
  """Defines the flags of ``dasl-experiment``."""
  with cli.key_flags():
    flags.DEFINE_string("data_dir", None, "Output directory of dasl-prepare.", required=True)
    flags.DEFINE_string("output_dir", None, "Where runs and tables are written.", required=True)
    flags.DEFINE_list("variants", list(DEFAULT_VARIANTS), "Variants to compare (any "
                      "registered model; 'all' = every registered one).")
    flags.DEFINE_integer("folds", 0, "Use folds 0..N-1 of a k-fold dataset (0 = use the "
                         "train/validation/test split with each of --seeds).")
    flags.DEFINE_list("seeds", ["42"], "Training seeds (with --folds: the first one).")
    flags.DEFINE_string("config", None, "ExperimentConfig JSON applied to every run.")
    flags.DEFINE_integer("epochs", None, "Maximum epochs per run.")
    flags.DEFINE_integer("batch_size", None, "Global batch size.")
    flags.DEFINE_float("learning_rate", None, "Adam learning rate.")
    flags.DEFINE_bool("reports", False, "Write each run's report/ (plots).")
    flags.DEFINE_string("title", "", "Caption of the table.")


# Default variants that need real times; left out, with a line saying so, on data without.
NEEDS_TIMESTAMPS = ("recent_popularity",)


def _variants(schema: F.DatasetSchema) -> List[str]:
  """The variants of ``--variants``; by default, those the data can run."""
  if FLAGS.variants == ["all"]:
    return list(models.variants())
  unknown = sorted(set(FLAGS.variants) - set(models.variants()))
  if unknown:
    raise app.UsageError(f"unknown --variants {unknown}; registered: {models.variants()}")
  variants = list(FLAGS.variants)
  if not FLAGS["variants"].present and schema.timestamp_unit not in ("seconds", "milliseconds"):
    logging.warning("%s has no real timestamps (unit %r): leaving out %s", FLAGS.data_dir,
                    schema.timestamp_unit, ", ".join(NEEDS_TIMESTAMPS))
    variants = [v for v in variants if v not in NEEDS_TIMESTAMPS]
  return variants


def run(argv: List[str]) -> None:
  """Runs the experiment from the parsed flags (errors: :func:`~dasl_tf.pipelines.cli.run_command`)."""
  cli.no_arguments(argv)
  _experiment()


def _experiment() -> None:
  """Trains the grid and writes the runs' metrics and the tables."""
  seeds = [int(seed) for seed in FLAGS.seeds]
  variants = _variants(F.DatasetSchema.load(FLAGS.data_dir))
  runs = grid.grid_runs(FLAGS.data_dir, variants, FLAGS.folds, seeds)
  base = config_lib.ExperimentConfig.load(FLAGS.config) if FLAGS.config else None
  overrides = {name: FLAGS[name].value for name in ("epochs", "batch_size", "learning_rate")
               if FLAGS[name].present}
  results = grid.run_grid(runs, FLAGS.output_dir, base, overrides, FLAGS.reports)
  summary = report.summarize_runs(results)
  domain_names = runs[0].data.schema.domain_names
  table = report.experiment_tables_markdown(summary, domain_names, FLAGS.title)
  publish.write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
  publish.write_json(os.path.join(FLAGS.output_dir, "table.json"), summary)
  table_path = os.path.join(FLAGS.output_dir, "table.md")
  publish.write_file(table_path, table)
  logging.info("wrote %s", table_path)
  print(table)


def main() -> None:
  """Console entry point (``dasl-experiment``)."""
  define_flags()
  cli.run_command("dasl-experiment", run)


if __name__ == "__main__":
  main()
