"""The run's configuration: defaults, a ``--config`` file and explicit overrides, resolved and checked.

:func:`resolve_config` is what every entry point (``dasl-train``, the TFX
``run_fn``, ``dasl-experiment``) calls before training; sizes always come
from the dataset's ``schema.json``. :func:`validate_config` checks the whole
configuration before any work starts.
"""
from __future__ import annotations

from typing import Mapping, Optional

from absl import logging

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import models
from dasl_tf import negatives

# Model fields that always come from the dataset's schema.json.
DATASET_FIELDS = ("num_users", "num_items_a", "num_items_b", "num_items_more", "history_length",
                  "user_num_dim", "user_cat_vocab_sizes", "item_num_dim", "item_cat_vocab_sizes",
                  "timestamp_unit")

def resolve_config(schema: F.DatasetSchema,
                   base: Optional[config_lib.ExperimentConfig] = None,
                   model_overrides: Optional[Mapping[str, object]] = None,
                   train_overrides: Optional[Mapping[str, object]] = None
                   ) -> config_lib.ExperimentConfig:
  """The run's configuration: defaults < ``base`` (a ``--config`` file) < explicit overrides.

  Vocabulary and feature sizes always come from the dataset's schema; a base
  config that disagrees with the dataset is logged and overruled.

  Args:
    schema: the training data's schema.
    base: a config read from JSON (keys the file omits keep their defaults).
    model_overrides: ``ModelConfig`` fields set explicitly (for example by flags).
    train_overrides: ``TrainConfig`` fields set explicitly.

  Returns:
    The resolved, validated :class:`~dasl_tf.config.ExperimentConfig`.

  Raises:
    ConfigError: a value is invalid.
  """
  base = base or config_lib.ExperimentConfig()
  try:
    model = base.model.replace(**dict(model_overrides or {}))
    train = base.train.replace(**dict(train_overrides or {}))
  except TypeError as e:
    raise config_lib.ConfigError(f"unknown config field: {e}") from e
  from_dataset = schema.model_config().to_dict()
  defaults = config_lib.ModelConfig().to_dict()
  for name in DATASET_FIELDS:
    given = getattr(model, name)
    if given != defaults[name] and given != from_dataset[name]:
      logging.warning("config sets %s=%s but the dataset has %s; using the dataset's value",
                      name, given, from_dataset[name])
  model = schema.model_config(**{k: v for k, v in model.to_dict().items()
                                 if k not in DATASET_FIELDS})
  model, train = _ranking_objective(model, train, schema.feature_spec)
  experiment = config_lib.ExperimentConfig(model=model, train=train)
  validate_config(experiment)
  return experiment


def _ranking_objective(model: config_lib.ModelConfig, train: config_lib.TrainConfig,
                       spec: F.FeatureSpec):
  """One consistent objective: a ranking loss exactly when training reads negatives.

  ``model.ranking_loss="none"`` trains on no negatives; no negatives (none
  asked for, or none in the data) make the ranking loss "none".
  """
  if model.ranking_loss == config_lib.NO_RANKING_LOSS:
    return model, train.replace(train_negatives=0)
  available = negatives.per_example(train, spec)
  if available == 0:
    logging.info("no sampled training negatives (train.train_negatives=%d, %d in the data): "
                 "training the CTR objective alone", train.train_negatives,
                 spec.num_train_negatives)
    return model.replace(ranking_loss=config_lib.NO_RANKING_LOSS), train.replace(
        train_negatives=0)
  return model, train


def validate_config(experiment: config_lib.ExperimentConfig) -> None:
  """Checks what the config's own construction cannot: that its model is registered.

  Field ranges are checked when a :class:`~dasl_tf.config.ModelConfig` or
  :class:`~dasl_tf.config.TrainConfig` is built.

  Raises:
    ConfigError: naming the field and the accepted values.
  """
  if experiment.model.variant not in models.variants():
    raise config_lib.ConfigError(
        f"model.variant={experiment.model.variant!r} is not a registered model; "
        f"choose one of {models.variants()}")
