"""AUC, HR@K and NDCG@K per head, sampled and full-catalogue, against NumPy references."""
import math

import numpy as np
import pytest
import tensorflow as tf

from dasl_tf import catalogue as catalogue_lib
from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import metrics
from dasl_tf.models.base import CrossDomainRanker


def _pairwise_auc(labels, scores):
  pos, neg = scores[labels == 1], scores[labels == 0]
  diff = pos[:, None] - neg[None, :]
  return np.mean((diff > 0) + 0.5 * (diff == 0))


def _gain(rank, k):
  return 1.0 / math.log2(rank + 1) if rank <= k else 0.0


def _same(a, b):
  assert a.keys() == b.keys()
  for key in a:
    assert a[key] == b[key] or (np.isnan(a[key]) and np.isnan(b[key])), key


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_auc_matches_pairwise_count_with_ties(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, 200)
  scores = rng.integers(0, 8, 200).astype(float)  # many ties
  assert metrics.roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores))


def test_roc_auc_is_nan_with_one_class():
  assert np.isnan(metrics.roc_auc(np.ones(4), np.arange(4)))


def test_rank_counts_split_above_and_tied_candidates_and_skip_padding():
  scores = tf.constant([[5.0, 1.0, 2.0, 6.0], [3.0, 3.0, 3.0, 3.0], [1.0, 9.0, 9.0, 0.0]])
  valid = tf.constant([[True] * 4, [True] * 4, [True, False, False, True]])
  above, ties = metrics.rank_counts(scores, valid)
  np.testing.assert_array_equal(above.numpy(), [1, 0, 0])
  np.testing.assert_array_equal(ties.numpy(), [0, 3, 0])


def test_counter_uniforms_are_uniform_and_a_function_of_seed_stream_and_index():
  index = np.arange(20000)
  u = metrics.counter_uniforms(5, 0, index)
  counts = np.histogram(u, bins=10, range=(0, 1))[0]
  chi2 = ((counts - 2000) ** 2 / 2000).sum()
  assert chi2 < 30  # 9 degrees of freedom: p < 1e-3
  np.testing.assert_array_equal(metrics.counter_uniforms(5, 0, index[::-1])[::-1], u)
  for other in (metrics.counter_uniforms(6, 0, index), metrics.counter_uniforms(5, 1, index)):
    assert abs(np.corrcoef(u, other)[0, 1]) < 0.05


def test_random_ranks_take_each_tied_position_equally_often():
  ties = np.full(50000, 4)
  ranks = metrics.random_ranks(np.full(50000, 2), ties,
                               metrics.counter_uniforms(1, 0, np.arange(50000)))
  counts = np.bincount(ranks, minlength=8)
  assert counts[:3].sum() == 0 and counts[8:].sum() == 0
  np.testing.assert_allclose(counts[3:8] / 50000, 0.2, atol=0.01)  # ranks 3..7


_CONFIG = config_lib.ModelConfig(variant="id", num_users=12, num_items_a=30, num_items_b=30)


class IdScorer(CrossDomainRanker):
  """A real two-headed model whose score is the candidate id (head A) or minus it (head B)."""

  def head_logits(self, features, candidates, training=False):
    score = tf.cast(candidates, tf.float32)
    return score, -score


class ConstantScorer(CrossDomainRanker):
  """Every candidate scores 0 under both heads."""

  def head_logits(self, features, candidates, training=False):
    zeros = tf.zeros(tf.shape(candidates), tf.float32)
    return zeros, zeros


class TableScorer(CrossDomainRanker):
  """Score of (user, item) read from a fixed table per domain."""

  def __init__(self, config, tables):
    super().__init__(config)
    self.tables = [tf.constant(t, tf.float32) for t in tables]

  def head_logits(self, features, candidates, training=False):
    return tuple(tf.gather(tf.gather(table, features[F.USER_ID]), candidates, batch_dims=1)
                 for table in self.tables)


def _examples(rng, n, k_neg=9, users=10, items=30, hist=3):
  return {F.USER_ID: rng.integers(2, users, n), F.ITEM_ID: rng.integers(2, items, n),
          F.DOMAIN: rng.integers(0, 2, n),
          F.HIST_A: rng.integers(0, items, (n, hist)), F.HIST_B: rng.integers(0, items, (n, hist)),
          F.NEGATIVES: rng.integers(2, items, (n, k_neg))}


def _dataset(features, labels, batch):
  return tf.data.Dataset.from_tensor_slices((features, labels.astype(np.float32))).batch(batch)


def test_evaluate_model_matches_numpy():
  rng = np.random.default_rng(0)
  n = 40
  features = _examples(rng, n)
  features[F.HIST_A][:] = 0
  features[F.HIST_B][:] = 0
  features[F.NEGATIVES][0, :4] = F.PAD_ID
  labels = rng.integers(0, 2, n)
  result = metrics.evaluate_model(IdScorer(_CONFIG), _dataset(features, labels, 16), k=3)

  sign = np.where(features[F.DOMAIN] == 0, 1.0, -1.0)
  own_score = sign * features[F.ITEM_ID]
  negatives = sign[:, None] * features[F.NEGATIVES]
  valid = features[F.NEGATIVES] != F.PAD_ID
  above = ((negatives > own_score[:, None]) & valid).sum(1)
  at_least = ((negatives >= own_score[:, None]) & valid).sum(1)
  for d, name in enumerate("ab"):
    in_d = features[F.DOMAIN] == d
    assert result[f"auc_{name}"] == pytest.approx(_pairwise_auc(labels[in_d], own_score[in_d]))
    positives = in_d & (labels == 1)
    assert result[f"hr3_tied_against_{name}"] == pytest.approx((at_least[positives] < 3).mean())
    # Random tie-breaking lies between ties-against and ties-for.
    assert (at_least[positives] < 3).mean() <= result[f"hr3_{name}"] <= (
        above[positives] < 3).mean()
    assert result[f"examples_{name}"] == in_d.sum()
    assert result[f"positives_{name}"] == positives.sum()
    assert result[f"unseen_target_share_{name}"] == 0.0
  assert not any("full" in key or "cold_start_user" in key for key in result)


def test_sampled_hr_and_ndcg_match_numpy_without_ties():
  rng = np.random.default_rng(4)
  n, k_neg, k = 120, 9, 3
  # Distinct candidate ids per example: the id scorer never ties.
  candidates = np.stack([rng.permutation(np.arange(2, 30))[:1 + k_neg] for _ in range(n)])
  features = _examples(rng, n, k_neg)
  features[F.ITEM_ID], features[F.NEGATIVES] = candidates[:, 0], candidates[:, 1:]
  labels = np.ones(n)
  result = metrics.evaluate_model(IdScorer(_CONFIG), _dataset(features, labels, 32), k=k)

  sign = np.where(features[F.DOMAIN] == 0, 1, -1)[:, None]
  ranks = 1 + (sign * candidates[:, 1:] > sign * candidates[:, :1]).sum(1)
  for d, name in enumerate("ab"):
    rows = features[F.DOMAIN] == d
    assert result[f"hr3_{name}"] == pytest.approx((ranks[rows] <= k).mean())
    assert result[f"hr3_tied_against_{name}"] == result[f"hr3_{name}"]
    assert result[f"ndcg3_{name}"] == pytest.approx(np.mean([_gain(r, k) for r in ranks[rows]]))


def test_constant_scorer_gets_k_over_k_plus_one_with_seeded_batch_free_ties():
  rng = np.random.default_rng(1)
  n = 4000
  features = _examples(rng, n, k_neg=99)
  labels = np.ones(n)
  model = ConstantScorer(_CONFIG)
  result = metrics.evaluate_model(model, _dataset(features, labels, 256), seed=3)
  expected_ndcg = sum(_gain(r, 10) for r in range(1, 11)) / 100  # rank uniform on 1..100
  for name in "ab":
    assert result[f"hr10_{name}"] == pytest.approx(0.10, abs=0.02)
    assert result[f"ndcg10_{name}"] == pytest.approx(expected_ndcg, abs=0.01)
    assert result[f"hr10_tied_against_{name}"] == 0.0
  _same(result, metrics.evaluate_model(model, _dataset(features, labels, 37), seed=3))
  other = metrics.evaluate_model(model, _dataset(features, labels, 256), seed=4)
  assert other["ndcg10_a"] != result["ndcg10_a"]


def test_slice_metrics_match_numpy_per_slice():
  rng = np.random.default_rng(3)
  n, t, k_neg = 300, 5, 9
  hist_a = rng.integers(2, 30, (n, t)) * (rng.random((n, t)) < rng.random((n, 1)))
  hist_b = rng.integers(2, 30, (n, t)) * (rng.random((n, t)) < rng.random((n, 1)))
  hist_b[:60] = 0  # some examples with no domain-B history at all
  features = {F.USER_ID: np.full(n, 2), F.ITEM_ID: rng.integers(2, 30, n),
              F.DOMAIN: rng.integers(0, 2, n), F.HIST_A: hist_a, F.HIST_B: hist_b,
              F.NEGATIVES: rng.integers(2, 30, (n, k_neg))}
  labels = rng.integers(0, 2, n)
  result = metrics.evaluate_model(IdScorer(_CONFIG), _dataset(features, labels, 64), k=3)

  sign = np.where(features[F.DOMAIN] == 0, 1.0, -1.0)
  own_score = sign * features[F.ITEM_ID]
  hit = ((sign[:, None] * features[F.NEGATIVES]) >= own_score[:, None]).sum(1) < 3
  count_a, count_b = (hist_a > 0).sum(1), (hist_b > 0).sum(1)
  own = np.where(features[F.DOMAIN] == 0, count_a, count_b)
  other = np.where(features[F.DOMAIN] == 0, count_b, count_a)
  expected_slices = {"cold_start": own <= 2, "no_other_domain": other == 0,
                     "both_domains": (own >= 1) & (other >= 1)}
  checked = 0
  for slice_name, in_slice in expected_slices.items():
    for d, name in enumerate("ab"):
      rows = in_slice & (features[F.DOMAIN] == d)
      assert result[f"examples_{name}_{slice_name}"] == rows.sum()
      if 0 < labels[rows].sum() < rows.sum():
        assert result[f"auc_{name}_{slice_name}"] == pytest.approx(
            _pairwise_auc(labels[rows], own_score[rows]))
        checked += 1
      positives = rows & (labels == 1)
      assert result[f"positives_{name}_{slice_name}"] == positives.sum()
      assert result[f"hr3_tied_against_{name}_{slice_name}"] == pytest.approx(
          hit[positives].mean())
  assert checked == 6


# ----------------------------------------------------------------------------- full catalogue

NUM_USERS, NUM_ITEMS = 12, 30


def _training_examples(rng, n):
  examples = _examples(rng, n, users=NUM_USERS - 2, items=NUM_ITEMS)
  examples.pop(F.NEGATIVES)
  examples[F.USER_ID] = np.minimum(examples[F.USER_ID], NUM_USERS - 3)  # user 9+ never trains
  examples[F.ITEM_ID][:5] = F.OOV_ID  # unseen items are not catalogue items
  return examples


def _touched_reference(train):
  """{(domain, user): items} from the training examples, by a Python loop."""
  touched = {}
  for n in range(train[F.USER_ID].size):
    user = int(train[F.USER_ID][n])
    touched.setdefault((int(train[F.DOMAIN][n]), user), set()).add(int(train[F.ITEM_ID][n]))
    for d, hist in ((0, F.HIST_A), (1, F.HIST_B)):
      touched.setdefault((d, user), set()).update(int(i) for i in train[hist][n])
  return {key: {i for i in items if i >= 2} for key, items in touched.items()}


def _full_ranks_reference(tables, touched, features, labels, num_items=(NUM_ITEMS, NUM_ITEMS)):
  """Full-catalogue rank of each positive (inf for an OOV target), tables without ties."""
  ranks = {}
  for n in np.flatnonzero(labels == 1):
    d, user, target = (int(features[name][n]) for name in (F.DOMAIN, F.USER_ID, F.ITEM_ID))
    if target == F.OOV_ID:
      ranks[n] = math.inf
      continue
    history = set(int(i) for i in features[(F.HIST_A, F.HIST_B)[d]][n])
    candidates = [i for i in range(2, num_items[d]) if i != target and i not in history
                  and i not in touched.get((d, user), set())]
    ranks[n] = 1 + sum(tables[d][user, i] > tables[d][user, target] for i in candidates)
  return ranks


def _full_catalogue_case(seed=0, n=160):
  rng = np.random.default_rng(seed)
  train = _training_examples(rng, 60)
  catalogue = catalogue_lib.FullCatalogue.from_batches([train], (NUM_ITEMS, NUM_ITEMS))
  tables = [rng.permutation(NUM_USERS * NUM_ITEMS).reshape(NUM_USERS, NUM_ITEMS) / 10.0
            for _ in range(2)]  # distinct scores: no ties
  features = _examples(rng, n, users=NUM_USERS, items=NUM_ITEMS)
  features[F.ITEM_ID][rng.random(n) < 0.2] = F.OOV_ID
  labels = (rng.random(n) < 0.7).astype(np.int64)
  model = TableScorer(_CONFIG, tables)
  return train, catalogue, tables, features, labels, model


def test_catalogue_holds_each_users_touched_items_and_known_users():
  train, catalogue, _, _, _, _ = _full_catalogue_case()
  touched = _touched_reference(train)
  for d in (0, 1):
    for user in range(NUM_USERS):
      np.testing.assert_array_equal(catalogue.touched_items(d, user),
                                    sorted(touched.get((d, user), set())))
    users = np.arange(NUM_USERS)
    trained = {int(u) for u in train[F.USER_ID][train[F.DOMAIN] == d]}
    np.testing.assert_array_equal(catalogue.cold_start_users(np.full(NUM_USERS, d), users),
                                  [u not in trained for u in users])


def test_catalogue_from_files_equals_the_one_from_batches(tmp_path):
  rng = np.random.default_rng(2)
  train = _training_examples(rng, 40)
  spec = F.FeatureSpec(history_length=3)
  path = str(tmp_path / "train.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for n in range(40):
      writer.write(spec.encode(dict({name: values[n] for name, values in train.items()},
                                    label=1.0)))
  from_files = catalogue_lib.FullCatalogue.from_files([path], spec, (NUM_ITEMS, NUM_ITEMS))
  from_batches = catalogue_lib.FullCatalogue.from_batches([train], (NUM_ITEMS, NUM_ITEMS))
  halves = [catalogue_lib.FullCatalogue.from_batches(
      [{name: values[part] for name, values in train.items()}], (NUM_ITEMS, NUM_ITEMS))
      for part in (slice(0, 25), slice(25, 40))]
  union = halves[0].union(halves[1])
  for d in (0, 1):
    for catalogue in (from_files, union):
      np.testing.assert_array_equal(catalogue.touched[d], from_batches.touched[d])
      np.testing.assert_array_equal(catalogue.users[d], from_batches.users[d])
  outside = train[F.HIST_B].copy()
  outside[3, 1] = NUM_ITEMS
  with pytest.raises(ValueError, match="hist_b holds item id 30, outside domain b's"):
    catalogue_lib.FullCatalogue.from_batches([dict(train, **{F.HIST_B: outside})],
                                       (NUM_ITEMS, NUM_ITEMS))


def test_full_catalogue_ranks_untouched_items_and_counts_unseen_targets_as_misses():
  train, catalogue, tables, features, labels, model = _full_catalogue_case()
  k = 5
  result = metrics.evaluate_model(model, _dataset(features, labels, 16), k=k,
                                  catalogue=catalogue, full_catalogue_positives=1000)
  ranks = _full_ranks_reference(tables, _touched_reference(train), features, labels)
  assert any(r == math.inf for r in ranks.values())
  trained = {(int(d), int(u)) for d, u in zip(train[F.DOMAIN], train[F.USER_ID])}
  cold_user = np.array([(int(d), int(u)) not in trained
                        for d, u in zip(features[F.DOMAIN], features[F.USER_ID])])
  assert 0 < cold_user.sum() < cold_user.size
  for suffix, in_slice in (("", np.ones(labels.size, bool)), ("_cold_start_user", cold_user)):
    for d, name in enumerate("ab"):
      rows = [n for n in ranks if features[F.DOMAIN][n] == d and in_slice[n]]
      in_vocab = [n for n in rows if ranks[n] != math.inf]
      assert result[f"full_catalogue_positives_{name}{suffix}"] == len(rows)
      assert result[f"hr5_full_{name}{suffix}"] == pytest.approx(
          np.mean([ranks[n] <= k for n in rows]))
      assert result[f"ndcg5_full_{name}{suffix}"] == pytest.approx(
          np.mean([_gain(ranks[n], k) for n in rows]))
      assert result[f"hr5_full_in_vocab_{name}{suffix}"] == pytest.approx(
          np.mean([ranks[n] <= k for n in in_vocab]))
      assert result[f"ndcg5_full_in_vocab_{name}{suffix}"] == pytest.approx(
          np.mean([_gain(ranks[n], k) for n in in_vocab]))
      assert result[f"unseen_target_share_{name}{suffix}"] == pytest.approx(
          1 - len(in_vocab) / len(rows))
      examples = (features[F.DOMAIN] == d) & in_slice
      assert result[f"examples_{name}{suffix}"] == examples.sum()
      scores = tables[d][features[F.USER_ID][examples], features[F.ITEM_ID][examples]]
      assert result[f"auc_{name}{suffix}"] == pytest.approx(
          _pairwise_auc(labels[examples], scores))
  # Neither the batch size, nor the scoring chunks, change a rank.
  _same(result, metrics.evaluate_model(model, _dataset(features, labels, 7), k=k,
                                       catalogue=catalogue, full_catalogue_positives=1000,
                                       user_batch=3, item_chunk=4))


def test_catalogues_of_different_sizes_rank_each_domain_against_its_own_items():
  """Domain B's catalogue is scored in chunks as wide as A's: its columns past B's items are
  not ranked."""
  rng = np.random.default_rng(6)
  sizes = (NUM_ITEMS, 17)
  train = _training_examples(rng, 60)
  b = train[F.DOMAIN] == 1
  train[F.ITEM_ID][b] = np.minimum(train[F.ITEM_ID][b], sizes[1] - 1)
  train[F.HIST_B] = np.minimum(train[F.HIST_B], sizes[1] - 1)
  catalogue = catalogue_lib.FullCatalogue.from_batches([train], sizes)
  tables = [rng.permutation(NUM_USERS * size).reshape(NUM_USERS, size) / 10.0 for size in sizes]
  features = _examples(rng, 120, users=NUM_USERS, items=sizes[1])
  features[F.HIST_B] = np.minimum(features[F.HIST_B], sizes[1] - 1)
  labels = (rng.random(120) < 0.7).astype(np.int64)
  config = config_lib.ModelConfig(variant="table", num_users=NUM_USERS, num_items_a=sizes[0],
                                  num_items_b=sizes[1])
  result = metrics.evaluate_model(TableScorer(config, tables), _dataset(features, labels, 16),
                                  k=5, catalogue=catalogue, full_catalogue_positives=1000,
                                  item_chunk=64)
  ranks = _full_ranks_reference(tables, _touched_reference(train), features, labels, sizes)
  for d, name in enumerate("ab"):
    rows = [n for n in ranks if features[F.DOMAIN][n] == d]
    assert result[f"hr5_full_{name}"] == pytest.approx(np.mean([ranks[n] <= 5 for n in rows]))
    assert result[f"ndcg5_full_{name}"] == pytest.approx(
        np.mean([_gain(ranks[n], 5) for n in rows]))


def test_one_scorer_traces_its_functions_once_for_several_evaluations():
  _, catalogue, _, features, labels, model = _full_catalogue_case()
  scorer = metrics.EvaluationScorer(model)
  first = metrics.evaluate_model(model, _dataset(features, labels, 48), catalogue=catalogue,
                                 scorer=scorer)
  traces = (scorer.batch.experimental_get_tracing_count(),
            scorer.catalogue_chunk.experimental_get_tracing_count())
  assert traces == (1, 2)  # the partial last batch (160 = 3 x 48 + 16) too; one per domain
  second = metrics.evaluate_model(model, _dataset(features, labels, 16), catalogue=catalogue,
                                  scorer=scorer)
  _same(first, second)
  assert (scorer.batch.experimental_get_tracing_count(),
          scorer.catalogue_chunk.experimental_get_tracing_count()) == traces
  _same(first, metrics.evaluate_model(model, _dataset(features, labels, 16), catalogue=catalogue))
  with pytest.raises(ValueError, match="another model"):
    metrics.evaluate_model(IdScorer(_CONFIG), _dataset(features, labels, 16), scorer=scorer)


def test_a_touched_item_scored_highest_does_not_push_the_target_down():
  catalogue = catalogue_lib.FullCatalogue.from_batches(
      [{F.USER_ID: np.array([2]), F.ITEM_ID: np.array([9]), F.DOMAIN: np.array([0]),
        F.HIST_A: np.array([[0, 0, 4]]), F.HIST_B: np.zeros((1, 3), np.int64)}],
      (NUM_ITEMS, NUM_ITEMS))
  table = np.tile(np.arange(NUM_ITEMS) / 100.0, (NUM_USERS, 1))
  table[:, 9], table[:, 4], table[:, 6] = 3.0, 2.0, 1.0  # touched 9 and 4 above target 6
  features = {F.USER_ID: np.array([2, 2, 3]), F.ITEM_ID: np.array([6, 6, 6]),
              F.DOMAIN: np.zeros(3, np.int64), F.HIST_A: np.array([[0, 0, 0]] * 2 + [[0, 0, 9]]),
              F.HIST_B: np.zeros((3, 3), np.int64)}
  features[F.HIST_A][1, 2] = 29  # below the target: excluding it changes nothing
  model = TableScorer(_CONFIG, [table, table])
  result = metrics.evaluate_model(model, _dataset(features, np.ones(3), 3), k=1,
                                  catalogue=catalogue)
  # Users 2: 9 and 4 touched, the target first. User 3: 9 in its own history, 4 untouched
  # and scored above the target, so a miss.
  assert result["hr1_full_a"] == pytest.approx(2 / 3)
  assert result["ndcg1_full_a"] == pytest.approx(2 / 3)
  assert result["hr1_full_a_cold_start_user"] == 0.0
  assert result["full_catalogue_positives_a_cold_start_user"] == 1


def test_the_full_catalogue_sample_is_seeded_and_batch_free():
  _, catalogue, _, features, labels, model = _full_catalogue_case(seed=1, n=200)
  first = metrics.evaluate_model(model, _dataset(features, labels, 32), catalogue=catalogue,
                                 full_catalogue_positives=9, seed=5)
  assert first["full_catalogue_positives_a"] == first["full_catalogue_positives_b"] == 9
  _same(first, metrics.evaluate_model(model, _dataset(features, labels, 13),
                                      catalogue=catalogue, full_catalogue_positives=9, seed=5))
  off = metrics.evaluate_model(model, _dataset(features, labels, 32), catalogue=catalogue,
                               full_catalogue_positives=0)
  assert "hr10_full_a" not in off and "auc_a_cold_start_user" in off


@pytest.mark.parametrize("negatives", ["absent", "all_padding", "no_columns", "some_rows"])
def test_positives_are_counted_without_negatives_and_unranked_ones_are_left_out(negatives):
  """Clicks are counted whatever the negatives; only positives with a real negative are ranked."""
  features = {F.USER_ID: np.array([2, 3, 4, 5, 6, 7]), F.ITEM_ID: np.array([5, 6, 7, 8, 9, 4]),
              F.DOMAIN: np.array([0, 0, 1, 0, 1, 1]),
              F.HIST_A: np.zeros((6, 2), np.int64), F.HIST_B: np.zeros((6, 2), np.int64),
              F.NEGATIVES: np.array([[9, 3], [2, 3], [8, 2], [2, 3], [3, 2], [5, 6]])}
  labels = np.array([1, 1, 1, 0, 1, 1])
  if negatives == "absent":
    del features[F.NEGATIVES]
  elif negatives == "all_padding":
    features[F.NEGATIVES][:] = F.PAD_ID
  elif negatives == "no_columns":
    features[F.NEGATIVES] = features[F.NEGATIVES][:, :0]
  else:  # rows 0 and 4 have only padding
    features[F.NEGATIVES][[0, 4]] = F.PAD_ID
  result = metrics.evaluate_model(IdScorer(_CONFIG), _dataset(features, labels, 4), k=1)

  # Head A scores an item by its id, head B by minus its id (IdScorer).
  for d, name in enumerate("ab"):
    clicks = (features[F.DOMAIN] == d) & (labels == 1)
    assert result[f"positives_{name}"] == clicks.sum()
    if negatives != "some_rows":
      assert all(np.isnan(result[f"{key}_{name}"]) for key in ("hr1", "ndcg1", "hr1_tied_against"))
      continue
    negative_ids = features[F.NEGATIVES]
    ranked = clicks & (negative_ids != F.PAD_ID).any(axis=1)
    sign = 1 if d == 0 else -1
    hits = (sign * negative_ids[ranked] < sign * features[F.ITEM_ID][ranked, None]).all(axis=1)
    assert ranked.sum() > 0 and result[f"hr1_{name}"] == pytest.approx(hits.mean())
