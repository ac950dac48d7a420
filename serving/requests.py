"""Requests of an exported model's signatures, built from raw user data and checked locally.

Everything here is plain Python and NumPy: no network, and nothing is sent
(:mod:`dasl_tf.serving.client` sends what this module builds). A request is checked
against the export's :class:`~dasl_tf.serving.spec.ServingSpec` (the inputs of each
signature, the raw-id dtype, T) before it leaves the process. Every signature
takes a list of *rows* (one mapping per example):

* ``predict``: ``user_id``, ``item_id``, ``domain`` (0 = A, 1 = B, 2 = C, ...),
  ``hist_a``, ``hist_b`` (raw ids, most recent last, at most T each), plus the
  side features of the model (``user_num``, ``user_cat``, ``item_num``,
  ``item_cat``) if it has any. An export of K > 2 domains also takes
  ``hist_c``, ...; a row may leave those out (an empty history), so rows of
  two domains fit it too.
* ``recommend``: ``user_id``, ``domain``, the histories (as ``predict``), the
  user side features, and ``candidates`` (raw item ids of ``domain``).
* ``serving_default``, ``regress``, ``classify``: the rows of ``predict``, sent
  as ``tf.Example`` records of raw ids (histories as lists of at most T ids).
  The Regress and Classify APIs of TensorFlow Serving take the same rows as
  ``examples`` (:meth:`RequestBuilder.api_examples`).
* ``serving_indices``: the features of :mod:`dasl_tf.features` as vocabulary
  indices (what ``dasl-prepare`` writes); histories may be shorter than T.

``recommend`` candidate lists are padded to the export's
``candidates_per_request``, so that every request has the same shape and
TensorFlow Serving's batching can join any two of them.

Example::

  builder = RequestBuilder(ServingSpec.load("exports/dasl/1"))
  inputs = builder.predict_inputs([
      {"user_id": 42, "item_id": 7, "domain": 0, "hist_a": [3, 9], "hist_b": []}])
  body = builder.rest_body("predict", inputs)  # the JSON of a REST :predict call
"""
from __future__ import annotations

import base64
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from dasl_tf import features as F
from dasl_tf import errors
from dasl_tf.serving import spec as spec_lib

Inputs = Dict[str, np.ndarray]
FORMS = ("instances", "inputs")


class RequestError(errors.DaslError, ValueError):
  """A request row, field or value does not fit the export's serving spec; names the row."""

_NUMPY_DTYPES = {"int64": np.int64, "float32": np.float32, "string": object}


class RequestBuilder:
  """Builds and checks the inputs of one export's signatures.

  Args:
    spec: the export's serving spec (``ServingSpec.load(version_dir)``).
  """

  def __init__(self, spec: spec_lib.ServingSpec):
    self.spec = spec

  def inputs(self, signature: str, rows: Sequence[Mapping],
             pad_candidates_to: Optional[int] = None) -> Inputs:
    """The inputs of ``signature`` from rows (see the module docstring).

    Raises:
      ValueError: an unknown signature, or a row that the signature's
        ``*_inputs`` method rejects.
    """
    if signature == spec_lib.PREDICT:
      return self.predict_inputs(rows)
    if signature == spec_lib.RECOMMEND:
      return self.recommend_inputs(rows, pad_candidates_to)
    if signature == spec_lib.SERVING_INDICES:
      return self.index_example_inputs(rows)
    spec_lib.check_signature(signature)
    return self.example_inputs(rows, signature)

  def predict_inputs(self, rows: Sequence[Mapping]) -> Inputs:
    """Columnar inputs of the ``predict`` signature.

    Raises:
      ValueError: a row misses a field, has an unknown one, a wrong type or a
        history longer than T (the message names the row and the field).
    """
    return self._raw_inputs(rows, spec_lib.PREDICT)

  def recommend_inputs(self, rows: Sequence[Mapping],
                       pad_candidates_to: Optional[int] = None) -> Inputs:
    """Columnar inputs of the ``recommend`` signature.

    Candidate lists are right-padded with the padding id to
    ``pad_candidates_to``, by default the export's ``candidates_per_request``:
    requests that TensorFlow Serving batches together must have equal shapes.

    Raises:
      ValueError: as :meth:`predict_inputs`; also an empty candidate list or
        more candidates than the padded width.
    """
    return self._raw_inputs(rows, spec_lib.RECOMMEND, pad_candidates_to)

  def example_inputs(self, rows: Sequence[Mapping],
                     signature: str = spec_lib.SERVING_DEFAULT) -> Inputs:
    """Inputs of ``serving_default``, ``regress`` or ``classify``: raw-id ``tf.Example`` bytes.

    Args:
      rows: rows as :meth:`predict_inputs` takes them.
      signature: one of :data:`~dasl_tf.serving.spec.RAW_EXAMPLE_SIGNATURES`
        (its input is ``examples`` or ``inputs``).

    Raises:
      ValueError: as :meth:`predict_inputs`, or another signature.
    """
    if signature not in spec_lib.RAW_EXAMPLE_SIGNATURES:
      raise RequestError(f"{signature!r} does not take raw-id tf.Examples; those that do are "
                       f"{spec_lib.RAW_EXAMPLE_SIGNATURES}")
    serialized = [F.example_bytes(self._example_arrays(example))
                  for example in self._raw_examples(rows)]
    (name,) = self.spec.signature_inputs(signature)
    return {name: np.array(serialized, dtype=object)}

  def api_examples(self, rows: Sequence[Mapping]) -> List[dict]:
    """The ``examples`` of a REST ``:regress`` or ``:classify`` body, one JSON object per row.

    TensorFlow Serving turns each into a ``tf.Example``: integer lists into
    ``int64_list``, numbers with a fraction into ``float_list``, text into
    ``bytes_list``. Float side features are therefore written as floats, and
    an empty history is left out (a missing history is an empty one).

    Raises:
      ValueError: as :meth:`predict_inputs`.
    """
    examples = []
    for example in self._raw_examples(rows):
      examples.append({name: [float(v) for v in value] if value.dtype.kind == "f"
                       else _json_value(value)
                       for name, value in self._example_arrays(example).items()
                       if value.size or name not in self.spec.histories})
    return examples

  def index_example_inputs(self, rows: Sequence[Mapping]) -> Inputs:
    """Inputs of ``serving_indices``: rows of vocabulary indices as ``tf.Example`` bytes.

    Raises:
      ValueError: a row misses a feature, has a wrong length or a history
        longer than T.
    """
    _check_rows(rows)
    t = self.spec.history_length
    serialized = []
    for i, row in enumerate(rows):
      row = dict(row)
      for name in self.spec.histories:
        if name in row:
          history = list(row[name])
          _check_history_length(history, t, i, name)
          row[name] = F.pad_history(history, t)
      try:
        serialized.append(self.spec.feature_spec.encode(row))
      except ValueError as e:
        raise RequestError(f"row {i}: {e}") from e
    return {spec_lib.EXAMPLES: np.array(serialized, dtype=object)}

  def rest_body(self, signature: str, inputs: Inputs, form: str = "instances") -> dict:
    """The JSON body of a REST ``:predict`` call, in row (``instances``) or columnar form.

    Raises:
      ValueError: an unknown signature or form.
    """
    spec_lib.check_signature(signature)
    if form not in FORMS:
      raise RequestError(f"form must be one of {FORMS}, got {form!r}")
    if form == "inputs":
      return {"signature_name": signature,
              "inputs": {name: _json_value(value) for name, value in inputs.items()}}
    rows = len(next(iter(inputs.values())))
    instances = [{name: _json_value(value[i]) for name, value in inputs.items()}
                 for i in range(rows)]
    return {"signature_name": signature, "instances": instances}

  def _raw_inputs(self, rows: Sequence[Mapping], signature: str,
                  pad_candidates_to: Optional[int] = None) -> Inputs:
    """The inputs of a raw-id signature, checked field by field, row by row."""
    _check_rows(rows)
    specs = self.spec.signature_inputs(signature)
    fields = list(specs)
    columns: Dict[str, list] = {name: [] for name in fields}
    for i, row in enumerate(rows):
      unknown = sorted(set(row) - set(fields))
      if unknown:
        raise RequestError(f"row {i}: unknown field(s) {unknown}; the fields are {fields}")
      for name in fields:
        if name in row:
          value = row[name]
        elif name in self.spec.histories[len(F.DOMAINS):]:  # hist_c, ...: empty if left out
          value = []
        else:
          raise RequestError(f"row {i}: missing field {name!r}")
        columns[name].append(self._field(value, name, i))
    if spec_lib.CANDIDATES in columns:
      columns[spec_lib.CANDIDATES] = self._padded_candidates(
          columns[spec_lib.CANDIDATES], pad_candidates_to)
    return {name: np.array(values, dtype=_NUMPY_DTYPES[specs[name].dtype])
            for name, values in columns.items()}

  def _field(self, value, name: str, row: int):
    """One checked field of one row, histories left-padded to T."""
    where = f"row {row}, field {name!r}"
    if name in (F.USER_ID, F.ITEM_ID):
      return self._raw_id(value, where)
    if name == F.DOMAIN:
      num_domains = self.spec.num_domains
      if isinstance(value, bool) or value not in range(num_domains):
        raise RequestError(f"{where}: domain must be {spec_lib.domain_values(num_domains)}, "
                           f"got {value!r}")
      return int(value)
    if name in self.spec.histories + (spec_lib.CANDIDATES,):
      if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise RequestError(f"{where}: expected a list of raw ids, got {type(value).__name__}")
      ids = [self._raw_id(item, f"{where}[{k}]") for k, item in enumerate(value)]
      if name == spec_lib.CANDIDATES:
        if not ids:
          raise RequestError(f"{where}: no candidates")
        return ids
      _check_history_length(ids, self.spec.history_length, row, name)
      pad = self.spec.history_length - len(ids)
      return [self.spec.padding_id] * pad + ids
    width = self.spec.feature_spec.shapes(with_label=False)[name][1][0]
    values = np.asarray(value)
    if values.shape != (width,):
      raise RequestError(f"{where}: expected {width} values, got shape {values.shape}")
    if name in (F.USER_CAT, F.ITEM_CAT) and not np.issubdtype(values.dtype, np.integer):
      raise RequestError(f"{where}: expected integer indices, got {values.dtype}")
    if not np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_:
      raise RequestError(f"{where}: expected numbers, got {values.dtype}")
    return values.tolist()

  def _raw_id(self, value, where: str):
    if self.spec.id_dtype == "int64":
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise RequestError(f"{where}: raw ids of this export are non-negative integers, "
                         f"got {value!r}")
      return int(value)
    if not isinstance(value, str) or not value:
      raise RequestError(f"{where}: raw ids of this export are non-empty strings, got {value!r}")
    return value

  def _padded_candidates(self, lists: List[list], pad_to: Optional[int]) -> List[list]:
    width = self.spec.candidates_per_request if pad_to is None else pad_to
    longest = max(len(ids) for ids in lists)
    if longest > width:
      raise RequestError(
          f"a row has {longest} candidates, more than the {width} a request carries "
          "(pad_candidates_to, by default the export's candidates_per_request); send more "
          "requests, or pass a larger pad_candidates_to and batch only equal widths")
    return [ids + [self.spec.padding_id] * (width - len(ids)) for ids in lists]

  def _raw_examples(self, rows: Sequence[Mapping]) -> List[Dict[str, np.ndarray]]:
    """The checked ``predict`` fields of each row, one mapping per row."""
    columns = self.predict_inputs(rows)
    return [{name: value[i] for name, value in columns.items()} for i in range(len(rows))]

  def _example_arrays(self, example: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The ``tf.Example`` features of one checked row: histories without their padding."""
    arrays = {}
    for name, value in example.items():
      value = np.asarray(value).reshape(-1)
      if name in self.spec.histories:
        value = value[value != self.spec.padding_id]
      arrays[name] = value
    return arrays


def _check_rows(rows: Sequence[Mapping]) -> None:
  if isinstance(rows, Mapping) or not isinstance(rows, Sequence) or not rows:
    raise RequestError("expected a non-empty list of rows (one mapping per example)")
  for i, row in enumerate(rows):
    if not isinstance(row, Mapping):
      raise RequestError(f"row {i}: expected a mapping of field to value, got "
                       f"{type(row).__name__}")


def _check_history_length(history: Sequence, history_length: int, row: int, name: str) -> None:
  if len(history) > history_length:
    raise RequestError(
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
