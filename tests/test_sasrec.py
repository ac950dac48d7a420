"""SASRec: causal attention, one block against NumPy, scores, domain isolation, learning, saving."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from dasl_tf import data as data_lib
from dasl_tf import features as F
from dasl_tf import model_io
from dasl_tf import models
from dasl_tf.models.baselines.sasrec import CausalSelfAttentionBlock, SasRec, SasRecTower
from tests import references
from tests.test_baselines import CONFIG, NUM_ITEMS_A, T, _batch
from tests.test_baselines import planted_tfrecords  # noqa: F401  pylint: disable=unused-import

SASREC = CONFIG.replace(variant="sasrec")


def _model(config=SASREC) -> SasRec:
  tf_keras.utils.set_random_seed(0)
  return model_io.build_model(config)


def _tower(**kwargs) -> SasRecTower:
  tf_keras.utils.set_random_seed(1)
  tower = SasRecTower(NUM_ITEMS_A, T, 8, num_blocks=2, num_heads=2, hidden_units=(6,), **kwargs)
  tower(tf.zeros([1, T], tf.int64), tf.zeros([1, 1], tf.int64))
  return tower


def _histories(rng, lengths):
  return tf.constant(np.stack([F.pad_history(rng.integers(2, NUM_ITEMS_A, n), T)
                               for n in lengths]))


# ----------------------------------------------------------------------------- causality


def test_a_later_item_changes_no_earlier_output():
  tower = _tower()
  rng = np.random.default_rng(0)
  history = _histories(rng, [T, T, 3])
  outputs = tower.sequence_outputs(history).numpy()
  first_real = T - 3  # of the third example
  for t in range(T):
    changed = history.numpy().copy()
    changed[:, t] = np.where(changed[:, t] == 2, 3, 2)
    changed[2, :first_real] = F.PAD_ID  # padding stays padding
    new = tower.sequence_outputs(tf.constant(changed)).numpy()
    np.testing.assert_allclose(new[:, :t], outputs[:, :t], rtol=1e-5, atol=1e-6)
    assert not np.allclose(new[0, t], outputs[0, t], atol=1e-4)  # the item itself counts
  np.testing.assert_array_equal(outputs[2, :first_real], 0.0)


def test_padded_positions_reach_no_real_output():
  """Whatever a padded position holds, the block's outputs at the real ones stay the same."""
  block = CausalSelfAttentionBlock(num_heads=2)
  rng = np.random.default_rng(1)
  mask = np.array([[False, False, True, True, True], [True] * 5, [False] * 4 + [True]])
  x = rng.normal(size=(3, T, 8)).astype(np.float32) * mask[..., None]
  garbage = np.where(mask[..., None], x, rng.normal(size=x.shape) * 10).astype(np.float32)
  expected = block(x, tf.constant(mask)).numpy()
  got = block(garbage, tf.constant(mask)).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got[~mask], 0.0)


def test_the_padding_row_and_an_empty_history_do_not_reach_the_scores():
  tower = _tower()
  rng = np.random.default_rng(2)
  history = _histories(rng, [2, 4, 0])
  candidates = tf.constant(rng.integers(2, NUM_ITEMS_A, (3, 4)))
  expected = tower(history, candidates).numpy()
  table = tower._items._id_embedding.embeddings
  table.assign(tf.tensor_scatter_nd_update(table, [[F.PAD_ID]], [tf.fill([8], 50.0)]))
  np.testing.assert_allclose(tower(history, candidates).numpy(), expected, rtol=1e-5, atol=1e-5)
  empty = rng.normal(size=8).astype(np.float32)
  tower._empty.assign(empty)
  np.testing.assert_allclose(tower.user_representation(history)[2], empty)


# ----------------------------------------------------------------------------- math vs NumPy


def _layer_norm(norm, x):
  mean = x.mean(-1, keepdims=True)
  variance = x.var(-1, keepdims=True)
  return ((x - mean) / np.sqrt(variance + norm.epsilon) * norm.gamma.numpy()
          + norm.beta.numpy())


def test_one_block_matches_numpy():
  rng = np.random.default_rng(3)
  d = 4
  x = rng.normal(size=(2, T, d)).astype(np.float32)
  mask = np.array([[False, False, True, True, True], [True] * T])
  x *= mask[..., None]
  block = CausalSelfAttentionBlock(num_heads=1)
  block(x, tf.constant(mask))
  for variable in block.trainable_variables:  # tiny weights, LayerNorm's γ and β included
    variable.assign(rng.normal(scale=0.5, size=variable.shape).astype(np.float32))
  got = block(x, tf.constant(mask)).numpy()

  attention = block._attention
  w_q, w_k, w_v = (layer.kernel.numpy()[:, 0, :] for layer in
                   (attention._query_dense, attention._key_dense, attention._value_dense))
  w_o = attention._output_dense.kernel.numpy()[0]
  ffn_hidden, ffn_output = block._ffn._hidden[0], block._ffn._output
  expected = np.zeros_like(x)
  for b in range(2):
    y = _layer_norm(block._attention_norm, x[b])
    scores = (y @ w_q) @ (y @ w_k).T / np.sqrt(d)
    for t in np.flatnonzero(mask[b]):
      allowed = np.arange(T) <= t
      allowed &= mask[b]
      weights = np.exp(scores[t, allowed] - scores[t, allowed].max())
      weights /= weights.sum()
      h = x[b, t] + (weights @ (y[allowed] @ w_v)) @ w_o
      z = _layer_norm(block._ffn_norm, h)
      hidden = np.maximum(z @ ffn_hidden.kernel.numpy() + ffn_hidden.bias.numpy(), 0.0)
      expected[b, t] = h + hidden @ ffn_output.kernel.numpy() + ffn_output.bias.numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_relevance_is_the_dot_product_with_the_tied_item_embedding():
  tower = _tower()
  rng = np.random.default_rng(4)
  history = _histories(rng, [T, 1, 0])
  candidates = np.array([[2, 5, NUM_ITEMS_A + 7]] * 3)  # the last one is out of vocabulary
  outputs = tower(history, tf.constant(candidates)).numpy()
  assert outputs.shape == (3, 3, 2)
  user = tower.user_representation(history).numpy()
  table = tower._items._id_embedding.embeddings.numpy()
  rows = np.where(candidates < NUM_ITEMS_A, candidates, F.OOV_ID)
  np.testing.assert_allclose(outputs[..., 1], np.einsum("bd,bcd->bc", user, table[rows]),
                             rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- the model


def test_registered_and_scores_like_call():
  model = _model()
  assert "sasrec" in models.variants() and isinstance(model, SasRec) and model.has_relevance
  features = _batch()
  logits = model(features)
  candidates = tf.concat([features[F.ITEM_ID][:, None],
                          tf.fill([6, 3], tf.constant(CONFIG.num_items_b - 1, tf.int64))], 1)
  outputs = model.candidate_outputs(features, candidates).numpy()
  own = np.where(features[F.DOMAIN].numpy() == F.DOMAIN_A, logits["logit_a"], logits["logit_b"])
  np.testing.assert_allclose(outputs[:, 0, 0], own, rtol=1e-5, atol=1e-5)
  # The top-n score is relevance + item prior, not the CTR logit.
  assert not np.allclose(outputs[..., 1], outputs[..., 0], atol=1e-3)
  rng = np.random.default_rng(5)
  for prior in model.task.item_priors:
    prior.embeddings.assign(rng.normal(size=prior.embeddings.shape).astype(np.float32))
  prior = model.task.item_prior(features, candidates).numpy()
  np.testing.assert_allclose(model.score_candidates(features, candidates),
                             outputs[..., 1] + prior, rtol=1e-5, atol=1e-5)
  assert np.all(np.isfinite(outputs))
  ctr_only = _model(SASREC.replace(ranking_loss="none"))
  assert ctr_only.candidate_outputs(features, candidates).shape == (6, 4, 1)


def test_each_head_reads_its_own_history_only():
  model = _model()
  features = _batch()
  other_b = dict(features, **{F.HIST_B: _batch(seed=1)[F.HIST_B]})
  other_a = dict(features, **{F.HIST_A: _batch(seed=1)[F.HIST_A]})
  np.testing.assert_array_equal(model(other_b)["logit_a"], model(features)["logit_a"])
  np.testing.assert_array_equal(model(other_a)["logit_b"], model(features)["logit_b"])
  assert not np.allclose(model(other_a)["logit_a"], model(features)["logit_a"])
  names_a = {v.name for v in model.tower_a.trainable_variables}
  names_b = {v.name for v in model.tower_b.trainable_variables}
  assert names_a and names_b and not names_a & names_b


def test_heads_that_do_not_divide_the_embedding_are_rejected():
  with pytest.raises(ValueError, match="sasrec_heads"):
    _model(SASREC.replace(sasrec_heads=3))(_batch())


def test_layer_configs_round_trip_keep_outputs():
  history = tf.constant([[0, 0, 3, 4, 5], [0, 0, 0, 0, 0]], tf.int64)
  x = tf.random.stateless_normal([2, T, 8], seed=[0, 1])
  cases = [(CausalSelfAttentionBlock(num_heads=2, dropout=0.1, l2=0.01),
            (x, tf.not_equal(history, F.PAD_ID))),
           (SasRecTower(NUM_ITEMS_A, T, 8, num_blocks=1, num_heads=2, hidden_units=(6,),
                        dropout=0.1, l2=0.01, relevance=False),
            (history, tf.constant([[3, 9, NUM_ITEMS_A + 1]] * 2, tf.int64)))]
  for layer, inputs in cases:
    expected = layer(*inputs)
    restored = tf_keras.layers.deserialize(tf_keras.layers.serialize(layer))
    assert type(restored) is type(layer) and restored.get_config() == layer.get_config()
    restored(*inputs)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(restored(*inputs), expected, rtol=1e-5, atol=1e-6)


def test_weights_and_saved_model_round_trip(tmp_path):
  model = _model(SASREC.replace(dropout=0.2))
  features = _batch()
  expected = model.predict_ctr(features)["ctr"]
  model_io.save_final_weights(model, str(tmp_path / "weights"))
  restored = model_io.build_model(type(model).from_config(model.get_config()).model_config)
  restored.load_weights(str(tmp_path / "weights" / model_io.WEIGHTS_PREFIX)).expect_partial()
  np.testing.assert_allclose(restored.predict_ctr(features)["ctr"], expected, rtol=1e-6)

  root = tf.Module()
  root.model_variables = list(model.variables)
  serve = tf.function(model.predict_ctr, autograph=False,
                      input_signature=[F.feature_spec_for(CONFIG).tensor_specs()])
  tf.saved_model.save(root, str(tmp_path / "saved"), signatures={"serving_default": serve})
  loaded = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
  np.testing.assert_allclose(loaded(**features)["ctr"], expected, rtol=1e-5)


def test_learns_the_planted_signal_from_the_own_history(planted_tfrecords):  # noqa: F811
  paths, spec = planted_tfrecords
  model = _model(SASREC.replace(sasrec_blocks=1))
  model.compile(optimizer=tf_keras.optimizers.Adam(0.02))
  train = data_lib.make_dataset(paths["train"], spec, batch_size=32, training=True, seed=0)
  # Variables built first, so that `fit` traces its step once, not twice.
  model(next(iter(train))[0])
  model.optimizer.build(model.trainable_variables)
  model.fit(train, epochs=3, verbose=0)
  features, labels = next(iter(data_lib.make_dataset(paths["eval"], spec, batch_size=600)))
  labels = labels.numpy()
  in_a = features[F.DOMAIN].numpy() == F.DOMAIN_A
  aucs = []
  for name, rows in (("logit_a", in_a), ("logit_b", ~in_a)):
    aucs.append(references.pairwise_auc(labels[rows], model(features)[name].numpy()[rows]))
  # The user id carries the taste too, but SASRec reads histories only.
  emptied = dict(features, **{F.HIST_A: tf.zeros_like(features[F.HIST_A]),
                              F.HIST_B: tf.zeros_like(features[F.HIST_B])})
  blind = references.pairwise_auc(labels[in_a], model(emptied)["logit_a"].numpy()[in_a])
  assert min(aucs) > 0.7 and abs(blind - 0.5) < 0.1, (aucs, blind)
