"""What a client must know about an export: signatures and their inputs, raw-id dtype, padding, T.

Each export writes its :class:`ServingSpec` to
``<version>/assets.extra/serving_spec.json``; :mod:`dasl_tf.serving.requests` reads it to
build requests that the export's signatures accept. TensorFlow Serving ignores
the file.

The inputs of each signature (names, dtypes, shapes) are defined here once, by
:meth:`ServingSpec.signature_inputs`: :mod:`dasl_tf.serving.signatures` builds the
signatures from them and :mod:`dasl_tf.serving.requests` the requests. An export
of K domains (``feature_spec.num_domains``, left out of the file when 2) has
one history input per domain (``hist_a``, ``hist_b``, ``hist_c``, ...) and the
CTR outputs ``ctr_a``, ``ctr_b``, ``ctr_c``, ..., ``ctr``.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

from dasl_tf import features as F
from dasl_tf import errors
from dasl_tf import json_io

SERVING_DEFAULT = "serving_default"
SERVING_INDICES = "serving_indices"
PREDICT = "predict"
RECOMMEND = "recommend"
REGRESS = "regress"
CLASSIFY = "classify"
SIGNATURES = (SERVING_DEFAULT, SERVING_INDICES, PREDICT, RECOMMEND, REGRESS, CLASSIFY)
# Signatures whose input is serialized tf.Examples of raw ids (the features of
# ``predict``): TensorFlow Serving's Predict API calls ``serving_default``, its
# Regress and Classify APIs call ``regress`` and ``classify``.
RAW_EXAMPLE_SIGNATURES = (SERVING_DEFAULT, REGRESS, CLASSIFY)
# The method names TensorFlow Serving checks before its Regress and Classify
# APIs run a signature (every other signature is a Predict one).
METHOD_NAMES = {REGRESS: "tensorflow/serving/regress",
                CLASSIFY: "tensorflow/serving/classify"}
PREDICT_METHOD_NAME = "tensorflow/serving/predict"

EXAMPLES = "examples"
# TensorFlow Serving's fixed input and output keys of Regress and Classify.
API_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
CLASSES = ("0", "1")
CANDIDATES = "candidates"
ITEM_IDS = "item_ids"
SCORES = "scores"

ID_DTYPES = ("int64", "string")
PADDING_IDS = {"int64": -1, "string": ""}
DEFAULT_CANDIDATES_PER_REQUEST = 100

SIDE_FEATURES = (F.USER_NUM, F.USER_CAT, F.ITEM_NUM, F.ITEM_CAT)
USER_SIDE_FEATURES = (F.USER_NUM, F.USER_CAT)
# Inputs with one value per row ([batch]); the others are [batch, n].
SCALAR_INPUTS = (EXAMPLES, API_INPUTS, F.USER_ID, F.ITEM_ID, F.DOMAIN)


def histories(num_domains: int) -> Tuple[str, ...]:
  """The history inputs of an export of ``num_domains`` domains: ``hist_a``, ``hist_b``, ..."""
  return F.history_keys(num_domains)


def ctr_outputs(num_domains: int) -> Tuple[str, ...]:
  """The outputs of the CTR signatures: ``ctr_a``, ``ctr_b``, ... of every domain, then ``ctr``."""
  return tuple(f"ctr_{F.domain_suffix(d)}" for d in range(num_domains)) + ("ctr",)


def domain_values(num_domains: int) -> str:
  """The valid ``domain`` values, for messages: "0 (A) or 1 (B)", "0 (A), 1 (B) or 2 (C)"."""
  names = [f"{d} ({F.domain_suffix(d).upper()})" for d in range(num_domains)]
  return f"{', '.join(names[:-1])} or {names[-1]}"


def signature_input_names(num_domains: int) -> Dict[str, Tuple[str, ...]]:
  """The inputs of each signature, in the order requests list them.

  Side features are inputs only of a model that has them.
  """
  raw_features = (F.USER_ID, F.ITEM_ID, F.DOMAIN) + histories(num_domains) + SIDE_FEATURES
  return {
      SERVING_DEFAULT: (EXAMPLES,),
      SERVING_INDICES: (EXAMPLES,),
      PREDICT: raw_features,
      RECOMMEND: ((F.USER_ID, F.DOMAIN) + histories(num_domains) + (CANDIDATES,)
                  + USER_SIDE_FEATURES),
      REGRESS: (API_INPUTS,),
      CLASSIFY: (API_INPUTS,),
  }


def signature_output_names(num_domains: int) -> Dict[str, Tuple[str, ...]]:
  """The outputs of each signature."""
  ctr = ctr_outputs(num_domains)
  return {
      SERVING_DEFAULT: ctr,
      SERVING_INDICES: ctr,
      PREDICT: ctr,
      RECOMMEND: (ITEM_IDS, SCORES),
      REGRESS: (REGRESS_OUTPUTS,),
      CLASSIFY: (CLASSIFY_SCORES, CLASSIFY_CLASSES),
  }


# Those of a two-domain export (:meth:`ServingSpec.signature_inputs` and
# :meth:`ServingSpec.signature_outputs` give those of any export).
SIGNATURE_INPUTS = signature_input_names(len(F.DOMAINS))
SIGNATURE_OUTPUTS = signature_output_names(len(F.DOMAINS))
CTR_OUTPUTS = ctr_outputs(len(F.DOMAINS))
RAW_FEATURES = SIGNATURE_INPUTS[PREDICT]

ASSETS_EXTRA = "assets.extra"
SPEC_FILE = "serving_spec.json"


class TensorInput(NamedTuple):
  """One input of a signature.

  Attributes:
    dtype: "int64", "float32" or "string".
    shape: ``(None,)`` or ``(None, None)``: batch first; no size is fixed.
  """
  dtype: str
  shape: Tuple[Optional[int], ...]


def check_signature(signature: str) -> None:
  """Raises ValueError unless ``signature`` is one of :data:`SIGNATURES`."""
  if signature not in SIGNATURES:
    raise errors.DataError(f"unknown signature {signature!r}; choose one of {SIGNATURES}")


@dataclasses.dataclass(frozen=True)
class ServingSpec:
  """The request contract of one export.

  Attributes:
    feature_spec: shapes of the model inputs, K (``num_domains``) included;
      ``serving_indices`` parses ``tf.Example`` records written with it
      (vocabulary indices).
    id_dtype: dtype of raw user and item ids in every other signature:
      "int64" or "string".
    top_n: items returned per row by ``recommend`` (fewer when a request sends
      fewer candidates).
    model_name: the name TensorFlow Serving serves the model under.
    candidates_per_request: the width clients pad every ``recommend``
      candidate list to, so that any two requests have equal shapes and
      TensorFlow Serving's batching can join them.
  """
  feature_spec: F.FeatureSpec
  id_dtype: str = "int64"
  top_n: int = 10
  model_name: str = "dasl"
  candidates_per_request: int = DEFAULT_CANDIDATES_PER_REQUEST

  def __post_init__(self):
    if self.id_dtype not in ID_DTYPES:
      raise errors.DataError(f"id_dtype must be one of {ID_DTYPES}, got {self.id_dtype!r}")
    if self.top_n < 1:
      raise errors.DataError(f"top_n must be at least 1, got {self.top_n}")
    if self.candidates_per_request < 1:
      raise errors.DataError(
          f"candidates_per_request must be at least 1, got {self.candidates_per_request}")
    if not len(F.DOMAINS) <= self.num_domains <= F.MAX_DOMAINS:
      raise errors.DataError(f"feature_spec.num_domains must be 2 to {F.MAX_DOMAINS}, got "
                             f"{self.num_domains}")

  @property
  def padding_id(self):
    """The raw id that pads histories and candidate lists (-1 or "")."""
    return PADDING_IDS[self.id_dtype]

  @property
  def history_length(self) -> int:
    return self.feature_spec.history_length

  @property
  def num_domains(self) -> int:
    """K, the domains of the model: one history input and one CTR output each."""
    return self.feature_spec.num_domains

  @property
  def histories(self) -> Tuple[str, ...]:
    """The history inputs: ``hist_a``, ``hist_b``, ... one per domain."""
    return histories(self.num_domains)

  def signature_inputs(self, signature: str) -> Dict[str, TensorInput]:
    """The inputs of ``signature``, by name, in the order of :func:`signature_input_names`.

    Raises:
      ValueError: an unknown signature.
    """
    check_signature(signature)
    side = self.feature_spec.shapes(with_label=False)
    raw_ids = (F.USER_ID, F.ITEM_ID, CANDIDATES) + self.histories
    inputs = {}
    for name in signature_input_names(self.num_domains)[signature]:
      if name in SIDE_FEATURES:
        if name not in side:
          continue
        dtype = np.dtype(side[name][0]).name
      elif name in raw_ids:
        dtype = self.id_dtype
      else:
        dtype = "string" if name in (EXAMPLES, API_INPUTS) else "int64"
      inputs[name] = TensorInput(dtype, (None,) if name in SCALAR_INPUTS else (None, None))
    return inputs

  def signature_outputs(self, signature: str) -> Tuple[str, ...]:
    """The output names of ``signature`` (``ctr_a``, ..., ``ctr`` of K domains for the CTR ones).

    Raises:
      ValueError: an unknown signature.
    """
    check_signature(signature)
    return signature_output_names(self.num_domains)[signature]

  def to_json(self) -> str:
    """The package's JSON layout (:func:`dasl_tf.json_io.dumps`)."""
    return json_io.dumps(F.json_fields(self))

  @classmethod
  def from_json(cls, text: str) -> "ServingSpec":
    return cls.from_dict(json_io.loads(text, SPEC_FILE))

  @classmethod
  def from_dict(cls, values: Dict[str, object]) -> "ServingSpec":
    """A spec from the parsed JSON object of ``serving_spec.json``."""
    values = dict(values)
    values["feature_spec"] = F.FeatureSpec(**values["feature_spec"])
    return cls(**values)

  @classmethod
  def load(cls, path: str) -> "ServingSpec":
    """Reads a spec from a ``serving_spec.json`` file or an export version directory.

    Raises:
      FileNotFoundError: no spec file there.
      errors.DataError: the file is not valid JSON, or not a valid spec.
    """
    if os.path.isdir(path):
      path = os.path.join(path, ASSETS_EXTRA, SPEC_FILE)
    try:
      values = json_io.load(path)
    except FileNotFoundError as e:
      raise FileNotFoundError(
          f"{path} not found: pass an export version directory written by dasl-export "
          f"or its {ASSETS_EXTRA}/{SPEC_FILE}") from e
    try:
      return cls.from_dict(values)
    except (ValueError, TypeError, KeyError) as e:
      raise errors.DataError(f"{path} is not a valid serving spec: {e}") from e
