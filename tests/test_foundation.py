"""The package imports with Keras 2, and its config and feature spec round-trip."""
import subprocess
import sys
import textwrap

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
          "tf.keras.layers; import dasl_tf.models")
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


def test_autograph_rule_comes_with_layers_once_and_not_with_dasl_tf():
  code = textwrap.dedent("""
      import importlib, sys
      import dasl_tf
      from dasl_tf import features, prepare
      assert "tensorflow" not in sys.modules, "import dasl_tf imported TensorFlow"
      from tensorflow.python.autograph.core import config as autograph_config

      def keras_rules():
        return [rule for rule in autograph_config.CONVERSION_RULES
                if isinstance(rule, autograph_config.DoNotConvert) and rule.matches("tf_keras")]

      # TensorFlow 2.21 lists DoNotConvert("tf_keras") itself; 2.16 needs dasl_tf's.
      assert len(keras_rules()) <= 1, keras_rules()
      import dasl_tf.layers
      assert len(keras_rules()) == 1, keras_rules()
      import dasl_tf.layers, dasl_tf.metrics
      from dasl_tf import autograph_rules
      importlib.reload(autograph_rules)
      autograph_rules.leave_keras_code_unconverted()
      assert len(keras_rules()) == 1, keras_rules()
      print("ok")
      """)
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == "ok"


def test_feature_spec_dtypes_are_numpy_and_tensorflow_accepts_them():
  import tensorflow as tf
  spec = F.FeatureSpec(history_length=3, user_num_dim=2, item_cat_dim=1, num_negatives=4)
  shapes = spec.shapes(with_negatives=True)
  assert {dtype for dtype, _ in shapes.values()} == {np.int64, np.float32}
  assert shapes[F.LABEL][0] == tf.float32 and shapes[F.USER_ID][0] == tf.int64
  assert tf.int64 == shapes[F.NEGATIVES][0] and tf.float32 != shapes[F.HIST_A][0]
  parsing = spec.parsing_spec(with_negatives=True)
  assert parsing[F.USER_NUM].dtype is tf.float32 and parsing[F.HIST_A].dtype is tf.int64
  assert parsing[F.USER_NUM].default_value.dtype == tf.float32
  specs = spec.tensor_specs(batch_size=5)
  assert specs[F.ITEM_CAT] == tf.TensorSpec((5, 1), tf.int64, name=F.ITEM_CAT)
  assert specs[F.USER_NUM] == tf.TensorSpec((5, 2), tf.float32, name=F.USER_NUM)
  for name, (dtype, shape) in spec.shapes(with_label=False).items():
    assert tf.zeros(shape, dtype).dtype == specs[name].dtype, name


def test_schema_save_and_load_round_trip(tmp_path):
  schema = F.DatasetSchema(feature_spec=F.FeatureSpec(history_length=3), num_users=9,
                           domain_names=("book", "music"), splits={"train": ("a", "b")})
  schema.save(str(tmp_path))
  assert F.DatasetSchema.load(str(tmp_path)) == schema
  assert (tmp_path / F.SCHEMA_FILE).read_text() == schema.to_json()
