"""Client of an exported model served by TensorFlow Serving (REST and gRPC).

:class:`DaslClient` builds and checks requests as :mod:`dasl_tf.serving.requests`
does (rows of raw user data, see there) and sends them. ``timeout_s`` bounds
the whole call, connection to last byte, and an answer that is not HTTP, is
cut short, or lacks the signature's outputs is an error, never a result.

* Predict API (every signature): :meth:`DaslClient.rest_predict`,
  :meth:`DaslClient.grpc_predict`.
* Regress and Classify APIs (signatures ``regress``, ``classify``):
  :meth:`DaslClient.rest_api`, :meth:`DaslClient.grpc_api`, from rows.

Example::

  client = DaslClient(ServingSpec.load("exports/dasl/1"), timeout_s=2.0)
  scores = client.rest_predict("predict", client.predict_inputs([
      {"user_id": 42, "item_id": 7, "domain": 0, "hist_a": [3, 9], "hist_b": []}]))

Command line (prints the outputs as JSON; ``--dry_run`` prints the request)::

  python -m dasl_tf.serving.client --spec exports/dasl/1 --signature recommend \\
      --request request.json --transport grpc
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Dict, List, Mapping, Optional, Sequence

from absl import app
from absl import flags
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from dasl_tf import errors
from dasl_tf.pipelines import cli
from dasl_tf.serving import requests as requests_lib
from dasl_tf.serving import spec as spec_lib
from dasl_tf.serving.spec import ServingSpec

FLAGS = flags.FLAGS
TRANSPORTS = ("rest", "grpc")
# The TensorFlow Serving API of the signatures that are not called through Predict.
API_OF_SIGNATURE = {spec_lib.REGRESS: "regress", spec_lib.CLASSIFY: "classify"}


class ServingError(errors.DaslError, RuntimeError):
  """The server rejected a request, failed, answered malformed, or not in time."""


class DaslClient(requests_lib.RequestBuilder):
  """Builds, checks and sends requests to one served model.

  Args:
    spec: the export's serving spec (``ServingSpec.load(version_dir)``).
    host: the TensorFlow Serving host.
    rest_port: its REST port.
    grpc_port: its gRPC port.
    timeout_s: seconds one call may take in all (connect, send, answer).
    version: a model version to address, or None for the server's choice.
  """

  def __init__(self, spec: ServingSpec, host: str = "localhost", rest_port: int = 8501,
               grpc_port: int = 8500, timeout_s: float = 5.0, version: Optional[int] = None):
    if not timeout_s > 0:
      raise requests_lib.RequestError(f"timeout_s must be positive, got {timeout_s}")
    super().__init__(spec)
    self.host = host
    self.rest_port = rest_port
    self.grpc_port = grpc_port
    self.timeout_s = timeout_s
    self.version = version
    self._channel = None

  # --- Predict API -------------------------------------------------------------------

  def grpc_request(self, signature: str, inputs: requests_lib.Inputs):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest``."""
    spec_lib.check_signature(signature)
    request = predict_pb2.PredictRequest()
    self._set_model_spec(request.model_spec, signature)
    for name, value in inputs.items():
      dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
      request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return request

  def rest_url(self, api: str = "predict") -> str:
    """The REST address of ``api`` ("predict", "regress" or "classify") of the model."""
    return f"http://{self.host}:{self.rest_port}{self._rest_path(api)}"

  def _rest_path(self, api: str) -> str:
    version = f"/versions/{self.version}" if self.version is not None else ""
    return f"/v1/models/{self.spec.model_name}{version}:{api}"

  def rest_predict(self, signature: str, inputs: requests_lib.Inputs, form: str = "instances"
                  ) -> Dict[str, np.ndarray]:
    """Sends a REST Predict request and returns the outputs as arrays.

    Raises:
      ServingError: an error answer, no complete answer within the timeout, an
        answer that is not HTTP or JSON, or one without the signature's outputs.
    """
    answer = self._post("predict", self.rest_body(signature, inputs, form))
    return checked_outputs(parse_rest_response(answer, signature), signature, _rows(inputs),
                           self.spec)

  def grpc_predict(self, signature: str, inputs: requests_lib.Inputs) -> Dict[str, np.ndarray]:
    """Sends a gRPC ``Predict`` call and returns the outputs as arrays.

    Raises:
      ServingError: the call failed, did not finish within the timeout, or
        its answer lacks the signature's outputs.
    """
    response = self._grpc_call("Predict", self.grpc_request(signature, inputs))
    outputs = {name: _text_if_bytes(tf.make_ndarray(proto))
               for name, proto in response.outputs.items()}
    return checked_outputs(outputs, signature, _rows(inputs), self.spec)

  # --- Regress and Classify APIs -------------------------------------------------------

  def api_request(self, signature: str, rows: Sequence[Mapping]):
    """The ``RegressionRequest`` or ``ClassificationRequest`` of rows (``predict``'s fields).

    Raises:
      ValueError: a signature other than ``regress``/``classify``, or a bad row.
    """
    request = {spec_lib.REGRESS: regression_pb2.RegressionRequest,
               spec_lib.CLASSIFY: classification_pb2.ClassificationRequest}
    if signature not in request:
      raise requests_lib.RequestError(f"{signature!r} is not served by the Regress or Classify API")
    proto = request[signature]()
    self._set_model_spec(proto.model_spec, signature)
    for serialized in self.example_inputs(rows, signature)[spec_lib.API_INPUTS]:
      proto.input.example_list.examples.add().ParseFromString(serialized)
    return proto

  def rest_api(self, signature: str, rows: Sequence[Mapping]) -> Dict[str, np.ndarray]:
    """Calls REST ``:regress`` or ``:classify`` with rows; outputs as the signature names them.

    Raises:
      ValueError: another signature, or a bad row.
      ServingError: as :meth:`rest_predict`.
    """
    if signature not in API_OF_SIGNATURE:
      raise requests_lib.RequestError(f"{signature!r} is not served by the Regress or Classify API")
    body = {"signature_name": signature, "examples": self.api_examples(rows)}
    answer = self._post(API_OF_SIGNATURE[signature], body)
    results = answer.get("results")
    try:
      if signature == spec_lib.REGRESS:
        outputs = {spec_lib.REGRESS_OUTPUTS: np.asarray(results, np.float32)}
      else:
        outputs = {
            spec_lib.CLASSIFY_CLASSES: np.array([[c[0] for c in r] for r in results], object),
            spec_lib.CLASSIFY_SCORES: np.array([[c[1] for c in r] for r in results],
                                               np.float32)}
    except (TypeError, ValueError, IndexError) as e:
      raise ServingError(f"{self.rest_url(API_OF_SIGNATURE[signature])}: answer without "
                         f"well-formed 'results' (keys {sorted(answer)})") from e
    return checked_outputs(outputs, signature, len(rows), self.spec)

  def grpc_api(self, signature: str, rows: Sequence[Mapping]) -> Dict[str, np.ndarray]:
    """Calls the gRPC ``Regress`` or ``Classify`` API with rows.

    Raises:
      ValueError: another signature, or a bad row.
      ServingError: as :meth:`grpc_predict`.
    """
    request = self.api_request(signature, rows)
    if signature == spec_lib.REGRESS:
      result = self._grpc_call("Regress", request).result
      outputs = {spec_lib.REGRESS_OUTPUTS: np.array(
          [r.value for r in result.regressions], np.float32)}
    else:
      result = self._grpc_call("Classify", request).result
      outputs = {
          spec_lib.CLASSIFY_CLASSES: np.array(
              [[c.label for c in r.classes] for r in result.classifications], object),
          spec_lib.CLASSIFY_SCORES: np.array(
              [[c.score for c in r.classes] for r in result.classifications], np.float32)}
    return checked_outputs(outputs, signature, len(rows), self.spec)

  # --- transport -------------------------------------------------------------------------

  def _set_model_spec(self, model_spec, signature: str) -> None:
    model_spec.name = self.spec.model_name
    model_spec.signature_name = signature
    if self.version is not None:
      model_spec.version.value = self.version

  def _post(self, api: str, body: Mapping) -> dict:
    """POSTs ``body`` as JSON to ``api`` and returns the JSON answer of a 200.

    A watchdog shuts the socket down when ``timeout_s`` has passed, so a
    server that answers slowly, byte by byte, cannot hold the call longer.
    """
    url = self.rest_url(api)
    deadline = time.monotonic() + self.timeout_s
    connection = http.client.HTTPConnection(self.host, self.rest_port, timeout=self.timeout_s)
    watchdog = threading.Timer(self.timeout_s, _shut_down, (connection,))
    watchdog.start()
    try:
      connection.request("POST", self._rest_path(api),
                         body=json.dumps(body).encode("utf-8"),
                         headers={"Content-Type": "application/json"})
      response = connection.getresponse()
      status, data = response.status, response.read()
    except (OSError, http.client.HTTPException) as e:
      if time.monotonic() >= deadline or isinstance(e, (socket.timeout, TimeoutError)):
        raise ServingError(f"{url}: no complete answer within {self.timeout_s} s") from e
      if isinstance(e, ConnectionRefusedError) or (
          isinstance(e, OSError) and connection.sock is None):
        raise ServingError(f"{url}: cannot connect: {e}") from e
      if isinstance(e, http.client.IncompleteRead):
        raise ServingError(f"{url}: the answer was cut short ({len(e.partial)} bytes of "
                           f"{len(e.partial) + (e.expected or 0)})") from e
      raise ServingError(f"{url}: not a valid HTTP answer ({type(e).__name__}: {e})") from e
    finally:
      watchdog.cancel()
      connection.close()
    text = data.decode("utf-8", "replace")
    try:
      answer = json.loads(text)
    except ValueError:
      answer = None
    if status != 200:
      message = answer.get("error", text) if isinstance(answer, dict) else text
      raise ServingError(f"{url}: HTTP {status}: {message}")
    if not isinstance(answer, dict):
      raise ServingError(f"{url}: the answer is not a JSON object: {text[:200]!r}")
    return answer

  def _grpc_call(self, method: str, request):
    target = f"{self.host}:{self.grpc_port}"
    if self._channel is None:
      self._channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    try:
      return getattr(stub, method)(request, timeout=self.timeout_s)
    except grpc.RpcError as e:
      if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise ServingError(f"{target}: no answer within {self.timeout_s} s") from e
      raise ServingError(f"{target}: {e.code().name}: {e.details()}") from e

  def close(self) -> None:
    """Closes the gRPC channel, if one was opened."""
    if self._channel is not None:
      self._channel.close()
      self._channel = None

  def __enter__(self) -> "DaslClient":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _shut_down(connection: http.client.HTTPConnection) -> None:
  """Ends a connection's pending reads and writes (the timeout watchdog)."""
  sock = connection.sock
  if sock is not None:
    try:
      sock.shutdown(socket.SHUT_RDWR)
    except OSError:
      pass


def _rows(inputs: requests_lib.Inputs) -> int:
  return len(next(iter(inputs.values())))


def parse_rest_response(answer: Mapping, signature: str) -> Dict[str, np.ndarray]:
  """Outputs of a REST ``:predict`` answer (row ``predictions`` or columnar ``outputs``).

  TensorFlow Serving leaves out the output names when a signature has one
  output (``regress``, of any export); they are restored from ``signature``.

  Raises:
    ServingError: the answer is an error or has neither form.
  """
  if "error" in answer:
    raise ServingError(f"server error: {answer['error']}")
  names = spec_lib.SIGNATURE_OUTPUTS[signature]
  outputs = answer.get("outputs")
  if isinstance(outputs, Mapping):
    return {name: np.asarray(value) for name, value in outputs.items()}
  if isinstance(outputs, list) and len(names) == 1:
    return {names[0]: np.asarray(outputs)}
  predictions = answer.get("predictions")
  if isinstance(predictions, list) and all(isinstance(p, Mapping) for p in predictions):
    keys = predictions[0].keys() if predictions else ()
    return {name: np.asarray([p.get(name) for p in predictions]) for name in keys}
  if isinstance(predictions, list) and len(names) == 1:
    return {names[0]: np.asarray(predictions)}
  raise ServingError(f"unexpected answer: keys {sorted(answer)}; expected 'predictions' "
                     "(rows of named outputs) or 'outputs'")


def checked_outputs(outputs: Dict[str, np.ndarray], signature: str, rows: int,
                    spec: ServingSpec) -> Dict[str, np.ndarray]:
  """``outputs``, once they hold every output of ``signature`` with one row per request row.

  Args:
    outputs: the answer's outputs, by name.
    signature: the signature called.
    rows: the rows of the request.
    spec: the export's serving spec (its K names the CTR outputs).

  Raises:
    ServingError: an output is missing or has another number of rows.
  """
  missing = [name for name in spec.signature_outputs(signature) if name not in outputs]
  if missing:
    raise ServingError(f"the answer lacks output(s) {missing} of signature {signature!r} "
                       f"(it has {sorted(outputs)})")
  for name, value in outputs.items():
    if value.ndim == 0 or len(value) != rows:
      raise ServingError(f"output {name!r} has {0 if value.ndim == 0 else len(value)} rows "
                         f"for a request of {rows}")
  return outputs


def _text_if_bytes(array: np.ndarray) -> np.ndarray:
  """String outputs as ``str`` (as REST returns them), not ``bytes``."""
  if array.dtype != object:
    return array
  return np.array([v.decode("utf-8") for v in array.reshape(-1)],
                  dtype=object).reshape(array.shape)


def define_flags() -> None:
  """Defines the flags of ``python -m dasl_tf.serving.client``."""
  with cli.key_flags():
    flags.DEFINE_string("spec", None,
                        "Export version directory, or its assets.extra/serving_spec.json.")
    flags.DEFINE_enum("signature", None, list(spec_lib.SIGNATURES), "Signature to call.")
    flags.DEFINE_string("request", None,
                        'JSON file: {"rows": [...]} (rows as dasl_tf.serving.requests describes).')
    flags.DEFINE_enum("transport", "rest", list(TRANSPORTS), "How to send the request.")
    flags.DEFINE_enum("form", "instances", list(requests_lib.FORMS), "REST body form.")
    flags.DEFINE_string("host", "localhost", "TensorFlow Serving host.")
    flags.DEFINE_integer("rest_port", 8501, "TensorFlow Serving REST port.")
    flags.DEFINE_integer("grpc_port", 8500, "TensorFlow Serving gRPC port.")
    flags.DEFINE_float("timeout_s", 5.0,
                       "Seconds the whole call may take (connect, send, complete answer).")
    flags.DEFINE_integer("version", None,
                         "Model version to address (default: the server's choice).")
    flags.DEFINE_integer("pad_candidates_to", None,
                         "recommend: pad every candidate list to this many ids (default: "
                         "the export's candidates_per_request).")
    flags.DEFINE_bool("dry_run", False,
                      "Print the request (REST JSON or gRPC text proto), send nothing.")
  flags.mark_flags_as_required(["spec", "signature", "request"])


def _read_rows(path: str) -> List[Mapping]:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)["rows"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise app.UsageError(f"--request {path}: expected a JSON file with a 'rows' list ({e})")


def _main(argv: List[str]) -> None:
  """Sends the rows of ``--request`` and prints the outputs (errors: ``cli.run_command``)."""
  cli.no_arguments(argv)
  rows = _read_rows(FLAGS.request)
  with DaslClient(ServingSpec.load(FLAGS.spec), FLAGS.host, FLAGS.rest_port,
                  FLAGS.grpc_port, FLAGS.timeout_s, FLAGS.version) as client:
    if FLAGS.signature in API_OF_SIGNATURE:
      _call_api(client, FLAGS.signature, rows)
    else:
      _call_predict(client, FLAGS.signature, rows)


def _call_predict(client: DaslClient, signature: str, rows: List[Mapping]) -> None:
  """Sends rows through the Predict API (or prints the request with ``--dry_run``)."""
  inputs = client.inputs(signature, rows, FLAGS.pad_candidates_to)
  if FLAGS.dry_run and FLAGS.transport == "rest":
    print(json.dumps(client.rest_body(signature, inputs, FLAGS.form), indent=1))
  elif FLAGS.dry_run:
    print(client.grpc_request(signature, inputs))
  elif FLAGS.transport == "rest":
    _print_outputs(client.rest_predict(signature, inputs, FLAGS.form))
  else:
    _print_outputs(client.grpc_predict(signature, inputs))


def _call_api(client: DaslClient, signature: str, rows: List[Mapping]) -> None:
  """Sends rows through the Regress or Classify API (or prints the request)."""
  if FLAGS.dry_run and FLAGS.transport == "rest":
    print(json.dumps({"signature_name": signature, "examples": client.api_examples(rows)},
                     indent=1))
  elif FLAGS.dry_run:
    print(client.api_request(signature, rows))
  elif FLAGS.transport == "rest":
    _print_outputs(client.rest_api(signature, rows))
  else:
    _print_outputs(client.grpc_api(signature, rows))


def _print_outputs(outputs: Dict[str, np.ndarray]) -> None:
  print(json.dumps({name: value.tolist() for name, value in outputs.items()}, indent=1))


def main() -> None:
  """``python -m dasl_tf.serving.client``: sends the rows of a JSON file and prints the outputs."""
  define_flags()
  cli.run_command("dasl_tf.serving.client", _main)


if __name__ == "__main__":
  main()
