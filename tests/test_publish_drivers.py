"""Publishing a prepared dataset, the same with both drivers: symbolic links and planted names.

Each case runs ``dasl_tf.prepare.prepare`` with the local driver and with the
Beam one (DirectRunner) on a tiny synthetic dataset.
"""
import json
import os

import pytest

from dasl_tf import publish
from dasl_tf import synthetic
from dasl_tf.prepare import PrepareConfig, prepare

TINY = synthetic.SyntheticConfig(num_users=30, num_items_a=60, num_items_b=60, seed=5)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  return synthetic.generate(str(tmp_path_factory.mktemp("publish_raw")), TINY)


@pytest.fixture(params=["local", "beam"])
def driver(request):
  if request.param == "beam":
    pytest.importorskip("apache_beam", reason="the Beam driver needs apache-beam (extra [beam])")
  return request.param


def _prepare(raw, driver, output_dir, **flags):
  return prepare(PrepareConfig(output_dir=str(output_dir), runner=driver, num_negatives=5,
                               train_negatives=2, num_shards=1,
                               input_a=raw["input_a"], input_b=raw["input_b"], **flags))


def _is_dataset(directory, driver):
  with open(os.path.join(directory, "stats.json"), encoding="utf-8") as f:
    stats = json.load(f)
  return stats["config"]["runner"] == driver and os.path.exists(
      os.path.join(directory, "schema.json"))


def test_overwrite_onto_a_symlinked_output_dir_replaces_the_linked_directory(raw, driver,
                                                                             tmp_path):
  """``out -> store/real`` with --overwrite: ``real`` is replaced, ``out`` stays the link."""
  real, out = tmp_path / "store" / "real", tmp_path / "out"
  _prepare(raw, driver, real)
  (real / "from_the_first_run").write_text("stale")
  os.symlink(real, out)
  _prepare(raw, driver, out, overwrite=True)
  assert os.path.islink(out) and os.readlink(out) == str(real)
  assert _is_dataset(real, driver)
  assert not (real / "from_the_first_run").exists()
  assert sorted(os.listdir(tmp_path)) == ["out", "store"]
  assert os.listdir(tmp_path / "store") == ["real"]


def test_planted_staging_and_retired_symlinks_neither_block_nor_become_the_output(raw, driver,
                                                                                   tmp_path):
  """A shared writable parent: ``out.staging-* -> victim``, ``out.retired-* -> attacker``."""
  out, victim, attacker = tmp_path / "out", tmp_path / "victim", tmp_path / "attacker"
  victim.mkdir()
  (victim / "precious").write_text("keep")
  attacker.mkdir()
  (attacker / "schema.json").write_text("{}")
  os.symlink(victim, f"{out}{publish.STAGING_INFIX}0000000000000001-planted")
  os.symlink(attacker, f"{out}{publish.RETIRED_INFIX}ffffffffffffffff-planted")
  _prepare(raw, driver, out)
  assert not os.path.islink(out)
  assert _is_dataset(out, driver)
  assert sorted(os.listdir(tmp_path)) == ["attacker", "out", "victim"]
  assert os.listdir(victim) == ["precious"] and (victim / "precious").read_text() == "keep"
  assert os.listdir(attacker) == ["schema.json"]
