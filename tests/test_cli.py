"""The command-line entry points: ``--help`` lists each one's flags; importing defines none."""
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT

# Each module with a command line, and flags its --help must list.
OWN_FLAGS = {
    "dasl_tf.pipelines.prepare": ("--input_a", "--output_dir", "--validation_fraction",
                                  "--test_fraction", "--train_negatives", "--negative_sampling",
                                  "--negative_alpha"),
    "dasl_tf.pipelines.train": ("--data_dir", "--model_dir", "--validation_files",
                                "--test_files", "--train_negatives", "--ranking_loss",
                                "--ranking_weight", "--monitor", "--serving_model_dir"),
    "dasl_tf.serving.export": ("--model_dir", "--export_base", "--version", "--overwrite",
                               "--top_n", "--id_dtype", "--model_name"),
    "dasl_tf.pipelines.experiment": ("--data_dir", "--output_dir", "--variants", "--folds",
                                     "--seeds"),
    "dasl_tf.pipelines.demo": ("--output_dir", "--num_users", "--seed"),
    "dasl_tf.serving.client": ("--spec", "--signature", "--request", "--transport", "--form",
                               "--dry_run"),
}
# How the module is started: as ``python -m``, and as a console script does it
# (the main module is a wrapper that imports the module and calls main()).
LAUNCHES = {
    "python -m": lambda module: ["-m", module],
    "console script": lambda module: ["-c", f"from {module} import main; main()"],
}


def _run(args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                        cwd=REPO_ROOT, timeout=300)


@pytest.mark.parametrize("launch", sorted(LAUNCHES))
@pytest.mark.parametrize("module", sorted(OWN_FLAGS))
def test_help_lists_the_flags_of_the_binary(module, launch):
  proc = _run(LAUNCHES[launch](module) + ["--help"])
  listed = {line.split(":")[0].strip().replace("--[no]", "--")
            for line in proc.stdout.splitlines() if line.lstrip().startswith("--")}
  assert set(OWN_FLAGS[module]) <= listed, proc.stdout + proc.stderr[-2000:]


def test_prepare_help_describes_the_split_and_negatives_flags():
  help_text = _run(["-m", "dasl_tf.pipelines.prepare", "--help"]).stdout
  assert "--eval_fraction" not in help_text
  assert "<uniform|popularity>" in help_text
  for name in ("--validation_fraction", "--test_fraction", "--train_negatives"):
    assert f"{name}:" in help_text
  flat = " ".join(help_text.split())
  assert "(default: '0.1')" in flat and "(default: '16')" in flat and "(default: '0.75')" in flat


def test_experiment_compares_popularity_by_default():
  # absl wraps long defaults inside words: compare without whitespace.
  help_text = "".join(_run(["-m", "dasl_tf.pipelines.experiment", "--help"]).stdout.split())
  from dasl_tf.pipelines import experiment  # pylint: disable=g-import-not-at-top

  assert "popularity" in experiment.DEFAULT_VARIANTS
  assert f"(default:'{','.join(experiment.DEFAULT_VARIANTS)}')" in help_text


def test_importing_the_modules_defines_no_flags():
  script = textwrap.dedent("""
      import importlib, sys
      from absl import flags
      modules, own_flags = sys.argv[1].split(","), sys.argv[2].split(",")
      for module in modules:
        importlib.import_module(module)
        defined = sorted(name for name in own_flags if name in flags.FLAGS)
        assert not defined, (module, defined)
      """)
  own_flags = sorted({flag[2:] for flags in OWN_FLAGS.values() for flag in flags})
  proc = _run(["-c", script, ",".join(sorted(OWN_FLAGS)), ",".join(own_flags)])
  assert proc.returncode == 0, proc.stderr[-3000:]
