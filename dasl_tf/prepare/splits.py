"""Train/eval split rules: temporal per user, or k folds of users (both seeded or exact)."""
from __future__ import annotations

import numpy as np


def temporal_eval_count(num_examples: np.ndarray, eval_fraction: float) -> np.ndarray:
  """Examples at the end of a user's timeline that go to ``eval`` (elementwise).

  ``round(n * eval_fraction)``, at least 1 and at most n - 1, for users with
  n >= 2 examples; a user with a single example keeps it for training.

  Args:
    num_examples: n per user (or per row), int array.
    eval_fraction: the share of the timeline to evaluate on.

  Returns:
    int64 array of the same shape.
  """
  n = np.asarray(num_examples, dtype=np.int64)
  count = np.clip(np.round(n * eval_fraction), 1, np.maximum(n - 1, 1)).astype(np.int64)
  return np.where(n < 2, 0, count)


def user_folds(num_users: int, folds: int, seed: int) -> np.ndarray:
  """A fold per user index (balanced, seeded), int64 [num_users]."""
  order = np.random.default_rng((seed, 3)).permutation(num_users)
  fold = np.empty(num_users, dtype=np.int64)
  fold[order] = np.arange(num_users) % folds
  return fold
