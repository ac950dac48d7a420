"""The trained-model directory: how a model, its config, schema and vocabularies are kept.

Layout of a model directory (written by ``dasl-train``, read by ``dasl-export``)::

  <model_dir>/config.json      resolved ExperimentConfig of the run
  <model_dir>/schema.json      DatasetSchema of the training data
  <model_dir>/vocab/           raw-id vocabularies copied from the dataset
  <model_dir>/final/weights.*  weights of the finished model (TF checkpoint format)
  <model_dir>/checkpoints/     resumable training checkpoints
  <model_dir>/metrics.json     evaluation metrics of the finished run
"""
from __future__ import annotations

import os
from typing import Tuple

import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf import models
from dasl_tf import publish

CONFIG_FILE = "config.json"
VOCAB_DIR = "vocab"
FINAL_DIR = "final"
WEIGHTS_NAME = "weights"
WEIGHTS_PREFIX = os.path.join(FINAL_DIR, WEIGHTS_NAME)


def dummy_batch(feature_spec: F.FeatureSpec, batch_size: int = 1):
  """A batch of padding-only inputs, used to create a model's variables."""
  return {name: tf.zeros((batch_size,) + shape, dtype)
          for name, (dtype, shape) in feature_spec.shapes(with_label=False).items()}


def build_model(model_config: config_lib.ModelConfig):
  """Builds the model of ``model_config`` and creates its variables."""
  model = models.build_model(model_config)
  model(dummy_batch(F.feature_spec_for(model_config)), training=False)
  return model


def load_model(model_dir: str) -> Tuple[object, config_lib.ExperimentConfig, F.DatasetSchema]:
  """Rebuilds the finished model of a ``dasl-train`` run.

  Returns:
    ``(model, experiment_config, schema)``.

  Raises:
    FileNotFoundError: the directory holds no finished model.
    ValueError: the weights do not cover every variable of the model that
      ``config.json`` describes (a model written by an older dasl_tf, or an
      edited config); no model is returned with weights left at random.
  """
  config_path = os.path.join(model_dir, CONFIG_FILE)
  weights = os.path.join(model_dir, WEIGHTS_PREFIX)
  files = filesystems.files_for(model_dir)
  if not files.exists(config_path) or not files.exists(weights + ".index"):
    raise FileNotFoundError(
        f"{model_dir} holds no finished dasl_tf model (expected {CONFIG_FILE} and "
        f"{WEIGHTS_PREFIX}.index); did `dasl-train --model_dir {model_dir}` complete?")
  experiment = config_lib.ExperimentConfig.load(config_path)
  schema = F.DatasetSchema.load(model_dir)
  model = build_model(experiment.model)
  try:
    status = model.load_weights(weights)
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:
    raise errors.DataError(
        f"{model_dir}: the saved weights do not match the model its {CONFIG_FILE} describes "
        f"(written by another dasl_tf version, or the config was edited); retrain it. "
        f"{str(e).splitlines()[0]}") from None
  status.expect_partial()  # The optimizer's slots are saved too; serving does not need them.
  return model, experiment, schema


def save_final_weights(model, model_dir: str) -> None:
  """Writes the finished model's weights to ``<model_dir>/final``, published whole.

  A previous ``final/`` is replaced only if it holds ``weights.index``, the
  file :func:`load_model` reads: every ``final/`` this package writes has it,
  so a directory of that name that the package did not write is never deleted.
  """
  with publish.staged_directory(os.path.join(model_dir, FINAL_DIR), overwrite=True,
                                marker=WEIGHTS_NAME + ".index",
                                what="final-weights directory") as staging:
    model.save_weights(os.path.join(staging, WEIGHTS_NAME))
