"""Named experiment settings: ``dasl-train --experiment=<name>``, data instead of command lines.

A preset is a partial :class:`~dasl_tf.config.ExperimentConfig` (the keys of a
``--config`` file), applied over the defaults; a ``--config`` file and
explicit flags then override it (defaults < preset < file < flags). Sizes
always come from the dataset. Each preset says what it is for:

>>> from dasl_tf import presets
>>> sorted(presets.PRESETS)[:3]
['ciao_dasl', 'ciao_single_domain', 'ctr_only']
>>> presets.preset_config("paper").model.cooccurrence_score
False
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping

from dasl_tf import config as config_lib


@dataclasses.dataclass(frozen=True)
class Preset:
  """A named partial config.

  Attributes:
    description: what the preset is for, one line (``dasl-train --help`` and docs).
    values: ``{"model": {...}, "train": {...}}``, as in a ``--config`` file.
  """
  description: str
  values: Mapping[str, Mapping[str, Any]]


# The package's defaults were chosen on Ciao's validation split (docs/results.md), so the
# Ciao and Douban presets are the defaults with the variant named; they exist so that a
# run's command line says which setting it is.
PRESETS: Dict[str, Preset] = {
    "ciao_dasl": Preset(
        "DASL with the defaults chosen on Ciao (DVDs, Books) validation: CTR + sampled "
        "ranking loss on fresh popularity negatives, co-occurrence and recency terms",
        {"model": {"variant": "dasl"}}),
    "ciao_single_domain": Preset(
        "The Single-Domain ablation in the setting of ciao_dasl (no Dual Embedding, no "
        "cross-domain attention)", {"model": {"variant": "single_domain"}}),
    "douban_dasl": Preset(
        "DASL on Douban (book, music): the ciao_dasl setting; the data has no real times, "
        "so the recency term is off", {"model": {"variant": "dasl", "recency_score": False}}),
    "paper": Preset(
        "DASL as the paper describes it: the CTR objective alone, the heads on the "
        "concatenated representations (no candidate interactions, no co-occurrence or "
        "recency term, no other-domain dropout, no weights chosen on validation)",
        {"model": {"variant": "dasl", "ranking_loss": config_lib.NO_RANKING_LOSS,
                   "candidate_interactions": False, "cooccurrence_score": False,
                   "recency_score": False, "other_domain_dropout": 0.0,
                   "validation_term_weights": False},
         "train": {"train_negatives": 0}}),
    "ctr_only": Preset(
        "The default model trained for click-through rate alone (no ranking loss, no "
        "sampled negatives): the CTR serving use without top-n",
        {"model": {"ranking_loss": config_lib.NO_RANKING_LOSS},
         "train": {"train_negatives": 0}}),
    "smoke": Preset(
        "A small, fast model for checking a pipeline end to end (not for results)",
        {"model": {"embedding_dim": 8, "gru_units": 8, "attention_dim": 8,
                   "hidden_units": [16], "autoencoder_units": [8]},
         "train": {"epochs": 2, "full_catalogue_positives": 200}}),
}


def preset_config(name: str) -> config_lib.ExperimentConfig:
  """The defaults with preset ``name`` applied.

  Raises:
    ConfigError: no preset has that name.
  """
  if name not in PRESETS:
    raise config_lib.ConfigError(f"unknown experiment preset {name!r}; the presets are "
                                 f"{sorted(PRESETS)}")
  return config_lib.ExperimentConfig.from_dict(
      {part: dict(values) for part, values in PRESETS[name].values.items()})
