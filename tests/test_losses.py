"""The top-n ranking losses against NumPy references, and how compute_loss combines them."""
import numpy as np
import pytest
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import losses
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.models.task import CrossDomainTask


def _numpy_bce(target, negatives, positive):
  return positive * np.log1p(np.exp(-target)) + np.mean(np.log1p(np.exp(negatives)), axis=1)


def _numpy_softmax(target, negatives, labels):
  logits = np.concatenate([target[:, None], negatives], axis=1)
  log_softmax = logits[:, 0] - np.log(np.exp(logits).sum(axis=1))
  return -labels * log_softmax


@pytest.mark.parametrize("kind", ["bce", "softmax"])
def test_ranking_loss_matches_numpy(kind):
  rng = np.random.default_rng(0)
  target = rng.normal(size=8).astype(np.float32) * 3
  negatives = rng.normal(size=(8, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 2, 8).astype(np.float32)
  got = losses.sampled_ranking_loss(kind, tf.constant(target), tf.constant(negatives),
                                    tf.constant(labels)).numpy()
  expected = (_numpy_bce(target, negatives, labels) if kind == "bce"
              else _numpy_softmax(target, negatives, labels))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _numpy_corrected(kind, target, negatives, positive, target_log_q, negative_log_q, mask):
  """The log-q corrected, masked losses written out: c = r - log q; empty slots left out."""
  c0, c = target - target_log_q, negatives - negative_log_q
  out = np.zeros(len(target))
  for row in range(len(target)):
    kept = c[row][mask[row] == 1]
    if kind == "bce":
      out[row] = (positive[row] * np.log1p(np.exp(-c0[row]))
                  + np.sum(np.log1p(np.exp(kept))) / negatives.shape[1])
    else:
      out[row] = positive[row] * (np.log(np.exp(c0[row]) + np.exp(kept).sum()) - c0[row])
  return out


@pytest.mark.parametrize("kind", ["bce", "softmax"])
def test_log_q_corrected_masked_ranking_loss_matches_numpy(kind):
  rng = np.random.default_rng(2)
  target = rng.normal(size=8).astype(np.float32) * 2
  negatives = rng.normal(size=(8, 5)).astype(np.float32) * 2
  labels = rng.integers(0, 2, 8).astype(np.float32)
  target_log_q = np.log(rng.uniform(0.01, 0.3, 8)).astype(np.float32)
  negative_log_q = np.log(rng.uniform(0.01, 0.3, (8, 5))).astype(np.float32)
  mask = (rng.random((8, 5)) < 0.7).astype(np.float32)
  mask[0] = 0.0  # a row without a single negative
  got = losses.sampled_ranking_loss(kind, tf.constant(target), tf.constant(negatives),
                                    tf.constant(labels), tf.constant(target_log_q),
                                    tf.constant(negative_log_q), tf.constant(mask)).numpy()
  expected = _numpy_corrected(kind, target, negatives, labels, target_log_q, negative_log_q,
                              mask)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_constant_log_q_leaves_the_softmax_loss_unchanged():
  """Uniform draws: every log q is one constant, and the softmax form needs no correction."""
  rng = np.random.default_rng(3)
  target, negatives = tf.constant(rng.normal(size=6)), tf.constant(rng.normal(size=(6, 4)))
  positive = tf.ones([6], tf.float64)
  plain = losses.sampled_ranking_loss("softmax", target, negatives, positive)
  constant = losses.sampled_ranking_loss("softmax", target, negatives, positive,
                                         tf.fill([6], np.log(1 / 50.0)),
                                         tf.fill([6, 4], np.log(1 / 50.0)))
  np.testing.assert_allclose(constant.numpy(), plain.numpy(), rtol=1e-12)


def test_the_log_q_correction_needs_both_tensors():
  with pytest.raises(ValueError, match="negative_log_q"):
    losses.sampled_ranking_loss("bce", tf.zeros([1]), tf.zeros([1, 1]), tf.zeros([1]),
                                target_log_q=tf.zeros([1]))


def test_unknown_ranking_loss_is_an_error():
  with pytest.raises(ValueError, match="hinge"):
    losses.sampled_ranking_loss("hinge", tf.zeros([1]), tf.zeros([1, 1]), tf.zeros([1]))


_CONFIG = config_lib.ModelConfig(variant="id", num_users=3, num_items_a=30, num_items_b=30)


class IdScorer(CrossDomainRanker):
  """CTR logit = w * id / 10 (head A) or -w * id / 10 (head B); relevance = id / 20 if asked."""

  def __init__(self, config, relevance=False):
    self._relevance = relevance  # read by the base's constructor (has_relevance)
    super().__init__(config)
    self.w = self.add_weight(name="w", shape=(), initializer="ones")

  @property
  def has_relevance(self):
    return self._relevance

  def head_logits(self, features, candidates, training=False):
    score = self.w * tf.cast(candidates, tf.float32) / 10.0
    return score, -score

  def head_outputs(self, features, candidates, training=False):
    outputs = super().head_outputs(features, candidates, training)
    if not self._relevance:
      return outputs
    relevance = tf.cast(candidates, tf.float32)[..., None] / 20.0
    return tuple(tf.concat([x, relevance], -1) for x in outputs)


@pytest.mark.parametrize("kind,weight,relevance", [
    ("bce", 1.0, False), ("softmax", 0.5, False), ("bce", 0.5, True), ("softmax", 1.0, True)])
def test_compute_loss_is_ctr_plus_weighted_ranking_loss(kind, weight, relevance):
  rng = np.random.default_rng(1)
  n = 12
  domain = rng.integers(0, 2, n)
  features = {F.USER_ID: tf.constant(np.full(n, 2)), F.ITEM_ID: tf.constant(rng.integers(2, 30, n)),
              F.DOMAIN: tf.constant(domain), F.TRAIN_NEGATIVES: tf.constant(
                  rng.integers(2, 36, (n, 4)))}  # ids >= 30: the OOV row of the prior
  labels = rng.integers(0, 2, n).astype(np.float32)
  model = IdScorer(_CONFIG.replace(ranking_loss=kind, ranking_weight=weight), relevance)
  priors = [rng.normal(size=(30, 1)).astype(np.float32) for _ in range(2)]
  for layer, prior in zip(model.task.item_priors, priors):
    layer.set_weights([prior])
  loss = float(model.compute_loss((features, tf.constant(labels))))

  sign = np.where(domain == 0, 1.0, -1.0)
  ids, negative_ids = features[F.ITEM_ID].numpy(), features[F.TRAIN_NEGATIVES].numpy()
  target = sign * ids / 10.0
  prior = lambda i: np.where(domain[:, None] == 0, priors[0][np.where(i < 30, i, 1), 0],
                             priors[1][np.where(i < 30, i, 1), 0])
  if relevance:
    target_rank, negatives_rank, positive = ids / 20.0, negative_ids / 20.0, np.ones(n)
  else:
    target_rank, negatives_rank, positive = target, sign[:, None] * negative_ids / 10.0, labels
  target_rank = target_rank + prior(ids[:, None])[:, 0]
  negatives_rank = negatives_rank + prior(negative_ids)
  ctr = np.log1p(np.exp(target)) - labels * target  # BCE with logits
  reference = _numpy_bce if kind == "bce" else _numpy_softmax
  ranking = reference(target_rank, negatives_rank, positive)
  assert loss == pytest.approx(np.mean(ctr + weight * ranking), rel=1e-5)

  without = {k: v for k, v in features.items() if k != F.TRAIN_NEGATIVES}
  ctr_only = float(model.compute_loss((without, tf.constant(labels))))
  assert ctr_only == pytest.approx(np.mean(ctr), rel=1e-5)


@pytest.mark.parametrize("kind", ["bce", "softmax"])
def test_compute_loss_applies_the_batch_log_q_and_mask(kind):
  """Drawn negatives come with log q and a mask (dasl_tf.negatives): the ranking term uses them."""
  rng = np.random.default_rng(4)
  n = 10
  domain = rng.integers(0, 2, n)
  ids, negative_ids = rng.integers(2, 30, n), rng.integers(2, 30, (n, 3))
  target_log_q = np.log(rng.uniform(0.01, 0.2, n)).astype(np.float32)
  negative_log_q = np.log(rng.uniform(0.01, 0.2, (n, 3))).astype(np.float32)
  mask = (rng.random((n, 3)) < 0.6).astype(np.float32)
  features = {F.USER_ID: tf.constant(np.full(n, 2)), F.ITEM_ID: tf.constant(ids),
              F.DOMAIN: tf.constant(domain), F.TRAIN_NEGATIVES: tf.constant(negative_ids),
              F.TRAIN_TARGET_LOGQ: tf.constant(target_log_q),
              F.TRAIN_NEGATIVE_LOGQ: tf.constant(negative_log_q),
              F.TRAIN_NEGATIVE_MASK: tf.constant(mask)}
  labels = rng.integers(0, 2, n).astype(np.float32)
  model = IdScorer(_CONFIG.replace(ranking_loss=kind, ranking_weight=1.0), relevance=True)
  loss = float(model.compute_loss((features, tf.constant(labels))))

  target = np.where(domain == 0, 1.0, -1.0) * ids / 10.0
  ctr = np.log1p(np.exp(target)) - labels * target
  ranking = _numpy_corrected(kind, ids / 20.0, negative_ids / 20.0, np.ones(n), target_log_q,
                             negative_log_q, mask)  # the priors start at zero
  assert loss == pytest.approx(np.mean(ctr + ranking), rel=1e-5)


@pytest.mark.parametrize("relevance", [False, True])
def test_top_n_score_is_relevance_or_ctr_plus_prior(relevance):
  model = IdScorer(_CONFIG, relevance)
  outputs = np.array([[[0.5, -1.0], [2.0, 0.3]]], np.float32)[..., :2 if relevance else 1]
  prior = np.array([[0.2, -0.4]], np.float32)
  got = model.task.top_n_score(tf.constant(outputs), tf.constant(prior)).numpy()
  expected = outputs[..., 1] + prior if relevance else outputs[..., 0] + prior
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_task_adapt_starts_the_priors_at_log_one_plus_clicks():
  rng = np.random.default_rng(3)
  n = 40
  items = rng.integers(0, 12, n)  # ids >= 10 (domain A) or 8 (domain B) count at the OOV row
  domain = rng.integers(0, 2, n)
  labels = rng.integers(0, 2, n).astype(np.float32)
  task = CrossDomainTask((10, 8))
  batches = tf.data.Dataset.from_tensor_slices(
      ({F.ITEM_ID: items, F.DOMAIN: domain}, labels)).batch(7)
  task.adapt(batches)
  for d, size in enumerate((10, 8)):
    clicks = np.zeros(size)
    for item, dom, label in zip(items, domain, labels):
      if dom == d and label > 0.5:
        clicks[item if item < size else F.OOV_ID] += 1
    np.testing.assert_allclose(task.item_priors[d].embeddings.numpy()[:, 0], np.log1p(clicks),
                               rtol=1e-6)


def test_task_config_round_trip():
  task = CrossDomainTask((10, 8), ranking_loss="softmax", ranking_weight=0.25, relevance=True)
  again = CrossDomainTask.from_config(task.get_config())
  assert (again.num_items, again.ranking_loss, again.ranking_weight, again.relevance) == (
      (10, 8), "softmax", 0.25, True)
  assert [p.input_dim for p in again.item_priors] == [10, 8]
