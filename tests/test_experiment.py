"""dasl-experiment: a variant over the folds of a k-fold dataset, into one table; bad flags."""
import json
import os
import subprocess

import pytest

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


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory) -> str:
  """The tiny three-fold dataset of the training tests (a dasl-prepare output layout)."""
  return support.make_dataset_dir(str(tmp_path_factory.mktemp("experiment_data") / "data"))


# (flags after the valid ones, the flag the error line must name). Each set is wrong in
# one flag; the valid ones pick a variant that trains in one pass, so a bad flag that
# slipped through would end quickly (and fail the test) rather than train for long.
BAD_FLAGS = {
    "repeated seeds": (["--seeds=1,01"], "--seeds"),  # one seed, however written
    "repeated variants": (["--variants=popularity,popularity"], "--variants"),
    "empty variants": (["--variants="], "--variants"),
    "non-integer seed": (["--seeds=1,two"], "--seeds"),
    "negative seed": (["--seeds=-1"], "--seeds"),
    "negative folds": (["--folds=-1"], "--folds"),
    "too few folds": (["--folds=2"], "--folds"),
    "more folds than the data": ([f"--folds={support.NUM_FOLDS + 1}"], "--folds"),
    "not a prepared data dir": (["--data_dir={tmp}"], "--data_dir"),
    "output dir is a file": (["--output_dir={tmp}/a_file"], "--output_dir"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flags_end_in_one_error_line_before_anything_is_written(case, tiny_data_dir,
                                                                    tmp_path):
  bad_flags, flag = BAD_FLAGS[case]
  (tmp_path / "a_file").write_text("kept\n")
  output_dir = tmp_path / "experiment"
  flags = [f"--data_dir={tiny_data_dir}", f"--output_dir={output_dir}",
           "--variants=popularity", "--seeds=1"] + [f.format(tmp=tmp_path) for f in bad_flags]
  proc = support.run_cli("dasl_tf.pipelines.experiment", flags, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
  _, stderr = proc.communicate(timeout=300)
  last_line = stderr.strip().splitlines()[-1]
  assert proc.returncode == 2, stderr[-3000:]
  assert last_line.startswith("dasl-experiment: error: "), stderr[-3000:]
  assert flag in last_line, last_line
  assert "Traceback" not in stderr
  assert not output_dir.exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
  assert (tmp_path / "a_file").read_text() == "kept\n"
