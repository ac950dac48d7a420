"""The package imports with Keras 2, and its config and feature spec round-trip."""
import subprocess
import sys

import numpy as np
import pytest

import dasl_tf
from dasl_tf import config as config_lib
from dasl_tf import features as F


def test_import_selects_legacy_keras():
  import tensorflow as tf
  assert tf.keras.layers.Layer.__module__.startswith("tf_keras.")


def test_import_after_keras3_fails_clearly():
  code = ("import os; os.environ.pop('TF_USE_LEGACY_KERAS', None); import tensorflow as tf; "
          "tf.keras.layers; import dasl_tf")
  env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
  assert proc.returncode != 0
  assert "TF_USE_LEGACY_KERAS=1" in proc.stderr


def test_experiment_config_json_round_trip(tmp_path):
  cfg = config_lib.ExperimentConfig(
      model=config_lib.ModelConfig(variant="dasl_de", num_users=10, hidden_units=(8, 4)),
      train=config_lib.TrainConfig(batch_size=7))
  path = str(tmp_path / "config.json")
  cfg.save(path)
  assert config_lib.ExperimentConfig.load(path) == cfg


def test_config_rejects_unknown_keys():
  with pytest.raises(config_lib.ConfigError, match="unknown key"):
    config_lib.ModelConfig.from_dict({"embeding_dim": 3})


def test_feature_spec_encode_parse_round_trip():
  spec = F.FeatureSpec(history_length=4, user_num_dim=2, item_cat_dim=1)
  example = {F.USER_ID: 5, F.ITEM_ID: 7, F.DOMAIN: 1, F.LABEL: 1.0,
             F.HIST_A: F.pad_history([3, 4], 4), F.HIST_B: [2, 3, 4, 5],
             F.USER_NUM: [0.5, -1.0], F.ITEM_CAT: [3]}
  parsed = spec.parse([spec.encode(example)])
  np.testing.assert_array_equal(parsed[F.HIST_A].numpy(), [[0, 0, 3, 4]])
  np.testing.assert_allclose(parsed[F.USER_NUM].numpy(), [[0.5, -1.0]])
  assert parsed[F.DOMAIN].numpy().tolist() == [1]


def test_feature_spec_encode_rejects_wrong_length():
  spec = F.FeatureSpec(history_length=4)
  with pytest.raises(ValueError, match="hist_a"):
    spec.encode({F.USER_ID: 1, F.ITEM_ID: 1, F.DOMAIN: 0, F.HIST_A: [1], F.HIST_B: [0] * 4})
