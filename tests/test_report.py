"""The evaluation report: ROC maths against a pairwise reference, plots, experiment tables."""
import os

import numpy as np
import pytest
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import model_io
from dasl_tf import publish
from dasl_tf import report
from tests.references import pairwise_auc


def test_roc_curve_area_equals_the_pairwise_auc_with_ties():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 2, 200)
  scores = np.round(rng.random(200) + 0.3 * labels, 1)  # coarse scores: many ties
  fpr, tpr = report.roc_curve(labels, scores)
  assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
  assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
  trapezoids = np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2
  assert trapezoids.sum() == pytest.approx(pairwise_auc(labels, scores))


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
        pairwise_auc(predictions["label"][chosen], predictions["ctr"][chosen]))
  history = [{"epoch": e, "loss_a": 1.0 / e, "val_auc_b": 0.5 + 0.1 * e} for e in (1, 2, 3)]
  report.plot_training_curves(history, str(tmp_path / "curves.png"))
  hist = np.array([[0, 0, 3, 4], [5, 6, 7, 8]])
  panel = {"weights": rng.random((2, 8)), "hist_a": hist, "hist_b": hist}
  report.plot_attention([panel, panel], ("Books", "Music"), str(tmp_path / "attention.png"))
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
  header = [cell.strip() for cell in lines[2].split("|")[1:-1]]
  assert header == ["variant", "runs"] + [
      f"{domain} {metric}" for domain in ("Books", "Music") for metric in (
          "HR@10 (full)", "NDCG@10 (full)", "HR@10 (full, seen targets)", "HR@10 (sampled)",
          "AUC")]
  dasl_row = [cell.strip() for cell in next(
      line for line in lines if line.startswith("| dasl |")).split("|")[1:-1]]
  de_row = [cell.strip() for cell in next(
      line for line in lines if line.startswith("| dasl_de |")).split("|")[1:-1]]
  assert dasl_row[header.index("Books AUC")] == "**0.8500 ± 0.0707**"  # best in bold
  assert de_row[header.index("Music AUC")] == "**0.3500 ± 0.0707**"
  assert dasl_row[header.index("Books HR@10 (sampled)")] == "**0.4250 ± 0.0354**"
  assert dasl_row[header.index("Books HR@10 (full)")] == "n/a"  # runs without the figures
  assert "unseen in training" not in table


def test_the_tables_lead_with_the_full_catalogue_figures_and_the_unseen_share():
  runs = [{"variant": variant, "metrics": {
      "hr10_full_a": full, "ndcg10_full_a": full / 2, "hr10_full_in_vocab_a": full / 0.81,
      "hr10_a": 0.5, "auc_a": 0.7, "unseen_target_share_a": 0.19,
      "unseen_target_share_b": 0.49, "full_catalogue_positives_a": 2000,
      "full_catalogue_positives_b": 1500, "examples_a": 10, "examples_b": 10}}
      for variant, full in (("dasl", 0.10), ("dasl", 0.12), ("popularity", 0.05))]
  table = report.experiment_table_markdown(report.summarize_runs(runs), ("DVDs", "Books"))
  assert "| dasl | 2 | **0.1100 ± 0.0141** | **0.0550 ± 0.0071** | **0.1358 ± 0.0175** |" \
      in table
  assert "| popularity | 1 | 0.0500 ± 0.0000 |" in table
  assert ("unseen in training (full-catalogue misses by rule): 19.0% (DVDs), 49.0% (Books); "
          "ranked against the full catalogue: 2000 (DVDs), 1500 (Books) per run.") in table


def test_slice_tables_follow_the_overall_one():
  runs = [{"variant": variant, "metrics": {
      "auc_a": 0.7, "hr10_a": 0.2, "auc_b": 0.6, "hr10_b": 0.1, "examples_a": 90,
      "examples_b": 40, "auc_a_cold_start": cold, "hr10_a_cold_start": cold / 4,
      "examples_a_cold_start": 30, "examples_b_cold_start": 0, "auc_b_cold_start": np.nan}}
      for variant, cold in (("dasl", 0.66), ("dasl", 0.70), ("single_domain", 0.60))]
  tables = report.experiment_tables_markdown(report.summarize_runs(runs), ("DVDs", "Books"),
                                             "Ciao")
  sections = tables.split("**Ciao")
  assert [s.split("**")[0] for s in sections[1:]] == [
      "", ": slice cold_start", ": slice no_other_domain", ": slice both_domains",
      ": slice cold_start_user"]
  cold = sections[2]
  assert "Test examples: 30 (DVDs), 0 (Books)." in cold
  dasl_row = next(line for line in cold.splitlines() if line.startswith("| dasl |"))
  assert "**0.6800 ± 0.0283**" in dasl_row and "n/a" in dasl_row
  assert "| 0.6000 ± 0.0000 | n/a |" in next(
      line for line in cold.splitlines() if line.startswith("| single_domain | 1 |"))


HISTORY_LENGTH = 3


def _tiny_model_and_batch(variant, labels=(0.0, 0.0, 0.0, 0.0)):
  """A small untrained model and a dataset of one batch of four examples."""
  config = config_lib.ModelConfig(variant=variant, num_users=6, num_items_a=8, num_items_b=8,
                                  history_length=HISTORY_LENGTH, embedding_dim=4,
                                  gru_units=4, attention_dim=4, hidden_units=(4,))
  features = {
      F.USER_ID: tf.constant([2, 3, 4, 5], tf.int64),
      F.ITEM_ID: tf.constant([2, 3, 4, 5], tf.int64),
      F.DOMAIN: tf.constant([0, 1, 0, 1], tf.int64),
      F.HIST_A: tf.constant([[0, 2, 3], [4, 5, 6], [0, 0, 0], [0, 0, 7]], tf.int64),
      F.HIST_B: tf.constant([[0, 0, 2], [3, 4, 5], [6, 7, 2], [0, 3, 4]], tf.int64)}
  return (model_io.build_model(config),
          tf.data.Dataset.from_tensors((features, tf.constant(labels))))


@pytest.mark.parametrize("variant", ["dasl", "dasl_da", "single_domain"])
def test_attention_panels_show_each_heads_weights_over_both_histories(variant):
  model, dataset = _tiny_model_and_batch(variant)
  panels = report.attention_panels(model, dataset, per_domain=2)
  assert [len(p["weights"]) for p in panels] == [1, 2]  # example 2 has no A history
  for head, panel in enumerate(panels):
    weights = panel["weights"]
    own, other = (weights[:, :HISTORY_LENGTH], weights[:, HISTORY_LENGTH:])
    if head == 1:
      own, other = other, own
    real = np.concatenate([panel["hist_a"], panel["hist_b"]], 1) != F.PAD_ID
    assert np.all(weights[~real] == 0)
    if variant == "dasl":  # one softmax over both domains' records
      np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-5)
    elif variant == "dasl_da":  # one softmax per domain
      np.testing.assert_allclose(own.sum(1), 1.0, rtol=1e-5)
      np.testing.assert_allclose(other.sum(1), 1.0, rtol=1e-5)
    else:  # own domain only
      np.testing.assert_allclose(own.sum(1), 1.0, rtol=1e-5)
      assert np.all(other == 0)


def test_write_report_publishes_a_whole_directory_and_never_replaces_a_users_one(tmp_path):
  model, dataset = _tiny_model_and_batch("dasl", labels=(1.0, 0.0, 0.0, 1.0))
  metrics = {"auc_a": 0.75, "hr10_a": 0.5, "auc_b": 0.25, "hr10_b": 0.125, "hr10_full_a": 0.0625,
             "ndcg10_full_a": 0.03125, "hr10_full_in_vocab_a": 0.078125,
             "unseen_target_share_a": 0.2, "ndcg10_a": 0.25, "full_catalogue_positives_a": 80}
  history = [{"epoch": 1, "loss_a": 0.7, "val_auc_a": 0.6}]
  out = tmp_path / "report"
  for curves in (history, []):  # the second report, without curves, replaces the first whole
    assert report.write_report(model, dataset, curves, metrics, str(out)) == str(out / "report.md")
  assert sorted(os.listdir(out)) == ["attention.png", "report.md", "roc.png"]
  text = (out / "report.md").read_text()
  assert "| A | 0.0625 | 0.0312 | 0.0781 | 20.0% | 0.5000 | 0.2500 | 0.7500 | n/a |" in text
  assert "| B | n/a | n/a | n/a | n/a | 0.1250 | n/a | 0.2500 | n/a |" in text
  assert "seeded sample of 80 (A), n/a (B) positives" in text
  assert sorted(os.listdir(tmp_path)) == ["report"]

  users = tmp_path / "mine"
  users.mkdir()
  (users / "notes.txt").write_text("keep me")
  with pytest.raises(publish.PublishError, match="mine exists but is not a report directory"):
    report.write_report(model, dataset, history, metrics, str(users))
  assert os.listdir(users) == ["notes.txt"]
