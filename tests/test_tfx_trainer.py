"""The TFX Trainer module: run_fn with an FnArgs-compatible object, without TFX installed."""
import json
import os
import types

from google.protobuf import text_format
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from dasl_tf import config as config_lib
from dasl_tf import data as data_lib
from dasl_tf import features as F
from dasl_tf.pipelines import tfx_trainer
from dasl_tf.prepare import tfmd
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


# What TFX hands run_fn, without TFX: an Examples artifact's Split-<name> directories, the
# TFMD schema of the examples, a HyperParameters dict and the dataset metadata artifact.

def _examples_artifact(root: str, data_dir: str, splits) -> str:
  """Copies shards into the layout of a TFX Examples artifact: <root>/Split-<name>/."""
  for split, shard in splits.items():
    os.makedirs(os.path.join(root, f"Split-{split}"))
    tf.io.gfile.copy(os.path.join(data_dir, f"{shard}-00000-of-00001.tfrecord"),
                     os.path.join(root, f"Split-{split}", "data_tfrecord-00000-of-00001"))
  return root


def _tfmd_schema(path: str, schema: F.DatasetSchema, edit=None) -> str:
  """Writes the TFMD schema dasl-prepare writes (``schema.pbtxt``), edited by ``edit``."""
  proto = tfmd.schema_proto(schema)
  if edit:
    edit({feature.name: feature for feature in proto.feature}, proto)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text_format.MessageToString(proto))
  return path


def test_run_fn_under_tfx_reads_the_metadata_artifact_schema_and_hyperparameters(tmp_path):
  data_dir = support.make_dataset_dir(str(tmp_path / "data"))
  # The test split is another shard than validation (fold-0: more examples), so the
  # metrics show which one metrics.json scored.
  examples = _examples_artifact(str(tmp_path / "examples"), data_dir,
                                {"train": "train", "validation": "validation", "test": "fold-0"})
  fn_args = tfx_trainer.FnArgs(
      train_files=[os.path.join(examples, "Split-train", "*")],
      eval_files=[os.path.join(examples, "Split-validation", "*")],
      model_run_dir=str(tmp_path / "run"),
      serving_model_dir=str(tmp_path / "serving"),
      train_steps=TRAIN_STEPS,
      schema_path=_tfmd_schema(str(tmp_path / "schema.pbtxt"), F.DatasetSchema.load(data_dir)),
      hyperparameters={"space": [], "values": {"learning_rate": 0.02, "train.batch_size": 8,
                                               "model.hidden_units": [12, 6]}},
      dataset_metadata_dir=data_dir,
      custom_config={"variant": "wide_deep", "test_split": "test",
                     "config": {"train": {"batch_size": 64, "learning_rate": 0.5}}})
  metrics = tfx_trainer.run_fn(fn_args)

  config = config_lib.ExperimentConfig.load(os.path.join(fn_args.model_run_dir, "config.json"))
  assert config.model.variant == "wide_deep"
  assert config.train.batch_size == 8  # the hyperparameter over custom_config
  assert config.train.learning_rate == 0.02
  assert config.model.hidden_units == (12, 6)
  assert config.train.train_steps == TRAIN_STEPS
  assert metrics["train_examples"] == TRAIN_STEPS * 8
  test_examples = data_lib.count_records(os.path.join(data_dir, "fold-0-00000-of-00001.tfrecord"))
  validation_examples = data_lib.count_records(
      os.path.join(data_dir, "validation-00000-of-00001.tfrecord"))
  assert test_examples != validation_examples
  assert metrics["examples_a"] + metrics["examples_b"] == test_examples
  assert metrics["val_examples_a"] + metrics["val_examples_b"] == validation_examples
  # The vocabularies of the artifact travel with the run and the export.
  assert sorted(os.listdir(os.path.join(fn_args.model_run_dir, "vocab"))) == sorted(
      os.listdir(os.path.join(data_dir, "vocab")))
  loaded = tf.saved_model.load(fn_args.serving_model_dir)
  assert "serving_indices" in loaded.signatures


@pytest.mark.parametrize("hyperparameters, model, train", [
    ({"learning_rate": 0.01, "embedding_dim": 8}, {"embedding_dim": 8}, {"learning_rate": 0.01}),
    ({"space": [{"class_name": "Float"}], "values": {"train.epochs": 3, "model.variant": "din"}},
     {"variant": "din"}, {"epochs": 3}),
    ({"hidden_units": [32, 16]}, {"hidden_units": (32, 16)}, {}),
    (types.SimpleNamespace(values={"dropout": 0.3}), {"dropout": 0.3}, {}),  # keras_tuner-like
    ({"values": {"l2": 0.001, "tuner/epochs": 4, "tuner/trial_id": "0007"}}, {"l2": 0.001}, {}),
    (None, {}, {}),
])
def test_hyperparameter_overrides_map_names_onto_the_config(hyperparameters, model, train):
  assert tfx_trainer.hyperparameter_overrides(hyperparameters) == (model, train)


@pytest.mark.parametrize("hyperparameters, message", [
    ({"learning_rat": 0.01}, "'learning_rat' is not a field"),
    ({"optimizer.learning_rate": 0.01}, "'optimizer.learning_rate' is not a field"),
    ({"model.learning_rate": 0.01}, "'model.learning_rate' is not a field"),
    ({"num_users": 10}, "comes from the dataset"),
    ({"values": [1, 2]}, "'values' is not a field"),
])
def test_hyperparameter_overrides_reject_what_is_not_tunable(hyperparameters, message):
  with pytest.raises(ValueError, match=message):
    tfx_trainer.hyperparameter_overrides(hyperparameters)


def _fn_args(tmp_path, data_dir, **kwargs):
  values = dict(train_files=[os.path.join(data_dir, "train-*")],
                eval_files=[os.path.join(data_dir, "validation-*")],
                model_run_dir=str(tmp_path / "run"), dataset_metadata_dir=data_dir)
  values.update(kwargs)
  return tfx_trainer.FnArgs(**values)


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
  return support.make_dataset_dir(str(tmp_path_factory.mktemp("data")))


@pytest.mark.parametrize("kwargs, message", [
    (dict(hyperparameters={"values": {"embeding_dim": 4}}), "'embeding_dim' is not a field"),
    (dict(hyperparameters={"train_steps": 5}, train_steps=7), "contradicts"),
    (dict(custom_config={"schema_dir": "/elsewhere"}), "disagrees with the dataset metadata"),
    (dict(custom_config={"test_split": "test"}), "TFX Examples artifact"),
])
def test_run_fn_refuses_before_training(tmp_path, tiny_data_dir, kwargs, message):
  with pytest.raises(ValueError, match=message):
    tfx_trainer.run_fn(_fn_args(tmp_path, tiny_data_dir, **kwargs))
  assert not os.path.exists(tmp_path / "run")


def test_run_fn_refuses_examples_that_disagree_with_the_metadata(tmp_path, tiny_data_dir):
  def longer_history(features, unused_proto):
    features[F.HIST_A].shape.dim[0].size += 1
  schema_path = _tfmd_schema(str(tmp_path / "schema.pbtxt"), F.DatasetSchema.load(tiny_data_dir),
                             longer_history)
  with pytest.raises(ValueError, match="'hist_a' has 5 values per example, schema.json wants 4"):
    tfx_trainer.run_fn(_fn_args(tmp_path, tiny_data_dir, schema_path=schema_path))
  assert not os.path.exists(tmp_path / "run")


def _inferred_like(features, proto):
  """What SchemaGen infers from the train split: no negatives; value counts, not shapes."""
  del proto.feature[[f.name for f in proto.feature].index(F.NEGATIVES)]
  for feature in proto.feature:
    if feature.name == F.USER_ID:
      feature.ClearField("shape")
      feature.value_count.min = feature.value_count.max = 1
    elif feature.name == F.HIST_B:
      feature.ClearField("shape")
      feature.value_count.min = 1  # open: not checked


def _drop_label(features, proto):
  del proto.feature[[f.name for f in proto.feature].index(F.LABEL)]


def _label_as_int(features, unused_proto):
  features[F.LABEL].type = schema_pb2.INT
  features[F.LABEL].ClearField("float_domain")


@pytest.mark.parametrize("edit, message", [
    (None, None),
    (_inferred_like, None),
    (_drop_label, "'label' is missing"),
    (_label_as_int, "'label' has type INT, schema.json wants FLOAT"),
])
def test_check_examples_schema(tmp_path, tiny_data_dir, edit, message):
  schema = F.DatasetSchema.load(tiny_data_dir)
  path = _tfmd_schema(str(tmp_path / "schema.pbtxt"), schema, edit)
  if message is None:
    tfx_trainer.check_examples_schema(schema, path)
  else:
    with pytest.raises(ValueError, match=message):
      tfx_trainer.check_examples_schema(schema, path)
