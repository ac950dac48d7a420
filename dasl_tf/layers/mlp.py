"""A multi-layer perceptron: the encoders, decoders and prediction heads of DASL."""
from __future__ import annotations

import random
from typing import Optional, Sequence

import tensorflow as tf

from dasl_tf.layers import shell

__getattr__ = shell.active_keras_classes("MLP", "CheckpointedDropout")


class MLPBody(shell.LayerBody):
  """Dense ReLU layers, optional dropout, then a linear output layer (``MLP``).

  ``y = W_L · relu(... relu(W_1 x + b_1) ...) + b_L``, applied to the last axis,
  so any leading shape works (``[batch, d]``, ``[batch, C, d]``, ...).

  Example:
    >>> from dasl_tf.layers import MLP
    >>> mlp = MLP(hidden_units=(16,), output_units=1)
    >>> mlp(tf.zeros([4, 3, 8])).shape
    TensorShape([4, 3, 1])

  Args:
    hidden_units: sizes of the hidden ReLU layers (may be empty: a linear map).
    output_units: size of the linear output layer.
    dropout: dropout rate after each hidden layer, in ``[0, 1)``.
    l2: L2 penalty on every kernel.

  Input shape: ``[..., d_in]``. Output shape: ``[..., output_units]``.

  Raises:
    ValueError: a size is not positive or the dropout rate is outside ``[0, 1)``.
  """

  def __init__(self, hidden_units: Sequence[int], output_units: int,
               dropout: float = 0.0, l2: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    hidden_units = tuple(int(u) for u in hidden_units)
    if any(u <= 0 for u in hidden_units) or output_units <= 0:
      raise ValueError(
          f"MLP sizes must be positive, got hidden_units={hidden_units}, "
          f"output_units={output_units}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"MLP dropout must be in [0, 1), got {dropout}")
    if l2 < 0:
      raise ValueError(f"MLP l2 must be >= 0, got {l2}")
    self.hidden_units = hidden_units
    self.output_units = int(output_units)
    self.dropout = float(dropout)
    self.l2 = float(l2)

  def build(self, input_shape):
    keras = self._api.keras
    regularizer = keras.regularizers.L2(self.l2) if self.l2 else None
    self._hidden = [
        keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer,
                           name=f"hidden_{i}")
        for i, units in enumerate(self.hidden_units)
    ]
    self._dropouts = [self._api.CheckpointedDropout(self.dropout) for _ in self.hidden_units
                     ] if self.dropout else []
    self._output = keras.layers.Dense(self.output_units, kernel_regularizer=regularizer,
                                      name="output")
    # Sublayers built here, not at the first call: a Keras 3 model reloads its weights
    # right after `build`.
    shape = tuple(input_shape)
    for i, dense in enumerate(self._hidden):
      self.build_sublayer(dense, shape)
      shape = shape[:-1] + (dense.units,)
      if self._dropouts:
        self.build_sublayer(self._dropouts[i], shape)
    self.build_sublayer(self._output, shape)
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    return self._after_first_layer(self.first_layer(inputs), training)

  @property
  def first_layer(self):
    """The first ``Dense`` layer (the first hidden layer, or the output layer when there is none).

    A caller that computes its affine map ``x W + b`` more cheaply than on the
    concatenated input (e.g. part of ``x`` shared by many rows) reads its
    ``kernel`` and ``bias`` and continues with :meth:`call_from_first_layer`.
    """
    return (self._hidden or [self._output])[0]

  def call_from_first_layer(self, pre_activation: tf.Tensor,
                            training: Optional[bool] = None) -> tf.Tensor:
    """``call`` of an input whose first layer's ``x W + b`` the caller computed.

    Example:
      >>> from dasl_tf.layers import MLP
      >>> mlp = MLP(hidden_units=(4,), output_units=1)
      >>> x = tf.ones([2, 3])
      >>> y = mlp(x)
      >>> first = mlp.first_layer
      >>> z = mlp.call_from_first_layer(tf.matmul(x, first.kernel) + first.bias)
      >>> bool(tf.reduce_all(tf.abs(y - z) < 1e-6))
      True

    Args:
      pre_activation: ``[..., units]`` of :attr:`first_layer`, before its activation.
      training: whether dropout runs.

    Returns:
      What ``call`` returns for that input.
    """
    return self._after_first_layer(self.first_layer.activation(pre_activation), training)

  def _after_first_layer(self, x: tf.Tensor, training: Optional[bool]) -> tf.Tensor:
    """The layers after :attr:`first_layer`, from its output ``x``."""
    if not self._hidden:
      return x
    for i, dense in enumerate(self._hidden):
      if i:
        x = dense(x)
      if self._dropouts:
        x = self._dropouts[i](x, training=training)
    return self._output(x)

  def get_config(self):
    config = super().get_config()
    config.update(hidden_units=list(self.hidden_units), output_units=self.output_units,
                  dropout=self.dropout, l2=self.l2)
    return config


class CheckpointedDropoutBody(shell.LayerBody):
  """Inverted dropout whose random state is a variable saved with the model's checkpoints (``CheckpointedDropout``).

  Keras' ``Dropout`` keeps its random state out of checkpoints, so a run
  resumed after a kill draws other masks than one never interrupted. Here the
  state is a ``tf.random.Generator`` tracked by the layer: restoring a
  checkpoint restores it, and the resumed run continues the same sequence.

  Args:
    rate: fraction of the inputs set to 0 while training, in [0, 1).
    seed: the generator's seed; None draws one from Python's ``random``
      (seeded by ``keras.utils.set_random_seed``) when the layer is built.
    **kwargs: ``Layer`` arguments.
  """

  def __init__(self, rate: float, seed: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    self.rate = float(rate)
    self.seed = seed

  def build(self, input_shape):
    seed = self.seed if self.seed is not None else random.randrange(2**31)
    with tf.init_scope():
      self._noise = tf.random.Generator.from_seed(seed)
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    if not training or self.rate == 0.0:
      return inputs
    keep = self._noise.uniform(tf.shape(inputs), dtype=inputs.dtype) >= self.rate
    return tf.where(keep, inputs / (1.0 - self.rate), tf.zeros_like(inputs))

  def get_config(self):
    config = super().get_config()
    config.update(rate=self.rate, seed=self.seed)
    return config
