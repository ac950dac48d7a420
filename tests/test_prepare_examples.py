"""The per-user function, the split rules and the Example codec, against NumPy references."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from dasl_tf import features as F
from dasl_tf.prepare import codec
from dasl_tf.prepare import splits
from dasl_tf.prepare.config import PrepareError
from dasl_tf.prepare.examples import (ExampleParams, Timelines, build_user_examples,
                                      sample_negatives)

T = 3


def _params(temporal=True, num_negatives=4, vocab=(40, 40), seed=0):
  return ExampleParams(history_length=T, temporal=temporal, eval_fraction=0.25,
                       num_negatives=num_negatives,
                       negatives_by_split=(False, True) if temporal else (True,) * 3,
                       item_vocab_sizes=vocab, seed=seed)


def _timeline(times, domains, items, user=5, fold=-1):
  n = len(times)
  return Timelines(np.full(n, user, np.int64), np.asarray(items, np.int64),
                   np.asarray(domains, np.int64), (np.arange(n) % 2).astype(np.float32),
                   np.asarray(times, np.float64), np.full(n, fold, np.int64))


def _concat(*timelines):
  return Timelines(*(np.concatenate([getattr(t, f) for t in timelines])
                     for f in ("user", "item", "domain", "label", "timestamp", "fold")))


def test_histories_hold_earlier_items_left_padded_and_exclude_ties():
  # time:   1  2  2  3  5  6
  # domain: A  B  A  A  B  A
  timeline = _timeline([1, 2, 2, 3, 5, 6], [0, 1, 0, 0, 1, 0], [10, 20, 11, 12, 21, 13])
  ex = build_user_examples(timeline, _params())
  np.testing.assert_array_equal(ex.hist_a, [[0, 0, 0], [0, 0, 10], [0, 0, 10],
                                            [0, 10, 11], [10, 11, 12], [10, 11, 12]])
  np.testing.assert_array_equal(ex.hist_b, [[0, 0, 0], [0, 0, 0], [0, 0, 0],
                                            [0, 0, 20], [0, 0, 20], [0, 20, 21]])
  np.testing.assert_array_equal(ex.item, [10, 20, 11, 12, 21, 13])
  np.testing.assert_array_equal(ex.domain, [0, 1, 0, 0, 1, 0])
  np.testing.assert_array_equal(ex.user, [5] * 6)


def test_single_domain_user_has_all_padding_other_history():
  ex = build_user_examples(_timeline([1, 2, 3], [1, 1, 1], [4, 5, 6]), _params())
  assert not ex.hist_a.any()
  np.testing.assert_array_equal(ex.hist_b[-1], [0, 4, 5])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1), st.integers(2, 30)),
                min_size=1, max_size=25))
def test_no_leakage_every_history_item_is_strictly_earlier(records):
  """Property: each history item is a record of the same user and domain with time < target's."""
  records = sorted(records, key=lambda r: r[0])
  times, domains, items = (list(c) for c in zip(*records))
  ex = build_user_examples(_timeline(times, domains, items), _params(num_negatives=0))
  for j in range(len(records)):
    for domain, hist in ((0, ex.hist_a[j]), (1, ex.hist_b[j])):
      earlier = [it for t, d, it in records if d == domain and t < times[j]]
      expected = ([0] * T + earlier)[-T:]
      assert hist.tolist() == expected


def test_users_in_one_call_get_the_examples_they_get_alone():
  """Chunking does not matter: histories, splits and negatives never cross users."""
  first = _timeline([1, 2, 3, 4, 5], [0, 1, 0, 1, 0], [2, 3, 4, 5, 6], user=3)
  second = _timeline([1, 1, 2, 9], [1, 0, 0, 1], [7, 8, 9, 10], user=8)
  together = build_user_examples(_concat(first, second), _params())
  alone = [build_user_examples(t, _params()) for t in (first, second)]
  for field in ("hist_a", "hist_b", "split", "negatives", "item", "user"):
    np.testing.assert_array_equal(getattr(together, field),
                                  np.concatenate([getattr(a, field) for a in alone]))


def test_temporal_split_puts_the_last_fraction_in_eval():
  counts = splits.temporal_eval_count(np.array([0, 1, 2, 4, 8, 10]), 0.25)
  assert counts.tolist() == [0, 0, 1, 1, 2, 2]
  ex = build_user_examples(_timeline(range(8), [0] * 8, range(2, 10)), _params())
  np.testing.assert_array_equal(ex.split, [0] * 6 + [1] * 2)


def test_kfold_split_puts_every_example_in_the_user_fold():
  ex = build_user_examples(_timeline(range(4), [0, 1, 0, 1], [2, 3, 4, 5], fold=2),
                           _params(temporal=False))
  np.testing.assert_array_equal(ex.split, [2] * 4)
  folds = splits.user_folds(103, 5, seed=1)
  assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
  np.testing.assert_array_equal(folds, splits.user_folds(103, 5, seed=1))
  assert not np.array_equal(folds, splits.user_folds(103, 5, seed=2))


def test_negatives_are_untouched_distinct_seeded_and_only_in_eval():
  timeline = _timeline(range(8), [0, 1] * 4, [2, 3, 4, 5, 6, 7, 8, 9])
  ex = build_user_examples(timeline, _params(num_negatives=20))
  train = ex.split == 0
  assert not ex.negatives[train].any()
  for row in np.flatnonzero(~train):
    touched = set(timeline.item[timeline.domain == ex.domain[row]].tolist())
    negatives = ex.negatives[row].tolist()
    assert len(set(negatives)) == 20 and not touched & set(negatives)
    assert min(negatives) >= 2 and max(negatives) < 40
  again = build_user_examples(timeline, _params(num_negatives=20))
  np.testing.assert_array_equal(ex.negatives, again.negatives)
  other = build_user_examples(timeline, _params(num_negatives=20, seed=1))
  assert not np.array_equal(ex.negatives, other.negatives)


def test_sample_negatives_is_uniform_over_untouched_items():
  n = 4000
  users = np.full(n, 1, np.int64)
  touched = np.array([1 * 12 + item for item in (2, 5, 6)])
  draws = sample_negatives(0, users, np.arange(n), touched, vocab_size=12, num_negatives=3)
  counts = np.bincount(draws.ravel(), minlength=12)
  assert counts[[0, 1, 2, 5, 6]].sum() == 0
  rest = counts[[3, 4, 7, 8, 9, 10, 11]]
  np.testing.assert_allclose(rest / rest.sum(), 1 / 7, atol=0.01)
  assert all(len(set(row)) == 3 for row in draws.tolist())


def test_sample_negatives_when_almost_every_item_is_touched():
  touched = np.array([0 * 200 + item for item in range(2, 195)])
  draws = sample_negatives(0, np.zeros(2, np.int64), np.arange(2), touched, vocab_size=200,
                           num_negatives=5)
  assert sorted(draws[0].tolist()) == [195, 196, 197, 198, 199]
  with pytest.raises(PrepareError, match="user index 0: only 5 items.*num_negatives"):
    sample_negatives(0, np.zeros(1, np.int64), np.arange(1), touched, vocab_size=200,
                     num_negatives=6)


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
