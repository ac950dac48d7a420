"""Examples per second of the tf.data reader (``dasl_tf.data.make_dataset``).

Prepares a synthetic dataset (or uses ``--data_dir``), then times full passes
over its training split, in evaluation order and in training order (seeded
shuffle): parsing, shuffling and batching included, the model excluded. The
shard check (``verify_files``) is timed separately.

Each pass is consumed two ways: ``graph`` pulls the batches inside TensorFlow
(``Dataset.reduce``), as ``model.fit`` does from its compiled train step;
``python`` iterates in a Python ``for`` loop, which adds about 0.1-0.5 ms of
eager overhead per batch. The default batch size, 256, is the one training
uses (``TrainConfig.batch_size``, ``bench/train_throughput.py``).

  .venv/bin/python bench/reader_throughput.py
  .venv/bin/python bench/reader_throughput.py --data_dir /tmp/douban --batch_size 1024
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402  pylint: disable=g-import-not-at-top
from dasl_tf import data  # noqa: E402  pylint: disable=g-import-not-at-top
from dasl_tf import features as F  # noqa: E402
from dasl_tf import prepare  # noqa: E402
from dasl_tf import synthetic  # noqa: E402


def _prepared(tmp: str, num_users: int) -> str:
  paths = synthetic.generate(os.path.join(tmp, "raw"), synthetic.SyntheticConfig(
      num_users=num_users, num_items_a=2000, num_items_b=2000, seed=0))
  out = os.path.join(tmp, "prepared")
  prepare.prepare(prepare.PrepareConfig(output_dir=out, **paths))
  return out


def _graph_count(ds) -> int:
  """Examples in one pass, the batches pulled inside TensorFlow (as ``model.fit`` does)."""
  return int(ds.reduce(tf.constant(0, tf.int64),
                       lambda n, batch: n + tf.shape(batch[1], out_type=tf.int64)[0]))


def _python_count(ds) -> int:
  """Examples in one pass, the batches pulled by a Python ``for`` loop."""
  return sum(int(label.shape[0]) for _, label in ds)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", default="", help="a dasl-prepare output (default: "
                      "prepare a synthetic one)")
  parser.add_argument("--num_users", type=int, default=6000)
  parser.add_argument("--batch_size", type=int, default=256,
                      help="examples per batch (default: training's, 256)")
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--consumer", choices=("graph", "python", "both"), default="both",
                      help="how the batches are pulled (see above)")
  args = parser.parse_args()
  consumers = ("graph", "python") if args.consumer == "both" else (args.consumer,)
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = args.data_dir or _prepared(tmp, args.num_users)
    spec = F.DatasetSchema.load(data_dir).feature_spec
    files = data.split_files(data_dir, "train")
    start = time.perf_counter()
    count = sum(data.count_records(f) for f in files)
    verify = time.perf_counter() - start
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}; "
          f"{count:,} training examples in {len(files)} shards; spec {spec}")
    print(f"shard check (verify_files): {verify:.2f} s = {count / verify:,.0f} examples/s")
    for training in (False, True):
      ds = data.make_dataset(files, spec, args.batch_size, training=training, seed=1,
                             verify_files=False)
      for consumer in consumers:
        for epoch in range(args.epochs):
          start = time.perf_counter()
          seen = _graph_count(ds) if consumer == "graph" else _python_count(ds)
          seconds = time.perf_counter() - start
          print(f"training={training!s:5} {consumer:6} epoch {epoch}: {seen:,} examples in "
                f"{seconds:.2f} s = {seen / seconds:,.0f} examples/s (batch {args.batch_size})")


if __name__ == "__main__":
  main()
