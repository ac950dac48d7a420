"""The per-user function, the split rules and the Example codec, against NumPy references."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from dasl_tf import features as F
from dasl_tf.prepare import codec
from dasl_tf.prepare import examples as examples_lib
from dasl_tf.prepare import splits
from dasl_tf.prepare.config import PrepareError
from dasl_tf.prepare.examples import (ExampleParams, Timelines, build_user_examples,
                                      sample_negatives)

T = 3


def _params(num_negatives=4, vocab=(40, 40), seed=0, train_negatives=0, cdfs=(None, None)):
  return ExampleParams(history_length=T, num_negatives=num_negatives,
                       negatives_by_split=(False, True, True),
                       item_vocab_sizes=vocab, seed=seed, train_negatives=train_negatives,
                       train_negatives_by_split=(True, False, False),
                       train_negative_cdfs=cdfs)


def _timeline(times, domains, items, user=5, split=None, held_out=splits.NO_DOMAIN):
  n = len(times)
  if split is None:  # the temporal rule with 10% validation and 25% test
    split = splits.temporal_split(np.array([0, n]), 0.1, 0.25)
  return Timelines(np.full(n, user, np.int64), np.asarray(items, np.int64),
                   np.asarray(domains, np.int64), (np.arange(n) % 2).astype(np.float32),
                   np.asarray(times, np.float64), np.broadcast_to(split, (n,)).astype(np.int64),
                   np.floor(np.asarray(times, np.float64)).astype(np.int64),
                   np.full(n, held_out, np.int64))


def _concat(*timelines):
  return Timelines(*(np.concatenate([getattr(t, f) for t in timelines])
                     for f in ("user", "item", "domain", "label", "timestamp", "split", "time",
                               "held_out")))


def test_histories_hold_earlier_items_left_padded_and_exclude_ties():
  # time:   1  2  2  3  5  6
  # domain: A  B  A  A  B  A
  timeline = _timeline([1, 2, 2, 3, 5, 6], [0, 1, 0, 0, 1, 0], [10, 20, 11, 12, 21, 13])
  ex = build_user_examples(timeline, _params())
  np.testing.assert_array_equal(ex.histories[:, 0], [[0, 0, 0], [0, 0, 10], [0, 0, 10],
                                            [0, 10, 11], [10, 11, 12], [10, 11, 12]])
  np.testing.assert_array_equal(ex.histories[:, 1], [[0, 0, 0], [0, 0, 0], [0, 0, 0],
                                            [0, 0, 20], [0, 0, 20], [0, 20, 21]])
  np.testing.assert_array_equal(ex.item, [10, 20, 11, 12, 21, 13])
  np.testing.assert_array_equal(ex.domain, [0, 1, 0, 0, 1, 0])
  np.testing.assert_array_equal(ex.user, [5] * 6)


def test_single_domain_user_has_all_padding_other_history():
  ex = build_user_examples(_timeline([1, 2, 3], [1, 1, 1], [4, 5, 6]), _params())
  assert not ex.histories[:, 0].any()
  np.testing.assert_array_equal(ex.histories[:, 1][-1], [0, 4, 5])


def _domains_and_records(num_domains):
  records = st.lists(st.tuples(st.integers(0, 6), st.integers(0, num_domains - 1),
                               st.integers(2, 30)), min_size=1, max_size=25)
  return st.tuples(st.just(num_domains), records)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 3).flatmap(_domains_and_records))
def test_no_leakage_each_history_holds_its_domains_strictly_earlier_items(case):
  """Property, K = 2 and 3: history d holds the user's last T domain-d items with time < target's."""
  num_domains, records = case
  records = sorted(records, key=lambda r: r[0])
  times, domains, items = (list(c) for c in zip(*records))
  ex = build_user_examples(_timeline(times, domains, items),
                           _params(num_negatives=0, vocab=(40,) * num_domains))
  assert ex.histories.shape == (len(records), num_domains, T)
  for j in range(len(records)):
    for domain in range(num_domains):
      earlier = [it for t, d, it in records if d == domain and t < times[j]]
      assert ex.histories[j, domain].tolist() == ([0] * T + earlier)[-T:]
  assert ex.counts() == {"examples": len(records), "positives": int(ex.label.sum()),
                         **{f"domain_{F.domain_suffix(d)}": domains.count(d)
                            for d in range(num_domains)}}


def test_three_domains_negatives_stay_in_the_targets_domain_and_cold_start_hides_one():
  """K = 3: a target's negatives come from its own domain's items; a held-out domain's
  history is empty in the other domains' examples, and the others' histories are kept."""
  # Domain 2's items are ids 2..9 of its own vocabulary: a negative of domain 2 is < 10.
  timeline = _timeline([1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 2, 0, 1, 2, 0, 2],
                       [5, 6, 7, 8, 9, 3, 4, 2], held_out=2, split=np.int64(2))
  ex = build_user_examples(timeline, _params(num_negatives=3, vocab=(40, 40, 10)))
  for row in range(len(ex)):
    assert ex.negatives[row].max() < (40, 40, 10)[ex.domain[row]]
    touched = set(np.asarray([5, 6, 7, 8, 9, 3, 4, 2])[ex.domain == ex.domain[row]])
    assert not touched & set(ex.negatives[row])
  other = ex.domain != 2
  assert not ex.histories[other, 2].any()
  np.testing.assert_array_equal(ex.histories[ex.domain == 2, 2], [[0, 0, 0], [0, 0, 7],
                                                                  [0, 7, 3]])
  np.testing.assert_array_equal(ex.histories[-1, :2], [[5, 8, 4], [0, 6, 9]])


def test_users_in_one_call_get_the_examples_they_get_alone():
  """Chunking does not matter: histories, splits and negatives never cross users."""
  first = _timeline([1, 2, 3, 4, 5], [0, 1, 0, 1, 0], [2, 3, 4, 5, 6], user=3)
  second = _timeline([1, 1, 2, 9], [1, 0, 0, 1], [7, 8, 9, 10], user=8)
  params = _params(train_negatives=3)
  together = build_user_examples(_concat(first, second), params)
  alone = [build_user_examples(t, params) for t in (first, second)]
  for field in ("histories", "split", "negatives", "train_negatives", "item", "user"):
    np.testing.assert_array_equal(getattr(together, field),
                                  np.concatenate([getattr(a, field) for a in alone]))


def test_temporal_split_puts_test_last_and_validation_before_it():
  validation, test = splits.temporal_counts(np.array([0, 1, 2, 3, 4, 8, 10, 20]), 0.1, 0.25)
  assert test.tolist() == [0, 0, 1, 1, 1, 2, 2, 5]
  assert validation.tolist() == [0, 0, 0, 1, 1, 1, 1, 2]
  offsets = np.array([0, 8, 10, 11])  # users of 8, 2 and 1 examples
  np.testing.assert_array_equal(
      splits.temporal_split(offsets, 0.1, 0.25),
      [0] * 5 + [1] + [2] * 2 + [0, 2] + [0])
  # No validation split asked for: train then test.
  np.testing.assert_array_equal(splits.temporal_split(np.array([0, 8]), 0.0, 0.25),
                                [0] * 6 + [2] * 2)


def test_examples_keep_the_split_of_their_record():
  ex = build_user_examples(_timeline(range(4), [0, 1, 0, 1], [2, 3, 4, 5], split=2),
                           _params())
  np.testing.assert_array_equal(ex.split, [2] * 4)
  folds = splits.user_folds(103, 5, seed=1)
  assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
  np.testing.assert_array_equal(folds, splits.user_folds(103, 5, seed=1))
  assert not np.array_equal(folds, splits.user_folds(103, 5, seed=2))


def test_negatives_are_untouched_distinct_seeded_and_only_in_eval():
  timeline = _timeline(range(8), [0, 1] * 4, [2, 3, 4, 5, 6, 7, 8, 9])
  ex = build_user_examples(timeline, _params(num_negatives=20))
  train = ex.split == 0
  assert train.sum() == 5 and not ex.negatives[train].any()
  for row in np.flatnonzero(~train):
    touched = set(timeline.item[timeline.domain == ex.domain[row]].tolist())
    negatives = ex.negatives[row].tolist()
    assert len(set(negatives)) == 20 and not touched & set(negatives)
    assert min(negatives) >= 2 and max(negatives) < 40
  again = build_user_examples(timeline, _params(num_negatives=20))
  np.testing.assert_array_equal(ex.negatives, again.negatives)
  other = build_user_examples(timeline, _params(num_negatives=20, seed=1))
  assert not np.array_equal(ex.negatives, other.negatives)


def _touched_items(items):
  """A ``touched`` rule excluding the same items for every row."""
  items = np.asarray(items)
  return lambda rows, draws: np.isin(draws, items)


def test_sample_negatives_is_uniform_over_untouched_items():
  n = 4000
  users = np.full(n, 1, np.int64)
  draws = sample_negatives(0, users, np.arange(n), _touched_items([2, 5, 6]), vocab_size=12,
                           num_negatives=3)
  counts = np.bincount(draws.ravel(), minlength=12)
  assert counts[[0, 1, 2, 5, 6]].sum() == 0
  rest = counts[[3, 4, 7, 8, 9, 10, 11]]
  np.testing.assert_allclose(rest / rest.sum(), 1 / 7, atol=0.01)
  assert all(len(set(row)) == 3 for row in draws.tolist())


def test_sample_negatives_when_almost_every_item_is_touched():
  touched = _touched_items(range(2, 195))
  draws = sample_negatives(0, np.zeros(2, np.int64), np.arange(2), touched, vocab_size=200,
                           num_negatives=5)
  assert sorted(draws[0].tolist()) == [195, 196, 197, 198, 199]
  with pytest.raises(PrepareError, match="user index 0: only 5 items.*num_negatives"):
    sample_negatives(0, np.zeros(1, np.int64), np.arange(1), touched, vocab_size=200,
                     num_negatives=6)


def test_train_negatives_respect_time_never_touched_never_padding_seeded():
  # One user, domain A items 2..9 at times 0..7 (domain B interleaved), a vocabulary of 14.
  times = np.arange(16) // 2
  domains = np.tile([0, 1], 8)
  items = np.where(domains == 0, 2 + times, 20 + times)
  timeline = _timeline(times, domains, items, split=0)
  params = _params(num_negatives=0, vocab=(14, 40), train_negatives=4)
  ex = build_user_examples(timeline, params)
  seen_later = set()
  for row in np.flatnonzero(ex.domain == 0):
    negatives = ex.train_negatives[row].tolist()
    touched_by_then = set(items[(domains == 0) & (times <= times[row])].tolist())
    assert len(set(negatives)) == 4 and not touched_by_then & set(negatives)
    assert min(negatives) >= 2 and max(negatives) < 14
    seen_later |= set(negatives) & set(items[(domains == 0) & (times > times[row])].tolist())
  # Items touched only later are allowed: the future is not looked at.
  assert seen_later
  np.testing.assert_array_equal(ex.train_negatives,
                                build_user_examples(timeline, params).train_negatives)
  reseeded = build_user_examples(timeline, _params(num_negatives=0, vocab=(14, 40),
                                                   train_negatives=4, seed=1))
  assert not np.array_equal(ex.train_negatives, reseeded.train_negatives)


def test_train_negatives_only_in_training_splits_and_distinct_from_eval_stream():
  timeline = _timeline(range(20), [0] * 20, range(2, 22))
  ex = build_user_examples(timeline, _params(num_negatives=5, vocab=(400, 40),
                                             train_negatives=5))
  train = ex.split == 0
  assert ex.train_negatives[train].all() and not ex.train_negatives[~train].any()
  assert ex.negatives[~train].all() and not ex.negatives[train].any()


def test_popularity_sampling_follows_count_to_the_alpha():
  counts = np.array([0, 0, 1, 4, 9, 16, 0])
  cdf = examples_lib.popularity_cdf(counts, 0.5)
  np.testing.assert_allclose(np.diff(np.r_[0.0, cdf]), [1, 2, 3, 4, 0] / np.float64(10))
  n = 20000
  draws = sample_negatives(0, np.zeros(n, np.int64), np.arange(n), _touched_items([]),
                           vocab_size=7, num_negatives=1, cdf=cdf)
  share = np.bincount(draws.ravel(), minlength=7)[2:] / n
  np.testing.assert_allclose(share, [0.1, 0.2, 0.3, 0.4, 0.0], atol=0.015)


def test_codec_matches_feature_spec_encode():
  spec = F.FeatureSpec(history_length=4, user_num_dim=2, item_cat_dim=1, num_negatives=3)
  rng = np.random.default_rng(0)
  n = 7
  ints = {F.USER_ID: rng.integers(0, 2 ** 40, n), F.ITEM_ID: rng.integers(0, 300, n),
          F.DOMAIN: rng.integers(0, 2, n), F.HIST_A: rng.integers(0, 128 * 128 + 5, (n, 4)),
          F.HIST_B: np.zeros((n, 4), np.int64), F.ITEM_CAT: rng.integers(0, 9, (n, 1)),
          F.NEGATIVES: rng.integers(0, 10 ** 6, (n, 3))}
  floats = {F.LABEL: rng.integers(0, 2, n).astype(np.float32),
            F.USER_NUM: rng.standard_normal((n, 2)).astype(np.float32)}
  records = codec.serialize(ints, floats)
  for i, record in enumerate(records):
    reference = spec.encode({**{k: v[i] for k, v in ints.items()},
                             **{k: v[i] for k, v in floats.items()}})
    assert tf.train.Example.FromString(record) == tf.train.Example.FromString(reference)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), min_size=1, max_size=6))
def test_codec_varints_round_trip_any_int64(values):
  record = codec.serialize({"x": np.array([values], dtype=np.int64)}, {})[0]
  parsed = tf.train.Example.FromString(record)
  assert list(parsed.features.feature["x"].int64_list.value) == values
