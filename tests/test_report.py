"""The evaluation report: ROC maths against a pairwise reference, plots, experiment tables."""
import itertools

import numpy as np
import pytest

from dasl_tf import report


def _pairwise_auc(labels, scores):
  """P(score of a positive > score of a negative), ties counting one half."""
  positives = scores[labels == 1]
  negatives = scores[labels == 0]
  wins = [1.0 if p > n else 0.5 if p == n else 0.0
          for p, n in itertools.product(positives, negatives)]
  return float(np.mean(wins))


def test_roc_curve_area_equals_the_pairwise_auc_with_ties():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 2, 200)
  scores = np.round(rng.random(200) + 0.3 * labels, 1)  # coarse scores: many ties
  fpr, tpr = report.roc_curve(labels, scores)
  assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
  assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
  assert report.area_under_curve(fpr, tpr) == pytest.approx(_pairwise_auc(labels, scores))


def test_roc_curve_needs_both_classes():
  with pytest.raises(ValueError, match="both classes"):
    report.roc_curve(np.ones(4), np.arange(4.0))


def test_plots_are_written_as_png(tmp_path):
  rng = np.random.default_rng(0)
  predictions = {"label": rng.integers(0, 2, 50), "domain": rng.integers(0, 2, 50),
                 "ctr": rng.random(50)}
  aucs = report.plot_roc(predictions, ("Books", "Music"), str(tmp_path / "roc.png"))
  for domain, name in enumerate(("Books", "Music")):
    chosen = predictions["domain"] == domain
    assert aucs[name] == pytest.approx(
        _pairwise_auc(predictions["label"][chosen], predictions["ctr"][chosen]))
  history = [{"epoch": e, "loss_a": 1.0 / e, "val_auc_b": 0.5 + 0.1 * e} for e in (1, 2, 3)]
  report.plot_training_curves(history, str(tmp_path / "curves.png"))
  hist = np.array([[0, 0, 3, 4], [5, 6, 7, 8]])
  weights = rng.random((2, 8))
  report.plot_attention(weights, weights, hist, hist, ("Books", "Music"),
                        str(tmp_path / "attention.png"))
  for name in ("roc.png", "curves.png", "attention.png"):
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_and_table_give_mean_and_sample_std_per_variant():
  runs = [{"variant": variant, "metrics": {"auc_a": a, "hr10_a": a / 2, "auc_b": 1 - a,
                                           "hr10_b": 0.3}}
          for variant, a in (("dasl", 0.8), ("dasl", 0.9), ("dasl_de", 0.7), ("dasl_de", 0.6))]
  summary = report.summarize_runs(runs)
  assert list(summary) == ["dasl", "dasl_de"]
  assert summary["dasl"]["auc_a"]["mean"] == pytest.approx(0.85)
  assert summary["dasl"]["auc_a"]["std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
  assert summary["dasl_de"]["hr10_b"] == {"mean": pytest.approx(0.3), "std": 0.0, "n": 2}
  table = report.experiment_table_markdown(summary, ("Books", "Music"), "Douban")
  lines = table.splitlines()
  assert "Books AUC" in table and "Music HR@10" in table
  dasl_row = next(line for line in lines if line.startswith("| dasl |"))
  de_row = next(line for line in lines if line.startswith("| dasl_de |"))
  assert "**0.8500 ± 0.0707**" in dasl_row  # best Books AUC in bold
  assert "**0.3500 ± 0.0707**" in de_row  # best Music AUC in bold
