"""item_knn, item_knn_cross, pop_item_knn and recent_popularity: math against NumPy,
validation-only blend weight, time window bounds, serialization and dasl-train runs."""
import os

import numpy as np
import pytest
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import features as F
from dasl_tf import model_io
from dasl_tf import models
from dasl_tf import planted
from dasl_tf import training
from dasl_tf.models import baselines
from dasl_tf.models.baselines import item_knn

T = 4
NUM_ITEMS = {F.DOMAIN_A: 14, F.DOMAIN_B: 16}
NEIGHBOURS = 3
DAY = 86_400
CONFIG = config_lib.ModelConfig(num_users=9, num_items_a=NUM_ITEMS[0], num_items_b=NUM_ITEMS[1],
                                history_length=T, knn_neighbors=NEIGHBOURS,
                                recent_window_days=30)
HISTORY = {F.DOMAIN_A: F.HIST_A, F.DOMAIN_B: F.HIST_B}


def _build(variant: str, **overrides):
  return model_io.build_model(CONFIG.replace(variant=variant, **overrides))


def _history(rng, domain, n):
  """``n`` left-padded histories of domain ``domain``, some empty, some with OOV ids (1)."""
  rows = []
  for length in rng.integers(0, T + 1, n):
    rows.append(F.pad_history(rng.integers(1, NUM_ITEMS[domain], length), T))
  return np.stack(rows)


def _examples(seed: int, n: int = 60):
  """Random training examples of both domains; about 70% clicked."""
  rng = np.random.default_rng(seed)
  domain = rng.integers(0, 2, n)
  return {
      F.USER_ID: rng.integers(2, 9, n),
      F.ITEM_ID: np.where(domain == 0, rng.integers(2, NUM_ITEMS[0], n),
                          rng.integers(2, NUM_ITEMS[1], n)),
      F.DOMAIN: domain,
      F.HIST_A: _history(rng, 0, n),
      F.HIST_B: _history(rng, 1, n),
      F.TIMESTAMP: rng.integers(0, 120, n) * DAY + rng.integers(0, DAY, n),
      F.LABEL: (rng.random(n) < 0.7).astype(np.float32),
  }


def _dataset(examples, batch_size: int = 7):
  """``(features, labels)`` batches of example arrays (several batches: the fit accumulates)."""
  features = {k: tf.constant(v) for k, v in examples.items() if k != F.LABEL}
  return tf.data.Dataset.from_tensor_slices(
      (features, tf.constant(examples[F.LABEL], tf.float32))).batch(batch_size)


# ----------------------------------------------------------------------------- NumPy references


def _reference_similarity(examples, domain: int, cross: bool,
                          neighbours: int = NEIGHBOURS) -> np.ndarray:
  """Cosine ``[V_source, V_target]`` truncated to ``neighbours`` per row (None: all), with loops."""
  source = 1 - domain if cross else domain
  counts = np.zeros((NUM_ITEMS[source], NUM_ITEMS[domain]))
  for row in range(examples[F.LABEL].size):
    if examples[F.DOMAIN][row] != domain or examples[F.LABEL][row] <= 0.5:
      continue
    target = examples[F.ITEM_ID][row]
    for h in examples[HISTORY[source]][row]:
      if h >= 2 and target >= 2 and (cross or h != target):
        counts[h, target] += 1
  if not cross:
    counts = counts + counts.T
  norm = np.sqrt(np.outer(counts.sum(axis=1), counts.sum(axis=0)))
  similarity = np.divide(counts, norm, out=np.zeros_like(counts), where=counts > 0)
  truncated = np.zeros_like(similarity)
  for i in range(similarity.shape[0]):
    ranked = sorted(range(similarity.shape[1]), key=lambda j: (-similarity[i, j], j))
    for j in ranked[:neighbours]:
      truncated[i, j] = similarity[i, j]
  return truncated


def _reference_knn(similarity: np.ndarray, history: np.ndarray,
                   candidates: np.ndarray) -> np.ndarray:
  """``s(c) = Σ_t sim(h_t, c)``; padding, OOV and out-of-vocabulary ids contribute 0."""
  out = np.zeros(candidates.shape)
  for b in range(candidates.shape[0]):
    for k, c in enumerate(candidates[b]):
      for h in history[b]:
        if 2 <= h < similarity.shape[0] and 2 <= c < similarity.shape[1]:
          out[b, k] += similarity[h, c]
  return out


def _clicks(examples, domain: int) -> np.ndarray:
  counts = np.zeros(NUM_ITEMS[domain])
  for item, d, label in zip(examples[F.ITEM_ID], examples[F.DOMAIN], examples[F.LABEL]):
    if d == domain and label > 0.5:
      counts[item] += 1
  return counts


def _candidates(seed: int, n: int) -> np.ndarray:
  """Candidates of any id: padding, OOV, each domain's items and ids beyond both vocabularies."""
  rng = np.random.default_rng(seed)
  candidates = rng.integers(0, max(NUM_ITEMS.values()) + 3, (n, 9))
  candidates[:, :3] = [0, 1, max(NUM_ITEMS.values()) + 5]
  return candidates


# ----------------------------------------------------------------------------- item-kNN


def test_fitted_baselines_are_registered_and_learn_nothing():
  assert set(baselines.FITTED_BASELINES) <= set(models.variants())
  for variant in baselines.FITTED_BASELINES:
    assert not _build(variant).learns


@pytest.mark.parametrize("variant,cross", [("item_knn", False), ("item_knn_cross", True)])
def test_item_knn_matches_a_numpy_reference(variant, cross):
  train = _examples(seed=1)
  model = _build(variant)
  model.adapt(_dataset(train))
  query = _examples(seed=2, n=10)
  candidates = _candidates(seed=3, n=10)
  features = {k: tf.constant(v) for k, v in query.items()}
  logits = model.head_logits(features, tf.constant(candidates))
  for d in F.DOMAINS:
    similarity = _reference_similarity(train, d, cross)
    source = 1 - d if cross else d
    expected = _reference_knn(similarity, query[HISTORY[source]], candidates)
    np.testing.assert_allclose(logits[d].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.count_nonzero(expected) > 5  # the scores are not trivially zero
  # Truncation mattered: some item has more than N co-occurring items in the full matrix.
  full = _reference_similarity(train, 0, cross, neighbours=None) > 0
  assert full.sum(axis=1).max() > NEIGHBOURS
  assert np.any(np.count_nonzero(model.neighbour_sims[0].numpy(), axis=1) == NEIGHBOURS)


def test_truncation_keeps_the_most_similar_neighbours():
  """Item 2 co-occurs with 3 (x3), 4 (x2), 5 (x1), 6 (x1): N = 2 keeps 3 and 4."""
  targets = [3, 3, 3, 4, 4, 5, 6]
  train = {F.ITEM_ID: np.array(targets), F.DOMAIN: np.zeros(7, np.int64),
           F.HIST_A: np.array([[0, 0, 0, 2]] * 7), F.HIST_B: np.zeros((7, T), np.int64),
           F.LABEL: np.ones(7, np.float32)}
  model = _build("item_knn", knn_neighbors=2)
  model.adapt(_dataset(train))
  features = {F.HIST_A: tf.constant([[0, 0, 0, 2]]), F.HIST_B: tf.zeros([1, T], tf.int64)}
  got = model.head_logits(features, tf.constant([[3, 4, 5, 6]]))[0].numpy()[0]
  # n_2 = 7 events, n_3 = 3, n_4 = 2: sim(2, 3) = 3 / sqrt(21), sim(2, 4) = 2 / sqrt(14).
  np.testing.assert_allclose(got, [3 / np.sqrt(21), 2 / np.sqrt(14), 0.0, 0.0], rtol=1e-6)


def test_unclicked_examples_and_reserved_ids_do_not_count():
  train = {F.ITEM_ID: np.array([3, 3, 4]), F.DOMAIN: np.zeros(3, np.int64),
           F.HIST_A: np.array([[0, 1, 2, 3], [0, 0, 1, 5], [0, 0, 0, 6]]),
           F.HIST_B: np.zeros((3, T), np.int64), F.LABEL: np.array([1.0, 1.0, 0.0], np.float32)}
  model = _build("item_knn")
  model.adapt(_dataset(train))
  ids = model.neighbour_ids[0].numpy()
  sims = model.neighbour_sims[0].numpy()
  linked = {(i, int(j)) for i in range(ids.shape[0]) for j, s in zip(ids[i], sims[i]) if s > 0}
  # 2-3 and 5-3 only: no self pair (3, 3), no OOV (1), padding or unclicked (6, 4) pair.
  assert linked == {(2, 3), (3, 2), (5, 3), (3, 5)}


def test_out_of_vocabulary_ids_score_zero():
  model = _build("pop_item_knn")
  model.adapt(_dataset(_examples(seed=1)))
  model.blend_weights.assign([1.0, 1.0])
  big = max(NUM_ITEMS.values()) + 7
  features = {F.HIST_A: tf.constant([[1, big, 0, 0]]), F.HIST_B: tf.constant([[1, big, 0, 0]])}
  for logits in model.head_logits(features, tf.constant([[0, 1, big]])):
    np.testing.assert_array_equal(logits.numpy(), 0.0)


def test_top_n_score_is_the_head_score():
  """The item priors stay zero: ranking reads the kNN (+ popularity) score alone."""
  model = _build("pop_item_knn")
  model.adapt(_dataset(_examples(seed=1)))
  model.blend_weights.assign([0.3, 3.0])
  query = _examples(seed=2, n=10)
  features = {k: tf.constant(v) for k, v in query.items()}
  candidates = tf.constant(_candidates(seed=4, n=10))
  logits = model.head_logits(features, candidates)
  own = np.where(query[F.DOMAIN][:, None] == 0, logits[0].numpy(), logits[1].numpy())
  np.testing.assert_allclose(model.score_candidates(features, candidates).numpy(), own,
                             rtol=1e-6)


def test_pop_item_knn_adds_weighted_log_clicks():
  train = _examples(seed=1)
  model = _build("pop_item_knn")
  model.adapt(_dataset(train))
  model.blend_weights.assign([0.3, 3.0])
  query = _examples(seed=2, n=10)
  candidates = _candidates(seed=3, n=10)
  logits = model.head_logits({k: tf.constant(v) for k, v in query.items()},
                             tf.constant(candidates))
  for d, weight in zip(F.DOMAINS, (0.3, 3.0)):
    knn = _reference_knn(_reference_similarity(train, d, False), query[HISTORY[d]], candidates)
    clicks = np.array([[_clicks(train, d)[c] if 2 <= c < NUM_ITEMS[d] else 0.0 for c in row]
                       for row in candidates])
    np.testing.assert_allclose(logits[d].numpy(), knn + weight * np.log1p(clicks),
                               rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- blend selection


def _blend_data():
  """Training and validation data where popularity helps domain A and hurts domain B.

  A: item 2 has 30 clicks and no co-occurrence; history item 3 co-occurs with
  items 4..13 once each. B: history item 3 co-occurs with item 2 three times;
  items 3..14 have 20 clicks each. Validation positives (history [3]): A's
  target is 2 against 4..13 (popular enough only once weighted in); B's target
  is 2 against 3..14.
  """
  rows = []  # (domain, target, history item or 0)
  rows += [(0, 2, 0)] * 30 + [(0, j, 3) for j in range(4, 14)]
  rows += [(1, 2, 3)] * 3 + [(1, j, 0) for j in range(3, 15) for _ in range(20)]
  domain, target, hist = (np.array(c) for c in zip(*rows))
  histories = np.zeros((len(rows), T), np.int64)
  histories[:, -1] = hist
  other = np.zeros_like(histories)  # B item 4 before A's co-occurrences (item_knn_cross)
  other[:, -1] = np.where((domain == 0) & (hist == 3), 4, 0)
  train = {F.ITEM_ID: target, F.DOMAIN: domain,
           F.HIST_A: np.where(domain[:, None] == 0, histories, 0),
           F.HIST_B: np.where(domain[:, None] == 1, histories, other),
           F.LABEL: np.ones(len(rows), np.float32)}
  negatives = np.array([list(range(4, 14)) + [0] * 2, list(range(3, 15))])
  validation = {F.ITEM_ID: np.array([2, 2, 5]), F.DOMAIN: np.array([0, 1, 0]),
                F.HIST_A: np.array([[0, 0, 0, 3], [0] * T, [0, 0, 0, 3]]),
                F.HIST_B: np.array([[0] * T, [0, 0, 0, 3], [0] * T]),
                F.NEGATIVES: np.concatenate([negatives, negatives[:1]]),
                F.LABEL: np.array([1.0, 1.0, 0.0], np.float32)}  # the last is not ranked
  return train, validation


def _reference_hit(scores: np.ndarray, valid: np.ndarray, k: int = 10):
  """Whether the target (column 0) is in the top k, with ties against it and with ties for it."""
  above = np.sum((scores[1:] > scores[0]) & valid[1:])
  ties = np.sum((scores[1:] == scores[0]) & valid[1:])
  return above + ties < k, above < k


def _reference_choice(train, validation):
  """The first best weight of the grid per domain by a NumPy validation HR@10."""
  chosen = []
  for d in F.DOMAINS:
    similarity = _reference_similarity(train, d, False, neighbours=20)
    log_clicks = np.log1p(_clicks(train, d))
    rows = [r for r in range(validation[F.LABEL].size)
            if validation[F.DOMAIN][r] == d and validation[F.LABEL][r] > 0.5]
    rates = []
    for weight in item_knn.BLEND_WEIGHTS:
      hits = []
      for r in rows:
        candidates = np.concatenate([[validation[F.ITEM_ID][r]], validation[F.NEGATIVES][r]])
        scores = (_reference_knn(similarity, validation[HISTORY[d]][r:r + 1],
                                 candidates[None])[0] + weight * log_clicks[candidates])
        pessimistic, optimistic = _reference_hit(scores, candidates != 0)
        assert pessimistic == optimistic  # the data leaves no tie to a tie-breaking rule
        hits.append(pessimistic)
      rates.append(np.mean(hits) if hits else 0.0)
    chosen.append(item_knn.BLEND_WEIGHTS[int(np.argmax(rates))])  # first best: smallest w
  return chosen


def test_pop_item_knn_chooses_the_best_weight_on_validation():
  train, validation = _blend_data()
  model = _build("pop_item_knn", knn_neighbors=20)
  model.adapt(_dataset(train))
  selection = model.select_on_validation(_dataset(validation))
  expected = _reference_choice(train, validation)
  assert expected[0] > 0 and expected[1] == 0  # popularity helps A, hurts B
  np.testing.assert_allclose(model.blend_weights.numpy(), expected)
  assert selection["blend_weight_a"] == expected[0] and selection["blend_weight_b"] == 0.0


def test_selection_needs_validation_negatives():
  train, validation = _blend_data()
  model = _build("pop_item_knn")
  model.adapt(_dataset(train))
  del validation[F.NEGATIVES]
  with pytest.raises(ValueError, match="pop_item_knn.*no 'negatives'"):
    model.select_on_validation(_dataset(validation))


def test_knn_neighbors_must_be_positive():
  with pytest.raises(config_lib.ConfigError, match="knn_neighbors=0: it must be >= 1"):
    CONFIG.replace(variant="item_knn", knn_neighbors=0)


# ----------------------------------------------------------------------------- recent popularity


def _reference_recent(train, domain, items: np.ndarray, times: np.ndarray, window: int):
  """``log(1 + r + a / (1 + A))`` by counting clicks with loops."""
  clicks = [(i, t) for i, t, d, l in zip(train[F.ITEM_ID], train[F.TIMESTAMP], train[F.DOMAIN],
                                         train[F.LABEL]) if d == domain and l > 0.5]
  all_time = _clicks(train, domain)
  out = np.zeros(items.shape)
  for b in range(items.shape[0]):
    for k, c in enumerate(items[b]):
      if not 2 <= c < NUM_ITEMS[domain]:
        continue
      recent = sum(1 for i, t in clicks if i == c and times[b] - window <= t < times[b])
      out[b, k] = np.log1p(recent + all_time[c] / (1 + all_time.max()))
  return out


def test_recent_popularity_matches_a_numpy_reference():
  train = _examples(seed=5, n=80)
  model = _build("recent_popularity")
  model.adapt(_dataset(train))
  times = np.random.default_rng(6).integers(-10, 140, 10) * DAY
  candidates = _candidates(seed=7, n=10)
  logits = model.head_logits({F.TIMESTAMP: tf.constant(times)}, tf.constant(candidates))
  for d in F.DOMAINS:
    expected = _reference_recent(train, d, candidates, times, 30 * DAY)
    np.testing.assert_allclose(logits[d].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert len(np.unique(expected.round(6))) > 5


def test_recent_window_is_half_open_before_the_time():
  """At t, clicks at t and at t - W - 1 day do not count; those at t - W and t - 1 s do.

  At t - 1 day the window is [t - W - 1 day, t - 1 day): its first two clicks count.
  """
  t, window = 100 * DAY, 30 * DAY
  click_times = [t, t - window - DAY, t - window, t - 1]
  train = {F.ITEM_ID: np.array([2, 2, 2, 2, 3]), F.DOMAIN: np.zeros(5, np.int64),
           F.TIMESTAMP: np.array(click_times + [t - 5]), F.LABEL: np.ones(5, np.float32)}
  model = _build("recent_popularity")
  model.adapt(_dataset(train))
  logits = model.head_logits({F.TIMESTAMP: tf.constant([t, t - DAY])},
                             tf.constant([[2, 3], [2, 3]]))[0].numpy()
  most = 4  # item 2's all-time clicks, the domain's largest
  np.testing.assert_allclose(np.expm1(logits), [[2 + 4 / (1 + most), 1 + 1 / (1 + most)],
                                                [2 + 4 / (1 + most), 0 + 1 / (1 + most)]],
                             rtol=1e-6)


def test_recent_popularity_breaks_ties_by_all_time_clicks():
  """Items 2 and 3 have one click each in the window; 3 has more clicks before it."""
  t = 200 * DAY
  train = {F.ITEM_ID: np.array([2, 3, 3, 3, 4]), F.DOMAIN: np.zeros(5, np.int64),
           F.TIMESTAMP: np.array([t - DAY, t - DAY, 10 * DAY, 11 * DAY, t - 2 * DAY]),
           F.LABEL: np.ones(5, np.float32)}
  model = _build("recent_popularity")
  model.adapt(_dataset(train))
  scores = model.head_logits({F.TIMESTAMP: tf.constant([t])}, tf.constant([[2, 3, 4, 5]]))[0]
  # 3 first; 2 and 4 tie (one click each, in the window and in all); 5 has none.
  assert list(np.argsort(-scores.numpy()[0], kind="stable")) == [1, 0, 2, 3]
  assert scores[0, 0] == scores[0, 2] and scores[0, 3] == 0.0


def test_recent_popularity_needs_timestamps_in_training_data():
  train = _examples(seed=5)
  del train[F.TIMESTAMP]
  with pytest.raises(ValueError, match="no 'timestamp' feature; re-run dasl-prepare"):
    _build("recent_popularity").adapt(_dataset(train))


def test_requests_without_time_are_scored_at_the_end_of_training():
  train = _examples(seed=5)
  model = _build("recent_popularity")
  model.adapt(_dataset(train))
  candidates = tf.constant(_candidates(seed=7, n=2))
  at_end = model.head_logits({F.TIMESTAMP: tf.constant([train[F.TIMESTAMP].max() + 1] * 2)},
                             candidates)
  untimed = model.head_logits({}, candidates)
  for got, want in zip(untimed, at_end):
    np.testing.assert_array_equal(got.numpy(), want.numpy())


# ----------------------------------------------------------------------------- serialization


@pytest.mark.parametrize("variant", baselines.FITTED_BASELINES)
def test_weights_and_saved_model_round_trip(variant, tmp_path):
  model = _build(variant)
  model.adapt(_dataset(_examples(seed=1)))
  if variant == "pop_item_knn":
    model.blend_weights.assign([0.3, 3.0])
  query = _examples(seed=2, n=12)
  features = {k: tf.constant(v) for k, v in query.items() if k not in (F.LABEL, F.TIMESTAMP)}
  candidates = tf.constant(_candidates(seed=3, n=12))
  expected = model.score_candidates(features, candidates).numpy()
  assert np.count_nonzero(expected) > 5

  model_io.save_final_weights(model, str(tmp_path / "weights"))
  restored = model_io.build_model(type(model).from_config(model.get_config()).model_config)
  restored.load_weights(str(tmp_path / "weights" / model_io.WEIGHTS_PREFIX)
                        ).assert_existing_objects_matched()
  np.testing.assert_allclose(restored.score_candidates(features, candidates), expected,
                             rtol=1e-6)

  # As the serving export does: the variables and functions traced without AutoGraph.
  root = tf.Module()
  root.model_variables = list(model.variables)
  specs = F.feature_spec_for(CONFIG).tensor_specs()
  serve = tf.function(model.score_candidates, autograph=False,
                      input_signature=[specs, tf.TensorSpec([None, None], tf.int64)])
  tf.saved_model.save(root, str(tmp_path / "saved"), signatures={"score": serve})
  loaded = tf.saved_model.load(str(tmp_path / "saved")).signatures["score"]
  got = loaded(candidates=candidates, **features)
  np.testing.assert_allclose(list(got.values())[0], expected, rtol=1e-6)


# ----------------------------------------------------------------------------- dasl-train


def _write_dataset_dir(root: str, splits) -> str:
  """A dasl-prepare-like directory (schema.json, vocab/, one shard per split) with timestamps."""
  spec = F.FeatureSpec(history_length=T, num_negatives=12, has_timestamp=True)
  paths = {}
  for name, examples in splits.items():
    n = examples[F.LABEL].size
    examples = dict(examples, **{F.USER_ID: np.full(n, 2), F.TIMESTAMP: np.arange(n) * DAY})
    paths[name] = (f"{name}-00000-of-00001.tfrecord",)
    planted.write_examples(os.path.join(root, paths[name][0]), examples, spec)
  os.makedirs(os.path.join(root, "vocab"))
  for vocab, size in (("users.txt", 7), ("items_a.txt", NUM_ITEMS[0] - 2),
                      ("items_b.txt", NUM_ITEMS[1] - 2)):
    with open(os.path.join(root, "vocab", vocab), "w", encoding="utf-8") as f:
      f.write("".join(f"{vocab[0]}{k}\n" for k in range(size)))
  F.DatasetSchema(feature_spec=spec, num_users=9, num_items_a=NUM_ITEMS[0],
                  num_items_b=NUM_ITEMS[1], splits=paths, timestamp_unit="seconds").save(root)
  return root


@pytest.fixture(scope="module")
def blend_dir(tmp_path_factory):
  """The blend data; its test split has no positive of A, so a test-split choice of w_A is 0."""
  train, validation = _blend_data()
  test = {k: v[1:] for k, v in validation.items()}
  return _write_dataset_dir(str(tmp_path_factory.mktemp("blend")),
                            {"train": train, "validation": validation, "test": test})


@pytest.mark.parametrize("variant", baselines.FITTED_BASELINES)
def test_dasl_train_fits_each_fitted_baseline(variant, blend_dir, tmp_path):
  data = training.TrainingData.from_data_dir(blend_dir)
  config = config_resolution.resolve_config(data.schema, None, {"variant": variant},
                                            {"batch_size": 64, "full_catalogue_positives": 0})
  metrics = training.train_and_evaluate(config, data, str(tmp_path / variant),
                                        write_report=False, verbose=0)
  assert metrics["epochs"] == 0 and metrics["best_epoch"] == 0
  assert 0.0 <= metrics["hr10_b"] <= 1.0 and 0.0 <= metrics["val_hr10_a"] <= 1.0
  model, _, _ = model_io.load_model(str(tmp_path / variant))
  fitted = model.clicks.click_keys[0] if variant == "recent_popularity" else model.neighbour_sims[0]
  assert np.count_nonzero(fitted.numpy()) > 0
  if variant == "pop_item_knn":
    # The validation split's choice, kept by the saved model; from the test split (or
    # without the selection) w_A would be 0.
    train, validation = _blend_data()
    np.testing.assert_allclose(model.blend_weights.numpy(), _reference_choice(train, validation))
