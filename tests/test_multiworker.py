"""MultiWorkerMirroredStrategy: two worker processes on loopback train one model together."""
import json
import os
import socket
import subprocess

import pytest
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import training
from tests import test_train_support as support

# About two minutes on 2 cores: in `make test-slow`, out of `make test`'s ten minutes.
pytestmark = pytest.mark.slow

VARIANT = "wide_deep"  # the quickest model to build: this test is about distribution
EPOCHS = 3


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _signatures(export_dir):
  """Each signature's input and output names, dtypes and shapes."""
  loaded = tf.saved_model.load(export_dir)
  described = {}
  for name, function in loaded.signatures.items():
    inputs = function.structured_input_signature[1]
    described[name] = (
        sorted((k, v.dtype.name, tuple(v.shape.as_list())) for k, v in inputs.items()),
        sorted((k, v.dtype.name, tuple(v.shape.as_list()))
               for k, v in function.structured_outputs.items()))
  return described


def test_two_workers_converge_and_export_the_single_process_signatures(tmp_path):
  data_dir = support.make_dataset_dir(str(tmp_path / "data"))
  config = support.small_config_json(str(tmp_path / "run.json"), epochs=EPOCHS,
                                     early_stopping_patience=EPOCHS, learning_rate=0.02)
  model_dir, export_base = str(tmp_path / "model"), str(tmp_path / "export")
  cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
  workers = []
  for index in range(2):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    workers.append(support.run_cli(
        "dasl_tf.pipelines.train",
        [f"--data_dir={data_dir}", f"--model_dir={model_dir}", f"--config={config}",
         f"--variant={VARIANT}", "--strategy=multi_worker", "--verbose=0",
         f"--serving_model_dir={export_base}"],
        env={"TF_CONFIG": tf_config}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True))
  outputs = [worker.communicate(timeout=600)[0] for worker in workers]
  for worker, output in zip(workers, outputs):
    assert worker.returncode == 0, output[-4000:]

  with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as f:
    metrics = json.load(f)
  with open(os.path.join(model_dir, "history.json"), encoding="utf-8") as f:
    history = json.load(f)
  assert [record["epoch"] for record in history] == list(range(1, EPOCHS + 1))
  assert history[-1]["loss"] < history[0]["loss"]
  for head in ("a", "b"):  # per-head logs are aggregated across workers, not summed
    assert all(0.0 <= record[f"val_auc_{head}"] <= 1.0 for record in history)
  assert (metrics["auc_a"] + metrics["auc_b"]) / 2 > 0.6
  assert sorted(os.listdir(model_dir)) == sorted(  # only the chief wrote here
      ["checkpoints", "config.json", "final", "history.json", "logs", "metrics.json",
       "report", "schema.json", "vocab"])

  from dasl_tf.serving import export  # pylint: disable=g-import-not-at-top
  single_dir = str(tmp_path / "single")
  data = training.TrainingData.from_data_dir(data_dir)
  experiment = config_lib.ExperimentConfig.load(os.path.join(model_dir, "config.json"))
  single = experiment.replace(train=experiment.train.replace(strategy="default", train_steps=2))
  training.train_and_evaluate(single, data, single_dir, write_report=False, verbose=0)
  single_export = export.export_model(single_dir, str(tmp_path / "single_export"))
  assert _signatures(os.path.join(export_base, "1")) == _signatures(single_export)
