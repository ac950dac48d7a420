"""Shared helpers of the training tests: a tiny two-domain dataset with a learnable signal.

Users and items belong to one of two tastes; a user clicks an item of his own
taste with probability 0.9 and another one with probability 0.1, and his
histories in both domains hold items of his taste. The directory looks like
the output of ``dasl-prepare`` (``schema.json``, ``vocab/``, train/eval shards
and ``fold-k`` shards), so every training entry point can read it.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Dict, List, Optional

import numpy as np

from dasl_tf import features as F

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
HISTORY_LENGTH = 4
NUM_NEGATIVES = 19
NUM_FOLDS = 2


def _taste(index: np.ndarray) -> np.ndarray:
  return index % 2


def _examples(rng: np.random.Generator, users: np.ndarray, per_user: int, num_items: int,
              negatives: bool) -> List[Dict[str, object]]:
  examples = []
  for user in users:
    own = np.arange(F.NUM_RESERVED_IDS + _taste(user), num_items, 2)
    for _ in range(per_user):
      domain = int(rng.integers(2))
      item = int(rng.integers(F.NUM_RESERVED_IDS, num_items))
      clicked = rng.random() < (0.9 if _taste(item) == _taste(user) else 0.1)
      example = {
          F.USER_ID: int(user), F.ITEM_ID: item, F.DOMAIN: domain, F.LABEL: float(clicked),
          F.HIST_A: F.pad_history(rng.choice(own, rng.integers(0, HISTORY_LENGTH + 1)),
                                  HISTORY_LENGTH),
          F.HIST_B: F.pad_history(rng.choice(own, rng.integers(1, HISTORY_LENGTH + 1)),
                                  HISTORY_LENGTH)}
      if negatives:
        example[F.NEGATIVES] = rng.integers(F.NUM_RESERVED_IDS, num_items, NUM_NEGATIVES)
      examples.append(example)
  return examples


def _write(path: str, spec: F.FeatureSpec, examples) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.TFRecordWriter(path) as writer:
    for example in examples:
      writer.write(spec.encode(example))


def make_dataset_dir(root: str, num_users: int = 40, per_user: int = 16, num_items: int = 12,
                     seed: int = 0) -> str:
  """Writes the tiny dataset under ``root``; returns the directory."""
  rng = np.random.default_rng(seed)
  spec = F.FeatureSpec(history_length=HISTORY_LENGTH, num_negatives=NUM_NEGATIVES)
  users = np.arange(F.NUM_RESERVED_IDS, F.NUM_RESERVED_IDS + num_users)
  os.makedirs(os.path.join(root, "vocab"), exist_ok=True)
  splits = {
      "train": _examples(rng, users, per_user, num_items, negatives=False),
      "eval": _examples(rng, users, per_user // 3, num_items, negatives=True),
  }
  for fold in range(NUM_FOLDS):
    splits[f"fold-{fold}"] = _examples(rng, users[fold::NUM_FOLDS], per_user, num_items,
                                       negatives=True)
  paths = {}
  for name, examples in splits.items():
    paths[name] = (f"{name}-00000-of-00001.tfrecord",)
    _write(os.path.join(root, paths[name][0]), spec, examples)
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
  values = {"model": {"embedding_dim": 8, "gru_units": 8, "attention_dim": 8,
                      "hidden_units": [16], "autoencoder_units": [8]},
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
