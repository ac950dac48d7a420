"""The TFX pipeline end to end with LocalDagRunner, where TFX can be imported.

TFX 1.21 (ml-metadata, tfx-bsl) ships wheels for glibc >= 2.39 only; elsewhere
the whole module is skipped with a one-line reason. ``make tfx`` builds the
TFX environment (``.venv-tfx``) where the platform allows, and runs this.
"""
import glob
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

from tests import test_train_support as support


def _tfx_unavailable() -> str:
  """Why ``tfx`` cannot be imported here, or "" if it can."""
  glibc = platform.libc_ver()[1] or "none"
  where = (f"Python {platform.python_version()}, glibc {glibc}; TFX 1.21 needs glibc >= 2.39 "
           "(Debian 13 or newer): `make tfx` builds .venv-tfx where the platform allows")
  if importlib.util.find_spec("tfx") is None:
    return f"tfx is not installed ({where})"
  # In a child process: a half-failed import of TFX's compiled parts would taint this one.
  probe = subprocess.run(
      [sys.executable, "-c", "import dasl_tf; from tfx import v1; import ml_metadata"],
      capture_output=True, text=True, check=False, timeout=600,
      env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2"))
  if probe.returncode:
    lines = probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"]
    return f"tfx cannot be imported ({lines[-1].strip()}; {where})"
  return ""


_REASON = _tfx_unavailable()
if _REASON:
  pytest.skip(_REASON, allow_module_level=True)

TRAIN_STEPS = 30
HYPERPARAMETERS = {"learning_rate": 0.02, "model.embedding_dim": 12}
# The runs on planted data (support.make_dataset_dir): trained with GOOD, the model learns the
# planted taste (test AUC about 0.9 here); with WORSE, a learning rate 10^5 times smaller over
# as many steps, it stays at chance. A model may lose PLANTED_MIN_AUC_CHANGE of overall AUC
# against the latest blessed one.
PLANTED_STEPS = 150
GOOD = {"learning_rate": 0.02}
WORSE = {"learning_rate": 2e-7}
PLANTED_MIN_AUC_CHANGE = -0.05
# A feature that the test split of the second run's data carries and the others lack.
STRAY_FEATURE = "stray"

# Runs in a fresh interpreter that imports TensorFlow only, as TensorFlow Serving loads a model.
_SCORE = r"""
import json, sys
import tensorflow as tf
export_dir, shard = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
compression = "GZIP" if shard.endswith(".gz") else ""
records = [r.numpy() for r in tf.data.TFRecordDataset(shard, compression_type=compression).take(5)]
scores = loaded.signatures["serving_indices"](examples=tf.constant(records))
print(json.dumps({"ctr": [float(s) for s in scores["ctr"].numpy()],
                  "foreign": [m for m in ("dasl_tf", "tfx", "tensorflow_recommenders")
                              if m in sys.modules]}))
"""


def _env():
  return dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
              PYTHONUNBUFFERED="1")


def _only(pattern: str) -> str:
  matched = glob.glob(pattern)
  assert len(matched) == 1, f"{pattern}: {matched}"
  return matched[0]


# The output directories of one execution of each component: <component>/<output>/<id>.
_OUTPUTS = {"evaluation": ("Evaluator", "evaluation"), "blessing": ("Evaluator", "blessing"),
            "anomalies": ("ExampleValidator", "anomalies"), "model_run": ("Trainer", "model_run")}


def _run_pipeline(root, name: str, dirs, bulk_inference: bool = False,
                  train_steps: int = TRAIN_STEPS, hyperparameters=None,
                  min_auc_change=None) -> dict:
  """Runs the pipeline's command line; returns ``dirs``, its output and its new artifacts.

  With ``bulk_inference``, the BulkInferrer scores the test split through serving_indices;
  ``hyperparameters`` default to HYPERPARAMETERS, ``min_auc_change`` to the flag's default.
  """
  outputs = dict(_OUTPUTS, **({"inference": ("BulkInferrer", "inference_result")}
                              if bulk_inference else {}))
  before = {key: set(glob.glob(os.path.join(dirs["pipeline_root"], *parts, "*")))
            for key, parts in outputs.items()}
  config = support.small_config_json(str(root / f"{name}-config.json"))
  args = [f"--{flag}={path}" for flag, path in dirs.items()] + [
      f"--config={config}", f"--train_steps={train_steps}", "--min_auc=0",
      f"--hyperparameters={json.dumps(hyperparameters or HYPERPARAMETERS)}"]
  if min_auc_change is not None:
    args.append(f"--min_auc_change={min_auc_change}")
  if bulk_inference:
    args.append("--bulk_inference_signature=serving_indices")
  log_path = root / f"{name}.log"
  with open(log_path, "w", encoding="utf-8") as log:
    process = support.run_cli("dasl_tf.pipelines.tfx_pipeline", args, stdout=log,
                              stderr=subprocess.STDOUT)
    returncode = process.wait(timeout=1800)
  output = log_path.read_text(encoding="utf-8", errors="replace")
  assert returncode == 0, output[-6000:]
  new = {}
  for key, parts in outputs.items():
    [new[key]] = set(glob.glob(os.path.join(dirs["pipeline_root"], *parts, "*"))) - before[key]
  return dict(dirs, output=output, **new)


@pytest.fixture(scope="module")
def pipeline_run(synthetic_data_dir, tmp_path_factory):
  """Runs the pipeline once on the synthetic dataset; returns its directories."""
  root = tmp_path_factory.mktemp("tfx")
  dirs = {"data_dir": synthetic_data_dir, "pipeline_root": str(root / "pipeline"),
          "serving_dir": str(root / "serving"), "metadata_path": str(root / "mlmd.sqlite")}
  return dict(_run_pipeline(root, "first", dirs, bulk_inference=True), root=root)


def _plant_stray_feature(data_dir: str, split: str) -> None:
  """Adds the int feature STRAY_FEATURE to every example of a split's shards, in place."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  with open(os.path.join(data_dir, "schema.json"), encoding="utf-8") as f:
    shards = json.load(f)["splits"][split]
  for shard in shards:
    path = os.path.join(data_dir, shard)
    compression = "GZIP" if path.endswith(".gz") else ""
    records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=compression)]
    with tf.io.TFRecordWriter(path, options=compression) as writer:
      for record in records:
        example = tf.train.Example.FromString(record)
        example.features.feature[STRAY_FEATURE].int64_list.value.append(1)
        writer.write(example.SerializeToString())


@pytest.fixture(scope="module")
def second_run(pipeline_run):
  """Runs the pipeline again (same root, ML Metadata) on data with a stray test feature.

  The data is a copy of the first run's dataset whose test examples carry one more
  feature, STRAY_FEATURE; returns the run's directories.
  """
  data_dir = str(pipeline_run["root"] / "data-with-stray-feature")
  shutil.copytree(pipeline_run["data_dir"], data_dir)
  _plant_stray_feature(data_dir, "test")
  dirs = {name: pipeline_run[name] for name in ("pipeline_root", "serving_dir", "metadata_path")}
  return _run_pipeline(pipeline_run["root"], "second", dict(dirs, data_dir=data_dir))


@pytest.mark.slow
def test_pipeline_pushes_a_model_that_a_fresh_tensorflow_process_scores(pipeline_run):
  version_dir = os.path.dirname(_only(os.path.join(pipeline_run["serving_dir"], "*",
                                                   "saved_model.pb")))
  assert os.path.basename(version_dir).isdigit()
  assert f"==> pushed {version_dir}" in pipeline_run["output"]
  with open(os.path.join(pipeline_run["data_dir"], "schema.json"), encoding="utf-8") as f:
    shard = os.path.join(pipeline_run["data_dir"], json.load(f)["splits"]["test"][0])
  scored = subprocess.run([sys.executable, "-c", _SCORE, version_dir, shard], env=_env(),
                          capture_output=True, text=True, check=True, timeout=600)
  result = json.loads(scored.stdout.strip().splitlines()[-1])
  assert result["foreign"] == []
  # The same records through the Trainer's model, loaded in memory from its run directory.
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from dasl_tf import data as data_lib  # pylint: disable=g-import-not-at-top
  from dasl_tf import features as F  # pylint: disable=g-import-not-at-top
  from dasl_tf import model_io  # pylint: disable=g-import-not-at-top

  model, _, schema = model_io.load_model(_trainer_run_dir(pipeline_run))
  features, _ = next(iter(data_lib.make_dataset([shard], schema.feature_spec, 5)))
  logits = model(features)
  in_a = features[F.DOMAIN].numpy().ravel() == F.DOMAIN_A
  own = np.where(in_a, np.ravel(logits["logit_a"]), np.ravel(logits["logit_b"]))
  np.testing.assert_allclose(result["ctr"], tf.sigmoid(own).numpy(), atol=1e-5)


def _trainer_run_dir(pipeline_run) -> str:
  assert os.path.exists(os.path.join(pipeline_run["model_run"], "config.json"))
  return pipeline_run["model_run"]


def _metric(values, name: str) -> float:
  """The value of metric ``name`` anywhere in a TFMA slice's nested metrics dict."""
  if isinstance(values, dict):
    if name in values and isinstance(values[name], dict) and "doubleValue" in values[name]:
      return values[name]["doubleValue"]
    for value in values.values():
      found = _metric(value, name)
      if found is not None:
        return found
  return None


@pytest.mark.slow
def test_trainer_honours_hyperparameters_and_reads_the_metadata_artifact(pipeline_run):
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top

  from dasl_tf import config as config_lib  # pylint: disable=g-import-not-at-top

  run_dir = _trainer_run_dir(pipeline_run)
  config = config_lib.ExperimentConfig.load(os.path.join(run_dir, "config.json"))
  assert config.train.learning_rate == HYPERPARAMETERS["learning_rate"]  # config file: 0.01
  assert config.model.embedding_dim == HYPERPARAMETERS["model.embedding_dim"]  # config file: 8
  assert config.train.train_steps == TRAIN_STEPS
  with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
    metrics = json.load(f)
  assert metrics["train_examples"] == TRAIN_STEPS * config.train.batch_size

  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = pipeline_run["metadata_path"]
  store = metadata_store.MetadataStore(connection)
  [artifact] = [a for a in store.get_artifacts_by_type("DaslDatasetMetadata")
                if os.path.normpath(a.uri) == os.path.normpath(pipeline_run["data_dir"])]
  assert artifact.custom_properties["fingerprint"].string_value
  events = store.get_events_by_artifact_ids([artifact.id])
  readers = store.get_executions_by_id(
      [e.execution_id for e in events if e.type == metadata_store_pb2.Event.INPUT])
  type_names = {t.name for t in store.get_execution_types_by_id([e.type_id for e in readers])}
  assert any(name.endswith("DaslTrainer") for name in type_names), type_names


@pytest.fixture(scope="module")
def planted_runs(tmp_path_factory):
  """A good model, a worse one, then a good one again, in one pipeline root and ML Metadata."""
  root = tmp_path_factory.mktemp("tfx-planted")
  dirs = {"data_dir": support.make_dataset_dir(str(root / "data"), num_users=60, per_user=16),
          "pipeline_root": str(root / "pipeline"), "serving_dir": str(root / "serving"),
          "metadata_path": str(root / "mlmd.sqlite")}
  return {name: _run_pipeline(root, name, dirs, train_steps=PLANTED_STEPS,
                              hyperparameters=hyperparameters,
                              min_auc_change=PLANTED_MIN_AUC_CHANGE)
          for name, hyperparameters in (("good", GOOD), ("worse", WORSE), ("good_again", GOOD))}


def _overall_auc(run, model_name=None) -> float:
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top

  kwargs = {"model_name": model_name} if model_name else {}
  result = tfma.load_eval_result(run["evaluation"], **kwargs)
  return _metric(dict(result.slicing_metrics)[()], "auc")


def _pushed(run) -> int:
  return len(glob.glob(os.path.join(run["serving_dir"], "*", "saved_model.pb")))


@pytest.mark.slow
def test_evaluator_reports_auc_overall_and_per_domain_and_blesses(pipeline_run):
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top

  result = tfma.load_eval_result(pipeline_run["evaluation"])
  metrics = {tuple(slice_key): values for slice_key, values in result.slicing_metrics}
  assert set(metrics) == {(), (("domain", 0),), (("domain", 1),)}, sorted(metrics)
  with open(os.path.join(_trainer_run_dir(pipeline_run), "metrics.json"), encoding="utf-8") as f:
    trained = json.load(f)
  # TFMA's AUC (10,000 thresholds) against the pairwise AUC run_fn wrote for the test split.
  for slice_key, head in (((("domain", 0),), "a"), ((("domain", 1),), "b")):
    assert _metric(metrics[slice_key], "auc") == pytest.approx(trained[f"auc_{head}"], abs=2e-3)
    assert _metric(metrics[slice_key], "example_count") == trained[f"examples_{head}"]
  assert _metric(metrics[()], "example_count") == trained["examples_a"] + trained["examples_b"]
  # Blessed: its AUC is above --min_auc=0, and there was no baseline to compare with.
  assert os.path.exists(os.path.join(pipeline_run["blessing"], "BLESSED"))


def _anomalies(run) -> dict:
  """{split: {feature: short description}} of a run's ExampleValidator."""
  from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=g-import-not-at-top

  found = {}
  for split_dir in sorted(glob.glob(os.path.join(run["anomalies"], "Split-*"))):
    with open(os.path.join(split_dir, "SchemaDiff.pb"), "rb") as f:
      anomalies = anomalies_pb2.Anomalies.FromString(f.read())
    found[os.path.basename(split_dir)[len("Split-"):]] = {
        name: info.short_description for name, info in anomalies.anomaly_info.items()}
  return found


@pytest.mark.slow
def test_example_validator_passes_the_dataset_and_flags_a_planted_anomaly(pipeline_run,
                                                                          second_run):
  assert _anomalies(pipeline_run) == {"validation": {}, "test": {}}
  assert _anomalies(second_run) == {"validation": {}, "test": {STRAY_FEATURE: "New column"}}


@pytest.mark.slow
def test_a_worse_model_than_the_blessed_one_is_refused(planted_runs):
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top

  good, worse = planted_runs["good"], planted_runs["worse"]
  assert os.path.exists(os.path.join(good["blessing"], "BLESSED"))  # no baseline yet
  assert _overall_auc(good) > 0.8  # the planted taste is learned
  assert _overall_auc(worse) < 0.6  # ... and not by the worse model
  assert os.path.exists(os.path.join(worse["blessing"], "NOT_BLESSED"))
  assert "==> no model pushed" in worse["output"]
  # The baseline was the good model: on the same test examples, the same AUC.
  assert _overall_auc(worse, "baseline") == pytest.approx(_overall_auc(good), abs=1e-6)
  validation = tfma.load_validation_result(worse["evaluation"])
  assert not validation.validation_ok
  failed = [failure.metric_key for per_slice in validation.metric_validations_per_slice
            for failure in per_slice.failures]
  assert [(key.name, key.is_diff) for key in failed] == [("auc", True)], failed


@pytest.mark.slow
def test_a_model_as_good_as_the_blessed_one_is_blessed_against_it(planted_runs):
  good, again = planted_runs["good"], planted_runs["good_again"]
  # Its baseline is the latest blessed model (the good one: the worse one was refused).
  assert _overall_auc(again, "baseline") == pytest.approx(_overall_auc(good), abs=1e-6)
  assert _overall_auc(again) - _overall_auc(good) > PLANTED_MIN_AUC_CHANGE
  assert os.path.exists(os.path.join(again["blessing"], "BLESSED"))
  assert _pushed(again) == 2  # the good model, then this one


@pytest.mark.slow
def test_bulk_inference_scores_every_test_example_through_serving_indices(pipeline_run):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top

  logs = glob.glob(os.path.join(pipeline_run["inference"], "*"))
  records = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(logs, compression_type="GZIP")]
  with open(os.path.join(pipeline_run["data_dir"], "schema.json"), encoding="utf-8") as f:
    shards = [os.path.join(pipeline_run["data_dir"], s) for s in json.load(f)["splits"]["test"]]
  test_examples = sum(1 for _ in tf.data.TFRecordDataset(shards))
  assert len(records) == test_examples > 0
  outputs = records[0].predict_log.response.outputs
  assert "ctr" in outputs


@pytest.mark.parametrize("signature", ["serving_default", "regress", "classify", "predict"])
def test_bulk_inference_through_a_raw_id_signature_is_refused(signature):
  from dasl_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from dasl_tf.pipelines import tfx_pipeline  # pylint: disable=g-import-not-at-top

  with pytest.raises(config_lib.ConfigError, match="only 'serving_indices' reads"):
    tfx_pipeline.check_bulk_inference_signature(signature)
  tfx_pipeline.check_bulk_inference_signature("serving_indices")
  tfx_pipeline.check_bulk_inference_signature(None)
