"""The experiment grid of ``dasl-experiment``: every variant on every seed or fold.

Each run is one :func:`dasl_tf.training.train_and_evaluate` call in its own
model directory, ``<output_dir>/<variant>/<seed-s | fold-k>``; a finished run
(one with ``metrics.json``) is reused, so an interrupted grid resumes. Every
run's configuration is resolved, and so checked, when the grid is built:
a bad value stops the grid before its first run trains.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Mapping, Optional, Sequence

from absl import logging
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import training


@dataclasses.dataclass(frozen=True)
class GridRun:
  """One cell of an experiment grid: a variant trained on one fold or with one seed.

  Attributes:
    variant: the model variant.
    name: ``fold-<k>`` or ``seed-<s>``; the run's directory under the variant's.
    data: the run's training, validation and test data.
    experiment: the run's resolved configuration (its seed is ``experiment.train.seed``).
  """
  variant: str
  name: str
  data: training.TrainingData
  experiment: config_lib.ExperimentConfig


def grid_runs(data_dir: str, variants: Sequence[str], folds: int = 0,
              seeds: Sequence[int] = (42,),
              base: Optional[config_lib.ExperimentConfig] = None,
              train_overrides: Optional[Mapping[str, object]] = None) -> List[GridRun]:
  """The runs of an experiment: every variant on every fold (``folds`` > 0) or seed.

  With folds, fold ``k`` is the test fold, fold ``k + 1`` the validation fold
  and the others are trained on, with the first of ``seeds``; without, every
  seed trains on ``train``, selects on ``validation`` and is tested on ``test``.
  Each run's config is ``base`` with ``train_overrides``, its variant and its seed.

  Raises:
    ConfigError: a run's configuration is invalid.
    errors.DataError: the dataset lacks a fold or split the grid needs.
  """
  if folds:
    cells = [(f"fold-{k}", training.TrainingData.for_fold(data_dir, k), seeds[0])
             for k in range(folds)]
  else:
    data = training.TrainingData.from_data_dir(data_dir)
    cells = [(f"seed-{seed}", data, seed) for seed in seeds]
  return [GridRun(variant, name, data, config_resolution.resolve_config(
              data.schema, base, {"variant": variant},
              {**dict(train_overrides or {}), "seed": seed}))
          for variant in variants for name, data, seed in cells]


def run_grid(runs: Sequence[GridRun], output_dir: str,
             write_reports: bool = False) -> List[Dict[str, object]]:
  """Trains every run into ``<output_dir>/<variant>/<name>``; finished runs are reused.

  Returns:
    One ``{"variant", "run", "model_dir", "metrics"}`` per run, in order.
  """
  results = []
  for index, run in enumerate(runs):
    model_dir = os.path.join(output_dir, run.variant, run.name)
    logging.info("experiment run %d/%d: %s %s -> %s", index + 1, len(runs), run.variant,
                 run.name, model_dir)
    metrics = training.train_and_evaluate(run.experiment, run.data, model_dir,
                                          write_report=write_reports, verbose=2)
    results.append({"variant": run.variant, "run": run.name, "model_dir": model_dir,
                    "metrics": metrics})
    tf_keras.backend.clear_session()
  return results
