"""One test of the standard contract of a dasl_tf Keras layer (as keras-hub's ``run_layer_test``).

Every ``tests/test_layers_*.py`` calls :func:`run_layer_test` for each layer
configuration it covers, in a ``test_*layer_contract*`` test; the layer-specific
tests (NumPy references, masking, argument checks) stay beside it. The checks
use the Keras of the layer class, so the same contract tests run on the
Keras 2 classes (the pytest process, ``TF_USE_LEGACY_KERAS=1``) and on the
Keras 3 classes (``tests/test_keras3.py`` runs them in a Keras 3 process).
"""
from __future__ import annotations

import itertools
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import tensorflow as tf

from dasl_tf.layers import shell
from tests import keras_testing

Shape = Tuple[int, ...]
_LEARNING_RATE = 0.1
CONTRACT_LOG = "DASL_LAYER_CONTRACT_LOG"
"""Environment variable: a file to which :func:`run_layer_test` appends each class it checked."""


def _is_shape(spec: Any) -> bool:
  return isinstance(spec, (tuple, list)) and all(isinstance(d, int) for d in spec)


def random_inputs(shapes: Any, seed: int = 0) -> Any:
  """Standard-normal float32 tensors in the structure of ``shapes``.

  Args:
    shapes: a shape (tuple of ints), or a list, tuple or dict of shapes.
    seed: seed of the draws; the k-th tensor uses the stateless seed ``(seed, k)``.

  Returns:
    Tensors in the structure of ``shapes``.
  """
  counter = itertools.count()

  def build(spec):
    if _is_shape(spec):
      return tf.random.stateless_normal(spec, seed=(seed, next(counter)))
    if isinstance(spec, dict):
      return {name: build(value) for name, value in spec.items()}
    return type(spec)(build(value) for value in spec)

  return build(shapes)


def _flat_outputs(layer: Any, inputs: Any, call_kwargs: Dict[str, Any],
                  training: bool) -> List[tf.Tensor]:
  return tf.nest.flatten(layer(inputs, training=training, **call_kwargs))


def _check_training_step(layer: Any, inputs: Any, call_kwargs: Dict[str, Any]) -> None:
  """Every trainable weight gets a finite gradient; one SGD step changes every output.

  The objective is the sum of the squared outputs plus the layer's losses, so
  every weight that reaches an output or a loss gets a gradient. A layer
  without trainable weights has nothing to check.
  """
  if not layer.trainable_weights:
    return
  before = [output.numpy() for output in _flat_outputs(layer, inputs, call_kwargs, False)]
  with tf.GradientTape() as tape:
    outputs = _flat_outputs(layer, inputs, call_kwargs, True)
    objective = tf.add_n([tf.reduce_sum(tf.square(output)) for output in outputs]
                         + list(layer.losses))
  weights = layer.trainable_weights
  gradients = tape.gradient(objective, weights)
  for weight, gradient in zip(weights, gradients):
    assert gradient is not None, f"no gradient reaches {weight.name}"
    assert np.all(np.isfinite(tf.convert_to_tensor(gradient).numpy())), (
        f"non-finite gradient of {weight.name}")
  shell.keras_of(layer).optimizers.SGD(_LEARNING_RATE).apply_gradients(zip(gradients, weights))
  after = _flat_outputs(layer, inputs, call_kwargs, False)
  for index, (old, new) in enumerate(zip(before, after)):
    assert not np.allclose(old, new.numpy()), f"an SGD step left output {index} unchanged"


def run_layer_test(layer_cls: Type[Any], init_kwargs: Dict[str, Any],
                   tmp_dir: str, *, expected_output_shape: Union[Shape, Sequence[Shape]],
                   expected_num_trainable_weights: int,
                   expected_num_non_trainable_weights: int = 0,
                   expected_num_losses: int = 0, input_data: Any = None,
                   input_shape: Any = None,
                   call_kwargs: Optional[Dict[str, Any]] = None) -> None:
  """Asserts the standard contract of a layer.

  1. ``layer_cls(**init_kwargs)`` called on the inputs gives outputs of
     ``expected_output_shape`` and has the expected numbers of trainable and
     non-trainable weights and of losses;
  2. :func:`tests.keras_testing.check_keras_layer`: ``get_config``
     round-trips through Keras serialization, ``from_config`` and ``build``
     create every weight and with the same weights give the same outputs, and so do a functional model and that
     model saved (SavedModel with tf_keras, ``.keras`` with Keras 3) and
     loaded back;
  3. one training step: every trainable weight gets a finite gradient of the
     sum of the squared outputs plus the layer's losses, and one step of
     the layer's Keras ``optimizers.SGD`` changes every output.

  Args:
    layer_cls: the layer class.
    init_kwargs: constructor arguments.
    tmp_dir: a scratch directory for the saved model.
    expected_output_shape: the output's shape, or the shapes of the outputs
      in the order of ``tf.nest.flatten``.
    expected_num_trainable_weights: ``len(layer.trainable_weights)``.
    expected_num_non_trainable_weights: ``len(layer.non_trainable_weights)``.
    expected_num_losses: ``len(layer.losses)`` after a call on the inputs.
    input_data: the inputs (tensor, tuple, list or dict of tensors).
    input_shape: instead of ``input_data``: shapes of standard-normal float
      inputs (see :func:`random_inputs`).
    call_kwargs: extra tensor arguments of ``call`` (e.g. ``mask``).

  Raises:
    ValueError: not exactly one of ``input_data`` and ``input_shape`` is given.
  """
  if (input_data is None) == (input_shape is None):
    raise ValueError("give exactly one of input_data and input_shape")
  inputs = random_inputs(input_shape) if input_data is None else input_data
  call_kwargs = call_kwargs or {}
  layer = layer_cls(**init_kwargs)
  outputs = layer(inputs, **call_kwargs)
  expected_shapes = ([tuple(expected_output_shape)] if _is_shape(expected_output_shape)
                     else [tuple(shape) for shape in expected_output_shape])
  assert [tuple(output.shape) for output in tf.nest.flatten(outputs)] == expected_shapes
  assert len(layer.trainable_weights) == expected_num_trainable_weights
  assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
  assert len(layer.losses) == expected_num_losses

  keras_testing.check_keras_layer(lambda: layer_cls(**init_kwargs), inputs, tmp_dir,
                                  call_kwargs=call_kwargs, weights_from_build=True)
  _check_training_step(layer, inputs, call_kwargs)
  if os.environ.get(CONTRACT_LOG):
    with open(os.environ[CONTRACT_LOG], "a", encoding="utf-8") as log:
      log.write(f"{layer_cls.__module__}.{layer_cls.__name__}\n")
