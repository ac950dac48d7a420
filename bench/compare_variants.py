"""Two variants of one ``dasl-experiment`` table, metric by metric, on every slice.

Reads ``<experiment_dir>/results.json`` (every run's ``metrics.json``) and prints, for the test split (or ``--prefix=val_`` for
validation) and each slice, the headline full-catalogue HR@10 and NDCG@10, the
sampled HR@10 and the AUC of both heads: the two means, their difference, the
larger of the two spreads, and whether ``--variant`` holds up against
``--baseline`` "within the seed spread" (its mean is at least the baseline's
minus that spread). A metric that either variant's runs lack (results of an
older release, a slice without examples) is left out. Also prints the
variant's full-catalogue and sampled HR@10 over the ``popularity`` variant's
when the table has one.

Usage::

  .venv/bin/python bench/compare_variants.py --experiment_dir=/tmp/tables/ciao_final \\
      [--variant=dasl] [--baseline=single_domain] [--prefix=val_]
"""
from __future__ import annotations

import statistics
from typing import Dict, List

from absl import app
from absl import flags

from dasl_tf import report

_EXPERIMENT_DIR = flags.DEFINE_list("experiment_dir", None, "dasl-experiment outputs (their "
                                    "runs pooled: one table's variants run separately).")
_VARIANT = flags.DEFINE_string("variant", "dasl", "The variant compared.")
_BASELINE = flags.DEFINE_string("baseline", "single_domain", "The variant compared against.")
_PREFIX = flags.DEFINE_string("prefix", "", "'' for the test split, 'val_' for validation.")

SLICES = ("", "_cold_start", "_no_other_domain", "_both_domains", "_cold_start_user")
METRICS = tuple(f"{metric}_{head}" for head in "ab"
                for metric in ("hr10_full", "ndcg10_full", "hr10", "auc"))


def _summaries(results: List[dict]) -> Dict[str, Dict[str, Dict[str, float]]]:
  """``{variant: {metric: {"mean", "std"}}}`` over the runs (sample std; 0 for one run)."""
  runs: Dict[str, List[dict]] = {}
  for result in results:
    runs.setdefault(result["variant"], []).append(result["metrics"])
  summaries = {}
  for variant, metrics in runs.items():
    summaries[variant] = {}
    for key in metrics[0]:
      values = [m[key] for m in metrics if isinstance(m.get(key), (int, float))]
      if len(values) == len(metrics):
        summaries[variant][key] = {
            "mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}
  return summaries


def main(argv):
  del argv
  table = _summaries(report.load_experiment_runs(_EXPERIMENT_DIR.value))
  variant, baseline = table[_VARIANT.value], table[_BASELINE.value]
  print(f"| slice | metric | {_VARIANT.value} | {_BASELINE.value} | difference | spread | holds |")
  print("|---|---|---|---|---|---|---|")
  failures = compared = 0
  for slice_suffix in SLICES:
    for metric in METRICS:
      key = f"{_PREFIX.value}{metric}{slice_suffix}"
      if key not in variant or key not in baseline:
        continue
      compared += 1
      ours, theirs = variant[key], baseline[key]
      spread = max(ours["std"], theirs["std"])
      difference = ours["mean"] - theirs["mean"]
      holds = difference >= -spread
      failures += not holds
      print(f"| {slice_suffix.lstrip('_') or 'all'} | {metric} | {ours['mean']:.4f} | "
            f"{theirs['mean']:.4f} | {difference:+.4f} | {spread:.4f} | "
            f"{'yes' if holds else '**no**'} |")
  print(f"\n{failures} of {compared} comparisons outside the seed spread")
  if "popularity" in table:
    for metric, label in (("hr10_full", "HR@10 (full)"), ("hr10", "HR@10 (sampled)")):
      for head in ("a", "b"):
        key = f"{_PREFIX.value}{metric}_{head}"
        if key in variant and key in table["popularity"]:
          ratio = variant[key]["mean"] / table["popularity"][key]["mean"]
          print(f"{label} {head}: {_VARIANT.value} / popularity = {ratio:.3f}")


if __name__ == "__main__":
  flags.mark_flag_as_required("experiment_dir")
  app.run(main)
