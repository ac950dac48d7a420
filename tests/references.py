"""Brute-force NumPy references that tests check the library against."""
import numpy as np


def pairwise_auc(labels, scores) -> float:
  """ROC AUC over every (positive, negative) pair: the share won by the positive, ties half.

  Args:
    labels: ``[N]`` 0/1 labels with both classes present.
    scores: ``[N]`` scores, higher = more likely positive.
  """
  labels = np.asarray(labels).reshape(-1)
  scores = np.asarray(scores, dtype=np.float64).reshape(-1)
  difference = scores[labels == 1][:, None] - scores[labels == 0][None, :]
  return float(np.mean((difference > 0) + 0.5 * (difference == 0)))
