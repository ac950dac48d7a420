"""The top-n parts of a DASL head, their weights, and the choice of the weights on validation."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from dasl_tf import catalogue as catalogue_lib
from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import data as data_lib
from dasl_tf import features as F
from dasl_tf import model_dir as model_dir_lib
from dasl_tf import model_io
from dasl_tf import term_weights
from dasl_tf import training
from dasl_tf.models import build_model
from tests import test_train_support as support

V_A, V_B, T, DAY = 9, 7, 3, 86_400


def _fitted_model():
  """A DASL model with both terms, adapted to random examples with times."""
  config = config_lib.ModelConfig(num_users=20, num_items_a=V_A, num_items_b=V_B,
                                  history_length=T, knn_neighbors=4, recent_window_days=10,
                                  dropout=0.0, other_domain_dropout=0.0)
  model = build_model(config)
  rng = np.random.default_rng(0)
  n = 60
  domain = rng.integers(0, 2, n)
  features = {
      F.USER_ID: np.arange(n) % 18 + 2, F.DOMAIN: domain,
      F.ITEM_ID: np.where(domain == 0, rng.integers(2, V_A, n), rng.integers(2, V_B, n)),
      F.HIST_A: rng.integers(0, V_A, (n, T)), F.HIST_B: rng.integers(0, V_B, (n, T)),
      F.TIMESTAMP: rng.integers(0, 40, n) * DAY}
  features = {name: tf.constant(value, tf.int64) for name, value in features.items()}
  labels = tf.constant(rng.integers(0, 2, n), tf.float32)
  model.adapt(tf.data.Dataset.from_tensors((features, labels)))
  model(features)
  model.cooccurrence.weights_per_source.assign([[0.5, 2.0], [1.5, -1.0]])
  model.recency_weights.assign([0.7, 1.3])
  return model, features, rng.integers(2, V_B, (n, 5))


def test_the_parts_weighted_by_their_weights_are_the_top_n_score():
  model, features, candidates = _fitted_model()
  candidates = tf.constant(candidates)
  for d in F.DOMAINS:
    parts = {name: value.numpy() for name, value in model.top_n_parts(
        features, candidates, d).items()}
    weights = model.top_n_weights(d)
    own, other = F.DOMAIN_SUFFIX[d], F.DOMAIN_SUFFIX[1 - d]
    assert tuple(parts) == tuple(weights) == (
        "relevance", "prior", f"cooccurrence_{own}_from_{own}", f"cooccurrence_{own}_from_{other}",
        "recency")
    expected_weights = {"relevance": 1.0, "prior": 1.0, "recency": (0.7, 1.3)[d]}
    expected_weights.update(zip(list(weights)[2:4], ([0.5, 2.0], [1.5, -1.0])[d]))
    assert weights == pytest.approx(expected_weights)
    np.testing.assert_allclose(
        parts["prior"], model.task.item_priors[d].embeddings.numpy()[candidates.numpy(), 0])
    blended = sum(weights[name] * part for name, part in parts.items())
    np.testing.assert_allclose(
        model.score_candidates(features, candidates, domain=d).numpy(), blended,
        rtol=1e-5, atol=1e-5)


def test_set_weights_rank_by_the_given_blend_and_leave_the_ctr_output():
  model, features, candidates = _fitted_model()
  candidates = tf.constant(candidates)
  ctr = model(features)
  chosen = {"relevance": 2.0, "prior": 0.5, "cooccurrence_b_from_b": 3.0,
            "cooccurrence_b_from_a": 0.0, "recency": 4.0}
  parts = {name: value.numpy() for name, value in model.top_n_parts(
      features, candidates, F.DOMAIN_B).items()}
  other_head = model.score_candidates(features, candidates, domain=F.DOMAIN_A).numpy()
  model.set_top_n_weights(F.DOMAIN_B, chosen)
  blend = sum(chosen[name] * part for name, part in parts.items())
  np.testing.assert_allclose(  # the same ranking: the blend divided by the relevance weight
      model.score_candidates(features, candidates, domain=F.DOMAIN_B).numpy(), blend / 2.0,
      rtol=1e-5, atol=1e-5)
  assert model.top_n_weights(F.DOMAIN_B) == pytest.approx(
      {name: weight / 2.0 for name, weight in chosen.items()} | {"relevance": 1.0, "prior": 1.0})
  np.testing.assert_allclose(model.score_candidates(features, candidates, domain=F.DOMAIN_A),
                             other_head, rtol=1e-6)
  for key, value in model(features).items():
    np.testing.assert_allclose(value, ctr[key], rtol=1e-6)


def test_set_weights_refuses_a_non_positive_relevance_and_parts_the_head_lacks():
  model, _, _ = _fitted_model()
  weights = model.top_n_weights(F.DOMAIN_A)
  with pytest.raises(ValueError, match="relevance weight must be positive"):
    model.set_top_n_weights(F.DOMAIN_A, dict(weights, relevance=0.0))
  with pytest.raises(ValueError, match="has the top-n parts"):
    model.set_top_n_weights(F.DOMAIN_A, {"relevance": 1.0, "prior": 1.0})


def _reference_rates(scores, ranked, targets, uniforms, k=10):
  """HR@k and NDCG@k with ties broken as floor(u * (ties + 1)) of the tied items go first."""
  hits, gains = [], []
  for row, target in enumerate(targets):
    mine = scores[row, target]
    others = scores[row][ranked[row]]
    rank = 1 + np.sum(others > mine) + min(int(uniforms[row] * (np.sum(others == mine) + 1)),
                                           np.sum(others == mine))
    hits.append(rank <= k)
    gains.append(1 / np.log2(rank + 1) if rank <= k else 0.0)
  return np.mean(hits), np.mean(gains)


def _planted_parts(n=40, width=60, seed=0):
  """Parts where ``signal`` puts each target first, ``noise`` is random and ``tied`` ties a lot."""
  rng = np.random.default_rng(seed)
  targets = rng.integers(0, width, n)
  signal = rng.integers(0, 3, (n, width)).astype(np.float32)
  signal[np.arange(n), targets] = 3.0
  noise = rng.normal(0, 1, (n, width)).astype(np.float32)
  tied = rng.integers(0, 2, (n, width)).astype(np.float32)  # integer scores: ties
  ranked = rng.random((n, width)) < 0.8
  ranked[np.arange(n), targets] = False
  return term_weights.Parts({"relevance": noise, "signal": signal, "tied": tied}, ranked,
                            targets, rng.random(n))


def test_hit_rates_against_a_reference_with_ties():
  parts = _planted_parts()
  for weights in ({"relevance": 1.0, "signal": 0.0, "tied": 0.0},
                  {"relevance": 0.0, "signal": 0.0, "tied": 1.0},
                  {"relevance": 0.3, "signal": 1.0, "tied": 2.0}):
    scores = sum(w * parts.scores[name] for name, w in weights.items())
    assert term_weights.hit_rates(parts, weights) == pytest.approx(
        _reference_rates(scores, parts.ranked, parts.targets, parts.uniforms))


def test_the_search_finds_the_planted_part_and_never_loses_on_its_sample():
  head = term_weights.HeadParts(_planted_parts(), None)
  start = {"relevance": 1.0, "signal": 0.01, "tied": 0.0}
  before = term_weights.head_rates(head, start)
  chosen, after = term_weights.search_weights(head, start)
  assert before["hr10_full"] < 0.5 and after["hr10_full"] == 1.0
  assert chosen["signal"] / chosen["relevance"] >= 10 * start["signal"]
  assert after == pytest.approx(term_weights.head_rates(head, chosen))
  # From weights already at the best, nothing moves.
  assert term_weights.search_weights(head, chosen) == (chosen, after)


def test_with_sampled_negatives_the_search_maximises_the_product_of_both_hit_rates():
  full, sampled = _planted_parts(seed=1), _planted_parts(n=50, width=100, seed=2)
  # In the sampled ranking, "tied" is the signal and "signal" is noise.
  sampled.scores["signal"], sampled.scores["tied"] = (
      sampled.scores["tied"] * 3, sampled.scores["signal"] / 3)
  head = term_weights.HeadParts(full, sampled)
  start = {"relevance": 1.0, "signal": 0.01, "tied": 0.01}
  chosen, after = term_weights.search_weights(head, start)
  for parts, key in ((full, "hr10_full"), (sampled, "hr10_sampled")):
    scores = sum(w * parts.scores[name] for name, w in chosen.items())
    assert after[key] == pytest.approx(
        _reference_rates(scores, parts.ranked, parts.targets, parts.uniforms)[0])
  before = term_weights.head_rates(head, start)
  assert (after["hr10_full"] * after["hr10_sampled"]
          > before["hr10_full"] * before["hr10_sampled"])
  # Full-catalogue HR alone would pick other weights: the sampled ranking counts.
  alone, _ = term_weights.search_weights(term_weights.HeadParts(full, None), start)
  assert term_weights.head_rates(head, alone)["hr10_sampled"] < after["hr10_sampled"]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  return support.make_dataset_dir(str(tmp_path_factory.mktemp("data")))


def test_collected_parts_are_the_model_scores_of_the_catalogue_less_what_the_user_touched(
    dataset_dir):
  data = training.TrainingData.from_data_dir(dataset_dir)
  config = config_resolution.resolve_config(data.schema, None, {"variant": "dasl"}, {})
  model = model_io.build_model(config.model)
  spec = data.schema.feature_spec
  sizes = (data.schema.num_items_a, data.schema.num_items_b)
  train = data_lib.SplitColumns.read(data.train_files, spec).features
  dataset = training.run_inputs.input_batches(
      data.validation_files, spec, config.train, tf.distribute.get_strategy(),
      with_negatives=True)
  batches = list(dataset.as_numpy_iterator())
  features = {name: np.concatenate([f[name] for f, _ in batches]) for name in batches[0][0]}
  labels = np.concatenate([l for _, l in batches])
  negatives = features.pop(F.NEGATIVES)
  all_parts = term_weights.collect_parts(
      model, dataset, catalogue_lib.FullCatalogue.from_files(data.train_files, spec, sizes),
      positives=1000, seed=3, user_batch=8, item_chunk=5)
  for d, head in zip(F.DOMAINS, all_parts):
    parts = head.full
    # More positives asked for than there are: the sample is every in-vocabulary positive.
    rows = np.flatnonzero((labels > 0.5) & (features[F.DOMAIN] == d)
                          & (features[F.ITEM_ID] != F.OOV_ID))
    assert parts.targets.size == rows.size > 5
    np.testing.assert_array_equal(parts.targets, features[F.ITEM_ID][rows] - F.NUM_RESERVED_IDS)
    items = np.arange(F.NUM_RESERVED_IDS, sizes[d])
    own_history = (F.HIST_A, F.HIST_B)[d]
    batch = {name: tf.constant(values[rows]) for name, values in features.items()}
    expected = model.score_candidates(
        batch, tf.constant(np.broadcast_to(items, (rows.size, items.size))), domain=d).numpy()
    weights = model.top_n_weights(d)
    blended = sum(weights[name] * parts.scores[name] for name in weights)
    np.testing.assert_allclose(blended, expected, rtol=1e-4, atol=1e-4)
    # Sampled: the target (column 0) against its stored negatives.
    candidates = np.concatenate([features[F.ITEM_ID][rows, None], negatives[rows]], axis=1)
    expected = model.score_candidates(batch, tf.constant(candidates), domain=d).numpy()
    blended = sum(weights[name] * head.sampled.scores[name] for name in weights)
    np.testing.assert_allclose(blended, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(head.sampled.ranked[:, 1:], negatives[rows] != F.PAD_ID)
    assert not head.sampled.ranked[:, 0].any()
    for k, row in enumerate(rows):
      user = features[F.USER_ID][row]
      mine = train[F.USER_ID] == user
      touched = set(train[F.ITEM_ID][mine & (train[F.DOMAIN] == d)]) | set(
          train[own_history][mine].ravel()) | set(features[own_history][row])
      touched.add(features[F.ITEM_ID][row])
      np.testing.assert_array_equal(parts.ranked[k], ~np.isin(items, list(touched)))


def test_the_job_chooses_on_validation_and_keeps_the_choice(dataset_dir, tmp_path):
  data = training.TrainingData.from_data_dir(dataset_dir)
  config = config_resolution.resolve_config(
      data.schema, None, {"variant": "dasl"}, {"epochs": 2, "batch_size": 64})
  model_dir = str(tmp_path / "run")
  training.train_and_evaluate(config, data, model_dir, write_report=False, verbose=0)
  with open(os.path.join(model_dir, model_dir_lib.SELECTION_FILE), encoding="utf-8") as f:
    selection = json.load(f)
  model, _, _ = model_io.load_model(model_dir)
  for d, suffix in F.DOMAIN_SUFFIX.items():
    head = selection[suffix]
    assert head["positives"] > 0
    assert (head["hr10_full_chosen"] * head["hr10_sampled_chosen"]
            >= head["hr10_full_trained"] * head["hr10_sampled_trained"])
    chosen = head["chosen"]
    # The saved model ranks by the chosen weights (divided by the relevance weight).
    assert model.top_n_weights(d) == pytest.approx(
        {name: w / chosen["relevance"] for name, w in chosen.items()} | {"prior": 1.0},
        rel=1e-5)
  # Without the choice, the trained weights stay and nothing is written.
  plain_dir = str(tmp_path / "plain")
  training.train_and_evaluate(config.replace(model=config.model.replace(
      validation_term_weights=False)), data, plain_dir, write_report=False, verbose=0)
  assert not os.path.exists(os.path.join(plain_dir, model_dir_lib.SELECTION_FILE))
  plain, _, _ = model_io.load_model(plain_dir)
  for d, suffix in F.DOMAIN_SUFFIX.items():
    assert plain.top_n_weights(d) == pytest.approx(selection[suffix]["trained"], rel=1e-5)
