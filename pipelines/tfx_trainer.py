"""TFX Trainer module: ``run_fn(fn_args)`` over the same code path as ``dasl-train``.

Use it as the ``module_file`` (or ``run_fn``) of a ``tfx.components.Trainer``::

  trainer = tfx.components.Trainer(
      module_file="pipelines/tfx_trainer.py",
      examples=...,  # TFRecords of dasl-prepare (tf.Example, dasl_tf feature spec)
      train_args=tfx.proto.TrainArgs(num_steps=2000),
      eval_args=tfx.proto.EvalArgs(num_steps=0),
      custom_config={"schema_dir": "/data/douban", "variant": "dasl",
                     "config": {"train": {"batch_size": 512}}})

Fields of ``fn_args`` read here (TFX's ``FnArgs`` contract):
  * ``train_files``, ``eval_files``: lists of shard paths or glob patterns; the
    eval files are the validation split (early stopping, best epoch),
  * ``train_steps``, ``eval_steps``: total training steps and evaluation steps
    (0 or None: train until early stopping; evaluate the whole split),
  * ``model_run_dir``: the run's model directory (checkpoints, logs, metrics, report),
  * ``serving_model_dir``: where the SavedModel goes (TFX pushes this directory),
  * ``custom_config``: ``schema_dir`` (required: the directory of the dataset's
    ``schema.json``), and optionally ``test_files`` (shard patterns of a held-out
    split scored once for ``metrics.json``; default: the eval files, in which
    case ``metrics.json`` is a validation figure and TFX's Evaluator on a
    separate split gives the honest one), ``variant`` and ``config`` (an
    ``ExperimentConfig`` as a JSON object; ``train_steps``/``eval_steps`` of
    ``fn_args`` override it).

TFX is not needed: any object with these attributes works (see :class:`FnArgs`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import dasl_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import publish
from dasl_tf import training


@dataclasses.dataclass
class FnArgs:
  """The subset of ``tfx.components.FnArgs`` that :func:`run_fn` reads."""
  train_files: List[str]
  eval_files: List[str]
  model_run_dir: str
  serving_model_dir: str = ""
  train_steps: Optional[int] = None
  eval_steps: Optional[int] = None
  custom_config: Dict[str, Any] = dataclasses.field(default_factory=dict)


def _serving_exporter(serving_model_dir: str):
  """Exports the SavedModel into ``serving_model_dir`` itself (TFX's layout: no version dir)."""
  if not serving_model_dir:
    return None
  from dasl_tf.serving import export  # pylint: disable=g-import-not-at-top

  def export_fn(model_dir: str) -> None:
    publish.remove_leftovers(serving_model_dir)
    staging = publish.staging_path(serving_model_dir)
    try:
      version_dir = export.export_model(model_dir, staging, version=1)
      publish.publish_directory(version_dir, serving_model_dir, overwrite=True,
                                marker=tf.saved_model.SAVED_MODEL_FILENAME_PB,
                                what="TFX serving model")
    finally:
      if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)

  return export_fn


def run_fn(fn_args) -> Dict[str, float]:
  """Trains, evaluates and exports one model as TFX's Trainer does.

  Args:
    fn_args: a ``tfx.components.FnArgs`` or any object with the same fields
      (:class:`FnArgs`).

  Returns:
    The metrics written to ``<model_run_dir>/metrics.json``.

  Raises:
    ValueError: ``custom_config`` lacks ``schema_dir``.
  """
  custom_config = dict(fn_args.custom_config or {})
  if "schema_dir" not in custom_config:
    raise ValueError("run_fn: custom_config needs 'schema_dir', the directory of the "
                     "dataset's schema.json written by dasl-prepare")
  data = training.TrainingData.from_patterns(
      fn_args.train_files, fn_args.eval_files,
      custom_config.get("test_files", fn_args.eval_files), custom_config["schema_dir"])
  model_overrides = {"variant": custom_config["variant"]} if "variant" in custom_config else {}
  train_overrides = {name: int(getattr(fn_args, name)) for name in ("train_steps", "eval_steps")
                     if getattr(fn_args, name, None)}
  base = (config_lib.ExperimentConfig.from_dict(custom_config["config"])
          if custom_config.get("config") else None)
  experiment = config_resolution.resolve_config(data.schema, base, model_overrides, train_overrides)
  return training.train_and_evaluate(
      experiment, data, fn_args.model_run_dir,
      export_fn=_serving_exporter(fn_args.serving_model_dir), verbose=2)
