"""Split rules: temporal per user (train / validation / test), or k folds of users.

Both assign a split index to every record of the merged, per-user
chronological table (one record is one example), before any vocabulary is
built, so that vocabularies and item statistics can come from the training
records alone.
"""
from __future__ import annotations

import numpy as np

TRAIN, VALIDATION, TEST = 0, 1, 2


def temporal_counts(num_examples: np.ndarray, validation_fraction: float,
                    test_fraction: float) -> tuple:
  """Examples at the end of a user's timeline that go to validation and test (elementwise).

  A user with n examples gives ``round(n * test_fraction)`` of them (at least 1,
  at most n - 1; none when n < 2) to test, then ``round(n * validation_fraction)``
  of the rest (at least 1 when the fraction is positive, at most ``rest - 1``;
  none when fewer than 2 remain) to validation. Every user keeps at least one
  training example.

  Args:
    num_examples: n per user, int array.
    validation_fraction: share of the timeline before the test part.
    test_fraction: share of the timeline at its end.

  Returns:
    ``(validation, test)`` int64 arrays of the shape of ``num_examples``.
  """
  n = np.asarray(num_examples, dtype=np.int64)
  test = np.where(n < 2, 0, np.clip(np.round(n * test_fraction), 1, np.maximum(n - 1, 1)))
  rest = n - test
  validation = np.clip(np.round(n * validation_fraction), 1, np.maximum(rest - 1, 1))
  validation = np.where((rest < 2) | (validation_fraction <= 0), 0, validation)
  return validation.astype(np.int64), test.astype(np.int64)


def temporal_split(offsets: np.ndarray, validation_fraction: float,
                   test_fraction: float) -> np.ndarray:
  """The split of every record of a per-user table sorted by time.

  Args:
    offsets: start row of each user plus the number of rows, int [U + 1].
    validation_fraction: see :func:`temporal_counts`.
    test_fraction: see :func:`temporal_counts`.

  Returns:
    int64 [N]: :data:`TRAIN`, :data:`VALIDATION` or :data:`TEST` per record.
  """
  sizes = np.diff(offsets)
  validation, test = temporal_counts(sizes, validation_fraction, test_fraction)
  rank = np.arange(offsets[-1]) - np.repeat(offsets[:-1], sizes)
  from_end = np.repeat(sizes, sizes) - rank
  return np.where(from_end <= np.repeat(test, sizes), TEST,
                  np.where(from_end <= np.repeat(test + validation, sizes), VALIDATION,
                           TRAIN)).astype(np.int64)


def user_folds(num_users: int, folds: int, seed: int) -> np.ndarray:
  """A fold per user index (balanced, seeded), int64 [num_users]."""
  order = np.random.default_rng((seed, 3)).permutation(num_users)
  fold = np.empty(num_users, dtype=np.int64)
  fold[order] = np.arange(num_users) % folds
  return fold
