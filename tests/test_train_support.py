"""Shared helpers of the training tests: a tiny two-domain dataset with a learnable signal.

Users and items belong to one of two tastes (:func:`dasl_tf.planted.planted_examples`):
a user mostly clicks items of his own taste, and his histories in both domains
hold items of his taste. The directory looks like
the output of ``dasl-prepare`` (``schema.json``, ``vocab/``, train, validation
and test shards, and ``fold-k`` shards), so every training entry point can read
it. Training records carry ``train_negatives``, evaluation records ``negatives``
(both uniform, as ``dasl-prepare`` draws them).
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Dict, List, Optional

import numpy as np

from dasl_tf import features as F
from dasl_tf import planted

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
HISTORY_LENGTH = 4
NUM_NEGATIVES = 19
NUM_TRAIN_NEGATIVES = 3
NUM_FOLDS = 3


def make_dataset_dir(root: str, num_users: int = 40, per_user: int = 16, num_items: int = 12,
                     seed: int = 0) -> str:
  """Writes the tiny dataset under ``root``; returns the directory."""
  spec = F.FeatureSpec(history_length=HISTORY_LENGTH, num_negatives=NUM_NEGATIVES,
                       num_train_negatives=NUM_TRAIN_NEGATIVES)
  taste_model = planted.PlantedConfig(num_users=num_users + F.NUM_RESERVED_IDS,
                                      num_items_a=num_items, num_items_b=num_items,
                                      history_length=HISTORY_LENGTH)
  users = np.arange(F.NUM_RESERVED_IDS, taste_model.num_users)
  splits = {
      "train": planted.planted_examples(taste_model, per_user, seed,
                                        num_train_negatives=NUM_TRAIN_NEGATIVES),
      "validation": planted.planted_examples(taste_model, per_user // 3, seed + 1,
                                             num_negatives=NUM_NEGATIVES),
      "test": planted.planted_examples(taste_model, per_user // 3, seed + 2,
                                       num_negatives=NUM_NEGATIVES),
  }
  for fold in range(NUM_FOLDS):
    splits[f"fold-{fold}"] = planted.planted_examples(
        taste_model, per_user, seed + 3 + fold, users=users[fold::NUM_FOLDS],
        num_negatives=NUM_NEGATIVES, num_train_negatives=NUM_TRAIN_NEGATIVES)
  os.makedirs(os.path.join(root, "vocab"), exist_ok=True)
  paths = {}
  for name, examples in splits.items():
    paths[name] = (f"{name}-00000-of-00001.tfrecord",)
    planted.write_examples(os.path.join(root, paths[name][0]), examples, spec)
  for vocab, size in (("users.txt", num_users), ("items_a.txt", num_items - 2),
                      ("items_b.txt", num_items - 2)):
    with open(os.path.join(root, "vocab", vocab), "w", encoding="utf-8") as f:
      f.write("".join(f"{vocab[0]}{k}\n" for k in range(size)))
  F.DatasetSchema(feature_spec=spec, num_users=num_users + F.NUM_RESERVED_IDS,
                  num_items_a=num_items, num_items_b=num_items, domain_names=("Books", "Music"),
                  splits=paths).save(root)
  return root


def small_config_json(path: str, **train) -> str:
  """A small-model ExperimentConfig JSON (fast on 2 CPU cores); ``train`` overrides fields."""
  import json  # pylint: disable=g-import-not-at-top
  # The planted targets are uniform over the items (no top-n signal to learn), so the
  # ranking loss is down-weighted: on 640 examples its noise would swamp the CTR signal.
  values = {"model": {"embedding_dim": 8, "gru_units": 8, "attention_dim": 8,
                      "hidden_units": [16], "autoencoder_units": [8], "ranking_weight": 0.1},
            "train": {"batch_size": 32, "learning_rate": 0.01, "epochs": 3,
                      "shuffle_buffer": 1000, **train}}
  with open(path, "w", encoding="utf-8") as f:
    json.dump(values, f)
  return path


def run_cli(module: str, args: List[str], env: Optional[Dict[str, str]] = None,
            **popen) -> subprocess.Popen:
  """Starts ``python -m module args`` from the repository root."""
  full_env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                  PYTHONUNBUFFERED="1", **(env or {}))
  return subprocess.Popen([sys.executable, "-m", module] + args, cwd=REPO_ROOT, env=full_env,
                          **popen)
