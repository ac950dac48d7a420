"""AUC and HR@K per head, against brute-force NumPy references."""
import numpy as np
import pytest
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import metrics
from dasl_tf.models.base import CrossDomainRanker


def _pairwise_auc(labels, scores):
  pos, neg = scores[labels == 1], scores[labels == 0]
  diff = pos[:, None] - neg[None, :]
  return np.mean((diff > 0) + 0.5 * (diff == 0))


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_auc_matches_pairwise_count_with_ties(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, 200)
  scores = rng.integers(0, 8, 200).astype(float)  # many ties
  assert metrics.roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores))


def test_roc_auc_is_nan_with_one_class():
  assert np.isnan(metrics.roc_auc(np.ones(4), np.arange(4)))


def test_hits_at_k_counts_ties_against_the_target_and_skips_padding():
  scores = tf.constant([[5.0, 1.0, 2.0, 6.0], [3.0, 3.0, 3.0, 3.0], [1.0, 9.0, 9.0, 0.0]])
  valid = tf.constant([[True] * 4, [True] * 4, [True, False, False, True]])
  np.testing.assert_array_equal(metrics.hits_at_k(scores, valid, k=2).numpy(),
                                [True, False, True])


_CONFIG = config_lib.ModelConfig(variant="id", num_users=3, num_items_a=30, num_items_b=30)


class IdScorer(CrossDomainRanker):
  """A real two-headed model whose score is the candidate id (head A) or minus it (head B)."""

  def head_logits(self, features, candidates, training=False):
    score = tf.cast(candidates, tf.float32)
    return score, -score


def test_evaluate_model_matches_numpy():
  rng = np.random.default_rng(0)
  n, k_neg = 40, 9
  features = {F.USER_ID: np.full(n, 2), F.ITEM_ID: rng.integers(2, 30, n),
              F.DOMAIN: rng.integers(0, 2, n), F.HIST_A: np.zeros((n, 3), np.int64),
              F.HIST_B: np.zeros((n, 3), np.int64), F.NEGATIVES: rng.integers(2, 30, (n, k_neg))}
  features[F.NEGATIVES][0, :4] = F.PAD_ID
  labels = rng.integers(0, 2, n).astype(np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(16)
  model = IdScorer(_CONFIG)
  result = metrics.evaluate_model(model, dataset, k=3)

  own_score = np.where(features[F.DOMAIN] == 0, 1.0, -1.0) * features[F.ITEM_ID]
  sign = np.where(features[F.DOMAIN] == 0, 1.0, -1.0)[:, None]
  negatives = sign * features[F.NEGATIVES]
  above = (negatives >= own_score[:, None]) & (features[F.NEGATIVES] != F.PAD_ID)
  hit = above.sum(1) < 3
  for d, name in enumerate("ab"):
    in_d = features[F.DOMAIN] == d
    assert result[f"auc_{name}"] == pytest.approx(_pairwise_auc(labels[in_d], own_score[in_d]))
    positives = in_d & (labels == 1)
    assert result[f"hr3_{name}"] == pytest.approx(hit[positives].mean())
    assert result[f"examples_{name}"] == in_d.sum()
    assert result[f"positives_{name}"] == positives.sum()


def test_slice_metrics_match_numpy_per_slice():
  rng = np.random.default_rng(3)
  n, t, k_neg = 300, 5, 9
  hist_a = rng.integers(2, 30, (n, t)) * (rng.random((n, t)) < rng.random((n, 1)))
  hist_b = rng.integers(2, 30, (n, t)) * (rng.random((n, t)) < rng.random((n, 1)))
  hist_b[:60] = 0  # some examples with no domain-B history at all
  features = {F.USER_ID: np.full(n, 2), F.ITEM_ID: rng.integers(2, 30, n),
              F.DOMAIN: rng.integers(0, 2, n), F.HIST_A: hist_a, F.HIST_B: hist_b,
              F.NEGATIVES: rng.integers(2, 30, (n, k_neg))}
  labels = rng.integers(0, 2, n).astype(np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(64)
  result = metrics.evaluate_model(IdScorer(_CONFIG),
                                  dataset, k=3)

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
      assert result[f"hr3_{name}_{slice_name}"] == pytest.approx(hit[positives].mean())
  assert checked == 6
