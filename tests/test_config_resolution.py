"""Configuration resolution: precedence, dataset sizes, and every bad value named."""
import re

import pytest

from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import features as F
from dasl_tf import presets
from tests import test_train_support as support


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  return support.make_dataset_dir(str(tmp_path_factory.mktemp("data")))


def test_resolve_config_precedence_and_dataset_sizes(dataset_dir):
  schema = F.DatasetSchema.load(dataset_dir)
  base = config_lib.ExperimentConfig(
      model=config_lib.ModelConfig(variant="dasl_de", num_users=999, gru_units=5),
      train=config_lib.TrainConfig(batch_size=7, epochs=4))
  config = config_resolution.resolve_config(schema, base, {"gru_units": 6}, {"batch_size": 9})
  assert (config.model.variant, config.model.gru_units) == ("dasl_de", 6)
  assert (config.train.batch_size, config.train.epochs) == (9, 4)
  assert config.model.num_users == schema.num_users


@pytest.mark.parametrize("overrides, message", [
    ({"strategy": "tpu"}, "strategy"),
    ({"monitor": "precision"}, "monitor"),
    ({"batch_size": 0}, "batch_size"),
])
def test_resolve_config_rejects_bad_values(dataset_dir, overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_resolution.resolve_config(F.DatasetSchema.load(dataset_dir), None, {}, overrides)


def test_resolve_config_rejects_unknown_variant(dataset_dir):
  with pytest.raises(config_lib.ConfigError, match="registered"):
    config_resolution.resolve_config(F.DatasetSchema.load(dataset_dir), None, {"variant": "nope"}, {})


@pytest.mark.parametrize("overrides, message", [
    ({"train_negatives": -2}, "train_negatives"),
    ({"clipnorm": -1.0}, "clipnorm"),
])
def test_resolve_config_rejects_bad_train_values(dataset_dir, overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_resolution.resolve_config(F.DatasetSchema.load(dataset_dir), None, {}, overrides)


@pytest.mark.parametrize("overrides, message", [
    ({"ranking_loss": "hinge"}, "ranking_loss"),
    ({"ranking_weight": -1.0}, "ranking_weight"),
])
def test_resolve_config_rejects_bad_model_values(dataset_dir, overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_resolution.resolve_config(F.DatasetSchema.load(dataset_dir), None, overrides, {})


@pytest.mark.parametrize("text, message", [
    ('{"model": {"embedding_dim": "32"}}', r"ModelConfig.embedding_dim: expected int, got '32'"),
    ('{"model": {"embedding_dim": 32.0}}', r"ModelConfig.embedding_dim: expected int, got 32.0"),
    ('{"model": {"hidden_units": [16, "8"]}}', "ModelConfig.hidden_units: expected a list of int"),
    ('{"model": {"hidden_units": 16}}', "ModelConfig.hidden_units: expected a list of int"),
    ('{"model": {"variant": 3}}', "ModelConfig.variant: expected str, got 3"),
    ('{"model": {"unroll_gru": 1}}', "ModelConfig.unroll_gru: expected bool, got 1"),
    ('{"train": {"learning_rate": NaN}}', "NaN is not a JSON value"),
    ('{"train": {"learning_rate": Infinity}}', "Infinity is not a JSON value"),
    ('{"model": {"dropout": 0.1}, "model": {"dropout": 0.2}}', "key 'model' appears more than"),
    ('{"train": {"epochs": true}}', r"TrainConfig.epochs: expected int, got True \(bool\)"),
    ('{"train": "fast"}', "ExperimentConfig.train: expected a JSON object, got str"),
])
def test_every_config_field_is_type_checked(text, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.ExperimentConfig.from_json(text)


def test_type_checks_accept_what_json_and_python_give():
  config = config_lib.ExperimentConfig.from_json(
      '{"model": {"hidden_units": [16, 8], "dropout": 0}, "train": {"learning_rate": 1}}')
  assert config.model.hidden_units == (16, 8) and config.model.dropout == 0
  config_lib.ModelConfig(hidden_units=[4])  # a Python list of ints is accepted too


# One case per range family: the config cannot be built, so nothing is ever written for it.
@pytest.mark.parametrize("config_class, field, value, expected", [
    (config_lib.ModelConfig, "embedding_dim", 0, "it must be >= 1"),
    (config_lib.ModelConfig, "history_length", -3, "it must be >= 1"),
    (config_lib.ModelConfig, "num_items_a", -1, "it must be >= 0"),
    (config_lib.ModelConfig, "hidden_units", (64, 0), "every element must be >= 1"),
    (config_lib.ModelConfig, "user_cat_vocab_sizes", (0,), "every element must be >= 1"),
    (config_lib.ModelConfig, "dropout", 1.5, r"it must be in \[0, 1\)"),
    (config_lib.ModelConfig, "other_domain_dropout", -0.1, r"it must be in \[0, 1\)"),
    (config_lib.ModelConfig, "orthogonality_weight", -1.0, "it must be >= 0"),
    (config_lib.ModelConfig, "ranking_loss", "hinge", "it must be one of"),
    (config_lib.ModelConfig, "timestamp_unit", "days", "it must be one of"),
    (config_lib.TrainConfig, "learning_rate", 0.0, "it must be > 0"),
    (config_lib.TrainConfig, "eval_steps", -1, "it must be >= 0"),
    (config_lib.TrainConfig, "shuffle_buffer", 0, "it must be >= 1"),
    (config_lib.TrainConfig, "train_negatives", -2, "it must be >= -1"),
    (config_lib.TrainConfig, "negative_sampling_alpha", 2.5, r"it must be in \[0, 2\]"),
    (config_lib.TrainConfig, "strategy", "tpu", "it must be one of"),
])
def test_every_range_is_checked_when_the_config_is_built(config_class, field, value, expected):
  with pytest.raises(config_lib.ConfigError) as error:
    config_class(**{field: value})
  assert str(error.value).startswith(f"{config_class.__name__}.{field}={value!r}: ")
  assert re.search(expected, str(error.value)), error.value
  with pytest.raises(config_lib.ConfigError, match=field):
    config_lib.ExperimentConfig.from_dict(
        {"model" if config_class is config_lib.ModelConfig else "train": {field: value}})


def test_cross_field_rules_are_checked_when_the_config_is_built():
  with pytest.raises(config_lib.ConfigError, match="sasrec_heads=3 must divide embedding_dim=32"):
    config_lib.ModelConfig(variant="sasrec", sasrec_heads=3)
  config_lib.ModelConfig(variant="dasl", sasrec_heads=3)  # read by SASRec only
  with pytest.raises(config_lib.ConfigError, match="TrainConfig.monitor='val_hr10'"):
    config_lib.TrainConfig(monitor="val_hr10")


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_resolves_to_a_valid_config(dataset_dir, name):
  config = config_resolution.resolve_config(F.DatasetSchema.load(dataset_dir),
                                            presets.preset_config(name))
  for part, values in presets.PRESETS[name].values.items():
    for field, value in values.items():
      got = getattr(getattr(config, part), field)
      assert got == (tuple(value) if isinstance(value, list) else value), (part, field)


def test_a_config_file_overrides_a_preset_key_by_key(tmp_path):
  path = tmp_path / "run.json"
  path.write_text('{"model": {"embedding_dim": 12}, "train": {"epochs": 5}}')
  config = config_lib.ExperimentConfig.load(str(path), presets.preset_config("smoke"))
  assert (config.model.embedding_dim, config.model.gru_units) == (12, 8)  # file, preset
  assert (config.train.epochs, config.train.full_catalogue_positives) == (5, 200)
  assert config.train.batch_size == config_lib.TrainConfig().batch_size  # default


def test_an_unknown_preset_is_refused():
  with pytest.raises(config_lib.ConfigError, match="unknown experiment preset 'ciao'"):
    presets.preset_config("ciao")
