"""What a client must know about an export: signature names, raw-id dtype, padding, T.

Each export writes its :class:`ServingSpec` to
``<version>/assets.extra/serving_spec.json``; :mod:`serving.client` reads it to
build requests that the export's signatures accept. TensorFlow Serving ignores
the file.
"""
from __future__ import annotations

import dataclasses
import json
import os

from dasl_tf import features as F

SERVING_DEFAULT = "serving_default"
PREDICT = "predict"
RECOMMEND = "recommend"
SIGNATURES = (SERVING_DEFAULT, PREDICT, RECOMMEND)

EXAMPLES = "examples"
CANDIDATES = "candidates"
CTR_OUTPUTS = ("ctr_a", "ctr_b", "ctr")
ITEM_IDS = "item_ids"
SCORES = "scores"

ID_DTYPES = ("int64", "string")
PADDING_IDS = {"int64": -1, "string": ""}

ASSETS_EXTRA = "assets.extra"
SPEC_FILE = "serving_spec.json"


@dataclasses.dataclass(frozen=True)
class ServingSpec:
  """The request contract of one export.

  Attributes:
    feature_spec: shapes of the model inputs; ``serving_default`` parses
      ``tf.Example`` records written with it (vocabulary indices).
    id_dtype: dtype of raw user and item ids in ``predict`` and ``recommend``:
      "int64" or "string".
    top_n: items returned per row by ``recommend`` (fewer when a request sends
      fewer candidates).
    model_name: the name TensorFlow Serving serves the model under.
  """
  feature_spec: F.FeatureSpec
  id_dtype: str = "int64"
  top_n: int = 10
  model_name: str = "dasl"

  def __post_init__(self):
    if self.id_dtype not in ID_DTYPES:
      raise ValueError(f"id_dtype must be one of {ID_DTYPES}, got {self.id_dtype!r}")
    if self.top_n < 1:
      raise ValueError(f"top_n must be at least 1, got {self.top_n}")

  @property
  def padding_id(self):
    """The raw id that pads histories and candidate lists (-1 or "")."""
    return PADDING_IDS[self.id_dtype]

  @property
  def history_length(self) -> int:
    return self.feature_spec.history_length

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "ServingSpec":
    values = json.loads(text)
    values["feature_spec"] = F.FeatureSpec(**values["feature_spec"])
    return cls(**values)

  @classmethod
  def load(cls, path: str) -> "ServingSpec":
    """Reads a spec from a ``serving_spec.json`` file or an export version directory.

    Raises:
      FileNotFoundError: no spec file there.
      ValueError: the file is not a valid spec.
    """
    if os.path.isdir(path):
      path = os.path.join(path, ASSETS_EXTRA, SPEC_FILE)
    try:
      with open(path, encoding="utf-8") as f:
        return cls.from_json(f.read())
    except FileNotFoundError as e:
      raise FileNotFoundError(
          f"{path} not found: pass an export version directory written by dasl-export "
          f"or its {ASSETS_EXTRA}/{SPEC_FILE}") from e
    except (ValueError, TypeError, KeyError) as e:
      raise ValueError(f"{path} is not a valid serving spec: {e}") from e
