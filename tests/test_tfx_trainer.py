"""The TFX Trainer module: run_fn with an FnArgs-compatible object, without TFX installed."""
import json
import os

import pytest
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf.pipelines import tfx_trainer
from tests import test_train_support as support

TRAIN_STEPS = 12
BATCH_SIZE = 16


def test_run_fn_trains_evaluates_and_exports_into_serving_model_dir(tmp_path):
  data_dir = support.make_dataset_dir(str(tmp_path / "data"))
  fn_args = tfx_trainer.FnArgs(
      train_files=[os.path.join(data_dir, "train-*")],
      eval_files=[os.path.join(data_dir, "validation-*")],
      model_run_dir=str(tmp_path / "run"),
      serving_model_dir=str(tmp_path / "serving"),
      train_steps=TRAIN_STEPS,
      eval_steps=None,
      custom_config={"schema_dir": data_dir, "variant": "wide_deep",
                     "test_files": [os.path.join(data_dir, "test-*")],
                     "config": {"train": {"batch_size": BATCH_SIZE, "train_steps": 1000,
                                          "learning_rate": 0.02}}})
  metrics = tfx_trainer.run_fn(fn_args)

  with open(os.path.join(fn_args.model_run_dir, "metrics.json"), encoding="utf-8") as f:
    assert json.load(f) == metrics
  config = config_lib.ExperimentConfig.load(os.path.join(fn_args.model_run_dir, "config.json"))
  assert config.model.variant == "wide_deep"
  assert config.train.train_steps == TRAIN_STEPS  # fn_args over custom_config
  assert config.train.batch_size == BATCH_SIZE  # custom_config over the default
  assert metrics["train_examples"] == TRAIN_STEPS * BATCH_SIZE

  loaded = tf.saved_model.load(fn_args.serving_model_dir)  # TFX layout: no version directory
  eval_shard = tf.io.gfile.glob(fn_args.eval_files[0])[0]
  records = [r.numpy() for r in tf.data.TFRecordDataset(eval_shard).take(3)]
  scores = loaded.signatures["serving_indices"](examples=tf.constant(records))
  assert scores["ctr"].shape == (3,)
  assert not [p for p in os.listdir(tmp_path) if ".staging-" in p]


def test_run_fn_names_the_missing_schema_dir(tmp_path):
  fn_args = tfx_trainer.FnArgs(train_files=["x"], eval_files=["y"], model_run_dir=str(tmp_path))
  with pytest.raises(ValueError, match="schema_dir"):
    tfx_trainer.run_fn(fn_args)
