"""Shared pytest setup: Keras 2 before TensorFlow, quiet logs, the real-data location."""
import os
import pathlib

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long checks, run with `make test-slow`")


@pytest.fixture
def shared_data() -> pathlib.Path:
  """The real datasets beside the checkout; skips the test when they are absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data not found at {SHARED_DATA} (it lives beside the checkout, never in it)")
  return SHARED_DATA


SYNTHETIC_FIXTURE_CONFIG = dict(num_users=300, num_items_a=300, num_items_b=300, seed=7)


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory) -> dict:
  """Raw files of a small synthetic two-domain dataset: ``dasl_tf.synthetic.generate``'s paths."""
  from dasl_tf import synthetic  # pylint: disable=g-import-not-at-top

  return synthetic.generate(str(tmp_path_factory.mktemp("synthetic_raw")),
                            synthetic.SyntheticConfig(**SYNTHETIC_FIXTURE_CONFIG))


@pytest.fixture(scope="session")
def synthetic_data_dir(synthetic_raw, tmp_path_factory) -> str:
  """A ``dasl-prepare`` output directory (temporal split, side features, 99 negatives)."""
  from dasl_tf import prepare  # pylint: disable=g-import-not-at-top

  output_dir = str(tmp_path_factory.mktemp("synthetic_prepared") / "data")
  prepare.prepare(prepare.PrepareConfig(output_dir=output_dir, num_shards=2, **synthetic_raw))
  return output_dir
