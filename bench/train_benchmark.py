"""Training benchmark: examples per second and time to reach an evaluation AUC.

Trains one variant with the ``dasl-train`` code path on a ``dasl-prepare``
output directory and prints:

* examples/s over the whole run (``train_examples / train_seconds`` of
  ``metrics.json``; the first epoch includes building the TensorFlow graphs),
* steady-state examples/s (training steps of the epochs after the first,
  without their evaluation pass),
* the time until the per-epoch evaluation AUC (mean of both heads, ``val_auc``)
  first reaches ``--target_auc`` (training time including each epoch's
  evaluation pass), or "not reached".

Example (the numbers in docs/training.md)::

  .venv/bin/python bench/train_benchmark.py --data_dir=/tmp/real/douban \\
      --variant=dasl --epochs=3 --batch_size=256 --target_auc=0.70
"""
from __future__ import annotations

import json
import os
import platform
import tempfile

from absl import app
from absl import flags

import dasl_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from dasl_tf import config_resolution
from dasl_tf import model_dir as model_dir_lib
from dasl_tf import training

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Output directory of dasl-prepare.",
                                required=True)
_VARIANT = flags.DEFINE_string("variant", "dasl", "Model variant.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs (early stopping is off).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Global batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.")
_TARGET_AUC = flags.DEFINE_float("target_auc", 0.70, "Evaluation AUC (mean of the heads) "
                                 "whose time to reach is reported.")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Run directory (default: a temp dir).")


def _run(argv) -> None:
  del argv
  data = training.TrainingData.from_data_dir(_DATA_DIR.value)
  experiment = config_resolution.resolve_config(
      data.schema, None, {"variant": _VARIANT.value},
      {"epochs": _EPOCHS.value, "batch_size": _BATCH_SIZE.value,
       "learning_rate": _LEARNING_RATE.value, "early_stopping_patience": _EPOCHS.value})
  model_dir = _MODEL_DIR.value or tempfile.mkdtemp(prefix="dasl-bench-")
  metrics = training.train_and_evaluate(experiment, data, model_dir, overwrite=True,
                                        write_report=False, verbose=0)
  with open(os.path.join(model_dir, model_dir_lib.HISTORY_FILE), encoding="utf-8") as f:
    history = json.load(f)

  per_epoch = metrics["train_examples"] / len(history)
  later = history[1:]
  steady = (per_epoch * len(later) / sum(r["fit_seconds"] for r in later)) if later else float("nan")
  elapsed, reached = 0.0, None
  for record in history:
    elapsed += record["seconds"]
    if reached is None and record.get("val_auc", 0.0) >= _TARGET_AUC.value:
      reached = (record["epoch"], elapsed)
  print(f"machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"load average {os.getloadavg()[0]:.1f} at the end")
  print(f"data: {_DATA_DIR.value}  variant: {_VARIANT.value}  batch: {_BATCH_SIZE.value}  "
        f"epochs: {len(history)}")
  print(f"examples/s (whole run, first epoch builds the graphs): "
        f"{metrics['examples_per_second']:.0f}")
  print(f"examples/s (steady state: training steps of epochs 2..): {steady:.0f}")
  for record in history:
    print(f"  epoch {record['epoch']}: {record['seconds']:.1f} s ({record['fit_seconds']:.1f} s "
          f"training steps), val_auc {record['val_auc']:.4f}")
  if reached:
    print(f"time to val_auc >= {_TARGET_AUC.value}: {reached[1]:.1f} s (epoch {reached[0]})")
  else:
    print(f"time to val_auc >= {_TARGET_AUC.value}: not reached in {len(history)} epochs")
  print(f"final: auc_a {metrics['auc_a']:.4f}  auc_b {metrics['auc_b']:.4f}  "
        f"hr10_a {metrics['hr10_a']:.4f}  hr10_b {metrics['hr10_b']:.4f}")


if __name__ == "__main__":
  app.run(_run)
