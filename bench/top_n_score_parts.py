"""Where a trained model's top-n quality comes from: HR@10 of each part of its top-n score.

Loads a finished model directory and scores one split of a ``dasl-prepare``
output (its stored evaluation negatives) with the full top-n score and with
each part alone:

* ``top_n``: what ``score_candidates`` ranks by, the task's ``top_n_score``
  (``rel + b`` for a model with a relevance output, ``s + b`` otherwise);
* ``prior``: the item prior ``b`` alone (a learned, user-free popularity);
* ``relevance``: the relevance logit ``rel`` alone (models trained to rank);
* ``ctr``: the CTR logit ``s`` alone;
* ``picked_and_liked``: ``log sigmoid(s) + log sigmoid(rel + b)``.

Usage::

  .venv/bin/python bench/top_n_score_parts.py --model_dir=/tmp/tables/ciao16/dasl/seed-1 \\
      --data_dir=/tmp/real/ciao --split=validation
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402

from dasl_tf import data as data_lib  # noqa: E402
from dasl_tf import metrics  # noqa: E402
from dasl_tf import model_io  # noqa: E402

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "A finished dasl-train model directory.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The dasl-prepare output it was trained on.")
_SPLIT = flags.DEFINE_string("split", "validation", "The split to score.")

PARTS = {
    "prior": lambda outputs, prior: prior,
    "ctr": lambda outputs, prior: outputs[..., 0],
    "relevance": lambda outputs, prior: outputs[..., -1],
    "picked_and_liked": lambda outputs, prior: (tf.math.log_sigmoid(outputs[..., 0])
                                                + tf.math.log_sigmoid(outputs[..., -1] + prior)),
}


def main(argv) -> None:
  del argv
  model, _, schema = model_io.load_model(_MODEL_DIR.value)
  dataset = data_lib.make_dataset(data_lib.split_files(_DATA_DIR.value, _SPLIT.value),
                                  schema.feature_spec, 512, with_negatives=True)
  scorers = {"top_n": model.task.top_n_score}
  if model.has_relevance:
    scorers.update(PARTS)
  else:
    scorers.update({name: PARTS[name] for name in ("prior", "ctr")})
  print(f"model={_MODEL_DIR.value} split={_SPLIT.value} relevance_output={model.has_relevance}")
  for name, scorer in scorers.items():
    model.task.top_n_score = scorer  # the instance attribute shadows the task's method
    result = metrics.evaluate_model(model, dataset)
    print(f"{name:>17}: HR@10 A {result['hr10_a']:.4f}  B {result['hr10_b']:.4f}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["model_dir", "data_dir"])
  app.run(main)
