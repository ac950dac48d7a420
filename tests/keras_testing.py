"""The contract of every dasl_tf Keras layer: config, functional-model and saving checks.

The checks use the Keras of the layer (:func:`dasl_tf.layers.shell.keras_of`):
``tf_keras`` for the Keras 2 classes (saved as a SavedModel), ``keras`` for
the Keras 3 classes (saved as a ``.keras`` file).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from dasl_tf import keras_select
from dasl_tf.layers import shell


def _assert_nested_close(actual: Any, expected: Any, atol: float) -> None:
  # check_types=False: a Keras 3 functional model returns a list where the layer returns a tuple.
  tf.nest.assert_same_structure(actual, expected, check_types=False)
  for a, e in zip(tf.nest.flatten(actual), tf.nest.flatten(expected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=atol, rtol=1e-5)


def save_and_load(model: Any, keras: Any, tmp_dir: str) -> Any:
  """``model`` saved and loaded back: a SavedModel with tf_keras, a ``.keras`` file with Keras 3."""
  if keras.__name__ == keras_select.KERAS3:
    path = os.path.join(tmp_dir, "model.keras")
    model.save(path)
  else:
    path = os.path.join(tmp_dir, "saved_model")
    model.save(path, save_format="tf")
  return keras.models.load_model(path)


def check_keras_layer(make_layer: Callable[[], Any], inputs: Any,
                      tmp_dir: str, call_kwargs: Optional[Dict[str, Any]] = None,
                      atol: float = 1e-6, weights_from_build: bool = False) -> Any:
  """Asserts the standard contract of a layer and returns the functional model it was checked in.

  1. ``get_config`` round-trips through the layer's Keras ``layers.serialize`` /
     ``deserialize`` (so the class is registered) to an equal config;
  2. the layer works inside a functional model built on that Keras's ``Input``s
     and gives the same outputs (and the same number of losses) as the layer
     called directly;
  3. that model saved (:func:`save_and_load`) and loaded back gives the same outputs;
  4. a layer rebuilt from the config with the same weights gives the same
     outputs; with ``weights_from_build``, it is built from the build config
     and has all its weights before any call, as a Keras 3 ``.keras`` load
     needs of a layer whose weights are loaded right after ``build``.

  Args:
    make_layer: builds a fresh layer.
    inputs: a batch of inputs (tensor, tuple or dict of tensors).
    tmp_dir: a scratch directory for the saved model.
    call_kwargs: extra tensor arguments of ``call`` (e.g. ``mask``).
    atol: absolute tolerance of the output comparisons.
    weights_from_build: also check that ``build`` creates every weight.
  """
  call_kwargs = call_kwargs or {}
  layer = make_layer()
  keras = shell.keras_of(layer)
  config = layer.get_config()
  clone = keras.layers.deserialize(keras.layers.serialize(layer))
  assert type(clone) is type(layer)
  assert clone.get_config() == config

  def keras_input(value: tf.Tensor, name: Optional[str] = None) -> Any:
    value = tf.convert_to_tensor(value)
    return keras.Input(shape=value.shape[1:], dtype=value.dtype.name, name=name)

  def keras_inputs_of(values: Any) -> Any:
    if isinstance(values, dict):  # named by key, as a Keras 3 functional model expects
      return {key: keras_input(value, key) for key, value in values.items()}
    return tf.nest.map_structure(keras_input, values)

  keras_inputs = keras_inputs_of(inputs)
  keras_kwargs = keras_inputs_of(call_kwargs)
  outputs = layer(keras_inputs, **keras_kwargs)
  model = keras.Model([keras_inputs, keras_kwargs] if keras_kwargs else keras_inputs, outputs)
  model_inputs = [inputs, call_kwargs] if call_kwargs else inputs
  expected = layer(inputs, **call_kwargs)
  _assert_nested_close(model(model_inputs), expected, atol)
  assert len(model.losses) == len(layer.losses)

  loaded = save_and_load(model, keras, tmp_dir)
  _assert_nested_close(loaded(model_inputs), expected, atol)

  rebuilt = type(layer).from_config(config)
  if weights_from_build:  # as a `.keras` load: from the config, `build`, then the weights
    rebuilt.build_from_config(layer.get_build_config())
    assert len(rebuilt.weights) == len(layer.weights), "build() left weights to the first call"
  else:
    rebuilt(inputs, **call_kwargs)
  rebuilt.set_weights(layer.get_weights())
  _assert_nested_close(rebuilt(inputs, **call_kwargs), expected, atol)
  return model
