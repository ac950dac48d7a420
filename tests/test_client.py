"""Requests built by dasl_tf.serving.requests and sent by dasl_tf.serving.client score as the signatures do.

TensorFlow Serving cannot run here, so the server side is reproduced: REST JSON
is turned into tensors by TensorFlow Serving's JSON rules (row ``instances`` and
columnar ``inputs``, ``{"b64": ...}`` for bytes, integers only for int64),
gRPC ``TensorProto`` by ``tf.make_ndarray``, and the exported signatures are
called with them. A small HTTP server and a gRPC server built on the same
decoding check the transport (answers, server errors, timeouts) and the
command line.
"""
import base64
import concurrent.futures
import http.server
import json
import os
import socketserver
import subprocess
import sys
import textwrap
import threading
import time

from google.protobuf import text_format
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from dasl_tf import features as F
from dasl_tf.serving import spec as spec_lib
from dasl_tf.serving.client import DaslClient
from dasl_tf.serving.client import ServingError
from dasl_tf.serving.client import parse_rest_response
from dasl_tf.serving.requests import RequestBuilder
from tests.conftest import REPO_ROOT
from tests.test_serving import PAD
from tests.test_serving import T
from tests.test_serving import UNKNOWN
from tests.test_serving import call_signature
from tests.test_serving import examples_request
from tests.test_serving import expected_api_outputs
from tests.test_serving import indexed_features
from tests.test_serving import predict_request
from tests.test_serving import raw_examples_request
from tests.test_serving import recommend_request
from tests.test_serving import serving_setup
from tests.test_serving import string_id_export


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  return serving_setup(tmp_path_factory)


@pytest.fixture(scope="module")
def client(setup):
  with DaslClient(spec_lib.ServingSpec.load(setup.export_dir), timeout_s=10.0) as c:
    yield c


@pytest.fixture(scope="module")
def builder(setup):
  return RequestBuilder(spec_lib.ServingSpec.load(setup.export_dir))


# Raw user data equivalent to tests.test_serving's requests (histories unpadded).
PREDICT_ROWS = [
    {"user_id": 1000, "item_id": 5000, "domain": 0, "hist_a": [5001, 5002], "hist_b": [7001]},
    {"user_id": 1003, "item_id": 7004, "domain": 1, "hist_a": [5003, 5004, 5011],
     "hist_b": [7002, UNKNOWN, 7003]},
    {"user_id": UNKNOWN, "item_id": 123, "domain": 0, "hist_a": [], "hist_b": []},
]
RECOMMEND_ROWS = [
    {"user_id": 1001, "domain": 0, "hist_a": [5004, 5005, 5006, 5007, 5008], "hist_b": [],
     "candidates": [5000 + i for i in range(12)] + [UNKNOWN, 5003]},
    {"user_id": UNKNOWN, "domain": 1, "hist_a": [5001], "hist_b": [7001, 7002, 7003, 7004, 7005],
     "candidates": [7000 + i for i in range(9)]},
]


def example_rows():
  features = indexed_features(predict_request())
  return [{name: value[i] for name, value in features.items()} for i in range(3)]


def requests_of(client):
  """signature -> (client inputs, the equivalent request sent to the signature directly)."""
  return {
      spec_lib.PREDICT: (client.predict_inputs(PREDICT_ROWS), predict_request()),
      spec_lib.RECOMMEND: (client.recommend_inputs(RECOMMEND_ROWS), recommend_request()),
      spec_lib.SERVING_DEFAULT: (client.example_inputs(PREDICT_ROWS), raw_examples_request()),
      spec_lib.SERVING_INDICES: (client.index_example_inputs(example_rows()), examples_request()),
      spec_lib.REGRESS: (client.example_inputs(PREDICT_ROWS, spec_lib.REGRESS),
                         raw_examples_request(spec_lib.API_INPUTS)),
      spec_lib.CLASSIFY: (client.example_inputs(PREDICT_ROWS, spec_lib.CLASSIFY),
                          raw_examples_request(spec_lib.API_INPUTS)),
  }


# --- TensorFlow Serving's side ---------------------------------------------------


def _is_b64(value):
  return isinstance(value, dict) and set(value) == {"b64"}


def _json_leaf(value, dtype, name):
  if dtype == tf.string:
    if _is_b64(value):
      return base64.b64decode(value["b64"])
    if isinstance(value, str):
      return value.encode("utf-8")
  elif dtype.is_integer:
    if isinstance(value, int) and not isinstance(value, bool):
      return value
  elif dtype.is_floating:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return value
  raise ValueError(f"input {name!r}: JSON value {value!r} is not of type {dtype.name}")


def _json_tensor(value, dtype, name):
  if isinstance(value, list):
    converted = [_json_tensor(v, dtype, name) for v in value]
    shapes = {np.shape(c) for c in converted}
    if len(shapes) > 1:
      raise ValueError(f"input {name!r}: ragged JSON list (shapes {sorted(shapes)})")
    return converted
  return _json_leaf(value, dtype, name)


def decode_rest(body, input_specs):
  """Tensors of a REST ``:predict`` body, by TensorFlow Serving's JSON rules."""
  if ("instances" in body) == ("inputs" in body):
    raise ValueError("the body needs exactly one of 'instances' and 'inputs'")
  names = sorted(input_specs)
  if "instances" in body:
    columns = {name: [] for name in names}
    for i, instance in enumerate(body["instances"]):
      if len(names) == 1 and (not isinstance(instance, dict) or _is_b64(instance)):
        instance = {names[0]: instance}
      if not isinstance(instance, dict) or sorted(instance) != names:
        raise ValueError(f"instance {i}: expected named inputs {names}")
      for name in names:
        columns[name].append(instance[name])
  else:
    columns = body["inputs"]
    if len(names) == 1 and (not isinstance(columns, dict) or _is_b64(columns)):
      columns = {names[0]: columns}
    if sorted(columns) != names:
      raise ValueError(f"'inputs' must name {names}, got {sorted(columns)}")
  tensors = {}
  for name in names:
    dtype = input_specs[name].dtype
    value = np.array(_json_tensor(columns[name], dtype, name),
                     dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    tensors[name] = tf.constant(value, dtype)
  return tensors


def rest_answer(outputs, form):
  """A REST answer in TensorFlow Serving's format for the body's form."""
  def jsonable(value):
    if isinstance(value, bytes):
      return value.decode("utf-8")
    if isinstance(value, list):
      return [jsonable(v) for v in value]
    return value
  lists = {name: jsonable(value.tolist()) for name, value in outputs.items()}
  if len(lists) == 1:  # one output: its name is left out
    (values,) = lists.values()
    return {"outputs": values} if form == "inputs" else {"predictions": values}
  if form == "inputs":
    return {"outputs": lists}
  rows = len(next(iter(lists.values())))
  return {"predictions": [{name: value[i] for name, value in lists.items()} for i in range(rows)]}


def serve_rest(loaded, body):
  signature = body.get("signature_name", spec_lib.SERVING_DEFAULT)
  function = loaded.signatures[signature]
  tensors = decode_rest(body, function.structured_input_signature[1])
  outputs = {name: value.numpy() for name, value in function(**tensors).items()}
  return rest_answer(outputs, "instances" if "instances" in body else "inputs")


def _json_example(features):
  """A tf.Example from a JSON object by TensorFlow Serving's rules for ``examples``."""
  proto = {}
  for name, value in features.items():
    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
      proto[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
      proto[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    elif all(isinstance(v, str) for v in values):
      proto[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[v.encode("utf-8") for v in values]))
    else:
      raise ValueError(f"feature {name!r}: mixed or unsupported JSON values {values!r}")
  return tf.train.Example(features=tf.train.Features(feature=proto)).SerializeToString()


def _api_outputs(loaded, signature, serialized):
  function = loaded.signatures[signature]
  outputs = function(**{spec_lib.API_INPUTS: tf.constant(serialized, tf.string)})
  return {name: value.numpy() for name, value in outputs.items()}


def serve_rest_api(loaded, api, body):
  """A REST ``:regress`` or ``:classify`` answer, the examples built as TensorFlow Serving does."""
  signature = body["signature_name"]
  assert {"regress": spec_lib.REGRESS, "classify": spec_lib.CLASSIFY}[api] == signature
  outputs = _api_outputs(loaded, signature, [_json_example(e) for e in body["examples"]])
  if api == "regress":
    return {"results": outputs[spec_lib.REGRESS_OUTPUTS].tolist()}
  return {"results": [[[c.decode(), float(p)] for c, p in zip(classes, scores)]
                      for classes, scores in zip(outputs[spec_lib.CLASSIFY_CLASSES],
                                                 outputs[spec_lib.CLASSIFY_SCORES])]}


def serve_grpc_api(loaded, request):
  """A ``RegressionResponse`` or ``ClassificationResponse`` of a request's example list."""
  serialized = [e.SerializeToString() for e in request.input.example_list.examples]
  outputs = _api_outputs(loaded, request.model_spec.signature_name, serialized)
  if isinstance(request, regression_pb2.RegressionRequest):
    response = regression_pb2.RegressionResponse()
    for value in outputs[spec_lib.REGRESS_OUTPUTS]:
      response.result.regressions.add(value=value)
    return response
  response = classification_pb2.ClassificationResponse()
  for classes, scores in zip(outputs[spec_lib.CLASSIFY_CLASSES],
                             outputs[spec_lib.CLASSIFY_SCORES]):
    row = response.result.classifications.add()
    for label, score in zip(classes, scores):
      row.classes.add(label=label.decode(), score=score)
  return response


def serve_grpc(loaded, request):
  function = loaded.signatures[request.model_spec.signature_name]
  inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
  outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
  response = predict_pb2.PredictResponse()
  for name, value in outputs.items():
    response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
  return response


# --- the requests score as the signatures do ---------------------------------------


@pytest.mark.parametrize("form", ["instances", "inputs"])
@pytest.mark.parametrize("signature", spec_lib.SIGNATURES)
def test_rest_requests_score_like_the_signature(setup, client, signature, form):
  inputs, direct = requests_of(client)[signature]
  body = json.loads(json.dumps(client.rest_body(signature, inputs, form)))
  answer = serve_rest(setup.loaded, body)
  expected = call_signature(setup.loaded, signature, direct)
  outputs = parse_rest_response(answer, signature)
  assert_same_outputs(outputs, expected)


@pytest.mark.parametrize("signature", spec_lib.SIGNATURES)
def test_grpc_requests_score_like_the_signature(setup, client, signature):
  inputs, direct = requests_of(client)[signature]
  request = predict_pb2.PredictRequest.FromString(
      client.grpc_request(signature, inputs).SerializeToString())
  assert request.model_spec.name == "dasl"
  outputs = {name: tf.make_ndarray(proto)
             for name, proto in serve_grpc(setup.loaded, request).outputs.items()}
  assert_same_outputs(outputs, call_signature(setup.loaded, signature, direct))


def assert_same_outputs(actual, expected):
  """Equal names; strings equal as text, numbers to 1e-6."""
  assert sorted(actual) == sorted(expected)
  for name, value in expected.items():
    if value.dtype == object or value.dtype.kind == "S":
      np.testing.assert_array_equal(np.asarray(actual[name]).astype(str), value.astype(str))
    else:
      np.testing.assert_allclose(actual[name], value, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("signature", [spec_lib.REGRESS, spec_lib.CLASSIFY])
def test_regress_and_classify_apis_score_the_rows(setup, client, signature):
  """Rows through the Regress/Classify APIs (REST JSON examples, gRPC example lists)."""
  expected = expected_api_outputs(setup.model)[signature]
  api = {spec_lib.REGRESS: "regress", spec_lib.CLASSIFY: "classify"}[signature]
  rest = serve_rest_api(setup.loaded, api, json.loads(json.dumps(
      {"signature_name": signature, "examples": client.api_examples(PREDICT_ROWS)})))
  request = type(client.api_request(signature, PREDICT_ROWS)).FromString(
      client.api_request(signature, PREDICT_ROWS).SerializeToString())
  grpc_response = serve_grpc_api(setup.loaded, request)
  if signature == spec_lib.REGRESS:
    np.testing.assert_allclose(rest["results"], expected["outputs"], atol=1e-6)
    np.testing.assert_allclose([r.value for r in grpc_response.result.regressions],
                               expected["outputs"], atol=1e-6)
  else:
    np.testing.assert_allclose([[p for _, p in row] for row in rest["results"]],
                               expected["scores"], atol=1e-6)
    assert [[c.label for c in row.classes] for row in grpc_response.result.classifications] == [
        ["0", "1"]] * len(PREDICT_ROWS)


def test_requests_pad_histories_to_t_with_the_padding_id(builder):
  inputs = builder.predict_inputs(PREDICT_ROWS[:1])
  np.testing.assert_array_equal(inputs["hist_a"], [[PAD, PAD, PAD, 5001, 5002]])
  assert inputs["hist_b"].shape == (1, T)


def test_recommend_candidates_pad_to_a_fixed_width(builder):
  inputs = builder.recommend_inputs(RECOMMEND_ROWS, pad_candidates_to=20)
  assert inputs["candidates"].shape == (2, 20)
  assert np.all(inputs["candidates"][1, 9:] == PAD)
  with pytest.raises(ValueError, match="14 candidates, more than the 10 a request carries"):
    builder.recommend_inputs(RECOMMEND_ROWS, pad_candidates_to=10)


def test_recommend_requests_of_any_candidate_count_batch_together(setup, builder):
  """TensorFlow Serving's batching concatenates requests along the batch: shapes must agree."""
  width = builder.spec.candidates_per_request
  assert width == spec_lib.DEFAULT_CANDIDATES_PER_REQUEST
  first = builder.recommend_inputs(RECOMMEND_ROWS[:1])
  second = builder.recommend_inputs([dict(RECOMMEND_ROWS[1], candidates=[7000, 7001, 7002])])
  assert {n: v.shape for n, v in first.items()} == {n: v.shape for n, v in second.items()}
  assert first[spec_lib.CANDIDATES].shape == (1, width)
  batched = {name: np.concatenate([first[name], second[name]]) for name in first}
  together = call_signature(setup.loaded, spec_lib.RECOMMEND, batched)
  for row, alone in enumerate((first, second)):
    separate = call_signature(setup.loaded, spec_lib.RECOMMEND, alone)
    np.testing.assert_array_equal(together[spec_lib.ITEM_IDS][row], separate[spec_lib.ITEM_IDS][0])
    np.testing.assert_allclose(together[spec_lib.SCORES][row], separate[spec_lib.SCORES][0],
                               atol=1e-6)
  # The short list's padding never comes back above its three real candidates.
  assert sorted(together[spec_lib.ITEM_IDS][1][:3]) == [7000, 7001, 7002]
  assert set(together[spec_lib.ITEM_IDS][1][3:]) == {PAD}


def test_request_inputs_have_the_dtypes_and_ranks_of_the_signature_inputs(builder):
  for signature, rows in ((spec_lib.PREDICT, PREDICT_ROWS), (spec_lib.RECOMMEND, RECOMMEND_ROWS),
                          (spec_lib.SERVING_DEFAULT, PREDICT_ROWS),
                          (spec_lib.SERVING_INDICES, example_rows()),
                          (spec_lib.REGRESS, PREDICT_ROWS), (spec_lib.CLASSIFY, PREDICT_ROWS)):
    inputs = builder.inputs(signature, rows)
    expected = builder.spec.signature_inputs(signature)
    assert list(inputs) == list(expected)
    for name, (dtype, shape) in expected.items():
      assert inputs[name].dtype == (object if dtype == "string" else np.dtype(dtype)), name
      assert inputs[name].ndim == len(shape) and len(inputs[name]) == len(rows), name


def test_inputs_dispatches_by_signature_and_rejects_unknown_ones(builder):
  np.testing.assert_array_equal(builder.inputs(spec_lib.RECOMMEND, RECOMMEND_ROWS, 20)[
      spec_lib.CANDIDATES], builder.recommend_inputs(RECOMMEND_ROWS, 20)[spec_lib.CANDIDATES])
  with pytest.raises(ValueError, match="unknown signature 'score'"):
    builder.inputs("score", PREDICT_ROWS)
  with pytest.raises(ValueError, match="form must be one of"):
    builder.rest_body(spec_lib.PREDICT, builder.predict_inputs(PREDICT_ROWS), "columns")


def test_building_requests_needs_no_network_and_no_tensorflow():
  script = textwrap.dedent("""
      import sys
      import dasl_tf.serving.requests
      loaded = sorted(m for m in sys.modules if m.split(".")[0] in (
          "tensorflow", "grpc", "socket", "http", "tensorflow_serving"))
      assert not loaded, loaded
      """)
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        cwd=REPO_ROOT, timeout=120)
  assert proc.returncode == 0, proc.stderr


# --- bad requests fail before they are sent ---------------------------------------------


def _with(row, **changes):
  row = dict(row, **changes)
  return {k: v for k, v in row.items() if v is not None}


@pytest.mark.parametrize("row, message", [
    (_with(PREDICT_ROWS[0], hist_b=None), "row 0: missing field 'hist_b'"),
    (_with(PREDICT_ROWS[0], hist_c=[1]), r"unknown field\(s\) \['hist_c'\]"),
    (_with(PREDICT_ROWS[0], user_id="1000"), "field 'user_id'.*non-negative integers"),
    (_with(PREDICT_ROWS[0], item_id=5000.0), "field 'item_id'.*non-negative integers"),
    (_with(PREDICT_ROWS[0], domain=2), "domain must be 0"),
    (_with(PREDICT_ROWS[0], hist_a=5001), "field 'hist_a': expected a list"),
    (_with(PREDICT_ROWS[0], hist_a=[5001] * (T + 1)), "6 ids, more than the model's "
     "history_length=5"),
])
def test_requests_reject_bad_rows(builder, row, message):
  with pytest.raises(ValueError, match=message):
    builder.predict_inputs([row])


def test_requests_reject_bad_example_rows_and_empty_candidates(builder):
  row = example_rows()[0]
  del row[F.ITEM_ID]
  with pytest.raises(ValueError, match="row 0: example is missing feature 'item_id'"):
    builder.index_example_inputs([row])
  with pytest.raises(ValueError, match="row 0: missing field 'item_id'"):
    builder.example_inputs([_with(PREDICT_ROWS[0], item_id=None)])
  with pytest.raises(ValueError, match="does not take raw-id tf.Examples"):
    builder.example_inputs(PREDICT_ROWS, spec_lib.PREDICT)
  with pytest.raises(ValueError, match="no candidates"):
    builder.recommend_inputs([_with(RECOMMEND_ROWS[0], candidates=[])])
  with pytest.raises(ValueError, match="unknown signature"):
    builder.rest_body("score", {})


def test_server_side_rejects_what_the_client_would_not_send(setup, client):
  inputs = client.predict_inputs(PREDICT_ROWS)
  inputs["hist_a"] = np.concatenate([inputs["hist_a"], inputs["hist_a"]], axis=1)
  with pytest.raises(tf.errors.InvalidArgumentError, match="more than history_length=5"):
    serve_rest(setup.loaded, client.rest_body(spec_lib.PREDICT, inputs))
  body = client.rest_body(spec_lib.PREDICT, client.predict_inputs(PREDICT_ROWS), "inputs")
  body["inputs"]["user_id"][0] = 1000.5
  with pytest.raises(ValueError, match="'user_id': JSON value 1000.5 is not of type int64"):
    serve_rest(setup.loaded, body)


# --- transport ---------------------------------------------------------------------------------


class _RestHandler(http.server.BaseHTTPRequestHandler):
  loaded = None
  release = None  # a threading.Event: when set on the server, answers wait for it

  def do_POST(self):  # noqa: N802 (http.server's name)
    if self.server.release is not None:
      self.server.release.wait()
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    api = self.path.rsplit(":", 1)[1]
    try:
      if api == "predict":
        status, answer = 200, serve_rest(self.server.loaded, body)
      else:
        status, answer = 200, serve_rest_api(self.server.loaded, api, body)
    except (ValueError, tf.errors.InvalidArgumentError) as e:
      status, answer = 400, {"error": " ".join(str(e).split())}
    data = json.dumps(answer).encode("utf-8")
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, *args):
    pass


@pytest.fixture
def rest_server(setup):
  servers = []

  def start(release=None):
    server = http.server.ThreadingHTTPServer(("localhost", 0), _RestHandler)
    server.loaded, server.release = setup.loaded, release
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return server.server_address[1]

  yield start
  for server in servers:
    if server.release is not None:
      server.release.set()
    server.shutdown()
    server.server_close()


def test_rest_transport_answers_and_errors(setup, client, rest_server):
  rest = DaslClient(client.spec, rest_port=rest_server(), timeout_s=30.0)
  inputs = client.recommend_inputs(RECOMMEND_ROWS)
  expected = call_signature(setup.loaded, spec_lib.RECOMMEND, recommend_request())
  for form in ("instances", "inputs"):
    outputs = rest.rest_predict(spec_lib.RECOMMEND, inputs, form)
    np.testing.assert_array_equal(outputs[spec_lib.ITEM_IDS], expected[spec_lib.ITEM_IDS])
  bad = dict(inputs, domain=np.array([0, 3], np.int64))
  with pytest.raises(ServingError, match="HTTP 400: .*domain must be 0"):
    rest.rest_predict(spec_lib.RECOMMEND, bad)


def test_rest_transport_times_out_and_reports_refused_connections(client, rest_server):
  slow = DaslClient(client.spec, rest_port=rest_server(release=threading.Event()),
                    timeout_s=0.5)
  with pytest.raises(ServingError, match="no complete answer within 0.5 s"):
    slow.rest_predict(spec_lib.PREDICT, client.predict_inputs(PREDICT_ROWS))
  with pytest.raises(ServingError, match="cannot connect"):
    DaslClient(client.spec, rest_port=1, timeout_s=5.0).rest_predict(
        spec_lib.PREDICT, client.predict_inputs(PREDICT_ROWS))


def test_rest_api_calls_regress_and_classify_over_http(setup, client, rest_server):
  rest = DaslClient(client.spec, rest_port=rest_server(), timeout_s=30.0)
  for signature, expected in expected_api_outputs(setup.model).items():
    assert_same_outputs(rest.rest_api(signature, PREDICT_ROWS), expected)
  with pytest.raises(ValueError, match="not served by the Regress or Classify API"):
    rest.rest_api(spec_lib.PREDICT, PREDICT_ROWS)


class _ScriptedHandler(socketserver.BaseRequestHandler):
  """Reads one HTTP request, then answers with the server's ``script(socket, stop)``."""

  def handle(self):
    received = b""
    while b"\r\n\r\n" not in received:
      received += self.request.recv(65536)
    head, body = received.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
      body += self.request.recv(65536)
    try:
      self.server.script(self.request, self.server.stop)
    except OSError:
      pass  # the client hung up


@pytest.fixture
def scripted_server():
  """Starts TCP servers on 127.0.0.1 that answer with a script; stops them after the test."""
  servers = []

  def start(script):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ScriptedHandler)
    server.daemon_threads = True
    server.script, server.stop = script, threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return server.server_address[1]

  yield start
  for server in servers:
    server.stop.set()
    server.shutdown()
    server.server_close()


def _http_head(length):
  return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
          f"Content-Length: {length}\r\n\r\n").encode()


def _drip(sock, stop):
  """A valid answer, one byte every 50 ms: about a minute in all."""
  body = b" " * 1200 + json.dumps({"predictions": [{"ctr": 0.5}]}).encode()
  sock.sendall(_http_head(len(body)))
  for byte in body:
    if stop.wait(0.05):
      return
    sock.sendall(bytes([byte]))


def test_the_timeout_bounds_the_whole_call_against_a_dripping_server(client, scripted_server):
  remote = DaslClient(client.spec, rest_port=scripted_server(_drip), timeout_s=1.0)
  started = time.monotonic()
  with pytest.raises(ServingError, match="no complete answer within 1.0 s"):
    remote.rest_predict(spec_lib.PREDICT, client.predict_inputs(PREDICT_ROWS[:1]))
  # Every read got a byte within 1 s, so a per-read timeout would wait for all ~60 s.
  assert time.monotonic() - started < 30


def _not_http(sock, stop):
  del stop
  sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")


def _truncated(sock, stop):
  del stop
  sock.sendall(_http_head(100) + b'{"predictions": [')


def _answer(payload):
  def script(sock, stop):
    del stop
    body = json.dumps(payload).encode()
    sock.sendall(_http_head(len(body)) + body)
  return script


@pytest.mark.parametrize("script, message", [
    (_not_http, "not a valid HTTP answer"),
    (_truncated, "the answer was cut short"),
    (_answer({"predictions": [{"ctr_a": 0.5, "ctr_b": 0.5}]}),
     r"lacks output\(s\) \['ctr'\]"),
    (_answer({"predictions": [{"ctr_a": 0.5, "ctr_b": 0.5, "ctr": 0.5}] * 2}),
     "output 'ctr_a' has 2 rows for a request of 1"),
    (_answer(["not", "an", "object"]), "not a JSON object"),
])
def test_malformed_answers_are_errors_never_results(client, scripted_server, script, message):
  remote = DaslClient(client.spec, rest_port=scripted_server(script), timeout_s=10.0)
  with pytest.raises(ServingError, match=message):
    remote.rest_predict(spec_lib.PREDICT, client.predict_inputs(PREDICT_ROWS[:1]))


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):

  def __init__(self, loaded):
    self.loaded = loaded

  def _serve(self, serve, request, context):
    try:
      return serve(self.loaded, request)
    except tf.errors.InvalidArgumentError as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, " ".join(e.message.split()))

  def Predict(self, request, context):  # noqa: N802 (the service's name)
    return self._serve(serve_grpc, request, context)

  def Regress(self, request, context):  # noqa: N802
    return self._serve(serve_grpc_api, request, context)

  def Classify(self, request, context):  # noqa: N802
    return self._serve(serve_grpc_api, request, context)


def test_grpc_transport_answers_and_errors(setup, client):
  server, port = _grpc_server(setup.loaded)
  server.start()
  try:
    with DaslClient(client.spec, grpc_port=port, timeout_s=30.0) as remote:
      outputs = remote.grpc_predict(spec_lib.PREDICT, client.predict_inputs(PREDICT_ROWS))
      expected = call_signature(setup.loaded, spec_lib.PREDICT, predict_request())
      np.testing.assert_allclose(outputs["ctr"], expected["ctr"], atol=1e-6)
      bad = dict(client.predict_inputs(PREDICT_ROWS), domain=np.array([0, 1, 5], np.int64))
      with pytest.raises(ServingError, match="INVALID_ARGUMENT: .*domain must be 0"):
        remote.grpc_predict(spec_lib.PREDICT, bad)
      for signature, api_expected in expected_api_outputs(setup.model).items():
        assert_same_outputs(remote.grpc_api(signature, PREDICT_ROWS), api_expected)
  finally:
    server.stop(grace=None)


def _grpc_server(loaded):
  server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      _PredictionService(loaded), server)
  return server, server.add_insecure_port("localhost:0")


def test_string_ids_over_grpc_come_back_as_text(setup):
  string_export = string_id_export(setup)
  server, port = _grpc_server(string_export.loaded)
  server.start()
  try:
    with DaslClient(spec_lib.ServingSpec.load(string_export.export_dir), grpc_port=port,
                    timeout_s=30.0) as remote:
      with pytest.raises(ValueError, match="non-empty strings, got 1001"):
        remote.recommend_inputs([RECOMMEND_ROWS[0]])
      row = {"user_id": "users-1001", "domain": 0, "hist_a": ["items_a-5004"], "hist_b": [],
             "candidates": ["items_a-5000", "items_a-5001", "nobody-knows"]}
      inputs = remote.recommend_inputs([row])
      assert inputs["hist_a"].tolist() == [["", "", "", "", "items_a-5004"]]
      outputs = remote.grpc_predict(spec_lib.RECOMMEND, inputs)
  finally:
    server.stop(grace=None)
  assert sorted(outputs[spec_lib.ITEM_IDS][0][:3]) == sorted(row["candidates"])
  assert set(outputs[spec_lib.ITEM_IDS][0][3:]) == {""}
  expected = call_signature(string_export.loaded, spec_lib.RECOMMEND, inputs)
  np.testing.assert_allclose(outputs[spec_lib.SCORES], expected[spec_lib.SCORES], atol=1e-6)


def test_parse_rest_response_rejects_errors_and_unknown_shapes():
  with pytest.raises(ServingError, match="server error: boom"):
    parse_rest_response({"error": "boom"}, spec_lib.PREDICT)
  with pytest.raises(ServingError, match="unexpected answer"):
    parse_rest_response({"predictions": [0.5, 0.25]}, spec_lib.PREDICT)
  np.testing.assert_array_equal(  # one output: TensorFlow Serving leaves its name out
      parse_rest_response({"predictions": [0.5, 0.25]}, spec_lib.REGRESS)["outputs"], [0.5, 0.25])


# --- command line --------------------------------------------------------------------------


def _run_client_cli(setup, request_path, *flags):
  return subprocess.run(
      [sys.executable, "-m", "dasl_tf.serving.client", f"--spec={setup.export_dir}",
       f"--request={request_path}", *flags],
      capture_output=True, text=True, cwd=REPO_ROOT, env=dict(os.environ), timeout=300)


def _request_file(tmp_path, rows):
  path = tmp_path / "request.json"
  path.write_text(json.dumps({"rows": rows}))
  return path


def test_cli_sends_rows_over_rest_and_prints_the_outputs(setup, rest_server, tmp_path):
  proc = _run_client_cli(setup, _request_file(tmp_path, RECOMMEND_ROWS), "--signature=recommend",
                         f"--rest_port={rest_server()}", "--form=inputs", "--timeout_s=60")
  assert proc.returncode == 0, proc.stderr[-3000:]
  outputs = json.loads(proc.stdout)
  expected = call_signature(setup.loaded, spec_lib.RECOMMEND, recommend_request())
  np.testing.assert_array_equal(outputs[spec_lib.ITEM_IDS], expected[spec_lib.ITEM_IDS])
  np.testing.assert_allclose(outputs[spec_lib.SCORES], expected[spec_lib.SCORES], atol=1e-6)


def test_cli_dry_run_prints_the_grpc_request_it_would_send(setup, client, tmp_path):
  proc = _run_client_cli(setup, _request_file(tmp_path, PREDICT_ROWS), "--signature=predict",
                         "--transport=grpc", "--version=4", "--dry_run")
  assert proc.returncode == 0, proc.stderr[-3000:]
  printed = text_format.Parse(proc.stdout, predict_pb2.PredictRequest())
  expected = DaslClient(client.spec, version=4).grpc_request(
      spec_lib.PREDICT, client.predict_inputs(PREDICT_ROWS))
  assert printed == expected


def test_cli_reports_bad_rows_and_bad_request_files(setup, tmp_path):
  bad_row = _request_file(tmp_path, [_with(PREDICT_ROWS[0], hist_b=None)])
  proc = _run_client_cli(setup, bad_row, "--signature=predict", "--dry_run")
  assert proc.returncode == 2
  assert "error: row 0: missing field 'hist_b'" in proc.stderr
  not_json = tmp_path / "rows.txt"
  not_json.write_text("user_id=1")
  proc = _run_client_cli(setup, not_json, "--signature=predict")
  assert proc.returncode != 0
  assert "expected a JSON file with a 'rows' list" in proc.stderr
