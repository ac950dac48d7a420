"""The contract of every dasl_tf Keras layer: config, functional-model and SavedModel checks."""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras


def _keras_input(value: tf.Tensor) -> tf_keras.Input:
  value = tf.convert_to_tensor(value)
  return tf_keras.Input(shape=value.shape[1:], dtype=value.dtype)


def _assert_nested_close(actual: Any, expected: Any, atol: float) -> None:
  tf.nest.assert_same_structure(actual, expected)
  for a, e in zip(tf.nest.flatten(actual), tf.nest.flatten(expected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=atol, rtol=1e-5)


def check_keras_layer(make_layer: Callable[[], tf_keras.layers.Layer], inputs: Any,
                      tmp_dir: str, call_kwargs: Optional[Dict[str, Any]] = None,
                      atol: float = 1e-6) -> tf_keras.Model:
  """Asserts the standard contract of a layer and returns the functional model it was checked in.

  1. ``get_config`` round-trips through ``tf_keras.layers.serialize`` /
     ``deserialize`` (so the class is registered) to an equal config;
  2. the layer works inside a functional model built on ``tf_keras.Input``s
     and gives the same outputs (and the same number of losses) as the layer
     called directly;
  3. that model saved as a SavedModel and loaded back gives the same outputs;
  4. a layer rebuilt from the config with the same weights gives the same outputs.

  Args:
    make_layer: builds a fresh layer.
    inputs: a batch of inputs (tensor, tuple or dict of tensors).
    tmp_dir: a scratch directory for the SavedModel.
    call_kwargs: extra tensor arguments of ``call`` (e.g. ``mask``).
    atol: absolute tolerance of the output comparisons.
  """
  call_kwargs = call_kwargs or {}
  layer = make_layer()
  config = layer.get_config()
  clone = tf_keras.layers.deserialize(tf_keras.layers.serialize(layer))
  assert type(clone) is type(layer)
  assert clone.get_config() == config

  keras_inputs = tf.nest.map_structure(_keras_input, inputs)
  keras_kwargs = tf.nest.map_structure(_keras_input, call_kwargs)
  outputs = layer(keras_inputs, **keras_kwargs)
  model = tf_keras.Model([keras_inputs, keras_kwargs] if keras_kwargs else keras_inputs, outputs)
  model_inputs = [inputs, call_kwargs] if call_kwargs else inputs
  expected = layer(inputs, **call_kwargs)
  _assert_nested_close(model(model_inputs), expected, atol)
  assert len(model.losses) == len(layer.losses)

  path = os.path.join(tmp_dir, "saved_model")
  model.save(path, save_format="tf")
  loaded = tf_keras.models.load_model(path)
  _assert_nested_close(loaded(model_inputs), expected, atol)

  rebuilt = type(layer).from_config(config)
  rebuilt(inputs, **call_kwargs)
  rebuilt.set_weights(layer.get_weights())
  _assert_nested_close(rebuilt(inputs, **call_kwargs), expected, atol)
  return model
