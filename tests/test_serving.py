"""dasl-export: the SavedModel's signatures, ops, warmup records, versioning and input checks.

The export of a small DASL model (random weights, integer raw ids) is built once
per session by :func:`serving_setup` and shared with ``tests/test_client.py``.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import model_io
from dasl_tf import models
from dasl_tf import publish
from dasl_tf.pipelines import cli
from dasl_tf.serving import export
from dasl_tf.serving import signatures
from dasl_tf.serving import spec as spec_lib
from dasl_tf.serving import warmup

VARIANT = "dasl"
T = 5
TOP_N = 10
# Raw ids: users 1000.., items of A 5000.., items of B 7000.. (index = raw - base + 2).
RAW = {"users": (1000, 8), "items_a": (5000, 12), "items_b": (7000, 9)}
UNKNOWN = 424242
PAD = -1

_SETUPS = {}


def _tree_digest(path):
  digest = hashlib.sha256()
  for directory, _, files in sorted(os.walk(path)):
    for name in sorted(files):
      full = os.path.join(directory, name)
      digest.update(full.encode())
      with open(full, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()


def _vocab_files(directory: str, id_style: str) -> None:
  os.makedirs(directory, exist_ok=True)
  for kind, (base, size) in RAW.items():
    ids = [str(base + i) if id_style == "int" else f"{kind}-{base + i}" for i in range(size)]
    with open(os.path.join(directory, f"{kind}.txt"), "w") as f:
      f.write("\n".join(ids) + "\n")


def _model_dir(path: str, model, experiment, id_style: str) -> str:
  os.makedirs(path)
  _vocab_files(os.path.join(path, model_io.VOCAB_DIR), id_style)
  experiment.save(os.path.join(path, model_io.CONFIG_FILE))
  F.DatasetSchema(
      feature_spec=F.feature_spec_for(experiment.model), num_users=experiment.model.num_users,
      num_items_a=experiment.model.num_items_a, num_items_b=experiment.model.num_items_b,
  ).save(path)
  model_io.save_final_weights(model, path)
  return path


def random_weights_model(model_config, seed):
  """The model of ``model_config`` with reproducible N(0, 0.5) weights (no training)."""
  model = model_io.build_model(model_config)
  rng = np.random.default_rng(seed)
  for variable in model.trainable_variables:
    variable.assign(rng.normal(0.0, 0.5, variable.shape).astype(np.float32))
  return model


def serving_setup(tmp_path_factory) -> types.SimpleNamespace:
  """A trained model dir (random weights) and its export, made once per session."""
  if "int" not in _SETUPS:
    assert VARIANT in models.variants()
    model_config = config_lib.ModelConfig(
        variant=VARIANT, num_users=RAW["users"][1] + 2, num_items_a=RAW["items_a"][1] + 2,
        num_items_b=RAW["items_b"][1] + 2, history_length=T, embedding_dim=8, gru_units=8,
        attention_dim=8, hidden_units=(8,))
    experiment = config_lib.ExperimentConfig(model=model_config)
    model = random_weights_model(model_config, seed=7)
    root = tmp_path_factory.mktemp("serving")
    model_dir = _model_dir(str(root / "model"), model, experiment, "int")
    export_base = str(root / "exports")
    model_digest = _tree_digest(model_dir)
    export_dir = export.export_model(model_dir, export_base, top_n=TOP_N)
    _SETUPS["int"] = types.SimpleNamespace(
        model=model, experiment=experiment, root=root, model_dir=model_dir,
        model_digest=model_digest, export_base=export_base, export_dir=export_dir,
        export_digest=_tree_digest(export_dir), loaded=tf.saved_model.load(export_dir))
  return _SETUPS["int"]


def string_id_export(setup) -> types.SimpleNamespace:
  """The same weights with string raw ids, exported as the next version of the same base."""
  if "string" not in _SETUPS:
    model_dir = _model_dir(str(setup.root / "model_string_ids"), setup.model, setup.experiment,
                           "string")
    export_dir = export.export_model(model_dir, setup.export_base, top_n=TOP_N)
    _SETUPS["string"] = types.SimpleNamespace(
        model_dir=model_dir, export_dir=export_dir, loaded=tf.saved_model.load(export_dir))
  return _SETUPS["string"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  return serving_setup(tmp_path_factory)


# --- requests and their NumPy/in-memory references ----------------------------


def to_index(raw, kind, sequence):
  """Vocabulary indices of integer raw ids, as the export maps them."""
  base, size = RAW[kind]
  raw = np.asarray(raw, np.int64)
  known = (raw >= base) & (raw < base + size)
  index = np.where(known, raw - base + F.NUM_RESERVED_IDS, F.OOV_ID)
  return np.where(raw == PAD, F.PAD_ID, index) if sequence else index


def left_pad(indices):
  indices = np.asarray(indices)
  return np.pad(indices, [(0, 0), (T - indices.shape[1], 0)])


def predict_request():
  """Raw ``predict`` inputs: unknown ids, padding, and histories shorter than T."""
  return {
      F.USER_ID: np.array([1000, 1003, UNKNOWN], np.int64),
      F.ITEM_ID: np.array([5000, 7004, 123], np.int64),
      F.DOMAIN: np.array([0, 1, 0], np.int64),
      F.HIST_A: np.array([[PAD, 5001, 5002], [5003, 5004, 5011], [PAD, PAD, PAD]], np.int64),
      F.HIST_B: np.array([[PAD, PAD, 7001], [7002, UNKNOWN, 7003], [PAD, PAD, PAD]], np.int64),
  }


def indexed_features(request):
  """The model features the export should derive from a raw request."""
  in_a = request[F.DOMAIN] == F.DOMAIN_A
  features = {
      F.USER_ID: to_index(request[F.USER_ID], "users", False),
      F.DOMAIN: request[F.DOMAIN],
      F.HIST_A: left_pad(to_index(request[F.HIST_A], "items_a", True)),
      F.HIST_B: left_pad(to_index(request[F.HIST_B], "items_b", True)),
  }
  if F.ITEM_ID in request:
    features[F.ITEM_ID] = np.where(in_a, to_index(request[F.ITEM_ID], "items_a", False),
                                   to_index(request[F.ITEM_ID], "items_b", False))
  return features


def recommend_request():
  candidates_a = [5000 + i for i in range(12)] + [UNKNOWN, 5003]
  candidates_b = [7000 + i for i in range(9)] + [PAD] * 5
  return {
      F.USER_ID: np.array([1001, UNKNOWN], np.int64),
      F.DOMAIN: np.array([0, 1], np.int64),
      F.HIST_A: np.array([[5004, 5005, 5006, 5007, 5008], [PAD, PAD, PAD, PAD, 5001]], np.int64),
      F.HIST_B: np.array([[PAD, PAD, PAD, PAD, PAD], [7001, 7002, 7003, 7004, 7005]], np.int64),
      spec_lib.CANDIDATES: np.array([candidates_a, candidates_b], np.int64),
  }


def examples_request():
  """``serving_indices`` inputs: the features of ``predict_request`` as vocabulary indices."""
  features = indexed_features(predict_request())
  spec = F.FeatureSpec(history_length=T)
  rows = [{name: value[i] for name, value in features.items()} for i in range(3)]
  return {spec_lib.EXAMPLES: np.array([spec.encode(row) for row in rows], dtype=object)}


def raw_example(**features):
  """A ``tf.Example`` of raw ids: int lists as int64_list, floats as float_list, str as bytes."""
  proto = {}
  for name, values in features.items():
    values = list(np.asarray(values).reshape(-1).tolist())
    if values and isinstance(values[0], str):
      proto[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[v.encode() for v in values]))
    elif values and isinstance(values[0], float):
      proto[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    else:
      proto[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  return tf.train.Example(features=tf.train.Features(feature=proto)).SerializeToString()


def raw_examples_request(key=spec_lib.EXAMPLES):
  """``serving_default`` (or ``regress``/``classify``) inputs equal to ``predict_request``.

  Histories are sent unpadded (the padding ids of ``predict_request`` dropped).
  """
  request = predict_request()
  examples = []
  for i in range(len(request[F.USER_ID])):
    examples.append(raw_example(**{
        name: value[i][value[i] != PAD] if value.ndim == 2 else value[i]
        for name, value in request.items()}))
  return {key: np.array(examples, dtype=object)}


def expected_api_outputs(model):
  """What ``regress`` and ``classify`` return for ``raw_examples_request(API_INPUTS)``."""
  ctr = expected_ctr(model, predict_request())["ctr"]
  return {
      spec_lib.REGRESS: {spec_lib.REGRESS_OUTPUTS: ctr},
      spec_lib.CLASSIFY: {spec_lib.CLASSIFY_SCORES: np.stack([1.0 - ctr, ctr], axis=1),
                          spec_lib.CLASSIFY_CLASSES: np.array([[b"0", b"1"]] * len(ctr))},
  }


def model_ctr(model, features):
  """``predict_ctr`` of index ``features`` (NumPy in, NumPy out)."""
  features = {name: tf.constant(value) for name, value in features.items()}
  return {name: value.numpy() for name, value in model.predict_ctr(features).items()}


def expected_ctr(model, request):
  return model_ctr(model, indexed_features(request))


def model_recommendations(model, features, candidates, raw, top_n):
  """``recommend``'s answer: the raw candidates ranked by ``score_candidates``, padding last."""
  features = dict(features, **{F.ITEM_ID: np.zeros_like(features[F.USER_ID])})
  logits = model.score_candidates({k: tf.constant(v) for k, v in features.items()},
                                  tf.constant(candidates)).numpy()
  logits = np.where(raw == PAD, -np.inf, logits)
  order = np.argsort(-logits, axis=1, kind="stable")[:, :min(top_n, raw.shape[1])]
  return {spec_lib.ITEM_IDS: np.take_along_axis(raw, order, 1),
          spec_lib.SCORES: 1.0 / (1.0 + np.exp(-np.take_along_axis(logits, order, 1)))}


def expected_recommendations(model, request):
  raw = request[spec_lib.CANDIDATES]
  in_a = (request[F.DOMAIN] == F.DOMAIN_A)[:, None]
  candidates = np.where(in_a, to_index(raw, "items_a", True), to_index(raw, "items_b", True))
  return model_recommendations(model, indexed_features(request), candidates, raw, TOP_N)


def call_signature(loaded, signature, request):
  outputs = loaded.signatures[signature](
      **{name: tf.constant(value) for name, value in request.items()})
  return {name: value.numpy() for name, value in outputs.items()}


def assert_outputs_close(actual, expected):
  assert sorted(actual) == sorted(expected)
  for name, value in expected.items():
    if np.asarray(value).dtype.kind in "iuSUO":
      np.testing.assert_array_equal(actual[name], value, err_msg=name)
    else:
      np.testing.assert_allclose(actual[name], value, atol=1e-5, err_msg=name)


# --- the export in a fresh TensorFlow-only process ----------------------------

_FRESH_PROCESS = r"""
import base64, contextlib, io, json, sys
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
from tensorflow.python.tools import saved_model_cli

export_dir, requests_path, out_path = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
outputs = {}
for signature, inputs in json.load(open(requests_path)).items():
  tensors = {}
  for name, (dtype, value) in inputs.items():
    if dtype == "b64":
      dtype, value = "string", [base64.b64decode(v) for v in value]
    tensors[name] = tf.constant(value, dtype=dtype)
  result = loaded.signatures[signature](**tensors)
  outputs[signature] = {
      name: (value.numpy().astype(str) if value.dtype == tf.string else value.numpy()).tolist()
      for name, value in result.items()}
saved_model = saved_model_pb2.SavedModel()
with open(export_dir + "/saved_model.pb", "rb") as f:
  saved_model.ParseFromString(f.read())
ops, functions = set(), set()
for meta_graph in saved_model.meta_graphs:
  ops |= {node.op for node in meta_graph.graph_def.node}
  for function in meta_graph.graph_def.library.function:
    functions.add(function.signature.name)
    ops |= {node.op for node in function.node_def}
ops -= functions
show_all = io.StringIO()
with contextlib.redirect_stdout(show_all):
  saved_model_cli._show_all(export_dir)  # what `saved_model_cli show --all --dir` prints
json.dump({"outputs": outputs, "ops": sorted(ops), "show_all": show_all.getvalue(),
           "unregistered_ops": sorted(op for op in ops if op_def_registry.get(op) is None),
           "modules": sorted(m for m in ("dasl_tf", "tensorflow_recommenders", "tensorflow_io")
                             if m in sys.modules)},
          open(out_path, "w"))
"""


def _json_request(request):
  encoded = {}
  for name, value in request.items():
    if value.dtype == object:
      encoded[name] = ("b64", [base64.b64encode(v).decode("ascii") for v in value])
    else:
      encoded[name] = (value.dtype.name, value.tolist())
  return encoded


def run_in_fresh_process(export_dir, requests, tmp_path):
  """Runs ``requests`` (signature -> inputs) on ``export_dir``, and `saved_model_cli show --all`,
  in a process that imports TensorFlow only."""
  requests_path, out_path = tmp_path / "requests.json", tmp_path / "out.json"
  requests_path.write_text(json.dumps({k: _json_request(v) for k, v in requests.items()}))
  env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
  proc = subprocess.run(
      [sys.executable, "-c", _FRESH_PROCESS, export_dir, str(requests_path), str(out_path)],
      capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(out_path.read_text())


def _run_in_fresh_process(export_dir, tmp_path):
  """Every signature of ``export_dir``, on this file's requests, in a TensorFlow-only process."""
  requests = {spec_lib.SERVING_DEFAULT: raw_examples_request(),
              spec_lib.SERVING_INDICES: examples_request(), spec_lib.PREDICT: predict_request(),
              spec_lib.RECOMMEND: recommend_request(),
              spec_lib.REGRESS: raw_examples_request(spec_lib.API_INPUTS),
              spec_lib.CLASSIFY: raw_examples_request(spec_lib.API_INPUTS)}
  return run_in_fresh_process(export_dir, requests, tmp_path)


@pytest.fixture(scope="module")
def fresh_process(setup, tmp_path_factory):
  return _run_in_fresh_process(setup.export_dir, tmp_path_factory.mktemp("fresh_process"))


def _assert_fresh_process_matches_the_model(result, model):
  assert result["modules"] == []
  assert result["unregistered_ops"] == []
  assert {"HashTableV2", "LookupTableFindV2", "ParseExampleV2", "TopKV2"} <= set(result["ops"])
  outputs = {signature: {name: np.array(value) for name, value in out.items()}
             for signature, out in result["outputs"].items()}
  expected_examples = expected_ctr(model, predict_request())
  assert_outputs_close(outputs[spec_lib.SERVING_DEFAULT], expected_examples)
  assert_outputs_close(outputs[spec_lib.SERVING_INDICES], expected_examples)
  assert_outputs_close(outputs[spec_lib.PREDICT], expected_examples)
  assert_outputs_close(outputs[spec_lib.RECOMMEND],
                       expected_recommendations(model, recommend_request()))
  for signature, expected in expected_api_outputs(model).items():
    expected = {name: value.astype(str) if value.dtype.kind == "S" else value
                for name, value in expected.items()}
    assert_outputs_close(outputs[signature], expected)


def test_export_loads_without_dasl_tf_and_matches_the_model(setup, fresh_process):
  _assert_fresh_process_matches_the_model(fresh_process, setup.model)


def _xla_functions(export_dir):
  """Names of the SavedModel's functions marked ``_XlaMustCompile``."""
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  return {function.signature.name for meta_graph in saved_model.meta_graphs
          for function in meta_graph.graph_def.library.function
          if function.attr.get("_XlaMustCompile") and function.attr["_XlaMustCompile"].b}


def test_a_jit_compiled_export_marks_the_model_for_xla_and_matches_the_model(setup, tmp_path):
  """``--jit_compile``: the same outputs in a TensorFlow-only process and in a Session
  (TensorFlow Serving's way of running a SavedModel); the default export has no XLA."""
  export_dir = export.export_model(setup.model_dir, str(tmp_path / "exports"), top_n=TOP_N,
                                   jit_compile=True)
  assert _xla_functions(export_dir) and not _xla_functions(setup.export_dir)
  _assert_fresh_process_matches_the_model(_run_in_fresh_process(export_dir, tmp_path),
                                          setup.model)
  graph = tf.Graph()
  with tf.compat.v1.Session(graph=graph) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, [tf.saved_model.SERVING],
                                                      export_dir)
    signature = meta_graph.signature_def[spec_lib.PREDICT]
    request = predict_request()
    ctr = session.run(signature.outputs["ctr"].name,
                      {signature.inputs[name].name: value for name, value in request.items()})
  np.testing.assert_allclose(ctr, expected_ctr(setup.model, request)["ctr"], atol=1e-5)


def test_ctr_is_the_head_of_the_examples_domain(setup):
  outputs = call_signature(setup.loaded, spec_lib.PREDICT, predict_request())
  in_a = predict_request()[F.DOMAIN] == F.DOMAIN_A
  np.testing.assert_array_equal(outputs["ctr"], np.where(in_a, outputs["ctr_a"], outputs["ctr_b"]))


def test_recommend_never_ranks_padding_above_a_candidate(setup):
  outputs = call_signature(setup.loaded, spec_lib.RECOMMEND, recommend_request())
  # Row 1 has 9 real candidates and 5 padding slots: the 10th result is padding.
  np.testing.assert_array_equal(outputs[spec_lib.ITEM_IDS][1, 9], PAD)
  assert outputs[spec_lib.SCORES][1, 9] == 0.0
  assert set(outputs[spec_lib.ITEM_IDS][1, :9]) == set(range(7000, 7009))
  assert np.all(np.diff(outputs[spec_lib.SCORES], axis=1) <= 0)


def test_recommend_returns_all_candidates_when_fewer_than_top_n(setup):
  request = recommend_request()
  request[spec_lib.CANDIDATES] = request[spec_lib.CANDIDATES][:, :3]
  outputs = call_signature(setup.loaded, spec_lib.RECOMMEND, request)
  assert outputs[spec_lib.ITEM_IDS].shape == (2, 3)
  assert_outputs_close(outputs, expected_recommendations(setup.model, request))


def test_string_raw_ids_map_like_integer_ids(setup):
  string_export = string_id_export(setup)
  assert spec_lib.ServingSpec.load(string_export.export_dir).id_dtype == "string"
  loaded = string_export.loaded
  names = {F.USER_ID: "users", F.HIST_A: "items_a", F.HIST_B: "items_b"}

  def as_string(raw, kind):
    return np.array(["" if r == PAD else f"{kind}-{r}" for r in raw.reshape(-1)],
                    dtype=object).reshape(raw.shape)

  request = predict_request()
  in_a = request[F.DOMAIN] == F.DOMAIN_A
  string_request = {name: as_string(value, names[name]) for name, value in request.items()
                    if name in names}
  string_request[F.DOMAIN] = request[F.DOMAIN]
  string_request[F.ITEM_ID] = np.where(in_a, as_string(request[F.ITEM_ID], "items_a"),
                                       as_string(request[F.ITEM_ID], "items_b"))
  assert_outputs_close(call_signature(loaded, spec_lib.PREDICT, string_request),
                       expected_ctr(setup.model, request))


# --- what TensorFlow Serving reads ---------------------------------------------


def test_signature_inputs_are_those_the_serving_spec_defines(setup):
  """``ServingSpec.signature_inputs``, the one definition of the inputs, is what is exported."""
  string_export = string_id_export(setup)
  for export_dir, loaded in ((setup.export_dir, setup.loaded),
                             (string_export.export_dir, string_export.loaded)):
    serving_spec = spec_lib.ServingSpec.load(export_dir)
    for signature in spec_lib.SIGNATURES:
      exported = loaded.signatures[signature].structured_input_signature[1]
      assert {name: (spec.dtype.name, tuple(spec.shape.as_list()))
              for name, spec in exported.items()} == {
                  name: tuple(tensor_input)
                  for name, tensor_input in serving_spec.signature_inputs(signature).items()}


def test_saved_model_cli_lists_every_signature_with_its_method(fresh_process):
  stdout = fresh_process["show_all"]
  sections = re.split(r"signature_def\['(\w+)'\]:", stdout)[1:]
  found, methods = {}, {}
  for name, body in zip(sections[::2], sections[1::2]):
    inputs, outputs = body.split("The given SavedModel SignatureDef contains the following output")
    pattern = r"\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\))"
    found[name] = (set(re.findall(pattern, inputs)), set(re.findall(pattern, outputs)))
    methods[name] = re.search(r"Method name is: (\S*)", outputs).group(1)
  ctr = {(name, "DT_FLOAT", "(-1)") for name in spec_lib.CTR_OUTPUTS}
  raw = {(F.USER_ID, "DT_INT64", "(-1)"), (F.DOMAIN, "DT_INT64", "(-1)"),
         (F.HIST_A, "DT_INT64", "(-1, -1)"), (F.HIST_B, "DT_INT64", "(-1, -1)")}
  examples = {(spec_lib.EXAMPLES, "DT_STRING", "(-1)")}
  api_inputs = {(spec_lib.API_INPUTS, "DT_STRING", "(-1)")}
  assert found[spec_lib.SERVING_DEFAULT] == (examples, ctr)
  assert found[spec_lib.SERVING_INDICES] == (examples, ctr)
  assert found[spec_lib.PREDICT] == (raw | {(F.ITEM_ID, "DT_INT64", "(-1)")}, ctr)
  assert found[spec_lib.RECOMMEND] == (
      raw | {(spec_lib.CANDIDATES, "DT_INT64", "(-1, -1)")},
      {(spec_lib.ITEM_IDS, "DT_INT64", "(-1, -1)"), (spec_lib.SCORES, "DT_FLOAT", "(-1, -1)")})
  # The keys and method names TensorFlow Serving's Regress and Classify APIs require.
  assert found[spec_lib.REGRESS] == (api_inputs, {("outputs", "DT_FLOAT", "(-1)")})
  assert found[spec_lib.CLASSIFY] == (
      api_inputs, {("scores", "DT_FLOAT", "(-1, 2)"), ("classes", "DT_STRING", "(-1, 2)")})
  assert methods == {
      "__saved_model_init_op": "",
      spec_lib.SERVING_DEFAULT: "tensorflow/serving/predict",
      spec_lib.SERVING_INDICES: "tensorflow/serving/predict",
      spec_lib.PREDICT: "tensorflow/serving/predict",
      spec_lib.RECOMMEND: "tensorflow/serving/predict",
      spec_lib.REGRESS: "tensorflow/serving/regress",
      spec_lib.CLASSIFY: "tensorflow/serving/classify"}


def test_warmup_records_parse_and_run(setup):
  """Each signature has one warmup record, of the log kind its API replays, and it runs."""
  logs = warmup.read_warmup(setup.export_dir)
  kinds = {log.WhichOneof("log_type") for log in logs}
  assert kinds == {"predict_log", "regress_log", "classify_log"}
  called = []
  for log in logs:
    kind = log.WhichOneof("log_type")
    request = getattr(log, kind).request
    assert request.model_spec.name == "dasl"
    signature = request.model_spec.signature_name
    if kind == "predict_log":
      inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    else:
      assert signature == {"regress_log": spec_lib.REGRESS, "classify_log": spec_lib.CLASSIFY}[kind]
      inputs = {spec_lib.API_INPUTS: np.array(
          [e.SerializeToString() for e in request.input.example_list.examples], dtype=object)}
    outputs = call_signature(setup.loaded, signature, inputs)
    assert sorted(outputs) == sorted(spec_lib.SIGNATURE_OUTPUTS[signature])
    called.append(signature)
  assert sorted(called) == sorted(spec_lib.SIGNATURES)


# --- bad requests ------------------------------------------------------------------


def _example(**overrides):
  feature = {F.USER_ID: [2], F.ITEM_ID: [2], F.DOMAIN: [0], F.HIST_A: [0] * T,
             F.HIST_B: [0] * T}
  feature.update(overrides)
  proto = {}
  for name, values in feature.items():
    if values is None:
      continue
    if isinstance(values[0], float):
      proto[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    else:
      proto[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  return tf.train.Example(features=tf.train.Features(feature=proto)).SerializeToString()


@pytest.mark.parametrize("overrides, message", [
    ({F.HIST_A: None}, "hist_a"),
    ({F.USER_ID: [2.0]}, "user_id"),
    ({F.HIST_B: [2] * (T + 1)}, "hist_b"),
    ({F.DOMAIN: [2]}, "domain must be 0"),
    ({F.USER_ID: [RAW["users"][1] + 2]}, "user_id holds an index outside"),
    ({F.HIST_A: [0, 0, 0, 0, RAW["items_a"][1] + 2]}, "hist_a holds an index outside"),
    ({F.ITEM_ID: [RAW["items_b"][1] + 2], F.DOMAIN: [1]}, "item_id holds an index outside"),
])
def test_serving_indices_rejects_bad_examples(setup, overrides, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    setup.loaded.signatures[spec_lib.SERVING_INDICES](examples=tf.constant([_example(**overrides)]))


_RAW = {F.USER_ID: 1000, F.ITEM_ID: 5000, F.DOMAIN: 0, F.HIST_A: [5001], F.HIST_B: [7001]}


@pytest.mark.parametrize("signature", spec_lib.RAW_EXAMPLE_SIGNATURES)
@pytest.mark.parametrize("overrides, message", [
    ({F.USER_ID: None}, "user_id .*is required"),
    ({F.ITEM_ID: [5000, 5001]}, "item_id"),
    ({F.USER_ID: [1000.0]}, "user_id"),
    ({F.USER_ID: ["1000"]}, "user_id"),
    ({F.HIST_A: [5001] * (T + 1)}, "hist_a holds more than history_length=5"),
    ({F.DOMAIN: 2}, "domain must be 0"),
])
def test_raw_example_signatures_reject_bad_examples(setup, signature, overrides, message):
  features = {k: v for k, v in dict(_RAW, **overrides).items() if v is not None}
  (name,) = spec_lib.SIGNATURE_INPUTS[signature]
  good = setup.loaded.signatures[signature](**{name: tf.constant([raw_example(**_RAW)])})
  assert all(np.isfinite(v.numpy()).all() for v in good.values() if v.dtype.is_floating)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    setup.loaded.signatures[signature](**{name: tf.constant([raw_example(**features)])})


def test_raw_examples_map_unknown_ids_to_oov_and_missing_histories_to_empty(setup):
  """Unknown raw ids score as OOV (1), never as an error or another row; no history = empty."""
  request = {F.USER_ID: np.array([UNKNOWN], np.int64), F.ITEM_ID: np.array([UNKNOWN], np.int64),
             F.DOMAIN: np.array([1], np.int64), F.HIST_A: np.full((1, T), PAD, np.int64),
             F.HIST_B: np.array([[PAD, PAD, PAD, UNKNOWN, 7002]], np.int64)}
  expected = expected_ctr(setup.model, request)
  assert indexed_features(request)[F.USER_ID].tolist() == [F.OOV_ID]
  example = raw_example(user_id=UNKNOWN, item_id=UNKNOWN, domain=1, hist_b=[UNKNOWN, 7002])
  outputs = call_signature(setup.loaded, spec_lib.SERVING_DEFAULT,
                           {spec_lib.EXAMPLES: np.array([example], dtype=object)})
  assert_outputs_close(outputs, expected)


def test_index_examples_sent_to_serving_default_are_not_read_as_indices(setup):
  """The old contract (indices) through the raw-id signature: raw ids 2.. are unknown ids."""
  indices = call_signature(setup.loaded, spec_lib.SERVING_INDICES, examples_request())
  as_raw = call_signature(setup.loaded, spec_lib.SERVING_DEFAULT, examples_request())
  features = indexed_features(predict_request())
  oov = {F.USER_ID: np.full(3, F.OOV_ID), F.ITEM_ID: np.full(3, F.OOV_ID),
         F.DOMAIN: features[F.DOMAIN],
         F.HIST_A: np.full((3, T), F.OOV_ID), F.HIST_B: np.full((3, T), F.OOV_ID)}
  expected = {name: value.numpy() for name, value in setup.model.predict_ctr(
      {k: tf.constant(v) for k, v in oov.items()}).items()}
  assert_outputs_close(as_raw, expected)
  assert not np.allclose(as_raw["ctr"], indices["ctr"])


def _bad_predict(name, value):
  request = {k: tf.constant(v) for k, v in predict_request().items()}
  if value is None:
    del request[name]
  else:
    request[name] = value
  return request


@pytest.mark.parametrize("name, value, error, message", [
    (F.HIST_B, None, TypeError, "hist_b"),
    # TensorFlow checks dtypes itself, naming the input by position in the sorted names.
    (F.USER_ID, tf.constant([1.0, 2.0, 3.0]), tf.errors.InvalidArgumentError,
     "expected to be a int64 tensor but is a float tensor"),
    (F.USER_ID, tf.constant(["1000", "1", "2"]), tf.errors.InvalidArgumentError,
     "expected to be a int64 tensor but is a string tensor"),
    # A wrong rank reaches the graph (as in TensorFlow Serving) and is caught there.
    (F.HIST_A, tf.constant([5001, 5002, 5003], tf.int64), tf.errors.InvalidArgumentError,
     "hist_a.* is not compatible with expected shape"),
    (F.HIST_A, tf.constant([[5001] * (T + 1)] * 3, tf.int64), tf.errors.InvalidArgumentError,
     "hist_a holds more than history_length=5"),
    (F.ITEM_ID, tf.constant([5000, 5001], tf.int64), tf.errors.InvalidArgumentError,
     "item_id must have one row per user_id"),
    (F.DOMAIN, tf.constant([0, 1, -1], tf.int64), tf.errors.InvalidArgumentError,
     "domain must be 0"),
])
def test_predict_rejects_bad_requests(setup, name, value, error, message):
  with pytest.raises(error, match=message):
    setup.loaded.signatures[spec_lib.PREDICT](**_bad_predict(name, value))


def test_recommend_rejects_candidates_of_another_batch_size(setup):
  request = {k: tf.constant(v) for k, v in recommend_request().items()}
  request[spec_lib.CANDIDATES] = request[spec_lib.CANDIDATES][:1]
  with pytest.raises(tf.errors.InvalidArgumentError, match="candidates must have one row"):
    setup.loaded.signatures[spec_lib.RECOMMEND](**request)


# --- versions ------------------------------------------------------------------------


def test_a_second_export_never_clobbers_the_first(setup):
  with pytest.raises(FileExistsError, match="--overwrite"):
    export.export_model(setup.model_dir, setup.export_base, version=1)
  second = string_id_export(setup).export_dir
  assert second == os.path.join(setup.export_base, "2")
  assert _tree_digest(setup.export_dir) == setup.export_digest
  assert _tree_digest(setup.model_dir) == setup.model_digest


@pytest.fixture(scope="module")
def export_flags():
  """The ``dasl-export`` flags, defined once for the in-process command-line tests."""
  export.define_flags()


def _run_cli(argv):
  """Runs ``dasl-export`` in-process; returns its exit code (None or 0 on success)."""
  with pytest.raises(SystemExit) as exit_info:
    cli.run_command("dasl-export", export._main, argv=["dasl-export", *argv])
  return exit_info.value.code


def test_cli_refusals_write_nothing_under_the_export_base(setup, export_flags, tmp_path, capsys):
  export_base = tmp_path / "exports"
  assert _run_cli(["--model_dir", str(tmp_path / "no_model"),
                   "--export_base", str(export_base)]) == 2
  assert "holds no finished dasl_tf model" in capsys.readouterr().err
  assert _run_cli(["--model_dir", setup.model_dir, "--export_base", str(export_base),
                   "--top_n", "0"]) == 2
  assert "top_n must be at least 1" in capsys.readouterr().err
  assert not export_base.exists()


def test_cli_refuses_an_existing_version_and_replaces_it_with_overwrite(setup, export_flags,
                                                                      capsys):
  string_model_dir = string_id_export(setup).model_dir
  argv = ["--model_dir", string_model_dir, "--export_base", setup.export_base,
          "--version", "2", "--top_n", "3"]
  assert _run_cli(argv) != 0
  assert "already exists; pass --overwrite" in capsys.readouterr().err
  assert _run_cli(argv + ["--overwrite"]) in (None, 0)
  assert spec_lib.ServingSpec.load(os.path.join(setup.export_base, "2")).top_n == 3
  assert sorted(os.listdir(setup.export_base)) == ["1", "2"]  # no staging directory left
  assert _tree_digest(setup.export_dir) == setup.export_digest


@pytest.mark.parametrize("version", [0, -3, 2**63])
def test_versions_outside_int64_or_below_one_are_refused(setup, export_flags, tmp_path, capsys,
                                                         version):
  export_base = str(tmp_path / "exports")
  with pytest.raises(ValueError, match=f"from 1 to {2**63 - 1} .*int64.*got {version}"):
    export.export_model(setup.model_dir, export_base, version=version)
  assert _run_cli(["--model_dir", setup.model_dir, "--export_base", export_base,
                   f"--version={version}"]) != 0
  assert f"got {version}" in capsys.readouterr().err
  assert not os.path.exists(export_base)


def test_the_version_after_the_largest_int64_is_refused(setup, tmp_path):
  (tmp_path / str(2**63 - 1)).mkdir()
  with pytest.raises(ValueError, match=f"got {2**63}"):
    export.export_model(setup.model_dir, str(tmp_path))
  assert os.listdir(tmp_path) == [str(2**63 - 1)]


def test_overwrite_never_replaces_a_directory_without_a_saved_model(setup, tmp_path):
  foreign = tmp_path / "5"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("not an export")
  with pytest.raises(FileExistsError, match="not a SavedModel version written by dasl_tf"):
    export.export_model(setup.model_dir, str(tmp_path), version=5, overwrite=True)
  assert os.listdir(tmp_path) == ["5"] and os.listdir(foreign) == ["notes.txt"]


class _InjectedFailure(RuntimeError):
  pass


@pytest.fixture
def failing_warmup(monkeypatch):
  """Makes the export fail after the SavedModel was written; records the directory it wrote."""
  written = []

  def write_warmup(logs, export_dir):
    del logs
    assert os.path.exists(os.path.join(export_dir, "saved_model.pb"))
    written.append(export_dir)
    raise _InjectedFailure("killed mid-export")

  monkeypatch.setattr(warmup, "write_warmup", write_warmup)
  return written


def test_a_failed_export_publishes_nothing_and_leaves_no_staging(setup, tmp_path,
                                                                  failing_warmup):
  export_base = str(tmp_path / "exports")
  with pytest.raises(_InjectedFailure):
    export.export_model(setup.model_dir, export_base, version=3)
  (staging_dir,) = failing_warmup
  assert os.path.dirname(staging_dir) == export_base
  assert staging_dir != os.path.join(export_base, "3")
  assert os.listdir(export_base) == []


def test_a_failed_overwrite_leaves_the_old_version_byte_identical(setup, tmp_path,
                                                                   failing_warmup):
  export_base = str(tmp_path / "exports")
  old_version = os.path.join(export_base, "1")
  shutil.copytree(setup.export_dir, old_version)
  digest = _tree_digest(old_version)
  with pytest.raises(_InjectedFailure):
    export.export_model(setup.model_dir, export_base, version=1, overwrite=True, top_n=3)
  assert failing_warmup
  assert os.listdir(export_base) == ["1"]
  assert _tree_digest(old_version) == digest


def test_a_killed_runs_staging_directory_is_removed_and_never_published(setup, tmp_path):
  export_base = tmp_path / "exports"
  leftover = export_base / f"1{publish.STAGING_INFIX}00000000deadbeef-0a1b2c3d"
  shutil.copytree(setup.export_dir, leftover)
  (leftover / "from_the_killed_run").write_text("half an export")
  version_dir = export.export_model(setup.model_dir, str(export_base), top_n=3)
  assert version_dir == str(export_base / "1")
  assert os.listdir(export_base) == ["1"]
  assert not os.path.exists(os.path.join(version_dir, "from_the_killed_run"))
  assert spec_lib.ServingSpec.load(version_dir).top_n == 3


def test_vocabulary_that_does_not_match_the_model_is_rejected(setup, tmp_path):
  vocab_dir = tmp_path / "vocab"
  _vocab_files(str(vocab_dir), "int")
  with open(vocab_dir / "items_b.txt", "a") as f:
    f.write("7999\n")
  with pytest.raises(ValueError, match="items_b.txt holds 10 ids"):
    signatures.ServingModule(setup.model, setup.experiment.model, str(vocab_dir),
                             spec_lib.ServingSpec(F.feature_spec_for(setup.experiment.model)))


def test_loading_weights_that_do_not_cover_the_model_fails_by_name(setup, tmp_path):
  """A config edited after training (here: wider GRUs) must not yield half-random weights."""
  model_dir = str(tmp_path / "model")
  shutil.copytree(setup.model_dir, model_dir)
  edited = setup.experiment.replace(model=setup.experiment.model.replace(gru_units=12))
  edited.save(os.path.join(model_dir, model_io.CONFIG_FILE))
  with pytest.raises(ValueError, match=r"saved weights do not match .*config\.json"):
    model_io.load_model(model_dir)


@pytest.fixture(scope="module")
def side_feature_export(setup):
  """An export of a model with numeric user and item side features."""
  model_config = setup.experiment.model.replace(user_num_dim=2, item_num_dim=1)
  experiment = config_lib.ExperimentConfig(model=model_config)
  model = model_io.build_model(model_config)
  model_dir = _model_dir(str(setup.root / "model_side_features"), model, experiment, "int")
  export_dir = export.export_model(model_dir, str(setup.root / "side_exports"), top_n=TOP_N)
  return tf.saved_model.load(export_dir)


@pytest.mark.parametrize("name, bad", [(F.USER_NUM, np.nan), (F.ITEM_NUM, np.inf),
                                       (F.USER_NUM, -np.inf)])
def test_non_finite_numeric_features_are_rejected_not_scored(side_feature_export, name, bad):
  request = {k: tf.constant(v) for k, v in predict_request().items()}
  numeric = {F.USER_NUM: np.ones((3, 2), np.float32), F.ITEM_NUM: np.ones((3, 1), np.float32)}
  scores = side_feature_export.signatures[spec_lib.PREDICT](
      **request, **{k: tf.constant(v) for k, v in numeric.items()})
  assert np.isfinite(scores["ctr"].numpy()).all()
  numeric[name][1, 0] = bad
  with pytest.raises(tf.errors.InvalidArgumentError, match=f"{name} holds NaN or infinite"):
    side_feature_export.signatures[spec_lib.PREDICT](
        **request, **{k: tf.constant(v) for k, v in numeric.items()})
  numeric_features = {name: [1.0, bad] if name == F.USER_NUM else [bad]}
  numeric_features.update({other: [1.0] * width for other, width in
                           ((F.USER_NUM, 2), (F.ITEM_NUM, 1)) if other != name})
  for signature, example in ((spec_lib.SERVING_INDICES, _example(**numeric_features)),
                             (spec_lib.SERVING_DEFAULT, raw_example(**_RAW, **numeric_features))):
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{name} holds NaN or infinite"):
      side_feature_export.signatures[signature](examples=tf.constant([example]))


_WIDTH_SIGNATURES = spec_lib.RAW_EXAMPLE_SIGNATURES + (spec_lib.PREDICT, spec_lib.RECOMMEND)
_SIDE_WIDTHS = {F.USER_NUM: 2, F.ITEM_NUM: 1}  # those of side_feature_export


def _width_request(signature, name=None, width=None):
  """A two-row request of ``side_feature_export``; ``name`` (if any) sent ``width`` values per row.

  The histories hold 2 < T ids per row: a short history is a valid one.
  """
  rows = {F.USER_ID: [1000, 1001], F.ITEM_ID: [5000, 7001], F.DOMAIN: [0, 1],
          F.HIST_A: [[5001, 5002]] * 2, F.HIST_B: [[7001, 7002]] * 2,
          F.USER_NUM: [[0.5, 0.25]] * 2, F.ITEM_NUM: [[0.5]] * 2,
          spec_lib.CANDIDATES: [[5000, 5001, 5002], [7000, 7001, PAD]]}
  if name is not None:
    fill = {F.HIST_A: 5001, F.HIST_B: 7001}.get(name, 0.5)
    rows[name] = [[fill] * width] * 2
  if signature in spec_lib.RAW_EXAMPLE_SIGNATURES:
    (key,) = spec_lib.SIGNATURE_INPUTS[signature]
    examples = [raw_example(**{k: rows[k][i] for k in spec_lib.RAW_FEATURES if k in rows})
                for i in range(2)]
    return {key: tf.constant(examples)}
  return {k: tf.constant(np.array(rows[k], np.float32 if k in _SIDE_WIDTHS else np.int64))
          for k in spec_lib.SIGNATURE_INPUTS[signature] if k in rows}


_WIDTH_CASES = [
    (F.HIST_A, T + 1, "hist_a holds more than history_length=5"),
    (F.HIST_B, T + 1, "hist_b holds more than history_length=5"),
    (F.USER_NUM, 3, "user_num must have 2 values per"),
    (F.USER_NUM, 1, "user_num must have 2 values per"),
    (F.ITEM_NUM, 2, "item_num must have 1 values per"),
]


@pytest.mark.parametrize("signature, name, width, message", [
    (signature, *case) for signature in _WIDTH_SIGNATURES for case in _WIDTH_CASES
    if case[0] in spec_lib.SIGNATURE_INPUTS[signature]
    or signature in spec_lib.RAW_EXAMPLE_SIGNATURES])
def test_every_signature_checks_the_width_of_every_input(side_feature_export, signature, name,
                                                         width, message):
  """Short histories are scored; an overlong one, or a side feature of another width, fails."""
  call = side_feature_export.signatures[signature]
  good = call(**_width_request(signature))
  assert all(np.isfinite(v.numpy()).all() for v in good.values() if v.dtype.is_floating)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    call(**_width_request(signature, name, width))
