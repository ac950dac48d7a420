"""Train/eval split rules: temporal per user, or k folds of users (both seeded or exact)."""
from __future__ import annotations

import numpy as np


def temporal_eval_count(num_examples: int, eval_fraction: float) -> int:
  """Examples at the end of a user's timeline that go to ``eval``.

  ``round(n * eval_fraction)``, at least 1, for users with n >= 2 examples; a
  user with a single example keeps it for training.
  """
  if num_examples < 2:
    return 0
  return min(num_examples - 1, max(1, int(round(num_examples * eval_fraction))))


def user_folds(num_users: int, folds: int, seed: int) -> np.ndarray:
  """A fold per user index (balanced, seeded), int64 [num_users]."""
  order = np.random.default_rng((seed, 3)).permutation(num_users)
  fold = np.empty(num_users, dtype=np.int64)
  fold[order] = np.arange(num_users) % folds
  return fold
