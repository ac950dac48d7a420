"""Cross-check of the `din` baseline against DeepCTR's DIN on the same examples.

Both models are trained per domain on the train split of a ``dasl-prepare``
output directory, with the same embedding size, MLP, attention size, batch
size, epochs and Adam learning rate, and evaluated by AUC on the test split.
DeepCTR's DIN is configured like ours: sigmoid activation unit with
``attention_dim`` hidden units, weights not normalised, ReLU MLP, the user
embedding and the candidate in the MLP input, no L2.

DeepCTR is not a dependency of dasl_tf; install it into a separate directory
and put that on ``PYTHONPATH`` (it needs ``TF_USE_LEGACY_KERAS=1``)::

  .venv/bin/python -m venv /tmp/deepctr_venv
  /tmp/deepctr_venv/bin/pip install --no-deps deepctr==0.9.4
  TF_USE_LEGACY_KERAS=1 PYTHONPATH=/tmp/deepctr_venv/lib/python3.11/site-packages \\
      .venv/bin/python bench/deepctr_din_crosscheck.py --data_dir /tmp/data --epochs 3
"""
from __future__ import annotations

import time
from typing import Dict, Tuple

from absl import app
from absl import flags

import dasl_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np
import tensorflow as tf
import tf_keras

from dasl_tf import data as data_lib
from dasl_tf import features as F
from dasl_tf import metrics
from dasl_tf import models

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Output directory of dasl-prepare.",
                                required=True)
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Training epochs of both models.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Batch size of both models.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.")
_EMBEDDING_DIM = flags.DEFINE_integer("embedding_dim", 32, "Embedding size.")
_ATTENTION_DIM = flags.DEFINE_integer("attention_dim", 32, "Hidden units of the activation unit.")
_HIDDEN_UNITS = flags.DEFINE_list("hidden_units", ["64", "32"], "MLP hidden layer sizes.")
_SEED = flags.DEFINE_integer("seed", 42, "Seed of both models.")

Arrays = Tuple[Dict[str, np.ndarray], np.ndarray]


def _read_split(split: str, spec: F.FeatureSpec) -> Arrays:
  """All examples of a split as NumPy arrays."""
  dataset = data_lib.make_dataset(data_lib.split_files(_DATA_DIR.value, split), spec,
                                  batch_size=1 << 30)
  features, labels = next(iter(dataset))
  return {k: v.numpy() for k, v in features.items()}, labels.numpy()


def _train_ours(config, train: Arrays, evaluation: Arrays) -> Tuple[Dict[int, float], float]:
  """dasl_tf's DIN (both towers in one model); AUC per domain and training seconds."""
  tf_keras.utils.set_random_seed(_SEED.value)
  model = models.build_model(config)
  model.compile(optimizer=tf_keras.optimizers.Adam(_LEARNING_RATE.value))
  start = time.perf_counter()
  model.fit(tf.data.Dataset.from_tensor_slices(train).shuffle(len(train[1]), seed=_SEED.value)
            .batch(_BATCH_SIZE.value), epochs=_EPOCHS.value, verbose=0)
  seconds = time.perf_counter() - start
  logits = model.predict(evaluation[0], batch_size=4096, verbose=0)
  domain = evaluation[0][F.DOMAIN]
  aucs = {d: metrics.roc_auc(evaluation[1][domain == d], logits[key][domain == d])
          for d, key in ((F.DOMAIN_A, "logit_a"), (F.DOMAIN_B, "logit_b"))}
  return aucs, seconds


def _deepctr_inputs(features: Dict[str, np.ndarray], history: str) -> Dict[str, np.ndarray]:
  return {"user": features[F.USER_ID], "item_id": features[F.ITEM_ID],
          "hist_item_id": features[history]}


def _train_deepctr(config, domain: int, train: Arrays, evaluation: Arrays
                   ) -> Tuple[float, float]:
  """DeepCTR's DIN on one domain's examples; AUC and training seconds."""
  # DeepCTR is optional: imported only here, after main() checked that it is importable.
  from deepctr import feature_column  # pylint: disable=g-import-not-at-top
  from deepctr.models import DIN  # pylint: disable=g-import-not-at-top
  SparseFeat, VarLenSparseFeat = feature_column.SparseFeat, feature_column.VarLenSparseFeat

  num_items = (config.num_items_a, config.num_items_b)[domain]
  history = (F.HIST_A, F.HIST_B)[domain]
  dim = config.embedding_dim
  columns = [
      SparseFeat("user", config.num_users, embedding_dim=dim),
      SparseFeat("item_id", num_items, embedding_dim=dim, embedding_name="item"),
      VarLenSparseFeat(SparseFeat("hist_item_id", num_items, embedding_dim=dim,
                                  embedding_name="item"),
                       maxlen=config.history_length, length_name=None),
  ]
  tf_keras.utils.set_random_seed(_SEED.value)
  model = DIN(columns, ["item_id"], dnn_hidden_units=config.hidden_units,
              att_hidden_size=(config.attention_dim,), att_activation="sigmoid",
              att_weight_normalization=False, l2_reg_embedding=0.0, seed=_SEED.value)
  model.compile(tf_keras.optimizers.Adam(_LEARNING_RATE.value), "binary_crossentropy")

  def select(arrays: Arrays) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    keep = arrays[0][F.DOMAIN] == domain
    return (_deepctr_inputs({k: v[keep] for k, v in arrays[0].items()}, history),
            arrays[1][keep])

  train_x, train_y = select(train)
  eval_x, eval_y = select(evaluation)
  start = time.perf_counter()
  model.fit(train_x, train_y, batch_size=_BATCH_SIZE.value, epochs=_EPOCHS.value, verbose=0,
            shuffle=True)
  seconds = time.perf_counter() - start
  return metrics.roc_auc(eval_y, model.predict(eval_x, batch_size=4096, verbose=0)[:, 0]), seconds


def main(argv):
  del argv
  try:
    import deepctr  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise app.UsageError("deepctr is not importable: install deepctr==0.9.4 into a separate "
                         "directory and add it to PYTHONPATH (see this script's docstring)") from e
  schema = F.DatasetSchema.load(_DATA_DIR.value)
  config = schema.model_config(
      variant="din", embedding_dim=_EMBEDDING_DIM.value, attention_dim=_ATTENTION_DIM.value,
      hidden_units=tuple(int(u) for u in _HIDDEN_UNITS.value), dropout=0.0, l2=0.0)
  spec = schema.feature_spec
  train, evaluation = _read_split("train", spec), _read_split("test", spec)
  ours, ours_seconds = _train_ours(config, train, evaluation)
  print(f"data: {_DATA_DIR.value}  train={len(train[1])} test={len(evaluation[1])} examples, "
        f"epochs={_EPOCHS.value}, batch={_BATCH_SIZE.value}, lr={_LEARNING_RATE.value}")
  print(f"dasl_tf din (both towers): {ours_seconds:.1f} s training")
  for domain, name in zip((F.DOMAIN_A, F.DOMAIN_B), schema.domain_names):
    theirs, seconds = _train_deepctr(config, domain, train, evaluation)
    print(f"domain {name}: AUC dasl_tf din = {ours[domain]:.4f}   "
          f"deepctr DIN = {theirs:.4f} ({seconds:.1f} s training)")


if __name__ == "__main__":
  app.run(main)
