"""Which Keras a process uses: Keras 2 (``tf_keras``) or Keras 3 (``keras``), and keeping them apart.

TensorFlow binds ``tf.keras`` once per process, at its first use: to Keras 2
(``tf_keras``) when ``TF_USE_LEGACY_KERAS`` is ``1``/``true``/``True``, else to
Keras 3. :func:`active_keras` reads that choice without making it, and
:mod:`dasl_tf.layers` follows it. TensorFlow Recommenders needs Keras 2, so
the batch jobs, the export and :mod:`dasl_tf.models` call :func:`require_keras2`
(through ``from dasl_tf import use_keras2``) before TensorFlow's first import.
Importing the layers never changes the process's Keras.

A layer of one Keras inside a model of the other would not be tracked by it
(no weights trained, none saved); :func:`check_same_keras` turns that into an
error that names both Keras versions and the fix.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Optional

KERAS2 = "tf_keras"
KERAS3 = "keras"
NAMES = {KERAS2: "Keras 2 (tf_keras)", KERAS3: "Keras 3 (keras)"}
SHELL_MODULES = {KERAS2: "dasl_tf.layers.keras2", KERAS3: "dasl_tf.layers.keras3"}
_LEGACY_VALUES = ("1", "true", "True")  # what TensorFlow's lazy loader reads as "Keras 2"
_ENV = "TF_USE_LEGACY_KERAS"


def _bound_keras() -> Optional[str]:
  """The Keras ``tf.keras`` already resolved to, or None if it has not been used yet."""
  tf = sys.modules.get("tensorflow")
  loader = getattr(tf, "keras", None) if tf is not None else None
  if loader is None or not getattr(loader, "_tfll_initialized", True):
    return None
  version = getattr(loader, "_tfll_keras_version", None)
  if version is None:  # not TensorFlow's lazy loader: ask the module itself
    return KERAS2 if loader.layers.Layer.__module__.startswith("tf_keras") else KERAS3
  return KERAS3 if version == "keras_3" else KERAS2


def active_keras() -> str:
  """:data:`KERAS2` or :data:`KERAS3`: the Keras ``tf.keras`` resolves (or will resolve) to.

  The binding ``tf.keras`` already has, else what ``TF_USE_LEGACY_KERAS`` will
  make it; it never imports TensorFlow nor binds ``tf.keras``.

  Example:
    >>> active_keras() in (KERAS2, KERAS3)
    True
  """
  bound = _bound_keras()
  if bound is not None:
    return bound
  return KERAS2 if os.environ.get(_ENV) in _LEGACY_VALUES else KERAS3


def require_keras2(user: str = "dasl_tf.models") -> None:
  """Makes ``tf.keras`` resolve to Keras 2 (tf_keras), or says why it cannot.

  Sets ``TF_USE_LEGACY_KERAS=1`` for this process (and its children), which
  TensorFlow reads at the first use of ``tf.keras``.

  Args:
    user: what needs Keras 2, for the error message.

  Raises:
    ImportError: TensorFlow was imported and ``tf.keras`` already resolved to
      Keras 3, which cannot be undone in this process.
  """
  if _bound_keras() == KERAS3:
    raise ImportError(
        f"{user} needs {NAMES[KERAS2]} (TensorFlow Recommenders does not run on Keras 3), but "
        f"tf.keras is already bound to {NAMES[KERAS3]} in this process: TensorFlow was imported "
        f"and tf.keras used before {user}. Set {_ENV}=1 before TensorFlow's first import (e.g. "
        f"`export {_ENV}=1`), or import {user} first. Keras 3 code does not need this: "
        f"dasl_tf.layers gives Keras 3 layers and dasl_tf.keras3 a Keras 3 DASL model.")
  os.environ[_ENV] = "1"
  if "tensorflow" in sys.modules and _bound_keras() is None:
    sys.modules["tensorflow"].keras.layers  # pylint: disable=pointless-statement  (binds it now)


def _other_keras_caller(other: str) -> Optional[str]:
  """The layer of Keras ``other`` whose ``call`` is running now, if any (its name)."""
  if other == KERAS3 and "keras" in sys.modules:
    try:
      from keras.src.backend.common import global_state  # pylint: disable=g-import-not-at-top
    except ImportError:  # another Keras 3 layout: no call context to read
      return None
    context = global_state.get_global_attribute("current_call_ctx")
    return None if context is None else getattr(context.entry_layer, "name", "?")
  if other == KERAS2 and "tf_keras" in sys.modules:
    from tf_keras.src.engine import base_layer_utils  # pylint: disable=g-import-not-at-top

    context = base_layer_utils.call_context()
    return context.layer.name if context.in_call and context.layer is not None else None
  return None


def _is_keras_tensor_of(value: Any, keras: str) -> bool:
  kind = type(value)
  return kind.__name__ == "KerasTensor" and kind.__module__.split(".")[0] == keras


def check_same_keras(layer: Any, layer_keras: str, args: Any, kwargs: Any) -> None:
  """Raises when ``layer`` (of Keras ``layer_keras``) is used by the other Keras.

  Used by every dasl_tf layer's ``__call__``: symbolic inputs of the other
  Keras (a functional model) or a call from inside a layer or model of the
  other Keras (a subclassed model, which would not track the layer's weights).

  Args:
    layer: the layer being called.
    layer_keras: :data:`KERAS2` or :data:`KERAS3`, the Keras of ``layer``.
    args: the positional arguments of the call.
    kwargs: the keyword arguments of the call.

  Raises:
    TypeError: the layer and its caller are of different Keras versions.
  """
  other = KERAS3 if layer_keras == KERAS2 else KERAS2
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (imported by the layer already)

  caller = _other_keras_caller(other)
  if caller is not None:
    where = f"from the {NAMES[other]} layer or model {caller!r}"
  elif any(_is_keras_tensor_of(leaf, other) for leaf in tf.nest.flatten((args, kwargs))):
    where = f"on {NAMES[other]} symbolic inputs ({other}.Input)"
  else:
    return
  raise TypeError(
      f"{type(layer).__name__} {layer.name!r} is a {NAMES[layer_keras]} layer, called {where}. "
      f"{NAMES[KERAS2]} and {NAMES[KERAS3]} do not mix: a model of one would not track the "
      f"weights of the other. Fix: use the layer of the model's Keras, "
      f"`from {SHELL_MODULES[other]} import {type(layer).__name__}` (or `from dasl_tf.layers "
      f"import ...`, which follows TF_USE_LEGACY_KERAS as tf.keras does).")
