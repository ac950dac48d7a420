"""The synthetic generator: seeded, raw-log format, and a planted cross-domain signal."""
import csv
import filecmp

import numpy as np
import pytest

from dasl_tf import synthetic

SMALL = synthetic.SyntheticConfig(num_users=150, num_items_a=120, num_items_b=120, seed=3)


def _rows(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Mann-Whitney AUC (ties count one half)."""
  pos, neg = scores[labels == 1], scores[labels == 0]
  greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return float(greater / (len(pos) * len(neg)))


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
  own_auc = _auc(np.asarray(own_scores), labels)
  cross_auc = _auc(np.asarray(cross_scores), labels)
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
