"""Training throughput of DASL (examples/second) on this machine's CPUs.

Times ``model.fit`` steps (forward, both heads, all losses, backward, Adam) on
in-memory batches of random ids shaped like the Douban Book/Music data
(T = 10), after a warm-up that excludes tracing. With ``--data_dir`` it reads a
``dasl-prepare`` output directory's train split through ``dasl_tf.data``
instead (the input pipeline included).

Usage::

  .venv/bin/python bench/train_throughput.py [--variant dasl] [--batch_size 256]
      [--steps 200] [--jit_compile] [--nounroll_gru] [--data_dir DIR]
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from dasl_tf import config as config_lib  # noqa: E402
from dasl_tf import data as data_lib  # noqa: E402
from dasl_tf import features as F  # noqa: E402
from dasl_tf import model_io  # noqa: E402

_VARIANT = flags.DEFINE_enum("variant", "dasl", config_lib.VARIANTS, "Model variant.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Examples per step.")
_STEPS = flags.DEFINE_integer("steps", 200, "Timed training steps.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 20, "Untimed steps first (tracing, caches).")
_JIT = flags.DEFINE_boolean("jit_compile", False, "Compile the train step with XLA.")
_UNROLL = flags.DEFINE_boolean("unroll_gru", config_lib.ModelConfig.unroll_gru,
                               "ModelConfig.unroll_gru: unroll the GRUs' T steps.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Optional dasl-prepare output to read.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the model and the random data.")


def _random_dataset(config: config_lib.ModelConfig, batch_size: int, seed: int) -> tf.data.Dataset:
  """Repeating batches of random examples (both domains mixed, 30% padding in histories)."""
  rng = np.random.default_rng(seed)
  n = 64 * batch_size
  t = config.history_length

  def history(vocab):
    ids = rng.integers(2, vocab, (n, t))
    ids[rng.random((n, t)) < 0.3] = F.PAD_ID
    return np.sort(ids, axis=1)  # padding (0) first: left padding.

  domain = rng.integers(0, 2, n)
  features = {F.USER_ID: rng.integers(2, config.num_users, n),
              F.ITEM_ID: np.where(domain == 0, rng.integers(2, config.num_items_a, n),
                                  rng.integers(2, config.num_items_b, n)),
              F.DOMAIN: domain, F.HIST_A: history(config.num_items_a),
              F.HIST_B: history(config.num_items_b)}
  labels = rng.integers(0, 2, n).astype(np.float32)
  ds = tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size, drop_remainder=True)
  return ds.cache().repeat().prefetch(tf.data.AUTOTUNE)


def main(argv):
  del argv
  tf_keras.utils.set_random_seed(_SEED.value)
  if _DATA_DIR.value:
    schema = F.DatasetSchema.load(_DATA_DIR.value)
    config = schema.model_config(variant=_VARIANT.value, unroll_gru=_UNROLL.value)
    dataset = data_lib.make_dataset(data_lib.split_files(_DATA_DIR.value, "train"),
                                    schema.feature_spec, _BATCH_SIZE.value, training=True,
                                    seed=_SEED.value, repeat=True, drop_remainder=True)
  else:
    config = config_lib.ModelConfig(variant=_VARIANT.value, num_users=2_700,
                                    num_items_a=6_800, num_items_b=5_600,
                                    unroll_gru=_UNROLL.value)
    dataset = _random_dataset(config, _BATCH_SIZE.value, _SEED.value)
  model = model_io.build_model(config)
  model.compile(tf_keras.optimizers.Adam(1e-3, clipnorm=1.0), jit_compile=_JIT.value)
  model.fit(dataset, steps_per_epoch=_WARMUP.value, epochs=1, verbose=0)
  start = time.perf_counter()
  model.fit(dataset, steps_per_epoch=_STEPS.value, epochs=1, verbose=0)
  seconds = time.perf_counter() - start
  examples = _STEPS.value * _BATCH_SIZE.value
  print(f"variant={_VARIANT.value} batch_size={_BATCH_SIZE.value} jit_compile={_JIT.value} "
        f"unroll_gru={_UNROLL.value} "
        f"input={'tfrecords' if _DATA_DIR.value else 'in-memory'} cpus={os.cpu_count()} "
        f"steps={_STEPS.value} seconds={seconds:.2f} examples_per_second={examples / seconds:,.0f}")


if __name__ == "__main__":
  app.run(main)
