"""Client of an exported model served by TensorFlow Serving (REST and gRPC).

:class:`DaslClient` builds and checks requests as :mod:`dasl_tf.serving.requests`
does (rows of raw user data, see there) and sends them with a timeout.

Example::

  client = DaslClient(ServingSpec.load("exports/dasl/1"), timeout_s=2.0)
  scores = client.rest_predict("predict", client.predict_inputs([
      {"user_id": 42, "item_id": 7, "domain": 0, "hist_a": [3, 9], "hist_b": []}]))

Command line (prints the outputs as JSON; ``--dry_run`` prints the request)::

  python -m dasl_tf.serving.client --spec exports/dasl/1 --signature recommend \\
      --request request.json --transport grpc
"""
from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from typing import Dict, List, Mapping, Optional

from absl import app
from absl import flags
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from dasl_tf.pipelines import cli
from dasl_tf.serving import requests as requests_lib
from dasl_tf.serving import spec as spec_lib
from dasl_tf.serving.spec import ServingSpec

FLAGS = flags.FLAGS
TRANSPORTS = ("rest", "grpc")


class ServingError(RuntimeError):
  """The server rejected a request, failed, or did not answer in time."""


class DaslClient(requests_lib.RequestBuilder):
  """Builds, checks and sends requests to one served model.

  Args:
    spec: the export's serving spec (``ServingSpec.load(version_dir)``).
    host: the TensorFlow Serving host.
    rest_port: its REST port.
    grpc_port: its gRPC port.
    timeout_s: seconds to wait for an answer.
    version: a model version to address, or None for the server's choice.
  """

  def __init__(self, spec: ServingSpec, host: str = "localhost", rest_port: int = 8501,
               grpc_port: int = 8500, timeout_s: float = 5.0, version: Optional[int] = None):
    if timeout_s <= 0:
      raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    super().__init__(spec)
    self.host = host
    self.rest_port = rest_port
    self.grpc_port = grpc_port
    self.timeout_s = timeout_s
    self.version = version
    self._channel = None

  def grpc_request(self, signature: str, inputs: requests_lib.Inputs):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest``."""
    spec_lib.check_signature(signature)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = self.spec.model_name
    request.model_spec.signature_name = signature
    if self.version is not None:
      request.model_spec.version.value = self.version
    for name, value in inputs.items():
      dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
      request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return request

  @property
  def rest_url(self) -> str:
    version = f"/versions/{self.version}" if self.version is not None else ""
    return f"http://{self.host}:{self.rest_port}/v1/models/{self.spec.model_name}{version}:predict"

  def rest_predict(self, signature: str, inputs: requests_lib.Inputs, form: str = "instances"
                  ) -> Dict[str, np.ndarray]:
    """Sends a REST request and returns the outputs as arrays.

    Raises:
      ServingError: the server answered with an error, or not within the timeout.
    """
    body = json.dumps(self.rest_body(signature, inputs, form)).encode("utf-8")
    request = urllib.request.Request(
        self.rest_url, data=body, headers={"Content-Type": "application/json"})
    try:
      with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
        answer = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
      raise ServingError(f"{self.rest_url}: HTTP {e.code}: {_error_message(e)}") from e
    except (socket.timeout, TimeoutError) as e:
      raise ServingError(f"{self.rest_url}: no answer within {self.timeout_s} s") from e
    except urllib.error.URLError as e:
      if isinstance(e.reason, (socket.timeout, TimeoutError)):
        raise ServingError(f"{self.rest_url}: no answer within {self.timeout_s} s") from e
      raise ServingError(f"{self.rest_url}: cannot connect: {e.reason}") from e
    return parse_rest_response(answer)

  def grpc_predict(self, signature: str, inputs: requests_lib.Inputs) -> Dict[str, np.ndarray]:
    """Sends a gRPC ``Predict`` call and returns the outputs as arrays.

    Raises:
      ServingError: the call failed or did not finish within the timeout.
    """
    target = f"{self.host}:{self.grpc_port}"
    if self._channel is None:
      self._channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    try:
      response = stub.Predict(self.grpc_request(signature, inputs), timeout=self.timeout_s)
    except grpc.RpcError as e:
      if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise ServingError(f"{target}: no answer within {self.timeout_s} s") from e
      raise ServingError(f"{target}: {e.code().name}: {e.details()}") from e
    return {name: _text_if_bytes(tf.make_ndarray(proto))
            for name, proto in response.outputs.items()}

  def close(self) -> None:
    """Closes the gRPC channel, if one was opened."""
    if self._channel is not None:
      self._channel.close()
      self._channel = None

  def __enter__(self) -> "DaslClient":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def parse_rest_response(answer: Mapping) -> Dict[str, np.ndarray]:
  """Outputs of a REST ``:predict`` answer (row ``predictions`` or columnar ``outputs``).

  Raises:
    ServingError: the answer is an error or has neither form.
  """
  if "error" in answer:
    raise ServingError(f"server error: {answer['error']}")
  if isinstance(answer.get("outputs"), Mapping):
    return {name: np.asarray(value) for name, value in answer["outputs"].items()}
  predictions = answer.get("predictions")
  if isinstance(predictions, list) and all(isinstance(p, Mapping) for p in predictions):
    names = predictions[0].keys() if predictions else ()
    return {name: np.asarray([p[name] for p in predictions]) for name in names}
  raise ServingError(f"unexpected answer: keys {sorted(answer)}; expected 'predictions' "
                     "(rows of named outputs) or 'outputs'")


def _text_if_bytes(array: np.ndarray) -> np.ndarray:
  """String outputs as ``str`` (as REST returns them), not ``bytes``."""
  if array.dtype != object:
    return array
  return np.array([v.decode("utf-8") for v in array.reshape(-1)],
                  dtype=object).reshape(array.shape)


def _error_message(error: urllib.error.HTTPError) -> str:
  text = error.read().decode("utf-8", "replace")
  try:
    return json.loads(text)["error"]
  except (ValueError, KeyError, TypeError):
    return text


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
    flags.DEFINE_float("timeout_s", 5.0, "Seconds to wait for an answer.")
    flags.DEFINE_integer("version", None,
                         "Model version to address (default: the server's choice).")
    flags.DEFINE_integer("pad_candidates_to", None,
                         "recommend: pad every candidate list to this many ids.")
    flags.DEFINE_bool("dry_run", False,
                      "Print the request (REST JSON or gRPC text proto), send nothing.")
  flags.mark_flags_as_required(["spec", "signature", "request"])


def _read_rows(path: str) -> List[Mapping]:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)["rows"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise app.UsageError(f"--request {path}: expected a JSON file with a 'rows' list ({e})")


def _main(argv: List[str]) -> int:
  """Sends the rows of ``--request`` and prints the outputs; 1 on a bad request or answer."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  rows = _read_rows(FLAGS.request)
  try:
    with DaslClient(ServingSpec.load(FLAGS.spec), FLAGS.host, FLAGS.rest_port,
                    FLAGS.grpc_port, FLAGS.timeout_s, FLAGS.version) as client:
      inputs = client.inputs(FLAGS.signature, rows, FLAGS.pad_candidates_to)
      if FLAGS.dry_run and FLAGS.transport == "rest":
        print(json.dumps(client.rest_body(FLAGS.signature, inputs, FLAGS.form), indent=1))
      elif FLAGS.dry_run:
        print(client.grpc_request(FLAGS.signature, inputs))
      elif FLAGS.transport == "rest":
        _print_outputs(client.rest_predict(FLAGS.signature, inputs, FLAGS.form))
      else:
        _print_outputs(client.grpc_predict(FLAGS.signature, inputs))
  except (FileNotFoundError, ValueError, ServingError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def _print_outputs(outputs: Dict[str, np.ndarray]) -> None:
  print(json.dumps({name: value.tolist() for name, value in outputs.items()}, indent=1))


def main() -> None:
  """``python -m dasl_tf.serving.client``: sends the rows of a JSON file and prints the outputs."""
  define_flags()
  app.run(_main)


if __name__ == "__main__":
  main()
