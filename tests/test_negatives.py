"""Fresh training negatives: never a touched item, seeded by (seed, epoch), drawn by q."""
import dataclasses
import json
import os

import numpy as np
import pytest
from scipy import stats
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import data as data_lib
from dasl_tf import features as F
from dasl_tf import negatives
from dasl_tf import planted
from dasl_tf import run_inputs
from dasl_tf import training
from dasl_tf.prepare.config import PrepareConfig

NUM_ITEMS = 12  # ids 2..11: 10 items per domain
NUM_USERS = 10
HISTORY_LENGTH = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """Heavy users (30 examples over 10 items per domain: most items touched), light ones (4)."""
  root = str(tmp_path_factory.mktemp("negatives"))
  spec = F.FeatureSpec(history_length=HISTORY_LENGTH, num_train_negatives=2)
  taste = planted.PlantedConfig(num_users=NUM_USERS, num_items_a=NUM_ITEMS,
                                num_items_b=NUM_ITEMS, history_length=HISTORY_LENGTH)
  parts = [planted.planted_examples(taste, count, seed=0, users=users, num_train_negatives=2)
           for count, users in ((30, np.arange(2, 6)), (4, np.arange(6, NUM_USERS)))]
  examples = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
  planted.write_examples(os.path.join(root, "train.tfrecord"), examples, spec)
  schema = F.DatasetSchema(feature_spec=spec, num_users=NUM_USERS, num_items_a=NUM_ITEMS,
                           num_items_b=NUM_ITEMS, splits={"train": ("train.tfrecord",)})
  schema.save(root)
  return training.TrainingData((os.path.join(root, "train.tfrecord"),), (), (), schema,
                               schema_dir=root), examples


def _touched_sets(examples):
  """{(user, domain): set of target items} of the training examples, by NumPy."""
  touched = {}
  for user, domain, item in zip(examples[F.USER_ID], examples[F.DOMAIN], examples[F.ITEM_ID]):
    touched.setdefault((int(user), int(domain)), set()).add(int(item))
  return touched


def _epoch(data, train, seed, step):
  """An epoch of training batches as NumPy: features and labels of every batch, in order."""
  dataset = run_inputs.input_batches(
      data.train_files, data.schema.feature_spec, train, tf.distribute.get_strategy(),
      training=True, seed=seed, negatives=step)
  return [{k: v.numpy() for k, v in features.items()} for features, _ in dataset]


def _columns(data):
  return data_lib.SplitColumns.read(data.train_files, data.schema.feature_spec)


def _train_config(**overrides):
  values = dict(batch_size=16, shuffle_buffer=64, train_negatives=4, negative_sampling="uniform")
  values.update(overrides)
  return config_lib.TrainConfig(**values)


def test_the_scan_finds_every_training_target_and_counts_items(data):
  data, examples = data
  split = negatives.TrainingSplit.from_columns(_columns(data), data.schema)
  expected = sorted({(int(u) * 2 + int(d)) * NUM_ITEMS + int(i) for u, d, i in zip(
      examples[F.USER_ID], examples[F.DOMAIN], examples[F.ITEM_ID])})
  np.testing.assert_array_equal(split.keys, expected)
  for d in F.DOMAINS:
    items = examples[F.ITEM_ID][examples[F.DOMAIN] == d]
    np.testing.assert_array_equal(split.counts[d], np.bincount(items, minlength=NUM_ITEMS))


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_no_drawn_negative_is_touched_the_target_or_repeated(data, kind):
  data, examples = data
  train = _train_config(negative_sampling=kind, negative_sampling_alpha=1.0)
  step = negatives.TrainingNegatives.for_run(train, data.schema, _columns(data),
                                             data.schema_dir)
  touched = _touched_sets(examples)
  rows = short = roomy = full = 0
  for batch in _epoch(data, train, seed=7, step=step):
    assert batch[F.TRAIN_NEGATIVES].shape[1] == 4
    for row in range(len(batch[F.ITEM_ID])):
      user, domain, target = (int(batch[name][row]) for name in (F.USER_ID, F.DOMAIN, F.ITEM_ID))
      history = batch[F.HIST_A if domain == F.DOMAIN_A else F.HIST_B][row]
      mask = batch[F.TRAIN_NEGATIVE_MASK][row] == 1.0
      drawn = batch[F.TRAIN_NEGATIVES][row][mask]
      allowed = (set(range(2, NUM_ITEMS)) - touched[(user, domain)] - {target}
                 - set(history.tolist()))
      assert set(drawn.tolist()) <= allowed, (user, domain, drawn, allowed)
      assert len(set(drawn.tolist())) == len(drawn)  # distinct within the row
      assert not batch[F.TRAIN_NEGATIVES][row][~mask].any()  # empty slots hold padding
      assert mask.tolist() == sorted(mask.tolist(), reverse=True)  # drawn ones first
      rows += 1
      assert mask.sum() <= len(allowed)
      short += len(allowed) < 4
      if len(allowed) >= 8:  # plenty to draw from: the block fills the row
        roomy += 1
        full += mask.all()
  assert rows == len(examples[F.ITEM_ID])
  assert short > 0 and roomy > 0  # tested on users who touched most items, and on others
  assert full >= 0.95 * roomy


def test_draws_are_a_function_of_the_epoch_seed_only(data):
  data, _ = data
  train = _train_config()
  seeds = [training._epoch_seed(train.seed, e)  # pylint: disable=protected-access
           for e in range(2)]
  run = negatives.TrainingNegatives.for_run(train, data.schema, _columns(data), None)
  first = [_epoch(data, train, seed, run) for seed in seeds]
  # A resumed run builds its own sampler and starts at epoch 1.
  resumed = negatives.TrainingNegatives.for_run(train, data.schema, _columns(data), None)
  again = _epoch(data, train, seeds[1], resumed)
  assert len(again) == len(first[1])
  for name in (F.ITEM_ID, F.TRAIN_NEGATIVES, F.TRAIN_NEGATIVE_MASK):
    assert all(np.array_equal(a[name], b[name]) for a, b in zip(first[1], again))

  # The same batches drawn under two seeds differ.
  batches = run_inputs.input_batches(
      data.train_files, data.schema.feature_spec, train, tf.distribute.get_strategy())
  drawn = [[f[F.TRAIN_NEGATIVES].numpy() for f, _ in run.apply(batches, seed)] for seed in seeds]
  assert not all(np.array_equal(a, b) for a, b in zip(*drawn))

  def by_example(epoch):
    return {(int(u), int(i), int(d)): tuple(n) for batch in epoch for u, i, d, n in zip(
        batch[F.USER_ID], batch[F.ITEM_ID], batch[F.DOMAIN], batch[F.TRAIN_NEGATIVES])}

  epoch_0, epoch_1 = by_example(first[0]), by_example(first[1])
  light = [key for key in epoch_0 if key[0] >= 6]  # users with items to spare
  assert sum(epoch_0[key] != epoch_1[key] for key in light) > 0.8 * len(light)  # fresh draws


def _frequencies(kind, alpha, counts, touched, num_negatives, rows=6000):
  """Item frequencies of the kept draws of one user (domain A, target 2) repeated ``rows`` times."""
  keys = np.array(sorted(negatives.touched_key(5, F.DOMAIN_A, i, len(counts)) for i in touched))
  sampler = negatives.NegativeSampler(
      negatives.TrainingSplit(keys, (counts, counts)), num_negatives, kind, alpha)
  features = {F.USER_ID: tf.fill([rows], tf.constant(5, tf.int64)),
              F.ITEM_ID: tf.fill([rows], tf.constant(2, tf.int64)),
              F.DOMAIN: tf.zeros([rows], tf.int64),
              F.HIST_A: tf.zeros([rows, 2], tf.int64), F.HIST_B: tf.zeros([rows, 2], tf.int64)}
  out = sampler.draw(features, tf.constant([3, 4], tf.int64))
  drawn = out[F.TRAIN_NEGATIVES].numpy()[out[F.TRAIN_NEGATIVE_MASK].numpy() == 1.0]
  assert drawn.size >= 0.99 * rows * num_negatives  # a short row keeps what it drew
  return np.bincount(drawn, minlength=len(counts))


def test_uniform_draws_are_uniform_over_the_allowed_items():
  counts = np.array([0, 0, 50, 1, 9, 3, 7, 1, 20, 2, 4, 30])
  touched = {4, 9}  # and the target 2
  observed = _frequencies("uniform", 0.75, counts, touched, num_negatives=3)
  allowed = np.array(sorted(set(range(2, len(counts))) - touched - {2}))
  assert observed[np.setdiff1d(np.arange(len(counts)), allowed)].sum() == 0
  expected = np.full(len(allowed), observed.sum() / len(allowed))
  assert stats.chisquare(observed[allowed], expected).pvalue > 1e-3


def test_popularity_draws_follow_count_to_the_alpha_over_the_allowed_items():
  counts = np.array([0, 0, 50, 1, 9, 3, 7, 1, 20, 0, 4, 30])  # item 9 has no training example
  touched = {4, 11}
  alpha = 0.75
  observed = _frequencies("popularity", alpha, counts, touched, num_negatives=1)
  allowed = np.array(sorted(set(range(2, len(counts))) - touched - {2, 9}))
  assert observed[np.setdiff1d(np.arange(len(counts)), allowed)].sum() == 0
  weights = counts[allowed].astype(float) ** alpha
  expected = observed.sum() * weights / weights.sum()
  assert stats.chisquare(observed[allowed], expected).pvalue > 1e-3
  # Far from uniform: the test tells the two apart.
  uniform = np.full(len(allowed), observed.sum() / len(allowed))
  assert stats.chisquare(observed[allowed], uniform).pvalue < 1e-6


def test_popularity_batches_carry_log_q_of_count_to_the_alpha(data):
  data, examples = data
  alpha = 0.5
  train = _train_config(negative_sampling="popularity", negative_sampling_alpha=alpha)
  step = negatives.TrainingNegatives.for_run(train, data.schema, _columns(data), None)
  batch = _epoch(data, train, seed=3, step=step)[0]
  for d in F.DOMAINS:
    counts = np.bincount(examples[F.ITEM_ID][examples[F.DOMAIN] == d], minlength=NUM_ITEMS)
    weights = np.where(np.arange(NUM_ITEMS) >= 2, counts.astype(float) ** alpha, 0.0)
    log_q = np.log(np.maximum(weights, weights[weights > 0].min()) / weights.sum())
    rows = batch[F.DOMAIN] == d
    np.testing.assert_allclose(batch[F.TRAIN_TARGET_LOGQ][rows],
                               log_q[batch[F.ITEM_ID][rows]], rtol=1e-5)
    np.testing.assert_allclose(batch[F.TRAIN_NEGATIVE_LOGQ][rows],
                               log_q[batch[F.TRAIN_NEGATIVES][rows]], rtol=1e-5)
  uniform = negatives.TrainingNegatives.for_run(_train_config(), data.schema, _columns(data),
                                                None)
  assert F.TRAIN_NEGATIVE_LOGQ not in _epoch(data, _train_config(), 3, uniform)[0]


def test_stored_negatives_get_log_q_when_prepared_by_popularity(data, tmp_path):
  data, examples = data
  train = _train_config(negative_sampling="stored", train_negatives=-1)
  assert negatives.TrainingNegatives.for_run(train, data.schema, _columns(data),
                                             data.schema_dir) is None  # no stats.json: uniform
  prepared = PrepareConfig(input_a="a", input_b="b", output_dir="o",
                           negative_sampling="popularity", negative_alpha=1.0)
  (tmp_path / "stats.json").write_text(json.dumps({"config": dataclasses.asdict(prepared)}))
  step = negatives.TrainingNegatives.for_run(train, data.schema, _columns(data),
                                             str(tmp_path))
  batch = _epoch(data, train, seed=3, step=step)[0]
  stored = {}
  for u, i, d, n in zip(examples[F.USER_ID], examples[F.ITEM_ID], examples[F.DOMAIN],
                        examples[F.TRAIN_NEGATIVES]):
    stored.setdefault((int(u), int(i), int(d)), set()).add(tuple(n))
  for row in range(len(batch[F.ITEM_ID])):  # the stored negatives are kept as they are
    key = (int(batch[F.USER_ID][row]), int(batch[F.ITEM_ID][row]), int(batch[F.DOMAIN][row]))
    assert tuple(batch[F.TRAIN_NEGATIVES][row]) in stored[key]
  # q = count / total (alpha 1); an item without training examples has the rarest one's q.
  counts = np.bincount(examples[F.ITEM_ID][examples[F.DOMAIN] == F.DOMAIN_A],
                       minlength=NUM_ITEMS).astype(float)
  counts[:2] = 0
  q = np.maximum(counts, counts[counts > 0].min()) / counts.sum()
  rows = batch[F.DOMAIN] == F.DOMAIN_A
  np.testing.assert_allclose(np.exp(batch[F.TRAIN_NEGATIVE_LOGQ][rows]),
                             q[batch[F.TRAIN_NEGATIVES][rows]], rtol=1e-5)
  np.testing.assert_allclose(np.exp(batch[F.TRAIN_TARGET_LOGQ][rows]),
                             q[batch[F.ITEM_ID][rows]], rtol=1e-5)
  assert F.TRAIN_NEGATIVE_MASK not in batch


def test_negatives_per_example_and_the_objective_follow_the_sampling():
  stores_none = F.DatasetSchema(feature_spec=F.FeatureSpec(num_train_negatives=0),
                                num_users=4, num_items_a=5, num_items_b=5)
  stores_three = dataclasses.replace(stores_none,
                                     feature_spec=F.FeatureSpec(num_train_negatives=3))
  cases = [("uniform", -1, stores_none, negatives.DEFAULT_NUM_NEGATIVES),
           ("popularity", -1, stores_three, 3), ("uniform", 7, stores_three, 7),
           ("stored", -1, stores_none, 0), ("stored", -1, stores_three, 3),
           ("uniform", 0, stores_three, 0)]
  for kind, count, schema, expected in cases:
    experiment = config_resolution.resolve_config(
        schema, None, {}, {"negative_sampling": kind, "train_negatives": count})
    assert negatives.per_example(experiment.train, schema.feature_spec) == expected, kind
    assert (experiment.model.ranking_loss == config_lib.NO_RANKING_LOSS) == (expected == 0)


def test_a_bad_sampling_field_is_a_config_error_naming_it():
  with pytest.raises(config_lib.ConfigError, match="TrainConfig.negative_sampling='zipf'"):
    config_lib.TrainConfig(negative_sampling="zipf")
  with pytest.raises(config_lib.ConfigError, match="TrainConfig.negative_sampling_alpha=3"):
    config_lib.TrainConfig(negative_sampling_alpha=3.0)
  with pytest.raises(config_lib.ConfigError, match="negative_sampling_alpha: expected float"):
    config_lib.TrainConfig.from_dict({"negative_sampling_alpha": "high"})
