"""The main job on the embedded default: synthetic data -> TFRecords -> DASL -> SavedModel -> scores.

Runs the public commands one after the other, exactly as a user would:
``dasl-prepare``, ``dasl-train`` (which evaluates and writes ``metrics.json``),
``dasl-export``, then loads the export in a fresh Python process that imports
neither dasl_tf nor TensorFlow Recommenders and scores a few requests.

Usage::

  python -m pipelines.demo [--output_dir demo_output] [--num_users 2000] [--seed 7]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "demo_output",
                                  "Where the run's directory is created (a new one per run).")
_NUM_USERS = flags.DEFINE_integer("num_users", 2000, "Synthetic users.")
_SEED = flags.DEFINE_integer("seed", 7, "Seed of the data, the model and the split.")

# Runs in a fresh interpreter: only TensorFlow, as TensorFlow Serving would load the export.
_SCORE_IN_FRESH_PROCESS = r"""
import json, sys
import tensorflow as tf
export_dir, data_dir = sys.argv[1], sys.argv[2]
loaded = tf.saved_model.load(export_dir)
files = sorted(tf.io.gfile.glob(data_dir + "/eval/*"))
compression = "GZIP" if files[0].endswith(".gz") else ""
records = [r.numpy() for r in tf.data.TFRecordDataset(files[:1], compression_type=compression).take(5)]
scores = loaded.signatures["serving_default"](examples=tf.constant(records))
foreign = [m for m in ("dasl_tf", "tensorflow_recommenders") if m in sys.modules]
print(json.dumps({"ctr": scores["ctr"].numpy().round(4).tolist(), "foreign_modules": foreign}))
"""


def _step(title: str, argv: list) -> None:
  """Runs one command, streaming its output, and stops the demo if it fails."""
  print(f"\n==> {title}\n    $ {' '.join(argv)}", flush=True)
  started = time.time()
  result = subprocess.run(argv, check=False)
  if result.returncode != 0:
    sys.exit(f"demo: step '{title}' failed with exit code {result.returncode}")
  print(f"    done in {time.time() - started:.1f} s", flush=True)


def _console(name: str) -> list:
  """How to call one of this package's modules with the interpreter running the demo."""
  return [sys.executable, "-m", name]


def _run(argv) -> None:
  del argv
  started = time.time()
  run_dir = os.path.abspath(os.path.join(_OUTPUT_DIR.value, time.strftime("run-%Y%m%d-%H%M%S")))
  raw_dir = os.path.join(run_dir, "raw")
  data_dir = os.path.join(run_dir, "data")
  model_dir = os.path.join(run_dir, "model")
  export_base = os.path.join(run_dir, "export", "dasl")
  seed = str(_SEED.value)

  print(f"==> generating {_NUM_USERS.value} synthetic users (two domains, planted signal)", flush=True)
  from dasl_tf import synthetic  # pylint: disable=g-import-not-at-top
  raw = synthetic.generate(
      raw_dir, synthetic.SyntheticConfig(num_users=_NUM_USERS.value, seed=_SEED.value))

  _step("dasl-prepare: raw logs -> TFRecords", _console("pipelines.prepare") + [
      "--format=csv", f"--input_a={raw['input_a']}", f"--input_b={raw['input_b']}",
      f"--user_features={raw['user_features']}",
      f"--item_features_a={raw['item_features_a']}",
      f"--item_features_b={raw['item_features_b']}",
      f"--output_dir={data_dir}", f"--seed={seed}"])
  _step("dasl-train: train DASL, evaluate, write metrics.json", _console("pipelines.train") + [
      f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--variant=dasl", f"--seed={seed}"])
  _step("dasl-export: versioned SavedModel for TensorFlow Serving", _console("serving.export") + [
      f"--model_dir={model_dir}", f"--export_base={export_base}", "--version=1"])

  export_dir = os.path.join(export_base, "1")
  print("\n==> scoring 5 requests with the export in a fresh process (TensorFlow only)", flush=True)
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  out = subprocess.run([sys.executable, "-c", _SCORE_IN_FRESH_PROCESS, export_dir, data_dir],
                       capture_output=True, text=True, env=env, check=False)
  if out.returncode != 0:
    sys.exit(f"demo: loading the export failed:\n{out.stderr[-2000:]}")
  scored = json.loads(out.stdout.strip().splitlines()[-1])
  if scored["foreign_modules"]:
    sys.exit(f"demo: the fresh process imported {scored['foreign_modules']}")

  with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as f:
    metrics = json.load(f)
  print("\n==> results")
  print(f"    AUC   domain A: {metrics['auc_a']:.4f}   domain B: {metrics['auc_b']:.4f}")
  print(f"    HR@10 domain A: {metrics['hr10_a']:.4f}   domain B: {metrics['hr10_b']:.4f}")
  print(f"    scores from the loaded export: {scored['ctr']}")
  print(f"    export path: {export_dir}")
  print(f"    total time: {time.time() - started:.0f} s")


def main() -> None:
  """Console entry point (`dasl-demo`)."""
  app.run(_run)


if __name__ == "__main__":
  main()
