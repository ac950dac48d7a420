"""Latency of an exported model's signatures on one CPU thread: p50/p99 per request.

Usage::

  .venv/bin/python bench/serving_latency.py [--export_dir DIR] [--requests 500] [--jit_compile]

Without ``--export_dir`` it exports a DASL model of the default size (d = 32,
T = 10; 10,000 users, 5,000 items per domain; random weights) to a temporary
directory first (with ``--jit_compile``, the model functions marked for XLA,
as ``dasl-export --jit_compile`` does). Each signature is then called with one request, on one
intra-op and one inter-op thread:

* ``serving_default``: 1 serialized tf.Example of raw ids,
* ``predict``: 1 row of raw ids,
* ``recommend``: 1 user with 100 and with 1,000 candidates.

Two ways of running the SavedModel are timed, each with its own table:

* ``session``: the SavedModel's MetaGraph in a ``Session``, fed and fetched by
  the signature's tensor names. This is how TensorFlow Serving runs a
  SavedModel (``LoadSavedModel`` then ``Session::Run``, from C++); here the
  call comes from Python, so the times hold a little more overhead than the
  server's.
* ``tf.saved_model.load``: the TF2 Python API, calling the loaded signature
  function; its Python dispatch adds a few hundred microseconds per call.
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dasl_tf  # noqa: E402,F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from dasl_tf import config as config_lib  # noqa: E402
from dasl_tf import features as F  # noqa: E402
from dasl_tf import model_io  # noqa: E402
from dasl_tf.serving import export  # noqa: E402
from dasl_tf.serving import spec as spec_lib  # noqa: E402
from dasl_tf.serving.client import DaslClient  # noqa: E402

_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "an export version directory to time")
_REQUESTS = flags.DEFINE_integer("requests", 500, "timed calls per case")
_WARMUP = flags.DEFINE_integer("warmup", 20, "untimed calls per case first")
_JIT_COMPILE = flags.DEFINE_bool("jit_compile", False, "export with the model marked for XLA")

NUM_USERS, NUM_ITEMS = 10_000, 5_000


def make_export(root: str) -> str:
  """A trained-model dir of the default DASL size (random weights), exported."""
  model_config = config_lib.ModelConfig(
      variant="dasl", num_users=NUM_USERS + 2, num_items_a=NUM_ITEMS + 2,
      num_items_b=NUM_ITEMS + 2)
  model = model_io.build_model(model_config)
  rng = np.random.default_rng(0)
  for variable in model.trainable_variables:
    variable.assign(rng.normal(0.0, 0.1, variable.shape).astype(np.float32))
  model_dir = os.path.join(root, "model")
  os.makedirs(os.path.join(model_dir, model_io.VOCAB_DIR))
  for name, size in (("users.txt", NUM_USERS), ("items_a.txt", NUM_ITEMS),
                     ("items_b.txt", NUM_ITEMS)):
    with open(os.path.join(model_dir, model_io.VOCAB_DIR, name), "w") as f:
      f.write("\n".join(str(i) for i in range(size)) + "\n")
  experiment = config_lib.ExperimentConfig(model=model_config)
  experiment.save(os.path.join(model_dir, model_io.CONFIG_FILE))
  F.DatasetSchema(feature_spec=F.feature_spec_for(model_config), num_users=NUM_USERS + 2,
                  num_items_a=NUM_ITEMS + 2, num_items_b=NUM_ITEMS + 2).save(model_dir)
  model_io.save_final_weights(model, model_dir)
  return export.export_model(model_dir, os.path.join(root, "exports"),
                             jit_compile=_JIT_COMPILE.value)


def cases(serving_spec: spec_lib.ServingSpec):
  """(label, signature, inputs) of the timed requests."""
  client = DaslClient(serving_spec)
  t = serving_spec.history_length
  rng = np.random.default_rng(1)

  def items(count):
    return [int(i) for i in rng.choice(NUM_ITEMS, size=count, replace=False)]

  row = {F.USER_ID: 17, F.DOMAIN: F.DOMAIN_A, F.HIST_A: items(t), F.HIST_B: items(t)}
  yield ("serving_default, 1 example", spec_lib.SERVING_DEFAULT,
         client.example_inputs([dict(row, item_id=42)]))
  yield "predict, 1 row", spec_lib.PREDICT, client.predict_inputs([dict(row, item_id=42)])
  for count in (100, 1000):
    yield (f"recommend, {count} candidates", spec_lib.RECOMMEND,
           client.recommend_inputs([dict(row, candidates=items(count))], pad_candidates_to=count))


def _timed_ms(call) -> np.ndarray:
  """Milliseconds of ``--requests`` calls of ``call()``, after ``--warmup`` untimed ones."""
  for _ in range(_WARMUP.value):
    call()
  seconds = np.empty(_REQUESTS.value)
  for i in range(_REQUESTS.value):
    start = time.perf_counter()
    call()
    seconds[i] = time.perf_counter() - start
  return seconds * 1e3


def session_calls(export_dir: str):
  """``make_call(signature, inputs)`` running the MetaGraph in a one-thread Session."""
  graph = tf.Graph()
  session = tf.compat.v1.Session(graph=graph, config=tf.compat.v1.ConfigProto(
      intra_op_parallelism_threads=1, inter_op_parallelism_threads=1))
  with graph.as_default():
    meta_graph = tf.compat.v1.saved_model.loader.load(
        session, [tf.saved_model.SERVING], export_dir)

  def make_call(signature, inputs):
    signature_def = meta_graph.signature_def[signature]
    feed = {signature_def.inputs[name].name: value for name, value in inputs.items()}
    fetch = [output.name for output in signature_def.outputs.values()]
    return lambda: session.run(fetch, feed)

  return make_call


def function_calls(export_dir: str):
  """``make_call(signature, inputs)`` calling the signatures of ``tf.saved_model.load``."""
  loaded = tf.saved_model.load(export_dir)

  def make_call(signature, inputs):
    function = loaded.signatures[signature]
    tensors = {name: tf.constant(value, tf.string if value.dtype == object else None)
               for name, value in inputs.items()}
    return lambda: next(iter(function(**tensors).values())).numpy()

  return make_call


def _main(argv) -> None:
  del argv
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  with tempfile.TemporaryDirectory() as root:
    export_dir = _EXPORT_DIR.value or make_export(root)
    serving_spec = spec_lib.ServingSpec.load(export_dir)
    made = f"DASL, default size (temporary{', XLA' if _JIT_COMPILE.value else ''})"
    print(f"export: {export_dir if _EXPORT_DIR.value else made}; "
          f"1 intra-op + 1 inter-op thread; {_REQUESTS.value} timed requests per case")
    for path, calls in (("session", session_calls), ("tf.saved_model.load", function_calls)):
      make_call = calls(export_dir)
      print(f"\n{path:32s} {'p50 ms':>8s} {'p99 ms':>8s} {'mean ms':>8s}")
      for label, signature, inputs in cases(serving_spec):
        ms = _timed_ms(make_call(signature, inputs))
        print(f"{label:32s} {np.percentile(ms, 50):8.3f} {np.percentile(ms, 99):8.3f} "
              f"{ms.mean():8.3f}")


if __name__ == "__main__":
  app.run(_main)
