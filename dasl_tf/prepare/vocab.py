"""Vocabularies: raw string ids -> indices, with 0 = padding and 1 = out-of-vocabulary.

A vocabulary lists its raw ids sorted (so it does not depend on file order or
on the driver); the id on line ``k`` (0-based) of its file has index ``k + 2``.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dasl_tf import filesystems
from dasl_tf.features import NUM_RESERVED_IDS, OOV_ID


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Sorted raw ids; ``tokens[k]`` has index ``k + 2``.

  Attributes:
    tokens: raw ids, str (object) [V - 2].
  """
  tokens: np.ndarray

  @property
  def size(self) -> int:
    """Number of indices, the two reserved ones included."""
    return len(self.tokens) + NUM_RESERVED_IDS

  def lookup(self, values: np.ndarray) -> np.ndarray:
    """Indices of raw ids, int64 [N]; ids not in the vocabulary get :data:`OOV_ID`."""
    position = pc.index_in(pa.array(values, type=pa.string()),
                           value_set=pa.array(self.tokens, type=pa.string()))
    return pc.fill_null(pc.add(position, NUM_RESERVED_IDS), OOV_ID).to_numpy().astype(np.int64)

  def write(self, path: str) -> None:
    with filesystems.open_file(path, "w") as f:
      f.write("".join(f"{token}\n" for token in self.tokens))


def build(values: np.ndarray, min_count: int = 1) -> Tuple[Vocabulary, np.ndarray]:
  """The vocabulary of ``values`` and the index of every value.

  Args:
    values: raw ids, str [N].
    min_count: ids seen fewer times are left out and indexed :data:`OOV_ID`.

  Returns:
    ``(vocabulary, indices)`` with indices int64 [N].
  """
  encoded = pc.dictionary_encode(pa.array(values, type=pa.string()))
  uniques = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
  codes = encoded.indices.to_numpy().astype(np.int64)
  order = np.argsort(uniques.astype(str), kind="stable")
  counts = np.bincount(codes, minlength=len(uniques))[order]
  kept = counts >= min_count
  index_of_sorted = np.where(kept, np.cumsum(kept) - 1 + NUM_RESERVED_IDS, OOV_ID)
  index_of_code = np.empty(len(uniques), dtype=np.int64)
  index_of_code[order] = index_of_sorted
  return Vocabulary(uniques[order][kept]), index_of_code[codes]


def write_all(vocab_dir: str, **vocabularies: Vocabulary) -> None:
  """Writes ``<vocab_dir>/<name>.txt`` for each vocabulary."""
  filesystems.files_for(vocab_dir).makedirs(vocab_dir)
  for name, vocabulary in vocabularies.items():
    vocabulary.write(os.path.join(vocab_dir, f"{name}.txt"))
