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
  :mod:`dasl_tf.metrics`; a metric no run measured (an empty slice) is null.

Every flag, the data directory and every run's configuration are checked
before anything is written: an empty or repeating ``--seeds`` or
``--variants``, a seed that is no integer >= 0, a ``--folds`` of 1, 2, below 0
or above the dataset's folds, a ``--data_dir`` that is no ``dasl-prepare``
output and an ``--output_dir`` that is a file each end the command with one
error line.

Example::

  dasl-experiment --data_dir=/tmp/douban --output_dir=/tmp/douban_table \\
      --variants=dasl,dasl_de,dasl_da,single_domain,din,wide_deep --seeds=1,2,3 --epochs=4
"""
from __future__ import annotations

import dataclasses
import os
from typing import List, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging

from dasl_tf import use_keras2  # noqa: F401  pylint: disable=unused-import  (first: TFRS needs Keras 2)
from dasl_tf import config as config_lib
from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf import json_io
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
# A k-fold run tests on one fold, validates on the next and trains on the others.
MIN_FOLDS = 3


@dataclasses.dataclass(frozen=True)
class _Plan:
  """What the flags ask for, checked whole before anything is written.

  Attributes:
    runs: the grid's runs, their configs resolved.
    domain_names: the dataset's domain names (the table's columns).
  """
  runs: List[grid.GridRun]
  domain_names: Tuple[str, ...]


def _each_once(flag: str, values: Sequence[object]) -> None:
  """Refuses an empty list flag, or one that names a value twice (a run counted twice).

  Raises:
    app.UsageError: naming the flag.
  """
  if not values:
    raise app.UsageError(f"--{flag} is empty: give at least one value")
  repeated = sorted({value for value in values if values.count(value) > 1}, key=str)
  if repeated:
    raise app.UsageError(f"--{flag} lists {', '.join(map(str, repeated))} more than once: "
                         "each would run again and count twice in the table; list each once")


def _seeds() -> List[int]:
  """The seeds of ``--seeds``: integers >= 0, each once.

  Raises:
    app.UsageError: naming the flag and the bad value.
  """
  seeds = []
  for text in FLAGS.seeds:
    try:
      seed = int(text)
    except ValueError:
      raise app.UsageError(f"--seeds: {text!r} is not an integer; give seeds as "
                           "--seeds=1,2,3") from None
    if seed < 0:
      raise app.UsageError(f"--seeds: {seed} is negative; seeds are integers >= 0")
    seeds.append(seed)
  _each_once("seeds", seeds)
  return seeds


def _variants(schema: F.DatasetSchema) -> List[str]:
  """The variants of ``--variants``; by default, those the data can run.

  Raises:
    app.UsageError: the list is empty, repeats a variant or names an unknown one.
  """
  _each_once("variants", FLAGS.variants)
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


def _check_folds(schema: F.DatasetSchema) -> None:
  """Refuses a ``--folds`` that is negative, too few for k-fold runs or more than the data has.

  Raises:
    app.UsageError: naming the flag and the dataset's folds.
  """
  folds = FLAGS.folds
  if folds == 0:
    return
  if folds < MIN_FOLDS:
    raise app.UsageError(
        f"--folds={folds}: pass 0 (the default: --seeds on the train/validation/test split) "
        f"or at least {MIN_FOLDS} (a k-fold run tests on one fold, validates on the next and "
        "trains on the others)")
  available = sum(1 for name in schema.splits if name.startswith("fold-"))
  if folds > available:
    raise app.UsageError(
        f"--folds={folds}: {FLAGS.data_dir} has {available} folds; pass at most {available}"
        + ("" if available else " (prepare it with k-fold splits to run over folds)"))


def _check_output_dir() -> None:
  """Refuses an ``--output_dir`` that exists but is no directory.

  Raises:
    app.UsageError: naming the flag.
  """
  files = filesystems.files_for(FLAGS.output_dir)
  if files.exists(FLAGS.output_dir) and not files.isdir(FLAGS.output_dir):
    raise app.UsageError(
        f"--output_dir={FLAGS.output_dir} is a file; give a directory (a new one, or an "
        "earlier experiment's to resume it)")


def _plan() -> _Plan:
  """Checks every flag, the data and every run's config; writes nothing.

  Raises:
    app.UsageError: a flag is invalid (named in the message).
    config_lib.ConfigError: ``--config`` or a training flag gives an invalid value.
  """
  seeds = _seeds()
  _check_output_dir()
  try:
    schema = F.DatasetSchema.load(FLAGS.data_dir)
  except (FileNotFoundError, errors.DataError) as e:
    raise app.UsageError(f"--data_dir: {e}") from e
  variants = _variants(schema)
  _check_folds(schema)
  base = None
  if FLAGS.config:
    try:
      base = config_lib.ExperimentConfig.load(FLAGS.config)
    except config_lib.ConfigError as e:
      raise app.UsageError(f"--config: {e}") from e
  overrides = {name: FLAGS[name].value for name in ("epochs", "batch_size", "learning_rate")
               if FLAGS[name].present}
  try:
    runs = grid.grid_runs(FLAGS.data_dir, variants, FLAGS.folds, seeds, base, overrides)
  except (FileNotFoundError, errors.DataError) as e:
    raise app.UsageError(f"--data_dir: {e}") from e
  return _Plan(runs, schema.domain_names)


def run(argv: List[str]) -> None:
  """Runs the experiment from the parsed flags (errors: :func:`~dasl_tf.pipelines.cli.run_command`)."""
  cli.no_arguments(argv)
  _experiment(_plan())


def _experiment(plan: _Plan) -> None:
  """Trains the grid and writes the runs' metrics and the tables."""
  results = grid.run_grid(plan.runs, FLAGS.output_dir, FLAGS.reports)
  summary = report.summarize_runs(results, report.table_metrics(len(plan.domain_names)))
  table = report.experiment_tables_markdown(summary, plan.domain_names, FLAGS.title)
  publish.write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
  # A metric no run could measure (an empty slice) has a NaN mean: null in the file.
  publish.write_json(os.path.join(FLAGS.output_dir, "table.json"),
                     json_io.finite_or_null(summary))
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
