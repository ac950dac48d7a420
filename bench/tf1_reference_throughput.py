"""End-to-end training speed of ``dasl-train`` against a reference shaped like the TF 1.x code.

The reference is what the official DASL code does, rebuilt with
``tf.compat.v1`` on the same machine and data: a graph-mode model fed by
``feed_dict`` in batches of 32, four GRUs (each head's own-domain and
other-domain history: 2 heads x 2 domains), additive (Bahdanau) attention over
both domains' GRU outputs, a two-layer MLP per head, both heads computed for
every example with the other domain's loss masked, and Adam. It trains one
pass over the training split held in NumPy (reading the split is not timed).

``dasl-train`` is timed as ``metrics.json`` records it: ``train_examples /
train_seconds`` over the whole run (graph building, every epoch's validation
pass, checkpoints included), with its default objective (sampled training
negatives, own head only) and early stopping off.

Both run in the same invocation, one after the other (the reference in a
child process, since graph mode cannot share a process with eager code)::

  .venv/bin/python bench/tf1_reference_throughput.py --data_dir=/tmp/real/ciao \\
      --work_dir=/tmp/bench_tf1 [--epochs=2]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", None, "dasl-prepare output directory.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Scratch directory (model dir, arrays).")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "dasl-train epochs (early stopping off).")
_REFERENCE = flags.DEFINE_string("reference_arrays", None,
                                 "Internal: run the TF1-style reference on this .npz file.")

REFERENCE_BATCH = 32
EMBEDDING_DIM = 32
GRU_UNITS = 32
HIDDEN_UNITS = (64, 32)


def _export_arrays(data_dir: str, path: str) -> int:
  """The training split as NumPy arrays in ``path``; returns the number of examples."""
  from dasl_tf import data as data_lib  # pylint: disable=g-import-not-at-top
  from dasl_tf import features as F  # pylint: disable=g-import-not-at-top
  schema = F.DatasetSchema.load(data_dir)
  columns = {}
  for features, labels in data_lib.make_dataset(data_lib.split_files(data_dir, "train"),
                                                schema.feature_spec, 8192):
    for name in (F.USER_ID, F.ITEM_ID, F.DOMAIN, F.HIST_A, F.HIST_B):
      columns.setdefault(name, []).append(features[name].numpy())
    columns.setdefault(F.LABEL, []).append(labels.numpy())
  arrays = {name: np.concatenate(parts) for name, parts in columns.items()}
  np.savez(path, num_users=schema.num_users, num_items_a=schema.num_items_a,
           num_items_b=schema.num_items_b, **arrays)
  return len(arrays[F.LABEL])


def _reference(path: str) -> float:
  """Trains the TF1-style model one epoch on the arrays; returns examples per second."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  v1 = tf.compat.v1
  v1.disable_eager_execution()
  arrays = np.load(path)
  num_items = (int(arrays["num_items_a"]), int(arrays["num_items_b"]))
  history_length = arrays["hist_a"].shape[1]

  user = v1.placeholder(tf.int64, [None])
  item = v1.placeholder(tf.int64, [None])
  domain = v1.placeholder(tf.int64, [None])
  label = v1.placeholder(tf.float32, [None])
  histories = [v1.placeholder(tf.int64, [None, history_length]) for _ in range(2)]
  user_tables = [v1.get_variable(f"user_{d}", [int(arrays["num_users"]), EMBEDDING_DIM])
                 for d in range(2)]
  item_tables = [v1.get_variable(f"item_{d}", [num_items[d], EMBEDDING_DIM]) for d in range(2)]
  lengths = [tf.reduce_sum(tf.cast(h > 0, tf.int32), 1) for h in histories]

  losses = []
  for head in range(2):
    records, states = [], []
    for d in range(2):  # each head runs its own GRU over each domain: four GRUs in all
      cell = v1.nn.rnn_cell.GRUCell(GRU_UNITS, name=f"gru_{head}_{d}")
      outputs, state = v1.nn.dynamic_rnn(
          cell, tf.nn.embedding_lookup(item_tables[d], histories[d]),
          sequence_length=lengths[d], dtype=tf.float32)
      records.append(outputs)
      states.append(state)
    query = tf.nn.embedding_lookup(item_tables[head], tf.minimum(item, num_items[head] - 1))
    keys = tf.concat(records, 1)
    mask = tf.concat([tf.sequence_mask(lengths[d], history_length) for d in range(2)], 1)
    with v1.variable_scope(f"attention_{head}"):  # additive attention over both domains
      scores = v1.layers.dense(tf.tanh(
          v1.layers.dense(keys, GRU_UNITS, use_bias=False)
          + v1.layers.dense(query, GRU_UNITS)[:, None]), 1)[..., 0]
      weights = tf.nn.softmax(tf.where(mask, scores, tf.fill(tf.shape(scores), -1e9)))
      attended = tf.reduce_sum(weights[..., None] * keys, 1)
    hidden = tf.concat([tf.nn.embedding_lookup(user_tables[head], user), *states, attended,
                        query], 1)
    with v1.variable_scope(f"head_{head}"):
      for units in HIDDEN_UNITS:
        hidden = v1.layers.dense(hidden, units, tf.nn.relu)
      logit = v1.layers.dense(hidden, 1)[:, 0]
    in_head = tf.cast(tf.equal(domain, head), tf.float32)
    losses.append(tf.reduce_sum(in_head * tf.nn.sigmoid_cross_entropy_with_logits(
        labels=label, logits=logit)) / tf.maximum(tf.reduce_sum(in_head), 1.0))
  train_op = v1.train.AdamOptimizer(1e-3).minimize(tf.add_n(losses))

  inputs = [user, item, domain, label, histories[0], histories[1]]
  names = ["user_id", "item_id", "domain", "label", "hist_a", "hist_b"]
  num_examples = len(arrays["label"])
  with v1.Session() as session:
    session.run(v1.global_variables_initializer())
    start = time.perf_counter()
    for offset in range(0, num_examples, REFERENCE_BATCH):
      session.run(train_op, feed_dict={
          placeholder: arrays[name][offset:offset + REFERENCE_BATCH]
          for placeholder, name in zip(inputs, names)})
    seconds = time.perf_counter() - start
  return num_examples / seconds


def _dasl_train(data_dir: str, model_dir: str, epochs: int) -> dict:
  """One ``train_and_evaluate`` run with the defaults; returns its ``metrics.json``."""
  from dasl_tf import config_resolution  # pylint: disable=g-import-not-at-top
  from dasl_tf import training  # pylint: disable=g-import-not-at-top
  data = training.TrainingData.from_data_dir(data_dir)
  experiment = config_resolution.resolve_config(
      data.schema, None, {}, {"epochs": epochs, "early_stopping_patience": epochs})
  return training.train_and_evaluate(experiment, data, model_dir, overwrite=True,
                                     write_report=False, verbose=0)


def main(argv) -> None:
  del argv
  if _REFERENCE.value:
    print(json.dumps({"reference_examples_per_second": _reference(_REFERENCE.value)}))
    return
  if not (_DATA_DIR.value and _WORK_DIR.value):
    raise app.UsageError("--data_dir and --work_dir are required")
  os.makedirs(_WORK_DIR.value, exist_ok=True)
  arrays = os.path.join(_WORK_DIR.value, "train_arrays.npz")
  num_examples = _export_arrays(_DATA_DIR.value, arrays)
  child = subprocess.run([sys.executable, __file__, f"--reference_arrays={arrays}"],
                         capture_output=True, text=True, check=True)
  reference = json.loads(child.stdout.strip().splitlines()[-1])["reference_examples_per_second"]
  metrics = _dasl_train(_DATA_DIR.value, os.path.join(_WORK_DIR.value, "model"),
                        _EPOCHS.value)
  ours = metrics["examples_per_second"]
  print(f"data={_DATA_DIR.value} train_examples={num_examples} cpus={os.cpu_count()}")
  print(f"tf1_reference (graph, feed_dict, batch {REFERENCE_BATCH}, 4 GRUs, additive "
        f"attention, CTR loss): {reference:,.0f} examples/s")
  print(f"dasl-train (metrics.json examples_per_second, {_EPOCHS.value} epochs, default "
        f"objective): {ours:,.0f} examples/s")
  print(f"ratio: {ours / reference:.2f}x")


if __name__ == "__main__":
  app.run(main)
