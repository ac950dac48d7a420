"""Keras 3: the layers' contract, models built of the layers, and no silent mixing of the two Keras.

The pytest process runs Keras 2 (``TF_USE_LEGACY_KERAS=1``, set by conftest),
so the Keras 3 checks run in ONE fresh pytest process without that variable
(and without conftest): every ``test_*layer_contract*`` test of
``tests/test_layers_*.py`` (which then checks the Keras 3 classes) and the
cases of ``tests/keras3_cases.py``. This module checks that run's results,
trains the Keras 2 DASL model on the same seeded data as the Keras 3 one did
there and compares their test AUCs (one seed here, three seeds in the slow
test), and checks the Keras 2 side of the mixing errors.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from typing import Dict, Sequence, Tuple

import numpy as np
import pytest

from dasl_tf import features as F
from dasl_tf import planted

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYER_TEST_FILES = sorted(str(p.relative_to(REPO_ROOT))
                          for p in (REPO_ROOT / "tests").glob("test_layers_*.py"))
KERAS3_CASES = "tests/keras3_cases.py"
OUTPUT_ENV = "DASL_KERAS3_OUTPUT"
SEEDS_ENV = "DASL_KERAS3_SEEDS"
AUC_FILE = "keras3_auc.json"
SEEDS = (0, 1, 2)
FAST_SEEDS = (0,)
# The same model and training on both sides of the AUC comparison.
DASL_SIZES = dict(embedding_dim=8, gru_units=8, attention_dim=8, hidden_units=(16,))
LEARNING_RATE = 0.01
EPOCHS = 3
BATCH_SIZE = 32
_PLANTED = planted.PlantedConfig(num_users=42, num_items_a=12, num_items_b=12,
                                 history_length=4)


def keras3_env() -> Dict[str, str]:
  """The environment of a Keras 3 process: this one's without ``TF_USE_LEGACY_KERAS``."""
  env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
  return dict(env, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def planted_split(seed: int) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
  """Train and test examples (features without the label, then the labels) of one seed.

  The user's taste shows in both domains' histories and in the user id, so a
  model that reads them learns the clicks (:mod:`dasl_tf.planted`).
  """
  def split(examples):
    return ({k: v for k, v in examples.items() if k != F.LABEL}, examples[F.LABEL])

  return (split(planted.planted_examples(_PLANTED, 16, seed=100 * seed)),
          split(planted.planted_examples(_PLANTED, 5, seed=100 * seed + 1)))


def dasl_vocabulary() -> Dict[str, int]:
  """The vocabulary sizes of the planted data, as both DASL models take them."""
  return dict(num_users=_PLANTED.num_users, num_items_a=_PLANTED.num_items_a,
              num_items_b=_PLANTED.num_items_b)


def numpy_auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """ROC AUC: the probability that a positive outscores a negative, ties counting 1/2."""
  positives, negatives = scores[labels > 0.5], scores[labels <= 0.5]
  greater = (positives[:, None] > negatives[None, :]).mean()
  ties = (positives[:, None] == negatives[None, :]).mean()
  return float(greater + 0.5 * ties)


def run_keras3_pytest(out: pathlib.Path, selection: str, seeds: Sequence[int],
                      *paths: str) -> Tuple[subprocess.CompletedProcess, Dict[str, str]]:
  """Runs pytest on ``paths`` in a Keras 3 process; returns it and ``{test id: outcome}``."""
  env = dict(keras3_env(), **{OUTPUT_ENV: str(out), SEEDS_ENV: ",".join(map(str, seeds))})
  env["DASL_LAYER_CONTRACT_LOG"] = str(out / "contracts.txt")
  junit = out / "junit.xml"
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "--noconftest", "-q", "-p", "no:cacheprovider",
       f"--junitxml={junit}", "-k", selection, *paths],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert junit.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
  results = {}
  for case in ElementTree.parse(junit).iter("testcase"):
    outcome = "passed"
    for child in case:
      if child.tag in ("failure", "error", "skipped"):
        outcome = child.tag
    results[f"{case.get('classname')}::{case.get('name')}"] = outcome
  return proc, results


@pytest.fixture(scope="module")
def keras3_run(tmp_path_factory):
  """One Keras 3 pytest process: the layer contracts and the Keras 3 cases (one seed)."""
  out = tmp_path_factory.mktemp("keras3")
  proc, results = run_keras3_pytest(out, "keras3_cases or layer_contract", FAST_SEEDS,
                                    KERAS3_CASES, *LAYER_TEST_FILES)
  return proc, results, out


def test_every_layer_passes_its_contract_under_keras3(keras3_run):
  proc, results, out = keras3_run
  failed = {name: outcome for name, outcome in results.items() if outcome != "passed"}
  assert proc.returncode == 0 and not failed, (failed, proc.stdout[-4000:])
  for path in LAYER_TEST_FILES:
    module = path[:-3].replace("/", ".")
    assert any(name.startswith(module + "::") for name in results), f"no contract test of {path}"
  from dasl_tf import layers  # pylint: disable=g-import-not-at-top
  checked = set((out / "contracts.txt").read_text().split())
  assert checked == {f"dasl_tf.layers.keras3.{name}" for name in layers.LAYERS}


def test_keras3_cases_pass(keras3_run):
  proc, results, _ = keras3_run
  cases = {name.split("::")[1]: outcome for name, outcome in results.items()
           if name.startswith("tests.keras3_cases::")}
  expected = {"test_subclassed_model_of_the_layers_trains_saves_and_reloads",
              "test_dasl_fits_saves_and_reloads",
              "test_tf_keras_layer_in_a_keras3_model_is_an_error",
              "test_require_keras2_after_tf_keras_bound_to_keras3_fails_clearly"}
  assert cases == dict.fromkeys(expected, "passed"), proc.stdout[-4000:]


def keras2_dasl_auc(seed: int) -> float:
  """Test AUC of the Keras 2 (TFRS) DASL trained as the Keras 3 one is in keras3_cases."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top

  from dasl_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from dasl_tf import models  # pylint: disable=g-import-not-at-top

  (train, train_labels), (test, test_labels) = planted_split(seed)
  tf_keras.utils.set_random_seed(seed)
  config = config_lib.ModelConfig(
      variant="dasl", history_length=_PLANTED.history_length, dropout=0.0, l2=0.0,
      candidate_interactions=False, ranking_loss=config_lib.NO_RANKING_LOSS,
      other_domain_dropout=0.0, **dasl_vocabulary(), **DASL_SIZES)
  model = models.DASL(config)
  model.compile(tf_keras.optimizers.Adam(LEARNING_RATE))
  model.fit(tf.data.Dataset.from_tensor_slices((train, train_labels)).batch(BATCH_SIZE),
            epochs=EPOCHS, verbose=0)
  logits = model(test)
  own = np.where(test[F.DOMAIN] == F.DOMAIN_A, logits["logit_a"].numpy(),
                 logits["logit_b"].numpy())
  return numpy_auc(test_labels, own)


def test_keras3_dasl_reaches_the_auc_of_the_keras2_dasl(keras3_run):
  """Same data, sizes and training, one seed: the test AUCs agree within 0.05."""
  _, _, out = keras3_run
  keras3_aucs = json.loads((out / AUC_FILE).read_text())
  keras2_aucs = [keras2_dasl_auc(seed) for seed in FAST_SEEDS]
  assert len(keras3_aucs) == len(FAST_SEEDS)
  assert min(keras2_aucs) > 0.7 and min(keras3_aucs) > 0.7, (keras2_aucs, keras3_aucs)
  assert abs(keras3_aucs[0] - keras2_aucs[0]) <= 0.05, (keras2_aucs, keras3_aucs)


@pytest.mark.slow
def test_keras3_dasl_reaches_the_auc_of_the_keras2_dasl_over_three_seeds(tmp_path):
  """Mean test AUCs over 3 seeds agree within the spread of the seeds."""
  proc, results = run_keras3_pytest(tmp_path, "test_dasl_fits", SEEDS, KERAS3_CASES)
  assert proc.returncode == 0 and set(results.values()) == {"passed"}, proc.stdout[-4000:]
  keras3_aucs = json.loads((tmp_path / AUC_FILE).read_text())
  keras2_aucs = [keras2_dasl_auc(seed) for seed in SEEDS]
  assert len(keras3_aucs) == len(SEEDS)
  assert min(keras2_aucs) > 0.7 and min(keras3_aucs) > 0.7, (keras2_aucs, keras3_aucs)
  spread = np.sqrt((np.var(keras2_aucs, ddof=1) + np.var(keras3_aucs, ddof=1)) / len(SEEDS))
  assert abs(np.mean(keras3_aucs) - np.mean(keras2_aucs)) <= max(3 * spread, 0.03), (
      keras2_aucs, keras3_aucs)


def test_keras3_layer_in_a_tf_keras_model_is_an_error():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top

  from dasl_tf.layers import keras3  # pylint: disable=g-import-not-at-top

  message = r"Keras 3 \(keras\) layer.*Keras 2 \(tf_keras\).*from dasl_tf.layers.keras2 import MLP"
  with pytest.raises(TypeError, match=message):
    keras3.MLP((4,), 1)(tf_keras.Input((3,)))

  class Holder(tf_keras.Model):

    def __init__(self):
      super().__init__()
      self.head = keras3.MLP((4,), 1)

    def call(self, inputs):
      return self.head(inputs)

  with pytest.raises(TypeError, match=message):
    Holder()(tf.ones([2, 3]))


def test_import_changes_no_keras_and_the_jobs_select_keras2():
  """A fresh process without TF_USE_LEGACY_KERAS: the layers leave tf.keras alone, the jobs pick Keras 2."""
  code = """if True:
      import os
      import dasl_tf, dasl_tf.layers, dasl_tf.keras3
      import tensorflow as tf
      assert "TF_USE_LEGACY_KERAS" not in os.environ, "importing the layers set the variable"
      assert not tf.keras._tfll_initialized, "importing the layers bound tf.keras"
      assert dasl_tf.layers.MLP.__module__ == "dasl_tf.layers.keras3", dasl_tf.layers.MLP
      import dasl_tf.pipelines.train, dasl_tf.serving.export
      assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
      assert tf.keras.layers.Layer.__module__.startswith("tf_keras."), tf.keras.layers.Layer
      assert dasl_tf.layers.MLP.__module__ == "dasl_tf.layers.keras2", dasl_tf.layers.MLP
      print("ok")
      """
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=keras3_env(),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
