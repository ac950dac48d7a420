"""dasl-export of a model of K = 3 domains: signatures, vocabularies, warmup, client, spec.

The export of a small DASL model of three domains (random weights, integer raw
ids) is made once per module; every signature is run in a TensorFlow-only
process and compared with the in-memory model.
"""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf import model_io
from dasl_tf.serving import export
from dasl_tf.serving import signatures
from dasl_tf.serving import spec as spec_lib
from dasl_tf.serving import warmup
from dasl_tf.serving.client import DaslClient
from tests.test_serving import assert_outputs_close
from tests.test_serving import call_signature
from tests.test_serving import model_ctr
from tests.test_serving import model_recommendations
from tests.test_serving import random_weights_model
from tests.test_serving import run_in_fresh_process
from tests.test_serving import raw_example

K = 3
T = 4
TOP_N = 5
# Raw ids: users 1000.., items of A 5000.., of B 7000.., of C 9000.. (index = raw - base + 2).
RAW = {"users": (1000, 8), "items_a": (5000, 10), "items_b": (7000, 9), "items_c": (9000, 7)}
ITEMS = tuple(f"items_{F.domain_suffix(d)}" for d in range(K))
HISTORIES = tuple(F.history_key(d) for d in range(K))
UNKNOWN = 424242
PAD = -1


def _write_model_dir(path, model, experiment):
  """A trained model directory of three domains: vocabularies, config, schema, weights."""
  vocab_dir = os.path.join(path, model_io.VOCAB_DIR)
  os.makedirs(vocab_dir)
  for kind, (base, size) in RAW.items():
    with open(os.path.join(vocab_dir, f"{kind}.txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(str(base + i) for i in range(size)) + "\n")
  experiment.save(os.path.join(path, model_io.CONFIG_FILE))
  config = experiment.model
  F.DatasetSchema(feature_spec=F.feature_spec_for(config), num_users=config.num_users,
                  num_items_a=config.num_items_a, num_items_b=config.num_items_b,
                  num_items_more=config.num_items_more, domain_names=("A", "B", "C")).save(path)
  model_io.save_final_weights(model, path)
  return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """The model of three domains, its directory, its export and the loaded export."""
  sizes = [RAW[kind][1] + F.NUM_RESERVED_IDS for kind in ITEMS]
  model_config = config_lib.ModelConfig(
      variant="dasl", num_users=RAW["users"][1] + 2, num_items_a=sizes[0], num_items_b=sizes[1],
      num_items_more=tuple(sizes[2:]), history_length=T, embedding_dim=8, gru_units=8,
      attention_dim=8, hidden_units=(8,))
  experiment = config_lib.ExperimentConfig(model=model_config)
  model = random_weights_model(model_config, seed=11)
  root = tmp_path_factory.mktemp("serving_k")
  model_dir = _write_model_dir(str(root / "model"), model, experiment)
  export_dir = export.export_model(model_dir, str(root / "exports"), top_n=TOP_N)
  return dict(model=model, config=model_config, model_dir=model_dir, export_dir=export_dir,
              loaded=tf.saved_model.load(export_dir))


# --- requests and their in-memory references -----------------------------------


def to_index(raw, kind, sequence):
  """Vocabulary indices of integer raw ids, as the export maps them."""
  base, size = RAW[kind]
  raw = np.asarray(raw, np.int64)
  index = np.where((raw >= base) & (raw < base + size), raw - base + F.NUM_RESERVED_IDS,
                   F.OOV_ID)
  return np.where(raw == PAD, F.PAD_ID, index) if sequence else index


def of_own_domain(raw, domain, sequence):
  """Indices of raw item ids ([batch] or [batch, n]) in the vocabulary of each row's domain."""
  domain = domain.reshape((-1,) + (1,) * (raw.ndim - 1))
  return np.choose(np.broadcast_to(domain, raw.shape),
                   [to_index(raw, kind, sequence) for kind in ITEMS])


def predict_request():
  """Raw ``predict`` inputs of every domain: unknown ids (one in hist_c), padding, short histories."""
  return {
      F.USER_ID: np.array([1000, 1003, UNKNOWN, 1005], np.int64),
      F.ITEM_ID: np.array([5000, 7004, 9002, UNKNOWN], np.int64),
      F.DOMAIN: np.array([0, 1, 2, 2], np.int64),
      HISTORIES[0]: np.array([[PAD, 5001, 5002], [5003, 5004, 5009], [PAD, PAD, PAD],
                              [PAD, PAD, 5005]], np.int64),
      HISTORIES[1]: np.array([[PAD, PAD, 7001], [PAD, PAD, PAD], [7002, 7003, 7008],
                              [PAD, 7000, 7001]], np.int64),
      HISTORIES[2]: np.array([[9000, 9001, 9006], [PAD, UNKNOWN, 9003], [PAD, PAD, 9004],
                              [PAD, PAD, PAD]], np.int64),
  }


# The candidates of one user of each domain (some unknown), before padding.
CANDIDATES = ([5000 + i for i in range(10)] + [UNKNOWN], [7000 + i for i in range(9)],
              [9000 + i for i in range(7)] + [UNKNOWN])
CANDIDATES_PER_ROW = 11


def recommend_request():
  """Rows 0, 1, 2 of ``predict_request`` (domains A, B, C), candidates of their domains, padded."""
  request = {name: value[:K] for name, value in predict_request().items() if name != F.ITEM_ID}
  assert request[F.DOMAIN].tolist() == list(range(K))
  request[spec_lib.CANDIDATES] = np.array(
      [ids + [PAD] * (CANDIDATES_PER_ROW - len(ids)) for ids in CANDIDATES], np.int64)
  return request


def indexed_features(request):
  """The model features the export should derive from a raw request (histories left-padded)."""
  features = {F.USER_ID: to_index(request[F.USER_ID], "users", False),
              F.DOMAIN: request[F.DOMAIN]}
  for name, kind in zip(HISTORIES, ITEMS):
    indices = to_index(request[name], kind, True)
    features[name] = np.pad(indices, [(0, 0), (T - indices.shape[1], 0)])
  if F.ITEM_ID in request:
    features[F.ITEM_ID] = of_own_domain(request[F.ITEM_ID], request[F.DOMAIN], False)
  return features


def expected_ctr(model, request):
  return model_ctr(model, indexed_features(request))


def expected_recommendations(model, request):
  raw = request[spec_lib.CANDIDATES]
  return model_recommendations(model, indexed_features(request),
                               of_own_domain(raw, request[F.DOMAIN], True), raw, TOP_N)


def raw_examples_request(key=spec_lib.EXAMPLES):
  """``predict_request`` as raw-id ``tf.Example`` records; an empty history is left out."""
  request = predict_request()
  examples = []
  for i in range(len(request[F.USER_ID])):
    features = {}
    for name, value in request.items():
      row = value[i][value[i] != PAD] if value.ndim == 2 else value[i]
      if np.size(row):
        features[name] = row
    examples.append(raw_example(**features))
  return {key: np.array(examples, dtype=object)}


def examples_request():
  """``serving_indices`` inputs: the features of ``predict_request`` as vocabulary indices."""
  features = indexed_features(predict_request())
  spec = F.FeatureSpec(history_length=T, num_domains=K)
  rows = [{name: value[i] for name, value in features.items()} for i in range(4)]
  return {spec_lib.EXAMPLES: np.array([spec.encode(row) for row in rows], dtype=object)}


# --- the export in a fresh TensorFlow-only process --------------------------------


@pytest.fixture(scope="module")
def fresh_process(setup, tmp_path_factory):
  """Every signature and `saved_model_cli show --all`, run without dasl_tf or TFRS."""
  tmp_path = tmp_path_factory.mktemp("fresh_process_k")
  requests = {spec_lib.SERVING_DEFAULT: raw_examples_request(),
              spec_lib.SERVING_INDICES: examples_request(), spec_lib.PREDICT: predict_request(),
              spec_lib.RECOMMEND: recommend_request(),
              spec_lib.REGRESS: raw_examples_request(spec_lib.API_INPUTS),
              spec_lib.CLASSIFY: raw_examples_request(spec_lib.API_INPUTS)}
  return run_in_fresh_process(setup["export_dir"], requests, tmp_path)


def test_every_signature_matches_the_model_in_a_tensorflow_only_process(setup, fresh_process):
  assert fresh_process["modules"] == [] and fresh_process["unregistered_ops"] == []
  outputs = {signature: {name: np.array(value) for name, value in out.items()}
             for signature, out in fresh_process["outputs"].items()}
  expected = expected_ctr(setup["model"], predict_request())
  assert sorted(expected) == ["ctr", "ctr_a", "ctr_b", "ctr_c"]
  for signature in (spec_lib.SERVING_DEFAULT, spec_lib.SERVING_INDICES, spec_lib.PREDICT):
    assert_outputs_close(outputs[signature], expected)
  assert_outputs_close(outputs[spec_lib.RECOMMEND],
                       expected_recommendations(setup["model"], recommend_request()))
  ctr = expected["ctr"]
  assert_outputs_close(outputs[spec_lib.REGRESS], {spec_lib.REGRESS_OUTPUTS: ctr})
  assert_outputs_close(outputs[spec_lib.CLASSIFY], {
      spec_lib.CLASSIFY_SCORES: np.stack([1.0 - ctr, ctr], axis=1),
      spec_lib.CLASSIFY_CLASSES: np.array([["0", "1"]] * len(ctr))})


def test_ctr_is_the_head_of_each_examples_domain(setup):
  outputs = call_signature(setup["loaded"], spec_lib.PREDICT, predict_request())
  own = np.choose(predict_request()[F.DOMAIN], [outputs[f"ctr_{s}"] for s in "abc"])
  np.testing.assert_array_equal(outputs["ctr"], own)


def test_saved_model_cli_lists_hist_c_and_ctr_c(fresh_process):
  sections = re.split(r"signature_def\['(\w+)'\]:", fresh_process["show_all"])[1:]
  listed = {}
  for name, body in zip(sections[::2], sections[1::2]):
    listed[name] = set(re.findall(r"\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\))",
                                  body))
  histories = {(name, "DT_INT64", "(-1, -1)") for name in HISTORIES}
  ctr = {(name, "DT_FLOAT", "(-1)") for name in ("ctr_a", "ctr_b", "ctr_c", "ctr")}
  assert histories | ctr <= listed[spec_lib.PREDICT]
  assert histories <= listed[spec_lib.RECOMMEND]
  assert ctr <= listed[spec_lib.SERVING_DEFAULT] and ctr <= listed[spec_lib.SERVING_INDICES]


def test_the_export_holds_a_vocabulary_per_domain_and_records_k(setup):
  assert sorted(os.listdir(os.path.join(setup["export_dir"], "assets"))) == [
      "items_a.txt", "items_b.txt", "items_c.txt", "users.txt"]
  spec = spec_lib.ServingSpec.load(setup["export_dir"])
  assert spec.num_domains == K and spec.histories == HISTORIES
  with open(os.path.join(setup["export_dir"], spec_lib.ASSETS_EXTRA, spec_lib.SPEC_FILE),
            encoding="utf-8") as f:
    assert json.load(f)["feature_spec"]["num_domains"] == K
  for signature in spec_lib.SIGNATURES:
    exported = setup["loaded"].signatures[signature].structured_input_signature[1]
    assert sorted(exported) == sorted(spec.signature_inputs(signature))
    assert sorted(setup["loaded"].signatures[signature].structured_outputs) == sorted(
        spec.signature_outputs(signature))


def test_an_unknown_id_in_hist_c_reads_the_oov_row(setup):
  """An unknown raw id of domain C scores as an explicit OOV index; a known one does not."""
  request = {name: value[:1] for name, value in predict_request().items()}
  request[HISTORIES[2]] = np.array([[9000, UNKNOWN, 9003]], np.int64)
  features = indexed_features(request)
  assert features[HISTORIES[2]].tolist() == [[F.PAD_ID, 2, F.OOV_ID, 5]]
  raw = call_signature(setup["loaded"], spec_lib.PREDICT, request)
  encoded = F.FeatureSpec(history_length=T, num_domains=K).encode(
      {name: value[0] for name, value in features.items()})
  indices = call_signature(setup["loaded"], spec_lib.SERVING_INDICES,
                           {spec_lib.EXAMPLES: np.array([encoded], dtype=object)})
  assert_outputs_close(raw, indices)
  assert_outputs_close(raw, expected_ctr(setup["model"], request))
  request[HISTORIES[2]] = np.array([[9000, 9001, 9003]], np.int64)
  known = call_signature(setup["loaded"], spec_lib.PREDICT, request)
  assert not np.allclose(known["ctr_a"], raw["ctr_a"])


def test_items_of_domain_c_are_looked_up_in_domain_cs_vocabulary(setup):
  """Raw id 9002 is item 4 of C; sent as an item of A or B it would be unknown (OOV)."""
  request = {name: value[2:3] for name, value in predict_request().items()}
  assert indexed_features(request)[F.ITEM_ID].tolist() == [4]
  outputs = call_signature(setup["loaded"], spec_lib.PREDICT, request)
  assert_outputs_close(outputs, expected_ctr(setup["model"], request))
  oov = dict(indexed_features(request), **{F.ITEM_ID: np.array([F.OOV_ID])})
  as_oov = setup["model"].predict_ctr({k: tf.constant(v) for k, v in oov.items()})
  assert not np.allclose(outputs["ctr"], as_oov["ctr"].numpy())


@pytest.mark.parametrize("domain", [3, -1])
def test_a_domain_outside_0_to_k_minus_1_is_rejected(setup, domain):
  request = predict_request()
  request[F.DOMAIN] = np.array([0, 1, 2, domain], np.int64)
  message = r"domain must be 0 \(A\), 1 \(B\) or 2 \(C\)"
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    call_signature(setup["loaded"], spec_lib.PREDICT, request)
  example = raw_example(user_id=1000, item_id=5000, domain=domain)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    call_signature(setup["loaded"], spec_lib.SERVING_DEFAULT,
                   {spec_lib.EXAMPLES: np.array([example], dtype=object)})


@pytest.mark.parametrize("name", [HISTORIES[2], F.ITEM_ID])
def test_serving_indices_rejects_an_index_outside_domain_cs_vocabulary(setup, name):
  """Index 9 is past C's vocabulary (9 ids with the reserved ones), not past A's or B's."""
  features = {key: value[2] for key, value in indexed_features(predict_request()).items()}
  assert features[F.DOMAIN] == 2
  encode = F.FeatureSpec(history_length=T, num_domains=K).encode
  call_signature(setup["loaded"], spec_lib.SERVING_INDICES,
                 {spec_lib.EXAMPLES: np.array([encode(features)], dtype=object)})
  size_c = RAW["items_c"][1] + F.NUM_RESERVED_IDS
  features[name] = np.full_like(features[name], size_c)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=f"{name} holds an index outside its vocabulary"):
    call_signature(setup["loaded"], spec_lib.SERVING_INDICES,
                   {spec_lib.EXAMPLES: np.array([encode(features)], dtype=object)})


def test_an_overlong_hist_c_is_rejected_by_name(setup):
  request = predict_request()
  request[HISTORIES[2]] = np.full((4, T + 1), 9000, np.int64)
  with pytest.raises(tf.errors.InvalidArgumentError, match="hist_c holds more than history_length"):
    call_signature(setup["loaded"], spec_lib.PREDICT, request)


# --- warmup and client -------------------------------------------------------------


def test_warmup_records_parse_and_run_with_a_predict_row_per_domain(setup):
  logs = warmup.read_warmup(setup["export_dir"])
  called = []
  for log in logs:
    kind = log.WhichOneof("log_type")
    request = getattr(log, kind).request
    signature = request.model_spec.signature_name
    if kind == "predict_log":
      inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    else:
      inputs = {spec_lib.API_INPUTS: np.array(
          [e.SerializeToString() for e in request.input.example_list.examples], dtype=object)}
    if signature == spec_lib.PREDICT:
      assert inputs[F.DOMAIN].tolist() == [0, 1, 2]
      assert inputs[HISTORIES[2]].shape == (K, T)
    outputs = call_signature(setup["loaded"], signature, inputs)
    assert sorted(outputs) == sorted(spec_lib.ServingSpec.load(
        setup["export_dir"]).signature_outputs(signature))
    called.append(signature)
  assert sorted(called) == sorted(spec_lib.SIGNATURES)


# Raw rows equal to predict_request (histories unpadded); row 3 leaves hist_c out.
PREDICT_ROWS = [
    {"user_id": 1000, "item_id": 5000, "domain": 0, "hist_a": [5001, 5002], "hist_b": [7001],
     "hist_c": [9000, 9001, 9006]},
    {"user_id": 1003, "item_id": 7004, "domain": 1, "hist_a": [5003, 5004, 5009], "hist_b": [],
     "hist_c": [UNKNOWN, 9003]},
    {"user_id": UNKNOWN, "item_id": 9002, "domain": 2, "hist_a": [],
     "hist_b": [7002, 7003, 7008], "hist_c": [9004]},
    {"user_id": 1005, "item_id": UNKNOWN, "domain": 2, "hist_a": [5005], "hist_b": [7000, 7001]},
]


@pytest.fixture(scope="module")
def client(setup):
  with DaslClient(spec_lib.ServingSpec.load(setup["export_dir"])) as c:
    yield c


def test_the_client_builds_requests_of_three_histories(setup, client):
  expected = expected_ctr(setup["model"], predict_request())
  inputs = client.predict_inputs(PREDICT_ROWS)
  assert list(inputs) == list(client.spec.signature_inputs(spec_lib.PREDICT))
  np.testing.assert_array_equal(inputs[HISTORIES[2]][3], [PAD] * T)  # left out: empty
  assert_outputs_close(call_signature(setup["loaded"], spec_lib.PREDICT, inputs), expected)
  for signature, name in ((spec_lib.SERVING_DEFAULT, "ctr"),
                          (spec_lib.REGRESS, spec_lib.REGRESS_OUTPUTS)):
    outputs = call_signature(setup["loaded"], signature,
                             client.example_inputs(PREDICT_ROWS, signature))
    np.testing.assert_allclose(outputs[name], expected["ctr"], atol=1e-5, err_msg=signature)
  assert sorted(client.api_examples(PREDICT_ROWS)[3]) == [
      "domain", "hist_a", "hist_b", "item_id", "user_id"]
  rows = [dict({k: v for k, v in row.items() if k != F.ITEM_ID}, candidates=ids)
          for row, ids in zip(PREDICT_ROWS, CANDIDATES)]
  recommended = call_signature(setup["loaded"], spec_lib.RECOMMEND,
                               client.recommend_inputs(rows, pad_candidates_to=CANDIDATES_PER_ROW))
  assert_outputs_close(recommended, expected_recommendations(setup["model"], recommend_request()))


def test_the_client_rejects_a_domain_outside_k_and_checks_the_ctr_outputs(client):
  with pytest.raises(ValueError, match=r"domain must be 0 \(A\), 1 \(B\) or 2 \(C\), got 3"):
    client.predict_inputs([dict(PREDICT_ROWS[0], domain=3)])
  with pytest.raises(ValueError, match=r"unknown field\(s\) \['hist_d'\]"):
    client.predict_inputs([dict(PREDICT_ROWS[0], hist_d=[1])])
  with pytest.raises(ValueError, match="row 0: missing field 'hist_b'"):
    client.predict_inputs([{k: v for k, v in PREDICT_ROWS[0].items() if k != "hist_b"}])
  from dasl_tf.serving.client import ServingError  # pylint: disable=g-import-not-at-top
  from dasl_tf.serving.client import checked_outputs  # pylint: disable=g-import-not-at-top
  two = {name: np.zeros(1) for name in spec_lib.CTR_OUTPUTS}
  with pytest.raises(ServingError, match=r"lacks output\(s\) \['ctr_c'\]"):
    checked_outputs(two, spec_lib.PREDICT, 1, client.spec)


def test_a_serving_spec_of_another_k_than_the_model_is_refused(setup):
  with pytest.raises(errors.DataError, match="num_domains is 2, but the model has 3 domains"):
    signatures.ServingModule(setup["model"], setup["config"],
                             os.path.join(setup["model_dir"], model_io.VOCAB_DIR),
                             spec_lib.ServingSpec(F.FeatureSpec(history_length=T)))


# --- the spec file -------------------------------------------------------------------


def test_a_two_domain_spec_is_written_without_num_domains_and_k_is_checked():
  two = spec_lib.ServingSpec(F.FeatureSpec(history_length=T))
  assert "num_domains" not in two.to_json()
  assert spec_lib.ServingSpec.from_json(two.to_json()).num_domains == 2
  three = spec_lib.ServingSpec(F.FeatureSpec(history_length=T, num_domains=K))
  assert spec_lib.ServingSpec.from_json(three.to_json()) == three
  with pytest.raises(errors.DataError, match="feature_spec.num_domains must be 2 to 26, got 1"):
    spec_lib.ServingSpec(F.FeatureSpec(num_domains=1))
