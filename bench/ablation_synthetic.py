"""DASL against its ablations on synthetic data with a planted cross-domain signal.

Generates one synthetic dataset (``dasl_tf.synthetic``), prepares it once with
``dasl_tf.prepare`` (temporal split, side features, 99 sampled negatives per
eval example), then for each seed and variant trains with
``model.compile(Adam); model.fit(...)`` for a fixed number of epochs and
evaluates with :func:`dasl_tf.metrics.evaluate_model`. Prints one row per run
and a mean ± std table (std over seeds, ddof=1), plus ``||X^T X - I||_F`` of
the dual variants.

Usage::

  .venv/bin/python bench/ablation_synthetic.py [--num_users 2000] [--epochs 5]
      [--seeds 0,1,2] [--variants dasl,dasl_de,dasl_da,single_domain]
      [--learning_rate LR] [--model_overrides JSON] [--work_dir DIR] [--data_dir DIR]
"""
from __future__ import annotations

import json
import os
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import numpy as np  # noqa: E402
import tf_keras  # noqa: E402

from dasl_tf import config as config_lib  # noqa: E402
from dasl_tf import data as data_lib  # noqa: E402
from dasl_tf import features as F  # noqa: E402
from dasl_tf import metrics  # noqa: E402
from dasl_tf import prepare  # noqa: E402
from dasl_tf import publish  # noqa: E402
from dasl_tf import synthetic  # noqa: E402
from dasl_tf.models import build_model  # noqa: E402

_NUM_USERS = flags.DEFINE_integer("num_users", 2000, "Synthetic users.")
_DATA_SEED = flags.DEFINE_integer("data_seed", 0, "Seed of the synthetic data.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Training epochs per run.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Examples per step.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", config_lib.TrainConfig.learning_rate,
                                    "Adam learning rate (default: TrainConfig's).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Model seeds.")
_VARIANTS = flags.DEFINE_list("variants", list(config_lib.VARIANTS), "Variants to compare.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Scratch directory (default: a temp dir).")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Use this dasl-prepare output instead of synthetic data.")
_MODEL_OVERRIDES = flags.DEFINE_string(
    "model_overrides", "{}", 'JSON object of ModelConfig fields to change, e.g. \'{"dropout": 0.2}\'.')
_RESULTS = flags.DEFINE_string("results_json", None, "Also write all runs to this JSON file.")

_METRICS = ("auc_a", "auc_b", "hr10_a", "hr10_b")


def _prepared_synthetic(work_dir: str) -> str:
  raw = synthetic.generate(os.path.join(work_dir, "raw"), synthetic.SyntheticConfig(
      num_users=_NUM_USERS.value, seed=_DATA_SEED.value))
  data_dir = os.path.join(work_dir, "prepared")
  prepare.prepare(prepare.PrepareConfig(output_dir=data_dir, **raw))
  return data_dir


def _run(data_dir: str, schema: F.DatasetSchema, variant: str, seed: int) -> dict:
  tf_keras.utils.set_random_seed(seed)
  spec = schema.feature_spec
  train = data_lib.make_dataset(data_lib.split_files(data_dir, "train"), spec,
                                _BATCH_SIZE.value, training=True, seed=seed)
  evaluation = data_lib.make_dataset(data_lib.split_files(data_dir, "test"), spec, 1024,
                                     with_negatives=True)
  model = build_model(schema.model_config(variant=variant).replace(
      **json.loads(_MODEL_OVERRIDES.value)))
  model.compile(tf_keras.optimizers.Adam(_LEARNING_RATE.value, clipnorm=1.0))
  start = time.perf_counter()
  history = model.fit(train, epochs=_EPOCHS.value, verbose=0).history
  train_seconds = time.perf_counter() - start
  result = metrics.evaluate_model(model, evaluation)
  # Last epoch's running training AUCs (training mode: dropout on), to see overfitting.
  result.update({f"train_{name}": round(float(history[name][-1]), 4) for name in ("auc_a", "auc_b")})
  result.update(variant=variant, seed=seed, train_seconds=round(train_seconds, 1))
  if model.dual_embedding is not None:
    result["orthogonality_residual"] = float(model.dual_embedding.orthogonality_residual())
  return result


def main(argv):
  del argv
  work_dir = _WORK_DIR.value or tempfile.mkdtemp(prefix="dasl_ablation_")
  data_dir = _DATA_DIR.value or _prepared_synthetic(work_dir)
  schema = F.DatasetSchema.load(data_dir)
  runs = []
  for seed in (int(s) for s in _SEEDS.value):
    for variant in _VARIANTS.value:
      result = _run(data_dir, schema, variant, seed)
      logging.info("%s", result)
      print(json.dumps(result), flush=True)
      runs.append(result)
  if _RESULTS.value:
    publish.write_json(_RESULTS.value, runs)
  print(f"\ndata: {data_dir}; epochs={_EPOCHS.value} batch_size={_BATCH_SIZE.value} "
        f"learning_rate={_LEARNING_RATE.value} model_overrides={_MODEL_OVERRIDES.value} "
        f"seeds={_SEEDS.value} (mean ± std over seeds)")
  print("| variant | " + " | ".join(_METRICS) + " |")
  print("|---|" + "---|" * len(_METRICS))
  for variant in _VARIANTS.value:
    rows = [r for r in runs if r["variant"] == variant]
    cells = []
    for name in _METRICS:
      values = np.array([r[name] for r in rows])
      std = values.std(ddof=1) if values.size > 1 else 0.0
      cells.append(f"{values.mean():.4f} ± {std:.4f}")
    print(f"| {variant} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
