"""One table from several ``dasl-experiment`` outputs on the same data (their runs pooled).

``dasl-experiment`` keeps each output directory to one configuration; when the
variants of one table were run as separate experiments (the no-learning
baselines once, the learned variants later), this renders their pooled runs
as the table ``dasl-experiment`` would have written, from each directory's
``results.json``, overall and per slice (``--slices``).

Usage::

  .venv/bin/python bench/merge_tables.py --experiment_dirs=/tmp/final/ciao,/tmp/final/ciao_learned \\
      --data_dir=/tmp/real/ciao --title="Ciao, temporal split" [--slices=cold_start_user]
"""
from __future__ import annotations

from absl import app
from absl import flags

from dasl_tf import features as F
from dasl_tf import report

_DIRS = flags.DEFINE_list("experiment_dirs", None, "dasl-experiment outputs to pool.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The dasl-prepare output (domain names).")
_TITLE = flags.DEFINE_string("title", "", "Caption of the table.")
_SLICES = flags.DEFINE_list("slices", [], "Slices to add after the overall table.")


def main(argv):
  del argv
  summary = report.summarize_runs(report.load_experiment_runs(_DIRS.value))
  names = F.DatasetSchema.load(_DATA_DIR.value).domain_names
  sections = [report.experiment_table_markdown(summary, names, _TITLE.value)]
  for slice_name in _SLICES.value:
    sections.append(report.experiment_table_markdown(
        summary, names, f"{_TITLE.value}: slice {slice_name}", slice_name))
  print("\n".join(sections))


if __name__ == "__main__":
  flags.mark_flags_as_required(["experiment_dirs", "data_dir"])
  app.run(main)
