"""The paper's baselines: shapes, math against NumPy, domain isolation, learning, serialization."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import data as data_lib
from dasl_tf import features as F
from dasl_tf import model_io
from dasl_tf import models
from dasl_tf import planted
from dasl_tf.models import baselines
from dasl_tf.models.baselines import blocks
from dasl_tf.models.baselines.conet import CrossConnectionNetwork
from dasl_tf.models.baselines.din import DinTower
from dasl_tf.models.baselines.minet import MixedInterestHead
from dasl_tf.models.baselines.pinet import ParallelTransferHead, SharedAccountFilterCell
from dasl_tf.models.baselines.wide_deep import WideAndDeepTower
from tests import keras_testing
from tests import references

T = 5
NUM_USERS, NUM_ITEMS_A, NUM_ITEMS_B = 60, 30, 42
CONFIG = config_lib.ModelConfig(
    num_users=NUM_USERS, num_items_a=NUM_ITEMS_A, num_items_b=NUM_ITEMS_B, history_length=T,
    embedding_dim=8, gru_units=8, attention_dim=8, hidden_units=(16, 8), dropout=0.0, l2=0.0)
CROSS_DOMAIN = ("conet", "minet", "pinet")
SEQUENTIAL_CROSS_DOMAIN = ("minet", "pinet")
SINGLE_DOMAIN = ("din", "wide_deep")


def _build(variant: str):
  tf_keras.utils.set_random_seed(0)
  return model_io.build_model(CONFIG.replace(variant=variant))


@pytest.fixture(scope="module")
def built_model():
  """Returns the untrained model of a variant, built once for the tests that only read it."""
  cache = {}

  def get(variant: str):
    if variant not in cache:
      cache[variant] = _build(variant)
    return cache[variant]

  return get


def _batch(seed: int = 0, batch_size: int = 6):
  """A batch with empty, partial and full histories of both domains."""
  rng = np.random.default_rng(seed)
  lengths_a = rng.integers(0, T + 1, batch_size)
  lengths_b = rng.integers(0, T + 1, batch_size)
  lengths_a[0], lengths_b[1] = 0, 0
  domain = np.arange(batch_size) % 2
  return {
      F.USER_ID: tf.constant(rng.integers(2, NUM_USERS, batch_size)),
      F.ITEM_ID: tf.constant(np.where(domain == 0, rng.integers(2, NUM_ITEMS_A, batch_size),
                                      rng.integers(2, NUM_ITEMS_B, batch_size))),
      F.DOMAIN: tf.constant(domain),
      F.HIST_A: tf.constant(np.stack([F.pad_history(rng.integers(2, NUM_ITEMS_A, n), T)
                                      for n in lengths_a])),
      F.HIST_B: tf.constant(np.stack([F.pad_history(rng.integers(2, NUM_ITEMS_B, n), T)
                                      for n in lengths_b])),
  }


def test_every_baseline_is_registered():
  assert set(baselines.BASELINES) <= set(models.variants())


@pytest.mark.parametrize("variant", baselines.BASELINES)
def test_shapes_and_candidate_scores_match_call(variant, built_model):
  model = built_model(variant)
  features = _batch()
  logits = model(features)
  assert logits["logit_a"].shape == logits["logit_b"].shape == (6,)
  # Candidate ids beyond domain A's vocabulary (items of B) must not fail.
  candidates = tf.concat([features[F.ITEM_ID][:, None],
                          tf.fill([6, 3], tf.constant(NUM_ITEMS_B - 1, tf.int64))], axis=1)
  scores = model.score_candidates(features, candidates)
  assert scores.shape == (6, 4)
  own = tf.where(tf.equal(features[F.DOMAIN], 0), logits["logit_a"], logits["logit_b"])
  np.testing.assert_allclose(scores[:, 0], own, rtol=1e-5, atol=1e-5)
  assert np.all(np.isfinite(scores.numpy()))


@pytest.mark.parametrize("variant", baselines.BASELINES)
def test_which_history_each_head_reads(variant, built_model):
  model = built_model(variant)
  features = _batch()
  other = dict(features, **{F.HIST_B: _batch(seed=1)[F.HIST_B]})
  changed = not np.allclose(model(features)["logit_a"], model(other)["logit_a"])
  assert changed == (variant in CROSS_DOMAIN)


@pytest.mark.parametrize("variant", SINGLE_DOMAIN)
def test_single_domain_towers_share_no_variable(variant, built_model):
  model = built_model(variant)
  names_a = {v.name for v in model.tower_a.trainable_variables}
  names_b = {v.name for v in model.tower_b.trainable_variables}
  assert names_a and names_b and not names_a & names_b
  priors = [v.name for layer in model.task.item_priors for v in layer.trainable_variables]
  assert len(priors) == 2 and not set(priors) & (names_a | names_b)  # one per domain
  assert len(model.trainable_variables) == len(names_a) + len(names_b) + len(priors)


def test_unknown_vocabulary_is_rejected_with_its_name():
  with pytest.raises(ValueError, match="items_b.*vocabulary size"):
    models.build_model(CONFIG.replace(variant="minet", num_items_b=0))


# ----------------------------------------------------------------------------- math vs NumPy


def _dense(layer, x):
  out = x @ layer.kernel.numpy()
  return out + layer.bias.numpy() if layer.use_bias else out


@pytest.mark.parametrize("normalization,transfer", [("none", False), ("softmax", True)])
def test_target_attention_pooling_matches_numpy(normalization, transfer):
  rng = np.random.default_rng(0)
  query = rng.normal(size=(2, 3, 4)).astype(np.float32)
  keys = rng.normal(size=(2, 5, 4)).astype(np.float32)
  context = rng.normal(size=(2, 6)).astype(np.float32)
  mask = np.array([[False, False, True, True, True], [False] * 5])
  pool = blocks.TargetAttentionPooling((7,), normalization=normalization, transfer=transfer,
                                       activation="sigmoid")
  got = pool(query, keys, mask, context).numpy()

  mapped = _dense(pool._transfer, keys) if transfer else keys
  hidden = (_dense(pool._product_term, mapped[:, None] * query[:, :, None])
            + _dense(pool._key_term, keys)[:, None] + _dense(pool._query_term, query)[:, :, None]
            + _dense(pool._context_term, context)[:, None, None])
  scores = _dense(pool._score, 1 / (1 + np.exp(-hidden)))[..., 0]      # [B, C, T]
  if normalization == "softmax":
    scores = np.where(mask[:, None], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights = np.nan_to_num(weights / weights.sum(-1, keepdims=True))
  else:
    weights = np.where(mask[:, None], scores, 0.0)
  expected = np.einsum("bct,btd->bcd", weights, keys)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(got[1], 0.0)  # no history: nothing to pool


def test_cross_connection_network_matches_numpy():
  rng = np.random.default_rng(1)
  x_a = rng.normal(size=(3, 6)).astype(np.float32)
  x_b = rng.normal(size=(3, 6)).astype(np.float32)
  net = CrossConnectionNetwork((5, 4))
  logit_a, logit_b = net(x_a, x_b)
  relu = lambda v: np.maximum(v, 0.0)
  h_a, h_b = x_a, x_b
  for own_a, own_b, cross in zip(net._own_a, net._own_b, net._cross):
    h_a, h_b = (relu(_dense(own_a, h_a) + _dense(cross, h_b)),
                relu(_dense(own_b, h_b) + _dense(cross, h_a)))
  np.testing.assert_allclose(logit_a, _dense(net._logit_a, h_a)[:, 0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(logit_b, _dense(net._logit_b, h_b)[:, 0], rtol=1e-4, atol=1e-5)


def test_shared_account_filter_cell_step_matches_numpy():
  rng = np.random.default_rng(2)
  inputs = rng.normal(size=(2, 6)).astype(np.float32)
  state = rng.normal(size=(2, 4)).astype(np.float32)
  cell = SharedAccountFilterCell(units=4, num_members=3)
  cell.build(inputs.shape)
  got, _ = cell(tf.constant(inputs), [tf.constant(state)])
  w = {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in cell.weights}
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  gate = sigmoid((np.concatenate([inputs, state], -1) @ w["gate_kernel"] + w["gate_bias"])[:, None]
                 + (w["members"] @ w["gate_member_kernel"])[None])
  candidate = np.tanh(
      (np.concatenate([inputs[:, :3], state], -1) @ w["candidate_kernel"]
       + w["candidate_bias"])[:, None] + (w["members"] @ w["candidate_member_kernel"])[None])
  expected = (gate * state[:, None] + (1 - gate) * candidate).mean(axis=1)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_ddtcdr_adds_the_orthogonality_penalty():
  model = _build("ddtcdr")
  model(_batch())
  kernel = model.mapping.kernel
  kernel.assign(kernel * 2.0)
  model(_batch())
  x = kernel.numpy()
  penalty = CONFIG.orthogonality_weight * np.sum((x.T @ x - np.eye(x.shape[0])) ** 2)
  np.testing.assert_allclose(sum(float(l) for l in model.losses), penalty, rtol=1e-4)


def test_wide_part_matches_numpy():
  tower = WideAndDeepTower(NUM_USERS, NUM_ITEMS_A, 4, hidden_units=(4,), cross_buckets=97)
  users = tf.constant([3, 4], tf.int64)
  candidates = tf.constant([[5, 6], [5, NUM_ITEMS_A + 3]], tf.int64)  # the last one is OOV
  histories = tf.constant([[0, 0, 7], [0, 8, 9]], tf.int64)
  tower(users, histories, candidates)
  tower._deep._output.kernel.assign(tf.zeros_like(tower._deep._output.kernel))  # deep part = 0
  rng = np.random.default_rng(3)
  tables = {}
  for name in ("_wide_user", "_wide_item", "_wide_cross"):
    table = getattr(tower, name)._id_embedding.embeddings
    table.assign(rng.normal(size=table.shape).astype(np.float32))
    tables[name] = table.numpy()[:, 0]
  tower._wide_bias.assign(0.3)
  got = tower(users, histories, candidates).numpy()

  buckets = tower.cross_bucket_ids(histories, candidates).numpy()
  expected = np.zeros((2, 2))
  for b in range(2):
    for c in range(2):
      item = int(candidates[b, c])
      item = item if item < NUM_ITEMS_A else F.OOV_ID
      cross = sum(tables["_wide_cross"][buckets[b, c, t]] for t in range(3) if histories[b, t])
      expected[b, c] = (0.3 + tables["_wide_user"][int(users[b])] + tables["_wide_item"][item]
                        + cross)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  # The same (history item, candidate) pair always lands in the same bucket.
  again = tower.cross_bucket_ids(tf.constant([[7]], tf.int64), tf.constant([[5]], tf.int64))
  assert int(again[0, 0, 0]) == buckets[0, 0, 2]


# ----------------------------------------------------------------------------- serialization

def _layer_cases():
  """(make_layer, inputs, call_kwargs) of each baseline layer, for ``check_keras_layer``."""
  rng = np.random.default_rng(4)
  users = tf.constant([2, 5], tf.int64)
  history = tf.constant([[0, 3, 4], [0, 0, 0]], tf.int64)
  candidates = tf.constant([[3, 9, NUM_ITEMS_A + 1]] * 2, tf.int64)
  mask = tf.constant([[False, True, True], [False, False, False]])
  vectors = lambda *shape: tf.constant(rng.normal(size=shape), tf.float32)
  tower_inputs = {"history": history, "candidates": candidates}
  return {
      "attention": (lambda: blocks.TargetAttentionPooling((8, 4), normalization="softmax",
                                                          transfer=True, l2=0.1),
                    vectors(2, 3, 4), {"keys": vectors(2, 3, 6), "mask": mask,
                                       "context": vectors(2, 5)}),
      "din": (lambda: DinTower(NUM_USERS, NUM_ITEMS_A, 8, attention_units=(4,),
                               hidden_units=(6,), dropout=0.1, l2=0.01),
              users, tower_inputs),
      "wide_deep": (lambda: WideAndDeepTower(NUM_USERS, NUM_ITEMS_A, 8, hidden_units=(6,),
                                             cross_buckets=64),
                    users, tower_inputs),
      "conet": (lambda: CrossConnectionNetwork((6, 4), dropout=0.2, l2=0.01),
                vectors(2, 3, 6), {"inputs_b": vectors(2, 3, 6)}),
      "minet": (lambda: MixedInterestHead(attention_units=5, hidden_units=(6,), dropout=0.1),
                vectors(2, 4, 8), {"user": vectors(2, 8), "source_items": vectors(2, 3, 8),
                                   "source_mask": mask, "target_items": vectors(2, 3, 8),
                                   "target_mask": tf.logical_not(mask)}),
      "pinet": (lambda: ParallelTransferHead(units=4, hidden_units=(6,), num_members=2),
                vectors(2, 4, 8), {"target_state": vectors(2, 4),
                                   "source_states": vectors(2, 3, 4), "source_mask": mask}),
  }


def test_attention_pooling_keras_contract(tmp_path):
  make_layer, inputs, call_kwargs = _layer_cases()["attention"]
  keras_testing.check_keras_layer(make_layer, inputs, str(tmp_path), call_kwargs, atol=1e-5)


@pytest.mark.parametrize("case", sorted(_layer_cases()))
def test_layer_config_round_trip_keeps_outputs(case):
  make_layer, inputs, call_kwargs = _layer_cases()[case]
  layer = make_layer()
  expected = layer(inputs, **call_kwargs)
  restored = tf_keras.layers.deserialize(tf_keras.layers.serialize(layer))
  assert type(restored) is type(layer) and restored.get_config() == layer.get_config()
  restored(inputs, **call_kwargs)
  restored.set_weights(layer.get_weights())
  tf.nest.map_structure(
      lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6),
      restored(inputs, **call_kwargs), expected)


def test_filter_cell_config_round_trip():
  cell = SharedAccountFilterCell(units=4, num_members=3)
  restored = tf_keras.layers.deserialize(tf_keras.layers.serialize(cell))
  assert type(restored) is SharedAccountFilterCell
  assert restored.get_config() == cell.get_config()


@pytest.mark.parametrize("bad", [
    lambda: blocks.TargetAttentionPooling((), normalization="none"),
    lambda: blocks.TargetAttentionPooling((4,), normalization="sum"),
    lambda: CrossConnectionNetwork(()),
    lambda: SharedAccountFilterCell(units=4, num_members=0),
    lambda: WideAndDeepTower(NUM_USERS, NUM_ITEMS_A, 8, cross_buckets=1),
])
def test_invalid_layer_arguments_raise(bad):
  with pytest.raises(ValueError):
    bad()


@pytest.mark.parametrize("variant", baselines.BASELINES)
def test_model_config_and_weights_round_trip(variant, built_model, tmp_path):
  model = built_model(variant)
  features = _batch()
  expected = model.predict_ctr(features)["ctr"]
  model_io.save_final_weights(model, str(tmp_path))
  restored = model_io.build_model(type(model).from_config(model.get_config()).model_config)
  restored.load_weights(str(tmp_path / model_io.WEIGHTS_PREFIX)).expect_partial()
  np.testing.assert_allclose(restored.predict_ctr(features)["ctr"], expected, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("variant", baselines.BASELINES)
def test_saved_model_round_trip(variant, built_model, tmp_path):
  model = built_model(variant)
  features = _batch()
  # As the serving export does: the variables and a function traced without AutoGraph.
  root = tf.Module()
  root.model_variables = list(model.variables)
  serve = tf.function(model.predict_ctr, autograph=False,
                      input_signature=[F.feature_spec_for(CONFIG).tensor_specs()])
  tf.saved_model.save(root, str(tmp_path), signatures={"serving_default": serve})
  loaded = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
  np.testing.assert_allclose(loaded(**features)["ctr"], model.predict_ctr(features)["ctr"],
                             rtol=1e-5)


# ----------------------------------------------------------------------------- learning


@pytest.fixture(scope="module")
def planted_tfrecords(tmp_path_factory):
  """Each user likes the items of one parity in both domains; histories mostly hold them."""
  directory = tmp_path_factory.mktemp("planted")
  spec = F.feature_spec_for(CONFIG)
  taste_model = planted.PlantedConfig(num_users=NUM_USERS, num_items_a=NUM_ITEMS_A,
                                      num_items_b=NUM_ITEMS_B, history_length=T,
                                      min_history_a=1, min_history_b=1, history_noise=0.1)
  paths = {}
  for split, (per_user, seed) in {"train": (31, 1), "eval": (10, 2)}.items():
    paths[split] = str(directory / f"{split}.tfrecord")
    planted.write_examples(paths[split],
                           planted.planted_examples(taste_model, per_user, seed), spec)
  return paths, spec


# The sequential cross-domain models take longest to trace and train: `make test-slow`.
@pytest.mark.parametrize("variant", [
    v if v not in SEQUENTIAL_CROSS_DOMAIN else pytest.param(v, marks=pytest.mark.slow)
    for v in baselines.BASELINES])
def test_learns_the_planted_signal(variant, planted_tfrecords):
  paths, spec = planted_tfrecords
  model = _build(variant)
  model.compile(optimizer=tf_keras.optimizers.Adam(0.02))
  train = data_lib.make_dataset(paths["train"], spec, batch_size=32, training=True, seed=0)
  model.fit(train, epochs=3, verbose=0)
  features, labels = next(iter(data_lib.make_dataset(paths["eval"], spec, batch_size=600)))
  logits = model(features)
  in_a = features[F.DOMAIN].numpy() == F.DOMAIN_A
  labels = labels.numpy()
  auc_a = references.pairwise_auc(labels[in_a], logits["logit_a"].numpy()[in_a])
  auc_b = references.pairwise_auc(labels[~in_a], logits["logit_b"].numpy()[~in_a])
  assert auc_a > 0.65 and auc_b > 0.65, (auc_a, auc_b)
