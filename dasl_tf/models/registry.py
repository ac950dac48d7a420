"""Maps variant names (``ModelConfig.variant``, ``dasl-train --variant``) to model classes."""
from typing import Callable, Dict, Type

from dasl_tf import config as config_lib

_MODELS: Dict[str, Type] = {}


def register(*variants: str) -> Callable[[Type], Type]:
  """Class decorator: ``@register("din")`` makes ``build_model`` build that class for "din"."""

  def wrap(cls: Type) -> Type:
    for variant in variants:
      if variant in _MODELS:
        raise ValueError(f"variant {variant!r} is already registered to {_MODELS[variant]}")
      _MODELS[variant] = cls
    return cls

  return wrap


def variants() -> tuple:
  """All registered variant names."""
  return tuple(sorted(_MODELS))


def build_model(config: config_lib.ModelConfig):
  """Builds the model ``config.variant`` names.

  Raises:
    ValueError: the variant is unknown.
  """
  if config.variant not in _MODELS:
    raise ValueError(f"unknown model variant {config.variant!r}; choose one of {variants()}")
  return _MODELS[config.variant](config)
