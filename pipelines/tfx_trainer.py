"""TFX Trainer module: ``run_fn(fn_args)`` over the same code path as ``dasl-train``.

Use it as the ``run_fn`` (or ``module_file``) of a TFX Trainer. The pipeline of
:mod:`dasl_tf.pipelines.tfx_pipeline` does so through its ``DaslTrainer``,
which also hands the dataset's ``schema.json`` and ``vocab/`` to ``run_fn`` as
a tracked artifact; a plain ``tfx.components.Trainer`` works too, with
``custom_config["schema_dir"]``::

  trainer = tfx.components.Trainer(
      run_fn="dasl_tf.pipelines.tfx_trainer.run_fn",
      examples=...,  # TFRecords of dasl-prepare (tf.Example, dasl_tf feature spec)
      schema=schema_gen.outputs["schema"],  # optional: checked against schema.json
      hyperparameters=...,  # optional: a HyperParameters artifact (a Tuner's best)
      train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=2000),
      eval_args=tfx.proto.EvalArgs(splits=["validation"], num_steps=0),
      custom_config={"schema_dir": "/data/douban", "variant": "dasl",
                     "test_split": "test",
                     "config": {"train": {"batch_size": 512}}})

Fields of ``fn_args`` read here (TFX's ``FnArgs`` contract):
  * ``train_files``, ``eval_files``: lists of shard paths or glob patterns; the
    eval files are the validation split (early stopping, best epoch),
  * ``train_steps``, ``eval_steps``: total training steps and evaluation steps
    (0 or None: train until early stopping; evaluate the whole split),
  * ``model_run_dir``: the run's model directory (checkpoints, logs, metrics, report),
  * ``serving_model_dir``: where the SavedModel goes (TFX pushes this directory),
  * ``schema_path`` (optional): a TensorFlow Metadata ``Schema`` (text format),
    such as SchemaGen infers from the imported examples. Every feature the model
    reads must be in it with the type, and (where the schema fixes it) the
    number of values, of the dataset's ``schema.json``: a check that the
    examples TFX imported are the ones the vocabularies describe. The schema
    does not replace ``schema.json``: an inferred schema has no vocabulary
    sizes, and it omits the features of the splits it was not inferred from
    (the evaluation ``negatives``),
  * ``dataset_metadata_dir`` (optional, set by ``DaslTrainer`` from its
    ``dataset_metadata`` artifact): the directory holding the dataset's
    ``schema.json`` and ``vocab/`` (a ``dasl-prepare`` output directory),
    where the run's :class:`~dasl_tf.features.DatasetSchema` and raw-id
    vocabularies come from,
  * ``hyperparameters`` (optional): a dict of hyperparameter values, flat
    (``{"learning_rate": 0.01}``) or as TFX hands over a HyperParameters
    artifact (``keras_tuner.HyperParameters.get_config()``: the values under
    ``"values"``). Each name is a field of ``ModelConfig`` or ``TrainConfig``,
    bare or qualified (``"model.embedding_dim"``, ``"train.batch_size"``); see
    :func:`hyperparameter_overrides`,
  * ``custom_config``: ``schema_dir`` (the directory of the dataset's
    ``schema.json`` and ``vocab/``; required unless ``dataset_metadata_dir`` is
    given), and optionally ``test_files`` (shard patterns of a held-out split
    scored once for ``metrics.json``) or ``test_split`` (the name of a split of
    the same TFX ``Examples`` artifact as the train files, whose shards lie in
    the sibling ``Split-<name>`` directory); by default the eval files, in
    which case ``metrics.json`` is a validation figure and TFX's Evaluator on
    a separate split gives the honest one. Also ``variant`` and ``config`` (an
    ``ExperimentConfig`` as a JSON object).

Precedence of the run's configuration: defaults < ``custom_config["config"]``
< ``custom_config["variant"]`` < ``hyperparameters`` < ``train_steps`` and
``eval_steps`` of ``fn_args`` (a hyperparameter that sets one of these two to
another value than ``fn_args`` is an error).

TFX is not needed: any object with these attributes works (see :class:`FnArgs`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from dasl_tf import use_keras2  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf import publish
from dasl_tf import training

# The directory of each split of a TFX Examples artifact: <artifact uri>/Split-<name>.
_TFX_SPLIT_PREFIX = "Split-"
_SECTIONS = {"model": config_lib.ModelConfig, "train": config_lib.TrainConfig}
# Values keras-tuner adds for itself (Hyperband: tuner/epochs, tuner/round, ...).
_TUNER_PREFIX = "tuner/"


@dataclasses.dataclass
class FnArgs:
  """The subset of ``tfx.components.FnArgs`` that :func:`run_fn` reads.

  ``dataset_metadata_dir`` is not a field of TFX's ``FnArgs``: ``DaslTrainer``
  of :mod:`dasl_tf.pipelines.tfx_pipeline` sets it from its input artifact.
  """
  train_files: List[str]
  eval_files: List[str]
  model_run_dir: str
  serving_model_dir: str = ""
  train_steps: Optional[int] = None
  eval_steps: Optional[int] = None
  schema_path: Optional[str] = None
  hyperparameters: Optional[Dict[str, Any]] = None
  dataset_metadata_dir: Optional[str] = None
  custom_config: Dict[str, Any] = dataclasses.field(default_factory=dict)


def hyperparameter_overrides(hyperparameters: Optional[Mapping[str, Any]]
                            ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Splits hyperparameter values into ``ModelConfig`` and ``TrainConfig`` overrides.

  Args:
    hyperparameters: ``{name: value}``, or the ``{"space": [...], "values":
      {...}}`` of ``keras_tuner.HyperParameters.get_config()`` (what TFX reads
      from a HyperParameters artifact), or a ``keras_tuner.HyperParameters``.
      A name is a field of ``ModelConfig`` or ``TrainConfig``, bare
      (``"learning_rate"``) or qualified (``"train.learning_rate"``); lists
      become tuples (``"hidden_units": [64, 32]``). Names under ``tuner/``
      (keras-tuner's own bookkeeping, such as Hyperband's ``tuner/epochs``)
      are ignored.

  Returns:
    ``(model_overrides, train_overrides)`` for
    :func:`~dasl_tf.config_resolution.resolve_config`.

  Raises:
    ConfigError: (a ``ValueError``) a name is no such field, or a field that
      comes from the dataset (vocabulary and feature sizes).
  """
  if not hyperparameters:
    return {}, {}
  values = hyperparameters
  if not isinstance(values, Mapping) and isinstance(getattr(values, "values", None), Mapping):
    values = values.values  # a keras_tuner.HyperParameters
  elif isinstance(values, Mapping) and isinstance(values.get("values"), Mapping) and (
      set(values) <= {"space", "values"}):
    values = values["values"]
  if not isinstance(values, Mapping):
    raise config_lib.ConfigError(
        f"hyperparameters: expected a dict of values, got {type(hyperparameters).__name__}")
  fields = {section: {f.name for f in dataclasses.fields(cls)}
            for section, cls in _SECTIONS.items()}
  overrides = {section: {} for section in _SECTIONS}
  for key, value in values.items():
    if str(key).startswith(_TUNER_PREFIX):
      continue
    section, _, name = str(key).rpartition(".")
    if section:
      sections = [section] if name in fields.get(section, ()) else []
    else:
      sections = [s for s in _SECTIONS if name in fields[s]]
    if len(sections) != 1:
      known = sorted(f"{s}.{n}" for s, names in fields.items() for n in names
                     if n not in config_resolution.DATASET_FIELDS)
      raise config_lib.ConfigError(
          f"hyperparameter {key!r} is not a field of the run's configuration; name a field "
          f"of ModelConfig or TrainConfig, bare or qualified: {known}")
    if name in config_resolution.DATASET_FIELDS:
      raise config_lib.ConfigError(
          f"hyperparameter {key!r}: {name} comes from the dataset's schema.json and cannot "
          "be tuned")
    overrides[sections[0]][name] = tuple(value) if isinstance(value, list) else value
  return overrides["model"], overrides["train"]


def check_examples_schema(schema: F.DatasetSchema, schema_path: str) -> None:
  """Checks a TensorFlow Metadata ``Schema`` of the examples against ``schema.json``.

  Every feature present in all splits (ids, histories, label) must be in the
  TFMD schema; every feature of the dataset's spec that the TFMD schema has
  must have the same type and, where the TFMD schema fixes it (``shape``, or
  ``value_count`` with ``min == max``), the same number of values. Features
  the TFMD schema has and the spec lacks are ignored.

  Args:
    schema: the dataset's ``schema.json``.
    schema_path: a ``Schema`` in text format (``schema.pbtxt``).

  Raises:
    FileNotFoundError: ``schema_path`` does not exist.
    ValueError: a feature is missing or disagrees (the message names it).
  """
  # Imported here: tensorflow_metadata is needed only when a TFMD schema is given.
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top

  if not filesystems.files_for(schema_path).exists(schema_path):
    raise FileNotFoundError(f"schema_path {schema_path!r} does not exist")
  with filesystems.open_file(schema_path) as f:
    proto = text_format.Parse(f.read(), schema_pb2.Schema())
  tfmd = {feature.name: feature for feature in proto.feature}
  spec = schema.feature_spec
  always = spec.shapes(with_label=True)
  problems = [f"{name!r} is missing" for name in always if name not in tfmd]
  for name, (dtype, shape) in spec.shapes(with_label=True, with_negatives=True,
                                          with_train_negatives=True).items():
    feature = tfmd.get(name)
    if feature is None:
      continue
    want_type = schema_pb2.INT if dtype == np.int64 else schema_pb2.FLOAT
    if feature.type != want_type:
      problems.append(f"{name!r} has type {schema_pb2.FeatureType.Name(feature.type)}, "
                      f"schema.json wants {schema_pb2.FeatureType.Name(want_type)}")
      continue
    want = int(np.prod(shape, dtype=np.int64))
    if feature.HasField("shape"):
      got = int(np.prod([dim.size for dim in feature.shape.dim], dtype=np.int64))
    elif feature.HasField("value_count") and (
        feature.value_count.min == feature.value_count.max > 0):
      got = feature.value_count.max
    else:
      continue  # the TFMD schema leaves the number of values open
    if got != want:
      problems.append(f"{name!r} has {got} values per example, schema.json wants {want}")
  if problems:
    raise ValueError(f"{schema_path}: the examples do not match the dataset's schema.json: "
                     f"{'; '.join(problems)} (are the examples and the dataset metadata "
                     "artifact from the same dasl-prepare output?)")


def _schema_dir(fn_args, custom_config: Mapping[str, Any]) -> str:
  """Where ``schema.json`` and ``vocab/`` are: the metadata artifact, else ``schema_dir``."""
  artifact_dir = getattr(fn_args, "dataset_metadata_dir", None)
  given = custom_config.get("schema_dir")
  if artifact_dir and given and os.path.normpath(given) != os.path.normpath(artifact_dir):
    raise ValueError(f"run_fn: custom_config['schema_dir']={given!r} disagrees with the "
                     f"dataset metadata artifact at {artifact_dir!r}; give one of them")
  if not (artifact_dir or given):
    raise ValueError("run_fn: custom_config needs 'schema_dir', the directory of the "
                     "dataset's schema.json written by dasl-prepare (or run under "
                     "DaslTrainer, which hands it over as the dataset_metadata artifact)")
  return artifact_dir or given


def _split_files(train_files: List[str], split: str) -> List[str]:
  """The patterns of ``split`` beside the train split's in a TFX Examples artifact.

  Raises:
    ValueError: a train pattern does not lie in a ``Split-<name>`` directory.
  """
  patterns = []
  for pattern in train_files:
    split_dir, files = os.path.split(pattern.rstrip("/"))
    if not os.path.basename(split_dir).startswith(_TFX_SPLIT_PREFIX):
      raise ValueError(f"run_fn: custom_config['test_split']={split!r} needs train files in a "
                       f"TFX Examples artifact (<uri>/{_TFX_SPLIT_PREFIX}<split>/...), got "
                       f"{pattern!r}; give custom_config['test_files'] instead")
    patterns.append(os.path.join(os.path.dirname(split_dir), _TFX_SPLIT_PREFIX + split, files))
  return patterns


def _serving_exporter(serving_model_dir: str):
  """Exports the SavedModel into ``serving_model_dir`` itself (TFX's layout: no version dir)."""
  if not serving_model_dir:
    return None
  from dasl_tf.serving import export  # pylint: disable=g-import-not-at-top

  def export_fn(model_dir: str) -> None:
    publish.remove_leftovers(serving_model_dir)
    staging = publish.staging_path(serving_model_dir)
    try:
      version_dir = export.export_model(model_dir, staging, version=1)
      publish.publish_directory(version_dir, serving_model_dir, overwrite=True,
                                marker=tf.saved_model.SAVED_MODEL_FILENAME_PB,
                                what="TFX serving model")
    finally:
      files = filesystems.files_for(staging)
      if files.exists(staging):
        files.rmtree(staging)

  return export_fn


def run_fn(fn_args) -> Dict[str, float]:
  """Trains, evaluates and exports one model as TFX's Trainer does.

  Args:
    fn_args: a ``tfx.components.FnArgs`` or any object with the same fields
      (:class:`FnArgs`).

  Returns:
    The metrics written to ``<model_run_dir>/metrics.json``.

  Raises:
    ValueError: neither ``dataset_metadata_dir`` nor ``custom_config["schema_dir"]``
      is given (or they disagree), the examples' ``schema_path`` disagrees with
      ``schema.json``, a hyperparameter is unknown (``ConfigError``) or
      contradicts ``train_steps``/``eval_steps``, or ``test_split`` is given
      without a TFX Examples layout.
  """
  custom_config = dict(getattr(fn_args, "custom_config", None) or {})
  schema_dir = _schema_dir(fn_args, custom_config)
  if "test_files" in custom_config:
    test_files = custom_config["test_files"]
  elif custom_config.get("test_split"):
    test_files = _split_files(list(fn_args.train_files), custom_config["test_split"])
  else:
    test_files = fn_args.eval_files
  data = training.TrainingData.from_patterns(fn_args.train_files, fn_args.eval_files,
                                             test_files, schema_dir)
  schema_path = getattr(fn_args, "schema_path", None)
  if schema_path:
    check_examples_schema(data.schema, schema_path)

  model_overrides = {"variant": custom_config["variant"]} if "variant" in custom_config else {}
  tuned_model, tuned_train = hyperparameter_overrides(getattr(fn_args, "hyperparameters", None))
  model_overrides.update(tuned_model)
  train_overrides = dict(tuned_train)
  for name in ("train_steps", "eval_steps"):
    value = getattr(fn_args, name, None)
    if not value:
      continue
    if name in tuned_train and tuned_train[name] != int(value):
      raise ValueError(f"run_fn: hyperparameter {name}={tuned_train[name]} contradicts the "
                       f"Trainer's {name}={int(value)} (train_args/eval_args); set one of them")
    train_overrides[name] = int(value)
  base = (config_lib.ExperimentConfig.from_dict(custom_config["config"])
          if custom_config.get("config") else None)
  experiment = config_resolution.resolve_config(data.schema, base, model_overrides, train_overrides)
  return training.train_and_evaluate(
      experiment, data, fn_args.model_run_dir,
      export_fn=_serving_exporter(fn_args.serving_model_dir), verbose=2)
