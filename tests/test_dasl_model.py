"""The DASL model: variants, ablation wiring, serialization and a short training run."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import model_io
from dasl_tf import planted
from dasl_tf.models import DASL, build_model

T = 4


def _config(variant="dasl", **overrides):
  values = dict(variant=variant, num_users=20, num_items_a=12, num_items_b=15, history_length=T,
                embedding_dim=8, gru_units=8, attention_dim=8, hidden_units=(8,),
                autoencoder_units=(8,), l2=0.0)  # no L2 terms: tests count the model's losses.
  values.update(overrides)
  return config_lib.ModelConfig(**values)


def _features(batch=6, seed=0, side=False):
  rng = np.random.default_rng(seed)
  hist_a = rng.integers(2, 12, (batch, T))
  hist_a[0] = 0  # user 0: only domain B history
  hist_a[1, :2] = 0
  features = {F.USER_ID: rng.integers(2, 20, batch), F.ITEM_ID: rng.integers(2, 12, batch),
              F.DOMAIN: np.arange(batch) % 2, F.HIST_A: hist_a,
              F.HIST_B: rng.integers(2, 15, (batch, T))}
  if side:
    features[F.USER_NUM] = rng.normal(size=(batch, 2)).astype(np.float32)
    features[F.ITEM_CAT] = rng.integers(0, 3, (batch, 1))
  return {k: tf.constant(v) for k, v in features.items()}


@pytest.mark.parametrize("variant", config_lib.VARIANTS)
def test_every_variant_builds_and_scores(variant):
  model = build_model(_config(variant, user_num_dim=2, item_cat_vocab_sizes=(3,)))
  assert isinstance(model, DASL)
  features = _features(side=True)
  logits = model(features)
  assert logits["logit_a"].shape == [6] and logits["logit_b"].shape == [6]
  candidates = tf.constant(np.random.default_rng(1).integers(2, 12, (6, 5)))
  assert model.score_candidates(features, candidates).shape == [6, 5]
  # Items are encoded alike with or without side features: the target as a candidate == call().
  own = tf.where(features[F.DOMAIN] == 0, logits["logit_a"], logits["logit_b"])
  np.testing.assert_allclose(
      model.candidate_outputs(features, features[F.ITEM_ID][:, None])[:, 0, 0].numpy(),
      own.numpy(), rtol=1e-5, atol=1e-6)
  has_dual_embedding = model.dual_embedding is not None
  assert has_dual_embedding == (variant in ("dasl", "dasl_da"))


@pytest.mark.parametrize("variant", config_lib.VARIANTS)
def test_one_domain_batches_run_only_their_head(variant):
  model = build_model(_config(variant))
  features = _features()
  candidates = tf.constant(np.random.default_rng(2).integers(0, 12, (6, 5)))
  logits_a, logits_b = (x.numpy()[..., 0] for x in model.head_outputs(features, candidates))
  for domain, expected in ((F.DOMAIN_A, logits_a), (F.DOMAIN_B, logits_b)):
    with tf.GradientTape() as tape:
      alone = model.domain_outputs(features, candidates, domain)[..., 0]
    other_head = model.heads[1 - domain].trainable_variables
    assert all(g is None for g in tape.gradient(alone, other_head))
    np.testing.assert_allclose(alone.numpy(), expected, rtol=1e-5, atol=1e-6)
    one_domain = dict(features, **{F.DOMAIN: tf.fill([6], tf.constant(domain, tf.int64))})
    np.testing.assert_allclose(model.candidate_outputs(one_domain, candidates).numpy()[..., 0],
                               expected, rtol=1e-5, atol=1e-6)
  mixed = np.where(features[F.DOMAIN].numpy()[:, None] == F.DOMAIN_A, logits_a, logits_b)
  np.testing.assert_allclose(model.candidate_outputs(features, candidates).numpy()[..., 0], mixed,
                             rtol=1e-5, atol=1e-6)


def test_top_n_score_adds_the_item_prior_of_the_example_domain():
  """A CTR-only model: score_candidates = own head's logit + b_D(item), unknown ids on the OOV row."""
  model = build_model(_config(ranking_loss="none"))
  features = _features()
  candidates = tf.constant(np.random.default_rng(4).integers(0, 16, (6, 5)))
  model(features)
  priors = [np.random.default_rng(d).normal(size=(size, 1)).astype(np.float32)
            for d, size in ((0, 12), (1, 15))]
  for layer, prior in zip(model.task.item_priors, priors):
    layer.set_weights([prior])
  ids = candidates.numpy()
  prior_a = priors[0][np.where(ids < 12, ids, F.OOV_ID), 0]
  prior_b = priors[1][np.where(ids < 15, ids, F.OOV_ID), 0]
  expected_prior = np.where(features[F.DOMAIN].numpy()[:, None] == F.DOMAIN_A, prior_a, prior_b)
  np.testing.assert_allclose(
      model.score_candidates(features, candidates).numpy(),
      model.candidate_outputs(features, candidates).numpy()[..., 0] + expected_prior,
      rtol=1e-5, atol=1e-5)
  # A batch of one known domain, scored by that head and prior alone (domain=).
  for domain, prior in ((F.DOMAIN_A, prior_a), (F.DOMAIN_B, prior_b)):
    one_domain = dict(features, **{F.DOMAIN: tf.fill([6], tf.constant(domain, tf.int64))})
    np.testing.assert_allclose(
        model.score_candidates(one_domain, candidates, domain=domain).numpy(),
        model.candidate_outputs(one_domain, candidates).numpy()[..., 0] + prior,
        rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant, sees_other_domain", [
    ("dasl", True), ("dasl_de", True), ("dasl_da", True), ("single_domain", False)])
def test_head_a_reads_domain_b_only_when_the_variant_allows(variant, sees_other_domain):
  model = model_io.build_model(_config(variant))
  features = _features()
  changed = dict(features, **{F.HIST_B: tf.constant(np.full((6, T), 3))})
  logit_a = model(features)["logit_a"].numpy()
  logit_a_changed = model(changed)["logit_a"].numpy()
  assert (not np.allclose(logit_a, logit_a_changed, atol=1e-7)) == sees_other_domain


def test_losses_per_variant():
  """Dual variants add eq. (1)-(2) and the orthogonality penalty; side features, reconstruction."""
  features = _features(side=True)
  for variant, expected in (("dasl", 2 + 2 + 2), ("single_domain", 2 + 2)):
    model = build_model(_config(variant, user_num_dim=2, item_cat_vocab_sizes=(3,)))
    model(features)
    assert len(model.losses) == expected, variant


def test_out_of_range_ids_map_to_oov():
  model = model_io.build_model(_config())
  features = dict(_features(), **{F.ITEM_ID: tf.constant([2, 14, 100, 3, 5, 1000], tf.int64)})
  logits = model(features)
  assert np.isfinite(logits["logit_a"].numpy()).all()


def test_rejects_config_without_vocabularies():
  with pytest.raises(ValueError, match="num_users"):
    DASL(config_lib.ModelConfig(num_items_a=5, num_items_b=5))


def test_config_round_trip():
  model = build_model(_config("dasl_da", dropout=0.1))
  clone = DASL.from_config(model.get_config())
  assert clone.model_config == model.model_config
  serialized = tf_keras.utils.serialize_keras_object(model)
  restored = tf_keras.utils.deserialize_keras_object(serialized)
  assert isinstance(restored, DASL) and restored.model_config == model.model_config
  assert config_lib.ModelConfig.from_json(model.model_config.to_json()) == model.model_config


def test_saved_model_round_trip(tmp_path):
  model = model_io.build_model(_config(user_num_dim=2, item_cat_vocab_sizes=(3,)))
  features = _features(side=True)
  expected = model(features)
  path = str(tmp_path / "dasl")
  model.save(path, save_format="tf")
  loaded = tf_keras.models.load_model(path)
  restored = loaded(features)
  for name in ("logit_a", "logit_b"):
    np.testing.assert_allclose(restored[name].numpy(), expected[name].numpy(), rtol=1e-5, atol=1e-6)


def _planted_dataset(examples_per_user=28, seed=0):
  """Each example's taste shows only in its domain-B history: only cross-domain models read it."""
  taste_model = planted.PlantedConfig(
      num_users=20, num_items_a=12, num_items_b=15, history_length=T, min_history_a=T,
      min_history_b=T, click_rate=1.0, taste_per_user=False, revealing_domains=(F.DOMAIN_B,))
  examples = planted.planted_examples(taste_model, examples_per_user, seed)
  labels = examples.pop(F.LABEL)
  return tf.data.Dataset.from_tensor_slices((examples, labels)).batch(64)


def test_training_learns_and_keeps_x_orthogonal():
  tf_keras.utils.set_random_seed(3)
  model = build_model(_config(dual_embedding_weight=1.0))
  model.compile(tf_keras.optimizers.Adam(0.01))
  history = model.fit(_planted_dataset(), epochs=8, verbose=0).history
  assert history["auc_a"][-1] > 0.75 and history["auc_b"][-1] > 0.75
  assert history["total_loss"][-1] < history["total_loss"][0]
  assert float(model.dual_embedding.orthogonality_residual()) < 1e-2


def test_candidate_interactions_add_one_projection_per_head_input_part():
  """DASL's head A input has 5 parts besides c_A (Att, u_A, Xᵀu_B, h_A, h_B), each d = 8."""
  features = _features()
  paper_head = build_model(_config(candidate_interactions=False))
  with_products = build_model(_config())
  paper_head(features)
  with_products(features)
  assert paper_head.interactions is None
  parts, d, hidden = 5, 8, 8
  per_head = parts * d * d + parts * d * hidden  # projections + the MLP's wider first layer
  assert with_products.count_params() - paper_head.count_params() == 2 * per_head


def _with_train_negatives(features, k=3, seed=5):
  rng = np.random.default_rng(seed)
  return dict(features, **{F.TRAIN_NEGATIVES: tf.constant(rng.integers(2, 12, (6, k)))})


@pytest.mark.parametrize("variant", config_lib.VARIANTS)
def test_training_logits_equal_call_and_candidate_scores(variant):
  """The one-pass, own-head-only training path scores exactly as ``call`` and the scorers."""
  model = build_model(_config(variant, user_num_dim=2, item_cat_vocab_sizes=(3,)))
  assert model.has_relevance
  features = _with_train_negatives(_features(side=True))
  target, negatives = model.training_logits(features, training=False)
  logits = model(features)
  own = tf.where(features[F.DOMAIN] == F.DOMAIN_A, logits["logit_a"], logits["logit_b"])
  np.testing.assert_allclose(target[:, 0].numpy(), own.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      negatives.numpy(),
      model.candidate_outputs(features, features[F.TRAIN_NEGATIVES]).numpy(),
      rtol=1e-5, atol=1e-6)
  candidates = tf.concat([features[F.ITEM_ID][:, None], features[F.TRAIN_NEGATIVES]], 1)
  np.testing.assert_allclose(
      model.task.top_n_score(tf.concat([target[:, None], negatives], 1),
                             model.task.item_prior(features, candidates)).numpy(),
      model.score_candidates(features, candidates).numpy(), rtol=1e-5, atol=1e-6)
  without = {k: v for k, v in features.items() if k != F.TRAIN_NEGATIVES}
  target_only, none = model.training_logits(without, training=False)
  assert none is None
  np.testing.assert_allclose(target_only[:, 0].numpy(), own.numpy(), rtol=1e-5, atol=1e-6)


def _other_domain_changed(features, labels, domain):
  """The batch with everything of the examples *not* of ``domain`` replaced."""
  rng = np.random.default_rng(11)
  other = (features[F.DOMAIN].numpy() != domain)
  changed = {}
  for name, value in features.items():
    value = value.numpy()
    if name == F.DOMAIN:
      changed[name] = value
      continue
    if value.dtype.kind == "f":
      replacement = rng.normal(5.0, 3.0, value.shape).astype(value.dtype)
    else:
      replacement = rng.integers(2, 12, value.shape).astype(value.dtype)
    mask = other.reshape((-1,) + (1,) * (value.ndim - 1))
    changed[name] = np.where(mask, replacement, value)
  return ({k: tf.constant(v) for k, v in changed.items()},
          tf.constant(np.where(other, 1.0 - labels.numpy(), labels.numpy())))


def _scores_after_one_step(config, batch, features, domain):
  """Head ``domain``'s scores of ``features``' train negatives after one SGD step on ``batch``."""
  tf_keras.utils.set_random_seed(0)
  model = build_model(config)
  model.compile(tf_keras.optimizers.SGD(0.5))
  model(features)
  model.train_step(batch)
  return model.domain_outputs(features, features[F.TRAIN_NEGATIVES], domain).numpy()


@pytest.mark.parametrize("domain", [F.DOMAIN_A, F.DOMAIN_B])
def test_single_domain_heads_learn_only_from_their_domain(domain):
  """Single-Domain's two heads are independent models trained in one step.

  Changing every feature and label of the other domain's examples (users and
  their side features included: the user autoencoder's reconstruction loss
  and batch statistics must not mix domains) leaves this head's training
  step, and so its scores, unchanged; the same change does move the other head.
  """
  config = _config("single_domain", user_num_dim=2, item_cat_vocab_sizes=(3,), dropout=0.0)
  features = _with_train_negatives(_features(side=True))
  labels = tf.constant([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
  changed = _other_domain_changed(features, labels, domain)
  for head, coupled in ((domain, False), (1 - domain, True)):
    before = _scores_after_one_step(config, (features, labels), features, head)
    after = _scores_after_one_step(config, changed, features, head)
    assert (not np.allclose(before, after, rtol=1e-6, atol=1e-6)) == coupled, head


def test_other_domain_dropout_hides_the_other_history_of_some_training_examples():
  """Each training example is scored either as it is or with its other-domain history empty.

  About ``other_domain_dropout`` of them lose it; their own history never
  changes, and evaluation (``training=False``) hides nothing.
  """
  model = build_model(_config(other_domain_dropout=0.4, dropout=0.0))
  rng = np.random.default_rng(3)
  batch = 400
  domain = rng.integers(0, 2, batch)
  features = {F.USER_ID: rng.integers(2, 20, batch), F.ITEM_ID: rng.integers(2, 12, batch),
              F.DOMAIN: domain, F.HIST_A: rng.integers(2, 12, (batch, T)),
              F.HIST_B: rng.integers(2, 15, (batch, T))}
  emptied = dict(features)
  for d, name in ((F.DOMAIN_A, F.HIST_B), (F.DOMAIN_B, F.HIST_A)):
    emptied[name] = np.where((domain == d)[:, None], F.PAD_ID, features[name])
  features, emptied = ({k: tf.constant(v) for k, v in x.items()} for x in (features, emptied))
  as_is = model.training_logits(features, training=False)[0].numpy()[:, 0]
  hidden = model.training_logits(emptied, training=False)[0].numpy()[:, 0]
  distinct = np.abs(as_is - hidden) > 1e-5  # the examples that tell the two cases apart
  assert distinct.mean() > 0.95, distinct.mean()
  close = lambda x, y: np.isclose(x, y, rtol=1e-6, atol=1e-7)
  trained = model.training_logits(features, training=True)[0].numpy()[:, 0]
  is_hidden = close(trained, hidden)
  assert np.all(close(trained, as_is) ^ is_hidden | ~distinct)
  assert 0.3 < is_hidden[distinct].mean() < 0.5, is_hidden[distinct].mean()
  again = model.training_logits(features, training=True)[0].numpy()[:, 0]
  assert not np.array_equal(close(again, hidden)[distinct], is_hidden[distinct])
  logits = model(features)
  own_head = tf.where(features[F.DOMAIN] == F.DOMAIN_A, logits["logit_a"], logits["logit_b"])
  np.testing.assert_allclose(as_is, own_head.numpy(), rtol=1e-5, atol=1e-6)


# The composition each variant is built from (section 5.2), written out here.
_COMPONENTS = {"dasl": (True, "joint"), "dasl_de": (False, "joint"),
               "dasl_da": (True, "separate"), "single_domain": (False, "own")}


@pytest.mark.parametrize("variant", config_lib.VARIANTS)
def test_each_variant_is_a_composition_of_its_components(variant):
  dual_embedding, attention = _COMPONENTS[variant]
  model = build_model(_config(variant))
  assert (model.dual_embedding is not None) == dual_embedding
  assert model.dual_attention.mode == attention
  assert model.single_domain == (attention == "own")
  assert model.cooccurrence.sources == ({0: (0,), 1: (1,)} if attention == "own"
                                        else {0: (0, 1), 1: (1, 0)})


def test_checkpoints_keep_every_key_of_the_contract(tmp_path):
  """Checkpoints match by attribute path: every key listed in the contract is still written."""
  with open(os.path.join(os.path.dirname(__file__), "data", "dasl_checkpoint_keys.txt")) as f:
    contract = [line.strip() for line in f if line.strip()]
  model = build_model(_config("dasl"))
  model(_features())
  model.save_weights(str(tmp_path / "weights"))
  written = {name for name, _ in tf.train.list_variables(str(tmp_path / "weights"))}
  assert not set(contract) - written
  # The task's objects are the model's: restoring through the old path sets the task's priors.
  prior = model.task.item_priors[0]
  prior.embeddings.assign(tf.fill(prior.embeddings.shape, 0.5))
  model.save_weights(str(tmp_path / "changed"))
  fresh = build_model(_config("dasl"))
  fresh(_features())
  fresh.load_weights(str(tmp_path / "changed")).assert_existing_objects_matched()
  np.testing.assert_array_equal(fresh.task.item_priors[0].embeddings.numpy(), 0.5)
  assert tf.train.load_variable(str(tmp_path / "changed"),
                                "item_priors/0/embeddings/.ATTRIBUTES/VARIABLE_VALUE").min() == 0.5
