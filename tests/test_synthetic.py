"""The synthetic generators: seeded, raw logs or prepared examples, with a planted signal."""
import csv
import filecmp

import numpy as np
import pytest

from dasl_tf import features as F
from dasl_tf import planted
from dasl_tf import synthetic
from tests.references import pairwise_auc

SMALL = synthetic.SyntheticConfig(num_users=150, num_items_a=120, num_items_b=120, seed=3)


def _rows(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_same_seed_same_files_other_seed_other_files(tmp_path):
  first = synthetic.generate(str(tmp_path / "a"), SMALL)
  second = synthetic.generate(str(tmp_path / "b"), SMALL)
  third = synthetic.generate(str(tmp_path / "c"), synthetic.SyntheticConfig(
      num_users=150, num_items_a=120, num_items_b=120, seed=4))
  for key in first:
    assert filecmp.cmp(first[key], second[key], shallow=False), key
  assert not filecmp.cmp(first["input_a"], third["input_a"], shallow=False)


def test_writes_raw_logs_and_feature_tables(tmp_path):
  paths = synthetic.generate(str(tmp_path), SMALL)
  assert sorted(paths) == ["input_a", "input_b", "item_features_a", "item_features_b",
                           "user_features"]
  log = _rows(paths["input_a"])
  assert list(log[0]) == ["user_id", "item_id", "rating", "timestamp"]
  assert {int(r["rating"]) for r in log} <= {1, 2, 3, 4, 5}
  assert all(r["item_id"].startswith("a") for r in log)
  pairs = [(r["user_id"], r["item_id"]) for r in log]
  assert len(pairs) == len(set(pairs)), "one record per (user, item)"
  users = _rows(paths["user_features"])
  assert len(users) == SMALL.num_users and list(users[0]) == ["user_id", "age", "activity",
                                                              "segment"]
  items = _rows(paths["item_features_b"])
  assert len(items) == SMALL.num_items_b and list(items[0]) == ["item_id", "quality", "price",
                                                                "genre"]


def test_sparse_and_single_domain_users_exist():
  data = synthetic.simulate(SMALL)
  count_a = np.bincount(data.log_a.user, minlength=SMALL.num_users)
  count_b = np.bincount(data.log_b.user, minlength=SMALL.num_users)
  assert ((count_a == 0) & (count_b > 0)).any() and ((count_b == 0) & (count_a > 0)).any()
  both = (count_a > 0) & (count_b > 0)
  assert ((count_a <= 2) & both).sum() > 0.15 * SMALL.num_users
  assert np.median(count_b[both]) > 2 * np.median(count_a[both])


def test_recent_other_domain_history_predicts_clicks_better_than_stale_own_history():
  """The planted signal: for A targets, recent B items beat the user's earlier A items."""
  config = synthetic.SyntheticConfig(num_users=600, num_items_a=200, num_items_b=200, seed=1)
  data = synthetic.simulate(config)
  a, b = data.log_a, data.log_b
  own_scores, cross_scores, labels = [], [], []
  for k in range(len(a.user)):
    user, time = a.user[k], a.timestamp[k]
    own = a.item[(a.user == user) & (a.timestamp < time)]
    in_b = (b.user == user) & (b.timestamp < time)
    cross = b.item[in_b][np.argsort(b.timestamp[in_b])][-5:]
    if not len(own) or not len(cross):
      continue
    target = data.item_vectors_a[a.item[k]]
    own_scores.append(data.item_vectors_a[own].mean(axis=0) @ target)
    cross_scores.append(data.item_vectors_b[cross].mean(axis=0) @ target)
    labels.append(int(a.rating[k] >= 4))
  labels = np.asarray(labels)
  own_auc = pairwise_auc(labels, own_scores)
  cross_auc = pairwise_auc(labels, cross_scores)
  assert cross_auc > own_auc + 0.03, (cross_auc, own_auc)
  assert cross_auc > 0.6


def test_side_features_carry_part_of_the_signal(tmp_path):
  data = synthetic.simulate(SMALL)
  paths = synthetic.generate(str(tmp_path), SMALL)
  genre = np.array([int(r["genre"][1:]) for r in _rows(paths["item_features_a"])])
  assert np.array_equal(genre, np.argmax(data.item_vectors_a[:, :SMALL.num_segments], axis=1))
  quality = np.array([float(r["quality"]) for r in _rows(paths["item_features_a"])])
  assert np.corrcoef(quality, data.item_vectors_a[:, 0])[0, 1] > 0.7


@pytest.mark.parametrize("field,value", [("num_users", 0), ("sparse_fraction", 1.5),
                                         ("num_segments", 99)])
def test_rejects_bad_config(field, value):
  with pytest.raises(ValueError, match=field):
    synthetic.SyntheticConfig(**{field: value})


# ----------------------------------------------------------------------------- prepared examples

PLANTED = planted.PlantedConfig(num_users=42, num_items_a=12, num_items_b=15, history_length=4,
                                  history_noise=0.1)


def _real_items(history):
  return history[history != F.PAD_ID]


def test_planted_examples_follow_the_feature_spec():
  examples = planted.planted_examples(PLANTED, examples_per_user=5, seed=0, num_negatives=7,
                                        num_train_negatives=3)
  spec = F.FeatureSpec(history_length=4, num_negatives=7, num_train_negatives=3)
  shapes = spec.shapes(with_negatives=True, with_train_negatives=True)
  assert sorted(examples) == sorted(shapes)
  for name, (dtype, shape) in shapes.items():
    assert examples[name].dtype == dtype and examples[name].shape == (40 * 5,) + shape, name
  assert sorted(np.unique(examples[F.USER_ID])) == list(range(2, 42))
  assert set(np.unique(examples[F.DOMAIN])) == {F.DOMAIN_A, F.DOMAIN_B}
  in_a = examples[F.DOMAIN] == F.DOMAIN_A
  for rows, vocab_size in ((in_a, 12), (~in_a, 15)):
    for name in (F.ITEM_ID, F.NEGATIVES, F.TRAIN_NEGATIVES):
      assert examples[name][rows].min() >= 2 and examples[name][rows].max() < vocab_size, name
  for name, vocab_size in ((F.HIST_A, 12), (F.HIST_B, 15)):
    items = _real_items(examples[name])
    assert items.min() >= 2 and items.max() < vocab_size
    # Left padding: once a real item, never padding again.
    assert np.all(np.diff((examples[name] != F.PAD_ID).astype(int), axis=1) >= 0)
  assert set(np.unique(examples[F.LABEL])) == {0.0, 1.0}


def test_planted_examples_are_seeded_and_share_the_tastes_across_seeds():
  first = planted.planted_examples(PLANTED, 5, seed=1, users=[2, 3, 4])
  second = planted.planted_examples(PLANTED, 5, seed=1, users=[2, 3, 4])
  other = planted.planted_examples(PLANTED, 5, seed=2, users=[2, 3, 4])
  for name in first:
    np.testing.assert_array_equal(first[name], second[name])
  assert not np.array_equal(first[F.HIST_B], other[F.HIST_B])
  assert sorted(np.unique(first[F.USER_ID])) == [2, 3, 4] and first[F.USER_ID].size == 15
  for examples in (first, other):  # The seed does not change the tastes: user 3 likes odd items.
    assert (_real_items(examples[F.HIST_B][examples[F.USER_ID] == 3]) % 2).mean() > 0.7


def test_planted_signal_is_the_taste_of_user_histories_and_target():
  examples = planted.planted_examples(PLANTED, 200, seed=3, num_train_negatives=2)
  taste = examples[F.USER_ID] % 2
  liked = examples[F.ITEM_ID] % 2 == taste
  assert abs(examples[F.LABEL][liked].mean() - 0.9) < 0.03
  assert abs(examples[F.LABEL][~liked].mean() - 0.1) < 0.03
  for name in (F.HIST_A, F.HIST_B):
    real = examples[name] != F.PAD_ID
    of_taste = (examples[name] % 2 == taste[:, None])[real]
    assert abs(of_taste.mean() - 0.9) < 0.02, name  # history_noise = 0.1
  negatives = examples[F.TRAIN_NEGATIVES]  # uniform over the domain, as dasl-prepare draws them
  assert abs((negatives % 2 == taste[:, None]).mean() - 0.5) < 0.05
  limit = np.where(examples[F.DOMAIN] == F.DOMAIN_A, PLANTED.num_items_a, PLANTED.num_items_b)
  assert (negatives >= F.NUM_RESERVED_IDS).all() and (negatives < limit[:, None]).all()
  lengths = {name: (examples[name] != F.PAD_ID).sum(1) for name in (F.HIST_A, F.HIST_B)}
  assert lengths[F.HIST_A].min() == 0 and lengths[F.HIST_B].min() == 1  # the defaults
  assert lengths[F.HIST_A].max() == lengths[F.HIST_B].max() == 4


def test_planted_signal_can_live_in_one_domain_history_only():
  """taste_per_user=False, B revealing: only domain B's history tells a click from a non-click."""
  config = planted.PlantedConfig(num_users=42, history_length=4, min_history_a=4,
                                   min_history_b=4, click_rate=1.0, taste_per_user=False,
                                   revealing_domains=(F.DOMAIN_B,))
  examples = planted.planted_examples(config, 100, seed=4)
  labels = examples[F.LABEL]
  target_parity = examples[F.ITEM_ID] % 2

  def agreement(taste_guess):
    """AUC of 'the target has the guessed taste' as a click score."""
    return pairwise_auc(labels, (target_parity == taste_guess).astype(float))

  assert agreement(examples[F.HIST_B][:, -1] % 2) == 1.0
  assert abs(agreement(examples[F.HIST_A][:, -1] % 2) - 0.5) < 0.05
  assert abs(agreement(examples[F.USER_ID] % 2) - 0.5) < 0.05


def test_write_examples_round_trips_through_the_feature_spec(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  examples = planted.planted_examples(PLANTED, 2, seed=5, num_negatives=3)
  spec = F.FeatureSpec(history_length=4, num_negatives=3)
  path = str(tmp_path / "planted.tfrecord")
  planted.write_examples(path, examples, spec)
  serialized = next(iter(tf.data.TFRecordDataset(path).batch(1000)))
  parsed = spec.parse(serialized, with_negatives=True)
  assert sorted(parsed) == sorted(examples)
  for name, values in examples.items():
    np.testing.assert_array_equal(parsed[name].numpy(), values)


@pytest.mark.parametrize("field,value", [("num_users", 2), ("num_items_b", 3),
                                         ("min_history_a", 5), ("click_rate", 1.5),
                                         ("revealing_domains", ("a",))])
def test_rejects_bad_planted_config(field, value):
  with pytest.raises(ValueError, match=field):
    planted.PlantedConfig(**{field: value})


def test_pick_rate_biases_targets_towards_the_taste():
  config = planted.PlantedConfig(num_users=42, num_items_a=12, num_items_b=15, pick_rate=0.8)
  examples = planted.planted_examples(config, 200, seed=5)
  of_taste = examples[F.ITEM_ID] % 2 == examples[F.USER_ID] % 2
  assert abs(of_taste.mean() - 0.8) < 0.03
  uniform = planted.planted_examples(PLANTED, 200, seed=5)
  assert abs((uniform[F.ITEM_ID] % 2 == uniform[F.USER_ID] % 2).mean() - 0.5) < 0.03
  with pytest.raises(ValueError, match="pick_rate"):
    planted.PlantedConfig(pick_rate=1.5)
