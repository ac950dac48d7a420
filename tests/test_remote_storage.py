"""prepare -> train -> export with every path on s3://, against a real S3-compatible server.

The server is moto's standalone server (a dev dependency), started by the
module fixture on 127.0.0.1 in its own process and stopped after the tests.
The jobs run as the command-line tools, in subprocesses that reach it through
tensorflow-io's S3 filesystem; this process touches the bucket only through
boto3. A fresh process then loads the export from s3:// and scores with it.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from dasl_tf import filesystems
from dasl_tf.serving import spec as spec_lib
from tests import test_train_support as support

boto3 = pytest.importorskip("boto3", reason="boto3 and moto (the dev extra) are not installed")
pytest.importorskip("moto", reason="moto (the dev extra) is not installed")
try:
  import tensorflow_io  # noqa: F401  pylint: disable=unused-import
except (ImportError, NotImplementedError, OSError) as error:
  pytest.skip(f"tensorflow-io's filesystems do not load here ({error}); they need the default "
              "environment (TensorFlow 2.16)", allow_module_level=True)

BUCKET = "dasl-test"
ROOT = f"s3://{BUCKET}"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
  """A moto S3 server on 127.0.0.1 with an empty bucket; the environment that reaches it."""
  endpoint = f"http://127.0.0.1:{_free_port()}"
  log_path = tmp_path_factory.mktemp("moto") / "server.log"
  with open(log_path, "w", encoding="utf-8") as log:
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", endpoint.rsplit(":", 1)[1]],
        stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 60
    while True:  # wait until the server answers
      try:
        urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
        break
      except (urllib.error.URLError, ConnectionError):
        assert server.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "moto server did not start: " + log_path.read_text()
        time.sleep(0.1)
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
    client.create_bucket(Bucket=BUCKET)
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_REGION="us-east-1", S3_ENDPOINT=endpoint, S3_USE_HTTPS="0",
               S3_VERIFY_SSL="0", TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    yield client, env
  finally:
    server.terminate()
    server.wait(timeout=30)


def _run(module, args, env, timeout=600):
  proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                        env=env, cwd=support.REPO_ROOT, timeout=timeout)
  assert proc.returncode == 0, f"{module}: exit {proc.returncode}\n{proc.stderr[-4000:]}"
  return proc


def _keys(client, prefix):
  pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
  return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


_SCORE_FROM_S3 = r"""
import json, os, sys
import tensorflow as tf
import tensorflow_io  # registers s3://
remote, local, example, out = sys.argv[1:]
example = bytes.fromhex(example)
outputs = {}
for name, path in (("remote", remote), ("local", local)):
  scores = tf.saved_model.load(path).signatures["serving_default"](examples=tf.constant([example]))
  outputs[name] = {k: v.numpy().tolist() for k, v in scores.items()}
outputs["modules"] = sorted(m for m in ("dasl_tf", "tensorflow_recommenders") if m in sys.modules)
json.dump(outputs, open(out, "w"))
sys.stdout.flush()
os._exit(0)  # tensorflow-io's S3 client aborts in static destructors (tensorflow/io#2039)
"""


def test_prepare_train_export_and_serve_with_every_path_on_s3(s3, synthetic_raw, tmp_path):
  client, env = s3
  remote_inputs = {}
  for flag in ("input_a", "input_b"):
    key = f"raw/{os.path.basename(synthetic_raw[flag])}"
    client.upload_file(synthetic_raw[flag], BUCKET, key)
    remote_inputs[flag] = f"{ROOT}/{key}"

  _run("dasl_tf.pipelines.prepare",
       [f"--input_a={remote_inputs['input_a']}", f"--input_b={remote_inputs['input_b']}",
        f"--output_dir={ROOT}/data", "--num_negatives=9", "--train_negatives=2"], env)
  data_keys = _keys(client, "data/")
  assert {"data/schema.json", "data/stats.json", "data/vocab/users.txt"} <= set(data_keys)
  assert any(k.startswith("data/train/") for k in data_keys), data_keys

  config = support.small_config_json(str(tmp_path / "run.json"), epochs=1)
  _run("dasl_tf.pipelines.train",
       [f"--data_dir={ROOT}/data", f"--model_dir={ROOT}/run", f"--config={config}",
        "--verbose=0"], env)
  metrics = json.loads(client.get_object(Bucket=BUCKET, Key="run/metrics.json")["Body"].read())
  assert metrics["epochs"] == 1 and np.isfinite(metrics["auc_a"])
  assert {"run/config.json", "run/final/weights.index", "run/report/report.md"} <= set(
      _keys(client, "run/"))

  _run("dasl_tf.serving.export", [f"--model_dir={ROOT}/run", f"--export_base={ROOT}/exports"],
       env)
  export_keys = _keys(client, "exports/")
  assert "exports/1/saved_model.pb" in export_keys
  everything = _keys(client, "")
  assert not [k for k in everything if ".staging-" in k or ".retired-" in k], everything

  # The same export, read back from s3:// and from a local copy, scores alike.
  local = tmp_path / "export"
  for key in export_keys:
    target = local / os.path.relpath(key, "exports/1")
    target.parent.mkdir(parents=True, exist_ok=True)
    client.download_file(BUCKET, key, str(target))
  users = client.get_object(Bucket=BUCKET, Key="data/vocab/users.txt")["Body"].read().split()
  items = client.get_object(Bucket=BUCKET, Key="data/vocab/items_a.txt")["Body"].read().split()
  from dasl_tf.serving.requests import RequestBuilder  # pylint: disable=g-import-not-at-top
  builder = RequestBuilder(spec_lib.ServingSpec.load(str(local)))
  raw = (lambda v: v.decode()) if builder.spec.id_dtype == "string" else int
  (example,) = builder.example_inputs([{"user_id": raw(users[0]), "item_id": raw(items[0]),
                                        "domain": 0, "hist_a": [raw(i) for i in items[1:3]],
                                        "hist_b": []}])[spec_lib.EXAMPLES]
  out = tmp_path / "scores.json"
  fresh_env = {k: v for k, v in env.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
  proc = subprocess.run([sys.executable, "-c", _SCORE_FROM_S3, f"{ROOT}/exports/1", str(local),
                         example.hex(), str(out)], capture_output=True, text=True,
                        env=fresh_env, cwd=str(tmp_path), timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  scores = json.loads(out.read_text())
  assert scores["modules"] == []
  assert scores["remote"] == scores["local"]
  assert 0.0 < scores["remote"]["ctr"][0] < 1.0


# An object store that cannot be reached: every command fails within DASL_REMOTE_TIMEOUT_S
# (per step of the endpoint check), with one line naming the endpoint, and writes nothing.
_COMMANDS = {"dasl-prepare": "dasl_tf.pipelines.prepare", "dasl-train": "dasl_tf.pipelines.train",
             "dasl-export": "dasl_tf.serving.export"}


def _unreachable_env(endpoint_env, endpoint):
  env = {k: v for k, v in os.environ.items()
         if k not in filesystems.S3_ENDPOINT_ENVS + filesystems.S3_TIMEOUT_ENVS}
  env.update({endpoint_env: endpoint, "AWS_ACCESS_KEY_ID": "testing",
              "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
              filesystems.TIMEOUT_ENV: "2", "TF_USE_LEGACY_KERAS": "1",
              "TF_CPP_MIN_LOG_LEVEL": "2"})
  return env


def _tree(root):
  return sorted(os.path.relpath(os.path.join(d, n), root)
                for d, dirs, files in os.walk(root) for n in dirs + files)


def _fails_on_endpoint(command, args, env, tmp_path, raw, data_dir=""):
  """Runs ``command`` in an empty directory; returns its last stderr line; checks it wrote nothing.

  In ``args``, ``{inputs}/a.csv`` and ``{inputs}/b.csv`` are a valid small dataset
  (``raw``), ``{data}`` is ``data_dir`` and ``{tmp}`` is ``tmp_path``.
  """
  inputs = tmp_path / "inputs"
  inputs.mkdir(parents=True)
  for flag, name in (("input_a", "a.csv"), ("input_b", "b.csv")):
    shutil.copyfile(raw[flag], inputs / name)
  cwd = tmp_path / "cwd"
  cwd.mkdir(parents=True)
  before = _tree(tmp_path)
  args = [a.format(inputs=inputs, tmp=tmp_path, data=data_dir) for a in args]
  proc = subprocess.run([sys.executable, "-m", _COMMANDS[command], *args], capture_output=True,
                        text=True, env=env, cwd=str(cwd), timeout=60)
  assert proc.returncode == 2, f"{command}: exit {proc.returncode}\n{proc.stderr[-4000:]}"
  assert _tree(tmp_path) == before
  return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("command,args,endpoint_env", [
    ("dasl-prepare", ["--input_a={inputs}/a.csv", "--input_b={inputs}/b.csv",
                      f"--output_dir={ROOT}/x"], "AWS_ENDPOINT_URL"),
    ("dasl-train", [f"--data_dir={ROOT}/data", "--model_dir={tmp}/run"], "S3_ENDPOINT"),
    # Local data: the export at the end is refused before training starts.
    ("dasl-train", ["--data_dir={data}", "--model_dir={tmp}/run",
                    f"--serving_model_dir={ROOT}/exports"], "S3_ENDPOINT"),
    ("dasl-export", ["--model_dir={tmp}/run", f"--export_base={ROOT}/exports"], "S3_ENDPOINT"),
])
def test_closed_port_is_one_error_line_naming_the_endpoint(command, args, endpoint_env,
                                                           synthetic_raw, synthetic_data_dir,
                                                           tmp_path):
  port = _free_port()  # bound, read and closed: nothing listens there
  endpoint = f"http://127.0.0.1:{port}"
  line = _fails_on_endpoint(command, args, _unreachable_env(endpoint_env, endpoint), tmp_path,
                            synthetic_raw, synthetic_data_dir)
  assert line.startswith(f"{command}: error: s3://{BUCKET}/"), line
  assert f"the S3 endpoint 127.0.0.1:{port} (from {endpoint_env}={endpoint})" in line, line
  assert "connection refused" in line and filesystems.TIMEOUT_ENV in line, line


def test_endpoint_that_never_accepts_or_never_answers_fails_in_bounded_time(synthetic_raw,
                                                                           tmp_path):
  # Backlog 0 holds one connection, the test's own: the kernel drops the next one's SYN,
  # as a blackholed address does. A listener with room accepts but never answers.
  with socket.socket() as full, socket.socket() as filler, socket.socket() as silent:
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler.connect(full.getsockname())
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    full_port, silent_port = full.getsockname()[1], silent.getsockname()[1]
    cases = (
        (f"http://127.0.0.1:{full_port}", full_port, "did not accept a connection"),
        (f"http://127.0.0.1:{silent_port}", silent_port,
         "did not send an HTTP answer after accepting the connection"),
        (f"127.0.0.1:{silent_port}", silent_port,  # no scheme: HTTPS, as the AWS SDK does
         "did not complete a TLS handshake after accepting the connection"))
    for i, (endpoint, port, reason) in enumerate(cases):
      line = _fails_on_endpoint(
          "dasl-prepare", ["--input_a={inputs}/a.csv", "--input_b={inputs}/b.csv",
                           f"--output_dir={ROOT}/x"],
          _unreachable_env("S3_ENDPOINT", endpoint), tmp_path / str(i), synthetic_raw)
      assert line.startswith(
          f"dasl-prepare: error: {ROOT}/x: cannot reach the S3 endpoint 127.0.0.1:{port} "
          f"(from S3_ENDPOINT={endpoint}): it {reason} within 2 s. "), line


@pytest.mark.parametrize("environ,host,port,tls,s3_endpoint", [
    ({"S3_ENDPOINT": "http://10.0.0.5:9000", "AWS_ENDPOINT_URL": "http://other:1"},
     "10.0.0.5", 9000, False, "http://10.0.0.5:9000"),
    ({"AWS_ENDPOINT_URL": "minio.local:9000"}, "minio.local", 9000, True, "minio.local:9000"),
    ({"AWS_ENDPOINT_URL_S3": "https://s3.example", "AWS_ENDPOINT_URL": "http://x:1"},
     "s3.example", 443, True, "https://s3.example"),
    ({"S3_ENDPOINT": "http://store"}, "store", 80, False, "http://store"),
    ({"AWS_DEFAULT_REGION": "eu-west-1"}, "s3.eu-west-1.amazonaws.com", 443, True, None),
    ({}, "s3.us-east-1.amazonaws.com", 443, True, None),
])
def test_s3_endpoint_is_the_one_tensorflow_io_uses(environ, host, port, tls, s3_endpoint):
  endpoint = filesystems.configure_s3(environ)
  assert (endpoint.host, endpoint.port, endpoint.tls) == (host, port, tls)
  assert environ.get("S3_ENDPOINT") == s3_endpoint


def test_timeout_setting_becomes_tensorflow_io_timeouts_unless_set():
  environ = {filesystems.TIMEOUT_ENV: "2.5", "S3_REQUEST_TIMEOUT_MSEC": "60000"}
  filesystems.configure_s3(environ)
  assert environ["S3_CONNECT_TIMEOUT_MSEC"] == "2500"
  assert environ["S3_REQUEST_TIMEOUT_MSEC"] == "60000"
  environ = {}
  filesystems.configure_s3(environ)
  assert environ["S3_CONNECT_TIMEOUT_MSEC"] == environ["S3_REQUEST_TIMEOUT_MSEC"] == "10000"


@pytest.mark.parametrize("environ,named", [
    ({filesystems.TIMEOUT_ENV: "0"}, "DASL_REMOTE_TIMEOUT_S='0'"),
    ({filesystems.TIMEOUT_ENV: "-1"}, "DASL_REMOTE_TIMEOUT_S='-1'"),
    ({filesystems.TIMEOUT_ENV: "nan"}, "DASL_REMOTE_TIMEOUT_S='nan'"),
    ({filesystems.TIMEOUT_ENV: "inf"}, "DASL_REMOTE_TIMEOUT_S='inf'"),
    ({filesystems.TIMEOUT_ENV: "ten"}, "DASL_REMOTE_TIMEOUT_S='ten'"),
    ({"S3_ENDPOINT": "http://store:port"}, "S3_ENDPOINT='http://store:port'"),
    ({"AWS_ENDPOINT_URL": "ftp://store:21"}, "AWS_ENDPOINT_URL='ftp://store:21'"),
])
def test_bad_settings_are_errors_naming_them(environ, named):
  with pytest.raises(filesystems.RemotePathError, match=named):
    filesystems.configure_s3(environ)
