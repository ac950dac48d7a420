"""dasl-experiment: a variant over the folds of a k-fold dataset, into one table."""
import json
import os
import subprocess

from tests import test_train_support as support


def test_experiment_over_folds_writes_runs_and_tables(tmp_path):
  data_dir = support.make_dataset_dir(str(tmp_path / "data"))
  config = support.small_config_json(str(tmp_path / "run.json"), epochs=1)
  output_dir = tmp_path / "experiment"
  proc = support.run_cli(
      "dasl_tf.pipelines.experiment",
      [f"--data_dir={data_dir}", f"--output_dir={output_dir}", "--variants=wide_deep",
       f"--folds={support.NUM_FOLDS}", f"--config={config}", "--title=tiny"],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  output, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, output[-4000:]

  results = json.loads((output_dir / "results.json").read_text())
  assert [(r["variant"], r["run"]) for r in results] == [
      ("wide_deep", f"fold-{k}") for k in range(support.NUM_FOLDS)]
  for result in results:
    assert os.path.exists(os.path.join(result["model_dir"], "metrics.json"))
  summary = json.loads((output_dir / "table.json").read_text())
  aucs = [r["metrics"]["auc_a"] for r in results]
  assert summary["wide_deep"]["auc_a"]["n"] == support.NUM_FOLDS
  assert abs(summary["wide_deep"]["auc_a"]["mean"] - sum(aucs) / len(aucs)) < 1e-9
  fulls = [r["metrics"]["hr10_full_a"] for r in results]
  assert abs(summary["wide_deep"]["hr10_full_a"]["mean"] - sum(fulls) / len(fulls)) < 1e-9
  table = (output_dir / "table.md").read_text()
  assert "**tiny**" in table and f"| wide_deep | {support.NUM_FOLDS} |" in table and "±" in table
  header = table.splitlines()[2]
  assert header.startswith("| variant | runs | Books HR@10 (full) | Books NDCG@10 (full) |")
  assert "Positives whose target was unseen in training" in table
  for slice_name in ("cold_start", "no_other_domain", "both_domains", "cold_start_user"):
    assert f"**tiny: slice {slice_name}**" in table
