"""The main job on the embedded default: synthetic data -> TFRecords -> DASL -> SavedModel -> scores.

Runs the public commands one after the other, exactly as a user would:
``dasl-prepare``, ``dasl-train`` (which evaluates and writes ``metrics.json``),
``dasl-export``, then loads the export in a fresh Python process that imports
neither dasl_tf nor TensorFlow Recommenders and scores a few requests.

Each step's full output goes to ``<run>/logs/<step>.log``; the console shows
each step's title, duration and key results, and the results at the end. A
failed step shows the last lines of its log and the log's path.

Usage::

  python -m dasl_tf.pipelines.demo [--output_dir demo_output] [--num_users 2000] [--seed 7]
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Optional

from absl import app
from absl import flags

from dasl_tf.prepare import config as prepare_config
from dasl_tf.pipelines import cli

FLAGS = flags.FLAGS
LOG_DIR = "logs"
TAIL_LINES = 40

# Runs in a fresh interpreter: only TensorFlow, as TensorFlow Serving would load the export.
_SCORE_IN_FRESH_PROCESS = r"""
import json, sys
import tensorflow as tf
export_dir, data_dir, out_path = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
files = sorted(tf.io.gfile.glob(data_dir + "/test/*"))
compression = "GZIP" if files[0].endswith(".gz") else ""
dataset = tf.data.TFRecordDataset(files[:1], compression_type=compression).take(5)
records = [r.numpy() for r in dataset]
scores = loaded.signatures["serving_indices"](examples=tf.constant(records))
foreign = [m for m in ("dasl_tf", "tensorflow_recommenders") if m in sys.modules]
with open(out_path, "w") as f:
  json.dump({"ctr": [round(float(s), 4) for s in scores["ctr"].numpy()],
             "foreign_modules": foreign}, f)
"""


def define_flags() -> None:
  """Defines the flags of ``dasl-demo``."""
  with cli.key_flags():
    flags.DEFINE_string("output_dir", "demo_output",
                        "Where the run's directory is created (a new one per run).")
    flags.DEFINE_integer("num_users", 2000, "Synthetic users.")
    flags.DEFINE_integer("seed", 7, "Seed of the data, the model and the split.")


def _step(name: str, title: str, argv: List[str], log_dir: str,
          env: Optional[Dict[str, str]] = None) -> None:
  """Runs one command with its output in ``<log_dir>/<name>.log``; exits the demo if it fails."""
  print(f"\n==> {title}", flush=True)
  log_path = os.path.join(log_dir, f"{name}.log")
  started = time.time()
  with open(log_path, "w", encoding="utf-8") as log:
    log.write(f"$ {shlex.join(argv)}\n\n")
    log.flush()
    returncode = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                check=False).returncode
  if returncode != 0:
    with open(log_path, encoding="utf-8", errors="replace") as log:
      tail = log.read().splitlines()[-TAIL_LINES:]
    print("\n".join(f"    | {line}" for line in tail), file=sys.stderr)
    cli.fail("dasl-demo", f"step '{title}' failed with exit code {returncode}; full log: "
                          f"{log_path}")
  print(f"    done in {time.time() - started:.1f} s", flush=True)


def _module(name: str) -> List[str]:
  """How to call one of this package's modules with the interpreter running the demo."""
  return [sys.executable, "-m", name]


def _read_json(path: str):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _run(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  started = time.time()
  run_dir = os.path.abspath(os.path.join(FLAGS.output_dir, time.strftime("run-%Y%m%d-%H%M%S")))
  log_dir = os.path.join(run_dir, LOG_DIR)
  data_dir = os.path.join(run_dir, "data")
  model_dir = os.path.join(run_dir, "model")
  export_base = os.path.join(run_dir, "export", "dasl")
  export_dir = os.path.join(export_base, "1")
  scores_path = os.path.join(run_dir, "scores.json")
  seed = str(FLAGS.seed)
  os.makedirs(log_dir)
  print(f"==> demo run in {run_dir} (each step's full output: {LOG_DIR}/<step>.log)")

  print(f"\n==> generating {FLAGS.num_users} synthetic users (two domains, planted signal)",
        flush=True)
  from dasl_tf import synthetic  # pylint: disable=g-import-not-at-top
  raw = synthetic.generate(os.path.join(run_dir, "raw"),
                           synthetic.SyntheticConfig(num_users=FLAGS.num_users, seed=FLAGS.seed))
  print(f"    done in {time.time() - started:.1f} s", flush=True)

  _step("prepare", "dasl-prepare: raw logs -> TFRecords", _module("dasl_tf.pipelines.prepare") + [
      "--format=csv", f"--input_a={raw['input_a']}", f"--input_b={raw['input_b']}",
      f"--user_features={raw['user_features']}",
      f"--item_features_a={raw['item_features_a']}",
      f"--item_features_b={raw['item_features_b']}",
      f"--output_dir={data_dir}", f"--seed={seed}"], log_dir)
  stats = _read_json(os.path.join(data_dir, "stats.json"))
  examples = ", ".join(f"{name} {stats['splits'][name]['examples']}"
                       for name in prepare_config.TEMPORAL_SPLITS)
  print(f"    examples: {examples}")
  print(f"    users: {stats['users']} ({stats['overlap_users']} in both domains)")
  for warning in stats["warnings"]:
    print(f"    warning: {warning}")

  _step("train", "dasl-train: train DASL, select on validation, test, write metrics.json",
        _module("dasl_tf.pipelines.train") + [
            f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--variant=dasl",
            f"--seed={seed}", "--verbose=2"], log_dir)
  print(f"    model: {model_dir}")

  _step("export", "dasl-export: versioned SavedModel for TensorFlow Serving",
        _module("dasl_tf.serving.export") + [
            f"--model_dir={model_dir}", f"--export_base={export_base}", "--version=1"], log_dir)
  print(f"    export: {export_dir}")

  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  _step("score", "scoring 5 requests with the export in a fresh process (TensorFlow only)",
        [sys.executable, "-c", _SCORE_IN_FRESH_PROCESS, export_dir, data_dir, scores_path],
        log_dir, env)
  scored = _read_json(scores_path)
  if scored["foreign_modules"]:
    cli.fail("dasl-demo", f"the fresh process imported {scored['foreign_modules']}")

  metrics = _read_json(os.path.join(model_dir, "metrics.json"))
  print("\n==> results")
  print(f"    AUC   domain A: {metrics['auc_a']:.4f}   domain B: {metrics['auc_b']:.4f}")
  print(f"    HR@10 domain A: {metrics['hr10_a']:.4f}   domain B: {metrics['hr10_b']:.4f}")
  print(f"    scores from the loaded export: {scored['ctr']}")
  print(f"    export path: {export_dir}")
  print(f"    logs: {log_dir}")
  print(f"    total time: {time.time() - started:.0f} s")


def main() -> None:
  """Console entry point (``dasl-demo``)."""
  define_flags()
  cli.run_command("dasl-demo", _run)


if __name__ == "__main__":
  main()
