"""``tf.distribute`` strategies by name, and which process writes a run's outputs."""
from __future__ import annotations

import os

from absl import logging
import tensorflow as tf

from dasl_tf import config as config_lib

STRATEGIES = config_lib.STRATEGIES


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The ``tf.distribute`` strategy called ``name``.

  ``multi_worker`` reads the cluster from the ``TF_CONFIG`` environment
  variable and must be created before any other TensorFlow operation runs.

  Raises:
    ConfigError: unknown strategy name.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      logging.warning("--strategy=multi_worker without TF_CONFIG: training as a single worker")
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise config_lib.ConfigError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's outputs (always true outside multi-worker)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief

