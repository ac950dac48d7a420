"""The one feature spec of dasl_tf, shared by the TFRecord writer, the reader and serving.

Every example is one interaction of one user with one *target* item of one
domain (A = 0, B = 1, and C = 2, ... in datasets of K > 2 domains), together
with the user's last ``T`` items in each domain strictly before the target's
time. All ids are vocabulary indices: 0 is padding, 1 is out-of-vocabulary,
real ids start at 2. Sequences are padded offline to the
fixed length ``T`` (most recent item last; padding on the left), so there are no
VarLen features and TF Serving's REST API can batch every input.

Features (dtype, shape):
  user_id   int64   []       user index (one vocabulary for both domains)
  item_id   int64   []       target item index in the vocabulary of its domain
  domain    int64   []       0 = domain A, 1 = domain B, 2 = domain C, ...
  label     float32 []       1.0 = click (rating >= threshold), else 0.0
  hist_a    int64   [T]      last T items of domain A before the target
  hist_b    int64   [T]      last T items of domain B before the target
  hist_c    int64   [T]      ... one history per domain (``num_domains`` > 2 only)
  user_num  float32 [Nu]     numeric user side features (Nu may be 0)
  user_cat  int64   [Cu]     categorical user side features, vocabulary indices
  item_num  float32 [Ni]     numeric side features of the target item
  item_cat  int64   [Ci]     categorical side features of the target item
  negatives int64   [K]      evaluation splits: K sampled items the user never
                             touched in the target's domain (HR@K ranking)
  train_negatives int64 [k]  training splits: k sampled items of the target's
                             domain the user had not touched by the target's
                             time (the top-n training objective)
  timestamp int64   []       the target record's time, in the unit that
                             ``DatasetSchema.timestamp_unit`` names (data of
                             ``has_timestamp`` specs only; never a model or
                             serving input: time-aware baselines and
                             evaluation read it)

Importing this module does not import TensorFlow (``dasl-prepare`` runs without
it): :meth:`FeatureSpec.shapes` gives NumPy dtypes (``np.int64``,
``np.float32``), which ``tf.TensorSpec``, ``tf.zeros`` and ``tf.as_dtype`` accept
and which compare equal to ``tf.int64``/``tf.float32``. The methods that build
TensorFlow objects import it when called.
"""
from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Dict, Mapping, Optional, Sequence, Tuple, Type

import numpy as np

from dasl_tf import config as config_lib
from dasl_tf import errors
from dasl_tf import filesystems
from dasl_tf import json_io

if TYPE_CHECKING:
  import tensorflow as tf  # pylint: disable=g-bad-import-order

PAD_ID = 0
OOV_ID = 1
NUM_RESERVED_IDS = 2
DOMAIN_A = 0
DOMAIN_B = 1
# The one spelling of a domain is its index; names of per-domain tensors, layers
# and metrics end in its suffix (``logit_a``, ``head_b``, ``auc_a``).
DOMAINS = (DOMAIN_A, DOMAIN_B)
# K domains are suffixed a, b, c, ... in order (at most 26).
MAX_DOMAINS = config_lib.MAX_DOMAINS


def domain_suffix(domain: int) -> str:
  """The suffix of domain ``domain`` (0-based): ``a``, ``b``, ``c``, ...

  Example:
    >>> domain_suffix(2)
    'c'
  """
  if not 0 <= domain < MAX_DOMAINS:
    raise ValueError(f"domain index {domain} is outside 0..{MAX_DOMAINS - 1}")
  return chr(ord("a") + domain)


def history_key(domain: int) -> str:
  """The feature of the user's last T items of domain ``domain``: ``hist_a``, ``hist_b``, ..."""
  return f"hist_{domain_suffix(domain)}"


def domain_suffixes(num_domains: int) -> Tuple[str, ...]:
  """The suffixes of K domains, in order: ``("a", "b", ...)``."""
  return tuple(domain_suffix(d) for d in range(num_domains))


def history_keys(num_domains: int) -> Tuple[str, ...]:
  """The history features of K domains, in order: ``("hist_a", "hist_b", ...)``."""
  return tuple(history_key(d) for d in range(num_domains))


def domain_select(domain: "tf.Tensor", values: Sequence["tf.Tensor"]) -> "tf.Tensor":
  """Per example, the entry of ``values`` of its domain: ``values[domain[i]][i]``.

  Args:
    domain: int ``[B]``, each example's domain.
    values: K tensors of one shape ``[B, ...]``, one per domain in order.

  Example:
    >>> import tensorflow as tf
    >>> domain_select(tf.constant([2, 0]), [tf.constant([1, 1]), tf.constant([2, 2]),
    ...                                     tf.constant([3, 3])]).numpy()
    array([3, 1], dtype=int32)

  An example of no domain below K - 1 gets the last domain's value.
  """
  # Imported here, not at the top: dasl-prepare runs without TensorFlow.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  rank = values[0].shape.rank
  selected = values[-1]
  for d in reversed(range(len(values) - 1)):
    in_d = tf.reshape(tf.equal(domain, tf.cast(d, domain.dtype)), [-1] + [1] * (rank - 1))
    selected = tf.where(in_d, values[d], selected)
  return selected


DOMAIN_SUFFIX = {d: domain_suffix(d) for d in DOMAINS}
DEFAULT_HISTORY_LENGTH = 10
DEFAULT_NUM_NEGATIVES = 99

USER_ID = "user_id"
ITEM_ID = "item_id"
DOMAIN = "domain"
LABEL = "label"
HIST_A = history_key(DOMAIN_A)
HIST_B = history_key(DOMAIN_B)
USER_NUM = "user_num"
USER_CAT = "user_cat"
ITEM_NUM = "item_num"
ITEM_CAT = "item_cat"
NEGATIVES = "negatives"
TRAIN_NEGATIVES = "train_negatives"
# Training batches only, never stored or served (dasl_tf.negatives): log q of the target [B]
# and of the negatives [B, k], and which negative slots hold a drawn item [B, k].
TRAIN_TARGET_LOGQ, TRAIN_NEGATIVE_LOGQ = "train_target_logq", "train_negative_logq"
TRAIN_NEGATIVE_MASK = "train_negative_mask"
TIMESTAMP = "timestamp"

SCHEMA_FILE = "schema.json"

# The units of ``timestamp`` (``DatasetSchema.timestamp_unit``): the input's time
# column as written, rounded down to a whole unit ("seconds": Unix seconds, or the
# input's own clock; "milliseconds": since the epoch), or, for inputs without a
# time column, the pseudo-time of a user's k-th of n records of a domain in file
# order, round((k + 0.5) / n * PSEUDO_TIME_SCALE).
TIMESTAMP_UNITS = config_lib.TIMESTAMP_UNITS
PSEUDO_TIME_SCALE = 10**12


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """Shapes of the example features; the single source of truth for all I/O.

  Attributes:
    history_length: T, the padded length of every history (``hist_a``, ``hist_b``, ...).
    user_num_dim: Nu, number of numeric user features.
    user_cat_dim: Cu, number of categorical user features.
    item_num_dim: Ni, number of numeric item features.
    item_cat_dim: Ci, number of categorical item features.
    num_negatives: K, sampled negatives per evaluation example (0 = none).
    num_train_negatives: k, sampled negatives per training example (0 = none).
    has_timestamp: the records carry ``timestamp`` (``dasl-prepare`` writes
      it; False for older datasets and for model and serving specs).
    num_domains: K, the domains with a history each (``hist_a``, ``hist_b``, ...).
  """
  history_length: int = DEFAULT_HISTORY_LENGTH
  user_num_dim: int = 0
  user_cat_dim: int = 0
  item_num_dim: int = 0
  item_cat_dim: int = 0
  num_negatives: int = 0
  num_train_negatives: int = 0
  has_timestamp: bool = False
  num_domains: int = len(DOMAINS)

  def shapes(self, with_label: bool = True, with_negatives: bool = False,
             with_train_negatives: bool = False, with_timestamp: bool = False
            ) -> Dict[str, Tuple[Type[np.generic], Tuple[int, ...]]]:
    """Returns ``{name: (dtype, per-example shape)}`` of the selected features.

    ``timestamp`` is selected by ``with_timestamp`` in specs that have it; the
    model inputs (``with_label=False`` and nothing else) never hold it.

    The dtypes are NumPy's ``np.int64`` and ``np.float32`` (so that this module
    needs no TensorFlow); TensorFlow accepts them wherever it takes a dtype, and
    ``tf.as_dtype`` converts them.
    """
    t = self.history_length
    spec = {
        USER_ID: (np.int64, ()),
        ITEM_ID: (np.int64, ()),
        DOMAIN: (np.int64, ()),
        **{history_key(d): (np.int64, (t,)) for d in range(self.num_domains)},
    }
    optional = {
        USER_NUM: (np.float32, self.user_num_dim),
        USER_CAT: (np.int64, self.user_cat_dim),
        ITEM_NUM: (np.float32, self.item_num_dim),
        ITEM_CAT: (np.int64, self.item_cat_dim),
    }
    for name, (dtype, dim) in optional.items():
      if dim:
        spec[name] = (dtype, (dim,))
    if with_label:
      spec[LABEL] = (np.float32, ())
    if with_negatives and self.num_negatives:
      spec[NEGATIVES] = (np.int64, (self.num_negatives,))
    if with_train_negatives and self.num_train_negatives:
      spec[TRAIN_NEGATIVES] = (np.int64, (self.num_train_negatives,))
    if with_timestamp and self.has_timestamp:
      spec[TIMESTAMP] = (np.int64, ())
    return spec

  def parsing_spec(self, with_label: bool = True, with_negatives: bool = False,
                   with_train_negatives: bool = False, with_timestamp: bool = False
                  ) -> Dict[str, tf.io.FixedLenFeature]:
    """The ``tf.io.parse_example`` spec. Side features default to 0 when absent."""
    # Imported here, not at the top: dasl-prepare runs without TensorFlow.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    parsing = {}
    for name, (np_dtype, shape) in self.shapes(with_label, with_negatives,
                                               with_train_negatives, with_timestamp).items():
      dtype = tf.as_dtype(np_dtype)
      default = None
      if name in (USER_NUM, USER_CAT, ITEM_NUM, ITEM_CAT):
        default = tf.zeros(shape, dtype)
      parsing[name] = tf.io.FixedLenFeature(shape, dtype, default_value=default)
    return parsing

  def tensor_specs(self, batch_size: Optional[int] = None
                  ) -> Dict[str, tf.TensorSpec]:
    """Batched ``tf.TensorSpec`` of the model inputs (no label), for signatures."""
    # Imported here, not at the top: dasl-prepare runs without TensorFlow.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return {
        name: tf.TensorSpec((batch_size,) + shape, tf.as_dtype(dtype), name=name)
        for name, (dtype, shape) in self.shapes(with_label=False).items()
    }

  def parse(self, serialized: tf.Tensor, with_label: bool = True,
            with_negatives: bool = False, with_train_negatives: bool = False,
            with_timestamp: bool = False) -> Dict[str, tf.Tensor]:
    """Parses a batch of serialized ``tf.Example`` strings."""
    # Imported here, not at the top: dasl-prepare runs without TensorFlow.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf.io.parse_example(
        serialized, self.parsing_spec(with_label, with_negatives, with_train_negatives,
                                      with_timestamp))

  def encode(self, features: Mapping[str, object]) -> bytes:
    """Serializes one example (a mapping of feature name to value) to ``tf.Example`` bytes.

    Raises:
      ValueError: a feature of the spec is missing or has the wrong length.
    """
    names = self.shapes(with_label=LABEL in features,
                        with_negatives=NEGATIVES in features,
                        with_train_negatives=TRAIN_NEGATIVES in features,
                        with_timestamp=TIMESTAMP in features)
    values = {}
    for name, (dtype, shape) in names.items():
      if name not in features:
        raise errors.DataError(f"example is missing feature {name!r}")
      values[name] = np.asarray(features[name]).reshape(-1).astype(dtype)
      expected = int(np.prod(shape)) if shape else 1
      if values[name].size != expected:
        raise errors.DataError(
            f"feature {name!r} has {values[name].size} values, the spec wants {expected}")
    return example_bytes(values)


def example_bytes(features: Mapping[str, np.ndarray]) -> bytes:
  """Serializes flat arrays to ``tf.Example`` bytes, the list kind chosen by dtype.

  Integers become an ``int64_list``, floats a ``float_list``, ``str``/``bytes``
  objects a ``bytes_list`` (text as UTF-8).
  """
  # Imported here, not at the top: dasl-prepare runs without TensorFlow.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  feature = {}
  for name, values in features.items():
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind in "iu":
      feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values.astype(np.int64)))
    elif values.dtype.kind == "f":
      feature[name] = tf.train.Feature(
          float_list=tf.train.FloatList(value=values.astype(np.float32)))
    else:
      feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[v.encode("utf-8") if isinstance(v, str) else v for v in values]))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@dataclasses.dataclass(frozen=True)
class DatasetSchema:
  """What ``dasl-prepare`` writes to ``schema.json``: the feature spec plus vocabularies.

  Attributes:
    feature_spec: shapes of the example features.
    num_users: user vocabulary size, reserved ids included.
    num_items_a: domain A item vocabulary size, reserved ids included.
    num_items_b: domain B item vocabulary size, reserved ids included.
    num_items_more: item vocabulary sizes of domains C, D, ... (K > 2 domains
      only; :attr:`num_items` holds all K).
    user_num_columns: names of the numeric user features, in order.
    user_cat_columns: names of the categorical user features, in order.
    user_cat_vocab_sizes: vocabulary size of each categorical user feature.
    item_num_columns: names of the numeric item features, in order.
    item_cat_columns: names of the categorical item features, in order.
    item_cat_vocab_sizes: vocabulary size of each categorical item feature.
    domain_names: display names of the K domains, in domain order.
    splits: split name -> list of shard paths relative to the dataset directory.
    split: the split rule of ``dasl-prepare --split`` ("" in older datasets).
    validation_cut: ``global_time`` split: the first time of ``validation``
      (records at or after it and before ``test_cut`` are validation), in the
      unit of ``timestamp``; None for the other rules.
    test_cut: ``global_time`` split: the first time of ``test`` (every record
      at or after it is test, every other record is earlier); None otherwise.
    timestamp_unit: the unit of the ``timestamp`` feature, one of
      :data:`TIMESTAMP_UNITS` ("" when the records carry none).
  """
  feature_spec: FeatureSpec = dataclasses.field(default_factory=FeatureSpec)
  num_users: int = NUM_RESERVED_IDS
  num_items_a: int = NUM_RESERVED_IDS
  num_items_b: int = NUM_RESERVED_IDS
  num_items_more: Tuple[int, ...] = ()
  user_num_columns: Tuple[str, ...] = ()
  user_cat_columns: Tuple[str, ...] = ()
  user_cat_vocab_sizes: Tuple[int, ...] = ()
  item_num_columns: Tuple[str, ...] = ()
  item_cat_columns: Tuple[str, ...] = ()
  item_cat_vocab_sizes: Tuple[int, ...] = ()
  domain_names: Tuple[str, ...] = ("A", "B")
  splits: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
  split: str = ""
  validation_cut: Optional[int] = None
  test_cut: Optional[int] = None
  timestamp_unit: str = ""

  def __post_init__(self):
    num_domains = self.feature_spec.num_domains
    if not len(DOMAINS) <= num_domains <= MAX_DOMAINS:
      raise errors.DataError(f"key 'feature_spec.num_domains' must be 2 to {MAX_DOMAINS}, got "
                             f"{num_domains}")
    if len(self.num_items) != num_domains:
      raise errors.DataError(f"key 'num_items_more' must hold {num_domains - 2} size(s), of "
                             f"domains 2..{num_domains - 1}, got {list(self.num_items_more)}")
    if len(self.domain_names) != num_domains:
      count = "two" if num_domains == 2 else num_domains
      raise errors.DataError(f"key 'domain_names' must be a list of {count} strings, one per "
                             f"domain, got {list(self.domain_names)}")

  @property
  def num_domains(self) -> int:
    """K, the dataset's domains."""
    return self.feature_spec.num_domains

  @property
  def num_items(self) -> Tuple[int, ...]:
    """The item vocabulary size of each of the K domains, in domain order."""
    return (self.num_items_a, self.num_items_b, *self.num_items_more)

  def to_json(self) -> str:
    """The package's JSON layout (:func:`dasl_tf.json_io.dumps`)."""
    return json_io.dumps(json_fields(self))

  @classmethod
  def from_json(cls, text: str, where: str = SCHEMA_FILE) -> "DatasetSchema":
    """Parses ``schema.json`` text; ``where`` (its path) starts every error message.

    Raises:
      errors.DataError: invalid JSON, an unknown or missing key, or a value of
        the wrong type (the message names the key).
    """
    return _schema_from_values(json_io.loads(text, where), where)

  @classmethod
  def load(cls, data_dir: str) -> "DatasetSchema":
    """Reads ``<data_dir>/schema.json`` (local or remote), naming the path in any error.

    Raises:
      FileNotFoundError: ``data_dir`` has no ``schema.json``.
      errors.DataError: as :meth:`from_json`.
    """
    path = os.path.join(data_dir, SCHEMA_FILE)
    if not filesystems.files_for(path).exists(path):
      raise FileNotFoundError(
          f"{path} not found: is {data_dir!r} an output directory of dasl-prepare?")
    return _schema_from_values(json_io.load(path), path)

  def save(self, data_dir: str) -> None:
    """Writes ``<data_dir>/schema.json`` (local or remote)."""
    with filesystems.open_file(os.path.join(data_dir, SCHEMA_FILE), "w") as f:
      f.write(self.to_json())

  def model_config(self, **overrides) -> config_lib.ModelConfig:
    """A :class:`ModelConfig` whose vocabulary and feature sizes match this dataset."""
    values = dict(
        num_users=self.num_users,
        num_items_a=self.num_items_a,
        num_items_b=self.num_items_b,
        num_items_more=tuple(self.num_items_more),
        history_length=self.feature_spec.history_length,
        user_num_dim=self.feature_spec.user_num_dim,
        user_cat_vocab_sizes=tuple(self.user_cat_vocab_sizes),
        item_num_dim=self.feature_spec.item_num_dim,
        item_cat_vocab_sizes=tuple(self.item_cat_vocab_sizes),
    )
    if self.timestamp_unit:
      values["timestamp_unit"] = self.timestamp_unit
    values.update(overrides)
    return config_lib.ModelConfig(**values)


# Fields left out of JSON at these values (those of two domains), so that a
# two-domain file is the same as before K-domain datasets, and older files load.
_TWO_DOMAIN_DEFAULTS = {"num_domains": len(DOMAINS), "num_items_more": ()}


def json_fields(value) -> Dict[str, object]:
  """``dataclasses.asdict`` of a dataclass holding a :class:`FeatureSpec`, for its JSON file.

  Fields of K-domain datasets at their two-domain values are left out
  (:data:`_TWO_DOMAIN_DEFAULTS`), at any depth.
  """
  def without_defaults(values: Dict[str, object]) -> Dict[str, object]:
    return {key: without_defaults(item) if isinstance(item, dict) else item
            for key, item in values.items()
            if not (key in _TWO_DOMAIN_DEFAULTS and item == _TWO_DOMAIN_DEFAULTS[key])}

  return without_defaults(dataclasses.asdict(value))


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _strings(value) -> bool:
  return isinstance(value, list) and all(isinstance(v, str) for v in value)


# What the JSON value of each field annotation of FeatureSpec and DatasetSchema must be.
_SCHEMA_VALUES = {
    "int": ("an integer", _is_int),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "Optional[int]": ("an integer or null", lambda v: v is None or _is_int(v)),
    "Tuple[str, ...]": ("a list of strings", _strings),
    "Tuple[int, ...]": ("a list of integers",
                        lambda v: isinstance(v, list) and all(_is_int(x) for x in v)),
    "Dict[str, Tuple[str, ...]]": ("an object of split name -> list of shard paths",
                                   lambda v: isinstance(v, dict)
                                   and all(_strings(paths) for paths in v.values())),
}
# Keys every schema.json holds (the others have defaults: older datasets lack them).
_REQUIRED_SCHEMA_KEYS = ("feature_spec", "num_users", "num_items_a", "num_items_b", "splits")


def _schema_fields(cls: type, values, where: str, prefix: str = "") -> Dict[str, object]:
  """The constructor arguments of ``cls`` (FeatureSpec or DatasetSchema) from a JSON object.

  Raises:
    errors.DataError: ``values`` is no object, or has an unknown key or a
      value of the wrong type (named ``<prefix><key>``).
  """
  if not isinstance(values, dict):
    raise errors.DataError(f"{where}: {prefix.rstrip('.') or 'the schema'} must be a JSON "
                           f"object, got {type(values).__name__}")
  fields = {field.name: field.type for field in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise errors.DataError(f"{where}: unknown key(s) {[prefix + k for k in unknown]}; a "
                           f"dasl_tf schema has {[prefix + k for k in sorted(fields)]}")
  arguments = {}
  for key, value in values.items():
    if fields[key] == "FeatureSpec":
      arguments[key] = FeatureSpec(**_schema_fields(FeatureSpec, value, where, f"{key}."))
      continue
    expected, fits = _SCHEMA_VALUES[fields[key]]
    if not fits(value):
      raise errors.DataError(f"{where}: key {prefix + key!r} must be {expected}, got {value!r}")
    if isinstance(value, list):
      value = tuple(value)
    elif isinstance(value, dict):
      value = {name: tuple(paths) for name, paths in value.items()}
    arguments[key] = value
  return arguments


def _schema_from_values(values, where: str) -> DatasetSchema:
  """A :class:`DatasetSchema` from the parsed ``schema.json`` at ``where`` (:meth:`from_json`)."""
  arguments = _schema_fields(DatasetSchema, values, where)
  missing = [key for key in _REQUIRED_SCHEMA_KEYS if key not in arguments]
  if missing:
    raise errors.DataError(f"{where}: missing key(s) {missing}: not a schema.json of "
                           "dasl-prepare (re-run dasl-prepare)")
  try:
    return DatasetSchema(**arguments)
  except errors.DataError as e:
    raise errors.DataError(f"{where}: {e}") from e


def feature_spec_for(model_config: config_lib.ModelConfig,
                     num_negatives: int = 0) -> FeatureSpec:
  """The feature spec a model built from ``model_config`` reads."""
  return FeatureSpec(
      history_length=model_config.history_length,
      user_num_dim=model_config.user_num_dim,
      user_cat_dim=len(model_config.user_cat_vocab_sizes),
      item_num_dim=model_config.item_num_dim,
      item_cat_dim=len(model_config.item_cat_vocab_sizes),
      num_negatives=num_negatives,
      num_domains=model_config.num_domains)


def pad_history(items: Sequence[int], history_length: int) -> np.ndarray:
  """The last ``history_length`` ids of ``items``, left-padded with :data:`PAD_ID`."""
  out = np.zeros(history_length, dtype=np.int64)
  tail = list(items)[-history_length:] if history_length else []
  if tail:
    out[history_length - len(tail):] = tail
  return out
