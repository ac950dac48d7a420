"""The serving signatures of an exported model, built from standard TensorFlow ops only.

* ``serving_default``: ``examples`` (serialized ``tf.Example`` [batch] with the
  raw ids of the logs: the features of ``predict``, histories as lists of at
  most T ids, most recent last) -> ``ctr_a``, ``ctr_b``, ``ctr`` (float32
  [batch]; ``ctr`` is the head of the example's own domain; a model of K > 2
  domains also has ``ctr_c``, ...).
* ``serving_indices``: the same outputs from ``tf.Example`` records of
  vocabulary indices, as ``dasl-prepare`` writes them (for scoring prepared
  data, e.g. by a TFX Evaluator).
* ``predict``: raw tensors with raw ids (one history per domain: ``hist_a``,
  ``hist_b``, ``hist_c``, ...) -> the same outputs.
* ``regress`` and ``classify``: what TensorFlow Serving's Regress and Classify
  APIs call: ``inputs`` (raw-id ``tf.Example`` [batch], as ``serving_default``)
  -> ``outputs`` = ``ctr`` (Regress), or ``scores`` [batch, 2] = (1 - ctr, ctr)
  with ``classes`` ("0", "1") (Classify).
* ``recommend``: one user per row, ``candidates`` [batch, N] raw item ids of the
  row's ``domain`` -> ``item_ids`` and ``scores`` [batch, min(top_n, N)], the
  candidates with the highest top-n score, best first (paper section 3.4).
  Padding candidates are never ranked above a real one; they come back with
  the padding id and score 0.

Raw ids are mapped to vocabulary indices in the graph by hash tables
initialised from the vocabulary files (assets of the SavedModel: ``users.txt``
and ``items_a.txt``, ``items_b.txt``, ... one per domain; a history and an item
of domain d read domain d's). An unknown id
maps to OOV (1); the padding id (-1 for int64 ids, "" for string ids) maps to
padding (0). Histories hold at most T ids per row and are left-padded to T in
the graph.

Every input is validated in the graph (batch sizes agree, history lengths,
side-feature widths, domains, index ranges, finite numbers), so a malformed
request fails with a message that names the input instead of returning a wrong
score. The widths: a history holds at most T ids per row (or per example); a
side feature exactly its width of the feature spec; ``candidates`` any N >= 0
per row (the rows must match ``user_id``'s).
"""
from __future__ import annotations

import os
from typing import Dict

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from dasl_tf import config as config_lib
from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf.serving import spec as spec_lib

USERS_VOCAB = "users.txt"


def items_vocab(domain: int) -> str:
  """The raw-id vocabulary of domain ``domain``'s items: ``items_a.txt``, ``items_b.txt``, ..."""
  return f"items_{F.domain_suffix(domain)}.txt"


def _is_integer_id(raw_id: str) -> bool:
  """Whether a raw id is a canonical non-negative integer ("12", not "012" or "-1")."""
  return raw_id.isdigit() and str(int(raw_id)) == raw_id


def read_vocabulary(path: str, expected_size: int, id_dtype: str) -> list:
  """Reads and checks one raw-id vocabulary file (line k is index k + 2).

  Args:
    path: the vocabulary file.
    expected_size: the model's vocabulary size, reserved ids included.
    id_dtype: "int64" or "string", the raw-id dtype of the export.

  Returns:
    The raw ids, in index order.

  Raises:
    ValueError: the file has an empty line, a duplicate, the padding id, an id
      that is not an integer (int64 ids), or does not match the model's
      vocabulary size; the message names the file and line.
  """
  padding_id = str(spec_lib.PADDING_IDS[id_dtype])
  with filesystems.open_file(path) as f:
    ids = f.read().splitlines()
  seen = {}
  for line_number, raw_id in enumerate(ids, start=1):
    if not raw_id:
      raise errors.DataError(f"{path}:{line_number}: empty raw id")
    if raw_id == padding_id:
      raise errors.DataError(f"{path}:{line_number}: raw id {raw_id!r} is the request padding id")
    if id_dtype == "int64" and not _is_integer_id(raw_id):
      raise errors.DataError(f"{path}:{line_number}: raw id {raw_id!r} is not a non-negative "
                       "integer; export with string ids (--id_dtype=string)")
    if raw_id in seen:
      raise errors.DataError(f"{path}:{line_number}: raw id {raw_id!r} repeats line {seen[raw_id]}")
    seen[raw_id] = line_number
  if len(ids) + F.NUM_RESERVED_IDS != expected_size:
    raise errors.DataError(
        f"{path} holds {len(ids)} ids, so a vocabulary of {len(ids) + F.NUM_RESERVED_IDS} "
        f"with the reserved ids, but the model was built for {expected_size}")
  return ids


def infer_id_dtype(vocab_dir: str, num_domains: int) -> str:
  """The raw-id dtype of the users' and the K domains' items' vocabularies.

  Returns:
    "int64" when every raw id is a canonical integer, else "string".
  """
  for name in (USERS_VOCAB, *(items_vocab(d) for d in range(num_domains))):
    with filesystems.open_file(os.path.join(vocab_dir, name)) as f:
      if not all(_is_integer_id(raw_id) for raw_id in f.read().splitlines()):
        return "string"
  return "int64"


class RawIdVocabulary(tf.Module):
  """Maps raw ids to vocabulary indices with a hash table built from a vocabulary file.

  Line k of the file (0-based) is index k + 2; unknown ids give OOV (1).

  Args:
    path: the vocabulary file (becomes an asset of the SavedModel).
    id_dtype: "int64" or "string", the dtype of the raw ids.
    name: module name.
  """

  def __init__(self, path: str, id_dtype: str, name: str):
    super().__init__(name=name)
    self.padding_id = spec_lib.PADDING_IDS[id_dtype]
    self.table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            path,
            key_dtype=tf.as_dtype(id_dtype),
            key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64,
            value_index=tf.lookup.TextFileIndex.LINE_NUMBER),
        default_value=-1)

  def indices(self, raw_ids: tf.Tensor) -> tf.Tensor:
    """Vocabulary indices of ``raw_ids`` (any shape); unknown ids give OOV."""
    line = self.table.lookup(raw_ids)
    return tf.where(line < 0, tf.constant(F.OOV_ID, tf.int64), line + F.NUM_RESERVED_IDS)

  def sequence_indices(self, raw_ids: tf.Tensor) -> tf.Tensor:
    """Like :meth:`indices`, but the padding id gives padding (0)."""
    is_padding = tf.equal(raw_ids, self.padding_id)
    return tf.where(is_padding, tf.constant(F.PAD_ID, tf.int64), self.indices(raw_ids))


def _assert(condition: tf.Tensor, message: str, data=()) -> tf.Operation:
  return tf.debugging.Assert(condition, [message, *data], summarize=8)


def _checked(tensor: tf.Tensor, checks) -> tf.Tensor:
  """``tensor``, computed only after every assertion in ``checks`` passed."""
  with tf.control_dependencies(checks):
    return tf.identity(tensor)


class ServingModule:
  """The signatures of an export, and the objects they read.

  ``root`` is what gets saved: the model's variables and the vocabularies.
  Only those are saved (not the Keras model), so loading an export needs no
  Python class of dasl_tf and no TensorFlow Recommenders.

  Args:
    model: a built :class:`~dasl_tf.models.CrossDomainRanker`.
    model_config: the model's config (vocabulary sizes, T, side features).
    vocab_dir: directory with ``users.txt`` and ``items_a.txt``, ``items_b.txt``,
      ... of every domain.
    serving_spec: raw-id dtype, top-n and the feature spec of the export.
    jit_compile: mark the model's CTR and candidate-scoring functions for XLA
      (TensorFlow Serving then needs ``--xla_cpu_compilation_enabled=true`` on
      CPU); each new input shape is compiled on its first request.

  Raises:
    ValueError: a vocabulary file does not match the model.
  """

  def __init__(self, model, model_config: config_lib.ModelConfig, vocab_dir: str,
               serving_spec: spec_lib.ServingSpec, jit_compile: bool = False):
    self.serving_spec = serving_spec
    self._spec = serving_spec.feature_spec
    self._config = model_config
    id_dtype = serving_spec.id_dtype
    if self._spec.num_domains != model_config.num_domains:
      raise errors.DataError(
          f"serving_spec.feature_spec.num_domains is {self._spec.num_domains}, but the model "
          f"has {model_config.num_domains} domains")
    read_vocabulary(os.path.join(vocab_dir, USERS_VOCAB), model_config.num_users, id_dtype)
    for d, size in enumerate(model_config.num_items):
      read_vocabulary(os.path.join(vocab_dir, items_vocab(d)), size, id_dtype)
    self.root = tf.Module(name="dasl_serving")
    self.root.model_variables = list(model.variables)
    self.root.users = RawIdVocabulary(os.path.join(vocab_dir, USERS_VOCAB), id_dtype, "users")
    # One vocabulary per domain, saved as ``root.items_a``, ``root.items_b``, ...
    self._items = []
    for d in range(model_config.num_domains):
      name = f"items_{F.domain_suffix(d)}"
      self._items.append(RawIdVocabulary(os.path.join(vocab_dir, items_vocab(d)), id_dtype, name))
      setattr(self.root, name, self._items[-1])
    # Each model function is traced once and shared by the signatures calling it.
    # AutoGraph is off: the model code is plain TensorFlow, and converting it
    # would multiply the export time. With jit_compile the two model functions
    # (not the raw-id lookups and checks around them) are marked for XLA.
    model_inputs = self._spec.tensor_specs()
    compile_options = {"jit_compile": True} if jit_compile else {}
    self._predict_ctr = tf.function(
        model.predict_ctr, input_signature=[model_inputs], autograph=False, **compile_options)
    self._score_candidates = tf.function(
        model.score_candidates,
        input_signature=[model_inputs, tf.TensorSpec([None, None], tf.int64)], autograph=False,
        **compile_options)

    bodies = {
        spec_lib.SERVING_DEFAULT: self._serve_raw_examples,
        spec_lib.SERVING_INDICES: self._serve_index_examples,
        spec_lib.PREDICT: self._predict,
        spec_lib.RECOMMEND: self._recommend,
        spec_lib.REGRESS: self._regress,
        spec_lib.CLASSIFY: self._classify,
    }
    self.functions = {signature: self._signature_function(body, signature)
                      for signature, body in bodies.items()}

  def _signature_function(self, body, signature: str):
    """``body`` as a ``tf.function`` of the inputs :mod:`dasl_tf.serving.spec` defines for ``signature``."""
    inputs = {name: tf.TensorSpec(shape, tf.as_dtype(dtype), name=name)
              for name, (dtype, shape) in self.serving_spec.signature_inputs(signature).items()}
    return tf.function(body, input_signature=[inputs], autograph=False)

  def save(self, export_dir: str) -> None:
    """Writes the SavedModel (graph, variables, vocabulary assets) to ``export_dir``.

    ``tf.saved_model.save`` marks every signature as a Predict one; the method
    names of ``regress`` and ``classify`` are then set in ``saved_model.pb``,
    as TensorFlow Serving's Regress and Classify APIs require.
    """
    tf.saved_model.save(self.root, export_dir, signatures=self.signatures())
    path = os.path.join(export_dir, tf.saved_model.SAVED_MODEL_FILENAME_PB)
    saved_model = saved_model_pb2.SavedModel()
    with filesystems.open_file(path, "rb") as f:
      saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
      for signature, method_name in spec_lib.METHOD_NAMES.items():
        meta_graph.signature_def[signature].method_name = method_name
    with filesystems.open_file(path, "wb") as f:
      f.write(saved_model.SerializeToString())

  def signatures(self) -> Dict[str, object]:
    """The ``signatures`` argument of ``tf.saved_model.save``."""
    return {signature: function.get_concrete_function()
            for signature, function in self.functions.items()}

  # --- the signature bodies -------------------------------------------------

  def _serve_index_examples(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    features = self._spec.parse(inputs[spec_lib.EXAMPLES], with_label=False)
    checks = [self._domain_check(features[F.DOMAIN])]
    checks += self._feature_checks(features)
    features = {name: _checked(value, checks) for name, value in features.items()}
    return self._predict_ctr(features)

  def _serve_raw_examples(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return self._predict(self._parse_raw_examples(inputs[spec_lib.EXAMPLES]))

  def _regress(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    ctr = self._predict(self._parse_raw_examples(inputs[spec_lib.API_INPUTS]))["ctr"]
    return {spec_lib.REGRESS_OUTPUTS: ctr}

  def _classify(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    ctr = self._predict(self._parse_raw_examples(inputs[spec_lib.API_INPUTS]))["ctr"]
    classes = tf.constant([spec_lib.CLASSES])
    return {spec_lib.CLASSIFY_SCORES: tf.stack([1.0 - ctr, ctr], axis=1),
            spec_lib.CLASSIFY_CLASSES: tf.repeat(classes, tf.shape(ctr)[0], axis=0)}

  def _predict(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    inputs = self._validated(inputs, spec_lib.PREDICT)
    features = self._raw_features(inputs)
    features[F.ITEM_ID] = self._items_of_domain(
        inputs[F.ITEM_ID], features[F.DOMAIN], sequence=False)
    return self._predict_ctr(features)

  def _recommend(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    inputs = self._validated(inputs, spec_lib.RECOMMEND)
    features = self._raw_features(inputs)
    raw_candidates = inputs[spec_lib.CANDIDATES]
    batch = tf.shape(features[F.DOMAIN])[0]
    domain = features[F.DOMAIN]
    candidates = self._items_of_domain(raw_candidates, domain, sequence=True)
    features[F.ITEM_ID] = tf.fill([batch], tf.constant(F.PAD_ID, tf.int64))
    for name in (F.ITEM_NUM, F.ITEM_CAT):
      if name in self._spec.shapes(with_label=False):
        dtype, shape = self._spec.shapes(with_label=False)[name]
        features[name] = tf.zeros(tf.concat([[batch], shape], 0), dtype)
    logits = self._score_candidates(features, candidates)
    is_padding = tf.equal(raw_candidates, self.serving_spec.padding_id)
    logits = tf.where(is_padding, tf.constant(-float("inf")), logits)
    k = tf.minimum(self.serving_spec.top_n, tf.shape(logits)[1])
    best = tf.math.top_k(logits, k=k)
    return {
        spec_lib.ITEM_IDS: tf.gather(raw_candidates, best.indices, batch_dims=1),
        spec_lib.SCORES: tf.sigmoid(best.values),
    }

  def _parse_raw_examples(self, serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The ``predict`` inputs of raw-id ``tf.Example`` records; histories left-padded to T.

    ``user_id``, ``item_id`` and ``domain`` are required (one value each); a
    missing history is an empty one; side features are required when the
    model has them. A history of more than T ids, or a side feature of another
    width than the model's, is rejected by an assertion naming the feature.
    """
    id_dtype = tf.as_dtype(self.serving_spec.id_dtype)
    parsing = {F.USER_ID: tf.io.FixedLenFeature([], id_dtype),
               F.ITEM_ID: tf.io.FixedLenFeature([], id_dtype),
               F.DOMAIN: tf.io.FixedLenFeature([], tf.int64)}
    for name in self.serving_spec.histories:
      parsing[name] = tf.io.RaggedFeature(id_dtype, row_splits_dtype=tf.int64)
    widths = {}
    for name, (dtype, shape) in self._spec.shapes(with_label=False).items():
      if name in spec_lib.SIDE_FEATURES:
        parsing[name] = tf.io.RaggedFeature(tf.as_dtype(dtype), row_splits_dtype=tf.int64)
        widths[name] = shape[0]
    parsed = tf.io.parse_example(tf.ensure_shape(serialized, [None]), parsing)
    for name in self.serving_spec.histories:
      parsed[name] = self._left_padded(parsed[name], name)
    for name, width in widths.items():
      parsed[name] = self._fixed_width(parsed[name], name, width)
    return parsed

  def _fixed_width(self, ragged: tf.RaggedTensor, name: str, width: int) -> tf.Tensor:
    """[batch, width] values of a side feature; a row of another width (or none) fails."""
    lengths = ragged.row_lengths()
    check = _assert(tf.reduce_all(tf.equal(lengths, width)),
                    f"{name} must have {width} values per example; values per example:",
                    [lengths])
    return _checked(ragged.to_tensor(shape=[None, width]), [check])

  def _left_padded(self, ragged: tf.RaggedTensor, name: str) -> tf.Tensor:
    """[batch, T] ids: each row's ids last, the padding id before them; rows over T fail."""
    t = self._spec.history_length
    lengths = ragged.row_lengths()
    check = _assert(tf.reduce_all(lengths <= t),
                    f"{name} holds more than history_length={t} ids per example (send the "
                    f"most recent {t}, most recent last); ids per example:", [lengths])
    lengths = _checked(lengths, [check])  # the gather below reads them only once checked
    padding = tf.constant(self.serving_spec.padding_id, ragged.dtype)
    right_padded = ragged.to_tensor(default_value=padding, shape=[None, t])
    source = tf.range(t, dtype=tf.int64)[None, :] - (t - lengths)[:, None]
    left_padded = tf.where(source >= 0,
                           tf.gather(right_padded, tf.maximum(source, 0), batch_dims=1),
                           padding)
    return _checked(left_padded, [check])

  # --- input validation and id mapping --------------------------------------

  def _validated(self, inputs: Dict[str, tf.Tensor], signature: str) -> Dict[str, tf.Tensor]:
    """Raw inputs, released only once ranks, batch sizes, domains and lengths are valid.

    TensorFlow Serving feeds tensors without checking them against the
    signature's shapes, so ranks are checked first (``EnsureShape`` names the
    input and its shape) before any op reads a dimension.
    """
    shapes = self.serving_spec.signature_inputs(signature)
    inputs = {name: tf.ensure_shape(value, shapes[name].shape) for name, value in inputs.items()}
    batch = tf.shape(inputs[F.USER_ID])[0]
    checks = [self._domain_check(inputs[F.DOMAIN])]
    for name, value in inputs.items():
      rows = tf.shape(value)[0]
      checks.append(_assert(tf.equal(rows, batch),
                            f"{name} must have one row per {F.USER_ID}; rows:", [rows, batch]))
    t = self._spec.history_length
    for name in self.serving_spec.histories:
      length = tf.shape(inputs[name])[1]
      checks.append(_assert(
          tf.less_equal(length, t),
          f"{name} holds more than history_length={t} ids per row (send the most recent "
          f"{t}, most recent last); ids per row:", [length]))
    widths = self._spec.shapes(with_label=False)
    for name in spec_lib.SIDE_FEATURES:
      if name in inputs:
        width = tf.shape(inputs[name])[1]
        checks.append(_assert(tf.equal(width, widths[name][1][0]),
                              f"{name} must have {widths[name][1][0]} values per row; got:",
                              [width]))
    return {name: _checked(value, checks) for name, value in inputs.items()}

  def _raw_features(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The model's features from validated raw inputs; the callers map the items."""
    features = {F.USER_ID: self.root.users.indices(inputs[F.USER_ID]), F.DOMAIN: inputs[F.DOMAIN]}
    for name, items in zip(self.serving_spec.histories, self._items):
      features[name] = self._history(items.sequence_indices(inputs[name]))
    shapes = self._spec.shapes(with_label=False)
    for name in spec_lib.SIDE_FEATURES:
      if name in inputs:
        features[name] = tf.ensure_shape(inputs[name], (None,) + shapes[name][1])
    index_checks = self._feature_checks(
        {name: features[name] for name in spec_lib.SIDE_FEATURES if name in features})
    return {name: _checked(value, index_checks) for name, value in features.items()}

  def _history(self, indices: tf.Tensor) -> tf.Tensor:
    """Left-pads a [batch, L <= T] history of indices to [batch, T]."""
    t = self._spec.history_length
    missing = t - tf.shape(indices)[1]
    return tf.ensure_shape(tf.pad(indices, [[0, 0], [missing, 0]]), [None, t])

  def _items_of_domain(self, raw_items: tf.Tensor, domain: tf.Tensor,
                       sequence: bool) -> tf.Tensor:
    """Maps raw item ids ([batch] or [batch, n]) with the vocabulary of their row's domain."""
    indices = [items.sequence_indices(raw_items) if sequence else items.indices(raw_items)
               for items in self._items]
    return F.domain_select(domain, indices)

  def _domain_check(self, domain: tf.Tensor) -> tf.Operation:
    num_domains = self.serving_spec.num_domains
    valid = tf.logical_and(domain >= 0, domain < num_domains)
    return _assert(tf.reduce_all(valid),
                   f"{F.DOMAIN} must be {spec_lib.domain_values(num_domains)}; got:", [domain])

  def _feature_checks(self, features: Dict[str, tf.Tensor]):
    """Assertions that index features lie in their vocabularies and numeric ones are finite."""
    config = self._config
    upper = {
        F.USER_ID: config.num_users,
        **dict(zip(self.serving_spec.histories, config.num_items)),
        F.USER_CAT: list(config.user_cat_vocab_sizes),
        F.ITEM_CAT: list(config.item_cat_vocab_sizes),
    }
    checks = [_assert(tf.reduce_all(tf.math.is_finite(features[name])),
                      f"{name} holds NaN or infinite values; got:", [features[name]])
              for name in (F.USER_NUM, F.ITEM_NUM) if name in features]
    for name, value in features.items():
      if name == F.ITEM_ID:
        domain = features[F.DOMAIN]
        bound = F.domain_select(domain, [tf.fill(tf.shape(domain), tf.constant(size, tf.int64))
                                         for size in config.num_items])
      elif name in upper:
        bound = tf.constant(upper[name], tf.int64)
      else:
        continue
      valid = tf.logical_and(value >= 0, value < bound)
      checks.append(_assert(tf.reduce_all(valid),
                            f"{name} holds an index outside its vocabulary [0, size); got:",
                            [value]))
    return checks
