"""Client of an exported model served by TensorFlow Serving (REST and gRPC).

Builds requests from raw user data, checks them against the export's
:class:`~serving.spec.ServingSpec` before anything is sent, and sends them
with a timeout. Every signature takes a list of *rows* (one mapping per
example):

* ``predict``: ``user_id``, ``item_id``, ``domain`` (0 = A, 1 = B), ``hist_a``,
  ``hist_b`` (raw ids, most recent last, at most T each), plus the side
  features of the model (``user_num``, ``user_cat``, ``item_num``, ``item_cat``)
  if it has any.
* ``recommend``: ``user_id``, ``domain``, ``hist_a``, ``hist_b``, the user side
  features, and ``candidates`` (raw item ids of ``domain``).
* ``serving_default``: the features of :mod:`dasl_tf.features` as vocabulary
  indices (what ``dasl-prepare`` writes); histories may be shorter than T.

Example::

  client = DaslClient(ServingSpec.load("exports/dasl/1"), timeout_s=2.0)
  scores = client.rest_predict("predict", client.predict_inputs([
      {"user_id": 42, "item_id": 7, "domain": 0, "hist_a": [3, 9], "hist_b": []}]))

Command line (prints the outputs as JSON; ``--dry_run`` prints the request)::

  python -m serving.client --spec exports/dasl/1 --signature recommend \
      --request request.json --transport grpc
"""
from __future__ import annotations

import argparse
import base64
import json
import socket
import sys
import urllib.error
import urllib.request
from typing import Dict, List, Mapping, Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from dasl_tf import features as F
from serving import spec as spec_lib
from serving.spec import ServingSpec

Inputs = Dict[str, np.ndarray]
FORMS = ("instances", "inputs")


class ServingError(RuntimeError):
  """The server rejected a request, failed, or did not answer in time."""


class DaslClient:
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
    self.spec = spec
    self.host = host
    self.rest_port = rest_port
    self.grpc_port = grpc_port
    self.timeout_s = timeout_s
    self.version = version
    self._channel = None

  # --- inputs from raw rows ------------------------------------------------

  def predict_inputs(self, rows: Sequence[Mapping]) -> Inputs:
    """Columnar inputs of the ``predict`` signature.

    Raises:
      ValueError: a row misses a field, has an unknown one, a wrong type or a
        history longer than T (the message names the row and the field).
    """
    fields = (F.USER_ID, F.ITEM_ID, F.DOMAIN, F.HIST_A, F.HIST_B) + self._side_features(
        (F.USER_NUM, F.USER_CAT, F.ITEM_NUM, F.ITEM_CAT))
    return self._raw_inputs(rows, fields)

  def recommend_inputs(self, rows: Sequence[Mapping],
                       pad_candidates_to: Optional[int] = None) -> Inputs:
    """Columnar inputs of the ``recommend`` signature.

    Candidate lists are right-padded with the padding id to the longest list,
    or to ``pad_candidates_to`` (requests that TensorFlow Serving batches
    together must have equal shapes).

    Raises:
      ValueError: as :meth:`predict_inputs`; also an empty candidate list or
        more candidates than ``pad_candidates_to``.
    """
    fields = (F.USER_ID, F.DOMAIN, F.HIST_A, F.HIST_B, spec_lib.CANDIDATES) + (
        self._side_features((F.USER_NUM, F.USER_CAT)))
    return self._raw_inputs(rows, fields, pad_candidates_to)

  def example_inputs(self, rows: Sequence[Mapping]) -> Inputs:
    """Inputs of ``serving_default``: rows of vocabulary indices as ``tf.Example`` bytes.

    Raises:
      ValueError: a row misses a feature, has a wrong length or a history
        longer than T.
    """
    _check_rows(rows)
    t = self.spec.history_length
    serialized = []
    for i, row in enumerate(rows):
      row = dict(row)
      for name in (F.HIST_A, F.HIST_B):
        if name in row:
          history = list(row[name])
          _check_history_length(history, t, i, name)
          row[name] = F.pad_history(history, t)
      try:
        serialized.append(self.spec.feature_spec.encode(row))
      except ValueError as e:
        raise ValueError(f"row {i}: {e}") from e
    return {spec_lib.EXAMPLES: np.array(serialized, dtype=object)}

  def _side_features(self, names: Sequence[str]) -> tuple:
    shapes = self.spec.feature_spec.shapes(with_label=False)
    return tuple(name for name in names if name in shapes)

  def _raw_inputs(self, rows: Sequence[Mapping], fields: Sequence[str],
                  pad_candidates_to: Optional[int] = None) -> Inputs:
    _check_rows(rows)
    columns: Dict[str, list] = {name: [] for name in fields}
    for i, row in enumerate(rows):
      unknown = sorted(set(row) - set(fields))
      if unknown:
        raise ValueError(f"row {i}: unknown field(s) {unknown}; the fields are {list(fields)}")
      for name in fields:
        if name not in row:
          raise ValueError(f"row {i}: missing field {name!r}")
        columns[name].append(self._field(row[name], name, i))
    inputs = {}
    for name, values in columns.items():
      if name == spec_lib.CANDIDATES:
        inputs[name] = self._candidates(values, pad_candidates_to)
      elif name in (F.USER_ID, F.ITEM_ID, F.HIST_A, F.HIST_B):
        inputs[name] = np.array(values, dtype=self._id_numpy_dtype)
      else:
        inputs[name] = np.array(values, dtype=self._value_dtype(name))
    return inputs

  def _field(self, value, name: str, row: int):
    """One checked field of one row, histories left-padded to T."""
    where = f"row {row}, field {name!r}"
    if name in (F.USER_ID, F.ITEM_ID):
      return self._raw_id(value, where)
    if name == F.DOMAIN:
      if isinstance(value, bool) or value not in (F.DOMAIN_A, F.DOMAIN_B):
        raise ValueError(f"{where}: domain must be {F.DOMAIN_A} (A) or {F.DOMAIN_B} (B), "
                         f"got {value!r}")
      return int(value)
    if name in (F.HIST_A, F.HIST_B, spec_lib.CANDIDATES):
      if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{where}: expected a list of raw ids, got {type(value).__name__}")
      ids = [self._raw_id(item, f"{where}[{k}]") for k, item in enumerate(value)]
      if name == spec_lib.CANDIDATES:
        if not ids:
          raise ValueError(f"{where}: no candidates")
        return ids
      _check_history_length(ids, self.spec.history_length, row, name)
      pad = self.spec.history_length - len(ids)
      return [self.spec.padding_id] * pad + ids
    width = self.spec.feature_spec.shapes(with_label=False)[name][1][0]
    values = np.asarray(value)
    if values.shape != (width,):
      raise ValueError(f"{where}: expected {width} values, got shape {values.shape}")
    if name in (F.USER_CAT, F.ITEM_CAT) and not np.issubdtype(values.dtype, np.integer):
      raise ValueError(f"{where}: expected integer indices, got {values.dtype}")
    if not np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_:
      raise ValueError(f"{where}: expected numbers, got {values.dtype}")
    return values.tolist()

  def _raw_id(self, value, where: str):
    if self.spec.id_dtype == "int64":
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{where}: raw ids of this export are non-negative integers, "
                         f"got {value!r}")
      return int(value)
    if not isinstance(value, str) or not value:
      raise ValueError(f"{where}: raw ids of this export are non-empty strings, got {value!r}")
    return value

  def _candidates(self, lists: List[list], pad_to: Optional[int]) -> np.ndarray:
    longest = max(len(ids) for ids in lists)
    width = longest if pad_to is None else pad_to
    if longest > width:
      raise ValueError(f"a row has {longest} candidates, more than pad_candidates_to={pad_to}")
    padded = [ids + [self.spec.padding_id] * (width - len(ids)) for ids in lists]
    return np.array(padded, dtype=self._id_numpy_dtype)

  @property
  def _id_numpy_dtype(self):
    return np.int64 if self.spec.id_dtype == "int64" else object

  def _value_dtype(self, name: str):
    if name in (F.USER_NUM, F.ITEM_NUM):
      return np.float32
    return np.int64

  # --- request encodings ---------------------------------------------------

  def rest_body(self, signature: str, inputs: Inputs, form: str = "instances") -> dict:
    """The JSON body of a REST ``:predict`` call, in row (``instances``) or columnar form."""
    _check_signature(signature)
    if form not in FORMS:
      raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if form == "inputs":
      return {"signature_name": signature,
              "inputs": {name: _json_value(value) for name, value in inputs.items()}}
    rows = len(next(iter(inputs.values())))
    instances = [{name: _json_value(value[i]) for name, value in inputs.items()}
                 for i in range(rows)]
    return {"signature_name": signature, "instances": instances}

  def grpc_request(self, signature: str, inputs: Inputs):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest``."""
    _check_signature(signature)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = self.spec.model_name
    request.model_spec.signature_name = signature
    if self.version is not None:
      request.model_spec.version.value = self.version
    for name, value in inputs.items():
      dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
      request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return request

  # --- transport -------------------------------------------------------------

  @property
  def rest_url(self) -> str:
    version = f"/versions/{self.version}" if self.version is not None else ""
    return f"http://{self.host}:{self.rest_port}/v1/models/{self.spec.model_name}{version}:predict"

  def rest_predict(self, signature: str, inputs: Inputs, form: str = "instances"
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

  def grpc_predict(self, signature: str, inputs: Inputs) -> Dict[str, np.ndarray]:
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


def _check_signature(signature: str) -> None:
  if signature not in spec_lib.SIGNATURES:
    raise ValueError(f"unknown signature {signature!r}; choose one of {spec_lib.SIGNATURES}")


def _check_rows(rows: Sequence[Mapping]) -> None:
  if isinstance(rows, Mapping) or not isinstance(rows, Sequence) or not rows:
    raise ValueError("expected a non-empty list of rows (one mapping per example)")
  for i, row in enumerate(rows):
    if not isinstance(row, Mapping):
      raise ValueError(f"row {i}: expected a mapping of field to value, got "
                       f"{type(row).__name__}")


def _check_history_length(history: Sequence, history_length: int, row: int, name: str) -> None:
  if len(history) > history_length:
    raise ValueError(
        f"row {row}, field {name!r}: {len(history)} ids, more than the model's "
        f"history_length={history_length}; send the most recent {history_length} "
        f"(most recent last)")


def _json_value(value):
  """A JSON-ready value; bytes become TensorFlow Serving's ``{"b64": ...}`` objects."""
  if isinstance(value, np.ndarray):
    return [_json_value(v) for v in value] if value.ndim else _json_value(value.item())
  if isinstance(value, bytes):
    return {"b64": base64.b64encode(value).decode("ascii")}
  if isinstance(value, np.generic):
    return value.item()
  return value


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


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``python -m serving.client``: sends the rows of a JSON file and prints the outputs."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--spec", required=True,
                      help="export version directory, or its assets.extra/serving_spec.json")
  parser.add_argument("--signature", required=True, choices=spec_lib.SIGNATURES)
  parser.add_argument("--request", required=True,
                      help='JSON file: {"rows": [...]} (see the module docstring)')
  parser.add_argument("--transport", default="rest", choices=("rest", "grpc"))
  parser.add_argument("--form", default="instances", choices=FORMS, help="REST body form")
  parser.add_argument("--host", default="localhost")
  parser.add_argument("--rest_port", type=int, default=8501)
  parser.add_argument("--grpc_port", type=int, default=8500)
  parser.add_argument("--timeout_s", type=float, default=5.0)
  parser.add_argument("--version", type=int, default=None)
  parser.add_argument("--pad_candidates_to", type=int, default=None)
  parser.add_argument("--dry_run", action="store_true",
                      help="print the request (REST JSON or gRPC text proto), send nothing")
  args = parser.parse_args(argv)
  try:
    with open(args.request, encoding="utf-8") as f:
      rows = json.load(f)["rows"]
  except (OSError, ValueError, KeyError) as e:
    parser.error(f"--request {args.request}: expected a JSON file with a 'rows' list ({e})")
  client = DaslClient(ServingSpec.load(args.spec), args.host, args.rest_port, args.grpc_port,
                      args.timeout_s, args.version)
  try:
    if args.signature == spec_lib.PREDICT:
      inputs = client.predict_inputs(rows)
    elif args.signature == spec_lib.RECOMMEND:
      inputs = client.recommend_inputs(rows, args.pad_candidates_to)
    else:
      inputs = client.example_inputs(rows)
    if args.dry_run:
      if args.transport == "rest":
        print(json.dumps(client.rest_body(args.signature, inputs, args.form), indent=1))
      else:
        print(client.grpc_request(args.signature, inputs))
      return 0
    if args.transport == "rest":
      outputs = client.rest_predict(args.signature, inputs, args.form)
    else:
      outputs = client.grpc_predict(args.signature, inputs)
  except (ValueError, ServingError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  finally:
    client.close()
  print(json.dumps({name: value.tolist() for name, value in outputs.items()}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
