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
  model = IdScorer(config_lib.ModelConfig(variant="id_scorer"))
  result = metrics.evaluate_model(model, dataset, k=3)

  own_score = np.where(features[F.DOMAIN] == 0, 1.0, -1.0) * features[F.ITEM_ID]
  sign = np.where(features[F.DOMAIN] == 0, 1.0, -1.0)[:, None]
  negatives = sign * features[F.NEGATIVES]
  above = (negatives >= own_score[:, None]) & (features[F.NEGATIVES] != F.PAD_ID)
  hit = above.sum(1) < 3
  for d, name in enumerate("ab"):
    in_d = features[F.DOMAIN] == d
    assert result[f"auc_{name}"] == pytest.approx(metrics.roc_auc(labels[in_d], own_score[in_d]))
    positives = in_d & (labels == 1)
    assert result[f"hr3_{name}"] == pytest.approx(hit[positives].mean())
    assert result[f"examples_{name}"] == in_d.sum()
    assert result[f"positives_{name}"] == positives.sum()


def test_evaluation_callback_adds_prefixed_metrics_to_the_logs():
  features = {F.USER_ID: [2, 2], F.ITEM_ID: [5, 6], F.DOMAIN: [0, 1],
              F.HIST_A: [[0, 3], [0, 0]], F.HIST_B: [[0, 0], [4, 5]], F.NEGATIVES: [[2], [9]]}
  dataset = tf.data.Dataset.from_tensor_slices((features, [1.0, 1.0])).batch(2)
  callback = metrics.EvaluationCallback(dataset)
  callback.set_model(IdScorer(config_lib.ModelConfig(variant="id_scorer")))
  logs = {"loss": 0.5}
  callback.on_epoch_end(0, logs)
  assert logs["val_hr10_a"] == 1.0 and logs["val_hr10_b"] == 1.0
  assert logs["val_positives_a"] == 1 and np.isnan(logs["val_auc_a"])
