"""A TFX 1.21 pipeline over a ``dasl-prepare`` output, run with ``LocalDagRunner``.

The pipeline::

  ImportExampleGen (train / validation / test shards of the dataset, as they are)
    -> StatisticsGen -> SchemaGen (inferred from train and validation)
    -> ExampleValidator: the test split's statistics against that schema (Anomalies)
  Importer: the dataset's schema.json and vocab/ (a DaslDatasetMetadata artifact)
  DaslTrainer (run_fn of dasl_tf.pipelines.tfx_trainer): trains on train, early
    stopping and best epoch on validation, metrics.json on test; the SavedModel
    with the serving_default and serving_indices signatures
    <- examples, SchemaGen's schema, the metadata artifact, hyperparameters (optional)
  Resolver: the latest blessed model of the pipeline (the baseline)
  Evaluator: AUC and ExampleCount of the serving_indices signature on the test
    split, overall and per domain (slices domain:0 and domain:1), for the
    model and the baseline; with a minimum AUC, the overall slice must reach
    it, and with a change threshold, beat the baseline's by it (a drop when
    negative), for the model to be blessed (the first model, without a
    baseline, needs the minimum only)
  Pusher: the (blessed) model to <serving_dir>/<version>/, as TensorFlow Serving
    loads it

How the vocabularies reach the Trainer: TFX's Trainer takes a fixed set of
input artifacts (examples, schema, transform graph, base model,
hyperparameters, statistics), none of which is a vocabulary. ``DaslTrainer``
is TFX's Trainer with one more input channel, ``dataset_metadata``: its spec
extends ``TrainerSpec``, and its executor extends TFX's ``GenericExecutor`` by
one line: the ``FnArgs`` it hands to ``run_fn`` also carry the artifact's URI
(``fn_args.dataset_metadata_dir``). So the vocabularies are a typed input of
the training execution in ML Metadata (the lineage of every model names the
exact vocabularies it maps raw ids with), nothing in ``custom_config`` points at
them behind MLMD's back, and the Importer's custom property ``fingerprint`` (a
digest of ``schema.json`` and ``vocab/``) makes a dataset prepared again at the
same path a new artifact. The artifact is the dataset directory itself (its
``schema.json`` and ``vocab/``): an Importer registers a URI, it copies
nothing. SchemaGen's inferred schema reaches ``run_fn`` as
``fn_args.schema_path``, where it is checked against ``schema.json``; the
inferred schema has no vocabulary sizes, so it cannot replace it.

``hyperparameters``: a ``HyperParameters`` artifact (a directory holding one
JSON file, as TFX's Tuner writes ``best_hyperparameters.txt``), imported with
an Importer, or a dict of values written into the pipeline root as such a
directory (content-addressed, so other values are another artifact).

TFX must see ``TF_USE_LEGACY_KERAS=1`` before it first imports TensorFlow:
this module imports ``dasl_tf`` (which sets it) before ``tfx``.

Why one module (over 550 lines): everything here imports TFX, which installs
in the TFX environment only (``make tfx``), and it is one pipeline: the custom
Trainer component, the inputs it is wired to, and the command that runs it.
Split, its parts would import each other and nothing else; the ``run_fn`` the
Trainer calls, which runs in every environment, is apart in
:mod:`dasl_tf.pipelines.tfx_trainer`.

Usage::

  python -m dasl_tf.pipelines.tfx_pipeline --data_dir=/data/douban \\
      --pipeline_root=/tmp/tfx/root --serving_dir=/tmp/tfx/serving --train_steps=2000
  # a self-contained demo: a synthetic dataset is prepared into --data_dir first
  python -m dasl_tf.pipelines.tfx_pipeline --synthetic_users=300 --output_dir=demo_output/tfx
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

from dasl_tf import use_keras2  # noqa: F401  pylint: disable=unused-import  (TF_USE_LEGACY_KERAS=1 before tfx)
from absl import app
from absl import flags
from absl import logging
from tensorflow_model_analysis.proto import config_pb2 as tfma_config
from tfx import types as tfx_types
from tfx import v1 as tfx
from tfx.components.trainer import executor as trainer_executor
from tfx.components.util import udf_utils
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import json_utils

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import json_io
from dasl_tf import model_dir as model_dir_lib
from dasl_tf import model_io
from dasl_tf.pipelines import cli
from dasl_tf.pipelines import tfx_trainer

PIPELINE_NAME = "dasl"
TRAIN_SPLIT = "train"
EVAL_SPLIT = "validation"
TEST_SPLIT = "test"
SPLITS = (TRAIN_SPLIT, EVAL_SPLIT, TEST_SPLIT)
# The signature the Evaluator scores: tf.Example records of vocabulary indices,
# as dasl-prepare writes them (serving_default takes raw ids).
EVAL_SIGNATURE = "serving_indices"
# Its output scored against the label: the head of the example's own domain.
PREDICTION_KEY = "ctr"
# The Evaluator's names of the model it judges and of the latest blessed one.
CANDIDATE_MODEL = "candidate"
BASELINE_MODEL = "baseline"
# The default change threshold: a model may score this much lower AUC than the
# latest blessed one (TFMA's AUC counts 10,000 thresholds) and be blessed.
DEFAULT_MIN_AUC_CHANGE = -0.01
DATASET_METADATA_KEY = "dataset_metadata"
# The file a HyperParameters artifact holds (the name TFX's Tuner writes).
HYPERPARAMETERS_FILE = "best_hyperparameters.txt"
# Beam options of the Beam-based components: none, Beam's DirectRunner. (Any
# option makes TFX build an sdist of itself for the Beam workers in every such
# component; "--runner=FnApiRunner" skips the DirectRunner's first try, Prism,
# a binary that Beam downloads at run time, or falls back from where it cannot.)
DEFAULT_BEAM_PIPELINE_ARGS = ()
# The shard index of a dasl-prepare shard name: part-00003-of-00008.tfrecord.gz.
_SHARD_INDEX = re.compile(r"-\d+-of-(\d+)(?=[^/]*$)")

FLAGS = flags.FLAGS


class DaslDatasetMetadata(tfx.dsl.Artifact):
  """What a model reads beside the examples: a ``dasl-prepare`` output's metadata.

  The URI is the dataset directory; the artifact is its ``schema.json`` (the
  feature spec and vocabulary sizes) and ``vocab/`` (the raw ids of the users
  and items, the serving lookups of the exported model). The shards beside
  them reach the pipeline through ImportExampleGen.
  """
  TYPE_NAME = "DaslDatasetMetadata"


class DaslTrainerSpec(standard_component_specs.TrainerSpec):
  """``TrainerSpec`` with the dataset metadata as a required input."""
  INPUTS = {
      **standard_component_specs.TrainerSpec.INPUTS,
      DATASET_METADATA_KEY: component_spec.ChannelParameter(type=DaslDatasetMetadata),
  }


class DaslTrainerExecutor(trainer_executor.GenericExecutor):
  """TFX's generic Trainer executor; ``FnArgs`` also carries ``dataset_metadata_dir``."""

  def _GetFnArgs(self, input_dict, output_dict, exec_properties):  # pylint: disable=invalid-name
    fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
    fn_args.dataset_metadata_dir = artifact_utils.get_single_uri(
        input_dict[DATASET_METADATA_KEY])
    return fn_args


class DaslTrainer(base_component.BaseComponent):
  """TFX's Trainer with the dataset metadata (``schema.json``, ``vocab/``) as an input.

  Outputs, as the Trainer's: ``model`` (the SavedModel under
  ``Format-Serving``) and ``model_run`` (the run directory: checkpoints,
  TensorBoard logs, ``config.json``, ``metrics.json``, report).
  """
  SPEC_CLASS = DaslTrainerSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(DaslTrainerExecutor)

  def __init__(self,
               examples: tfx_types.BaseChannel,
               dataset_metadata: tfx_types.BaseChannel,
               schema: Optional[tfx_types.BaseChannel] = None,
               hyperparameters: Optional[tfx_types.BaseChannel] = None,
               module_file: Optional[str] = None,
               run_fn: Optional[str] = None,
               train_args: Optional[tfx.proto.TrainArgs] = None,
               eval_args: Optional[tfx.proto.EvalArgs] = None,
               custom_config: Optional[Dict[str, Any]] = None):
    """Builds the component; the arguments are those of ``tfx.components.Trainer``.

    Args:
      examples: ``Examples`` with the splits named in ``train_args`` and ``eval_args``.
      dataset_metadata: a :class:`DaslDatasetMetadata` channel.
      schema: an optional ``Schema`` channel (``fn_args.schema_path``).
      hyperparameters: an optional ``HyperParameters`` channel (``fn_args.hyperparameters``).
      module_file: a Python file with ``run_fn``; TFX packages it with every
        ``.py`` file of its directory into a wheel under the pipeline root.
      run_fn: the dotted path of ``run_fn`` in an installed module.
      train_args: a ``TrainArgs`` (splits, num_steps).
      eval_args: an ``EvalArgs`` (splits, num_steps).
      custom_config: a JSON-serializable dict (``fn_args.custom_config``).

    Raises:
      ValueError: not exactly one of ``module_file`` and ``run_fn`` is given.
    """
    if bool(module_file) == bool(run_fn):
      raise ValueError("DaslTrainer: give exactly one of module_file and run_fn")
    spec = DaslTrainerSpec(
        examples=examples,
        schema=schema,
        hyperparameters=hyperparameters,
        dataset_metadata=dataset_metadata,
        train_args=train_args or tfx.proto.TrainArgs(),
        eval_args=eval_args or tfx.proto.EvalArgs(),
        module_file=module_file,
        run_fn=run_fn,
        custom_config=json_utils.dumps(custom_config),
        model=tfx_types.Channel(type=standard_artifacts.Model),
        model_run=tfx_types.Channel(type=standard_artifacts.ModelRun))
    super().__init__(spec=spec)
    if module_file and udf_utils.should_package_user_modules():
      udf_utils.add_user_module_dependency(self, standard_component_specs.MODULE_FILE_KEY,
                                           standard_component_specs.MODULE_PATH_KEY)


def split_pattern(data_dir: str, shards: Sequence[str]) -> str:
  """One glob pattern, relative to ``data_dir``, matching exactly a split's shards.

  Args:
    data_dir: the dataset directory.
    shards: the split's shard paths relative to it (from ``schema.json``).

  Returns:
    The shard's own path for one shard, else the shard name with its index
    replaced by ``*`` (``train/part-*-of-00004.tfrecord.gz``).

  Raises:
    ValueError: the split has no shard, or no such pattern matches exactly its shards.
  """
  if not shards:
    raise ValueError(f"{data_dir}: a split lists no shard in {F.SCHEMA_FILE}")
  pattern = shards[0] if len(shards) == 1 else _SHARD_INDEX.sub(r"-*-of-\1", shards[0])
  matched = sorted(os.path.relpath(p, data_dir)
                   for p in tfx.dsl.io.fileio.glob(os.path.join(data_dir, pattern)))
  if matched != sorted(os.path.normpath(s) for s in shards):
    raise ValueError(f"{data_dir}: pattern {pattern!r} matches {matched}, not the shards "
                     f"{sorted(shards)} that {F.SCHEMA_FILE} lists (a stray or missing shard?)")
  return pattern


def example_gen_input(data_dir: str) -> tfx.proto.Input:
  """ImportExampleGen's ``input_config``: the train, validation and test splits of the dataset.

  Raises:
    ValueError: the dataset lacks one of these splits (k-fold datasets have folds only).
  """
  schema = F.DatasetSchema.load(data_dir)
  missing = [name for name in SPLITS if name not in schema.splits]
  if missing:
    raise ValueError(f"{data_dir}: no split {missing} in {F.SCHEMA_FILE} (it has "
                     f"{sorted(schema.splits)}); the TFX pipeline needs {list(SPLITS)}")
  return tfx.proto.Input(splits=[
      tfx.proto.Input.Split(name=name, pattern=split_pattern(data_dir, schema.splits[name]))
      for name in SPLITS])


def eval_config(min_auc: Optional[float] = None,
                min_auc_change: Optional[float] = None) -> tfma_config.EvalConfig:
  """The Evaluator's config: AUC and ExampleCount of ``serving_indices``, overall and per domain.

  Args:
    min_auc: if set, the overall AUC the model must reach to be blessed (the
      per-domain slices are reported, not gated).
    min_auc_change: if set, the model is compared with a baseline (the
      Evaluator's ``baseline_model``), and its overall AUC minus the
      baseline's must be at least this for it to be blessed. Without a
      baseline model (the first run) only ``min_auc`` applies.
  """
  auc = tfma_config.MetricConfig(class_name="AUC")
  threshold = tfma_config.MetricThreshold()
  if min_auc is not None:
    threshold.value_threshold.lower_bound.value = min_auc
  if min_auc_change is not None:
    threshold.change_threshold.direction = tfma_config.MetricDirection.HIGHER_IS_BETTER
    threshold.change_threshold.absolute.value = min_auc_change
  if min_auc is not None or min_auc_change is not None:
    auc.per_slice_thresholds.add(slicing_specs=[tfma_config.SlicingSpec()], threshold=threshold)
  spec = dict(signature_name=EVAL_SIGNATURE, label_key=F.LABEL, prediction_key=PREDICTION_KEY,
              model_type="tf_generic")
  model_specs = [tfma_config.ModelSpec(**spec)]
  if min_auc_change is not None:
    model_specs = [tfma_config.ModelSpec(name=CANDIDATE_MODEL, **spec),
                   tfma_config.ModelSpec(name=BASELINE_MODEL, is_baseline=True, **spec)]
  return tfma_config.EvalConfig(
      model_specs=model_specs,
      slicing_specs=[tfma_config.SlicingSpec(), tfma_config.SlicingSpec(feature_keys=[F.DOMAIN])],
      metrics_specs=[tfma_config.MetricsSpec(
          metrics=[tfma_config.MetricConfig(class_name="ExampleCount"), auc])])


def write_hyperparameters(values: Mapping[str, Any], root: str) -> str:
  """Writes hyperparameter values as a ``HyperParameters`` artifact directory under ``root``.

  The file has the layout of ``keras_tuner.HyperParameters.get_config()``
  (``{"space": [], "values": {...}}``), as a Tuner's ``best_hyperparameters.txt``;
  the directory is named after its content.

  Returns:
    The directory, ``<root>/hyperparameters/<digest>``.

  Raises:
    ConfigError: a name is not a field of the run's configuration.
  """
  tfx_trainer.hyperparameter_overrides(dict(values))  # fail now, not in the Trainer
  text = json.dumps({"space": [], "values": dict(values)}, sort_keys=True)
  directory = os.path.join(root, "hyperparameters", hashlib.sha256(text.encode()).hexdigest()[:16])
  tfx.dsl.io.fileio.makedirs(directory)
  with tfx.dsl.io.fileio.open(os.path.join(directory, HYPERPARAMETERS_FILE), "w") as f:
    f.write(text)
  return directory


def check_bulk_inference_signature(signature: Optional[str]) -> None:
  """Refuses a BulkInferrer signature that would score the pipeline's examples wrongly.

  The examples ImportExampleGen reads are ``dasl-prepare``'s: ids as vocabulary
  indices. ``serving_default``, ``regress`` and ``classify`` parse raw ids and
  map them through the vocabularies again (an index read as a raw id is another
  item, or the out-of-vocabulary row), so their scores would be silently
  wrong; ``predict`` and ``recommend`` take no tf.Example.

  Raises:
    ConfigError: ``signature`` is set and is not ``serving_indices``.
  """
  if signature and signature != EVAL_SIGNATURE:
    raise config_lib.ConfigError(
        f"BulkInferrer signature {signature!r}: the pipeline's examples hold vocabulary "
        f"indices (dasl-prepare's TFRecords), which only {EVAL_SIGNATURE!r} reads as they "
        "are; the raw-id signatures (serving_default, regress, classify) would map them "
        f"through the vocabularies again and score other items. Use {EVAL_SIGNATURE!r}, or "
        "score raw-id logs with dasl_tf.serving.client")


def create_pipeline(data_dir: str,
                    pipeline_root: str,
                    serving_dir: str,
                    metadata_path: Optional[str] = None,
                    pipeline_name: str = PIPELINE_NAME,
                    train_steps: int = 1000,
                    eval_steps: int = 0,
                    variant: Optional[str] = None,
                    config: Optional[Mapping[str, Any]] = None,
                    hyperparameters_dir: Optional[str] = None,
                    min_auc: Optional[float] = 0.5,
                    min_auc_change: Optional[float] = DEFAULT_MIN_AUC_CHANGE,
                    module_file: Optional[str] = None,
                    enable_cache: bool = False,
                    beam_pipeline_args: Optional[Sequence[str]] = None,
                    bulk_inference_signature: Optional[str] = None) -> tfx.dsl.Pipeline:
  """The TFX pipeline over one ``dasl-prepare`` output directory.

  Args:
    data_dir: the dataset directory (``schema.json``, ``vocab/``, train,
      validation and test shards); local or any filesystem TFX reads.
    pipeline_root: where the components write their artifacts.
    serving_dir: the Pusher's base directory: models land in ``<serving_dir>/<version>/``.
    metadata_path: the SQLite file of ML Metadata (default:
      ``<pipeline_root>/metadata.sqlite``).
    pipeline_name: the pipeline's name in ML Metadata.
    train_steps: training steps (``TrainArgs.num_steps``); 0 trains until early stopping.
    eval_steps: validation steps per evaluation (``EvalArgs.num_steps``); 0: the whole split.
    variant: the model variant (``ModelConfig.variant``), default DASL.
    config: an ``ExperimentConfig`` as a JSON object (omitted keys keep their defaults).
    hyperparameters_dir: a ``HyperParameters`` artifact directory to import
      (one JSON file; see :func:`write_hyperparameters`).
    min_auc: the overall test AUC a model needs to be blessed and pushed;
      None pushes every trained model (no blessing, no baseline).
    min_auc_change: with ``min_auc``, the overall test AUC minus that of the
      latest blessed model of the pipeline (the baseline) that a model needs
      to be blessed: negative tolerates a drop, positive demands a gain; the
      first model (no baseline yet) needs ``min_auc`` only. None: no baseline.
    module_file: run the Trainer from this file (``tfx_trainer.py`` or a copy)
      instead of the installed ``dasl_tf.pipelines.tfx_trainer.run_fn``.
    enable_cache: let TFX reuse the outputs of unchanged components.
    beam_pipeline_args: Beam options of the Beam-based components (default:
      :data:`DEFAULT_BEAM_PIPELINE_ARGS`, none).
    bulk_inference_signature: also score the test split with a BulkInferrer
      through this signature of the (blessed) model: ``serving_indices``, the one
      tf.Example signature that reads the pipeline's examples as they are
      (vocabulary indices, as ``dasl-prepare`` wrote them). None: no BulkInferrer.

  Returns:
    The ``tfx.dsl.Pipeline``.

  Raises:
    ValueError: the dataset lacks a split, or its shards are not one pattern per split.
    ConfigError: ``config`` is not a valid ``ExperimentConfig``, or
      ``bulk_inference_signature`` is not ``serving_indices``.
  """
  check_bulk_inference_signature(bulk_inference_signature)
  data_dir = os.path.abspath(data_dir) if "://" not in data_dir else data_dir
  if config:
    config_lib.ExperimentConfig.from_dict(dict(config))  # fail now, not in the Trainer
  schema = F.DatasetSchema.load(data_dir)
  vocab_dir = os.path.join(data_dir, model_io.VOCAB_DIR)
  if not tfx.dsl.io.fileio.isdir(vocab_dir):
    raise ValueError(f"{data_dir} has no {model_io.VOCAB_DIR}/: not a complete dasl-prepare output")

  example_gen = tfx.components.ImportExampleGen(input_base=data_dir,
                                                input_config=example_gen_input(data_dir))
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
  # The schema of the examples the model is fitted and selected on (train's
  # train_negatives, validation's negatives), that the test split must match:
  # ExampleValidator flags a test split that differs (a new or missing feature,
  # another type or length). Train is not validated: it lacks the negatives.
  schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"],
                                        infer_feature_shape=True, exclude_splits=[TEST_SPLIT])
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
      exclude_splits=[TRAIN_SPLIT])
  metadata_importer = tfx.dsl.Importer(
      source_uri=data_dir, artifact_type=DaslDatasetMetadata,
      custom_properties={"fingerprint": model_dir_lib.data_fingerprint(schema, vocab_dir)},
  ).with_id("DatasetMetadataImporter")
  components: List[Any] = [example_gen, statistics_gen, schema_gen, example_validator,
                           metadata_importer]

  hyperparameters = None
  if hyperparameters_dir:
    hyperparameters_importer = tfx.dsl.Importer(
        source_uri=hyperparameters_dir,
        artifact_type=tfx.types.standard_artifacts.HyperParameters,
    ).with_id("HyperParametersImporter")
    components.append(hyperparameters_importer)
    hyperparameters = hyperparameters_importer.outputs["result"]

  custom_config: Dict[str, Any] = {"test_split": TEST_SPLIT}
  if variant:
    custom_config["variant"] = variant
  if config:
    custom_config["config"] = dict(config)
  trainer = DaslTrainer(
      examples=example_gen.outputs["examples"],
      dataset_metadata=metadata_importer.outputs["result"],
      schema=schema_gen.outputs["schema"],
      hyperparameters=hyperparameters,
      module_file=module_file,
      run_fn=None if module_file else f"{tfx_trainer.__name__}.run_fn",
      train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT], num_steps=train_steps),
      eval_args=tfx.proto.EvalArgs(splits=[EVAL_SPLIT], num_steps=eval_steps),
      custom_config=custom_config,
  ).with_id("Trainer")
  baseline = None
  if min_auc is not None and min_auc_change is not None:
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("LatestBlessedModelResolver")
    components.append(baseline)
  # No schema for the Evaluator: the model's serving_indices signature parses the examples.
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs["examples"],
      model=trainer.outputs["model"],
      baseline_model=baseline.outputs["model"] if baseline else None,
      eval_config=eval_config(min_auc, min_auc_change if baseline else None),
      example_splits=[TEST_SPLIT])
  pusher = tfx.components.Pusher(
      model=trainer.outputs["model"],
      model_blessing=evaluator.outputs["blessing"] if min_auc is not None else None,
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)))
  if min_auc is None:
    pusher.add_upstream_node(evaluator)  # push after the evaluation all the same
  components += [trainer, evaluator, pusher]
  if bulk_inference_signature:
    components.append(tfx.components.BulkInferrer(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"] if min_auc is not None else None,
        data_spec=tfx.proto.DataSpec(example_splits=[TEST_SPLIT]),
        model_spec=tfx.proto.ModelSpec(model_signature_name=[bulk_inference_signature])))

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          metadata_path or os.path.join(pipeline_root, "metadata.sqlite")),
      components=components,
      enable_cache=enable_cache,
      beam_pipeline_args=list(DEFAULT_BEAM_PIPELINE_ARGS if beam_pipeline_args is None
                              else beam_pipeline_args))


def pushed_versions(serving_dir: str) -> List[str]:
  """The version directories under ``serving_dir`` that hold a SavedModel, oldest first."""
  if not tfx.dsl.io.fileio.isdir(serving_dir):
    return []
  versions = [name.rstrip("/") for name in tfx.dsl.io.fileio.listdir(serving_dir)]
  return [os.path.join(serving_dir, v) for v in sorted((v for v in versions if v.isdigit()), key=int)
          if tfx.dsl.io.fileio.exists(os.path.join(serving_dir, v, "saved_model.pb"))]


def run(data_dir: str, pipeline_root: str, serving_dir: str,
        hyperparameters: Optional[Mapping[str, Any]] = None, **kwargs) -> Optional[str]:
  """Builds the pipeline and runs it with ``LocalDagRunner``.

  Args:
    data_dir: the dataset directory.
    pipeline_root: where the components write their artifacts.
    serving_dir: the Pusher's base directory.
    hyperparameters: hyperparameter values (written with
      :func:`write_hyperparameters` and imported); exclusive with
      ``hyperparameters_dir``.
    **kwargs: the other arguments of :func:`create_pipeline`.

  Returns:
    The version directory this run pushed, or None (the model was not blessed).

  Raises:
    ValueError: both ``hyperparameters`` and ``hyperparameters_dir`` are given,
      or :func:`create_pipeline` refuses the arguments.
  """
  if hyperparameters:
    if kwargs.get("hyperparameters_dir"):
      raise ValueError("give hyperparameters or hyperparameters_dir, not both")
    kwargs["hyperparameters_dir"] = write_hyperparameters(hyperparameters, pipeline_root)
  before = set(pushed_versions(serving_dir))
  pipeline = create_pipeline(data_dir, pipeline_root, serving_dir, **kwargs)
  tfx.orchestration.LocalDagRunner().run(pipeline)
  pushed = [v for v in pushed_versions(serving_dir) if v not in before]
  return pushed[-1] if pushed else None


def prepare_synthetic(data_dir: str, num_users: int, seed: int = 7) -> str:
  """Prepares a small synthetic dataset into ``data_dir`` (raw logs beside it); returns it."""
  from dasl_tf import prepare  # pylint: disable=g-import-not-at-top
  from dasl_tf import synthetic  # pylint: disable=g-import-not-at-top

  raw = synthetic.generate(data_dir.rstrip("/") + "-raw",
                           synthetic.SyntheticConfig(num_users=num_users, seed=seed))
  prepare.prepare(prepare.PrepareConfig(output_dir=data_dir, seed=seed, num_shards=2, **raw))
  return data_dir


def define_flags() -> None:
  """Defines the flags of the TFX pipeline's command line."""
  with cli.key_flags():
    flags.DEFINE_string("data_dir", None, "The dasl-prepare output directory (default with "
                        "--output_dir: <output_dir>/data).")
    flags.DEFINE_string("output_dir", None, "A directory for everything the run writes: "
                        "data/ (with --synthetic_users), pipeline/ (the pipeline root, ML "
                        "Metadata), serving/ (pushed models); the defaults of the three "
                        "directory flags.")
    flags.DEFINE_string("pipeline_root", None, "The pipeline root (default: <output_dir>/pipeline).")
    flags.DEFINE_string("serving_dir", None, "The Pusher's base directory: models land in "
                        "<serving_dir>/<version>/ (default: <output_dir>/serving).")
    flags.DEFINE_string("metadata_path", None,
                        "ML Metadata's SQLite file (default: <pipeline_root>/metadata.sqlite).")
    flags.DEFINE_string("pipeline_name", PIPELINE_NAME, "The pipeline's name in ML Metadata.")
    flags.DEFINE_integer("train_steps", 1000, "Training steps; 0 trains until early stopping.")
    flags.DEFINE_integer("eval_steps", 0, "Validation steps per evaluation; 0: the whole split.")
    flags.DEFINE_string("variant", None, "The model variant (default: the config's, dasl).")
    flags.DEFINE_string("config", None, "An ExperimentConfig JSON file (omitted keys keep "
                        "their defaults).")
    flags.DEFINE_string("hyperparameters", None, "Hyperparameter values as a JSON object, "
                        "e.g. '{\"learning_rate\": 0.01, \"model.embedding_dim\": 16}'.")
    flags.DEFINE_string("hyperparameters_dir", None, "A HyperParameters artifact directory "
                        "to import (one JSON file, such as a Tuner's best_hyperparameters.txt).")
    flags.DEFINE_float("min_auc", 0.5, "The overall test AUC a model needs to be pushed; a "
                       "negative value pushes every model (no blessing).")
    flags.DEFINE_float("min_auc_change", DEFAULT_MIN_AUC_CHANGE, "The overall test AUC minus "
                       "that of the latest blessed model that a model needs to be pushed "
                       "(negative: a tolerated drop); the first model needs --min_auc only.")
    flags.DEFINE_boolean("enable_cache", False, "Reuse the outputs of unchanged components.")
    flags.DEFINE_string("bulk_inference_signature", None, "Also score the test split with a "
                        f"BulkInferrer through this signature ({EVAL_SIGNATURE}, the one that "
                        "reads the prepared examples; the raw-id ones are refused).")
    flags.DEFINE_list("beam_pipeline_args", list(DEFAULT_BEAM_PIPELINE_ARGS),
                      "Beam options of the Beam-based components.")
    flags.DEFINE_integer("synthetic_users", 0, "If > 0 and --data_dir does not exist yet: "
                         "prepare a synthetic dataset of this many users there first.")


def _directory_flag(name: str, subdirectory: str) -> str:
  """The value of flag ``name``, else ``<--output_dir>/<subdirectory>``."""
  if FLAGS[name].value:
    return FLAGS[name].value
  if not FLAGS.output_dir:
    raise app.UsageError(f"--{name} is required (or give --output_dir)")
  return os.path.join(FLAGS.output_dir, subdirectory)


def _main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  check_bulk_inference_signature(FLAGS.bulk_inference_signature)  # before anything is written
  data_dir, pipeline_root, serving_dir = (
      _directory_flag(name, subdirectory)
      for name, subdirectory in (("data_dir", "data"), ("pipeline_root", "pipeline"),
                                 ("serving_dir", "serving")))
  if FLAGS.synthetic_users > 0 and not tfx.dsl.io.fileio.exists(data_dir):
    print(f"==> preparing a synthetic dataset of {FLAGS.synthetic_users} users in {data_dir}",
          flush=True)
    prepare_synthetic(data_dir, FLAGS.synthetic_users)
  config = None
  if FLAGS.config:
    config = json_io.load(FLAGS.config, config_lib.ConfigError)
  try:
    hyperparameters = json.loads(FLAGS.hyperparameters) if FLAGS.hyperparameters else None
  except json.JSONDecodeError as e:
    raise app.UsageError(f"--hyperparameters is not a JSON object: {e}") from e
  if hyperparameters is not None and not isinstance(hyperparameters, dict):
    raise app.UsageError("--hyperparameters must be a JSON object of name: value")
  print(f"==> TFX pipeline {FLAGS.pipeline_name!r}: {data_dir} -> {pipeline_root}", flush=True)
  pushed = run(data_dir, pipeline_root, serving_dir, hyperparameters=hyperparameters,
               metadata_path=FLAGS.metadata_path, pipeline_name=FLAGS.pipeline_name,
               train_steps=FLAGS.train_steps, eval_steps=FLAGS.eval_steps,
               variant=FLAGS.variant, config=config,
               hyperparameters_dir=FLAGS.hyperparameters_dir,
               min_auc=FLAGS.min_auc if FLAGS.min_auc >= 0 else None,
               min_auc_change=FLAGS.min_auc_change,
               enable_cache=FLAGS.enable_cache,
               beam_pipeline_args=FLAGS.beam_pipeline_args,
               bulk_inference_signature=FLAGS.bulk_inference_signature)
  if pushed:
    print(f"==> pushed {pushed}")
  else:
    print(f"==> no model pushed: the overall test AUC did not reach --min_auc={FLAGS.min_auc} "
          f"or the latest blessed model's plus --min_auc_change={FLAGS.min_auc_change} "
          f"(the evaluation is under {os.path.join(pipeline_root, 'Evaluator')})")
  logging.info("pipeline finished")


def main() -> None:
  """Command-line entry point."""
  define_flags()
  cli.run_command("dasl_tf.pipelines.tfx_pipeline", _main)


if __name__ == "__main__":
  # Run the module under its package name, so that the executor class TFX
  # records (DaslTrainerExecutor) is importable by that name.
  from dasl_tf.pipelines import tfx_pipeline  # pylint: disable=g-import-not-at-top,import-self
  tfx_pipeline.main()
