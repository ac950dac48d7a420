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
